"""results.json: what a run produced, written atomically so a killed run never leaves half a file."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NamedTuple

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.atomic import write_atomically
from framework.compose import script_of
from framework.errors import ConfigError, DataError

LIBRARIES = ("torch", "torchvision", "lightning", "hydra-core", "torchmetrics", "scikit-learn", "wandb")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """Write JSON through a temporary file in the same folder, renamed over ``path`` (framework/atomic.py)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    return write_atomically(path, lambda stream: stream.write(text.encode()))


def to_float_dict(metrics) -> dict[str, float]:
    """Tensor or number metrics -> plain floats (what json can hold)."""
    return {key: float(value) for key, value in metrics.items()}


def run_checkpoint(result: dict) -> Path:
    """The weights a run's val/ and test/ metrics describe, found in the run's folder as it is now: results.json
    records them by the absolute path they had, so a copied run would read the original's weights and a moved one
    none. ``result``: a :func:`load_results` entry (its ``path`` is where the run is now)."""
    folder = Path(result["path"])
    recorded = result.get("best_checkpoint")
    if not recorded:
        return folder / "checkpoints" / "last.ckpt"
    written_in = result.get("output_dir")
    if written_in and Path(recorded).is_relative_to(written_in):  # a test-only run's checkpoint lies elsewhere
        return folder / Path(recorded).relative_to(written_in)
    return Path(recorded)


def as_list(value) -> list[str]:
    """A value of evaluate.py's command line as typed, one (``metrics=test/acc``) or a list (``metrics=[test/acc,
    val/acc]``); a name Hydra reads as a number or a bool (``runs=0``, typed in a sweep directory) as the string."""
    return [str(item) for item in value] if isinstance(value, ListConfig | list | tuple) else [str(value)]


def run_paths(runs) -> list[Path]:
    """``runs`` as typed: a run directory, a multirun directory or a results.json, or a list of them
    (``runs=[logs/a,logs/b]``, e.g. seeds swept on two days)."""
    return [Path(path) for path in as_list(runs)]


def runs_folder(runs) -> Path:
    """Where a study of ``runs`` writes by default: the directory given (a results.json's own directory); for a
    list, the folder that holds them all."""
    folders = [path if path.is_dir() else path.parent for path in run_paths(runs)]
    return folders[0] if len(folders) == 1 else Path(os.path.commonpath([os.path.abspath(f) for f in folders]))


def find_results(runs) -> list[Path]:
    """results.json of one run directory, or of every job below a multirun directory; of each, for a list."""
    found = {}
    for path in run_paths(runs):
        for result in [path] if path.is_file() else sorted(path.rglob("results.json")):
            found.setdefault(result.resolve(), result)  # runs=[sweep,sweep/0] counts sweep/0 once
    return list(found.values())


def _found_below(runs, name: str) -> list[Path]:
    """What is called ``name`` at or below each folder of ``runs``, once however often it is given (a folder named
    twice, or once more through a link)."""
    found = {}
    for path in run_paths(runs):
        for match in sorted(path.rglob(name)) if path.is_dir() else []:
            found.setdefault(match.resolve(), match)
    return list(found.values())


def jobs_without_results(runs) -> list[Path]:
    """Job directories below ``runs`` (Hydra wrote their .hydra/) that hold no results.json: failed, killed or
    still running. evaluate.py's own (which write none) are not jobs."""
    return sorted(folder.parent for folder in _found_below(runs, ".hydra")
                  if not (folder.parent / "results.json").is_file() and not _evaluate_output(folder))


def jobs_started_again(runs) -> list[Path]:
    """The job directories below ``runs`` whose last start (Hydra's record of it, .hydra/overrides.yaml) gave other
    overrides than the start that wrote their results.json, and has not finished: continued with more epochs and
    killed, say. Their results.json is the earlier start's. ckpt_path, which a continuation adds, is no other
    override."""
    return [result.parent for result in find_results(runs)
            if isinstance(record := read_record(result.parent / ".hydra" / "overrides.yaml"), ListConfig)
            and ran_otherwise(list(record), read_results(result))]


def values_given(overrides: list) -> list[str]:
    """A job's overrides less those that say how it ran (analysis.results_table.HOW_IT_RAN: the ckpt_path=auto that a
    continuation adds, its data in another folder, another logger), sorted: the values it trains. Its seed is one."""
    from analysis.results_table import HOW_IT_RAN, how_it_ran, override_key

    how = [key for key in HOW_IT_RAN if key != "seed"]
    return sorted(str(o) for o in overrides if not how_it_ran(override_key(str(o)), how))


def ran_otherwise(overrides: list, run: dict) -> bool:
    """Whether a job given ``overrides`` runs other values than ``run`` (a results.json) ran with. A key that only
    the job gives counts by the run's value of it (a swept key added with the value every earlier job had: such a
    finished job is kept as it is); the keys of how it ran (values_given) are no other values."""
    from analysis.results_table import group_value, same_number, shown
    from framework.continued_runs import overrides_by_key

    given, ran = (values_given(listed) for listed in (overrides, run.get("overrides", [])))
    if given == ran:
        return False
    if any(o.startswith("~") for o in {*given, *ran} - ({*given} & {*ran})):  # a deletion given on one side only
        return True
    given_values, ran_values = overrides_by_key(given), overrides_by_key(ran)
    return bool(ran_values.keys() - given_values.keys()) or any(
        same_number(shown(value)) != same_number(group_value(run, key)) for key, value in given_values.items())


class SweptJob(NamedTuple):
    sweep: Path  # the multirun's folder
    name: str  # its folder's name where folders are numbered (Hydra's default subdir); else "job <num>"
    overrides: list[str]  # as the multirun.yaml gives them
    folder: Path | None  # where it ran; None: not started


def read_record(path: Path) -> DictConfig | ListConfig | None:
    """One of Hydra's records (multirun.yaml, .hydra/*.yaml); None where a kill or a full disk cut it short."""
    try:
        return OmegaConf.load(path)
    except (OSError, yaml.YAMLError, OmegaConfBaseException):
        return None


def _job_number(job_folder: Path) -> int | None:
    record = read_record(job_folder / ".hydra" / "hydra.yaml")
    return OmegaConf.select(record, "hydra.job.num", default=None) if isinstance(record, DictConfig) else None


def swept_jobs(runs) -> list[SweptJob]:
    """Every job of each train.py multirun at or below ``runs``, with the overrides its multirun.yaml (Hydra's record
    of the command) gives it and the folder it ran in: ``<sweep>/<num>`` where Hydra numbers the folders, else the
    folder whose .hydra/hydra.yaml gives its number (``hydra.sweep.subdir=seed_${seed}``). A record cut short,
    another sweeper or a grammar this reading does not know: that sweep is not looked into."""
    from framework.continued_runs import NUMBERED, shuffled_keys, sweep_jobs

    jobs = []
    for sweep in (record.parent for record in _found_below(runs, "multirun.yaml")):
        config = read_record(sweep / "multirun.yaml")
        if not isinstance(config, DictConfig) or script_of(config.get("hydra")) != "train":
            continue
        try:
            listed = sweep_jobs(config)
        except Exception:  # a sweeper or grammar this reading does not know: the notes are left out, not the table
            continue
        if OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir") == NUMBERED:
            found = [SweptJob(sweep, str(num), overrides, sweep / str(num) if (sweep / str(num)).is_dir() else None)
                     for num, overrides in enumerate(listed)]
        else:
            numbered = {_job_number(record.parent): record.parent for record in sorted(sweep.rglob(".hydra"))}
            found = [SweptJob(sweep, f"job {num}", overrides, numbered.get(num))
                     for num, overrides in enumerate(listed)]
        jobs += _paired_by_values(found) if shuffled_keys(config) else found
    return jobs


def _paired_by_values(jobs: list[SweptJob]) -> list[SweptJob]:
    """A shuffled sweep's ``jobs``: shuffle() drew the order the jobs ran in, and reading the multirun.yaml draws
    another, so a job that ran gets the overrides it ran with where the sweep lists them; the others (not started,
    or run with other values) get the sweep's overrides left over. A job continued alone (ckpt_path=auto) is paired by
    the values it was given (values_given)."""
    left = [job.overrides for job in jobs]
    ran = {}
    for job in jobs:
        record = read_record(job.folder / ".hydra" / "overrides.yaml") if job.folder is not None else None
        overrides = values_given(OmegaConf.to_container(record)) if isinstance(record, ListConfig) else None
        if (listed := next((given for given in left if values_given(given) == overrides), None)) is not None:
            left.remove(listed)
            ran[job.name] = listed
    return [job._replace(overrides=ran[job.name] if job.name in ran else left.pop(0)) for job in jobs]


def jobs_not_started(jobs: list[SweptJob]) -> list[SweptJob]:
    """Those of the multiruns' ``jobs`` (swept_jobs) that have no folder: the sweep stopped before them (a kill, a
    time limit)."""
    return [job for job in jobs if job.folder is None]


def jobs_of_other_values(jobs: list[SweptJob]) -> list[Path]:
    """The folders of those of the multiruns' ``jobs`` (swept_jobs) whose results.json has other overrides than the
    multirun.yaml gives the job: a sweep continued with other values (a larger trainer.max_epochs) that stopped
    before reaching it. Their rows show the values they ran with."""
    return [job.folder for job in jobs if job.folder is not None and (job.folder / "results.json").is_file()
            and ran_otherwise(job.overrides, read_results(job.folder / "results.json"))]


def _evaluate_output(hydra_folder: Path) -> bool:
    """Whether Hydra wrote ``hydra_folder`` for a run of evaluate.py (by its choices: hydra.job.name may be set, and a
    config of one's own given with -cn has another name)."""
    written = read_record(hydra_folder / "hydra.yaml")  # None where cut short: a job's, unfinished
    return isinstance(written, DictConfig) and script_of(written.get("hydra")) == "evaluate"


def load_results(runs) -> list[dict]:
    found, paths = find_results(runs), run_paths(runs)
    resolved = [result.resolve() for result in found]
    for path in paths:
        if not any(path.resolve() in (result, *result.parents) for result in resolved):
            given, where = (repr(str(path)), "it") if len(paths) == 1 else ([str(p) for p in paths], repr(str(path)))
            lack = f"there is no results.json under {where}" if path.exists() else f"{where} does not exist"
            raise ConfigError(f"Config key 'runs' is {given}, but {lack}; give the output directory of a finished run "
                              f"or multirun.")
    return [read_results(path) | {"path": str(path.parent)} for path in found]


def read_results(path: Path) -> dict:
    """One results.json; a file that is not one (half written by hand, overwritten by another tool) is one
    sentence naming it."""
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        why = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        raise DataError(f"{path} is not a results.json that a run wrote ({why}); train that run again, or move the "
                        f"file out of runs=.") from None
    if not isinstance(results, dict) or not isinstance(results.get("metrics"), dict):
        why = "it holds no metrics"
    elif text := next((f"its metric {name!r} is {value!r}, not a number" for name, value in results["metrics"].items()
                       if not isinstance(value, int | float) or isinstance(value, bool)), None):
        why = text
    elif not isinstance(results.setdefault("config", {}), dict):  # a hand-written one may leave it out
        why = "its config is no mapping"
    else:
        return results
    raise DataError(f"{path} is not a results.json that a run wrote ({why}); train that run again, or move the file "
                    f"out of runs=.")

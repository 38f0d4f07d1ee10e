"""A run or sweep into folders that hold earlier runs, checked before Hydra writes anything there (the Hydra callback
``EarlierRunsPreflight`` calls ``check_run`` and ``check_sweep``).

A run may continue the run in its folder (``ckpt_path=auto``) but not mix its files with another's
(``earlier_run_refusal``), nor change what that run's checkpoint keeps (``check_checkpoint``). A continued sweep takes
its jobs' folders by number (``hydra.sweep.subdir=${hydra.job.num}``), and values reordered or inserted in it number
its jobs anew: job 0 would go on from job 0's old checkpoint with another job's values, silently where no checkpoint
keeps them (``data.batch_size``). So each job must have the values that made the run in its folder differ from its
siblings (``check_same_job``), and no two jobs may share a folder (a custom ``hydra.sweep.subdir``).

The checks of an earlier run's files import framework/checkpoints.py (torch) when they run: the Hydra callbacks import
this module in every command, ``python evaluate.py runs=...`` too, which reads only JSON.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError

from framework.compose import CONF
from framework.errors import ConfigError

NUMBERED = "${hydra.job.num}"  # conf/hydra/default.yaml's hydra.sweep.subdir


def output_folder(config: DictConfig, key: str) -> Path:
    """``hydra.run.dir`` or ``hydra.sweep.dir``, resolved; one sentence where it refers to a key the config lacks
    (``~paths`` removes the paths.log_dir that the defaults build them from)."""
    try:
        return Path(str(OmegaConf.select(config, key, throw_on_missing=True))).absolute()
    except InterpolationKeyError as error:
        missing = re.search(r"Interpolation key '([^']+)'", str(error))
        raise ConfigError(f"Config key '{key}' refers to {missing[1] if missing else 'a key'!r}, which the config "
                          f"lacks (removed with ~{(missing[1] if missing else 'paths').split('.')[0]}?); keep it, or "
                          f"give {key}=<folder>.") from None


def check_run(config: DictConfig) -> None:
    """A single run into ``hydra.run.dir``."""
    folder = output_folder(config, "hydra.run.dir")
    check_folder(folder, config, multirun=False)
    check_resumed_checkpoint(folder, config, lambda: config)


def check_sweep(config: DictConfig) -> None:
    """The jobs of a multirun (Hydra's basic sweeper), each against the run in its folder."""
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    if config.hydra.sweeper._target_ != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        return
    for override in sweep_overrides(config):
        if override.is_discrete_sweep() and not list(override.sweep_string_iterator()):
            raise ConfigError(f"Config key '{override.key_or_group}' is swept over {override.get_value_string()}, "
                              f"which gives no value, so the sweep would run no job; give it values (range(a,b) "
                              f"stops before b: range(1,2) is 1).")
    sweep_dir = output_folder(config, "hydra.sweep.dir")
    numbered = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir") == NUMBERED
    if numbered and not sweep_dir.is_dir():
        return
    if any(override.startswith(("ckpt_path=", "train=")) and "," in override for override in task):
        if numbered:  # a sweep of test-only runs over checkpoints: each job's folder, with its own ckpt_path and train
            for num, overrides in enumerate(sweep_jobs(config)):
                job = {"ckpt_path": config.get("ckpt_path"), "train": config.get("train", True)}
                check_folder(sweep_dir / str(num), job | overrides_by_key(overrides), multirun=True)
        return
    from framework.checkpoints import may_differ_on_resume

    check_not_shuffled(config, sweep_dir)
    jobs = sweep_jobs(config)
    composed = [functools.cache(functools.partial(job_config, config, overrides, num))
                for num, overrides in enumerate(jobs)]
    folders = [sweep_dir / str(num) if numbered else job_folder(compose()) for num, compose in enumerate(composed)]
    check_distinct_folders(folders, config)
    check_continued_into_its_folders(config, folders, sweep_dir)
    values = [overrides_by_key(overrides) for overrides in jobs]
    earlier = {folder: overrides_by_key(OmegaConf.load(record)) for folder in {*sweep_dir.glob("*"), *folders}
               if (record := folder / ".hydra" / "overrides.yaml").is_file()}
    identity = differing_keys(values) | {key for key in differing_keys(list(earlier.values()))
                                         if not may_differ_on_resume(key)}
    for num, folder in enumerate(folders):
        if not folder.is_dir():
            continue
        check_folder(folder, config, multirun=True)
        if folder in earlier and holds_a_run(folder):
            check_same_job(num, folder, values[num], earlier[folder], identity, composed[num], config.get("ckpt_path"))
        check_resumed_checkpoint(folder, config, composed[num], sweep_job=num)


def check_not_shuffled(config: DictConfig, sweep_dir: Path) -> None:
    """shuffle() orders a sweep's jobs anew at every start: into the folders of an earlier start, each job would get
    another job's folder (this check and Hydra's sweeper draw their orders apart)."""
    shuffled = shuffled_keys(config)
    if shuffled and any(holds_a_run(folder) for folder in sweep_dir.glob("*")):
        raise ConfigError(f"Config key '{shuffled[0]}' is swept with shuffle(), which orders the jobs anew at every "
                          f"start, but {sweep_dir} holds runs of an earlier start of this sweep, whose folders would "
                          f"go to other jobs; sweep the values without shuffle() to continue them, or give another "
                          f"hydra.sweep.dir.")


def shuffled_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps with shuffle()."""
    return [override.key_or_group for override in sweep_overrides(config)
            if getattr(override.value(), "shuffle", False)]


def holds_a_run(folder: Path) -> bool:
    """Whether a job's folder holds what a job of other values would continue or keep: a checkpoint or results.json
    (a job refused before its first checkpoint, e.g. for data.batch_size=0.5, holds none: it starts again)."""
    return any(folder.glob("checkpoints/*.ckpt")) or (folder / "results.json").is_file()


def sweep_overrides(config: DictConfig) -> list[Override]:
    """A multirun's overrides as its sweeper reads them: the grid of ``hydra.sweeper.params``, then the command
    line's. Interpolations stay as typed: each job resolves them (here they would fail, or take another value)."""
    params = OmegaConf.to_container(config.hydra.sweeper, resolve=False).get("params") or {}
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    parser = OverridesParser.create(config_loader=loader)  # the loader expands glob() sweeps of config groups
    return parser.parse_overrides([*(f"{name}={value}" for name, value in params.items()), *task])


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, numbered as Hydra's basic sweeper numbers them (the first key varying slowest)."""
    return BasicSweeper.split_arguments(sweep_overrides(config), None)[0]


def overrides_by_key(overrides: list[str]) -> dict[str, object]:
    """A job's ``key=value`` overrides as {key: value}, typed as Hydra reads them (``0.10`` is ``0.1``)."""
    return {override.key_or_group: override.value() for override in
            OverridesParser.create().parse_overrides([str(override) for override in overrides])}


def differing_keys(jobs: list[dict[str, object]]) -> set[str]:
    """The keys whose values (absent counts as a value) are not the same in every job."""
    return {key for job in jobs for key in job if any(not same(job.get(key), other.get(key)) for other in jobs)}


def same(one, other) -> bool:
    """Equal values, a number however it was spelled (``1`` and ``1.0``)."""
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in (one, other)):
        return float(one) == float(other)
    return repr(one) == repr(other)


def configured_value(config: DictConfig, key: str):
    """``key``'s value in a composed config: a config group's option (``model`` -> ``lenet5``), else its value (None:
    absent, or an interpolation that cannot be resolved here)."""
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    if key in choices:
        return choices[key]
    try:
        value = OmegaConf.select(config, key.lstrip("+~"), default=None)
    except Exception:  # ${hydra:...} and the like resolve only inside the job
        return None
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def recorded_config(folder: Path) -> DictConfig:
    """The config a job folder's run recorded (.hydra/config.yaml with its hydra node from hydra.yaml)."""
    record = folder / ".hydra"
    parts = [OmegaConf.load(path) for path in (record / "config.yaml", record / "hydra.yaml") if path.is_file()]
    return OmegaConf.merge(*parts) if parts else OmegaConf.create()


def check_same_job(num: int, folder: Path, job: dict[str, object], earlier: dict[str, object], identity: set[str],
                   composed: Callable[[], DictConfig], ckpt_path: str | None) -> None:
    """Job ``num`` may continue the run in ``folder`` only with that run's values of the ``identity`` keys (those
    that differ between the jobs of this sweep or of the earlier one). A key one side did not give is its
    configured value (a new swept key whose first value is the default passes)."""
    shown = lambda value: "(not given)" if value is None else value
    for key in sorted(identity):
        now = job[key] if key in job else configured_value(composed(), key)
        before = earlier[key] if key in earlier else configured_value(recorded_config(folder), key)
        if not same(now, before):
            raise ConfigError(f"Job {num} of this sweep gives {key}={shown(now)}, but its folder {folder} holds the "
                              f"run of {key}={shown(before)}, which ckpt_path={ckpt_path} would continue with this "
                              f"job's values (jobs are numbered by the order of the swept keys and their values: only "
                              f"values appended to the first swept key keep the earlier jobs' numbers); sweep the "
                              f"earlier keys and values in their order, or give another hydra.sweep.dir.")


def check_distinct_folders(folders: list[Path], config: DictConfig) -> None:
    """Two jobs of one sweep in one folder would mix their files, or the second continue the first's run."""
    first: dict[Path, int] = {}
    for num, folder in enumerate(folders):
        if folder in first:
            subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
            raise ConfigError(f"Config key 'hydra.sweep.subdir' is {subdir!r}, which gives jobs {first[folder]} and "
                              f"{num} of this sweep the same folder {folder}; name every swept key in it (here "
                              f"{subdir_naming(differing_keys([overrides_by_key(job) for job in sweep_jobs(config)]))}"
                              f"), or leave it out (job numbers).")
        first[folder] = num


def check_continued_into_its_folders(config: DictConfig, folders: list[Path], sweep_dir: Path) -> None:
    """``hydra.sweep.subdir=${hydra.job.override_dirname}`` names a job's folder by its overrides, ckpt_path among them:
    a sweep continued with ckpt_path=auto got new folders for every job and trained them all again beside the runs it
    was to continue (as Hydra does, without a word)."""
    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
    excluded = OmegaConf.select(config, "hydra.job.config.override_dirname.exclude_keys", default=[]) or []
    if "override_dirname" in subdir and "ckpt_path" not in excluded and config.get("ckpt_path") is not None and \
            not any(folder.is_dir() for folder in folders) and any(holds_a_run(f) for f in sweep_dir.glob("*")):
        raise ConfigError(f"Config key 'hydra.sweep.subdir' is {subdir!r}, which names each job's folder by its "
                          f"overrides, ckpt_path={config.ckpt_path} among them, so this sweep would start every job "
                          f"again in new folders beside the runs in {sweep_dir}; give "
                          f"hydra.job.config.override_dirname.exclude_keys=[ckpt_path] too, which names the folders "
                          f"as the sweep's first start did.")


def subdir_naming(keys: set[str]) -> str:
    """A ``hydra.sweep.subdir`` made of these keys' values (a config group's by its option), quoted for a shell. Not
    Hydra's ${hydra.job.override_dirname}: it names every override, so a continuation that adds ckpt_path=auto or
    more epochs would get new folders and start afresh."""
    parts = [f"{key.split('/')[-1]}${{hydra:runtime.choices.{key}}}" if (CONF / key).is_dir() else
             f"{key.split('.')[-1]}${{{key}}}" for key in sorted(keys)]
    return f"'hydra.sweep.subdir={'_'.join(parts)}'"


def job_config(master: DictConfig, overrides: list[str], num: int) -> DictConfig:
    """The config of job ``num`` of a multirun, composed as Hydra's launcher composes it."""
    job = GlobalHydra.instance().config_loader().load_sweep_config(master, list(overrides))
    with open_dict(job):
        job.hydra.job.num = job.hydra.job.id = num
    return job


def job_folder(job: DictConfig) -> Path:
    """The output directory Hydra gives a job (``hydra.sweep.dir``/``hydra.sweep.subdir``, resolved as run_job does)."""
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(job)
    try:
        return Path(str(job.hydra.sweep.dir), str(job.hydra.sweep.subdir)).absolute()
    finally:
        hydra_config.cfg = previous


def check_folder(folder: Path, settings: DictConfig | dict, multirun: bool) -> None:
    """``earlier_run_refusal`` for a run into ``folder`` with the ckpt_path and train of ``settings``."""
    from framework.checkpoints import earlier_run_refusal
    from framework.validate import check_one_checkpoint

    ckpt_path = settings.get("ckpt_path")
    check_one_checkpoint(ckpt_path)
    if ckpt_path not in (None, "auto", "last", "hpc"):
        ckpt_path = str(Path(ckpt_path).absolute())
    if refusal := earlier_run_refusal(folder, ckpt_path, settings.get("train", True), multirun):
        raise refusal


def check_resumed_checkpoint(folder: Path, settings: DictConfig, composed: Callable[[], DictConfig],
                             sweep_job: int | None = None) -> None:
    """A training run that continues ``folder``'s checkpoint (``checkpoint_to_continue``) must keep the values it
    keeps (``check_checkpoint`` with the run's config, ``composed()``: a multirun composes a job's config only when
    needed)."""
    from framework.checkpoints import check_checkpoint, checkpoint_to_continue

    if settings.get("train", True) and settings.get("ckpt_path") in ("auto", "last") and \
            (checkpoint := checkpoint_to_continue(folder / "checkpoints")):
        check_checkpoint(str(checkpoint), resumed_with=composed(), sweep_job=sweep_job)

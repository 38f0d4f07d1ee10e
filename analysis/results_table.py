"""Tables of run results: mean ± std over seeds, grouped by chosen config keys.

A run's ``results.json`` holds its metrics, its command-line overrides and its whole resolved
config, so any dotted config key (``model.optimizer.lr``, ``data._target_``) or config group
(``model``, as chosen with ``model=lenet5``) can be a grouping column.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from framework.compose import at_or_below
from framework.errors import ConfigError

_ABSENT = "—"


def config_value(config: dict, dotted_key: str):
    node = config
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def group_value(run: dict, dotted_key: str) -> str:
    """The option a run's config group had (``model`` -> ``lenet5``, typed or a default: results.json's ``choices``),
    else the value it was given on the command line, else its value in the resolved config; a config group of a run
    without choices (``data``: a dict) is its class's name. Values are shown as typed in a config (``true``, ``0.1``),
    however the command line or Hydra's sweep spelled them (``True``, ``0.10``); a group the run chose no option of
    (``experiment``, recorded as None) is ``null``, as ``experiment=null`` is typed."""
    if dotted_key in run.get("choices", {}):
        return shown(run["choices"][dotted_key])
    for override in run.get("overrides", []):
        key, _, value = override.partition("=")
        if key.lstrip("+~") == dotted_key:
            return shown(typed(override, value))
    value = config_value(run["config"], dotted_key)
    if isinstance(value, dict) and "_target_" in value:
        return str(value["_target_"]).rsplit(".", 1)[-1]
    return shown(value)


def typed(override: str, value: str):
    """An override's value as Hydra reads it (``True`` -> True, ``0.10`` -> 0.1); as written where it does not parse."""
    try:
        return OverridesParser.create().parse_overrides([override])[0].value()
    except HydraException:
        return value


def shown(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


# Overrides that say how a run ran, not what it trained: a job resumed with ckpt_path=auto, or run with its data in
# another folder, belongs in the row of its sweep's other seeds.
HOW_IT_RAN = ("seed", "ckpt_path", "tags", "evaluate_tasks", "paths", "logger", "callbacks.progress_bar",
              "trainer.enable_progress_bar", "callbacks.last_checkpoint", "hydra")
# So do a DataModule's keys of where its files are and how it loads them, in data and in a callback's own data
# (callbacks.probe.data.data_dir follows data.data_dir): the same images wherever and however they were loaded.
HOW_DATA_LOADED = ("data_dir", "download", "progress", "generation_workers", "num_workers", "pin_memory", "on_device")


def how_it_ran(key: str, keys: Sequence[str] = HOW_IT_RAN) -> bool:
    """Is ``key`` one of (or below) ``keys``, or a DataModule's HOW_DATA_LOADED key?"""
    parts = key.split(".")
    return at_or_below(key, keys) or any(parent == "data" and name in HOW_DATA_LOADED
                                    for parent, name in zip(parts, parts[1:], strict=False))


def overridden_keys(runs: Sequence[dict], exclude: Sequence[str] = HOW_IT_RAN) -> list[str]:
    """Every key overridden in any run (in first-seen order), except those in ``exclude`` and below them. The
    ckpt_path of a test-only run (``train=false``) names the weights it tested: what it measured, not how it ran."""
    keys: list[str] = []
    for run in runs:
        tested_only = run.get("config", {}).get("train", True) is False
        excluded = [e for e in exclude if not (tested_only and e == "ckpt_path")]
        for override in run.get("overrides", []):
            if (key := override_key(override)) not in keys and not how_it_ran(key, excluded):
                keys.append(key)
    return keys


def dotted_keys(node: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a nested config (``model``, ``model.optimizer``, ``model.optimizer.lr``, ...)."""
    keys = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(dotted_keys(value, f"{dotted}."))
    return keys


class UnknownKeyError(ConfigError):
    """A metric or grouping key that no run has; the message lists the keys the runs do have."""


def check_keys(runs: Sequence[dict], metrics: Sequence[str], group_by: Sequence[str]) -> None:
    """Raise UnknownKeyError for the first metric or ``group_by`` key that no run has."""
    have_metrics = sorted({name for run in runs for name in run.get("metrics", {})})
    if not metrics:
        raise UnknownKeyError(f"Config key 'metrics' is [], which leaves the table no column; name some of the runs' "
                              f"metrics ({', '.join(have_metrics) or 'they have none'}), or null for the default.")
    for metric in metrics:
        if metric not in have_metrics:
            raise UnknownKeyError(f"Config key 'metrics' names {metric!r}, which no run has; the runs have the "
                                  f"metrics {', '.join(have_metrics) or '(none)'}.")
    have_config = {key for run in runs for key in dotted_keys(run.get("config", {}))}
    overridden = overridden_keys(runs, exclude=("hydra",))
    for key in group_by:
        if key not in have_config and key not in overridden:
            leaves = sorted({k for run in runs for k in dotted_keys(run.get("config", {}))
                             if not isinstance(config_value(run["config"], k), dict)})
            near = difflib.get_close_matches(key, leaves, n=4, cutoff=0.5)
            raise UnknownKeyError(
                f"Config key 'group_by' names {key!r}, which no run has; the runs were given "
                f"{', '.join(overridden) or '(no overrides)'}"
                + (f" and their configs have e.g. {', '.join(near)}" if near else "")
                + " (any dotted config key works).")


def checkpoint_note(runs: Sequence[dict]) -> str:
    """Which weights the val/ and test/ metrics describe (train.py records it as ``evaluated_checkpoint``)."""
    counts = Counter(run.get("evaluated_checkpoint", "unrecorded checkpoint") for run in runs)
    if len(counts) == 1:
        return f"val/ and test/ metrics of each run's {next(iter(counts))}."
    counted = (f"{name} ({n} run{'s' * (n != 1)})" for name, n in counts.most_common())
    return "val/ and test/ metrics of: " + "; ".join(counted) + "."


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def group_runs(runs: Sequence[dict], group_by: Sequence[str]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    shown_as: dict[tuple, tuple] = {}  # a row is shown as its first run spelled it
    for run in runs:
        cells = tuple(group_value(run, key) for key in group_by)
        groups[shown_as.setdefault(tuple(map(same_number, cells)), cells)].append(run)
    return dict(groups)


def same_number(cell: str) -> float | str:
    """A cell as the value it spells: ``0`` (typed on the command line) and ``0.0`` (a config's default) are one."""
    try:
        number = float(cell)
    except ValueError:
        return cell
    return cell if math.isnan(number) else number


def results_table(runs: Sequence[dict], metrics: Sequence[str], group_by: Sequence[str] | None = None,
                  digits: int = 4) -> str:
    """A markdown table: one row per group, ``mean ± std`` per metric and the number of runs."""
    group_by = list(group_by) if group_by is not None else overridden_keys(runs)
    header = [*group_by, *metrics, "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, members in sorted(group_runs(runs, group_by).items(), key=lambda item: row_order(item[0])):
        cells = [cell.replace("|", "\\|") for cell in key]  # a | in a value would end its cell
        for metric in metrics:
            values = [run["metrics"][metric] for run in members if metric in run["metrics"]]
            if values:
                mean, std = mean_std(values)
                fewer = f" ({len(values)} of {len(members)} runs)" if len(values) < len(members) else ""
                cells.append(f"{mean:.{digits}f} ± {spread(std, len(values), digits)}{fewer}")
            else:
                cells.append(_ABSENT)
        cells.append(str(len(members)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def row_order(cells: Sequence[str]) -> tuple:
    """A row's sort key: within a column numbers in numeric order (5, 20, 100; seeds 1, 2, 10), before text in text
    order; cells that read as one number (``0.1``, ``1e-1``) are ordered by their text."""
    return tuple(cell_order(cell) for cell in cells)


def cell_order(cell: str) -> tuple:
    try:
        number = float(cell)
    except ValueError:
        number = math.nan
    return (0, number, cell) if not math.isnan(number) else (1, 0.0, cell)


def spread(std: float, n: int, digits: int) -> str:
    """A std as a table shows it: "—" for a single run, which has no spread (not a spread of 0)."""
    return f"{std:.{digits}f}" if n > 1 else _ABSENT


def differing_keys(runs: Sequence[dict], shown: Sequence[str]) -> list[str]:
    """The keys overridden in some of ``runs``, other than ``shown`` and HOW_IT_RAN (and those below HOW_IT_RAN), in
    which they differ; then the other keys of their configs in which they differ all the same (a default changed
    between two sweeps, whatever else their command lines gave). A key below a shown one counts: a shown ``model``
    (its option, ``lenet5``) or ``model.optimizer`` (a class) does not say which ``model.optimizer.lr`` a run had."""
    differ = lambda key: key not in shown and len({same_number(group_value(run, key)) for run in runs}) > 1
    named = [key for key in overridden_keys(runs) if differ(key)]
    unexplained = [key for key in _leaves(runs) if not at_or_below(key, named) and not how_it_ran(key)
                   and not _in_their_folder(runs, key) and not _follows_the_seed(runs, key) and differ(key)]
    return list(dict.fromkeys(named + unexplained))


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _leaves(runs: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(key for run in runs for key in dotted_keys(run.get("config", {}))
                              if not isinstance(config_value(run["config"], key), dict)))


def _follows_the_seed(runs: Sequence[dict], key: str) -> bool:
    """The seed under another name (``data.split_seed: ${seed}``: every repeat its own split): how a run ran."""
    return all(run.get("seed") is not None and config_value(run.get("config", {}), key) == run["seed"] for run in runs)


def _in_their_folder(runs: Sequence[dict], key: str) -> bool:
    """A path into a run's own output folder (a checkpoint callback's dirpath): where it ran, not what it trained."""
    return any(isinstance(value := config_value(run.get("config", {}), key), str) and run.get("output_dir")
               and str(run["output_dir"]) in value for run in runs)


def check_one_setting(groups: Iterable[Sequence[dict]], shown: Sequence[str], table: str) -> None:
    """A table must not pool runs that differ in a setting it does not show: raise ConfigError, naming the key, its
    values and the remedy, for the first key overridden in some run of a group (a cell, or runs paired with each
    other), other than ``shown`` and HOW_IT_RAN, in which the group's runs differ."""
    for runs in groups:
        if differing := differing_keys(runs, shown):
            key = differing[0]
            values = list(dict.fromkeys(group_value(run, key) for run in runs))
            raise ConfigError(
                f"Config key 'runs' gives runs that differ in {key} ({', '.join(values)}), which {table} would "
                f"pool without showing it; give runs= runs of one {key}, or compare them with task=table "
                f"group_by=[{','.join([*shown, key])}].")


def check_one_run_per_seed(groups: Iterable[Sequence[dict]], shown: Sequence[str], table: str) -> None:
    """A row must not count a seed's run of one setting twice (a sweep's folder given twice under two names, a job
    copied), which made its std smaller and its count larger: raise ConfigError naming both runs. Runs without a
    seed (seed=null: each draws its own) are repeats."""
    for runs in groups:
        by_seed: dict[object, list[dict]] = defaultdict(list)
        for run in runs:
            if (seed := run.get("seed")) is None:
                continue
            if twin := next((other for other in by_seed[seed] if not differing_keys([other, run], shown)), None):
                raise ConfigError(f"Config key 'runs' gives two runs of seed {seed} with one setting "
                                  f"({twin.get('path')}, {run.get('path')}), which {table} would count as two "
                                  f"repeats; give each seed's run once.")
            by_seed[seed].append(run)

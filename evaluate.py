"""The second entry point: studies on finished runs and checkpoints, by named task.

    python evaluate.py runs=logs/train/multiruns/<stamp>                      # mean ± std table
    python evaluate.py runs=<dir> metrics=[test/acc] group_by=[model.optimizer.lr]
    python evaluate.py --help                                                 # the tasks and their keys

A task is a function ``(cfg) -> str`` (the markdown it wrote) registered in ``TASKS``;
later studies (attacks, probes, paper tables) plug in as new entries. Its docstring's first
line and its ``Keys:`` line (the config keys it reads, defined in conf/evaluate.yaml) are
what ``--help`` prints.

The studies import torch (seconds) when their task runs: ``--help`` and Hydra's refusal of a
command line answer without it.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from analysis.mi_lr_study import study_table
from analysis.results_table import (
    check_keys,
    check_one_run_per_seed,
    checkpoint_note,
    config_value,
    differing_keys,
    group_runs,
    overridden_keys,
    results_table,
)
from framework.atomic import why_unwritable, write_atomically
from framework.compose import CONF, paths_from_start_dir
from framework.entry_point import reporting_user_errors, run_entry_point
from framework.errors import ConfigError
from framework.results import (
    as_list,
    jobs_not_started,
    jobs_of_other_values,
    jobs_started_again,
    jobs_without_results,
    load_results,
    runs_folder,
    swept_jobs,
)
from framework.stopping import stopping_quietly_when_stdout_closes
from framework.validate import check_missing_values, check_rules, check_study_device

DEFAULT_METRICS = ("test/acc", "val/acc")
EXAMPLE = "python evaluate.py runs=logs/train/multiruns/<date>_<time>"

STD_NOTE = "± is the sample standard deviation (n - 1 in the denominator) over the runs of a row (their seeds)."


# The runs a study reads, by task-name prefix: (config key, its value in such runs, how they are made). The
# other tasks read any run.
STUDIED_RUNS = {
    "reae_figure2": ("model._target_", "lightning_modules.forward_autoencoder.ForwardAutoencoderModule",
                     "experiment=reae_figure2_* (e.g. reae_figure2_digits)"),
    "reae_figure3": ("model._target_", "lightning_modules.forward_autoencoder.ForwardAutoencoderModule",
                     "experiment=reae_figure3_* (e.g. reae_figure3_mnist)"),
    "reae_": ("model._target_", "lightning_modules.forward_autoencoder.ForwardAutoencoderModule",
              "model=forward_autoencoder, e.g. experiment=reae_table1_digits"),
    "perceptual_": ("model._target_", "lightning_modules.perceptual_autoencoder.PerceptualAutoencoderModule",
                    "experiment=perceptual_*"),
    "mi_lr_study": ("callbacks.mi_lr._target_", "callbacks.mutual_information.MutualInformationLR",
                    "callbacks=mi_lr, e.g. experiment=mi_lr_digits"),
}


def check_studied_runs(cfg: DictConfig, runs: list[dict]) -> None:
    """A study of one kind of run given runs of another kind: one sentence, not an empty table, a row of another
    kind's numbers or a traceback."""
    for prefix, (key, value, made_by) in STUDIED_RUNS.items():
        if not cfg.task.startswith(prefix):
            continue
        others = [run["path"] for run in runs if config_value(run.get("config", {}), key) != value]
        if len(others) == len(runs):
            raise ConfigError(f"Config key 'runs' is {cfg.runs!r}, whose {len(runs)} run(s) task={cfg.task} does not "
                              f"study: it reads runs made with {made_by}; give the directory of such runs.")
        if others:
            raise ConfigError(f"Config key 'runs' is {cfg.runs!r}, which holds {len(others)} run(s) task={cfg.task} "
                              f"does not study ({others[0]}{' ...' if len(others) > 1 else ''}): it reads runs made "
                              f"with {made_by}; give only such runs.")
        return  # the first prefix that names the task (reae_figure2 before reae_)


def job_name(job: Path, folder: Path) -> str:
    """``1 (model.optimizer.lr=-1)``: a job directory (below ``folder``) and the overrides it was started with."""
    overrides = job / ".hydra" / "overrides.yaml"
    shown = " ".join(map(str, OmegaConf.load(overrides))) if overrides.is_file() else ""
    return f"{Path(os.path.relpath(job, folder))}" + (f" ({shown})" if shown else "")


def unwritable(output: Path, reason: str) -> ConfigError:
    return ConfigError(f"Config key 'output' leads to {output}, which cannot be written ({reason}); give "
                       f"output=<a file in a folder you can write>.")


def output_file(cfg: DictConfig, default_folder: Path, default_name: str) -> Path:
    """``output`` when given (an existing folder, or one written with a trailing /: the task's file in it), else
    ``default_name`` in ``default_folder``."""
    if not cfg.get("output"):
        return default_folder / default_name
    output = Path(cfg.output)
    if output.is_dir() or str(cfg.output).endswith("/"):
        return output / default_name
    if output.suffix.lower() != ".md":  # a run's results.json or .hydra/config.yaml was overwritten by a table
        raise ConfigError(f"Config key 'output' is {str(cfg.output)!r}, which is not a markdown file; give a path "
                          f"ending in .md, or a folder (an existing one, or ending in /: the table goes into it as "
                          f"{default_name}).")
    return output


def writable_output(cfg: DictConfig, default_folder: Path, default_name: str) -> Path:
    """``output_file``, checked before a task's figures are made: they go beside the markdown, which links them."""
    output = output_file(cfg, default_folder, default_name)
    if reason := why_unwritable(output.parent):
        raise unwritable(output, reason)
    return output


def figures_folder(cfg: DictConfig, default_name: str) -> Path:
    """Where the PNGs of a task on runs go."""
    return writable_output(cfg, runs_folder(cfg.runs), default_name).parent


def write_text(output: Path, text: str) -> None:
    """Atomically (framework/atomic.py); a place that cannot be written is one sentence naming ``output``."""
    try:
        write_atomically(output, lambda stream: stream.write(f"{text}\n".encode()))
    except OSError as error:
        raise unwritable(output, error.strerror) from None
    print(text)
    print(f"written to {output}")


def write_markdown(text: str, cfg: DictConfig, default_name: str) -> str:
    folder = runs_folder(cfg.runs)
    started_again, swept = jobs_started_again(cfg.runs), swept_jobs(cfg.runs)  # Hydra's records, read once
    notes = [("Left out: {n} job director{ies} without results.json (failed, killed or still running)",
              [job_name(job, folder) for job in jobs_without_results(cfg.runs)]),
             ("Started again with other overrides and not finished, so their rows show the earlier start's "
              "results.json: {n} job director{ies}", [job_name(job, folder) for job in started_again]),
             ("Finished with other values than the sweep's multirun.yaml now gives them (their rows show the values "
              "they ran with): {n} job director{ies}",
              [job_name(job, folder) for job in jobs_of_other_values(swept) if job not in started_again]),
             ("Not started, the sweep stopped before them: {n} job{s}",
              [f"{os.path.relpath(job.sweep / job.name, folder)} ({' '.join(job.overrides)})"
               for job in jobs_not_started(swept)])]
    for sentence, jobs in notes:  # a sweep with failed or missing jobs: its rows hold fewer runs than it asked
        if jobs:
            plural = {"ies": "y" if len(jobs) == 1 else "ies", "s": "" if len(jobs) == 1 else "s"}
            text += (f"\n\n{sentence.format(n=len(jobs), **plural)}: {', '.join(jobs[:10])}"
                     f"{' ...' if len(jobs) > 10 else ''}.")
    write_text(output_file(cfg, folder, default_name), text)
    return text


def default_metrics(runs: list[dict]) -> list[str]:
    """test/acc and val/acc where runs have them, else the runs' optimized_metric and its test/ twin (the
    autoencoders' val/loss: test/loss, val/loss)."""
    present = [name for run in runs for name in run["metrics"]]
    names = [name for name in DEFAULT_METRICS if name in present]
    if not names:
        optimized = sorted({run.get("optimized_metric") for run in runs} - {None})
        twins = [f"{stage}/{name.split('/', 1)[-1]}" for name in optimized for stage in ("test", "val")]
        names = [name for name in dict.fromkeys(twins) if name in present]
    return names or list(DEFAULT_METRICS)


def table_task(cfg: DictConfig) -> str:
    """Mean ± std of the chosen metrics over seeds, grouped by chosen config keys.

    Keys: runs, metrics, group_by, output.
    """
    runs = load_results(cfg.runs)
    metrics = as_list(cfg.metrics) if cfg.get("metrics") is not None else default_metrics(runs)
    group_by = as_list(cfg.group_by) if cfg.get("group_by") is not None else overridden_keys(runs)
    check_keys(runs, metrics, group_by)
    rows = group_runs(runs, group_by).values()
    check_one_run_per_seed(rows, group_by, "the table")
    pooled = list(dict.fromkeys(key for members in rows for key in differing_keys(members, group_by)))
    pooled_note = f" Rows pool runs that differ in {', '.join(pooled)} (not in group_by)." if pooled else ""
    return write_markdown(f"{results_table(runs, metrics, group_by)}\n\n{checkpoint_note(runs)} {STD_NOTE}"
                          f"{pooled_note}{runs_of_other_settings_note(runs)}", cfg, "table.md")


def runs_of_other_settings_note(runs: list[dict]) -> str:
    """Runs whose row shows values other than those their weights were trained with: continued with changed values
    (results.json's changed_on_resume), or test-only runs (train=false), whose config is their own command's."""
    changes = lambda run: ", ".join(f"{key} {old} -> {new}" for key, (old, new) in run["changed_on_resume"].items())
    changed = [f"{run['path']} ({changes(run)})" for run in runs if run.get("changed_on_resume")]
    tested = [f"{run['path']} (weights: {run['config'].get('ckpt_path')})" for run in runs
              if run.get("config", {}).get("train", True) is False]
    note = f" Continued with other values than their checkpoints' runs had: {'; '.join(changed)}." if changed else ""
    if tested:
        note += (f" Test-only runs, whose rows show their own command's settings, not those their weights were "
                 f"trained with: {'; '.join(tested)}.")
    return note


def mi_lr_study_task(cfg: DictConfig) -> str:
    """Final/best accuracy, epoch reached and LR range of MI learning-rate runs (analysis/mi_lr_study.py).

    Keys: runs, output.
    """
    return write_markdown(study_table(cfg.runs), cfg, "mi_lr_study.md")


def mi_sample_size_task(cfg: DictConfig) -> str:
    """The MI paper's Figure 1: I(X; Y) against sample size, PNG and table (analysis/mi_sample_size.py).

    Keys: mi_sample_size, output.
    """
    from analysis.mi_sample_size import figure1

    options = cfg.mi_sample_size
    output = writable_output(cfg, Path(cfg.paths.output_dir), "mi_sample_size.md")
    text = figure1(as_list(options.datasets), cfg.paths.data_dir, list(options.sizes), options.draws, options.estimator,
                   output.with_suffix(".png"))
    write_text(output, text)
    return text


def reae_table1_task(cfg: DictConfig) -> str:
    """Table 1 (accuracy, chosen rho/lambda/tau) and Table 2 (paired t-tests) of a reae_table1_* multirun.

    Keys: runs, output.
    """
    from analysis.reae_study import table1, table2  # scipy.stats: seconds to import, so only when needed

    runs = load_results(cfg.runs)
    text = (f"Table 1 ({len(runs)} runs)\n\n{table1(runs)}\n\n{STD_NOTE} Each repeat has its own seed, and its own "
            f"train/val/test split where the experiment sets data.split_seed: ${{seed}}.\n\n"
            f"Table 2: paired t-test over the seeds, alpha 0.05\n\n{table2(runs)}")
    return write_markdown(text, cfg, "reae_tables.md")


def reae_figure_task(x_key: str, series_key: str, name: str) -> Callable[[DictConfig], str]:
    def task(cfg: DictConfig) -> str:
        from analysis.reae_study import figure

        png = figures_folder(cfg, f"{name}.md") / f"{name}.png"
        runs = load_results(cfg.runs)
        for key in (x_key, series_key):
            if listed := [value for run in runs if isinstance(value := config_value(run["config"], key), list)]:
                raise ConfigError(f"Config key 'runs' is {cfg.runs!r}, whose runs give {key} as a list ({listed[0]}: "
                                  f"they choose it on a grid, as experiment=reae_table1_* runs do), but task={name} "
                                  f"plots one point per value; give the directory of an experiment={name}_* sweep.")
        text = figure(runs, x_key, series_key, png)
        if len(xs := {str(config_value(run["config"], x_key)) for run in runs}) == 1:
            text += (f"\n\nEvery line has one point: the runs share {x_key}={xs.pop()}, which the figure plots the "
                     f"accuracy against (an experiment={name}_* sweep varies it).")
        return write_markdown(f"{text}\n\n{STD_NOTE} The error bars are the same.\n\n![{name}]({png.name})", cfg,
                              f"{name}.md")

    task.__doc__ = f"""Figure of test accuracy against {x_key}, one series per {series_key} ({name}.png + .md).

    Keys: runs, output.
    """
    return task


def first_paragraph(docstring: str) -> str:
    """A docstring's first paragraph on one line (what --help shows of a task)."""
    return " ".join(docstring.strip().split("\n\n")[0].split())


# The docstrings of analysis/szegedy_study.py's functions, for --help, read from the file: importing it imports torch
SZEGEDY_DOCSTRINGS = {node.name: ast.get_docstring(node) for node in
                      ast.parse((Path(__file__).parent / "analysis" / "szegedy_study.py").read_text()).body
                      if isinstance(node, ast.FunctionDef)}


def szegedy_task(study: str, name: str, figures: bool = False) -> Callable[[DictConfig], str]:
    """The Szegedy et al. study ``study`` (a function of analysis/szegedy_study.py); figures go next to the markdown."""

    def task(cfg: DictConfig) -> str:
        from analysis import szegedy_study

        run = getattr(szegedy_study, study)
        return write_markdown(run(cfg, figures_folder(cfg, f"{name}.md")) if figures else run(cfg), cfg, f"{name}.md")

    summary = first_paragraph(SZEGEDY_DOCSTRINGS[study] or name)
    task.__doc__ = f"""{summary}

    Keys: runs, szegedy, data_dir, output.
    """
    return task


def perceptual_table1_task(cfg: DictConfig) -> str:
    """Table I of the feature-prediction paper: probe performance per procedure and dataset at z = 128.

    Keys: runs, output.
    """
    from analysis import perceptual_study

    runs = perceptual_study.with_later_probes(load_results(cfg.runs))
    z = perceptual_study.TABLE1_Z
    text = f"Table I ({len(runs)} runs, z = {z})\n\n{perceptual_study.table1(runs, z)}"
    return write_markdown(text, cfg, "perceptual_table1.md")


def perceptual_figures_task(cfg: DictConfig) -> str:
    """Figures 6-8: probe performance against training time per epoch, one point per z (PNG per dataset).

    Keys: runs, output.
    """
    from analysis import perceptual_study

    figures = figures_folder(cfg, "perceptual_figures.md")
    runs = perceptual_study.with_later_probes(load_results(cfg.runs))
    return write_markdown(perceptual_study.figure(runs, figures), cfg, "perceptual_figures.md")


def perceptual_probe_task(cfg: DictConfig) -> str:
    """The embedding probes on finished runs' best checkpoints (each run of runs=...); writes probe.json in each.

    Keys: runs, output.
    """
    return write_markdown("\n".join(probe_run(run) for run in load_results(cfg.runs)), cfg, "probe.md")


def probe_run(run: dict) -> str:
    """One run's probe line; its probe.json goes into the run directory."""
    import torch

    from callbacks.embedding_probe import EmbeddingProbe
    from framework.construction import instantiate_node
    from framework.results import run_checkpoint, write_json_atomic

    run_cfg = OmegaConf.load(Path(run["path"]) / ".hydra" / "config.yaml")
    checkpoint = str(run_checkpoint(run))
    if not Path(checkpoint).is_file():
        raise ConfigError(f"Checkpoint {checkpoint} does not exist; give a run directory with checkpoints.")
    trained_against = OmegaConf.select(run_cfg, "model.loss_network.weights")
    if trained_against is not None:  # its tensors are in the checkpoint: the file it came from may be gone
        run_cfg.model.loss_network.weights = "random"
    model = instantiate_node(run_cfg.model, "model")
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    if getattr(model, "loss_network_weights", None) is not None:
        model.loss_network_weights = str(trained_against)  # what probe.json reports the run was trained against
    probe = run_cfg.callbacks.get("probe") or {}
    data = instantiate_node(probe.data if probe.get("data") else run_cfg.data, "data")
    options = {key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value  # seed: ${seed}, resolved
               for key, value in probe.items() if key not in ("_target_", "data")}
    result = EmbeddingProbe(**options).run(model, data)
    write_json_atomic(Path(run["path"]) / "probe.json", result | {"checkpoint": checkpoint})
    return (f"Probe of {checkpoint}: test {result['metric']} {result['test_metric']:.4f} (mean baseline "
            f"{result['baseline']:.4f}), hidden {result['hidden']}, loss network {result['loss_network_weights']}")


TASKS: dict[str, Callable[[DictConfig], str]] = {
    "table": table_task,
    "mi_lr_study": mi_lr_study_task,
    "mi_sample_size": mi_sample_size_task,
    "reae_table1": reae_table1_task,
    "reae_figure2": reae_figure_task("model.rho", "model.hidden_size", "reae_figure2"),
    "reae_figure3": reae_figure_task("model.hidden_size", "model.rho", "reae_figure3"),
    "szegedy_table1": szegedy_task("table1", "szegedy_table1"),
    "szegedy_table2": szegedy_task("table2", "szegedy_table2"),
    "szegedy_table34": szegedy_task("table34", "szegedy_table34"),
    "szegedy_table5": szegedy_task("table5", "szegedy_table5"),
    "szegedy_figure5": szegedy_task("figure5", "szegedy_figure5", figures=True),
    "szegedy_units": szegedy_task("figure_units", "szegedy_units", figures=True),
    "perceptual_table1": perceptual_table1_task,
    "perceptual_figures": perceptual_figures_task,
    "perceptual_probe": perceptual_probe_task,
}


def perceptual_table1_summarises(runs: list[dict]) -> bool:
    """Table I shows the probed runs at its z (128); of runs without one it refuses to make a table."""
    from analysis import perceptual_study

    return perceptual_study.has_probed_run_at(perceptual_study.with_later_probes(runs), perceptual_study.TABLE1_Z)


# The tasks that summarise only some runs (the others take any): a sweep's end offers such a task only for runs it
# summarises (framework/stopping.py, evaluate_commands).
SUMMARISES: dict[str, Callable[[list[dict]], bool]] = {"perceptual_table1": perceptual_table1_summarises}


def evaluate(cfg: DictConfig) -> str:
    if cfg.task not in TASKS:
        raise ConfigError(f"Config key 'task' is {cfg.task!r}, but it must be one of {', '.join(TASKS)}.")
    task = TASKS[cfg.task]
    check_read_by(task, cfg)
    check_rules(cfg)
    check_study_device(cfg)
    if "runs" not in task_keys(task):  # a study of data, not of runs (mi_sample_size)
        check_missing_values(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "runs"]))
        return task(cfg)
    if OmegaConf.is_missing(cfg, "runs"):
        raise ConfigError(f"Config key 'runs' is not set; name a run or multirun directory, e.g. {EXAMPLE}")
    if cfg.runs is None or cfg.runs == "" or cfg.runs == []:  # runs=0: a sweep's job folder
        raise ConfigError(f"Config key 'runs' is {cfg.runs!r}, which names no run; name a run or multirun directory, "
                          f"e.g. {EXAMPLE}")
    check_missing_values(cfg)
    check_studied_runs(cfg, load_results(cfg.runs))  # no results.json, or none a study reads: one sentence first
    return task(cfg)


def check_read_by(task: Callable, cfg: DictConfig) -> None:
    """A key given another value than conf/evaluate.yaml's that the task does not read (``metrics=[val/acc]`` to
    task=reae_table1, which tables test accuracy) is one sentence: the task ran as if it had not been given."""
    defaults = OmegaConf.load(CONF / "evaluate.yaml")
    for key in ("metrics", "group_by", "data_dir", "szegedy", "mi_sample_size"):
        if key not in task_keys(task) and cfg.get(key) != defaults.get(key):
            readers = [name for name, other in TASKS.items() if key in task_keys(other)]
            raise ConfigError(f"Config key '{key}' is {OmegaConf.to_container(cfg)[key]!r}, but task={cfg.task} "
                              f"does not read it (it reads {', '.join(task_keys(task))}); leave it out, or give it "
                              f"to a task that reads it ({', '.join(readers)}).")


def task_keys(task: Callable) -> list[str]:
    """The keys named on the ``Keys:`` line of a task's docstring."""
    found = re.search(r"^\s*Keys:\s*(.+?)\.?\s*$", task.__doc__ or "", re.MULTILINE)
    return [key.strip() for key in found.group(1).split(",")] if found else []


def help_text() -> str:
    """``--help``: the tasks, each with its keys, and every key's default and meaning from conf/evaluate.yaml."""
    described, parents, last = {}, [], None  # parents: (indentation, key) of the keys that hold the current one
    for line in (Path(__file__).parent / "conf" / "evaluate.yaml").read_text().splitlines():
        entry = re.match(r"^( *)(\w+):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if entry and (entry.group(4) is not None or parents):  # a documented key, or one inside a documented key
            indent, key, value, comment = len(entry.group(1)), entry.group(2), entry.group(3), entry.group(4) or ""
            parents = [(depth, name) for depth, name in parents if depth < indent]
            last = ".".join([*(name for _, name in parents), key])
            described[last] = f"{'  ' * len(parents)}{last}{'=' + value if value else ':'}  {comment}".rstrip()
            parents.append((indent, key))
        elif last and (continued := re.match(r"^\s+#\s*(.*)$", line)):  # the comment goes on below its key
            described[last] += f" {continued.group(1)}"
        else:
            parents, last = [], None
    lines = ["Studies and tables on finished runs: python evaluate.py task=<task> runs=<dir> [key=value ...]",
             f"e.g. {EXAMPLE}", "", "Tasks (task=...; default table):"]
    for name, task in TASKS.items():
        summary = first_paragraph(task.__doc__ or "")
        lines += [f"  {name}: {summary}", f"      keys: {', '.join(task_keys(task)) or '(none documented)'}"]
    lines += ["", "Keys (conf/evaluate.yaml):", *(f"  {text}" for text in described.values())]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    # the user's mistake: one sentence, exit code 2 (framework/entry_point.py); `evaluate.py ... | head`: a quiet stop
    with stopping_quietly_when_stdout_closes(), reporting_user_errors():
        paths_from_start_dir(cfg, ("runs", "output", "data_dir", "paths.data_dir"))
        evaluate(cfg)


if __name__ == "__main__":
    if {"--help", "-h"} & set(sys.argv[1:]):
        with stopping_quietly_when_stdout_closes():
            print(help_text(), flush=True)  # buffered or not, a reader that is gone shows here, not at exit
        raise SystemExit(0)
    run_entry_point(main)

"""The second entry point: studies on finished runs and checkpoints, by named task.

    python evaluate.py runs=logs/train/multiruns/<stamp>                      # mean ± std table
    python evaluate.py runs=<dir> metrics=[test/acc] group_by=[model.optimizer.lr]

A task is a function ``(cfg) -> str`` (the markdown it wrote) registered in ``TASKS``;
later studies (attacks, probes, paper tables) plug in as new entries.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from analysis.mi_lr_study import study_table
from analysis.mi_sample_size import figure1
from analysis.reae_study import figure, table1, table2
from analysis.results_table import results_table
from framework.results import load_results


def write_markdown(text: str, cfg: DictConfig, default_name: str) -> str:
    runs = Path(cfg.runs)
    output = Path(cfg.output) if cfg.get("output") else (runs if runs.is_dir() else runs.parent) / default_name
    output.write_text(text + "\n")
    print(text)
    print(f"written to {output}")
    return text


def table_task(cfg: DictConfig) -> str:
    """Mean ± std of the chosen metrics over seeds, grouped by chosen config keys."""
    runs = load_results(cfg.runs)
    group_by = OmegaConf.to_container(cfg.group_by) if cfg.get("group_by") is not None else None
    return write_markdown(results_table(runs, list(cfg.metrics), group_by), cfg, "table.md")


def mi_lr_study_task(cfg: DictConfig) -> str:
    """Final/best accuracy, epoch reached and LR range of MI learning-rate runs (analysis/mi_lr_study.py)."""
    return write_markdown(study_table(cfg.runs), cfg, "mi_lr_study.md")


def mi_sample_size_task(cfg: DictConfig) -> str:
    """The MI paper's Figure 1: I(X; Y) against sample size, PNG and table (analysis/mi_sample_size.py)."""
    options = cfg.mi_sample_size
    output = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / "mi_sample_size.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    text = figure1(list(options.datasets), cfg.paths.data_dir, list(options.sizes), options.draws, options.estimator,
                   output.with_suffix(".png"))
    output.write_text(text + "\n")
    print(f"{text}\nwritten to {output}")
    return text


def reae_table1_task(cfg: DictConfig) -> str:
    """Table 1 (accuracy, chosen rho/lambda/tau) and Table 2 (paired t-tests) of a reae_table1_* multirun."""
    runs = load_results(cfg.runs)
    text = f"Table 1 ({len(runs)} runs)\n\n{table1(runs)}\n\nTable 2: paired t-test, alpha 0.05\n\n{table2(runs)}"
    return write_markdown(text, cfg, "reae_tables.md")


def reae_figure_task(x_key: str, series_key: str, name: str) -> Callable[[DictConfig], str]:
    def task(cfg: DictConfig) -> str:
        runs_dir = Path(cfg.runs) if Path(cfg.runs).is_dir() else Path(cfg.runs).parent
        png = runs_dir / f"{name}.png"
        text = figure(load_results(cfg.runs), x_key, series_key, png)
        return write_markdown(f"{text}\n\n![{name}]({png.name})", cfg, f"{name}.md")

    return task


TASKS: dict[str, Callable[[DictConfig], str]] = {
    "table": table_task,
    "mi_lr_study": mi_lr_study_task,
    "mi_sample_size": mi_sample_size_task,
    "reae_table1": reae_table1_task,
    "reae_figure2": reae_figure_task("model.rho", "model.hidden_size", "reae_figure2"),
    "reae_figure3": reae_figure_task("model.hidden_size", "model.rho", "reae_figure3"),
}


def evaluate(cfg: DictConfig) -> str:
    if cfg.task not in TASKS:
        raise KeyError(f"Config key 'task' is {cfg.task!r}, but it must be one of {sorted(TASKS)}.")
    return TASKS[cfg.task](cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except (KeyError, FileNotFoundError) as error:
        print(f"evaluate.py: {error.args[0]}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

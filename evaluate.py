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

from analysis import perceptual_study
from analysis.mi_lr_study import study_table
from analysis.reae_study import figure, table1, table2
from analysis.results_table import results_table
from framework.pretrained import PretrainedWeightsError
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


def perceptual_table1_task(cfg: DictConfig) -> str:
    """Table I of the feature-prediction paper: probe performance per procedure and dataset at z = 128."""
    runs = load_results(cfg.runs)
    text = f"Table I ({len(runs)} runs, z = 128)\n\n{perceptual_study.table1(runs, 128)}"
    return write_markdown(text, cfg, "perceptual_table1.md")


def perceptual_figures_task(cfg: DictConfig) -> str:
    """Figures 6-8: probe performance against training time per epoch, one point per z (PNG per dataset)."""
    runs_dir = Path(cfg.runs) if Path(cfg.runs).is_dir() else Path(cfg.runs).parent
    return write_markdown(perceptual_study.figure(load_results(cfg.runs), runs_dir), cfg, "perceptual_figures.md")


def perceptual_probe_task(cfg: DictConfig) -> str:
    """The embedding probes on a finished run's best checkpoint (runs=<run directory>); writes probe.json."""
    import torch
    from hydra.utils import instantiate

    from callbacks.embedding_probe import EmbeddingProbe
    from framework.results import write_json_atomic

    run = load_results(cfg.runs)[0]
    run_cfg = OmegaConf.load(Path(run["path"]) / ".hydra" / "config.yaml")
    checkpoint = run.get("best_checkpoint") or str(Path(run["path"]) / "checkpoints" / "last.ckpt")
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"Checkpoint {checkpoint} does not exist; give a run directory with checkpoints.")
    model = instantiate(run_cfg.model)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    options = OmegaConf.to_container(run_cfg.callbacks.probe, resolve=False) if "probe" in run_cfg.callbacks else {}
    data = instantiate(run_cfg.callbacks.probe.data if options.get("data") else run_cfg.data)
    options = {key: value for key, value in options.items() if key not in ("_target_", "data")}
    result = EmbeddingProbe(**options).run(model, data)
    write_json_atomic(Path(run["path"]) / "probe.json", result | {"checkpoint": checkpoint})
    text = (f"Probe of {checkpoint}: test {result['metric']} {result['test_metric']:.4f} (mean baseline "
            f"{result['baseline']:.4f}), hidden {result['hidden']}, loss network {result['loss_network_weights']}")
    return write_markdown(text, cfg, "probe.md")


TASKS: dict[str, Callable[[DictConfig], str]] = {
    "perceptual_table1": perceptual_table1_task,
    "perceptual_figures": perceptual_figures_task,
    "perceptual_probe": perceptual_probe_task,
    "table": table_task,
    "mi_lr_study": mi_lr_study_task,
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
    except (KeyError, FileNotFoundError, PretrainedWeightsError) as error:
        print(f"evaluate.py: {error.args[0]}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

"""The paper-style comparison table of MI learning-rate runs (Vasudevan 2018, Figs. 3-6).

For every job of a multirun directory, from its test accuracy after every epoch (the callback's
``test_every_epoch``; validation accuracy where a run has none): the end accuracy, the max
accuracy and the epochs it was reached at, the first epoch at which it reached the final
accuracy of the fixed-rate run *of the same seed and settings* (the paper's "X% was first obtained
at epoch N"; settings: the overrides other than the learning-rate policy and those that say how a
run ran, so runs=[digits sweep, MNIST sweep] compares each with its own sweep's fixed-rate run), the
range of learning rates it used and its wall time.

    python evaluate.py task=mi_lr_study runs=logs/mi_lr_digits_study/policies
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from analysis.results_table import HOW_IT_RAN, group_value, overridden_keys
from framework.errors import ConfigError
from framework.results import load_results


def validation_curve(run_dir: Path) -> dict[int, float]:
    """epoch -> val/acc from the run's CSV log."""
    curve = {}
    for path in run_dir.rglob("metrics.csv"):
        with open(path) as stream:
            for row in csv.DictReader(stream):
                if row.get("val/acc"):
                    curve[int(row["epoch"])] = float(row["val/acc"])
    return dict(sorted(curve.items()))


def run_overrides(results: dict) -> list[str]:
    """The overrides a row's label is made of (the seed has its own column)."""
    return [o for o in results.get("overrides", []) if not o.startswith(("hydra.", "seed="))]


def summarise(results: dict) -> dict:
    """A run's curve, best and final accuracy, learning-rate range and time (``results``: its results.json, with the
    run's folder as ``path``)."""
    run_dir = Path(results["path"])
    history_path = run_dir / "mi_lr_history.json"
    history = json.loads(history_path.read_text())["history"] if history_path.exists() else []
    curve = {r["epoch"]: r["test_acc"] for r in history if r.get("test_acc") is not None}
    source = "test"
    if not curve:
        curve, source = validation_curve(run_dir), "val"
    best = max(curve.values()) if curve else float("nan")
    lrs = [lr for record in history for lr in record["lr"].values()]
    return {
        "results": results, "path": str(run_dir), "overrides": run_overrides(results), "seed": results.get("seed"),
        "curve": curve, "source": source,
        "final": curve[max(curve)] if curve else float("nan"), "best": best,
        "best_epochs": [epoch for epoch, acc in curve.items() if acc == best],
        "lr_range": (min(lrs), max(lrs)) if lrs else None,
        "seconds": results.get("wall_seconds", float("nan")),
    }


def study_table(runs: str | Path, reference: str = "lr_policy=fixed") -> str:
    """Markdown table of every run below ``runs``, labelled by the overrides that differ between runs.
    'First reached' uses the final accuracy of the run with the override ``reference`` (the key as given, or its
    config group's choice) of the same seed and settings: the same values of every other overridden key, except
    those that say how a run ran (ckpt_path, ...)."""
    rows = [summarise(results) for results in load_results(runs)]
    policy_key, _, policy = reference.partition("=")
    setting_keys = overridden_keys([row["results"] for row in rows], exclude=(*HOW_IT_RAN, policy_key))
    shared = set.intersection(*(set(r["overrides"]) for r in rows))
    targets = {}
    for row in rows:
        row["label"] = " ".join(o for o in row["overrides"] if o not in shared) or "defaults"
        row["setting"] = (row["seed"], *(group_value(row["results"], key) for key in setting_keys))
        if group_value(row["results"], policy_key) == policy:
            if row["setting"] in targets:
                raise ConfigError(f"Config key 'runs' gives two {reference} runs of seed {row['seed']} with the same "
                                  f"settings ({targets[row['setting']]['path']}, {row['path']}); each run is compared "
                                  f"with the one of its seed and settings, so give one of them.")
            targets[row["setting"]] = row
    lines = [
        f"| run | seed | end acc | max acc (epochs) | first epoch >= the {reference} run's end acc (same seed and "
        f"settings) | LR range | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = targets.get(r["setting"])
        if target is None:
            reached = f"no {reference} run of seed {r['seed']}"
        else:
            reached = next((e for e, acc in r["curve"].items() if acc >= target["final"]), "never")
        lr_range = f"{r['lr_range'][0]:.4f}-{r['lr_range'][1]:.4f}" if r["lr_range"] else "—"
        epochs = ", ".join(map(str, r["best_epochs"]))
        lines.append(f"| {r['label']} | {r['seed']} | {r['final']:.4f} | {r['best']:.4f} ({epochs}) | {reached} | "
                     f"{lr_range} | {r['seconds']:.0f} |")
    sources = {r["source"] for r in rows}
    lines.append(f"\nAccuracies: {' and '.join(sorted(sources))} accuracy after each epoch "
                 "(test: the callback's test_every_epoch; val: runs without it). "
                 f"Every run: {' '.join(sorted(shared)) or 'no common overrides'}.")
    return "\n".join(lines)

"""The paper-style comparison table of MI learning-rate runs (Vasudevan 2018, Figs. 3-6).

For every job of a multirun directory: final and best validation accuracy (and the epoch of the
best), the first epoch at which it reached the reference run's final accuracy (the paper's "X%
was first obtained at epoch N"), test accuracy of the best checkpoint, the range of learning
rates it used and its wall time.

    python evaluate.py task=mi_lr_study runs=logs/mi_lr_digits_study/policies
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from framework.results import find_results


def validation_curve(run_dir: Path) -> dict[int, float]:
    """epoch -> val/acc from the run's CSV log."""
    curve = {}
    for path in run_dir.rglob("metrics.csv"):
        with open(path) as stream:
            for row in csv.DictReader(stream):
                if row.get("val/acc"):
                    curve[int(row["epoch"])] = float(row["val/acc"])
    return dict(sorted(curve.items()))


def run_label(results: dict) -> str:
    keep = [o for o in results.get("overrides", []) if not o.startswith(("experiment=", "hydra."))]
    return " ".join(keep) or "defaults"


def summarise(results_path: Path) -> dict:
    results = json.loads(results_path.read_text())
    run_dir = results_path.parent
    curve = validation_curve(run_dir)
    best_epoch = max(curve, key=lambda e: (curve[e], -e)) if curve else None
    history_path = run_dir / "mi_lr_history.json"
    lrs = []
    if history_path.exists():
        for record in json.loads(history_path.read_text())["history"]:
            lrs += list(record["lr"].values())
    return {
        "label": run_label(results), "curve": curve, "best_epoch": best_epoch,
        "final": curve[max(curve)] if curve else float("nan"),
        "best": curve[best_epoch] if curve else float("nan"),
        "test": results["metrics"].get("test/acc", float("nan")),
        "lr_range": (min(lrs), max(lrs)) if lrs else None,
        "seconds": results.get("wall_seconds", float("nan")),
    }


def study_table(runs: str | Path, reference: str = "lr_policy=fixed") -> str:
    """Markdown table of every run below ``runs``; 'reached' uses the final accuracy of the first
    run whose label starts with ``reference``."""
    rows = [summarise(path) for path in find_results(runs)]
    if not rows:
        raise FileNotFoundError(f"no results.json below {runs}; give a multirun directory of MI runs.")
    target = next((r["final"] for r in rows if r["label"].startswith(reference)), None)
    lines = [
        f"| run | final val acc | best val acc (epoch) | first epoch >= {reference} final | "
        "test acc (best ckpt) | LR range | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reached = next((e for e, acc in r["curve"].items() if target is not None and acc >= target), None)
        lr_range = f"{r['lr_range'][0]:.4f}-{r['lr_range'][1]:.4f}" if r["lr_range"] else "—"
        lines.append(f"| {r['label']} | {r['final']:.4f} | {r['best']:.4f} ({r['best_epoch']}) | "
                     f"{reached if reached is not None else 'never'} | {r['test']:.4f} | {lr_range} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)

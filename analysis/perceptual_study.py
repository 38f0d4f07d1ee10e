"""Table I and Figures 6-8 of the feature-prediction paper (seed 003) from finished runs' results.json.

Table I: the probe's test performance per procedure (rows) and dataset (columns), mean ± std over seeds,
at one z. Figures 6-8: performance against training time per epoch, one point per z, a line per procedure.
A run whose loss network had random weights is marked with "(random AlexNet)".
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from lightning_modules.perceptual_autoencoder import PROCEDURES

METRICS = {"probe/test_mean_distance": "mean distance (lower is better)", "probe/test_accuracy": "accuracy"}


def dataset_name(run: dict) -> str:
    return run["config"]["data"]["_target_"].rsplit(".", 1)[-1].removesuffix("DataModule")


def performance(run: dict) -> tuple[str, float] | None:
    for metric in METRICS:
        if metric in run["metrics"]:
            return metric, run["metrics"][metric]
    return None


def random_mark(runs: Sequence[dict]) -> str:
    return " (random AlexNet)" if any(r["metrics"].get("probe/random_loss_network") for r in runs) else ""


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f} (n={len(values)})"


def grouped(runs: Sequence[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """(dataset, procedure, z) -> the probed runs."""
    groups = defaultdict(list)
    for run in runs:
        if performance(run) is not None:
            model = run["config"]["model"]
            groups[dataset_name(run), model["procedure"], model["latent_dim"]].append(run)
    return groups


def table1(runs: Sequence[dict], latent_dim: int = 128) -> str:
    groups = {key: value for key, value in grouped(runs).items() if key[2] == latent_dim}
    datasets = sorted({key[0] for key in groups})
    metric_names = {d: METRICS[performance(next(v[0] for k, v in groups.items() if k[0] == d))[0]] for d in datasets}
    lines = ["| procedure | " + " | ".join(f"{d}: {metric_names[d]}" for d in datasets) + " |",
             "|---" * (len(datasets) + 1) + "|"]
    for procedure in PROCEDURES:
        cells = []
        for dataset in datasets:
            found = groups.get((dataset, procedure, latent_dim), [])
            cells.append(mean_std([performance(r)[1] for r in found]) + random_mark(found) if found else "–")
        lines.append(f"| {procedure} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def points(runs: Sequence[dict], dataset: str) -> dict[str, list[tuple[int, float, float]]]:
    """procedure -> [(z, seconds per epoch, performance)], means over seeds, sorted by z."""
    series = defaultdict(list)
    for (name, procedure, z), found in sorted(grouped(runs).items()):
        if name == dataset:
            seconds = statistics.mean(r["metrics"].get("train/epoch_seconds", float("nan")) for r in found)
            series[procedure].append((z, seconds, statistics.mean(performance(r)[1] for r in found)))
    return series


def figure(runs: Sequence[dict], output_dir: Path) -> str:
    """One PNG per dataset (Figures 6-8) and the markdown of their points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    for dataset in sorted({key[0] for key in grouped(runs)}):
        series = points(runs, dataset)
        metric = METRICS[performance(next(r for r in runs if dataset_name(r) == dataset))[0]]
        figure_, axes = plt.subplots(figsize=(6, 4))
        lines = ["| procedure | z | seconds per epoch | " + metric + " |", "|---|---|---|---|"]
        for procedure, values in series.items():
            axes.plot([v[1] for v in values], [v[2] for v in values], marker="o", label=procedure)
            lines += [f"| {procedure} | {z} | {s:.2f} | {p:.4f} |" for z, s, p in values]
        axes.set(xlabel="training time per epoch (s)", ylabel=metric, title=f"{dataset}{random_mark(runs)}")
        axes.legend()
        png = output_dir / f"perceptual_{dataset.lower()}.png"
        figure_.savefig(png, dpi=120, bbox_inches="tight")
        plt.close(figure_)
        sections.append(f"### {dataset}{random_mark(runs)}\n\n" + "\n".join(lines) + f"\n\n![{dataset}]({png.name})")
    return "\n\n".join(sections)

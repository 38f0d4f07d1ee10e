"""Table I and Figures 6-8 of the feature-prediction paper (seed 003) from finished runs' results.json.

Table I: the probe's test performance per procedure (rows) and dataset (columns), mean ± std over seeds,
at one z. Figures 6-8: performance against training time per epoch, one point per z, a line per procedure,
error bars on both axes. The std is the uncorrected (population) one, as the paper's ("the mean and
uncorrected sample standard deviation"). A run trained without the probe counts with the probe.json that
``task=perceptual_probe`` wrote into its folder. A run's training time per epoch is the mean over its epochs
(``train/epoch_seconds_mean``); runs from before that metric have only their last epoch's
(``train/epoch_seconds``), which is used and counted in a note. A run whose loss network had random weights
is marked with "(random AlexNet)".
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from analysis.results_table import check_one_run_per_seed, check_one_setting, spread
from framework.errors import ConfigError, DataError
from lightning_modules.perceptual_procedures import PROCEDURES

METRICS = {"probe/test_mean_distance": "mean distance (lower is better)", "probe/test_accuracy": "accuracy"}
SECONDS = "train/epoch_seconds_mean"  # the mean over a run's epochs
LAST_EPOCH_SECONDS = "train/epoch_seconds"  # the last epoch's: all that runs from before SECONDS have
TABLE1_Z = 128  # Table I's z, which the paper does not give: the middle of its grid {64, 128, 256}
STD_NOTE = "Mean ± uncorrected (population) standard deviation over the n seeds, as in the paper."


class Point(NamedTuple):
    """One procedure at one z: means and uncorrected stds over its n seeds."""

    z: int
    n: int
    seconds: float
    seconds_std: float
    performance: float
    performance_std: float


def dataset_name(run: dict) -> str:
    return run["config"]["data"]["_target_"].rsplit(".", 1)[-1].removesuffix("DataModule")


def z(run: dict) -> int:
    return run["config"]["model"]["latent_dim"]


def performance(run: dict) -> tuple[str, float] | None:
    for metric in METRICS:
        if metric in run["metrics"]:
            return metric, run["metrics"][metric]
    return None


def probe_metrics(result: dict) -> dict[str, float]:
    """What a probe's ``result`` (EmbeddingProbe.run's, probe.json's) logs and results.json keeps."""
    return {f"probe/test_{result['metric']}": result["test_metric"], "probe/val_loss": result["val_loss"],
            f"probe/baseline_{result['metric']}": result["baseline"],
            "probe/random_loss_network": float(result["loss_network_weights"] == "random")}


def with_later_probes(runs: Sequence[dict]) -> list[dict]:
    """The runs, those trained without a probe given the metrics of the probe.json that ``task=perceptual_probe``
    wrote into their folder since (a run's own probe metrics, from training, stay)."""
    completed = []
    for run in runs:
        later = Path(run["path"]) / "probe.json"
        if performance(run) is None and later.is_file():
            try:
                run = run | {"metrics": run["metrics"] | probe_metrics(json.loads(later.read_text()))}
            except (ValueError, KeyError, TypeError) as error:
                why = f"{type(error).__name__}: {error}"
                raise DataError(f"{later} is not a probe.json that task=perceptual_probe wrote ({why}); run "
                                f"task=perceptual_probe on {run['path']} again, or delete it.") from None
        completed.append(run)
    return completed


def has_probed_run_at(runs: Sequence[dict], latent_dim: int) -> bool:
    return any(performance(run) is not None and z(run) == latent_dim for run in runs)


def random_mark(runs: Sequence[dict]) -> str:
    return " (random AlexNet)" if any(r["metrics"].get("probe/random_loss_network") for r in runs) else ""


def epoch_seconds(run: dict) -> float:
    metrics = run["metrics"]
    return metrics.get(SECONDS, metrics.get(LAST_EPOCH_SECONDS, float("nan")))


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {spread(statistics.pstdev(values), len(values), 4)} (n={len(values)})"


def grouped(runs: Sequence[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """(dataset, procedure, z) -> the probed runs; runs of one cell that differ in another setting (epochs, loss
    network, data) are an error, not pooled."""
    groups = defaultdict(list)
    for run in runs:
        if performance(run) is not None:
            groups[dataset_name(run), run["config"]["model"]["procedure"], z(run)].append(run)
    shown, table = ["model.procedure", "model.latent_dim"], "a cell of Table I or a point of Figures 6-8"
    check_one_setting(groups.values(), shown=shown, table=table)
    check_one_run_per_seed(groups.values(), shown=shown, table=table)
    return groups


def left_out(runs: Sequence[dict], latent_dim: int) -> str:
    """The note on the runs that Table I at z = ``latent_dim`` does not show, and why; "" when it shows every run."""
    unprobed = [run.get("path", "?") for run in runs if performance(run) is None]
    other_z = [z(run) for run in runs if performance(run) is not None and z(run) != latent_dim]
    notes = []
    if unprobed:
        notes.append(f"{len(unprobed)} run(s) without probe metrics ({' or '.join(METRICS)}) in results.json: "
                     f"{', '.join(unprobed)}")
    if other_z:
        notes.append(f"{len(other_z)} run(s) at model.latent_dim {', '.join(map(str, sorted(set(other_z))))} (the "
                     f"table is at z = {latent_dim})")
    return f"\n\nLeft out: {'; '.join(notes)}." if notes else ""


def table1(runs: Sequence[dict], latent_dim: int = TABLE1_Z) -> str:
    """Markdown: the probe's performance per procedure (rows) and dataset (columns) at z = ``latent_dim``, with a
    note on the runs it leaves out."""
    groups = {key: value for key, value in grouped(runs).items() if key[2] == latent_dim}
    if not groups:
        have = ", ".join(map(str, sorted({z(run) for run in runs if performance(run) is not None})))
        why = f"the probed runs have model.latent_dim {have}" if have else f"no run has {' or '.join(METRICS)}"
        raise ConfigError(f"Config key 'runs' holds no probed run at model.latent_dim={latent_dim}, the z of Table I "
                          f"({why}); give runs= runs of model.latent_dim={latent_dim} with callbacks.probe, or use "
                          f"task=perceptual_figures, which plots every z.")
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
    return "\n".join(lines) + f"\n\n{STD_NOTE}" + left_out(runs, latent_dim)


def points(runs: Sequence[dict], dataset: str) -> dict[str, list[Point]]:
    """procedure -> its points (seconds per epoch and performance over seeds), sorted by z."""
    series = defaultdict(list)
    for (name, procedure, latent), found in sorted(grouped(runs).items()):
        if name == dataset:
            seconds = [epoch_seconds(r) for r in found]
            values = [performance(r)[1] for r in found]
            series[procedure].append(Point(latent, len(found), statistics.mean(seconds), statistics.pstdev(seconds),
                                           statistics.mean(values), statistics.pstdev(values)))
    return series


def seconds_note(runs: Sequence[dict]) -> str:
    """What the time axis is, and how many runs have only their last epoch's time."""
    older = sum(SECONDS not in r["metrics"] for r in runs)
    return ("Training time per epoch: the mean over each run's epochs" +
            (f"; {older} of {len(runs)} runs predate `{SECONDS}` and give their last epoch's." if older else "."))


def figure(runs: Sequence[dict], output_dir: Path) -> str:
    """One PNG per dataset (Figures 6-8) and the markdown of their points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    for dataset in sorted({key[0] for key in grouped(runs)}):
        series = points(runs, dataset)
        found = [r for r in runs if performance(r) is not None and dataset_name(r) == dataset]
        metric = METRICS[performance(found[0])[0]]  # grouped() keeps probed runs alone, so found has one
        figure_, axes = plt.subplots(figsize=(6, 4))
        lines = ["| procedure | z | n | seconds per epoch | " + metric + " |", "|---|---|---|---|---|"]
        for procedure, values in series.items():
            axes.errorbar([v.seconds for v in values], [v.performance for v in values],
                          xerr=[v.seconds_std for v in values], yerr=[v.performance_std for v in values],
                          marker="o", capsize=3, label=procedure)
            lines += [f"| {procedure} | {v.z} | {v.n} | {v.seconds:.2f} ± {spread(v.seconds_std, v.n, 2)} | "
                      f"{v.performance:.4f} ± {spread(v.performance_std, v.n, 4)} |" for v in values]
        axes.set(xlabel="training time per epoch (s)", ylabel=metric, title=f"{dataset}{random_mark(found)}")
        axes.legend()
        png = output_dir / f"perceptual_{dataset.lower()}.png"
        figure_.savefig(png, dpi=120, bbox_inches="tight")
        plt.close(figure_)
        notes = f"{STD_NOTE} {seconds_note(found)}"
        sections.append(f"### {dataset}{random_mark(found)}\n\n" + "\n".join(lines) + f"\n\n{notes}\n\n"
                        f"![{dataset}]({png.name})")
    return "\n\n".join(sections)

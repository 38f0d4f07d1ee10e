"""The REAE paper's tables and figures from a multirun directory of forward-autoencoder runs.

    python train.py -m experiment=reae_table1_digits
    python evaluate.py task=reae_table1 runs=logs/train/multiruns/<stamp>     # Table 1 + Table 2 (markdown)
    python evaluate.py task=reae_figure2 runs=<dir>    # accuracy against rho, one line per hidden size (PNG)
    python evaluate.py task=reae_figure3 runs=<dir>    # accuracy against hidden size, one line per rho (PNG)

Every job already chose rho (REAE only), lambda and tau on its validation split and logged them as
``chosen/rho|lambda|tau``; the tables report the test accuracy over the repeats (seeds) and the
choices the repeats made most often. Table 2 pairs REAN with each baseline by seed (same data split,
same seed) and runs scipy's paired t-test.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from scipy.stats import ttest_rel

from analysis.results_table import (
    cell_order,
    check_one_run_per_seed,
    check_one_setting,
    config_value,
    mean_std,
    spread,
)
from framework.errors import ConfigError

NETWORK_NAMES = {"reae": "REAN", "pian": "PIAN", "ran": "RAN", "roan": "ROAN"}  # feature map -> paper's network name


def by_feature_map(runs: Sequence[dict], metric: str = "test/acc") -> dict[str, dict[int, dict]]:
    """{feature_map: {seed: run}} of the runs that logged ``metric``, in the paper's order. The repeats are paired by
    seed (Table 2), so runs that differ in another setting (hidden size, rho, experiment) and two runs of one network
    and seed (sweeps of overlapping seeds given together) are errors, not pooled or one of them silently kept."""
    measured = [run for run in runs if metric in run["metrics"]]
    check_one_setting([measured], shown=["model.feature_map"], table="the REAE tables")
    grouped: dict[str, dict[int, dict]] = defaultdict(dict)
    for run in measured:
        name, seed = config_value(run["config"], "model.feature_map"), run.get("seed")
        if seed in grouped[name]:
            raise ConfigError(f"Config key 'runs' gives two {NETWORK_NAMES.get(name, name)} runs of seed {seed} "
                              f"({grouped[name][seed].get('path')}, {run.get('path')}); the tables pair the "
                              f"networks' repeats by seed, so give one run per network and seed.")
        grouped[name][seed] = run
    return {name: grouped[name] for name in NETWORK_NAMES if name in grouped}


def most_common(values: list[float]) -> str:
    """The value chosen most often, with how often where the choices differ ("0.9 (5 of 10)"), and the others tied
    with it ("0.1, 0.5, 0.9 (1 each of 3)")."""
    values = [v for v in values if v == v]  # NaN: not chosen (rho of the baselines)
    if not values:
        return "—"
    counts = Counter(values).most_common()
    if len(counts) == 1:
        return f"{counts[0][0]:g}"
    tied = sorted(value for value, n in counts if n == counts[0][1])
    if len(tied) == 1:
        return f"{tied[0]:g} ({counts[0][1]} of {len(values)})"
    return f"{', '.join(f'{value:g}' for value in tied)} ({counts[0][1]} each of {len(values)})"


def table1(runs: Sequence[dict], metric: str = "test/acc") -> str:
    """Markdown: accuracy (%) mean ± std over seeds and the most often chosen rho, lambda, tau."""
    lines = ["| Network | Accuracy (%) | rho | lambda | tau | repeats |", "|---|---|---|---|---|---|"]
    for name, members in by_feature_map(runs, metric).items():
        mean, std = mean_std([100 * run["metrics"][metric] for run in members.values()])
        chosen = [most_common([run["metrics"].get(f"chosen/{key}", float("nan")) for run in members.values()])
                  for key in ("rho", "lambda", "tau")]
        lines.append(f"| {NETWORK_NAMES[name]} | {mean:.2f} ± {spread(std, len(members), 2)} | {' | '.join(chosen)} | "
                     f"{len(members)} |")
    return "\n".join(lines)


def table2(runs: Sequence[dict], metric: str = "test/acc", alpha: float = 0.05) -> str:
    """Markdown: paired t-test of REAN against each baseline over the seeds both ran (H = 1: p < alpha), and a line
    for each baseline it cannot test, or for a table without rows, saying why."""
    grouped = by_feature_map(runs, metric)
    lines = ["| REAN vs | H | P | pairs |", "|---|---|---|---|"]
    reference = grouped.get("reae", {})
    baselines = {name: members for name, members in grouped.items() if name != "reae"}
    untested = []
    for name, members in baselines.items():
        seeds = sorted(set(reference) & set(members))
        if len(seeds) < 2:
            untested.append(f"{NETWORK_NAMES[name]} ({len(seeds)} seed{'' if len(seeds) == 1 else 's'} in common with "
                            f"REAN; the paired t-test needs 2)")
            continue
        rean, other = ([group[s]["metrics"][metric] for s in seeds] for group in (reference, members))
        p_value = float(ttest_rel(rean, other).pvalue)
        hypothesis = int(p_value < alpha) if p_value == p_value else 0  # NaN when all differences are equal
        lines.append(f"| {NETWORK_NAMES[name]} | {hypothesis} | {p_value:.3g} | {len(seeds)} |")
    if not reference or not baselines:
        missing = "REAN" if not reference else "baseline (PIAN, RAN, ROAN)"
        lines.append(f"\nNo row: the runs hold no {missing} run with {metric}, and Table 2 tests REAN against each "
                     f"baseline.")
    elif untested:
        lines.append(f"\nNot tested: {'; '.join(untested)}.")
    return "\n".join(lines)


def curves(runs: Sequence[dict], x_key: str, series_key: str, metric: str = "test/acc"):
    """{series value: [(x, mean, std, repeats), ...] sorted by x} of ``metric`` over seeds."""
    measured = [run for run in runs if metric in run["metrics"]]
    check_one_setting([measured], shown=[x_key, series_key], table="the figure")
    points: dict = defaultdict(lambda: defaultdict(list))
    for run in measured:
        points[config_value(run["config"], series_key)][config_value(run["config"], x_key)].append(run)
    check_one_run_per_seed([runs for by_x in points.values() for runs in by_x.values()], [x_key, series_key],
                           "the figure")
    return {series: [(x, *mean_std([run["metrics"][metric] for run in runs]), len(runs))
                     for x, runs in sorted(by_x.items())]
            for series, by_x in sorted(points.items(), key=lambda item: cell_order(str(item[0])))}


def figure(runs: Sequence[dict], x_key: str, series_key: str, output: Path, metric: str = "test/acc") -> str:
    """Accuracy (%) against ``x_key``, one line per ``series_key`` value, as a PNG; returns the points as markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(runs, x_key, series_key, metric)
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = [f"| {series_key} | {x_key} | {metric} (%) | repeats |", "|---|---|---|---|"]
    for series, points in data.items():
        xs, means, stds = [p[0] for p in points], [100 * p[1] for p in points], [100 * p[2] for p in points]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"{series_key.split('.')[-1]} = {series}")
        lines += [f"| {series} | {x:g} | {m:.2f} ± {spread(s, p[3], 2)} | {p[3]} |"
                  for x, m, s, p in zip(xs, means, stds, points, strict=True)]
    ax.set_xlabel(x_key.split(".")[-1])
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return "\n".join(lines)

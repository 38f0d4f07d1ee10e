"""The paper's Figure 1 (Vasudevan 2018): I(X; Y) of the input pixels and the labels against the sample
size, mean ± std over seeded class-balanced draws, for every dataset whose files are there.

    python evaluate.py task=mi_sample_size mi_sample_size.datasets=[mnist,cifar10]

X is the raw pixels scaled to [0, 1], flattened; Y the labels; the estimator is the callback's (Ross by
default, the paper's KSG with ``mi_sample_size.estimator=ksg``), on draws made by the callback's
``balanced_subsample`` from the training split. Writes mi_sample_size.png and mi_sample_size.md.
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.results_table import spread
from callbacks.mutual_information import MutualInformationLR, balanced_subsample
from datamodules.base import DatasetMissingError
from datamodules.cifar10 import CIFAR10DataModule
from datamodules.mnist import MNISTDataModule
from framework.errors import ConfigError

DATASETS = {"mnist": MNISTDataModule, "cifar10": CIFAR10DataModule}


def mi_against_sample_size(images: torch.Tensor, labels: torch.Tensor, sizes: list[int], draws: int,
                           estimator: str = "ross", k: int = 3) -> dict[int, tuple[float, float]]:
    """{size: (mean, std over ``draws``)} of I(X; Y) on class-balanced draws of ``size`` samples (draw d: seed d)."""
    mi = MutualInformationLR(estimator=estimator, k=k).mi
    curve = {}
    for size in sizes:
        values = []
        for draw in range(draws):
            chosen = balanced_subsample(labels, size, seed=draw)
            values.append(mi(images[chosen].reshape(len(chosen), -1).double() / 255, labels[chosen]))
        curve[size] = (float(np.mean(values)), float(np.std(values, ddof=1)) if draws > 1 else 0.0)
    return curve


def plot_curves(curves: dict[str, dict[int, tuple[float, float]]], path, estimator: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for axis, (name, curve) in zip(axes[0], curves.items(), strict=True):
        sizes = list(curve)
        axis.errorbar(sizes, [curve[s][0] for s in sizes], yerr=[curve[s][1] for s in sizes], marker="o", capsize=3)
        axis.set(xscale="log", xlabel="sample size", ylabel=f"I(X; Y) [nats], {estimator}", title=name)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def figure1(datasets: list[str], data_dir: str, sizes: list[int], draws: int, estimator: str, png) -> str:
    """Curves for every dataset in ``datasets`` whose files are under ``data_dir``; the markdown table."""
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown:
        raise ConfigError(f"Config key 'mi_sample_size.datasets' has {unknown}, which Figure 1 does not cover; use "
                          f"some of {sorted(DATASETS)}.")
    curves, skipped = {}, []
    for name in datasets:
        datamodule = DATASETS[name](data_dir=data_dir)
        if datamodule.missing_files():
            skipped.append(f"{name} (no {datamodule.missing_files()[0]})")
            continue
        images, labels = datamodule.load_split("train")
        if max(sizes) > len(labels):
            raise ConfigError(f"Config key 'mi_sample_size.sizes' has {max(sizes)}, but {name}'s training split has "
                              f"{len(labels)} images; give sizes up to {len(labels)}.")
        curves[name] = mi_against_sample_size(images, labels, sizes, draws, estimator)
    if not curves:
        raise DatasetMissingError(f"mi_sample_size: no dataset files for {datasets} under data_dir={data_dir}: "
                                  f"missing {', '.join(skipped)}; put them there in their official layout.")
    plot_curves(curves, png, estimator)
    lines = [f"I(X; Y) of pixels and labels ({estimator}, k = 3), mean ± sample standard deviation (n - 1 in the "
             f"denominator) over {draws} draws", "",
             "| sample size | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for size in sizes:
        cells = " | ".join(f"{curve[size][0]:.3f} ± {spread(curve[size][1], draws, 3)}" for curve in curves.values())
        lines.append(f"| {size} | {cells} |")
    if skipped:
        lines.append(f"\nSkipped: {', '.join(skipped)}.")
    return "\n".join(lines) + f"\n\n![Figure 1]({png.name})"

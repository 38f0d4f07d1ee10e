"""Ross vs KSG for I(H; Y) with discrete labels: the measurement behind the callback's default estimator.

Gaussian class mixtures with a Monte-Carlo true value (10 classes, N = 1,000, d = 5 and 100), and MNIST
pixels (the callback's IXY) where the files are there. KSG is algorithm 1 between X and the one-hot labels
(max norm), as the paper uses it; both on the same jittered data, k = 3, no standardisation.

    python -m analysis.estimator_comparison [--mnist]     # --mnist: also MNIST, from $DATA_DIR (default ./data)
"""

from __future__ import annotations

import math
import os
import sys
import time

import torch

from analysis.mutual_information import ksg_mi, ross_mi
from callbacks.mutual_information import balanced_subsample


def mixture(n: int, means: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, len(means), (n,), generator=generator)
    return means[labels] + torch.randn(n, means.shape[1], generator=generator, dtype=torch.float64), labels


def mixture_truth(means: torch.Tensor, generator: torch.Generator, n: int = 200_000) -> float:
    """I(X; Y) = H(Y) - E[H(Y | x)] with exact posteriors (equal priors, unit covariance)."""
    x, _ = mixture(n, means, generator)
    log_posterior = torch.log_softmax(-0.5 * torch.cdist(x, means).pow(2), dim=1)
    return math.log(len(means)) + (log_posterior.exp() * log_posterior).sum(1).mean().item()


def both(x: torch.Tensor, labels: torch.Tensor) -> list[str]:
    cells = []
    for estimate in (lambda: ross_mi(x, labels, standardize=False),
                     lambda: ksg_mi(x, torch.nn.functional.one_hot(labels).double(), standardize=False)):
        started = time.perf_counter()
        value = estimate()
        cells.append(f"{value:.3f} ({time.perf_counter() - started:.2f} s)")
    return cells


def main(data_dir: str | None = None) -> None:
    """The table; MNIST's row too when ``data_dir`` is given (its files are checked first)."""
    if data_dir:
        from datamodules.mnist import MNISTDataModule

        mnist = MNISTDataModule(data_dir=data_dir)
        mnist.check_files()
    print("| data | true I | Ross (time) | KSG with one-hot Y (time) |\n|---|---|---|---|")
    generator = torch.Generator().manual_seed(1)
    for d, spread in ((5, 1.5), (100, 0.5)):
        means = spread * torch.randn(10, d, generator=generator, dtype=torch.float64)
        truth = mixture_truth(means, generator)
        print(f"| 10-class Gaussian mixture, d = {d} | {truth:.3f} | " + " | ".join(both(*mixture(1000, means,
                                                                                                   generator))) + " |")
    if data_dir:
        images, labels = mnist.load_split("train")
        chosen = balanced_subsample(labels, 1000, seed=0)
        x = images[chosen].reshape(1000, -1).double() / 255
        print("| MNIST pixels, 1,000 balanced (the callback's IXY) | — | " + " | ".join(both(x, labels[chosen])) + " |")


if __name__ == "__main__":
    from framework.entry_point import reporting_user_errors_outside_a_job

    with reporting_user_errors_outside_a_job():  # MNIST's files missing: one sentence, exit code 2
        main(os.environ.get("DATA_DIR", "data") if "--mnist" in sys.argv[1:] else None)

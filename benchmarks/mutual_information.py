"""Speed of the MI estimator and of the MI learning-rate callback, against named baselines in the same run.

1. Ross's estimate of I(X; Y) for N = 1,000 samples, d = 500, 10 classes: ours (torch, chunked
   pairwise distances) vs. the same estimate through scipy's cKDTree (per-class k-NN query, then a
   ball count over all points), and NPEET's KSG if it is installed. Target: >= 20x faster than cKDTree.
2. The callback's per-epoch cost (one measurement on 1,000 samples, every hooked layer) as a
   fraction of one LeNet-5 training epoch on MNIST-sized random data (60,000 training images, 32x32,
   batch 64 by default). Target: <= 5%.

Both sides get the same number of threads (torch's, the default unless OMP_NUM_THREADS says otherwise;
the cKDTree queries get as many workers; ours runs problems this small on one of them, see
``SERIAL_ELEMENTS``); every time is the median of 9 calls after 3 warm-up calls, ours and the baseline
taking turns (epochs: the median of all but the first).

    python benchmarks/mutual_information.py [--epochs 3] [--batch-size 64] [--device cpu]
    python benchmarks/mutual_information.py --smoke     # does it run? (seconds: SMOKE's sizes)

The last line is one JSON object with "benchmark", "ratio" (cKDTree time / ours) and "overhead".
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.mutual_information import prepare, ross_mi  # noqa: E402
from benchmarks.summary import at_least, parse_benchmark_args, positive, timed  # noqa: E402
from callbacks.mutual_information import MutualInformationLR  # noqa: E402
from datamodules.random import RandomImagesDataModule  # noqa: E402
from framework.errors import require_usable_gpu  # noqa: E402
from lightning_modules.classifier import ClassificationModule  # noqa: E402
from lightning_modules.lenet5 import LeNet5  # noqa: E402

# Sizes without a flag: the estimator's N x d and timed calls, the training images (10% held out: 60,000 train, as
# MNIST's training set) and the callback's sample. --smoke replaces them and the flags' defaults by SMOKE.
SIZES = {"samples": 1000, "dims": 500, "repeats": 9, "num_train": 66_667, "sample_size": 1000}
SMOKE = {"samples": 200, "dims": 20, "repeats": 1, "num_train": 700, "sample_size": 200, "epochs": 2}


def ross_mi_ckdtree(x: np.ndarray, labels: np.ndarray, k: int = 3, workers: int = 1) -> float:
    """The baseline: Ross's estimator with scipy k-d trees (Euclidean), no ties assumed."""
    n = len(x)
    radius, class_sizes = np.empty(n), np.empty(n)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        # The first neighbour is the point itself.
        distances, _ = cKDTree(x[members]).query(x[members], k=k + 1, workers=workers)
        radius[members], class_sizes[members] = distances[:, -1], len(members)
    # Widen by 1e-9 relative: the two trees round the same distance differently, and the k-th
    # neighbour itself must be counted.
    within = cKDTree(x).query_ball_point(x, radius * (1 + 1e-9), return_length=True, workers=workers) - 1
    return float(digamma(n) - digamma(class_sizes).mean() + digamma(k) - digamma(within).mean())


def median_times(functions: dict, repeats: int, warmups: int = 3) -> dict[str, tuple[float, object]]:
    """{name: (median wall time over ``repeats`` calls, the result)}: ``warmups`` untimed calls each
    (the allocator settles), then the functions take turns, so that all see the same load."""
    times = {name: [] for name in functions}
    for _ in range(warmups):
        results = {name: function() for name, function in functions.items()}
    for _ in range(repeats):
        for name, function in functions.items():
            elapsed, results[name] = timed(function)
            times[name].append(elapsed)
    return {name: (float(np.median(times[name])), results[name]) for name in functions}


def estimator_benchmark(device: str, samples: int, dims: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    means = 0.3 * torch.randn(10, dims, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    x = means[labels] + torch.randn(samples, dims, generator=generator)
    prepared = prepare(x, standardize=False)  # both get the same jittered float64 data
    threads = torch.get_num_threads()  # the baseline gets as many workers as torch has threads
    timings = median_times({
        "ours": lambda: ross_mi(prepared.to(device), labels, standardize=False, jitter=0),
        "ckdtree": lambda: ross_mi_ckdtree(prepared.numpy(), labels.numpy(), workers=threads),
    }, repeats=repeats)
    (ours_time, ours), (tree_time, tree) = timings["ours"], timings["ckdtree"]
    print(f"Ross N={samples} d={dims} euclidean: ours {ours_time:.4f} s ({ours:.6f} nats), "
          f"cKDTree {tree_time:.4f} s ({tree:.6f} nats), ratio {tree_time / ours_time:.1f}x")
    ranked_in_float64 = ross_mi(prepared.to(device), labels, standardize=False, jitter=0, ranking=torch.float64)
    for name, value in (("cKDTree", tree), ("ours ranked in float64", ranked_in_float64)):
        if abs(ours - value) > 1e-9:
            raise AssertionError(f"ours and {name} disagree: {ours} vs {value}")
    result = {"ours_s": ours_time, "ckdtree_s": tree_time, "estimate_nats": ours}
    if importlib.util.find_spec("npeet") is None:
        print("NPEET is not installed: its KSG timing is skipped.")
    else:
        from npeet import entropy_estimators as ee

        onehot = np.eye(10)[labels.numpy()]
        npeet_time, npeet = median_times({"npeet": lambda: ee.mi(prepared.numpy(), onehot, k=3, base=np.e)}, 3)["npeet"]
        print(f"NPEET mi(x, onehot): {npeet_time:.4f} s ({npeet:.4f} nats)")
        result["npeet_s"] = npeet_time
    return result


class EpochTimer(L.Callback):
    """Wall time of each training epoch, from after the MI callback's work to the epoch's end."""

    def __init__(self):
        self.times, self.started = [], 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self.started)


class TimedMutualInformationLR(MutualInformationLR):
    """The callback, timing its per-epoch work (measurement, policy, broadcast, logging)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.times = []

    def on_train_epoch_start(self, trainer, pl_module):
        started = time.perf_counter()
        super().on_train_epoch_start(trainer, pl_module)
        self.times.append(time.perf_counter() - started)


def overhead_benchmark(epochs: int, batch_size: int, device: str, num_train: int, sample_size: int) -> dict:
    torch.manual_seed(0)
    datamodule = RandomImagesDataModule(num_train=num_train, num_test=100, batch_size=batch_size, val_fraction=0.1)
    model = ClassificationModule(LeNet5(), functools.partial(torch.optim.SGD, lr=0.01))
    callback, timer = TimedMutualInformationLR(sample_size=sample_size, plot=False), EpochTimer()
    with tempfile.TemporaryDirectory() as run_dir:  # the callback writes its history there
        trainer = L.Trainer(max_epochs=epochs, callbacks=[callback, timer], accelerator=device, devices=1,
                            limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir)
        trainer.fit(model, datamodule)
    # The first measurement also draws the subsample; report the steady state (median of the later epochs).
    callback_time, epoch_time = float(np.median(callback.times[1:])), float(np.median(timer.times[1:]))
    print(f"LeNet-5 epoch on {len(datamodule.train_dataloader().dataset):,} random 32x32 images, batch {batch_size}: "
          f"{epoch_time:.2f} s; callback: {callback_time:.3f} s (first epoch {callback.times[0]:.3f} s); "
          f"overhead {callback_time / epoch_time:.1%}")
    return {"epoch_s": epoch_time, "callback_s": callback_time, "overhead": callback_time / epoch_time}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=at_least(2, 0), default=3,
                        help="at least 2 (the first is not timed); 0: the estimator only, no training")
    parser.add_argument("--batch-size", type=positive, default=64,
                        help="training batch size (64: the framework's default)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main() -> None:
    args = parse_benchmark_args(build_parser(), SMOKE, SIZES)
    require_usable_gpu(args.device)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    estimator = estimator_benchmark(args.device, args.samples, args.dims, args.repeats)
    # --epochs 0: the estimator only (the overhead part trains 3 epochs on 60,000 images: minutes on a busy CPU)
    overhead = (overhead_benchmark(args.epochs, args.batch_size, args.device, args.num_train, args.sample_size)
                if args.epochs else {"overhead": None})
    print(json.dumps({
        "benchmark": "mutual_information",
        "ratio": round(estimator["ckdtree_s"] / estimator["ours_s"], 2),
        "target": "ratio >= 20, overhead <= 0.05",
        "overhead": overhead["overhead"] and round(overhead["overhead"], 4),
        "baseline": "Ross estimator through scipy cKDTree (ratio); one LeNet-5 training epoch (overhead)",
        "device": args.device, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        **{key: round(value, 4) for key, value in {**estimator, **overhead}.items() if key != "overhead"},
        **({"smoke": True} if args.smoke else {}),
    }))


if __name__ == "__main__":
    main()

"""What a user of `experiment=reae_mnist` waits for: one complete solve, the new path against the sequential one.

    python benchmarks/forward_autoencoder.py                          # real MNIST: 60,000 x 784, J = 750, 8 x 8
    python benchmarks/forward_autoencoder.py --baseline-lambdas 8     # the whole baseline (~1 h)
    python benchmarks/forward_autoencoder.py --synthetic --samples 5000   # a quick look, no dataset
    python benchmarks/forward_autoencoder.py --smoke                  # does it run? (seconds, synthetic, J = 32)

One REAE run with one rho, as `python train.py experiment=reae_mnist model.rho=0.2 model.refit=false` solves
it: KL descent, H, the lambda path (one eigendecomposition), and for each of the 8 lambdas the encoder
features and the classifiers of all 8 taus, each scored on the held-out split. New:
ForwardAutoencoderModule.solve on the default device, float32 features and ONE batched L-BFGS problem for
all taus, timed end to end. Baseline: the former sequential path, kept only here: float64 on the CPU, the
KL descent and H once, then per lambda its own decoder solve and one scipy L-BFGS-B fit per tau (descending,
warm-started). The lambdas are independent of each other, so the baseline times the shared part once and
``--baseline-lambdas k`` of the 8 lambdas (default 1, lambda = 1e-2: 3 minutes at two threads on this quiet
2-core machine, 9 at one thread under load), and scales their per-lambda time to all 8 (the JSON says so). The
new path runs just before and just after the baseline and the ratio divides by their mean (``--repeats`` such
rounds: their median), so load that changes while the baseline runs reaches both sides;
accuracy_difference compares the best held-out accuracy over the cells both ran (each cell scored on the
held-out images: a check that the solvers agree, chosen on those images, so no Table 1 figure). Inputs: real MNIST from
``--mnist DATA_DIR`` (default: the DATA_DIR environment variable, else ./data; fetched like `data.download=true`
when missing), the 10,000 test images held out. ``--synthetic``: MNIST-like inputs (19 % of the pixels nonzero,
uniform in [0, 1]) with labels of a noisy random linear teacher, 20 % extra samples held out; its classifiers
converge in far fewer L-BFGS steps than MNIST's (the new path: 18.6 s against 44.5 s on MNIST, both in `make
bench` on 2 quiet cores), so it is no stand-in for the timing.
Targets: ratio >= 10 on a CPU, the grid <= 600 s on 2 cores (<= 60 s on a GPU), accuracy within 0.2 points.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.forward_autoencoder import (  # noqa: E402
    LAMBDA_GRID,
    accuracy,
    decoder_transpose,
    encode,
    feature_map,
    fit_softmax,
    hidden,
    random_map,
)
from benchmarks.summary import bracketed, parse_benchmark_args, positive, rounds_shown  # noqa: E402
from datamodules.mnist import MNISTDataModule  # noqa: E402
from framework.errors import DataError, report, require_usable_gpu  # noqa: E402
from lightning_modules.forward_autoencoder import ForwardAutoencoderModule  # noqa: E402

SMOKE = {"synthetic": True, "samples": 300, "hidden": 32}  # --smoke's defaults; the grid stays 8 x 8


def synthetic(samples: int, inputs: int, generator: torch.Generator):
    X = torch.rand(samples, inputs, generator=generator) * (torch.rand(samples, inputs, generator=generator) < 0.19)
    teacher = torch.randn(inputs, 10, generator=generator)
    y = (X @ teacher + 0.5 * torch.randn(samples, 10, generator=generator)).argmax(1)
    return X.double(), y


def mnist(data_dir: str, split: str = "train"):
    """MNIST's training (60,000) or test (10,000) images as [N, 784] pixels in [0, 1], and their labels."""
    MNISTDataModule(data_dir=data_dir, download=True).prepare_data()  # fetched once where missing
    raw = Path(data_dir) / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    images = np.fromfile(raw / f"{prefix}-images-idx3-ubyte", dtype=np.uint8)[16:].reshape(-1, 784)
    labels = np.fromfile(raw / f"{prefix}-labels-idx1-ubyte", dtype=np.uint8)[8:]
    return torch.from_numpy(images).double() / 255, torch.from_numpy(labels).long()


def sequential(X, y, X_val, y_val, hidden_size, rho, lambdas, taus, seed):
    """The former path: float64 on the CPU, one decoder solve per lambda and one scipy fit per (lambda, tau).

    Returns {(lambda, tau): held-out accuracy}, the seconds of the shared part (KL descent, H) and of each lambda.
    """
    started = time.perf_counter()
    X, X_val = X.cpu().double(), X_val.cpu().double()
    draw = random_map(X.shape[1], hidden_size, torch.Generator().manual_seed(seed))
    weight, bias = feature_map("reae", X, draw, rho=rho, seed=seed)
    H = hidden(X, weight, bias)
    shared_seconds, lambda_seconds, scores = time.perf_counter() - started, [], {}
    for lam in lambdas:
        started = time.perf_counter()
        encoder = decoder_transpose(H, X, lam)
        features, val_features = encode(X, encoder), encode(X_val, encoder)
        warm = None
        for tau in sorted(taus, reverse=True):
            warm = fit_softmax(features, y, tau, 10, init=warm[:2] if warm else None)
            scores[lam, tau] = accuracy(val_features, y_val, warm[0], warm[1])
        lambda_seconds.append(time.perf_counter() - started)
    return scores, shared_seconds, lambda_seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=positive, default=60_000, help="training samples (with --synthetic)")
    parser.add_argument("--inputs", type=positive, default=784)
    parser.add_argument("--hidden", type=positive, default=750)
    parser.add_argument("--mnist", metavar="DATA_DIR", default=os.environ.get("DATA_DIR", str(ROOT / "data")),
                        help="real MNIST from DATA_DIR/MNIST/raw: 60,000 training, the 10,000 test images held out")
    parser.add_argument("--synthetic", action="store_true", help="MNIST-like synthetic data instead of MNIST")
    parser.add_argument("--baseline-lambdas", type=positive, default=1,
                        help="lambdas the sequential baseline runs (1: 1e-2; k: every 8/k-th from 1e-2; 8: all); "
                        "its per-lambda time is scaled to all 8")
    parser.add_argument("--repeats", type=positive, default=1,
                        help="rounds of (new path, baseline, new path); the ratio is their median")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main() -> None:
    args = parse_benchmark_args(build_parser(), SMOKE)
    require_usable_gpu(args.device)
    generator = torch.Generator().manual_seed(0)
    if not args.synthetic:
        try:
            (X, y), (X_val, y_val) = mnist(args.mnist), mnist(args.mnist, "test")
        except DataError as error:  # one sentence naming the files, the sources tried and the remedy
            print(f"{report(error).rstrip('.')}; or run it with --synthetic.", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        X_all, y_all = synthetic(args.samples * 6 // 5, args.inputs, generator)
        X, y, X_val, y_val = X_all[: args.samples], y_all[: args.samples], X_all[args.samples :], y_all[args.samples :]
    rho, lambdas, taus = 0.2, list(LAMBDA_GRID), list(LAMBDA_GRID)
    threads = torch.get_num_threads()
    print(f"{len(X)} x {X.shape[1]} training, {len(X_val)} held out, J = {args.hidden}, {len(lambdas)} x {len(taus)} "
          f"grid, one rho; device {args.device}, torch threads {threads}")

    module = ForwardAutoencoderModule(hidden_size=args.hidden, rho=rho, lambdas=lambdas, taus=taus, refit=False)

    def new_path():
        result = module.solve(X.to(args.device), y.to(args.device), X_val.to(args.device), y_val.to(args.device),
                              draw_seed=0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return result

    step = max(1, len(lambdas) // args.baseline_lambdas)
    baseline_lambdas = (lambdas[3:] + lambdas[:3])[::step][: args.baseline_lambdas]  # from 1e-2, evenly spaced
    extrapolated = len(baseline_lambdas) < len(lambdas)
    scaled_to_all_lambdas = lambda result, _: result[1] + sum(result[2]) * len(lambdas) / len(baseline_lambdas)
    timing = bracketed(new_path, lambda: sequential(X, y, X_val, y_val, args.hidden, rho, baseline_lambdas, taus, 0),
                       args.repeats, scaled_to_all_lambdas)
    best, (scores, shared_seconds, lambda_seconds) = timing["fast_result"], timing["slow_result"]
    grid_seconds, baseline_seconds, ratio = timing["fast_seconds"], timing["slow_seconds"], timing["ratio"]
    print(f"new path: {grid_seconds:.1f} s (the mean of the runs before and after the baseline), best held-out "
          f"accuracy {100 * best['val_acc']:.2f} % (lambda {best['lambda']:g}, tau {best['tau']:g})")
    new_best = max(best["scores"][rho, lam, tau] for lam in baseline_lambdas for tau in taus)
    difference = 100 * (new_best - max(scores.values()))
    cells = max(abs(best["scores"][rho, lam, tau] - scores[lam, tau]) for lam, tau in scores)
    note = f" (lambdas {baseline_lambdas} timed, scaled to {len(lambdas)})" if extrapolated else ""
    print(f"sequential scipy path: {baseline_seconds:.1f} s{note}: shared {shared_seconds:.1f} s, per lambda "
          f"{', '.join(f'{t:.1f}' for t in lambda_seconds)} s; ratio {ratio:.1f}{rounds_shown(timing)} (target >= 10); "
          f"best held-out accuracy over the shared cells: new - sequential = {difference:+.2f} points "
          f"(largest single-cell difference {100 * cells:.2f})")
    print(json.dumps({
        "benchmark": "forward_autoencoder",
        "ratio": round(ratio, 2),
        "grid_seconds": round(grid_seconds, 1),
        "baseline_seconds": round(baseline_seconds, 1),
        "ratio_of": f"the baseline's seconds over the mean of two runs of the new path just before and just after it; "
                    f"median over {args.repeats} such round(s)",
        "accuracy_difference": round(difference, 3),
        "abs_accuracy_difference": round(abs(difference), 3),
        # the whole grid: <= 600 s on 2 CPU cores, <= 60 s on one GPU
        "target": f"ratio >= 10, grid_seconds <= {600 if args.device == 'cpu' else 60}, abs_accuracy_difference <= 0.2",
        "baseline": "former sequential path: float64 features on the CPU, one scipy L-BFGS-B fit per (lambda, tau)"
        + (f", lambdas {baseline_lambdas} timed, per-lambda time scaled to {len(lambdas)}" if extrapolated else ""),
        "samples": len(X),
        "data": "synthetic" if args.synthetic else "mnist",
        "device": args.device,
        "threads": threads,
        **({"smoke": True} if args.smoke else {}),
    }))


if __name__ == "__main__":
    main()

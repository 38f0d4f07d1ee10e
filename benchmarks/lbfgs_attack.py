"""The batched L-BFGS attack against the per-example scipy L-BFGS-B loop, on real MNIST, in the same run.

    uv run python benchmarks/lbfgs_attack.py          # trains FC100-100-10 first (MNIST fetched once when missing)
    uv run python benchmarks/lbfgs_attack.py --run logs/szegedy_zoo/lbfgs/3            # an existing FC100 run
    uv run python benchmarks/lbfgs_attack.py --smoke    # does it run? (seconds: the bundled digits at 28x28, no MNIST)

100 MNIST test images, runner-up targets, the same objective and the same c search (analysis/lbfgs_attack.py)
for both: ``attack_rows`` (all rows at once, per-row histories and steps) and ``scipy_reference_rows`` (one
scipy L-BFGS-B call per row and c, as cleverhans 3 / foolbox 2 did). The batched attack runs just before and just
after the scipy loop and the ratio divides by their mean (``--repeats`` such rounds: their median), so load that
changes while the loop runs reaches both sides. Target: ratio >= 5 at a mean distortion
within 5% (distortion_ratio in [0.95, 1.05]).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.lbfgs_attack import attack_rows, choose_targets, distortion, scipy_reference_rows
from analysis.szegedy_study import load_runs
from benchmarks.summary import bracketed, parse_benchmark_args, positive, rounds_shown
from framework.compose import compose_config
from framework.errors import UserError, report

TRAINING = ["data.download=true", "data.train_size=5000", "trainer.max_epochs=4"]
# --smoke: these defaults (c from 0.01 to 100: every row finds an adversarial), and FC100 trained for one L-BFGS
# step on scikit-learn's bundled digits at MNIST's 28x28
SMOKE = {"examples": 10, "c_steps": 5}
RATIO_OF = ("the scipy loop's seconds over the mean of two batched attacks run just before and just after it; median "
            "over {repeats} such round(s)")
SMOKE_TRAINING = ["data=digits", "data.image_size=28", "trainer.max_epochs=1"]


def train_fc100(output: Path, training: list[str]) -> Path:
    """A CPU-sized FC100-100-10 (``TRAINING``: 5,000 MNIST images, 4 full-batch L-BFGS steps of 50 iterations)."""
    from framework.training import train

    data_dir = os.environ.get("DATA_DIR", str(Path(__file__).resolve().parents[1] / "data"))
    cfg = compose_config([f"paths.data_dir={data_dir}", "experiment=szegedy_fc100", *training,
                          "callbacks.progress_bar.refresh_rate=0"], output)
    train(cfg)
    return output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run directory of a trained szegedy_fc100 (default: train one here)")
    parser.add_argument("--examples", type=positive, default=100, help="MNIST test images attacked (those the model "
                        "classifies correctly)")
    parser.add_argument("--c-steps", type=positive, default=8, help="rounds of the c search, from c = 0.01")
    parser.add_argument("--repeats", type=positive, default=1, help="rounds of (batched, scipy, batched); the ratio is "
                        "their median (docs/attacks.md gives the rounds' measured times)")
    return parser


def mean_distortion(adversarial: torch.Tensor, x0: torch.Tensor, found: torch.Tensor) -> float | None:
    """The mean distortion of the adversarial examples found; None when none was (a mean of none is NaN, which
    the JSON line cannot hold)."""
    return float(distortion(adversarial, x0)[found].mean()) if found.any() else None


def shown(value: float | None, spec: str) -> str:
    return "n/a (no adversarial example found)" if value is None else format(value, spec)


def main() -> None:
    args = parse_benchmark_args(build_parser(), SMOKE)
    torch.manual_seed(0)
    # the FC100 trained here (~30 MB: checkpoints, logs) goes with the folder, however the run ends
    with tempfile.TemporaryDirectory(prefix="lbfgs_bench_") as scratch:
        measure(args, scratch)


def measure(args: argparse.Namespace, scratch: str) -> None:
    if args.run and not Path(args.run, "results.json").is_file():
        what = "has no results.json" if Path(args.run).is_dir() else "does not exist"
        print(f"benchmarks/lbfgs_attack.py: --run {args.run} {what}, so it is no finished run's output directory; give "
              f"that of a python train.py experiment=szegedy_fc100 run, or leave --run out to train one here.",
              file=sys.stderr)
        raise SystemExit(2)
    try:
        training = SMOKE_TRAINING if args.smoke else TRAINING
        run_dir = Path(args.run) if args.run else train_fc100(Path(scratch), training)
        run = load_runs(str(run_dir))[0]
        images, labels = run.images("test", args.examples)
    except UserError as error:  # --run: no run or no checkpoint there; MNIST missing: one sentence with the remedy
        print(report(error), file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError as error:
        print(f"benchmarks/lbfgs_attack.py: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    model = run.model(torch.device("cpu"))
    correct = model(images).argmax(1) == labels
    if not correct.any():
        print(f"benchmarks/lbfgs_attack.py: the run in {run.path} classifies none of the first {args.examples} test "
              f"images correctly, so there is nothing to attack; give a trained --run, or more --examples.",
              file=sys.stderr)
        raise SystemExit(2)
    x0, target = images[correct].flatten(1), choose_targets(model, images, labels, "runner_up")[correct]
    shape = images.shape[1:]
    print(f"{run.name} from {run.path}: {len(x0)} of {args.examples} test images correctly classified, runner-up "
          f"targets, {args.c_steps} c steps, torch threads = {torch.get_num_threads()}")

    timing = bracketed(lambda: attack_rows(model, x0, target, shape, 0.01, args.c_steps, True),
                       lambda: scipy_reference_rows(model, x0, target, shape, 0.01, args.c_steps, True), args.repeats)
    (ours, _, ours_ok), (reference, _, reference_ok) = timing["fast_result"], timing["slow_result"]
    batched_seconds, scipy_seconds, ratio = timing["fast_seconds"], timing["slow_seconds"], timing["ratio"]

    ours_distortion = mean_distortion(ours, x0, ours_ok)
    reference_distortion = mean_distortion(reference, x0, reference_ok)
    distortion_ratio = None if None in (ours_distortion, reference_distortion) else \
        ours_distortion / reference_distortion
    print(f"batched: {batched_seconds:.2f} s, {int(ours_ok.sum())}/{len(x0)} adversarial, mean distortion "
          f"{shown(ours_distortion, '.4f')}")
    print(f"per-example scipy L-BFGS-B: {scipy_seconds:.2f} s, {int(reference_ok.sum())}/{len(x0)} adversarial, "
          f"mean distortion {shown(reference_distortion, '.4f')}")
    print(f"ratio {ratio:.1f}x{rounds_shown(timing)} (target >= 5), distortion ratio "
          f"{shown(distortion_ratio, '.3f')} (target 0.95..1.05)")
    print(json.dumps({
        "benchmark": "lbfgs_attack",
        "ratio": round(ratio, 2),
        "distortion_ratio": None if distortion_ratio is None else round(distortion_ratio, 4),
        "target": "ratio >= 5, distortion_ratio >= 0.95, distortion_ratio <= 1.05",
        "baseline": "per-example scipy L-BFGS-B loop, same objective and c search",
        "batched_seconds": round(batched_seconds, 3),
        "baseline_seconds": round(scipy_seconds, 3),
        "ratio_of": RATIO_OF.format(repeats=args.repeats),
        "examples": int(len(x0)),
        "threads": torch.get_num_threads(),
        **({"smoke": True} if args.smoke else {}),
    }))


if __name__ == "__main__":
    main()

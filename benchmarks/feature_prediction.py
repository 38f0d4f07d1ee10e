"""Training time per epoch of the six feature-prediction procedures, same data, batch and device, one run.

The paper: the FP procedures take 55-75% of the PS procedures' time. Targets: I-F-FP / I-I-PS <= 0.75 and
F-F-FP / F-I-PS <= 0.75 (the baselines are the PS procedures). Data: random 64x64 images (the time does not
depend on the pixels); the authors' batch of 512 and Adam by default. The six models are built once; after a
warm-up epoch each, ``--repeats`` rounds time one epoch of every procedure in turn (interleaved, so a shared
machine's load falls on all of them alike) and the median per procedure counts. Each line also gives the part
of the epoch spent in the optimizer step. ``--adam for-loop`` times torch's per-parameter Adam instead of the
fused one the module uses. Last line: one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/feature_prediction.py                      # 1,024 frames, batch 512
    OMP_NUM_THREADS=1 python benchmarks/feature_prediction.py --batch-size 64 --frames 256 --adam for-loop
    python benchmarks/feature_prediction.py --device cuda --frames 8192            # needs: gpu
    OMP_NUM_THREADS=1 python benchmarks/feature_prediction.py --smoke              # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.summary import parse_benchmark_args, positive  # noqa: E402
from framework.errors import UserError, report, require_usable_gpu  # noqa: E402
from lightning_modules.perceptual_autoencoder import PerceptualAutoencoderModule  # noqa: E402
from lightning_modules.perceptual_procedures import PROCEDURES  # noqa: E402

ADAM = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
SMOKE = {"frames": 8, "batch_size": 4, "repeats": 1, "weights": "random"}  # --smoke's defaults


class Timed:
    """One procedure's model and optimizer; ``epoch()`` trains one epoch and returns (seconds, step seconds)."""

    def __init__(self, procedure: str, images: torch.Tensor, batch_size: int, weights: str, adam: str):
        optimizer = functools.partial(torch.optim.Adam, lr=1e-3, **ADAM[adam])
        self.model = PerceptualAutoencoderModule(procedure, latent_dim=128, loss_network={"weights": weights},
                                                 optimizer=optimizer).to(images.device).train()
        self.optimizer = self.model.configure_optimizers()
        self.batches = images.split(batch_size)

    def sync(self) -> float:
        if self.batches[0].is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def epoch(self) -> tuple[float, float]:
        step_seconds, started = 0.0, self.sync()
        for batch in self.batches:
            self.optimizer.zero_grad(set_to_none=True)
            self.model.losses(batch)["loss"].backward()
            before_step = self.sync()
            self.optimizer.step()
            step_seconds += self.sync() - before_step
        return self.sync() - started, step_seconds


def loss_network_weights(text: str) -> str:
    if text not in ("imagenet", "random") and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is none of imagenet, random and a checkpoint file")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--frames", type=positive, default=1024)
    parser.add_argument("--batch-size", type=positive, default=512, help="the authors': 512")
    parser.add_argument("--repeats", type=positive, default=3)
    parser.add_argument("--adam", choices=list(ADAM), default="fused")
    parser.add_argument("--weights", type=loss_network_weights, default="imagenet",
                        help="imagenet | random | a checkpoint file (the time is the same)")
    return parser


def main() -> None:
    args = parse_benchmark_args(build_parser(), SMOKE)
    require_usable_gpu(args.device)
    torch.manual_seed(0)
    images = torch.rand(args.frames, 3, 64, 64, device=args.device)
    try:
        timed = {name: Timed(name, images, args.batch_size, args.weights, args.adam) for name in PROCEDURES}
    except UserError as error:  # --weights: ImageNet weights that cannot be had, a checkpoint that does not fit
        print(report(error), file=sys.stderr)
        raise SystemExit(2) from None
    for procedure in timed.values():
        procedure.epoch()  # warm-up: allocation, kernels, the optimizer's state
    rounds = [{name: procedure.epoch() for name, procedure in timed.items()} for _ in range(args.repeats)]
    seconds = {name: statistics.median(r[name][0] for r in rounds) for name in PROCEDURES}
    step = {name: statistics.median(r[name][1] for r in rounds) for name in PROCEDURES}
    for name in PROCEDURES:
        print(f"{name}: {seconds[name]:.3f} s/epoch, of which optimizer step {step[name]:.3f} s "
              f"({args.frames} frames, batch {args.batch_size}, Adam {args.adam}, {args.device}, "
              f"median of {args.repeats})")
    image_ratio, feature_ratio = seconds["I-F-FP"] / seconds["I-I-PS"], seconds["F-F-FP"] / seconds["F-I-PS"]
    print(json.dumps({"benchmark": "feature_prediction", "ratio_I-F-FP_over_I-I-PS": round(image_ratio, 3),
                      "ratio_F-F-FP_over_F-I-PS": round(feature_ratio, 3),
                      "ratio": round(max(image_ratio, feature_ratio), 3),
                      "target": "<= 0.75", "baseline": "I-I-PS and F-I-PS (perceptual similarity)",
                      "threads": torch.get_num_threads(), "device": args.device, "batch_size": args.batch_size,
                      "adam": args.adam, "seconds_per_epoch": {k: round(v, 3) for k, v in seconds.items()},
                      "optimizer_step_seconds": {k: round(v, 3) for k, v in step.items()},
                      **({"smoke": True} if args.smoke else {})}))


if __name__ == "__main__":
    main()

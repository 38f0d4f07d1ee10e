"""Training time per epoch of the six feature-prediction procedures, same data, batch and device, one run.

The paper: the FP procedures take 55-75% of the PS procedures' time. Targets: I-F-FP / I-I-PS <= 0.75 and
F-F-FP / F-I-PS <= 0.75 (the baselines are the PS procedures). Data: random 64x64 images (the time does not
depend on the pixels). Last line: one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/feature_prediction.py --frames 256 --batch-size 64
    python benchmarks/feature_prediction.py --device cuda --frames 8192 --batch-size 512   # needs: gpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.perceptual_autoencoder import PROCEDURES, PerceptualAutoencoderModule  # noqa: E402


def epoch_seconds(procedure: str, images: torch.Tensor, batch_size: int, weights: str, epochs: int) -> float:
    model = PerceptualAutoencoderModule(procedure, latent_dim=128, loss_network={"weights": weights})
    model = model.to(images.device).train()
    optimizer = model.configure_optimizers()

    def epoch():
        for batch in images.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            model.losses(batch)["loss"].backward()
            optimizer.step()
        if images.is_cuda:
            torch.cuda.synchronize()

    epoch()  # warm-up: allocation, kernels
    started = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return (time.perf_counter() - started) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--weights", default="imagenet", help="imagenet | random (the time is the same)")
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(args.frames, 3, 64, 64, device=args.device)
    seconds = {name: epoch_seconds(name, images, args.batch_size, args.weights, args.epochs) for name in PROCEDURES}
    for name, value in seconds.items():
        print(f"{name}: {value:.3f} s/epoch ({args.frames} frames, batch {args.batch_size}, {args.device})")
    image_ratio, feature_ratio = seconds["I-F-FP"] / seconds["I-I-PS"], seconds["F-F-FP"] / seconds["F-I-PS"]
    print(json.dumps({"benchmark": "feature_prediction", "ratio_I-F-FP_over_I-I-PS": round(image_ratio, 3),
                      "ratio_F-F-FP_over_F-I-PS": round(feature_ratio, 3),
                      "ratio": round(max(image_ratio, feature_ratio), 3),
                      "target": "<= 0.75", "baseline": "I-I-PS and F-I-PS (perceptual similarity)",
                      "threads": torch.get_num_threads(), "device": args.device,
                      "seconds_per_epoch": {k: round(v, 3) for k, v in seconds.items()}}))


if __name__ == "__main__":
    main()

"""Framework overhead: one LeNet-5 epoch through train.py's machinery vs a hand-written PyTorch loop.

Both train the same modern LeNet-5 (the config defaults: SGD, lr 0.02, momentum 0.9, per-layer groups) for one epoch
on the same 60,000 seeded random 32x32 uint8 images in batches of 256, converting to float per
batch, in this process. The framework run is ``train.train(cfg)`` on the real configs (data,
model, callbacks, CSV logger, checkpointing, torchmetrics accuracy); validation and test are
switched off because the plain loop does neither.

The machine is shared, so wall-clock seconds swing by 2x between identical runs. On the CPU the ratio is
therefore taken on this process's CPU seconds with one intra-op thread (other processes do not
enter it), after a warm-up of both paths, as the median of five interleaved runs; wall
seconds are printed beside it. The ratio compares the epochs themselves: each path's fixed cost
(building the data, the model and, for the framework, composing the config and the Trainer) is
timed apart in the same repeat by running it with no training batch, subtracted, and reported as
``framework_fixed_seconds`` (the whole-run ratio is printed too). Target: ratio <= 1.10.

``--device cuda`` runs both on the GPU: the framework keeps the uint8 images on the device
(``data.on_device=auto``) and the plain loop indexes a device tensor with a device permutation. GPU
work is asynchronous, so that ratio is on wall seconds, each run ending with a synchronisation.
Target: ratio <= 1.15.

    uv run python benchmarks/overhead.py [--device cuda]
    uv run python benchmarks/overhead.py --smoke        # does it run? (seconds: SMOKE's sizes)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.summary import parse_benchmark_args  # noqa: E402
from datamodules.random import RandomImagesDataModule  # noqa: E402
from framework.compose import compose_config  # noqa: E402
from framework.errors import require_usable_gpu  # noqa: E402
from lightning_modules.classifier import layer_param_groups  # noqa: E402
from lightning_modules.lenet5 import LeNet5  # noqa: E402
from train import train  # noqa: E402

BATCH = 256
VAL_FRACTION = 0.1
# num_train: 60,000 after the 10% validation hold-out; the warm-up runs on warmup_train images. --smoke: SMOKE.
SIZES = {"num_train": 66_667, "warmup_train": 2_000, "repeats": 5}
SMOKE = {"num_train": 600, "warmup_train": 600, "repeats": 1}

TARGETS = {"cpu": 1.10, "cuda": 1.15}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(work, device: str) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) spent in ``work()``, GPU work included."""
    synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    synchronize(device)
    return time.process_time() - cpu, time.perf_counter() - wall


def framework_epoch(output_dir: Path, num_train: int, device: str = "cpu",
                    batches: int | None = None) -> None:
    """One epoch through train.train; ``batches=0`` runs everything but the training batches (the fixed cost)."""
    limit = [] if batches is None else [f"+trainer.limit_train_batches={batches}"]
    cfg = compose_config(
        ["data=random", f"data.num_train={num_train}", f"data.val_fraction={VAL_FRACTION}", f"data.batch_size={BATCH}",
         "trainer.max_epochs=1", "+trainer.limit_val_batches=0", "+trainer.num_sanity_val_steps=0",
         f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", "test=false", "optimized_metric=train/acc",
         "callbacks.progress_bar.refresh_rate=0", "callbacks.early_stopping.monitor=train/acc", "seed=0", *limit],
        output_dir,
    )
    train(cfg)


def plain_epoch(num_train: int, device: str = "cpu", batches: int | None = None) -> None:
    """One epoch of a hand-written loop; ``batches=0`` builds the data and the model only (the fixed cost)."""
    torch.manual_seed(0)
    datamodule = RandomImagesDataModule(num_train=num_train, val_fraction=VAL_FRACTION, batch_size=BATCH)
    datamodule.setup("fit")
    images = datamodule.datasets["train"].images.to(device)
    targets = datamodule.datasets["train"].targets.to(device)
    net = LeNet5().to(device)
    optimizer = torch.optim.SGD(layer_param_groups(net), lr=0.02, momentum=0.9)
    order = torch.randperm(len(images), device=device)
    stop = len(images) if batches is None else batches * BATCH
    for start in range(0, stop, BATCH):
        index = order[start : start + BATCH]
        x = images[index].float().div_(255.0)
        loss = F.cross_entropy(net(x), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=sorted(TARGETS), default="cpu")
    args = parse_benchmark_args(parser, SMOKE, SIZES)
    device = args.device
    require_usable_gpu(device)
    torch.set_num_threads(1)
    runs = ("plain", "plain_fixed", "framework", "framework_fixed")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    num_train, repeats = args.num_train, args.repeats
    with tempfile.TemporaryDirectory() as scratch:
        # warm-up: first-call allocations, imports, config composition
        plain_epoch(args.warmup_train, device=device)
        framework_epoch(Path(scratch) / "warmup", args.warmup_train, device=device)
        for repeat in range(repeats):
            work = {"plain": partial(plain_epoch, num_train, device=device),
                    "plain_fixed": partial(plain_epoch, num_train, device=device, batches=0),
                    "framework": partial(framework_epoch, Path(scratch) / f"run{repeat}", num_train, device=device),
                    "framework_fixed": partial(framework_epoch, Path(scratch) / f"fixed{repeat}", num_train,
                                               device=device, batches=0)}
            for name in runs if repeat % 2 == 0 else reversed(runs):
                times[name].append(measure(work[name], device))
            print(f"repeat {repeat}: " + ", ".join(
                f"{name} {times[name][-1][0]:.2f} CPU s / {times[name][-1][1]:.2f} wall s" for name in runs))
    unit = 0 if device == "cpu" else 1  # which of measure's (CPU, wall) seconds the ratio is taken on
    unit_name = "CPU" if device == "cpu" else "wall"

    def median(name: str, kind: int = unit) -> float:
        return statistics.median(t[kind] for t in times[name])

    def epoch_seconds(path: str) -> float:
        """Median over repeats of the whole run minus the same repeat's fixed cost."""
        return statistics.median(whole[unit] - fixed[unit]
                                 for whole, fixed in zip(times[path], times[f"{path}_fixed"], strict=True))

    ratio = epoch_seconds("framework") / epoch_seconds("plain")
    whole_ratio = median("framework") / median("plain")
    print(f"one epoch on {device}, {round(num_train * (1 - VAL_FRACTION)):,} images, batch {BATCH}, median of "
          f"{repeats} interleaved repeats, "
          f"{unit_name} seconds: framework epoch {epoch_seconds('framework'):.2f} s + fixed "
          f"{median('framework_fixed'):.2f} s, plain loop epoch {epoch_seconds('plain'):.2f} s + fixed "
          f"{median('plain_fixed'):.2f} s; ratio of the epochs {ratio:.3f} (target <= {TARGETS[device]:.2f}), "
          f"of the whole runs {whole_ratio:.3f}")
    print(json.dumps({
        "benchmark": "overhead", "device": device, "ratio": round(ratio, 4), "target": f"<= {TARGETS[device]:.2f}",
        "baseline": "hand-written PyTorch loop", "threads": torch.get_num_threads(),
        "ratio_of": f"{unit_name} seconds of one epoch, fixed costs apart",
        "framework_epoch_seconds": round(epoch_seconds("framework"), 3),
        "baseline_epoch_seconds": round(epoch_seconds("plain"), 3),
        "framework_fixed_seconds": round(median("framework_fixed"), 3),
        "whole_run_ratio": round(whole_ratio, 4),
        **({"smoke": True} if args.smoke else {}),
    }))


if __name__ == "__main__":
    main()

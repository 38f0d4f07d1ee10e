"""Framework overhead: one LeNet-5 epoch through train.py's machinery vs a hand-written PyTorch loop.

Both train the same modern LeNet-5 (SGD, lr 0.05, momentum 0.9, per-layer groups) for one epoch
on the same 60,000 seeded random 32x32 uint8 images in batches of 256, converting to float per
batch, in this process. The framework run is ``train.train(cfg)`` on the real configs (data,
model, callbacks, CSV logger, checkpointing, torchmetrics accuracy); validation and test are
switched off because the plain loop does neither. Each side runs ``REPEATS`` times,
alternating, and the fastest of each is compared. Target: ratio <= 1.10.

    uv run python benchmarks/overhead.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.random import RandomImagesDataModule  # noqa: E402
from lightning_modules.classifier import layer_param_groups  # noqa: E402
from lightning_modules.lenet5 import LeNet5  # noqa: E402
from tests.conftest import compose_config  # noqa: E402
from train import train  # noqa: E402

REPEATS = 2
BATCH = 256
VAL_FRACTION = 0.1
NUM_TRAIN = 66_667  # 60,000 after the 10% validation hold-out


def framework_epoch(output_dir: Path) -> float:
    cfg = compose_config(
        ["data=random", f"data.num_train={NUM_TRAIN}", f"data.val_fraction={VAL_FRACTION}", f"data.batch_size={BATCH}",
         "trainer.max_epochs=1", "+trainer.limit_val_batches=0", "+trainer.num_sanity_val_steps=0",
         "trainer.accelerator=cpu", "test=false", "optimized_metric=train/acc",
         "callbacks.progress_bar.refresh_rate=0", "callbacks.early_stopping.monitor=train/acc", "seed=0"],
        output_dir,
    )
    started = time.perf_counter()
    train(cfg)
    return time.perf_counter() - started


def plain_epoch() -> float:
    started = time.perf_counter()
    torch.manual_seed(0)
    datamodule = RandomImagesDataModule(num_train=NUM_TRAIN, val_fraction=VAL_FRACTION, batch_size=BATCH)
    datamodule.setup("fit")
    images, targets = datamodule.datasets["train"].images, datamodule.datasets["train"].targets
    net = LeNet5()
    optimizer = torch.optim.SGD(layer_param_groups(net), lr=0.05, momentum=0.9)
    order = torch.randperm(len(images))
    for start in range(0, len(images), BATCH):
        index = order[start : start + BATCH]
        x = images[index].float().div_(255.0)
        loss = F.cross_entropy(net(x), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    framework_times, plain_times = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(REPEATS):
            plain_times.append(plain_epoch())
            framework_times.append(framework_epoch(Path(scratch) / f"run{repeat}"))
            print(f"repeat {repeat}: plain loop {plain_times[-1]:.2f} s, framework {framework_times[-1]:.2f} s")
    ratio = min(framework_times) / min(plain_times)
    print(f"one epoch, 60,000 images, batch {BATCH}: framework {min(framework_times):.2f} s, "
          f"plain loop {min(plain_times):.2f} s, ratio {ratio:.3f} (target <= 1.10)")
    print(json.dumps({"benchmark": "overhead", "ratio": round(ratio, 4), "target": "<= 1.10",
                      "baseline": "hand-written PyTorch loop", "framework_seconds": round(min(framework_times), 3),
                      "baseline_seconds": round(min(plain_times), 3)}))


if __name__ == "__main__":
    main()

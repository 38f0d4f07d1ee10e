"""Send every PNG figure a run writes to the loggers that show images (wandb, TensorBoard), as it arrives.

Callbacks and studies only write PNG files into the run directory (mi_lr.png, reconstructions, attack grids,
...). This callback looks for new or changed PNGs under the run directory at the start and the end of every
training epoch (the start catches what other callbacks wrote at the previous epoch's end), at the end of
fitting and of testing, and logs each under ``figures/<path relative to the run, without .png>``. A figure is
read once per look, its RGB pixels both what tells it apart and what the loggers get; a file left as it was since
the last look (its modification time and size) is not read again, so a run that writes a figure every epoch does
not decode all of them at every look.
The loggers' own folders are skipped (wandb keeps copies of the images in its run folder).

    figures:
      _target_: callbacks.figures.FiguresToLoggers
      root: ${paths.output_dir}
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

SKIPPED_FOLDERS = frozenset({"wandb", "tensorboard", "checkpoints", "csv", ".hydra", ".submitit"})
# A file's modification time has the kernel's clock tick, so a rewrite in the tick of the read before it could leave
# the same time and size: a file modified this recently is read again at every look.
SETTLED_NS = 1_000_000_000


def log_figure(trainer: L.Trainer, pixels: np.ndarray, key: str) -> None:
    """Give one figure's RGB pixels to every logger that takes images."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[pixels], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, pixels, global_step=trainer.global_step, dataformats="HWC")


def read_pixels(path: Path) -> np.ndarray | None:
    """The figure's RGB pixels, read once for the digest and the loggers alike: under DDP every rank may write the
    same figure, and a file read while another rank rewrites it can decode to the same pixels from other bytes (a
    figure sent twice, when told apart by its bytes) or not decode at all. None while it cannot be read whole: the
    next look tries again; a file that never can is never sent."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError):  # PIL's errors for a truncated or unreadable file
        return None


class FiguresToLoggers(L.Callback):
    """What it sent is kept in checkpoints: a resumed run (a requeued job) sent every figure of its run again."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.sent: dict[str, str] = {}  # path relative to the run -> digest of the content that was logged
        self.read_at: dict[str, tuple[int, int]] = {}  # path -> (modification time, size) when last read whole

    def new_figures(self) -> list[tuple[str, np.ndarray]]:
        """(path relative to the run, pixels) of each figure whose pixels have not been sent."""
        found = []
        for path in sorted(self.root.rglob("*.png")):
            relative, name = path.relative_to(self.root), path.relative_to(self.root).as_posix()
            if not SKIPPED_FOLDERS.isdisjoint(relative.parts[:-1]):
                continue
            try:
                stat = path.stat()  # before the read: a write after it changes what the next look finds
            except FileNotFoundError:  # removed since the listing
                continue
            if self.read_at.get(name) == (stat.st_mtime_ns, stat.st_size):
                continue
            if (pixels := read_pixels(path)) is None:
                continue
            if time.time_ns() - stat.st_mtime_ns > SETTLED_NS:
                self.read_at[name] = (stat.st_mtime_ns, stat.st_size)
            digest = hashlib.sha1(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
            if self.sent.get(name) != digest:
                self.sent[name] = digest
                found.append((relative.with_suffix("").as_posix(), pixels))
        return found

    def state_dict(self) -> dict:
        return {"sent": dict(self.sent)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Added to what this process knows it sent: under trainer=ddp_sim the validation and test of the best
        checkpoint start from the fit's record and load that checkpoint's, which may be older."""
        self.sent.update(state_dict.get("sent", {}))

    def send(self, trainer: L.Trainer) -> None:
        takes_images = any(isinstance(logger, WandbLogger | TensorBoardLogger) for logger in trainer.loggers)
        if not trainer.is_global_zero or not takes_images or not self.root.is_dir():
            return
        for name, pixels in self.new_figures():
            log_figure(trainer, pixels, f"figures/{name}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)

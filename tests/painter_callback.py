"""A callback that writes a small PNG figure into the run directory at the end of every training epoch."""

from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Callback
from PIL import Image


def painting(epoch: int) -> np.ndarray:
    """A 12x16 RGB image that differs per epoch."""
    return np.random.default_rng(epoch).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


class PaintEveryEpoch(Callback):
    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer, pl_module):
        self.dirpath.mkdir(parents=True, exist_ok=True)
        Image.fromarray(painting(trainer.current_epoch)).save(self.dirpath / f"epoch_{trainer.current_epoch}.png")

"""MNIST from the IDX files torchvision downloads into ``<data_dir>/MNIST/raw``.

IDX layout (big-endian): a 4-byte magic number (0x00000803 for uint8 images with 3
dimensions, 0x00000801 for uint8 labels with 1 dimension), one 4-byte size per dimension,
then the raw bytes. Both the extracted files and their ``.gz`` archives are read.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from datamodules.base import DatasetCorruptError, InMemoryDataModule

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (or its .gz), checking the magic number and the announced size."""
    if not path.exists() and path.with_suffix(".gz").exists():
        path = path.with_suffix(".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DatasetCorruptError(
            f"{path} is not an IDX file of the expected kind (magic number {found}, expected {magic}); "
            f"delete it and download MNIST again."
        )
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise DatasetCorruptError(
            f"{path} is truncated or corrupt: its header announces {shape} = {expected} bytes but it holds "
            f"{len(data) - offset}; delete it and download MNIST again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


class MNISTDataModule(InMemoryDataModule):
    """28x28 digits; LeNet-5 configs set ``pad_to=32`` (the paper pads by 2 on each side)."""

    image_shape = (1, 28, 28)

    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def expected_files(self) -> list[Path]:
        names = [name for pair in FILES.values() for name in pair]
        return [self.raw_dir() / name for name in names]

    def missing_files(self) -> list[Path]:
        return [p for p in self.expected_files() if not p.exists() and not p.with_suffix(".gz").exists()]

    def download(self) -> None:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(str(self.data_dir), train=train, download=True)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image_file, label_file = FILES[split]
        images = read_idx(self.raw_dir() / image_file, IMAGE_MAGIC)
        labels = read_idx(self.raw_dir() / label_file, LABEL_MAGIC)
        if len(images) != len(labels):
            raise DatasetCorruptError(
                f"{self.raw_dir() / image_file} holds {len(images)} images but {label_file} holds "
                f"{len(labels)} labels; delete both and download MNIST again."
            )
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

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


PARTS = ("full", "P1", "P2")


class MNISTDataModule(InMemoryDataModule):
    """28x28 digits; LeNet-5 configs set ``pad_to=32`` (the paper pads by 2 on each side).

    ``train_part``: ``full`` (all 60,000 training images) or one of the two disjoint halves ``P1`` / ``P2``
    of Szegedy et al.'s cross-training-set study (30,000 each, drawn with ``part_seed``).
    ``train_size``: keep only the first N images of that part (in its seeded order), for CPU-sized runs.
    Both apply before the train/val split; the test split is always the full 10,000.
    """

    def __init__(self, train_part: str = "full", part_seed: int = 0, train_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if train_part not in PARTS:
            raise ValueError(f"Config key 'data.train_part' is {train_part!r}, but it must be one of "
                             f"{', '.join(PARTS)}.")
        self.train_part, self.part_seed, self.train_size = train_part, part_seed, train_size

    def part_indices(self, num_items: int) -> torch.Tensor:
        """Indices of the chosen training part: P1 and P2 are the two halves of one seeded permutation."""
        if self.train_part == "full" and self.train_size is None:
            return torch.arange(num_items)
        order = torch.randperm(num_items, generator=torch.Generator().manual_seed(self.part_seed))
        half = num_items // 2
        part = {"full": order, "P1": order[:half], "P2": order[half : 2 * half]}[self.train_part]
        return part[: self.train_size] if self.train_size is not None else part

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
        images, labels = torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        if split == "train":
            keep = self.part_indices(len(images))
            images, labels = images[keep], labels[keep]
        return images, labels

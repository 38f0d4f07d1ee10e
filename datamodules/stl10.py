"""STL-10 from the binary files torchvision downloads into ``<data_dir>/stl10_binary``.

``train_X.bin`` (5,000), ``test_X.bin`` (8,000) and ``unlabeled_X.bin`` (100,000 images) are raw
uint8, 3 x 96 x 96 per image, each channel stored column-major (MATLAB order), so the last two
axes are swapped after reading: without that the images come out transposed (the authors'
loader of the feature-prediction paper keeps them so by mistake). ``train_y.bin`` and
``test_y.bin`` hold one uint8 label 1..10 per image, mapped to 0..9; the unlabeled split gets -1.

    python train.py data=stl10 data.train_split=unlabeled   # autoencoder training on the 100k
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules.base import DatasetCorruptError, InMemoryDataModule

FOLDER = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
UNLABELED = -1


class STL10DataModule(InMemoryDataModule):
    """96x96 RGB photos in 10 classes plus 100,000 unlabeled ones (label -1)."""

    splits = ("train", "test", "unlabeled")
    image_shape = (3, SIDE, SIDE)

    @property
    def task(self) -> str:
        return "unlabeled" if self.train_split == "unlabeled" else "classification"

    def folder(self) -> Path:
        return self.data_dir / FOLDER

    def split_files(self, split: str) -> list[Path]:
        names = [f"{split}_X.bin"] + ([] if split == "unlabeled" else [f"{split}_y.bin"])
        return [self.folder() / name for name in names]

    def expected_files(self) -> list[Path]:
        splits = dict.fromkeys([self.train_split, self.test_split])
        return [path for split in splits for path in self.split_files(split)]

    def download(self) -> None:
        from torchvision.datasets import STL10
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(STL10.url, str(self.data_dir), filename=STL10.filename, md5=STL10.tgz_md5)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, *label_path = self.split_files(split)
        raw = np.fromfile(image_path, dtype=np.uint8)
        if raw.size == 0 or raw.size % IMAGE_BYTES:
            raise DatasetCorruptError(
                f"{image_path} holds {raw.size} bytes, which is not a whole number of {IMAGE_BYTES}-byte 3x96x96 "
                f"images; it is truncated or corrupt: delete it and download STL-10 again."
            )
        images = torch.from_numpy(raw.reshape(-1, 3, SIDE, SIDE)).transpose(2, 3)  # column-major -> upright
        if not label_path:
            return images, torch.full((len(images),), UNLABELED, dtype=torch.int64)
        labels = np.fromfile(label_path[0], dtype=np.uint8).astype(np.int64)
        if len(labels) != len(images) or labels.min(initial=1) < 1 or labels.max(initial=10) > 10:
            raise DatasetCorruptError(
                f"{label_path[0]} holds {len(labels)} labels (expected {len(images)}, each 1..10, one per image of "
                f"{image_path.name}); delete it and download STL-10 again."
            )
        return images, torch.from_numpy(labels - 1)

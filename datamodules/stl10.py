"""STL-10 from the binary files torchvision downloads into ``<data_dir>/stl10_binary``.

``train_X.bin`` (5,000), ``test_X.bin`` (8,000) and ``unlabeled_X.bin`` (100,000 images) are raw
uint8, 3 x 96 x 96 per image, each channel stored column-major (MATLAB order), so the last two
axes are swapped after reading: without that the images come out transposed (the authors'
loader of the feature-prediction paper keeps them so by mistake). ``train_y.bin`` and
``test_y.bin`` hold one uint8 label 1..10 per image, mapped to 0..9; the unlabeled split gets -1.
As in torchvision, ``train+unlabeled`` is the two concatenated, and ``folds=k`` (0..9) keeps of the
labelled training images the 1,000 of the k-th predefined fold: line k of ``fold_indices.txt``, zero-based
indices separated by spaces (STL-10's evaluation protocol trains on each fold and tests on all 8,000).

    python train.py data=stl10 data.train_split=unlabeled   # autoencoder training on the 100k
    python train.py data=stl10 data.folds=3                 # the 4th predefined fold of 1,000 labelled images
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from datamodules.base import DatasetCorruptError, InMemoryDataModule
from framework.errors import ConfigError

FOLDER = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
UNLABELED = -1
FOLDS = 10
OFFICIAL_IMAGES = {"train": 5_000, "test": 8_000, "unlabeled": 100_000}
T = TypeVar("T")
log = logging.getLogger(__name__)


def read_file(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)``, with a folder in the file's place, no permission or a binary fold file as one sentence."""
    try:
        return read(path)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise DatasetCorruptError(f"{path} cannot be read ({reason}); replace it with STL-10's file (delete it and "
                                  f"download STL-10 again).") from None


class STL10DataModule(InMemoryDataModule):
    """96x96 RGB photos in 10 classes plus 100,000 unlabeled ones (label -1)."""

    splits = ("train", "test", "unlabeled", "train+unlabeled")
    image_shape = (3, SIDE, SIDE)

    def __init__(self, folds: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if folds is not None and not (type(folds) is int and 0 <= folds < FOLDS):  # false is not "no folds"
            raise ConfigError(f"Config key 'data.folds' is {folds!r}, but it must be one of the predefined training "
                              f"folds 0..{FOLDS - 1}, or null for all 5,000 labelled training images.")
        if folds is not None and "train" not in self.train_split.split("+"):
            raise ConfigError(f"Config key 'data.folds' is {folds}, but data.train_split is {self.train_split!r}, "
                              f"which has no folds (they select labelled training images); give data.folds=null, "
                              f"or data.train_split=train or train+unlabeled.")
        self.folds = folds

    @property
    def task(self) -> str:
        return "unlabeled" if "unlabeled" in self.train_split.split("+") else "classification"

    @property
    def test_task(self) -> str:
        """What the test split's targets are (``task``'s values): a classifier is refused before training."""
        return "unlabeled" if "unlabeled" in self.test_split.split("+") else "classification"

    def folder(self) -> Path:
        return self.data_dir / FOLDER

    def split_files(self, split: str) -> list[Path]:
        names = [f"{split}_X.bin"] + ([] if split == "unlabeled" else [f"{split}_y.bin"])
        return [self.folder() / name for name in names]

    def fold_file(self) -> Path:
        return self.folder() / "fold_indices.txt"

    def expected_files(self) -> list[Path]:
        folds = [self.fold_file()] if self.folds is not None else []
        return [path for split in self.used_splits() for path in self.split_files(split)] + folds

    def download(self) -> None:
        from torchvision.datasets import STL10
        from torchvision.datasets.utils import download_and_extract_archive

        self.fetched_into_place(lambda scratch: download_and_extract_archive(  # the archive stays, md5-checked
            STL10.url, str(self.data_dir), str(scratch), filename=STL10.filename, md5=STL10.tgz_md5))

    def archive(self) -> Path:
        from torchvision.datasets import STL10

        return self.data_dir / STL10.filename

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, *label_path = self.split_files(split)
        raw = read_file(image_path, lambda path: np.fromfile(path, dtype=np.uint8))
        if raw.size == 0 or raw.size % IMAGE_BYTES:
            raise DatasetCorruptError(
                f"{image_path} holds {raw.size} bytes, which is not a whole number of {IMAGE_BYTES}-byte 3x96x96 "
                f"images; it is truncated or corrupt: delete it and download STL-10 again."
            )
        images = torch.from_numpy(raw.reshape(-1, 3, SIDE, SIDE)).transpose(2, 3)  # column-major -> upright
        if len(images) != OFFICIAL_IMAGES[split]:  # no header: a file cut at a whole image reads like a subset
            log.warning(f"{image_path} holds {len(images):,} images, where STL-10's has {OFFICIAL_IMAGES[split]:,}; "
                        f"unless it is a subset of your own, it was cut short: delete it and download STL-10 again.")
        if not label_path:
            return images, torch.full((len(images),), UNLABELED, dtype=torch.int64)
        labels = read_file(label_path[0], lambda path: np.fromfile(path, dtype=np.uint8)).astype(np.int64)
        if len(labels) != len(images):  # no header says which was cut short, unless the other has STL-10's count
            short = {len(labels): image_path, len(images): label_path[0]}.get(OFFICIAL_IMAGES[split])
            raise DatasetCorruptError(
                f"{image_path} holds {len(images):,} images and {label_path[0].name} {len(labels):,} labels, where "
                f"STL-10 has {OFFICIAL_IMAGES[split]:,} of each: " +
                (f"{short} was cut short; delete it and download STL-10 again." if short else
                 "they must match one for one; delete both and download STL-10 again."))
        if labels.min(initial=1) < 1 or labels.max(initial=10) > 10:
            raise DatasetCorruptError(
                f"{label_path[0]} holds labels in {labels.min()}..{labels.max()} (expected each 1..10, one per image "
                f"of {image_path.name}); delete it and download STL-10 again."
            )
        labels = torch.from_numpy(labels - 1)
        if split == "train" and self.folds is not None:
            fold = self.fold_indices(len(images))
            return images[fold], labels[fold]
        return images, labels

    def fold_indices(self, num_images: int) -> torch.Tensor:
        """Line ``folds`` of fold_indices.txt: the zero-based indices of that fold's training images."""
        lines = read_file(self.fold_file(), Path.read_text).splitlines()
        if self.folds >= len(lines):
            raise DatasetCorruptError(f"{self.fold_file()} holds {len(lines)} lines, so it has no fold {self.folds} "
                                      f"(line {self.folds + 1}); delete it and download STL-10 again.")
        words = lines[self.folds].split()
        if not words or not all(word.isdigit() and int(word) < num_images for word in words) or \
                len({int(word) for word in words}) != len(words):
            raise DatasetCorruptError(
                f"{self.fold_file()} line {self.folds + 1} is not a list of distinct zero-based indices into the "
                f"{num_images} "
                f"training images separated by spaces; delete it and download STL-10 again."
            )
        return torch.tensor([int(word) for word in words], dtype=torch.int64)

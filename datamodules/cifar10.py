"""CIFAR-10 from the python pickle batches torchvision downloads into ``<data_dir>/cifar-10-batches-py``.

Each of ``data_batch_1`` .. ``data_batch_5`` (train) and ``test_batch`` is a pickled dict with
keys ``b"data"`` (uint8 ``[10000, 3072]``: 1024 red, then green, then blue values, each a
row-major 32x32 image), ``b"labels"`` (10,000 ints 0..9), ``b"batch_label"`` and ``b"filenames"``,
read with ``encoding="bytes"`` as the dataset's own page shows, by an unpickler that admits numpy arrays only: the
batches are files from outside, and ``pickle.load`` would run whatever a planted one asks for.

    python train.py data=cifar10 data.grayscale=true data.flatten=true   # REAE: 1024-dim gray vectors
"""

from __future__ import annotations

from pathlib import Path
from pickle import UnpicklingError

import numpy as np
import torch

from datamodules.base import DatasetCorruptError, InMemoryDataModule
from framework.numpy_pickle import NumpyArrayUnpickler

FOLDER = "cifar-10-batches-py"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_BYTES = 3 * 32 * 32


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (uint8 images ``[N, 3, 32, 32]``, int64 labels ``[N]``)."""
    try:
        with open(path, "rb") as handle:
            batch = NumpyArrayUnpickler(handle, encoding="bytes").load()
        batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as error:  # truncated pickles raise EOFError, UnpicklingError, KeyError, ...
        why = f"{type(error).__name__}: {error}" if isinstance(error, UnpicklingError) else type(error).__name__
        raise DatasetCorruptError(
            f"{path} is not a readable CIFAR-10 batch ({why}); delete it and download CIFAR-10 again."
        ) from None
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(data) != len(labels):
        raise DatasetCorruptError(
            f"{path} holds data of shape {data.shape} and {len(labels)} labels, but a CIFAR-10 batch holds "
            f"[N, {IMAGE_BYTES}] and N labels; delete it and download CIFAR-10 again."
        )
    label_range = f"labels {labels.min()}..{labels.max()}" if len(labels) else "no labels"
    if data.dtype != np.uint8 or len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise DatasetCorruptError(f"{path} holds {data.dtype} pixels and {label_range}, but a CIFAR-10 batch holds "
                                  f"uint8 pixels and labels 0..9; delete it and download CIFAR-10 again.")
    return data.reshape(-1, 3, 32, 32), labels


class CIFAR10DataModule(InMemoryDataModule):
    """50,000 train and 10,000 test 32x32 RGB images in 10 classes; options ``grayscale`` and ``flatten``."""

    image_shape = (3, 32, 32)

    def folder(self) -> Path:
        return self.data_dir / FOLDER

    def expected_files(self) -> list[Path]:
        return [self.folder() / name for split in self.used_splits() for name in BATCHES[split]]

    def download(self) -> None:
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import download_and_extract_archive

        self.fetched_into_place(lambda scratch: download_and_extract_archive(  # the archive stays, md5-checked
            CIFAR10.url, str(self.data_dir), str(scratch), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5))

    def archive(self) -> Path:
        from torchvision.datasets import CIFAR10

        return self.data_dir / CIFAR10.filename

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = zip(*(read_batch(self.folder() / name) for name in BATCHES[split]), strict=True)
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

"""SVHN cropped digits from the ``.mat`` files torchvision downloads directly into ``<data_dir>``.

``train_32x32.mat`` (73,257 digits), ``test_32x32.mat`` (26,032) and ``extra_32x32.mat``
(531,131) are MATLAB v5 files with ``X``: uint8 ``[32, 32, 3, N]`` (height, width, channel,
image) and ``y``: ``[N, 1]`` labels 1..10, where 10 is the digit 0. Each stage reads the split
it is given, e.g. the feature-prediction autoencoder trains on ``extra`` and its probes on
``train``; images stay uint8 (extra is 1.6 GB, never float32 as a whole).

    python train.py data=svhn data.train_split=extra data.pad_to=64   # 64x64, the digit tiled 2x2
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from datamodules.base import DatasetCorruptError, InMemoryDataModule


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``.mat`` file -> (uint8 images ``[N, 3, 32, 32]``, int64 labels 0..9)."""
    try:
        contents = scipy.io.loadmat(path, variable_names=["X", "y"])
        images, labels = contents["X"], contents["y"].reshape(-1).astype(np.int64)
    except Exception as error:  # truncated files raise ValueError, TypeError, OSError, MatReadError, ...
        raise DatasetCorruptError(
            f"{path} is not a readable SVHN .mat file ({type(error).__name__}); delete it and download SVHN again."
        ) from None
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels) or \
            images.dtype != np.uint8:
        raise DatasetCorruptError(
            f"{path} holds X of shape {images.shape} ({images.dtype}) with {len(labels)} labels, but SVHN stores "
            f"uint8 X as [32, 32, 3, N] with N labels; delete it and download SVHN again."
        )
    if labels.min(initial=1) < 1 or labels.max(initial=10) > 10:
        raise DatasetCorruptError(f"{path} holds labels outside 1..10; delete it and download SVHN again.")
    return images.transpose(3, 2, 0, 1), labels % 10


class SVHNDataModule(InMemoryDataModule):
    """House-number digits, 32x32 RGB; ``pad_to=64`` wrap-pads (tiles) them for 64x64 encoders."""

    splits = ("train", "test", "extra", "train+extra")
    image_shape = (3, 32, 32)

    def __init__(self, pad_mode: str = "wrap", **kwargs):
        super().__init__(pad_mode=pad_mode, **kwargs)

    def path(self, split: str) -> Path:
        return self.data_dir / f"{split}_32x32.mat"

    def expected_files(self) -> list[Path]:
        return [self.path(split) for split in self.used_splits()]

    def download(self) -> None:
        from torchvision.datasets import SVHN
        from torchvision.datasets.utils import download_url

        def fetch(scratch: Path) -> None:
            for path in self.missing_files():
                url, filename, md5 = SVHN.split_list[path.name.removesuffix("_32x32.mat")]
                download_url(url, str(scratch), filename=filename, md5=md5)

        self.fetched_into_place(fetch)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = read_mat(self.path(split))
        return torch.from_numpy(images), torch.from_numpy(labels)

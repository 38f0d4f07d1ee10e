"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, no download, the offline default.

The 8x8 images (values 0..16) are scaled to uint8 and upscaled once, at load time, to
``image_size`` (32 for LeNet-5) with bilinear interpolation. The dataset has no official
test split, so a seeded ``test_fraction`` is held out first (per class when ``stratify``)
and the train/val split is drawn from the rest.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from datamodules.base import InMemoryDataModule, seeded_split


class DigitsDataModule(InMemoryDataModule):
    def __init__(self, image_size: int = 32, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.image_shape = (1, image_size, image_size)
        self.test_fraction = test_fraction

    @functools.cached_property
    def every_digit(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All 1,797 images, upscaled, and their labels: read and resized once for both splits."""
        digits = load_digits()
        images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
        if self.image_size != 8:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        return images.mul(255).round().clamp(0, 255).to(torch.uint8), torch.from_numpy(digits.target).long()

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.every_digit
        stratum = targets if self.stratify else None
        rest, test = seeded_split(len(images), self.test_fraction, self.split_seed + 1, stratum)
        chosen = test if split == "test" else rest
        return images[chosen], targets[chosen]

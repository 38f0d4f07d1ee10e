"""Seeded random uint8 images with random labels: for benchmarks and plumbing tests, never for results."""

from __future__ import annotations

import torch

from datamodules.base import InMemoryDataModule


class RandomImagesDataModule(InMemoryDataModule):
    def __init__(self, num_train: int = 60_000, num_test: int = 10_000, channels: int = 1,
                 image_size: int = 32, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.sizes = {"train": num_train, "test": num_test}
        self.shape = self.image_shape = (channels, image_size, image_size)
        self.seed = seed

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed + (split == "test"))
        count = self.sizes[split]
        images = torch.randint(0, 256, (count, *self.shape), dtype=torch.uint8, generator=generator)
        return images, torch.randint(0, self.num_classes, (count,), generator=generator)

"""A dataset of your own as a plain LightningDataModule (examples/conf/data/blobs.yaml).

Any LightningDataModule whose batches are ``(images, labels)`` works with the classification models.
This one draws two classes of 32x32 noise images, the second brighter, from a fixed seed.
"""

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Blobs(L.LightningDataModule):
    def __init__(self, size: int = 1024, batch_size: int = 64, seed: int = 0):
        super().__init__()
        self.size, self.batch_size, self.seed = size, batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        labels = torch.randint(0, 2, (self.size,), generator=generator)
        images = torch.randn(self.size, 1, 32, 32, generator=generator) + 0.5 * labels.view(-1, 1, 1, 1)
        quarter = self.size // 4  # test, validation, then training images
        self.test_set, self.val_set, self.train_set = (
            TensorDataset(images[start:stop], labels[start:stop])
            for start, stop in ((0, quarter), (quarter, 2 * quarter), (2 * quarter, self.size))
        )

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.batch_size)

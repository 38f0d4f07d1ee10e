"""A LightningModule of a user's own, as the README's "Your own network and data" lets one write, with a mistake."""

import lightning as L
import torch


class WithoutOptimizers(L.LightningModule):
    """Trains nothing: it defines no configure_optimizers()."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)


class FromAFolder(L.LightningDataModule):
    """Reads its images from ``root`` in setup, as a DataModule over torchvision's ImageFolder does."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root

    def setup(self, stage: str) -> None:
        from torchvision.datasets import ImageFolder

        self.images = ImageFolder(self.root)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.images)

    val_dataloader = test_dataloader = train_dataloader


class NoBatches(L.LightningDataModule):
    """A training and a test loader, empty: the combination checks read a DataModule's attributes, not its batches."""

    def train_dataloader(self):
        return []

    test_dataloader = train_dataloader


class CountsItsClasses(L.LightningDataModule):
    """Says how many classes its labels have, and nothing else about itself (no ``task``)."""

    num_classes = 3

    def train_dataloader(self):
        return torch.utils.data.DataLoader([(torch.zeros(1, 32, 32), 0)])  # LeNet-5's input size

    val_dataloader = test_dataloader = train_dataloader


class LogsUnderscored(L.LightningModule):
    """Logs its metrics as Lightning's examples do (val_acc, test_acc), not the framework's val/ and test/."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(32 * 32, 10)  # the digits, padded to 32 x 32

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)

    def _accuracy(self, batch) -> torch.Tensor:
        images, labels = batch
        return (self.layer(images.flatten(1)).argmax(1) == labels).float().mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", self._accuracy(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_acc", self._accuracy(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LogsAfterTheSanityCheck(LogsUnderscored):
    """Logs val_acc only once the sanity check is over, as many Lightning modules do."""

    def validation_step(self, batch, batch_idx):
        if not self.trainer.sanity_checking:
            super().validation_step(batch, batch_idx)

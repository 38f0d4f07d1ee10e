"""Change the training batch size at given epochs (the paper's 100 -> 500 at epoch 3 study).

The datamodule's ``batch_size`` is set at the end of the epoch before each milestone and the
trainer rebuilds the training loader at the next epoch (needs
``trainer.reload_dataloaders_every_n_epochs=1``). A resumed run sets it from the checkpoint's
epoch, and every epoch checks that the loader really has the scheduled size.

Usage::

    python train.py experiment=mi_lr_digits batch_schedule=grow   # conf/batch_schedule/grow.yaml
    BatchSizeSchedule(milestones={3: 500})   # epochs 0-2 use data.batch_size, epochs 3+ use 500
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from framework.checkpoints import saved_at_an_epochs_end
from framework.errors import ConfigError


class BatchSizeSchedule(Callback):
    def __init__(self, milestones: dict[int, int]):
        self.milestones = {int(epoch): int(size) for epoch, size in milestones.items()}
        if any(epoch < 1 or size < 1 for epoch, size in self.milestones.items()):
            raise ConfigError(f"BatchSizeSchedule: milestones={milestones}; give {{epoch >= 1: batch size >= 1}}.")
        self.initial: int | None = None

    def size_at(self, epoch: int) -> int:
        """The batch size of ``epoch``: that of the last milestone at or before it."""
        passed = [epoch_ for epoch_ in self.milestones if epoch_ <= epoch]
        return self.milestones[max(passed)] if passed else self.initial

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.reload_dataloaders_every_n_epochs != 1:
            raise ConfigError("BatchSizeSchedule needs trainer.reload_dataloaders_every_n_epochs=1 (it is "
                              f"{trainer.reload_dataloaders_every_n_epochs}) so that the new size takes effect.")
        if self.initial is None:
            self.initial = trainer.datamodule.batch_size

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # setup, which Lightning calls first, has set self.initial. A checkpoint saved at an epoch's end continues
        # with the next epoch, one saved within it with the rest of it.
        trainer.datamodule.batch_size = self.size_at(checkpoint["epoch"] + saved_at_an_epochs_end(checkpoint))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        expected, actual = self.size_at(trainer.current_epoch), trainer.train_dataloader.batch_sampler.batch_size
        if actual != expected:
            raise RuntimeError(f"BatchSizeSchedule: epoch {trainer.current_epoch} loads batches of {actual}, "
                               f"expected {expected}.")
        pl_module.log("batch_size", float(expected), on_step=False, on_epoch=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.batch_size = self.size_at(trainer.current_epoch + 1)

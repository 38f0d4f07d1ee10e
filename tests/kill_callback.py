"""Callbacks that kill their own process with SIGKILL, the hardest stop a run can suffer, at chosen moments."""

import os
import signal

from lightning.pytorch.callbacks import Callback

from framework.checkpoints import RunModelCheckpoint


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtEpochStart(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            kill()


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            kill()


class KillAtTestEnd(Callback):
    """After the test metrics are logged (and written to metrics.csv), before results.json."""

    def on_test_end(self, trainer, pl_module):
        kill()


class KilledBeforeSaving(RunModelCheckpoint):
    """A checkpoint callback killed as it is about to save in epoch ``kill_in_epoch``: as ``last_checkpoint``, after
    that epoch's best checkpoint and before its last.ckpt."""

    def __init__(self, *args, kill_in_epoch: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.kill_in_epoch = kill_in_epoch

    def _save_checkpoint(self, trainer, filepath):
        if trainer.current_epoch == self.kill_in_epoch:
            kill()
        super()._save_checkpoint(trainer, filepath)


class KilledAfterSaving(KilledBeforeSaving):
    """Killed just after its save in epoch ``kill_in_epoch``: as ``last_checkpoint``, before Lightning logs that epoch's
    training row."""

    def _save_checkpoint(self, trainer, filepath):
        RunModelCheckpoint._save_checkpoint(self, trainer, filepath)
        if trainer.current_epoch == self.kill_in_epoch:
            kill()

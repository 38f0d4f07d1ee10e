"""A callback that kills its own process with SIGKILL: the hardest stop a run can suffer."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtEpochStart(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)

"""A callback that sends its own process a signal, as a scheduler or ``kill`` does."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class SignalAtEpochStart(Callback):
    def __init__(self, epoch: int, signal_name: str = "SIGTERM"):
        self.epoch, self.signal = epoch, getattr(signal, signal_name)

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.signal)

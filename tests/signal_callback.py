"""Lightning callbacks that send their own process a signal, as a scheduler or ``kill`` does (a Hydra callback that
sends one as a job starts: tests/signal_at_job_start.py)."""

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from framework.processes import parent_of


class SignalAtEpochStart(Callback):
    def __init__(self, epoch: int, signal_name: str = "SIGTERM"):
        self.epoch, self.signal = epoch, getattr(signal, signal_name)

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            if self.signal == signal.SIGINT:  # Ctrl+C in a terminal: a job started in the background ignores SIGINT
                signal.signal(signal.SIGINT, signal.default_int_handler)
            os.kill(os.getpid(), self.signal)


class SignalAtTrainEnd(Callback):
    """SIGTERM as training ends (after the last epoch's checkpoint), where a callback's own work may take a while."""

    def on_train_end(self, trainer, pl_module):
        os.kill(os.getpid(), signal.SIGTERM)


class SignalStepAtEpochStart(Callback):
    """SIGTERM to this process and its loader workers, as SLURM stops a job step (scancel, a time limit, preemption):
    every process of the step gets it."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            workers = multiprocessing.active_children()
            assert workers, "no loader workers to signal"
            for pid in (os.getpid(), *(worker.pid for worker in workers)):
                os.kill(pid, signal.SIGTERM)
            time.sleep(1)  # a worker that dies of it has died by now


class SignalParentAtEpochStart(Callback):
    """In a rank of trainer=ddp_sim: the signal to the job's main process, which started the ranks (made there, the
    callback is sent to the ranks), as a scheduler's stop of it."""

    def __init__(self, epoch: int):
        self.epoch, self.main_process = epoch, os.getpid()

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and trainer.global_rank == 0:
            os.kill(self.main_process, signal.SIGTERM)


class SignalLauncherAtEpochStart(Callback):
    """In job number ``job`` of a ``hydra/launcher=local`` sweep: SIGTERM to the process that launched the sweep
    (submitit's controller process stands between them), as ``kill`` of a sweep running in a terminal."""

    def __init__(self, epoch: int, job: int = 0):
        self.epoch, self.job = epoch, job

    def on_train_epoch_start(self, trainer, pl_module):
        from hydra.core.hydra_config import HydraConfig

        if trainer.current_epoch == self.epoch and HydraConfig.get().job.num == self.job:
            os.kill(parent_of(os.getppid()), signal.SIGTERM)


class BugAtTrainStart(Callback):
    """A bug of the run's code (not a user error): a RuntimeError as training starts."""

    def on_train_start(self, trainer, pl_module):
        raise RuntimeError("a bug (the test's)")


class SignalOneRank(Callback):
    """SIGTERM to one rank's process alone (trainer=ddp_sim), at batch ``batch`` of ``epoch`` or, without a batch, as
    that epoch's validation starts: a scheduler's signal that reaches the ranks at different moments, or one of them
    alone. Each rank writes the last batch it started, training or validating, and the port the ranks met on, to
    ``<dirpath>/rank<k>.json``."""

    def __init__(self, rank: int, epoch: int, dirpath: str, batch: int | None = None):
        self.rank, self.epoch, self.batch, self.dirpath = rank, epoch, batch, Path(dirpath)

    def _started(self, trainer, loop: str, batch: int) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        where = {"loop": loop, "epoch": trainer.current_epoch, "batch": batch, "step": trainer.global_step,
                 "port": trainer.strategy.cluster_environment.main_port}
        (self.dirpath / f"rank{trainer.global_rank}.json").write_text(json.dumps(where))

    def _signal(self, trainer, batch: int | None) -> None:
        if (trainer.global_rank, trainer.current_epoch, batch) == (self.rank, self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._started(trainer, "train", batch_idx)
        self._signal(trainer, batch_idx)

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._signal(trainer, None)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._started(trainer, "validation", batch_idx)

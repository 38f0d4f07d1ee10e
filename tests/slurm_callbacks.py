"""Callbacks that the SLURM tests add to real jobs (``+callbacks.<name>._target_=tests.slurm_callbacks.<Class>``)."""

import json
import os
import subprocess
import time
from pathlib import Path

import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from framework.errors import DataError


class RequeueOnceMidEpoch(Callback):
    """On the job's first start only, in the middle of an epoch, have SLURM requeue the job, then keep the batch
    waiting until SLURM's SIGTERM arrives (Lightning then stops the run). ``how="scontrol"``: `scontrol requeue` the
    job, as an administrator or a preemption would; ``how="time_limit"``: send its tasks SIGUSR2, as SLURM does
    ``signal_delay_s`` before the time limit (``#SBATCH --signal=USR2@...``), on which submitit requeues it."""

    def __init__(self, epoch: int, batch: int, how: str = "scontrol", wait_s: float = 120):
        self.epoch, self.batch, self.how, self.wait_s = epoch, batch, how, wait_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        first_start = int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.batch) or not first_start:
            return
        if trainer.global_rank == 0:
            job = os.environ["SLURM_JOB_ID"]
            command = {"scontrol": ["scontrol", "requeue", job], "time_limit": ["scancel", "--signal=USR2", job]}
            subprocess.run(command[self.how], check=True)
        deadline = time.monotonic() + self.wait_s
        while not (trainer.received_sigterm or trainer._signal_connector.noted):  # noted: a DDP rank's, until agreed
            if time.monotonic() > deadline:
                raise RuntimeError(f"no SIGTERM within {self.wait_s} s of {self.how}'s requeue")
            time.sleep(0.1)


class RecordRankMetrics(Callback):
    """Each rank writes its final metrics and how it joined the process group to ``<dirpath>/rank<k>.json``."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.metrics: dict[str, float] = {}

    def _record(self, trainer) -> None:
        self.metrics |= {key: float(value) for key, value in trainer.callback_metrics.items()}
        record = {
            "metrics": self.metrics,
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "cluster_environment": type(trainer.strategy.cluster_environment).__name__,
            "main_port": trainer.strategy.cluster_environment.main_port,
            "backend": dist.get_backend() if dist.is_initialized() else None,
        }
        self.dirpath.mkdir(parents=True, exist_ok=True)
        (self.dirpath / f"rank{trainer.global_rank}.json").write_text(json.dumps(record, indent=2))

    def on_fit_end(self, trainer, pl_module):
        self._record(trainer)

    def on_test_end(self, trainer, pl_module):
        self._record(trainer)


class FailOnTask(Callback):
    """Stops SLURM task ``task`` of its job with a user error before the trainer starts (before the process group
    forms), as a node whose dataset is missing would; the job's other tasks then wait for it in the process group."""

    def __init__(self, task: int):
        if int(os.environ.get("SLURM_PROCID", "0")) == task:
            raise DataError(f"task {task} of this job cannot read its data (the test's failure).")

"""A Hydra callback that sends a signal as a sweep's job starts, as a scheduler or ``kill`` does. It imports neither
torch nor Lightning (unlike tests/signal_callback.py), so a job that submitit runs reaches it as a user's job
would: before torch is imported."""

import os
import signal

from hydra.experimental.callback import Callback

from framework.processes import parent_of


class SignalAtJobStart(Callback):
    """A Hydra callback: the signal as job number ``job`` of a sweep starts, before any Trainer runs, to the job's
    process or (``to="launcher"``, in a ``hydra/launcher=local`` job) to the process that launched the sweep."""

    def __init__(self, job: int, signal_name: str = "SIGTERM", to: str = "job"):
        self.job, self.signal, self.to = job, getattr(signal, signal_name), to

    def on_job_start(self, config, **kwargs):
        if config.hydra.job.get("num") == self.job:
            os.kill(os.getpid() if self.to == "job" else parent_of(os.getppid()), self.signal)

"""DDP workers that Lightning starts itself (``trainer=ddp_sim``: forked from a forkserver; ``ddp_spawn``) run as
the job they belong to: with its logging, environment, working directory, random states and warning filters, their
refusals of the data or the network one sentence in the parent (framework/combinations.py), and what their fit did
(how far it went, its callbacks' states) sent back to the parent, which tests after it."""

from __future__ import annotations

import logging.config
import multiprocessing
import os
import random
import shutil
import signal
import socket
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.plugins.environments.lightning import LightningEnvironment, find_free_network_port
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies.launchers.multiprocessing import (
    _disable_module_memory_sharing,
    _GlobalStateSnapshot,
    _MultiProcessingLauncher,
)
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.multiprocessing.spawn import ProcessExitedException

from framework.combinations import FirstBatchWatch, data_the_network_takes
from framework.construction import worker_user_error
from framework.loggers import send_lightning_logs_to_hydra


def job_logging() -> dict | None:
    """The running Hydra job's logging config, resolved; None outside a job (a config composed without running one
    has no output directory for its log file)."""
    try:
        return OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True)
    except (ValueError, OmegaConfBaseException):  # HydraConfig not set; ${hydra.runtime.output_dir} not set
        return None


@contextmanager
def rank_stops_said_for_bugs_alone():
    """torch logs "Terminating process N via signal SIGTERM" for each rank it stops once another has failed: a line
    of noise above the sentence when a rank refused the user's input, kept (after the fact) when a rank's bug
    stopped them."""
    spawn_log, held = logging.getLogger("torch.multiprocessing.spawn"), []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    spawn_log.addFilter(hold)
    try:
        yield
    except Exception as error:
        spawn_log.removeFilter(hold)
        if worker_user_error(error) is None:
            for record in held:
                spawn_log.handle(record)
        raise
    finally:
        spawn_log.removeFilter(hold)


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
FIRST_RENDEZVOUS_PORT = 25000  # above SLURMEnvironment's ports (15000 + a job id's last four digits)


def a_port_below_the_ephemeral_range() -> int:
    """A free port for the ranks' rendezvous. Lightning takes one from the kernel (bind to port 0), which is an
    ephemeral port, free when chosen and closed again: until rank 0 listens on it, the kernel may give it to any
    outgoing connection on the machine (a test suite's, another job's), and rank 0 then failed with EADDRINUSE.
    Below the ephemeral range only an explicit bind takes a port. Chosen at random, not from the seeded generators,
    so that two runs with one seed do not pick the same; Lightning's choice where the range leaves no room."""
    try:
        first_ephemeral = int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux
        return find_free_network_port()
    if first_ephemeral <= FIRST_RENDEZVOUS_PORT:
        return find_free_network_port()
    choose = random.SystemRandom()
    for _ in range(100):
        port = choose.randrange(FIRST_RENDEZVOUS_PORT, first_ephemeral)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", port))
            except OSError:  # in use
                continue
        return port
    return find_free_network_port()


def choose_the_rendezvous_port(environment, ranks: int) -> None:
    """MASTER_PORT for the ranks that Lightning starts on this machine (its own environment: trainer=ddp_sim's
    workers, trainer=ddp's commands), where the user gave none (nor Lightning's STANDALONE_PORT)."""
    if ranks > 1 and isinstance(environment, LightningEnvironment) and \
            not {"MASTER_PORT", "STANDALONE_PORT"} & set(os.environ):
        os.environ["MASTER_PORT"] = str(a_port_below_the_ephemeral_range())


class JobWorkerLauncher(_MultiProcessingLauncher):
    """Lightning's launcher of spawned or forked DDP workers (``trainer=ddp_sim``), each worker's fit or test run
    inside ``data_the_network_takes``. Its refusals need the worker's own traceback and first batch, while the parent
    gets only the traceback's text; the parent then raises the worker's sentence again (``worker_user_error``).

    Workers started from a forkserver (``start_method: forkserver``, trainer=ddp_sim's) are forked from a process that
    imported torch and Lightning once, where spawned ones import them each (about 7 s a worker, at each fit, validate
    and test; our own modules take a tenth of a second after them, and are not preloaded: the forkserver would look
    for them in the working directory first, whatever the parent's path). Such a worker gets from here what a
    spawned one has: the parent's environment (the seed's PL_GLOBAL_SEED, ...), working directory, deterministic
    flags and random states at this launch (the forkserver keeps those of the first), and on the CPU a copy of the
    module of its own (Lightning's launcher gives one to spawned workers only: forked ones shared one, and each
    rank's step moved it); and the parent's warning filters, as a forked one has.

        with_job_worker_launcher(trainer, cfg)   # after the Trainer is built; other strategies are left as they are
    """

    parent: tuple[dict, str, _GlobalStateSnapshot] | None = None
    job_logging: dict | None = None

    def __init__(self, launcher: _MultiProcessingLauncher, cfg: DictConfig):
        self.__dict__.update(vars(launcher))
        self.cfg = cfg

    def launch(self, function, *args, trainer: L.Trainer | None = None, **kwargs):
        # the job's logging (console and train.log), which a worker starts without: rank 0's lines go there too
        self.job_logging = job_logging()
        if self._start_method == "forkserver":
            multiprocessing.set_forkserver_preload(["torch", "lightning"])  # for the forkserver's first start
            self.parent = dict(os.environ), os.getcwd(), _GlobalStateSnapshot.capture(), warnings.filters[:]
        with rank_stops_said_for_bugs_alone():
            try:
                return super().launch(function, *args, trainer=trainer, **kwargs)
            except ProcessExitedException as exited:  # the ranks that a SIGTERM stopped (below), not this process
                if exited.exit_code == 128 + signal.SIGTERM:
                    raise SIGTERMException from None
                raise

    def _wrapping_function(self, process_idx, trainer, function, args, kwargs, *queue_and_states) -> None:
        if process_idx == 0 and self.job_logging:
            logging.config.dictConfig(self.job_logging)
            send_lightning_logs_to_hydra()
        if self.parent is not None:
            environment, working_directory, global_states, warning_filters = self.parent
            os.environ.clear()
            os.environ.update(environment)
            os.chdir(working_directory)
            global_states.restore()
            warnings.filters[:] = warning_filters  # the job's (Lightning's srun hint off outside SLURM jobs, ...)
            if isinstance(self._strategy.accelerator, CPUAccelerator):
                args, kwargs = _disable_module_memory_sharing((args, kwargs))
        watch = next(callback for callback in trainer.callbacks if isinstance(callback, FirstBatchWatch))
        datamodule = kwargs.get("datamodule") or next(
            (arg for arg in args if isinstance(arg, L.LightningDataModule)), None)
        with data_the_network_takes(self.cfg, args[0], datamodule, watch):
            try:
                super()._wrapping_function(process_idx, trainer, function, args, kwargs, *queue_and_states)
            except SIGTERMException:  # exit code 0 sent the parent nothing, and it waited for the results for good
                raise SystemExit(128 + signal.SIGTERM) from None

    def get_extra_results(self, trainer: L.Trainer) -> dict:
        """Lightning sends back the metrics and weights of a fit in workers, and neither how far it went nor its
        callbacks' states: the parent's loops stayed at epoch 0 and step 0, where the test that follows logged its
        row (and a continued run then found no row after its checkpoint to set aside), and the test's workers started
        from callbacks that had done nothing (the figures callback sent the fit's figures again). The states go
        through a file, as Lightning's weights do: the parent reads its queue only once the workers have ended, so a
        worker whose results outgrew the pipe's buffer (the adversarial pools) waited for good."""
        epoch_loop = trainer.fit_loop.epoch_loop
        states = Path(tempfile.mkdtemp()) / "callback_states.pt"  # a folder of its own, as Lightning's weights
        torch.save({callback.state_key: callback.state_dict() for callback in trainer.callbacks}, states)
        return {**super().get_extra_results(trainer), "callback_states": str(states), "fit_progress": {
            "epochs": trainer.fit_loop.epoch_progress.state_dict(),
            "batches_that_stepped": epoch_loop._batches_that_stepped,  # the loggers' step
            "automatic": epoch_loop.automatic_optimization.optim_progress.state_dict(),  # the global step
            "manual": epoch_loop.manual_optimization.optim_step_progress.state_dict()}}

    def update_main_process_results(self, trainer: L.Trainer, extra: dict) -> None:
        progress = extra.pop("fit_progress")
        saved = Path(extra.pop("callback_states"))
        states = torch.load(saved, weights_only=False)  # our own workers'
        shutil.rmtree(saved.parent)
        super().update_main_process_results(trainer, extra)
        for callback in trainer.callbacks:
            if callback.state_key in states:
                callback.load_state_dict(states[callback.state_key])
        epoch_loop = trainer.fit_loop.epoch_loop
        trainer.fit_loop.epoch_progress.load_state_dict(progress["epochs"])
        epoch_loop._batches_that_stepped = progress["batches_that_stepped"]
        epoch_loop.automatic_optimization.optim_progress.load_state_dict(progress["automatic"])
        epoch_loop.manual_optimization.optim_step_progress.load_state_dict(progress["manual"])


def with_job_worker_launcher(trainer: L.Trainer, cfg: DictConfig) -> None:
    launcher = trainer.strategy.launcher
    if type(launcher) is _MultiProcessingLauncher:
        trainer.strategy._launcher = JobWorkerLauncher(launcher, cfg)

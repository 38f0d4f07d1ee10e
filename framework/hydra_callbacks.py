"""Hydra callbacks (``hydra.callbacks`` in conf/hydra/default.yaml): they run in the process that launches
a multirun, before and after its jobs, and (``on_job_end``) in each job's own process."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from framework.checkpoints import check_checkpoint, earlier_run_refusal
from framework.compose import ROOT
from framework.errors import ConfigError, UserError, stopping_before_any_job
from framework.pretrained import alexnet_features_state_dict
from framework.slurm_preflight import launches_on_slurm
from lightning_modules.perceptual_autoencoder import PROCEDURES, PerceptualAutoencoderModule, needs_loss_network


def slurm_unreachable_reason(env: dict[str, str] | None = None) -> str | None:
    """Why jobs cannot be submitted to SLURM from here (with environment ``env``, default this process's), or None
    when its controller answers (the README-command test asks this; framework/slurm_preflight.py checks a sweep's
    request before submitting it)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo are not installed here"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from the SLURM controller in 30 s"
    if answer.returncode != 0:
        lines = answer.stderr.strip().splitlines()
        return f"sinfo failed: {lines[-1] if lines else f'exit code {answer.returncode}'}"
    return None


class JobsImportThisRepository(Callback):
    """Put this repository on PYTHONPATH before a multirun launches its jobs.

    submitit starts each job as a new interpreter (``python -m submitit.core._submit``) in the directory the sweep
    was started from, locally (hydra/launcher=local) or through sbatch, which passes this environment on; without
    this, a sweep started outside the repository fails in every job with "No module named 'framework'"."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
        if str(ROOT) not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])


class FailedTaskEndsItsJob(Callback):
    """A task of a multi-task SLURM job (one DDP rank per task) that failed ends its process with an error code.

    Hydra's launcher keeps a job's exception in its JobReturn (and ignores one raised here), so a failed task would
    exit 0 while its job's other ranks wait for it in the process group, 30 min by default, holding their GPUs.
    Ended here with exit code 2 (a user error, its sentence already printed) or 1, srun (``SLURM_KILL_BAD_EXIT=1``,
    conf/hydra/launcher/slurm.yaml) ends the job's other tasks, and the launching command prints what the failed
    task said (framework/errors.py, ``failed_slurm_task``)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
            return
        logging.shutdown()  # the task's log file and streams: os._exit flushes nothing
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2 if isinstance(job_return._return_value, UserError) else 1)


class EarlierRunsPreflight(Callback):
    """Before Hydra writes a run's .hydra/ files (or a sweep's multirun.yaml): a run, or a job of a sweep, that would
    mix its files with an earlier run's in the same directory stops with the sentence of ``earlier_run_refusal``; one
    that would continue an earlier run (``ckpt_path=auto``) stops when it is another run than the one it continues
    (a sweep whose values were reordered numbers its jobs anew) or changes what that run's checkpoint keeps. The
    earlier run's files stay as they were; train.py checks each job again."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name == "train":
            folder = Path(str(config.hydra.run.dir)).absolute()
            with stopping_before_any_job():
                check_folder(folder, config, multirun=False)
                check_resumed_checkpoint(folder, config, lambda: config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        swept = any(override.startswith(("ckpt_path=", "train=")) and "," in override
                    for override in config.hydra.overrides.task)
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        if config.hydra.job.name != "train" or swept or not sweep_dir.is_dir() or \
                config.hydra.sweeper._target_ != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
            return
        numbered = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir") == "${hydra.job.num}"
        with stopping_before_any_job():
            jobs = sweep_jobs(config)
            values = [overrides_by_key(overrides) for overrides in jobs]
            swept_keys = {key for job in values for key in job if len({repr(other.get(key)) for other in values}) > 1}
            for num, overrides in enumerate(jobs):
                composed = functools.partial(job_config, config, overrides, num)
                folder = sweep_dir / str(num) if numbered else job_folder(composed())
                if not folder.is_dir():
                    continue
                check_folder(folder, config, multirun=True)
                if (earlier := folder / ".hydra" / "overrides.yaml").is_file():
                    check_same_job(num, values[num], folder, overrides_by_key(OmegaConf.load(earlier)), swept_keys,
                                   config.get("ckpt_path"))
                check_resumed_checkpoint(folder, config, composed)


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, numbered as Hydra's basic sweeper numbers them: the grid of ``hydra.sweeper.params``,
    then the command line's, the first key varying slowest."""
    grid = [f"{name}={value}" for name, value in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return BasicSweeper.split_arguments(parser.parse_overrides([*grid, *config.hydra.overrides.task]), None)[0]


def overrides_by_key(overrides: list[str]) -> dict[str, object]:
    """A job's ``key=value`` overrides as {key: value}, typed as Hydra reads them (``0.10`` is ``0.1``)."""
    return {override.key_or_group: override.value() for override in
            OverridesParser.create().parse_overrides([str(override) for override in overrides])}


def check_same_job(num: int, job: dict[str, object], folder: Path, earlier: dict[str, object], swept: set[str],
                   ckpt_path: str | None) -> None:
    """Job ``num`` may continue the run in ``folder`` only if that run had the job's swept values: values reordered
    or inserted in a sweep number its jobs anew, and job 0 would go on from job 0's old checkpoint with another
    job's values (a changed data.batch_size, which no checkpoint keeps, silently)."""
    shown = lambda value: "(not given)" if value is None else value
    for key in sorted(swept):
        if repr(job.get(key)) != repr(earlier.get(key)):
            raise ConfigError(f"Job {num} of this sweep gives {key}={shown(job.get(key))}, but its folder {folder} "
                              f"holds the run of {key}={shown(earlier.get(key))}, which ckpt_path={ckpt_path} would "
                              f"continue with this job's values (reordered or inserted sweep values number the jobs "
                              f"anew); keep the earlier sweep's values in their order with new ones after them, or "
                              f"give another hydra.sweep.dir.")


def job_config(master: DictConfig, overrides: list[str], num: int) -> DictConfig:
    """The config of job ``num`` of a multirun, composed as Hydra's launcher composes it."""
    job = GlobalHydra.instance().config_loader().load_sweep_config(master, list(overrides))
    with open_dict(job):
        job.hydra.job.num = job.hydra.job.id = num
    return job


def job_folder(job: DictConfig) -> Path:
    """The output directory Hydra gives a job (``hydra.sweep.dir``/``hydra.sweep.subdir``, resolved as run_job does)."""
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(job)
    try:
        return Path(str(job.hydra.sweep.dir), str(job.hydra.sweep.subdir)).absolute()
    finally:
        hydra_config.cfg = previous


def check_folder(folder: Path, settings: DictConfig, multirun: bool) -> None:
    """``earlier_run_refusal`` for a run into ``folder`` with the ckpt_path and train of ``settings``."""
    ckpt_path = settings.get("ckpt_path")
    if ckpt_path not in (None, "auto", "last", "hpc"):
        ckpt_path = str(Path(ckpt_path).absolute())
    if refusal := earlier_run_refusal(folder, ckpt_path, settings.get("train", True), multirun):
        raise refusal


def check_resumed_checkpoint(folder: Path, settings: DictConfig, composed: Callable[[], DictConfig]) -> None:
    """A training run that continues ``folder``'s last.ckpt must keep the values it keeps (``check_checkpoint`` with
    the run's config, ``composed()``: a multirun composes a job's config only here)."""
    last = folder / "checkpoints" / "last.ckpt"
    if settings.get("train", True) and settings.get("ckpt_path") in ("auto", "last") and last.is_file():
        check_checkpoint(str(last), resumed_with=composed())


class PrintSweepDir(Callback):
    """After a multirun, print where its jobs wrote and the command that summarises them."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name != "train":
            return
        sweep_dir = config.hydra.sweep.dir
        print(f"sweep directory: {sweep_dir}")
        print(f"summarise it with: python evaluate.py runs={sweep_dir}")


def multirun_values(config: DictConfig, key: str) -> list[str]:
    """The values the jobs of a multirun give ``key``: its choice or range sweep on the command line, else in
    ``hydra.sweeper.params`` (an experiment's grid), else the one composed value ([] if the key is absent)."""
    grid = [f"{name}={value}" for name, value in (config.hydra.sweeper.get("params") or {}).items()]
    last = None
    for override in OverridesParser.create().parse_overrides([*grid, *config.hydra.overrides.task]):
        if override.key_or_group == key and not override.is_delete():
            last = override  # the command line comes after the grid and wins
    if last is not None:
        return list(last.sweep_string_iterator()) if last.is_sweep_override() else [str(last.value())]
    value = OmegaConf.select(config, key, default=None)
    return [] if value is None else [str(value)]


def needs_imagenet_alexnet(config: DictConfig) -> bool:
    """Whether some job of this multirun trains a feature-prediction autoencoder on the ImageNet AlexNet."""
    target = f"{PerceptualAutoencoderModule.__module__}.{PerceptualAutoencoderModule.__name__}"
    if OmegaConf.select(config, "model._target_", default=None) != target:
        return False
    procedures = [name for name in multirun_values(config, "model.procedure") if name in PROCEDURES]
    return (any(needs_loss_network(name) for name in procedures)
            and "imagenet" in multirun_values(config, "model.loss_network.weights"))


class PretrainedWeightsPreflight(Callback):
    """Before a multirun's first job: fetch the ImageNet AlexNet weights once if any of its jobs needs them.

    Hydra's basic launcher runs the jobs one after another and stops at the first failure; without this, a sweep
    whose weights cannot be had would train every I-I-PW job before it said so. SLURM jobs are left to fetch
    them on their nodes, which may reach a source that the login node does not."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name == "train" and not launches_on_slurm(config) and needs_imagenet_alexnet(config):
            with stopping_before_any_job():
                alexnet_features_state_dict("imagenet")  # cached after the first fetch; the jobs read it from there

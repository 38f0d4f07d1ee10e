"""Hydra callbacks (``hydra.callbacks`` in conf/hydra/default.yaml): they run in the process that launches
a multirun, before and after its jobs, before a single run (``on_run_start``), and (``on_job_end``) in each job's
own process. Hydra imports them for every command, ``python evaluate.py runs=...`` too, which reads only JSON: the
checks of training runs import torch and Lightning when they run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from framework.atomic import hold_folder, release_folder
from framework.compose import CONF, ROOT, script_of
from framework.continued_runs import check_run, check_sweep, output_folder, sweep_jobs, sweep_overrides
from framework.entry_point import reporting_user_errors_outside_a_job
from framework.errors import ConfigError, UserError
from framework.slurm_preflight import launches_on_slurm
from framework.stopping import (
    evaluate_commands,
    local_jobs_leave_ctrl_c_to_the_launcher,
    remember_the_sweep,
    sigterm_stops_a_submitit_job,
)
from lightning_modules.perceptual_procedures import PERCEPTUAL_AUTOENCODER, PROCEDURES, needs_loss_network

log = logging.getLogger(__name__)


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


class SigtermStopsTheJob(Callback):
    """A job that submitit runs stops on SIGTERM from its start (``sigterm_stops_a_submitit_job``), not only once
    Lightning's fit has begun."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        sigterm_stops_a_submitit_job()


class LocalJobsLeaveCtrlCToTheLauncher(Callback):
    """``hydra/launcher=local``: Ctrl+C stops the sweep through its launcher, which waits for its jobs to stop
    (``local_jobs_leave_ctrl_c_to_the_launcher``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.launcher.get("_target_", "")).endswith("submitit_launcher.LocalLauncher"):
            local_jobs_leave_ctrl_c_to_the_launcher()


class FailedTaskEndsItsJob(Callback):
    """A task of a multi-task SLURM job (one DDP rank per task) that failed ends its process with an error code.

    Hydra's launcher keeps a job's exception in its JobReturn (and ignores one raised here), so a failed task would
    exit 0 while its job's other ranks wait for it in the process group, 30 min by default, holding their GPUs.
    Ended here with exit code 2 (a user error, its sentence already printed) or 1, srun (``SLURM_KILL_BAD_EXIT=1``,
    conf/hydra/launcher/slurm.yaml) ends the job's other tasks, and the launching command prints what the failed
    task said (framework/entry_point.py, ``failed_slurm_task``)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
            return
        error = job_return._return_value
        if isinstance(error, BaseException) and not isinstance(error, UserError):
            # Hydra would print a bug's traceback after this hook; a rank other than 0 has no train.log to hold it
            traceback.print_exception(error, file=sys.stderr)
        logging.shutdown()  # the task's log file and streams: os._exit flushes nothing
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2 if isinstance(job_return._return_value, UserError) else 1)


class EarlierRunsPreflight(Callback):
    """Before Hydra writes a run's .hydra/ files (or a sweep's multirun.yaml): a run, or a job of a sweep, that would
    mix its files with an earlier run's, or continue (``ckpt_path=auto``) another job's run or with values its
    checkpoint does not keep, stops with one sentence (framework/continued_runs.py). The earlier run's files stay as
    they were; train.py checks each job again. So does a run or sweep started into a folder that another one is
    writing into now: the folder is held (``hold_folder``) from here to the end of the run or sweep, by rank 0 (DDP's
    other ranks run into the same folder)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if script_of(config.hydra) == "train":
            with checking_before_any_job():
                check_task_name(config)
                check_run(config)
                if lightning_rank() == 0:
                    hold_folder(output_folder(config, "hydra.run.dir"), "give this run another hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_folder(output_folder(config, "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if script_of(config.hydra) == "train":
            with checking_before_any_job():
                check_task_name(config)
                check_sweep(config)
                check_one_wandb_run_per_job(config)
                if lightning_rank() == 0:
                    hold_folder(output_folder(config, "hydra.sweep.dir"), "give this sweep another hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_folder(output_folder(config, "hydra.sweep.dir"))


def lightning_rank() -> int:
    """Lightning's ``rank_zero_only.rank`` of this process, without importing Lightning where nothing has: until a
    strategy sets it, Lightning takes it from the first of these variables in the environment, where its launchers put
    it for the other ranks (a DDP job's other ranks run the command again, ``-m`` included)."""
    if rank_zero := sys.modules.get("lightning.fabric.utilities.rank_zero"):
        return rank_zero.rank_zero_only.rank
    return next((int(os.environ[key]) for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                 if key in os.environ), 0)


def check_one_wandb_run_per_job(config: DictConfig) -> None:
    """One ``logger.wandb.id`` for every job of a sweep would put them all into one wandb run (``resume: allow``
    continues it), against one run per job."""
    ids = multirun_values(config, "logger.wandb.id")
    if len(ids) != 1 or ids[0] == "None" or len(sweep_jobs(config)) < 2:
        return
    from framework.loggers import wandb_logger_nodes

    if wandb_logger_nodes(config):
        raise ConfigError(f"Config key 'logger.wandb.id' is {ids[0]!r} for every job of this sweep, whose jobs would "
                          f"then all write into that one wandb run; leave it null (each job's run directory keeps "
                          f"an id of its own), or sweep it with one id per job.")


def check_task_name(config: DictConfig) -> None:
    """Before Hydra makes the job's log file, which is named after it (a '/' in it was reported as an output
    directory that cannot be written)."""
    from framework.validate import check_rules

    check_rules(config, keys=("task_name",))


@contextmanager
def checking_before_any_job() -> Iterator[None]:
    """``reporting_user_errors_outside_a_job``, and an error of the check itself stops the run too, with its
    traceback: Hydra turns a callback's exception into a warning and launches the jobs, which would go unchecked."""
    try:
        with reporting_user_errors_outside_a_job():
            yield
    except Exception:
        traceback.print_exc()
        raise SystemExit(1) from None


class PrintSweepDir(Callback):
    """After a multirun, print where its jobs wrote and the commands that summarise them: ``evaluate_tasks``, which
    an experiment sets to its study's tasks (a sweep over several experiments composes none of them: ``table``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_the_sweep(script_of(config.hydra), config.hydra.sweep.dir, config.get("evaluate_tasks"),
                           jobs_on_slurm=launches_on_slurm(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if script_of(config.hydra) != "train":
            return
        sweep_dir = config.hydra.sweep.dir
        print(f"sweep directory: {sweep_dir}")
        commands = evaluate_commands(config.get("evaluate_tasks"), sweep_dir)
        for command in commands:
            print(f"summarise it with: {command}")
        if not commands:
            print("none of its jobs wrote a results.json, so there is nothing to summarise")


def multirun_values(config: DictConfig, key: str) -> list[str]:
    """The values the jobs of a multirun give ``key``: its choice or range sweep on the command line, else in
    ``hydra.sweeper.params`` (an experiment's grid), else the one composed value ([] if the key is absent)."""
    last = None
    for override in sweep_overrides(config):
        if override.key_or_group == key and not override.is_delete():
            last = override  # the command line comes after the grid and wins
    if last is not None:
        return list(last.sweep_string_iterator()) if last.is_sweep_override() else [str(last.value())]
    value = OmegaConf.select(config, key, default=None)
    return [] if value is None else [str(value)]


def needs_imagenet_alexnet(config: DictConfig) -> bool:
    """Whether some job of this multirun trains a feature-prediction autoencoder on the ImageNet AlexNet."""
    if OmegaConf.select(config, "model._target_", default=None) != PERCEPTUAL_AUTOENCODER:
        return False
    procedures = [name for name in multirun_values(config, "model.procedure") if name in PROCEDURES]
    return (any(needs_loss_network(name) for name in procedures)
            and "imagenet" in multirun_values(config, "model.loss_network.weights"))


class SweptExperimentsGrids(Callback):
    """A sweep over experiments (``experiment=a,b``) runs none of their own grids (``hydra.sweeper.params``): Hydra's
    sweeper reads a grid from the config the sweep starts from, which chooses no experiment. Say so before the jobs,
    naming the experiments whose grid is left out and how to run it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        experiments = multirun_values(config, "experiment")
        with_grids = [name for name in experiments if experiment_has_grid(name)] if len(experiments) > 1 else []
        if with_grids:
            log.warning(f"This sweep runs one job per experiment ({', '.join(experiments)}) but not the grids of "
                        f"{', '.join(with_grids)} (Hydra reads a grid only from the config a sweep starts from); run "
                        f"each of those as a sweep of its own: python train.py -m experiment={with_grids[0]} ...")


def experiment_has_grid(name: str) -> bool:
    """Whether conf/experiment/<name>.yaml, or an experiment it builds on (its defaults list), sets a grid."""
    path = CONF / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return False
    node = OmegaConf.load(path)
    return OmegaConf.select(node, "hydra.sweeper.params", default=None) is not None or any(
        experiment_has_grid(entry) for entry in node.get("defaults", [])
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"))


class PretrainedWeightsPreflight(Callback):
    """Before a multirun's first job: fetch the ImageNet AlexNet weights once if any of its jobs needs them.

    Hydra's basic launcher runs every job and reports the first failure at the end; without this, each job that
    needs the weights would try to fetch them (with its timeouts) and fail while the others trained, and a sweep
    whose weights cannot be had would say so only after its last job. SLURM jobs are left to fetch them on their
    nodes, which may reach a source that the login node does not."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if script_of(config.hydra) == "train" and not launches_on_slurm(config) and needs_imagenet_alexnet(config):
            from framework.pretrained import alexnet_features_state_dict

            with reporting_user_errors_outside_a_job():
                alexnet_features_state_dict("imagenet")  # cached after the first fetch; the jobs read it from there

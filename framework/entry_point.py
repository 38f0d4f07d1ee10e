"""The entry points' frame (train.py, evaluate.py): :func:`run_entry_point` around ``@hydra.main``, and
:func:`reporting_user_errors` around a job's work.

A user's mistake, found anywhere (our checks, a DataModule, a callback, Lightning, Hydra's refusal of the command
line, a sweep's job, a SLURM task), is one sentence on stderr with exit code 2; a signal or a closed stdout stops the
run as framework/stopping.py says; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import hydra._internal.utils as hydra_internals
import yaml
from hydra._internal.hydra import Hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, flag_override
from omegaconf.errors import InterpolationResolutionError

from framework.command_line import (
    checking_keys_of_overrides,
    flags_after_overrides,
    group_given_null_error,
    hydra_flag_refusal,
    hydra_refusal,
    unresolvable_error,
)
from framework.construction import worker_user_error
from framework.errors import (
    ConfigError,
    UserError,
    close_progress_bars,
    disk_full_error,
    error_prefixes,
    log_to_files,
    refuse,
    report,
)
from framework.stopping import (
    evaluate_commands,
    in_a_sweep,
    is_lightning_sigterm,
    job,
    logging_stopping_when_stdout_closes,
    no_notices_meant_for_others,
    remember_the_job,
    sigterm_outside_lightning,
    stop_submitit_local_jobs,
    stopped_by,
    stopping_quietly_when_stdout_closes,
)


def _reporting_hydra_refusals(compose_or_run: Callable[[], object]):
    """Inside Hydra's own reporter: its refusal of the command line becomes one sentence and exit code 2; a sweep
    that a job's bug stopped says where its jobs wrote before Hydra prints the traceback."""
    try:
        return _refusals_as_sentences(compose_or_run)
    except Exception:
        if job.sweep_dir:  # Hydra has let go of the job's config by now
            job.started = True  # a job's bug, also where it ran in a process of its own: Hydra's exit code 1
            print(f"sweep directory: {job.sweep_dir} (a job failed with the traceback below)", file=sys.stderr)
        raise


def _hydra_full_error() -> bool:
    """HYDRA_FULL_ERROR=1: the user asked for Hydra's whole text and traceback, for debugging."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _refusals_as_sentences(compose_or_run: Callable[[], object]):
    """Run Hydra's composition and its job(s); what stops them before any job's work began (Hydra's refusal of the
    command line, a config file that is not YAML, a launcher without submitit, a full disk or an output directory
    that cannot be written, ``group=null``), a sweep's job stopped by a user's mistake, and a SLURM task that failed
    become sentences; after a job began (``job.started``), or with HYDRA_FULL_ERROR=1, the rest keep their
    traceback."""
    try:
        with stopping_quietly_when_stdout_closes():  # before Hydra's reporter prints it (--cfg job | head -1)
            return compose_or_run()
    except HydraException as error:  # composition, parsing, a sweep the sweeper cannot run
        if job.started or _hydra_full_error():  # a job's bug; Hydra's debugging output
            raise
        refuse(hydra_refusal(error))
    except UserError as error:  # a sweep's job stopped with it, and Hydra ran the others first (reporting_user_errors);
        # before OSError: DatasetMissingError is a FileNotFoundError too
        _sweep_stopped_by(error)
    except InterpolationResolutionError as error:  # --cfg job --resolve, with a ${...} that points nowhere
        if job.started or _hydra_full_error():
            raise
        reference = re.search(r"'([^']+)'", str(error))  # the key, or the environment variable, it reads
        typed = next((arg for arg in sys.argv[1:] if reference and "${" in arg and reference[1] in arg), None)
        refuse(unresolvable_error(error, error.full_key or (typed and typed.split("=", 1)[0].lstrip("+~"))))
    except yaml.MarkedYAMLError as error:  # a config file of the user's that is not valid YAML
        if job.started or _hydra_full_error() or error.problem_mark is None:
            raise
        mark = error.problem_mark
        refuse(ConfigError(f"The config file {mark.name} is not valid YAML: {error.problem} (line {mark.line + 1}, "
                           f"column {mark.column + 1}); fix it, e.g. the indentation there."))
    except ModuleNotFoundError as error:  # hydra/launcher=slurm or local in an environment without submitit
        if error.name != "submitit" or _hydra_full_error():
            raise
        refuse(ConfigError("Config key 'hydra/launcher' runs its jobs through submitit, but this environment has no "
                           "module 'submitit'; install the project's environment again (make setup), or pip install "
                           "hydra-submitit-launcher, which brings it."))
    except RuntimeError as error:  # submitit: a multi-task SLURM job that one failed task stopped
        if (said := failed_slurm_task(error)) is None:
            raise
        _slurm_job_stopped_by(*said)  # returns for a bug
        raise
    except (OSError, ValueError) as error:  # Hydra making the output directory, its log file (logging's
        # ValueError, caused by the OSError) or its .hydra/ records, before any job
        if job.started:
            raise
        if full := disk_full_error(error):
            refuse(full)
        if str(error).startswith("Config group override must be a string or a list. Got"):
            refuse(group_given_null_error())
        if isinstance(error, ValueError) and (refusal := hydra_flag_refusal(error)):  # -sc without a subcommand
            refuse(refusal)
        cause = error if isinstance(error, OSError) else error.__cause__ or error.__context__
        if _hydra_full_error() or not isinstance(cause, OSError) or not cause.filename:
            raise
        refuse(ConfigError(f"The output directory cannot be made or written: {cause.filename} ({cause.strerror}); "
                           f"point paths.log_dir= (or hydra.run.dir=, hydra.sweep.dir= with -m) at a folder you can "
                           f"write."))


def _sweep_stopped_by(error: UserError) -> NoReturn:
    """A sweep whose job stopped with ``error``: Hydra ran the others; where the sweep is, how to summarise its
    finished jobs, and the sentence again (a submitit job's own output is in its .submitit log, not here)."""
    where = getattr(error, "output_dir", None)
    if job.sweep_dir:  # as after a sweep that ended well (PrintSweepDir)
        print(f"sweep directory: {job.sweep_dir}", file=sys.stderr)
        if job.script == "train":
            for command in evaluate_commands(job.evaluate_tasks, job.sweep_dir):
                print(f"summarise its finished jobs with: {command}", file=sys.stderr)
    print(f"The sweep ran every job; the first that stopped{f' ({where})' if where else ''} said:", file=sys.stderr)
    refuse(error)


def _slurm_job_stopped_by(folder: Path, task: int, sentence: str | None) -> None:
    """A SLURM job that its ``task`` stopped: that task's sentence, with the exit code of a user's mistake or of the
    signal that stopped it (scancel, the cluster); for a bug (no sentence), where its traceback is, and it returns:
    submitit's error follows."""
    if sentence is None:
        print(f"The SLURM job whose logs are in {folder} stopped when its task {task} failed; its log has the "
              f"traceback.", file=sys.stderr)
        return
    if stop := re.match(r"Stopped by (SIG[A-Z]+)", sentence):
        print(f"The SLURM job whose logs are in {folder} was stopped; task {task} said:", file=sys.stderr)
        print(sentence, file=sys.stderr)
        raise SystemExit(128 + signal.Signals[stop[1]]) from None
    print(f"The SLURM job whose logs are in {folder} stopped when its task {task} failed (srun ended the others, "
          f"which were waiting for it); task {task} said:", file=sys.stderr)
    print(sentence, file=sys.stderr)
    raise SystemExit(2) from None


def failed_slurm_task(error: Exception) -> tuple[Path, int, str | None] | None:
    """For submitit's error about a SLURM job that stopped without every task's result (FailedJobError,
    UncompletedJobError): its log folder, the task that failed, and the user-error sentence that task printed, else
    the sentence of a task that a signal stopped (scancel), else None (a bug). None for any other error."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    if not isinstance(error, FailedJobError | UncompletedJobError):
        return None
    path = re.search(r"(\S+)/[^/\s]+_\d+_(?:result\.pkl|log\.err)", str(error))
    if path is None:
        return None
    folder, prefixes = Path(path[1]), "|".join(re.escape(prefix) for prefix in error_prefixes())
    logs = {int(re.search(r"_(\d+)_log\.err$", log.name)[1]): log.read_text(errors="replace")
            for log in folder.glob("*_log.err")}  # task -> its stderr
    for task, text in sorted(logs.items()):
        if said := re.search(rf"^(?:{prefixes}): .+$", text, re.MULTILINE):
            return folder, task, said[0]
    for task, text in sorted(logs.items()):  # a stop (scancel, the cluster's): after a failure srun stops the others
        if said := re.search(r"^Stopped by SIG[A-Z]+\b.*$", text, re.MULTILINE):
            return folder, task, said[0]
    # a bug: srun names the task that exited with an error (in task 0's log), else submitit's message does
    task = re.search(r"task (\d+): Exited with exit code [1-9]", "".join(logs.values())) or \
        re.search(r"task[:=] ?(\d+)", str(error))
    return folder, int(task[1]) if task else 0, None


@contextmanager
def reporting_user_errors(evaluate_tasks: list[str] | None = None, ckpt_path: str | None = None):
    """Around the work of a Hydra job: a UserError becomes its sentence on stderr and in the job's log, exit code 2.
    ``evaluate_tasks``: the commands that a failed sweep prints for its finished jobs (train.py's config key);
    ``ckpt_path``: the job's (train.py's key), which says whether a job that SLURM requeued goes on from its checkpoint.

    That includes a UserError that stopped a spawned DDP worker (``trainer=ddp_sim``: callbacks' and
    DataModules' ``setup`` run there); the worker's other exceptions stay bugs, with their traceback.

        @hydra.main(...)
        def main(cfg):
            with reporting_user_errors():
                ...
    """
    job.started = True
    remember_the_job(evaluate_tasks, ckpt_path)
    try:
        yield
    except Exception as error:
        user_error = error if isinstance(error, UserError) else worker_user_error(error) or disk_full_error(error)
        if user_error is None:
            raise
        output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
        close_progress_bars()
        log_to_files(report(user_error) + (f" (output directory: {output_dir})" if output_dir else ""))
        print(report(user_error), file=sys.stderr)
        if in_a_sweep():
            user_error.output_dir = output_dir
            raise user_error from None  # as for any failed job, Hydra runs the sweep's others, then raises it
        raise SystemExit(2) from None


@contextmanager
def reporting_user_errors_outside_a_job():
    """Around work that is no Hydra job's: a multirun's own checks (a Hydra callback's ``on_multirun_start``, before
    any job has started or been submitted) or a script's own (LunarLander's generation, the estimator comparison): a
    UserError, or a full disk, becomes its sentence on stderr and exit code 2."""
    try:
        yield
    except Exception as error:
        if (user_error := error if isinstance(error, UserError) else disk_full_error(error)) is None:
            raise
        refuse(user_error)


def _resolved_in_the_whole_config(hydra_node: Callable[[DictConfig], DictConfig]):
    """``--cfg hydra --resolve``: Hydra took the hydra node out of the config and then resolved it, without the job's
    keys that our run and sweep directories interpolate (``paths.log_dir``): an OmegaConf traceback. The node is
    resolved where it stands first, so it shows the directories a run would get."""
    def resolved_first(cfg: DictConfig) -> DictConfig:
        cfg = copy.deepcopy(cfg)
        with flag_override(cfg.hydra, "readonly", False):
            OmegaConf.resolve(cfg.hydra)
        return hydra_node(cfg)
    return resolved_first


def run_entry_point(main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function from ``if __name__ == "__main__"``.

    Hydra refuses a bad command line itself (an unknown group option, a key that is not in the
    config, an override it cannot parse) before any job starts, and would print several lines and
    exit with 1; here each refusal is one sentence with exit code 2 (HYDRA_FULL_ERROR=1 keeps Hydra's
    text). Hydra's reporter (``run_and_report``, which prints and exits) gets that step in front of it
    for the duration of ``main``. A job that started and failed keeps Hydra's exit code 1 (a bug: its
    traceback is printed).
    """
    job.start_afresh()
    no_notices_meant_for_others()
    if "--experimental-rerun" in sys.argv[1:]:  # Hydra would fail on our paths' ${hydra:...}, or on a missing pickle
        refuse(ConfigError(
            f"--experimental-rerun cannot rerun this framework's runs: their paths come from Hydra's runtime "
            f"(${{hydra:runtime.output_dir}}), which Hydra's rerun does not set up; run it again with the overrides in "
            f"its .hydra/overrides.yaml (python {Path(sys.argv[0]).name} <those overrides>), or continue it with "
            f"ckpt_path=auto hydra.run.dir=<its folder>."))
    if (flags_last := flags_after_overrides()) is not None:
        refuse(flags_last)
    run_and_report = hydra_internals.run_and_report
    hydra_internals.run_and_report = lambda function: run_and_report(lambda: _reporting_hydra_refusals(function))
    hydra_node = Hydra.get_sanitized_hydra_cfg
    if "--resolve" in sys.argv[1:]:
        Hydra.get_sanitized_hydra_cfg = staticmethod(_resolved_in_the_whole_config(hydra_node))
    default_sigterm = signal.signal(signal.SIGTERM, sigterm_outside_lightning)
    try:
        with stopping_quietly_when_stdout_closes(), logging_stopping_when_stdout_closes(), checking_keys_of_overrides():
            main()
    except HydraException as error:  # --help, --hydra-help and --info compose the config outside Hydra's reporter
        if job.started or _hydra_full_error():
            raise
        job_overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.lstrip("+~").startswith("hydra")]
        if "--hydra-help" in sys.argv[1:] and job_overrides:  # it composes Hydra's own config alone
            refuse(ConfigError(f"The command line gives --hydra-help with {' '.join(job_overrides)}, but --hydra-help "
                               f"shows Hydra's own help and takes Hydra's overrides alone (hydra.*, hydra/...); leave "
                               f"the others out (python {Path(sys.argv[0]).name} --help lists this program's config "
                               f"groups, --cfg job shows its config)."))
        refuse(hydra_refusal(error))
    except ValueError as error:  # Hydra's own checks of its flags, before its reporter runs
        if job.started or (refusal := hydra_flag_refusal(error)) is None:
            raise
        refuse(refusal)
    except KeyboardInterrupt:  # Ctrl+C outside Lightning's loops: while data is set up, between a sweep's jobs
        stop_submitit_local_jobs()  # hydra/launcher=local: they leave Ctrl+C to the launcher (below)
        stopped_by(signal.SIGINT)
    except SystemExit as stop:
        if is_lightning_sigterm(stop):  # Lightning's after a SIGTERM (kill, a scheduler's stop): a SystemExit of code 0
            stopped_by(signal.SIGTERM)
        if isinstance(stop.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) after Ctrl+C in its loops
            stopped_by(signal.SIGINT)
        if stop.code == 1 and not job.started:  # Hydra's reporter printed an error of composing the config, before
            sys.exit(2)  # any job: the command line's, with the code of the sentences above
        raise
    finally:
        hydra_internals.run_and_report = run_and_report
        Hydra.get_sanitized_hydra_cfg = staticmethod(hydra_node)
        signal.signal(signal.SIGTERM, default_sigterm)

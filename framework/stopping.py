"""How a job or a sweep stops, and what it says then.

The job's record (:data:`job`: its script, folder, sweep, ``ckpt_path``) is what a stopped or failed job says of
itself: where its files are and how it goes on (:func:`stopped_by`). SIGTERM (kill, a scheduler, SLURM's requeue),
Ctrl+C and a closed standard output stop a run with one sentence and the exit code the signal gives, at any phase,
also in the processes submitit's launchers start; a sweep's end names the commands that summarise it
(:func:`evaluate_commands`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from framework.command_line import as_typed_in_a_shell
from framework.compose import ROOT, script_of
from framework.errors import UserError, close_progress_bars, log_to_files
from framework.processes import child_processes, command_line


@dataclass
class JobRecord:
    """What this process's job (or sweep) says of itself when it stops or fails; the entry point starts it afresh,
    the job and Hydra's callbacks fill it in as they learn it."""

    started: bool = False  # the job's own work began: what fails from here is the job's, not the command line's
    script: str | None = None  # train or evaluate (script_of)
    run_dir: str | None = None
    sweep_dir: str | None = None
    evaluate_tasks: list[str] | None = None  # train.py's key: what a failed sweep's end offers to run
    jobs_on_slurm: bool = False  # the process that launched a SLURM sweep: its jobs run on without it
    ckpt_path: str | None = None  # the job's: whether a requeued job goes on from its checkpoint

    def start_afresh(self) -> None:
        vars(self).update(vars(JobRecord()))


job = JobRecord()


def in_a_sweep() -> bool:
    """Is this process running a job of a Hydra multirun?"""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def evaluate_commands(tasks: list[str] | None, runs: str) -> list[str]:
    """``python evaluate.py [task=<task>] runs=<runs>`` for each task (``table``, evaluate.py's default, unnamed),
    for a sweep directory that holds some finished job's results.json; none for one that holds none. Started
    outside the repository (a folder of one's own configs), the script's path as typed from there."""
    if not any(Path(runs).rglob("results.json")):
        return []
    tasks = [tasks] if isinstance(tasks, str) else tasks or ["table"]  # evaluate_tasks=reae_table1 is one task
    tasks = [task for task in tasks if _summarises(task, runs)] or ["table"]  # not one that would only refuse
    runs_word = as_typed_in_a_shell("runs", runs)
    script = "evaluate.py" if Path.cwd().resolve() == ROOT else shlex.quote(os.path.relpath(ROOT / "evaluate.py"))
    return [f"python {script} {'' if task == 'table' else f'task={task} '}{runs_word}" for task in tasks]


def _summarises(task: str, runs: str) -> bool:
    """Whether evaluate.py's ``task`` summarises the runs in ``runs`` rather than refuse them (evaluate.SUMMARISES)."""
    from evaluate import SUMMARISES  # the entry point's registry, as framework/validate.py reads its TASKS
    from framework.results import load_results

    if task not in SUMMARISES:
        return True
    try:
        return SUMMARISES[task](load_results(runs))
    except UserError:  # a results.json that the task itself names as broken
        return True


def remember_the_sweep(script: str, sweep_dir: str, evaluate_tasks: list[str] | None,
                       jobs_on_slurm: bool = False) -> None:
    """What a failed sweep prints at its end: its directory and the commands that summarise its finished jobs. Set
    in each job, and in the process that launched them, where a launcher runs the jobs in processes of their own
    (submitit's local and SLURM launchers); ``jobs_on_slurm``: in the launching process of a SLURM sweep."""
    job.script, job.sweep_dir, job.evaluate_tasks, job.jobs_on_slurm = script, sweep_dir, evaluate_tasks, jobs_on_slurm


def remember_the_job(evaluate_tasks: list[str] | None = None, ckpt_path: str | None = None) -> None:
    """What a job that stops or fails says of itself: its script, its folder and its sweep's, its ``ckpt_path``."""
    job.ckpt_path = ckpt_path
    if HydraConfig.initialized():
        job.script = script_of(HydraConfig.get())
        job.run_dir = HydraConfig.get().runtime.output_dir
    if in_a_sweep():
        remember_the_sweep(job.script, HydraConfig.get().sweep.dir, evaluate_tasks)


def _lightning_sigterm() -> type[SystemExit] | None:
    """Lightning's SIGTERMException, which its signal handling (and ``sigterm_outside_lightning``) raises to stop a
    job; None where Lightning has not been imported (then nothing raised it)."""
    return getattr(sys.modules.get("lightning.pytorch.utilities.exceptions"), "SIGTERMException", None)


def is_lightning_sigterm(error: BaseException) -> bool:
    return (kind := _lightning_sigterm()) is not None and isinstance(error, kind)


def exit_code_of(error: BaseException) -> int:
    """The exit code a job ending on ``error`` leaves the process with (``run_entry_point``'s): what wandb records
    as the run's state (0 is "finished")."""
    if is_lightning_sigterm(error):
        return 128 + signal.SIGTERM
    if isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if isinstance(error, UserError):
        return 2
    if isinstance(error, SystemExit):  # as Python exits on it: sys.exit() with 0, sys.exit("message") with 1
        return 0 if error.code is None else error.code if isinstance(error.code, int) else 1
    return 1


def _where_and_how_to_go_on() -> str:
    """Where the stopped job or sweep is, and how to continue it: the same command with ckpt_path=auto, and with its
    folder where the command did not give one (a new default folder, named after the time, would start afresh)."""
    sweep = job.sweep_dir
    where = f"sweep directory: {sweep}" if sweep else ""
    key, folder = ("hydra.sweep.dir", sweep) if sweep else ("hydra.run.dir", job.run_dir)
    given = any(arg.lstrip("+").startswith(f"{key}=") for arg in sys.argv[1:])
    also = f" {as_typed_in_a_shell(key, str(folder))}" if folder and not given else ""
    how = (f"a run goes on from its last checkpoint when the same command is given again with ckpt_path=auto{also}"
           if job.script == "train" else "")
    if job.script == "train" and requeued_by_slurm():  # it continues by itself
        how = "SLURM has requeued the job, which starts again by itself" + (
            ", from its last checkpoint" if job.ckpt_path == "auto" else
            f"; without ckpt_path=auto that start stops at the files this run left, and the same command given again "
            f"with ckpt_path=auto{also} continues the run")
    if job.jobs_on_slurm:  # the launching command stopped, not its jobs
        how = (f"its jobs go on running on the cluster: squeue lists them and scancel stops them; a job stopped there "
               f"goes on from its last checkpoint when the same command is given again with ckpt_path=auto{also}")
    details = "; ".join(part for part in (where, how) if part)
    return f" ({details})" if details else ""


def requeued_by_slurm() -> bool:
    """Whether SLURM has requeued the job this process runs in (``scontrol requeue``, a preemption, submitit at the
    time limit): its restart count, which SLURM raises as it requeues, is then above this start's."""
    job = os.environ.get("SLURM_JOB_ID")
    if job is None or shutil.which("scontrol") is None:
        return False
    try:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    restarts = re.search(r"\bRestarts=(\d+)", shown)
    return restarts is not None and int(restarts[1]) > int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def stopped_by(signal_number: int) -> NoReturn:
    """A run or sweep that a signal stopped: one sentence on stderr and in the job's log, and the exit code that the
    signal's default action gives (130 for SIGINT, 143 for SIGTERM), which ``&&`` chains and schedulers read."""
    stopped = f"Stopped by {signal.Signals(signal_number).name}{_where_and_how_to_go_on()}."
    close_progress_bars()
    log_to_files(stopped)
    print(stopped, file=sys.stderr)
    raise SystemExit(128 + signal_number) from None


def sigterm_outside_lightning(signal_number: int, frame) -> None:
    """SIGTERM while no Trainer runs in this process (a job's set-up, its best checkpoint's scoring, results.json,
    between a sweep's jobs, or while ddp_spawn's ranks train) stops the job as Lightning's own handler stops a fit,
    with its exception: killed by the signal, the job left no sentence, and its ranks trained on. The ranks are
    killed: Lightning stops a rank at the end of the batch in which its signal arrived, with no word to the others,
    so a SIGTERM passed on to each rank left the one that got it a batch later waiting for the others for good. Their
    checkpoints are written whole or not at all, and the job continues from the last. While a Trainer runs here,
    Lightning's handler is the one installed; it calls this one too, after noting the signal, and stops the run at
    its next batch."""
    if signal.getsignal(signal.SIGTERM) is sigterm_outside_lightning:  # else Lightning's called it: it stops the fit
        for child in multiprocessing.active_children():  # ddp_spawn's ranks
            with suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        stop_submitit_local_jobs()
        if (sigterm := _lightning_sigterm()) is None:  # Hydra still composing: no job has imported Lightning
            stopped_by(signal.SIGTERM)
        raise sigterm


def sigterm_stops_a_submitit_job() -> None:
    """In a job that submitit runs in a process of its own (``hydra/launcher=local`` or ``slurm``), submitit's handler
    logs a SIGTERM and ignores it ("Bypassing signal SIGTERM"), and Lightning's takes over only when a fit starts: a
    SIGTERM while the job imported torch and set up (seconds) was ignored, and the job trained on until a SIGKILL (the
    local launcher's grace, SLURM's KillWait). From here on such a SIGTERM stops the job as it stops a run in one
    process (``sigterm_outside_lightning``). Any other handler is left as it is."""
    handler = signal.getsignal(signal.SIGTERM)
    if type(getattr(handler, "__self__", None)).__module__.startswith("submitit."):
        remember_the_job()  # its sentence says how the sweep goes on, whenever the signal comes
        signal.signal(signal.SIGTERM, sigterm_outside_lightning)
        submitits_requeue_leaves_the_stop_to_slurm()


def submitits_requeue_leaves_the_stop_to_slurm() -> None:
    """SLURM sends a job's tasks SIGUSR2 ``signal_delay_s`` before its time limit (``#SBATCH --signal``), and
    submitit's handler requeues the job (on rank 0) and then ends the process at once, in the middle of a step: exit
    code 255 and no sentence, and in a DDP job the other ranks failed with a traceback. Here the requeue stays
    submitit's and the stop is SLURM's: ``scontrol requeue`` sends every task SIGTERM, which stops each at its next
    batch with the stop sentence. Where the job is not requeued (it timed out ``max_num_timeout`` times, or SLURM
    refused), it trains on until SLURM's SIGTERM at the time limit. submitit's local executor is left as it is."""
    from submitit.core.job_environment import JobEnvironment
    from submitit.core.utils import UncompletedJobError
    from submitit.slurm.slurm import SlurmJobEnvironment

    requeue_signal = JobEnvironment._usr_sig()
    requeue = signal.getsignal(requeue_signal)
    submitits = getattr(requeue, "__self__", None)
    if getattr(requeue, "__name__", None) != "checkpoint_and_try_requeue" or \
            not isinstance(getattr(submitits, "env", None), SlurmJobEnvironment):
        return
    submitits._exit = lambda: None  # its sys.exit(-1) after the requeue (submitit's seam for this: "for mocking")

    def requeue_then_wait_for_slurms_sigterm(signal_number: int, frame) -> None:
        try:
            requeue(signal_number, frame)
        except UncompletedJobError as not_requeued:
            logging.getLogger("submitit").warning(f"{not_requeued} The job trains on until SLURM stops it.")
        except subprocess.SubprocessError as refused:  # scontrol requeue failed (a cluster that requeues no job)
            logging.getLogger("submitit").warning(f"Job not requeued because: {refused} The job trains on until "
                                                  f"SLURM stops it.")

    signal.signal(requeue_signal, requeue_then_wait_for_slurms_sigterm)


SUBMITIT_LOCAL_GRACE_S = 30  # SLURM's default KillWait: SIGTERM, then SIGKILL this many seconds later


def stop_submitit_local_jobs() -> None:
    """``hydra/launcher=local``: submitit runs each job in a process of its own under a controller process, which
    passes SIGTERM on to it; a launcher that SIGTERM stopped left its jobs training with no launcher to wait for them.
    Each job gets the signal as on a cluster, and the launcher waits until they have stopped (Lightning stops at the
    next batch), killing those still there after ``SUBMITIT_LOCAL_GRACE_S``, so that the sweep can go on with
    ckpt_path=auto."""
    controllers = [pid for pid in child_processes(os.getpid()) if "submitit.local._local" in command_line(pid)]
    for controller in controllers:
        with suppress(ProcessLookupError):
            os.kill(controller, signal.SIGTERM)
    deadline = time.monotonic() + SUBMITIT_LOCAL_GRACE_S
    for controller in controllers:
        while not (ended := has_ended(controller)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not ended:  # past the grace: its task, then the controller, as SLURM would
            for pid in [*child_processes(controller), controller]:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            has_ended(controller, wait=True)


def local_jobs_leave_ctrl_c_to_the_launcher() -> None:
    """``hydra/launcher=local``: Ctrl+C reaches every process of the terminal's foreground group, submitit's
    controllers included, which printed a KeyboardInterrupt traceback each and killed their jobs a second later, in
    the middle of their stop, while the launcher exited at once. Started with SIGINT ignored (an ignored signal stays
    ignored across exec), the controllers and their jobs leave Ctrl+C to the launcher, which stops its jobs as at a
    SIGTERM (``stop_submitit_local_jobs``) and waits for them."""
    from submitit.local import local

    start = local.start_controller
    if getattr(start, "ignoring_ctrl_c", False):
        return

    def start_controller(*args, **kwargs):
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return start(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)

    start_controller.ignoring_ctrl_c = True
    local.start_controller = start_controller


def has_ended(child: int, wait: bool = False) -> bool:
    """Whether the child process ``child`` has ended (it is then reaped); ``wait``: until it has."""
    try:
        return os.waitpid(child, 0 if wait else os.WNOHANG) != (0, 0)
    except ChildProcessError:  # reaped already
        return True


def _stdout_reader_gone() -> bool:
    poll = select.poll()  # the kernel flags a pipe's writing end with POLLERR once its reader has gone
    poll.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def _stop_as_a_closed_pipes_writer() -> NoReturn:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's last flush stays quiet
    log_to_files(f"Stopped: its standard output was closed, the reader of its pipe gone{_where_and_how_to_go_on()}.")
    raise SystemExit(128 + signal.SIGPIPE) from None


@contextmanager
def stopping_quietly_when_stdout_closes():
    """``python train.py --help | head -1``: the reader has what it wanted and has gone. The process stops as a
    pipe's writer does, without a traceback, with the code a shell gives a command that a closed pipe stopped."""
    try:
        try:
            yield
        finally:
            sys.stdout.flush()  # a buffered write fails here, not in the interpreter's last flush (exit code 120)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe or socket: not the user's doing
        _stop_as_a_closed_pipes_writer()
    except SystemExit as stop:
        if stop.code == 1 and isinstance(stop.__context__, BrokenPipeError):  # rich's console (Lightning's model
            _stop_as_a_closed_pipes_writer()  # summary, progress bar), which has silenced stdout itself
        raise


@contextmanager
def logging_stopping_when_stdout_closes():
    """A log line to a closed stdout (``python train.py | head``) stops the process as a closed pipe's writer, as
    ``stopping_quietly_when_stdout_closes`` does for prints; logging's own handling would print a "Logging error"
    with a traceback for every later line and carry on writing into the void."""
    handle_error = logging.StreamHandler.handleError

    def stopping(handler: logging.StreamHandler, record: logging.LogRecord) -> None:
        if (isinstance(sys.exc_info()[1], BrokenPipeError) and handler.stream is sys.stdout
                and _stdout_reader_gone()):
            _stop_as_a_closed_pipes_writer()
        handle_error(handler, record)

    logging.StreamHandler.handleError = stopping
    try:
        yield
    finally:
        logging.StreamHandler.handleError = handle_error


def no_notices_meant_for_others() -> None:
    """Turn off two warnings that every run printed and that ask nothing of the person who started it.

    Lightning hints, on any machine with srun on PATH (a cluster's login node), that a command not started by srun be
    prepended with it; outside a SLURM job (no ``SLURM_JOB_ID``) that is no advice for a run here, and it came before
    a user error's one sentence. Inside a job, where the advice may be right, it stays. Torch 2.15 deprecates
    building a ``LeafSpec``, which Lightning 2.6's CombinedLoader does in every fit, validation and test: advice to
    Lightning's authors."""
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
                            category=FutureWarning)

"""A run continued from its own checkpoint (``ckpt_path=auto``, a requeued SLURM job) ends as an uninterrupted run
would: its folder's files are put in the state of the save before it goes on (what a killed start logged, what was
saved or logged after the checkpoint, a row the stop cut off), and Lightning's fit loop continues an epoch that
max_steps cut short within it. framework/checkpoints.py chooses and checks the checkpoint; framework/training.py
calls these where it builds the Trainer and where it continues a run (``continue_from``)."""

from __future__ import annotations

import itertools
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import lightning as L
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.loops.loop import _Loop
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

from framework.atomic import write_atomically
from framework.checkpoints import (
    CSV_ROWS_LOGGED,
    EPOCH_END_ROW,
    METRICS_CSV,
    checkpoint_to_continue,
    listed,
    logging_step,
    save_order,
    saved_at_an_epochs_end,
    saved_when,
)
from framework.loggers import read_csv, write_csv

log = logging.getLogger("train")


def set_aside_a_killed_start(output_dir: str | Path) -> None:
    """``ckpt_path=auto`` in a folder whose run was killed before its first checkpoint starts that run again: the
    metrics.csv it left is renamed (metrics.killed-1.csv, ...), so that the new rows do not follow its rows, and its
    TensorBoard events are moved to tensorboard.killed-1/, ..., so that the restart's steps do not repeat its own."""
    folder = Path(output_dir)
    if any((folder / "checkpoints").glob("*.ckpt")):
        return
    metrics, events = folder / METRICS_CSV, folder / "tensorboard"
    set_aside = []
    if metrics.is_file():
        set_aside.append(metrics.rename(first_free(lambda n: metrics.with_name(f"metrics.killed-{n}.csv"))))
    if events.is_dir():
        set_aside.append(events.rename(first_free(lambda n: folder / f"tensorboard.killed-{n}")))
    if set_aside:
        log.info(f"ckpt_path=auto: {folder} holds what a start killed before its first checkpoint logged; it is kept "
                 f"as {' and '.join(str(path.relative_to(folder)) for path in set_aside)} and this run starts again")


def complete_an_interrupted_save(output_dir: str | Path) -> None:
    """``ckpt_path=auto`` in a folder whose run was stopped between an epoch's best checkpoint and its last.ckpt: the
    best one, the newer, is copied to last.ckpt, which the run then continues from as after any epoch. Continued from
    the best file itself, the run would keep that file for good (Lightning never deletes the checkpoint a run
    resumed from), beside the later best ones. Only for a run that writes last.ckpt (``callbacks.last_checkpoint``);
    without it, ``ckpt_path=auto`` continues from its newest best checkpoint as it is."""
    checkpoints = Path(output_dir) / "checkpoints"
    newest, last = checkpoint_to_continue(checkpoints), checkpoints / "last.ckpt"
    if newest is None or newest == last:
        return
    if last.is_file() and not saved_when(last).readable:  # damaged (the saves are atomic): keep it, and say so
        damaged = first_free(lambda n: last.with_name(f"last.damaged-{n}"))
        last.rename(damaged)
        log.warning(f"ckpt_path=auto: {last} cannot be read as a checkpoint (truncated or damaged; it is kept as "
                    f"{damaged.name}): the run continues from the newest readable one, {newest.name} (global step "
                    f"{saved_when(newest).order[0]}), copied to last.ckpt")
    else:
        log.info(f"ckpt_path=auto: {newest} was saved after last.ckpt (the run was stopped between the two saves of "
                 f"an epoch's end); it is copied to last.ckpt, which the run continues from")
    with open(newest, "rb") as saved:
        write_atomically(last, lambda file: shutil.copyfileobj(saved, file))


def lost_accumulation_warning(path: str, checkpoint: dict, accumulate_grad_batches: int) -> str | None:
    """A checkpoint saved within an epoch after a number of batches that is not a multiple of
    ``trainer.accumulate_grad_batches`` holds the weights before the gradients accumulated since the last step, and
    not those gradients: the continued run steps without them. The warning that says so, or None."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    served = [state.get("batches", 0) for state in loop.get("state_dict", {}).get("combined_loader", [])]
    at_its_last_batch = loop.get("epoch_loop.batch_progress", {}).get("is_last_batch", False)  # Lightning steps there
    if accumulate_grad_batches < 2 or not served or served[0] % accumulate_grad_batches == 0 or at_its_last_batch:
        return None
    return (f"ckpt_path {path} was saved after batch {served[0]} of its epoch, within an accumulation of "
            f"trainer.accumulate_grad_batches={accumulate_grad_batches} batches: the gradients accumulated since the "
            f"last optimizer step are in no checkpoint, so the continued run makes its next step without them")


def set_aside_checkpoints_saved_after(checkpoints: Path, checkpoint: dict) -> None:
    """A run continued from its own ``checkpoint`` saves again what was saved after it: a best checkpoint from within
    an epoch that ``ckpt_path=auto`` passed over, or every later one when ``ckpt_path`` names an older file. Left in
    place, such a file stays beside its new save (epoch_002.ckpt beside epoch_002-v1.ckpt), and the run reports the
    new name as its best; so these files move to checkpoints/superseded-1/ (-2, ...)."""
    step = checkpoint["global_step"]
    later = [path for path in sorted(checkpoints.glob("*.ckpt")) if saved_when(path).order > save_order(checkpoint)]
    if not later:
        return
    aside = first_free(lambda n: checkpoints / f"superseded-{n}")
    aside.mkdir()
    for path in later:
        path.rename(aside / path.name)
    log.info(f"{len(later)} checkpoint(s) of {checkpoints} ({listed(checkpoints, later)}) were saved after the one "
             f"this run continues from (global step {step}) and are saved again: they are kept in {aside.name}/")


def first_free(numbered: Callable[[int], Path]) -> Path:
    """numbered(1), numbered(2), ...: the first that does not exist, for what is set aside (metrics.killed-1.csv)."""
    return next(path for n in itertools.count(1) if not (path := numbered(n)).exists())


def epoch_goes_on(checkpoint: dict, max_steps: int | None) -> bool:
    """Saved at the end of an epoch that max_steps (or a stop but early stopping's) cut short, and continued by a run
    that trains further: the epoch goes on from its last batch (FitLoopResumingAtEpochEnds), and its end's rows are
    logged again at its real end."""
    if not saved_at_an_epochs_end(checkpoint):
        return False
    batches = checkpoint["loops"]["fit_loop"].get("epoch_loop.batch_progress", {})
    # the framework's early stopping keeps a run it stopped stopped (RunEarlyStopping); Lightning's trains on
    stopped_early = any(key.startswith("RunEarlyStopping") and state.get("stopping_reason", 0)
                        for key, state in checkpoint.get("callbacks", {}).items())
    trains_further = max_steps in (-1, None) or checkpoint["global_step"] < max_steps
    return not batches.get("is_last_batch", True) and not stopped_early and trains_further


def first_step_logged_again(checkpoint: dict, max_steps: int | None = -1) -> int:
    """The step a run continued from ``checkpoint`` logs from: its logging step, or the next where it was saved within
    a training batch (after the batch's validation, or at its end), which Lightning counts only after the save, or
    the step before, that of the training row of an epoch that goes on (``epoch_goes_on``)."""
    if epoch_goes_on(checkpoint, max_steps):
        return logging_step(checkpoint) - 1
    return logging_step(checkpoint) + (0 if saved_at_an_epochs_end(checkpoint) else 1)


def set_aside_rows_logged_after(output_dir: str | Path, checkpoint: dict, max_steps: int | None = -1) -> None:
    """A run continued from its own checkpoint logs again what it logged after that save: those rows of its
    metrics.csv (the next epoch's learning rates, the validation of an epoch cut short, the test of a run killed
    before its results.json) move to metrics.superseded-1.csv (-2, ...), so that metrics.csv reads as an
    uninterrupted run's. They are the rows after those the CSV logger had been given at the save (its count, kept in
    the checkpoint) at the step the continued run logs from or later: the training row of an epoch's end, logged
    just after the epoch's checkpoints at the step before, is not logged again."""
    metrics = Path(output_dir) / METRICS_CSV
    if not metrics.is_file():
        return
    header, rows = read_csv(metrics)
    if "step" not in header:
        return
    # a last row without its line end was being written when the run was killed (a full disk, a network file
    # system): the next row would be appended to it
    torn = bool(rows) and not metrics.read_bytes().endswith(b"\n")
    column, step = header.index("step"), first_step_logged_again(checkpoint, max_steps)
    rows_at_the_save = checkpoint.get(CSV_ROWS_LOGGED) or 0

    def logged_again(n: int, row: list[str]) -> bool:
        if torn and n == len(rows) - 1:
            return True
        return n >= rows_at_the_save and len(row) > column and row[column] != "" and _number(row[column]) >= step

    logged_later = [logged_again(n, row) for n, row in enumerate(rows)]
    if not any(logged_later):
        return
    aside = first_free(lambda n: metrics.with_name(f"metrics.superseded-{n}.csv"))
    later = [row for row, after in zip(rows, logged_later, strict=True) if after]
    kept = [row for row, after in zip(rows, logged_later, strict=True) if not after]
    write_atomically(aside, lambda file: write_csv(file, header, later))
    write_atomically(metrics, lambda file: write_csv(file, header, kept))
    log.info(f"{sum(logged_later)} row(s) of {metrics} were logged after the checkpoint this run continues from "
             f"(global step {checkpoint['global_step']}) and are logged again: they are kept in {aside.name}")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # a row torn within its step
        return math.inf


def log_again_the_epoch_end_row(output_dir: str | Path, checkpoint: dict, max_steps: int | None = -1) -> None:
    """Lightning logs an epoch's training row just after the checkpoints of that epoch's end, and a run continued from
    one of them does not log it again: a run killed between the two lacked it in metrics.csv for good. The checkpoint
    holds the row (``KeptValuesInCheckpoints``); it is added when metrics.csv (its rows logged after the save set
    aside) ends where the save left it."""
    metrics, row = Path(output_dir) / METRICS_CSV, checkpoint.get(EPOCH_END_ROW)
    if row is None or checkpoint.get(CSV_ROWS_LOGGED) is None or not metrics.is_file():
        return
    if epoch_goes_on(checkpoint, max_steps):  # the row is logged again at the epoch's real end
        return
    header, rows = read_csv(metrics)
    if len(rows) != checkpoint[CSV_ROWS_LOGGED]:
        return
    widened = sorted(set(header) | set(row))  # the logger's order (framework/loggers.py): sorted
    moved = [[dict(zip(header, old, strict=False)).get(key, "") for key in widened] for old in rows]
    added = [str(row.get(key, "")) for key in widened]
    write_atomically(metrics, lambda file: write_csv(file, widened, [*moved, added]))
    log.info(f"{metrics} lacked the training row of epoch {row['epoch']}, logged just after the checkpoint this run "
             f"continues from (the run was stopped in between): it is added from the checkpoint")


class FitLoopResumingAtEpochEnds(_FitLoop):
    """Lightning's fit loop, which continues a run with ``trainer.max_steps`` from a checkpoint saved at an epoch's end
    as it continues one without: at the next epoch. Lightning takes any continuation of a run with max_steps for one
    within an epoch: it ran the checkpoint's epoch end again (its epoch count then reached max_epochs) and trained no
    further batch, and tested the checkpoint's weights as the run's. An epoch that max_steps cut short (saved at the
    end Lightning gives it there) is continued within by a run that trains further (``epoch_goes_on``), with or
    without max_steps. A run continued after its last step (killed while testing) reports the epoch count an
    uninterrupted one does, as Lightning sees to for max_epochs. A run continued within an epoch with another batch
    size counts that epoch's batches in the new size."""

    continues_a_cut_short_epoch = False  # restarted within an epoch that max_steps cut short, from its end

    @property
    def done(self) -> bool:
        """Lightning's, which counts the epoch completed where max_epochs stops the run (so that current_epoch reads
        as an uninterrupted run's) and not where max_steps does: a run continued after its last step (killed while
        testing) was an epoch short."""
        if -1 < self.max_steps <= self.epoch_loop.global_step:
            self.epoch_progress.current.completed = self.epoch_progress.current.processed
        return super().done

    @_FitLoop.restarting.setter
    def restarting(self, restarting: bool) -> None:
        """Lightning's setter restarts within an epoch where the epoch was unfinished or, for any continuation of a
        run with max_steps, always (``restarting and unfinished or iteration_based``): a run continued from an epoch's
        end then ran that end again. Here it restarts where the epoch was unfinished or max_steps cut it short, and
        only when Lightning restarts at all (``restarting and (unfinished or cut_short)``)."""
        current = self.epoch_progress.current
        self.continues_a_cut_short_epoch = restarting and epoch_goes_on(self.as_restored(), self.max_steps)
        if self.continues_a_cut_short_epoch:
            # Lightning took the epoch for a finished one: the next started (without max_steps), or, counted
            # processed, it went on with the next epoch's order (a larger max_steps). It goes on within it, as from
            # its last batch's end, and ends again at its real end.
            current.processed, self.epoch_progress.total.processed = current.completed, current.completed
        epoch_unfinished = any(value != current.processed for value in (current.ready, current.started))
        cut_short = self._iteration_based_training() and not self.epoch_loop.batch_progress.is_last_batch  # max_steps
        _Loop.restarting.fset(self, restarting and (epoch_unfinished or cut_short))

    def on_run_start(self) -> None:
        """Restarted after a batch at whose end a validation was due, Lightning's epoch loop takes the checkpoint for
        one saved in that validation, before the batch was counted for the loggers, skips the validation and counts
        the batch. A cut-short epoch's checkpoint was saved at its end, after that count: every row logged after the
        continuation was a step later than an uninterrupted run's."""
        super().on_run_start()
        epoch_loop = self.epoch_loop
        if self.continues_a_cut_short_epoch and epoch_loop.restarted_on_last and \
                epoch_loop._should_check_val_fx(self._data_fetcher):
            epoch_loop._batches_that_stepped -= 1

    def as_restored(self) -> dict:
        """What ``epoch_goes_on`` reads of a checkpoint, from the states Lightning restored it into."""
        return {"loops": {"fit_loop": self.state_dict()}, "global_step": self.epoch_loop.global_step,
                "callbacks": {callback.state_key: callback.state_dict() for callback in self.trainer.callbacks}}

    def _load_combined_loader_states(self) -> None:
        """A run continued within an epoch with another ``data.batch_size``: the training loader passes over whole
        batches of the new size (``TrainingLoader``), and Lightning's count of the epoch's batches, restored in the
        checkpoint's size, is moved to the same count. In the old size the epoch ended before its rest was trained
        (larger batches) or after its last batch, whose validation never came (smaller)."""
        super()._load_combined_loader_states()
        epoch = self.epoch_progress.current.completed  # the checkpoint's
        for loader in self._combined_loader.flattened if self._combined_loader is not None else []:
            if getattr(loader, "resume_at", None) and loader.resume_at["epoch"] == epoch:
                moved = loader.samples_served() // loader.size() - loader.resume_at["batches"]
                for progress in (self.epoch_loop.batch_progress.current, self.epoch_loop.batch_progress.total):
                    progress.ready, progress.started = progress.ready + moved, progress.started + moved
                    progress.processed, progress.completed = progress.processed + moved, progress.completed + moved


def with_fit_loop_resuming_at_epoch_ends(trainer: L.Trainer) -> None:
    epoch_loop = trainer.fit_loop.epoch_loop
    trainer.fit_loop = FitLoopResumingAtEpochEnds(trainer, min_epochs=trainer.fit_loop.min_epochs,
                                                  max_epochs=trainer.fit_loop.max_epochs)
    trainer.fit_loop.epoch_loop = epoch_loop


def lightnings_requeue_checkpoints(output_dir: str | Path) -> list[Path]:
    """The hpc_ckpt_N.ckpt that Lightning's SLURM auto-requeue (its SIGUSR1 handler) saved in ``output_dir``, in a
    SLURM job: saved within a training step, wherever the signal came."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return sorted(Path(output_dir).glob("hpc_ckpt_*.ckpt")) if SLURMEnvironment.detect() else []


class CheckpointConnectorWithoutHpcResume(_CheckpointConnector):
    """Lightning's, without its own resume from an hpc_ckpt_N.ckpt when fit is given no checkpoint: that file was
    saved within a training step, and the continuation's checks and set-asides (``continue_from``) were passed over,
    so a requeued run did not end as an uninterrupted one. train() continues such a run as ckpt_path=auto does;
    ``ckpt_path=hpc`` still names the file."""

    @property
    def _hpc_resume_path(self) -> None:
        return None


def without_lightnings_hpc_resume(trainer: L.Trainer) -> None:
    trainer._checkpoint_connector.__class__ = CheckpointConnectorWithoutHpcResume

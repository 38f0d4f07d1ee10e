"""The checkpoints of a run: the one it continues from (``ckpt_path``, ``auto``: its newest) or tests
(``train=false``), checked before it is used (a file that is not a Lightning checkpoint, or whose weights do not fit
the model, is one sentence naming it, not the traceback of torch.load or load_state_dict; so is a resume that changes
what the checkpoint keeps, KEPT_ON_RESUME), and the callbacks that save them with what a continuation needs besides
Lightning's state. framework/resuming.py puts a continued run's files and fit loop where its checkpoint left them."""

from __future__ import annotations

import logging
import random
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, ListConfig, OmegaConf

from framework.atomic import why_unwritable, write_atomically
from framework.compose import at_or_below
from framework.construction import get_object
from framework.errors import ConfigError, DataError
from framework.loggers import AppendingCSVLogger
from framework.monitored_metrics import logged_names

log = logging.getLogger("train")
METRICS_CSV = "csv/metrics.csv"  # where the CSV logger (conf/logger/csv.yaml) writes, in a run's output directory
# What every checkpoint holds besides Lightning's state (KeptValuesInCheckpoints, RandomStatesInCheckpoints):
KEPT_VALUES = "values_kept_on_resume"  # the values of KEPT_ON_RESUME, which a resume must keep
TRAINED_WITH = "config_trained_with"  # the run's other values (``trained_with``)
TRAINING_METRICS = "last_epoch_training_metrics"  # in one saved at an epoch's end: that epoch's training metrics
RANDOM_STATES = "random_states"  # the random number generators' states
CSV_ROWS_LOGGED = "csv_rows_logged"  # the rows metrics.csv had been given when the checkpoint was saved
WALL_SECONDS = "run_wall_seconds"  # the run's wall time up to the save, over every start it continued from
EPOCH_END_ROW = "epoch_end_row"  # the training row Lightning logs just after a checkpoint of an epoch's end


class Saved(NamedTuple):
    """When a checkpoint was saved (``save_order``; (-1, -1) for a file torch cannot read as a checkpoint), and
    whether at an epoch's end."""

    order: tuple[int, int]
    at_an_epochs_end: bool

    @property
    def readable(self) -> bool:
        return self.order >= (0, 0)


def saved_when(path: Path) -> Saved:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return Saved(save_order(checkpoint), saved_at_an_epochs_end(checkpoint))
    except Exception:  # truncated, foreign or not a Lightning checkpoint: not one to continue from
        return Saved((-1, -1), False)


def save_order(checkpoint: dict) -> tuple[int, int]:
    """Its global step, then the rows metrics.csv had been given: two saves at one step (one at a batch's end, a best
    one after that batch's validation) are told apart by the validation's row."""
    return int(checkpoint["global_step"]), checkpoint.get(CSV_ROWS_LOGGED) or 0


def saved_at_an_epochs_end(checkpoint: dict) -> bool:
    """In ``on_train_epoch_end`` (Lightning counts the epoch processed, not yet completed), not after a validation or
    at a batch's end within the epoch."""
    epoch = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return epoch.get("processed", 0) > epoch.get("completed", 0)


def checkpoint_to_continue(checkpoints: Path) -> Path | None:
    """The checkpoint in a run's ``checkpoints`` folder that ``ckpt_path=auto`` continues from: last.ckpt, saved at
    the end of every epoch, unless a checkpoint saved at a later epoch's end is there. The best checkpoint of an epoch
    is saved just before that epoch's last.ckpt, with the same state, so a run killed between the two saves holds its
    newest state only in the best one (and, in its first epoch, no last.ckpt at all). A best checkpoint saved after a
    validation within an epoch (val_check_interval < 1) is passed over: the epoch's training means, which Lightning
    keeps in no checkpoint, would cover only the batches after it. It is continued from only where there is nothing
    else. None: no checkpoint."""
    last = checkpoints / "last.ckpt"
    others = sorted(path for path in checkpoints.glob("*.ckpt") if path.name != last.name)
    if not others:
        return last if last.is_file() else None
    saved = {path: saved_when(path) for path in others}
    at_epoch_ends = [path for path in others if saved[path].at_an_epochs_end]
    if last.is_file():
        saved[last] = saved_when(last)
        # a damaged last.ckpt (order (-1, -1)) loses to any readable checkpoint, one saved within an epoch too
        candidates = [last, *at_epoch_ends] if saved[last].readable or at_epoch_ends else [last, *others]
    else:
        candidates = at_epoch_ends or others
    return max(candidates, key=lambda path: (saved[path].order, path == last))  # the same step: last.ckpt


def resolve_ckpt_path(ckpt_path: str | None, trainer: L.Trainer, training: bool = True) -> str | None:
    """``auto``: this run's newest checkpoint when there is one (resume a killed run: ``checkpoint_to_continue``),
    otherwise a fresh start. Lightning's ``last`` means the same here, and is resolved here too, so that the checks
    of the file apply to it."""
    if ckpt_path not in ("auto", "last"):  # a file as the run's results.json records it: absolute
        return str(Path(ckpt_path).absolute()) if ckpt_path and Path(ckpt_path).is_file() else ckpt_path
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            if checkpoint := checkpoint_to_continue(Path(callback.dirpath)):
                return str(checkpoint)
    if training:
        log.info(f"ckpt_path={ckpt_path}: no checkpoint in this run's checkpoint directory, starting fresh")
    return None


def earlier_run_refusal(output_dir: str | Path, ckpt_path: str | None, trained: bool = True,
                        multirun: bool = False) -> ConfigError | None:
    """Would this run mix its files with those an earlier run left in ``output_dir``? A training run that does not
    continue that directory's own run (no ckpt_path, another run's checkpoint, or ``auto`` without a last.ckpt
    there) would append to its metrics.csv and replace its last.ckpt and results.json; a test-only run
    (``train=false``) would replace its results.json, or write one that makes a killed run look finished. The
    sentence that says so (None: no conflict), as HF's Trainer refuses a non-empty output_dir. A SLURM job that
    Lightning's auto-requeue left an hpc_ckpt_*.ckpt passes: train() continues it as ckpt_path=auto does."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    folder = Path(output_dir)
    last = folder / "checkpoints" / "last.ckpt"
    checkpoints, results = sorted(folder.glob("checkpoints/*.ckpt")), sorted(folder.glob("results.json"))
    earlier = checkpoints + results + sorted(folder.glob(METRICS_CSV))
    if any(folder.glob("hpc_ckpt_*.ckpt")) and SLURMEnvironment.detect():  # no srun hint: see run_entry_point
        return None
    elsewhere = "give another hydra.sweep.dir" if multirun else "leave hydra.run.dir out (each run gets a new folder)"
    if not trained:
        if not earlier:
            return None
        if multirun:  # one checkpoint for every job would test job 0's weights in each
            remedy = f"{elsewhere}, with the checkpoints to test as the values of ckpt_path"
        elif ckpt_path in (None, "auto", "last"):
            remedy = f"give ckpt_path={last if last.is_file() else '<one of its checkpoints>'} and {elsewhere}"
        else:
            remedy = elsewhere
        effect = "replace" if results else "write (it would look finished)"
        return ConfigError(f"The output directory {folder} holds an earlier run ({listed(folder, earlier)}), whose "
                           f"results.json this test-only run (train=false) would {effect}; {remedy}.")
    if ckpt_path in ("auto", "last"):
        if checkpoints:  # checkpoint_to_continue: last.ckpt or a later one
            return None
        if not results:
            return None  # a run killed before its first checkpoint starts again
        return ConfigError(f"The output directory {folder} holds an earlier run (results.json) but no checkpoint in "
                           f"checkpoints/ for ckpt_path={ckpt_path} to continue, so this run would start fresh among "
                           f"its files; {elsewhere}, or delete the earlier run's files.")
    if ckpt_path == "hpc" or (ckpt_path and Path(ckpt_path).resolve().parent == (folder / "checkpoints").resolve()):
        return None  # this directory's own run, continued
    if not earlier:
        return None
    start = f"resumes from another run's checkpoint ({ckpt_path})" if ckpt_path else "starts fresh"
    resume = "continue that run with ckpt_path=auto, " if last.is_file() else ""
    return ConfigError(f"The output directory {folder} holds an earlier run ({listed(folder, earlier)}), and this run "
                       f"{start}, so it would mix its metrics and checkpoints with that run's; {resume}{elsewhere}, or "
                       f"delete the earlier run's files.")


def continuation_without_checkpoints_refusal(cfg: DictConfig) -> ConfigError | None:
    """``ckpt_path=auto`` (or ``last``) continues from the checkpoints the run's checkpoint callbacks save into its
    checkpoints/ folder; a run configured without them (``callbacks=none``: Lightning's own checkpoint goes to its
    logger's folder) was said to have been killed before its first checkpoint, and started again beside it. Under
    ``trainer.fast_dev_run``, which saves no checkpoint, a finished run continued for a batch had its results.json
    replaced by that batch's, and its metrics.csv's test row set aside."""
    if not cfg.get("train", True) or cfg.get("ckpt_path") not in ("auto", "last"):
        return None
    if fast_dev_run := cfg.trainer.get("fast_dev_run"):
        return ConfigError(f"Config key 'trainer.fast_dev_run' is {fast_dev_run}, but ckpt_path={cfg.ckpt_path} "
                           f"continues the run in {cfg.paths.output_dir}, whose results a fast_dev_run (a batch or "
                           f"few, no checkpoint) would replace; leave out ckpt_path, and give the fast_dev_run a "
                           f"hydra.run.dir of its own.")
    nodes = (cfg.get("callbacks") or {}).values()
    if any(isinstance(node, DictConfig) and node.get("dirpath") and str(node.get("_target_", "")).endswith(
            "ModelCheckpoint") for node in nodes):
        return None
    return ConfigError(f"Config key 'ckpt_path' is '{cfg.ckpt_path}', which continues the run from the checkpoints "
                       f"its callbacks save in {Path(cfg.paths.output_dir) / 'checkpoints'}, but it has no checkpoint "
                       f"callback there (callbacks=none: Lightning's own saves into its logger's folder); keep "
                       f"callbacks.model_checkpoint and callbacks.last_checkpoint (callbacks=default), or leave "
                       f"ckpt_path out.")


RUN_FOLDERS = ("checkpoints", "csv", "tensorboard", "wandb")  # what a run writes into, below its output directory


def unwritable_run_folder_refusal(output_dir: str | Path) -> ConfigError | None:
    """A folder of the run's that an earlier start (or the user) left unwritable, or a file in its place: the run
    stopped with a traceback at its first save, after an epoch of training."""
    for folder in (Path(output_dir) / name for name in RUN_FOLDERS):
        if folder.exists() and (reason := why_unwritable(folder)):
            return ConfigError(f"The output directory's folder {folder} cannot be written into ({reason}), and the "
                               f"run saves there; make it a writable folder, or give the run another hydra.run.dir.")
    return None


def logging_step(checkpoint: dict) -> int:
    """The step Lightning's loggers were at when ``checkpoint`` was saved: the training batches that stepped an
    optimizer (the step column of metrics.csv), which is not the global step when a module steps its optimizer
    otherwise (REAE's solve)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    return loop.get("_batches_that_stepped", checkpoint["global_step"])


def listed(folder: Path, files: list[Path]) -> str:
    return ", ".join(str(path.relative_to(folder)) for path in files[:3]) + (", ..." if len(files) > 3 else "")


def checkpoint_to_test(ckpt_path: str | None, trainer: L.Trainer) -> str:
    """The weights a test-only run (``train=false``) scores: ``ckpt_path``, ``auto`` (or ``last``) meaning this run's
    newest checkpoint (``checkpoint_to_continue``)."""
    checkpoint = resolve_ckpt_path(ckpt_path, trainer, training=False)
    if checkpoint is None:
        given = "null" if ckpt_path is None else f"{ckpt_path}, and this run directory has no checkpoint in " \
                                                 f"checkpoints/"
        raise ConfigError(f"Config key 'train' is false (test only), but ckpt_path is {given}: there are no trained "
                          f"weights to test; give ckpt_path=<checkpoint file> (a run's checkpoints/last.ckpt).")
    return checkpoint


def read_checkpoint(path: str | Path, weights_only: bool) -> object:
    """torch.load of a checkpoint file (memory-mapped), or one sentence for a file it cannot read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except Exception as error:  # a truncated or foreign file: torch raises whatever its reader met
        raise DataError(f"Checkpoint {path} cannot be read by torch.load ({type(error).__name__}): it is truncated or "
                        f"not a checkpoint; give a checkpoint that a run wrote (its checkpoints/*.ckpt).") from None


def check_checkpoint(path: str | None, resumed_with: DictConfig | None = None, model: torch.nn.Module | None = None,
                     sweep_job: int | None = None, test_only: bool = False) -> dict | None:
    """A checkpoint file must be one that Lightning wrote (``hpc``, which Lightning resolves itself, passes), with
    weights that fit ``model``; a run that resumes from it (``resumed_with``: its config) must keep the values it
    restores (``check_resumed_values``), and a run that only tests it (``test_only``) the images it held out.
    Returns the checkpoint (memory-mapped), None for no file."""
    if path is None or not Path(path).is_file():
        return None
    checkpoint = read_checkpoint(path, weights_only=False)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"Checkpoint {path} is not a Lightning checkpoint (it holds no state_dict); give a checkpoint "
                        f"file that a run wrote (its checkpoints/*.ckpt).")
    if resumed_with is not None:
        try:
            check_resumed_values(path, checkpoint, resumed_with, sweep_job, test_only)
        except ConfigError:  # another model's checkpoint: its lr differs too, but its weights are the mistake to name
            if model is not None:
                check_weights_fit(path, checkpoint["state_dict"], model)
            raise
        if not test_only:
            check_epochs_left(path, checkpoint, resumed_with, sweep_job)
    return checkpoint


def check_epochs_left(path: str, checkpoint: dict, cfg: DictConfig, sweep_job: int | None = None) -> None:
    """A resume with fewer epochs than its checkpoint has trained is refused by Lightning once fit starts, so a sweep
    ran its other jobs first: the same sentence before any job (``sweep_job``: the job that would continue it)."""
    epoch, max_epochs = checkpoint.get("epoch"), OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    if isinstance(epoch, int) and isinstance(max_epochs, int) and max_epochs != -1 and max_epochs <= epoch:
        raise fewer_epochs_than_trained(path, epoch, max_epochs, sweep_job)


def fewer_epochs_than_trained(path: str, epoch: int, max_epochs: int, sweep_job: int | None = None) -> ConfigError:
    given = (f"Job {sweep_job} of this sweep gives trainer.max_epochs={max_epochs}, but the run it would continue "
             f"({path}) was saved" if sweep_job is not None else
             f"Config key 'trainer.max_epochs' is {max_epochs}, but ckpt_path {path} was saved")
    return ConfigError(f"{given} in epoch {epoch} (counting from 0); give a larger trainer.max_epochs to train on "
                       f"from it, or train=false to test its weights.")


def check_weights_fit(path: str, saved: dict, model: torch.nn.Module) -> None:
    """The names and shapes of the checkpoint's weights against the model's (``torch.compile``'s ``_orig_mod.``
    left out of both)."""
    plain = lambda weights: {name.replace("_orig_mod.", ""): None if torch.nn.parameter.is_lazy(value) else
                             tuple(value.shape) for name, value in weights.items() if isinstance(value, torch.Tensor)}
    saved, expected = plain(saved), plain(model.state_dict())  # None: a lazy layer's shape, known once it has run
    missing = [name for name in expected if name not in saved]
    unexpected = [name for name in saved if name not in expected]
    resized = [name for name in expected if name in saved and None not in (saved[name], expected[name]) and
               saved[name] != expected[name]]
    if missing or unexpected or resized:
        raise weights_misfit(path, missing, unexpected, resized)


def weights_misfit(path: str, missing: list[str], unexpected: list[str], resized: list[str]) -> ConfigError:
    differences = [f"lacks {_some(missing)}" if missing else "", f"has {_some(unexpected)}, which the model "
                   f"lacks" if unexpected else "", f"has another shape for {_some(resized)}" if resized else ""]
    return ConfigError(f"Config key 'ckpt_path' is {path!r}, whose weights do not fit this model (the checkpoint "
                       f"{'; '.join(filter(None, differences))}); give a checkpoint of a run with the same model "
                       f"config.")


# Config keys a resumed run must keep, so that results.json describes what was trained:
# - those whose values it takes from the checkpoint, not from its config: torch's optimizer.load_state_dict restores
#   every parameter group's hyperparameters (lr, momentum, ...), a scheduler's load_state_dict its whole state (its
#   milestones and values too), Lightning's EarlyStopping its patience;
# - the seed it was started with, and every data key that decides which images (with which targets) train,
#   validate and, for the digits, test (another split midway would validate or test on images it trained on);
# - what the MI callback measures with: its checkpointed subsample, I(X;Y) and I-series, which the rates follow (a
#   measurement of another kind midway reads as a change of I(H;Y)).
MI_MEASUREMENT = tuple(f"callbacks.mi_lr.{key}" for key in ("_target_", "layers", "sample_size", "seed", "estimator",
                                                           "k", "norm", "standardize", "jitter", "output", "reference",
                                                           "tiles"))
KEPT_ON_RESUME = ("seed", "data._target_", "data.split_seed", "data.val_fraction", "data.test_fraction",
                  "data.stratify", "data.train_part", "data.part_seed", "data.train_size", "data.train_split",
                  "data.folds", "data.rollouts", "data.steps_per_rollout", "data.train_seed", "data.terrain_seed",
                  "data.filter_offscreen", "data.label_observation",
                  "model.optimizer", "model.scheduler", "callbacks.early_stopping.patience", *MI_MEASUREMENT)
# Keys a resume may change without a word (how long and where a run runs, what it logs): a continued sweep may change
# them for some jobs and not others (a job resumed alone with trainer.max_epochs=20 leaves its folder's record
# differing from its siblings' in that key). A resume that changes any other key that KEPT_ON_RESUME does not refuse
# (data.batch_size, a distortion) trains on with it, and says so in train.log and results.json (changed_on_resume).
MAY_DIFFER_ON_RESUME = ("ckpt_path", "trainer", "logger", "callbacks.progress_bar", "paths", "hydra", "data.data_dir",
                        "data.num_workers", "data.download", "tags", "evaluate_tasks")
# The Trainer's keys of what trains, not of how long or where: how gradients are formed and applied, which batches
# train. A resume that changes them says so, and a continued sweep's jobs are told apart by them (a sweep over
# accumulate_grad_batches=1,2 continued with 2 alone continued job 0's run with 2, without a word).
TRAINER_KEYS_OF_WHAT_TRAINS = ("trainer.accumulate_grad_batches", "trainer.gradient_clip_val",
                               "trainer.gradient_clip_algorithm", "trainer.precision", "trainer.limit_train_batches",
                               "trainer.overfit_batches", "trainer.sync_batchnorm", "trainer.use_distributed_sampler")


def flattened(tree: dict, prefix: str = "") -> dict[str, object]:
    """A nested config container as {dotted key: leaf value} (an empty dict is a leaf)."""
    leaves = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        leaves.update(flattened(value, f"{key}.") if isinstance(value, dict) and value else {key: value})
    return leaves


def kept_values(cfg: DictConfig) -> dict[str, object]:
    """The values of ``KEPT_ON_RESUME`` in ``cfg``, one dotted key per leaf."""
    selected = {key: OmegaConf.select(cfg, key, default=None) for key in KEPT_ON_RESUME}
    return flattened({key: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig)
                      else node for key, node in selected.items()})


def may_differ_on_resume(key: str) -> bool:
    """Is ``key`` (``trainer.max_epochs``, ``hydra/launcher``) one of, or below, MAY_DIFFER_ON_RESUME, and not one of
    TRAINER_KEYS_OF_WHAT_TRAINS?"""
    return at_or_below(key, MAY_DIFFER_ON_RESUME) and not at_or_below(key, TRAINER_KEYS_OF_WHAT_TRAINS)


def trained_with(cfg: DictConfig) -> dict[str, object]:
    """Every leaf value of ``cfg`` except those of MAY_DIFFER_ON_RESUME, as written: a resume into another folder
    moves what ``${paths.output_dir}`` resolves to, not what trains."""
    return {key: value for key, value in flattened(OmegaConf.to_container(cfg, resolve=False)).items()
            if not may_differ_on_resume(key)}


def changed_on_resume(checkpoint: dict, cfg: DictConfig) -> dict[str, list]:
    """{key: [the checkpoint run's value, this run's]} for each value a resumed run changes that no check refuses
    (none for a checkpoint written before these values were saved); "absent" for a key one side lacks."""
    if TRAINED_WITH not in checkpoint:
        return {}
    before, now = checkpoint[TRAINED_WITH], trained_with(cfg)
    if not any(key.startswith("trainer.") for key in before):  # saved before the Trainer's values were kept
        now = {key: value for key, value in now.items() if not key.startswith("trainer.")}
    return {key: [_as_typed(before.get(key, "absent")), _as_typed(now.get(key, "absent"))]
            for key in dict.fromkeys([*before, *now]) if before.get(key, "absent") != now.get(key, "absent")}


class KeptValuesInCheckpoints(Callback):
    """Writes ``kept_values`` into every checkpoint, for ``check_resumed_values`` when a run resumes from it,
    ``trained_with`` for ``changed_on_resume``, the run's wall time so far (over its starts), and, in one saved at an
    epoch's end, that epoch's training metrics, for a run continued from it that trains no further batch (Lightning
    logs none then, and a run killed after fit has no results.json to take them from)."""

    def __init__(self, cfg: DictConfig):
        self.values, self.trained_with = kept_values(cfg), trained_with(cfg)
        self.started, self.before = time.perf_counter(), 0.0  # this start's clock; the earlier starts' seconds

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[KEPT_VALUES], checkpoint[TRAINED_WITH] = self.values, self.trained_with
        checkpoint[WALL_SECONDS] = self.before + time.perf_counter() - self.started
        csv_loggers = [logger for logger in trainer.loggers if isinstance(logger, AppendingCSVLogger)]
        if csv_loggers and trainer.is_global_zero:
            checkpoint[CSV_ROWS_LOGGED] = csv_loggers[0].experiment.rows_logged()
        if saved_at_an_epochs_end(checkpoint):
            # the validation metrics are scored again; test/ ones here were logged while fitting (the MI callback's
            # test/epoch_acc): the test stage comes after every save
            checkpoint[TRAINING_METRICS] = {key: float(value) for key, value in trainer.callback_metrics.items()
                                            if not key.startswith("val/")}
            if logged := trainer._logger_connector.metrics["log"]:  # what Lightning logs next, at the step before
                checkpoint[EPOCH_END_ROW] = {**{key: float(value) for key, value in logged.items()},
                                             "epoch": trainer.current_epoch, "step": logging_step(checkpoint) - 1}


class CheckpointWrittenInPlace(TorchCheckpointIO):
    """Lightning's checkpoint writer, with a local file written beside its final name and renamed into place
    (``framework.atomic.write_atomically``). Lightning's goes through fsspec's transaction, whose temporary file is in
    TMPDIR: on another filesystem (a tmpfs /tmp, a node's scratch disk) the rename becomes a copy, which truncates
    last.ckpt first, so a kill during it left no checkpoint to continue from; and a killed write left its temporary
    file in TMPDIR. Remote paths (``s3://...``) keep Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomically(path, lambda file: torch.save(checkpoint, file))


class RunModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, which also keeps its best checkpoints (and their scores) when a run resumes in a
    directory that was moved or copied: Lightning restores them only where the checkpoint folder's path is the one
    they were saved in, and otherwise lets the first epoch after the resume be the best, however bad it is. When
    the checkpoints are not in this run's folder (a run resumed from another run's checkpoint), the best is that of
    the epochs since the resume, and ``resumed_elsewhere`` names the folder that holds the earlier ones (so the
    other run's files are never managed, or deleted, from here).

    A save every n steps (``every_n_train_steps``) that falls on a batch with a validation after it, or on an epoch's
    last batch (its last, or the one max_steps or a stop ends it with), waits for them. Lightning continues a run from
    a checkpoint saved at a batch's end past that batch's validation and epoch end (their rows, best checkpoint and
    epoch-end hooks were lost), and it saves once a step: the epoch's own last.ckpt at that step was never written.
    One set to save at the training epoch's end (``save_on_train_epoch_end: true``, as last.ckpt's) does so also
    when it saves every n steps: Lightning then saves at steps only."""

    resumed_elsewhere: str | None = None
    waiting_step: int | None = None  # the global step of a save that waits for its batch's validation or epoch end

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Lightning warns when the checkpoint folder is not empty, for a run that would mix its checkpoints with
        another's; in the run's own checkpoints/, earlier_run_refusal stopped such a run, and what is there is the
        checkpoints of the run that this one continues."""
        own = Path(trainer.default_root_dir, "checkpoints").resolve()
        with warnings.catch_warnings():
            if self.dirpath and Path(self.dirpath).resolve() == own:
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)

    @staticmethod
    def epoch_ends_after_this_batch(trainer: L.Trainer) -> bool:
        return trainer.fit_loop.epoch_loop._is_training_done or (trainer.should_stop and
                                                                 trainer.fit_loop._can_stop_early)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if due and (self.epoch_ends_after_this_batch(trainer)
                    or trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)):
            self.waiting_step = trainer.global_step
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self.epoch_ends_after_this_batch(trainer):  # an epoch's end (early stopping's too) saves at its end
            self.save_the_waiting_one(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._every_n_train_steps >= 1 and self._save_on_train_epoch_end:
            self.waiting_step = trainer.global_step
        self.save_the_waiting_one(trainer)

    def save_the_waiting_one(self, trainer: L.Trainer) -> None:
        if self.waiting_step == trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            if self.monitor is not None and self.monitor not in candidates:  # no validation yet: at the next one,
                self._defer_save_until_validation = True  # as Lightning does
            elif not self._should_skip_saving_checkpoint(trainer):
                self._save_topk_checkpoint(trainer, candidates)
                self._save_last_checkpoint(trainer, candidates)
        self.waiting_step = None

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        """A monitored metric the run has not logged when the checkpoint is saved (a train/ one, which
        framework/monitored_metrics.py leaves to this check): one sentence, not Lightning's traceback."""
        try:
            super()._save_topk_checkpoint(trainer, monitor_candidates)
        except MisconfigurationException:
            if self.monitor in monitor_candidates:
                raise
            raise ConfigError(f"Config key 'callbacks.model_checkpoint.monitor' is {self.monitor!r} "
                              f"(optimized_metric's unless set), but the run has logged no such metric by the time "
                              f"the checkpoint is saved; set it to one the run logs "
                              f"({logged_names(monitor_candidates)}).") from None

    def load_state_dict(self, state_dict: dict) -> None:
        saved_in = state_dict.get("dirpath")
        if self.dirpath and saved_in and Path(saved_in) != Path(self.dirpath):
            here = {path: str(Path(self.dirpath) / Path(path).name)
                    for path in [state_dict.get("best_model_path"), state_dict.get("kth_best_model_path"),
                                 state_dict.get("last_model_path"), *state_dict.get("best_k_models", {})] if path}
            if all(Path(moved).is_file() for moved in here.values()):
                state_dict = {**state_dict, "dirpath": self.dirpath,
                              "best_k_models": {here[k]: v for k, v in state_dict.get("best_k_models", {}).items()},
                              **{key: here.get(state_dict.get(key), state_dict.get(key, ""))
                                 for key in ("best_model_path", "kth_best_model_path", "last_model_path")}}
            else:
                self.resumed_elsewhere = saved_in
        with warnings.catch_warnings():  # Lightning's "dirpath has changed": the run's log names resumed_elsewhere
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
            super().load_state_dict(state_dict)


class RunEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, which also keeps a run that it stopped stopped when the run is continued from its
    last checkpoint (``ckpt_path=auto`` with more epochs, or after any key that makes the run not "finished with this
    config"): Lightning restores the stopping state but trains on, and a lucky validation then restarts the count.
    An uninterrupted run would have stopped there, so the continued one ends at once and is tested again.

    Checking at the training epoch's end (``check_on_train_epoch_end``), a metric the run does not log is one sentence
    (framework/monitored_metrics.py's check after validation cannot tell: it may be logged later in the epoch)."""

    def _validate_condition_metric(self, logs: dict) -> bool:
        if self.monitor not in logs and self.strict and self._check_on_train_epoch_end:
            raise ConfigError(f"Config key 'callbacks.early_stopping.monitor' is {self.monitor!r} (optimized_metric's "
                              f"unless set), but the run has logged no such metric by the training epoch's end, where "
                              f"early stopping checks it (check_on_train_epoch_end); set it to one the run logs "
                              f"({logged_names(logs)}).")
        return super()._validate_condition_metric(logs)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            reason = self.stopping_reason.name.lower().replace("_", " ")
            log.info(f"The checkpoint's run was stopped early in epoch {self.stopped_epoch} by early stopping "
                     f"({reason}): it is not trained further; to train longer, start a fresh run with a larger "
                     f"callbacks.early_stopping.patience or callbacks.early_stopping=null.")
            trainer.should_stop = True


class RandomStatesInCheckpoints(Callback):
    """Saves the random number generators' states (torch, CUDA, numpy, Python) in every checkpoint and restores them
    on resume: a run that draws in training (dropout, a variational sample, the adversarial pools) then goes on
    with the draws an uninterrupted run makes, instead of those of a fresh ``seed_everything``. Under DDP the
    checkpoint holds rank 0's states, so a resumed DDP run's ranks draw alike (data order does not depend on it)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        checkpoint[RANDOM_STATES] = {  # tensors, not numpy arrays: checkpoints load with torch.load(weights_only=True)
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (kind, torch.from_numpy(keys.copy()), position, has_gauss, cached), "python": random.getstate()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get(RANDOM_STATES)
        if states is None:  # checkpoints written before these states were saved resume without them
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        kind, keys, *rest = states["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        random.setstate(states["python"])


def check_resumed_values(path: str, checkpoint: dict, cfg: DictConfig, sweep_job: int | None = None,
                         test_only: bool = False) -> None:
    """Resuming with another optimizer, scheduler, patience, seed, training images or split would train with the
    checkpoint's (or mix two sets of images) while results.json records the new ones: one sentence instead
    (checkpoints from before these values were saved pass). ``sweep_job``: the number of the sweep's job that would
    continue the run of ``path``. ``test_only``: a run that only validates and tests the checkpoint, on the same
    dataset, must do so on the images its run held out (another split could hold images it trained on)."""
    if KEPT_VALUES not in checkpoint:
        return
    saved, now = checkpoint[KEPT_VALUES], kept_values(cfg)
    if test_only and saved.get("data._target_") != now.get("data._target_"):
        return  # another dataset: none of its images were trained on
    # a key added to KEPT_ON_RESUME after the checkpoint was written has no saved value to compare
    recorded = [key for key in KEPT_ON_RESUME if any(at_or_below(name, [key]) for name in saved)
                and (key.startswith("data.") or not test_only)]
    saved = {name: value for name, value in saved.items() if at_or_below(name, recorded)}
    now = {name: value for name, value in now.items() if at_or_below(name, recorded)}
    changed = [key for key in dict.fromkeys([*saved, *now]) if saved.get(key, "absent") != now.get(key, "absent")]
    if changed:
        shown = ", ".join(f"{key}={_as_typed(now.get(key, 'absent'))} (the checkpoint's: "
                          f"{_as_typed(saved.get(key, 'absent'))})" for key in changed[:3]) \
            + (" ..." if len(changed) > 3 else "")
        kept = ("a resumed run keeps what its checkpoint was made with (the seed, the training images and their "
                "train/validation split, the optimizer's, scheduler's and early stopping's state, values included, "
                "and what the MI callback measures with)")
        if test_only:
            raise ConfigError(f"Config key 'ckpt_path' is {path!r}, but this test-only run gives {shown}: it would "
                              f"score the checkpoint on other images than its run held out, some of which that run "
                              f"may have trained on; test with the checkpoint's data values.")
        if sweep_job is not None:
            raise ConfigError(f"Job {sweep_job} of this sweep would continue the run of {path} (ckpt_path="
                              f"{cfg.get('ckpt_path')}), but gives {shown}: {kept}; keep the earlier sweep's values "
                              f"for its jobs, or give another hydra.sweep.dir to train with these.")
        raise ConfigError(f"Config key 'ckpt_path' is {path!r}, but this start gives {shown}: {kept}; resume with "
                          f"the checkpoint's values, or start a new run in a folder of its own (without ckpt_path) to "
                          f"train with these.")


def _as_typed(value: object) -> object:
    """A config value as the command line writes it (true, null), not as Python does."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else value


def _names(message: str, heading: str) -> list[str]:
    line = re.search(rf"{heading}: (.*)", message)
    return re.findall(r'"([^"]+)"', line[1]) if line else []


def _some(names: list[str]) -> str:
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


@contextmanager
def loading_checkpoint(path: str | None) -> Iterator[None]:
    """Around the Lightning call that loads ``path`` into the model: weights of another network, or Lightning's
    ``hpc`` when it finds no HPC checkpoint, are one sentence."""
    try:
        yield
    except MisconfigurationException as error:  # a checkpoint check_epochs_left did not see (Lightning's ``hpc``)
        restored = re.search(r"restored a checkpoint with current_epoch=(\d+), but you have set "
                             r"Trainer\(max_epochs=(\d+)", str(error))
        if not restored:
            raise
        raise fewer_epochs_than_trained(path, int(restored[1]), int(restored[2])) from None  # the checkpoint's epoch
    except ValueError as error:
        if path != "hpc" or "no HPC checkpoint was found" not in str(error):
            raise
        raise ConfigError("Config key 'ckpt_path' is 'hpc', but there is no HPC checkpoint (hpc_ckpt_*.ckpt, which "
                          "Lightning writes when SLURM preempts a job it requeues itself); give ckpt_path=auto (this "
                          "run's last.ckpt) or a checkpoint file.") from None
    except RuntimeError as error:
        message = str(error)
        if path is None or not message.startswith("Error(s) in loading state_dict"):
            raise
        missing = _names(message, r"Missing key\(s\) in state_dict")
        unexpected = _names(message, r"Unexpected key\(s\) in state_dict")
        raise weights_misfit(path, missing, unexpected, re.findall(r"size mismatch for ([\w.]+)", message)) from None


def network_config(path: str | Path) -> DictConfig:
    """``model.net`` of the config the run that wrote checkpoint ``path`` trained with (``TRAINED_WITH``), to build its
    network again outside train.py. Read with torch's weights-only loader; every ``_target_`` in it must name a
    torch.nn.Module class, as train.py's networks do: a file from elsewhere names no other callable to run."""
    checkpoint = read_checkpoint(path, weights_only=True)
    saved = checkpoint.get(TRAINED_WITH, {}) if isinstance(checkpoint, dict) else {}
    if "model.net._target_" not in saved:
        raise DataError(f"Checkpoint {path} holds no config of its network (train.py saves one in every checkpoint); "
                        f"give the network built as it trained: load_from_checkpoint({str(path)!r}, net=<network>).")
    config = OmegaConf.create({})
    for key, value in saved.items():
        OmegaConf.update(config, key, value, force_add=True)
    net = config.model.net
    for target in _targets(OmegaConf.to_container(net)):
        try:
            found = get_object(target)
        except Exception:
            found = None
        if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
            raise DataError(f"Checkpoint {path} gives model.net a _target_ {target!r}, which is not an importable "
                            f"torch.nn.Module class; give the network built as it trained: "
                            f"load_from_checkpoint({str(path)!r}, net=<network>).")
    return net


def _targets(node) -> Iterator[str]:
    """Every ``_target_`` in a config container, at any depth, lists included."""
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    if isinstance(node, dict) and "_target_" in node:
        yield str(node["_target_"])
    for child in children:
        yield from _targets(child)

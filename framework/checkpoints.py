"""The checkpoint a run starts from (``ckpt_path``) or tests (``train=false``), checked before it is used: a file
that is not a Lightning checkpoint, or whose weights do not fit the model, is one sentence naming it, not the
traceback of torch.load or load_state_dict."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from framework.errors import ConfigError, DataError

log = logging.getLogger("train")


def resolve_ckpt_path(ckpt_path: str | None, trainer: L.Trainer) -> str | None:
    """``auto``: this run's last.ckpt when it exists (resume a killed run), otherwise a fresh start."""
    if ckpt_path != "auto":
        return ckpt_path
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            last = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            if last.is_file():
                log.info(f"Resuming from {last}")
                return str(last)
    log.info("ckpt_path=auto: no last.ckpt in this run's checkpoint directory, starting fresh")
    return None


def checkpoint_to_test(ckpt_path: str | None, trainer: L.Trainer) -> str:
    """The weights a test-only run (``train=false``) scores: ``ckpt_path``, ``auto`` meaning this run's last.ckpt."""
    checkpoint = resolve_ckpt_path(ckpt_path, trainer)
    if checkpoint is None:
        given = "null" if ckpt_path is None else "auto, and this run directory has no checkpoints/last.ckpt"
        raise ConfigError(f"Config key 'train' is false (test only), but ckpt_path is {given}: there are no trained "
                          f"weights to test; give ckpt_path=<checkpoint file> (or ckpt_path=auto with the "
                          f"hydra.run.dir of a run that has one).")
    return checkpoint


def check_readable_checkpoint(path: str | None) -> None:
    """A checkpoint file must be one that Lightning wrote (``last``/``hpc``, Lightning's own names, pass)."""
    if path is None or not Path(path).is_file():
        return
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # a truncated or foreign file: torch raises whatever its reader met
        raise DataError(f"Checkpoint {path} cannot be read by torch.load ({type(error).__name__}): it is truncated or "
                        f"not a checkpoint; give a checkpoint that a run wrote (its checkpoints/*.ckpt).") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"Checkpoint {path} is not a Lightning checkpoint (it holds no state_dict); give a checkpoint "
                        f"file that a run wrote (its checkpoints/*.ckpt).")


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
        resized = re.findall(r"size mismatch for ([\w.]+)", message)
        differences = [f"lacks {_some(missing)}" if missing else "", f"has {_some(unexpected)}, which the model "
                       f"lacks" if unexpected else "", f"gives {_some(resized)} another shape" if resized else ""]
        raise ConfigError(f"Config key 'ckpt_path' is {path!r}, whose weights do not fit this model (the checkpoint "
                          f"{'; '.join(filter(None, differences))}); give a checkpoint of a run with the same model "
                          f"config.") from None

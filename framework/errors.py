"""The user's mistakes: one exception family, one sentence, exit code 2, no traceback.

Raise a :class:`UserError` subclass wherever a mistake in what the user gave is found: a config value, a file, a
combination of options. The sentence names the key or the file, the value, and what is allowed or what to do. The
entry points (train.py, evaluate.py) print ``<prefix>: <sentence>`` and exit with code 2, whoever raised it
(framework/entry_point.py); every other exception is a bug and keeps its traceback. Mistakes that reach them in
another shape are translated where they are met: a constructor's or Lightning's refusal of a config node
(framework/construction.py), Hydra's refusal of the command line (framework/command_line.py).

This module, and the four named here, import neither torch nor Lightning (about 6 s): the entry points import them
before Hydra has decided to run a job, and ``--help``, ``--cfg``, tab completion and Hydra's refusals of a command
line need neither. The functions that work on a job's torch or Lightning objects import them.

    from framework.errors import ConfigError
    raise ConfigError(f"Config key 'model.rho' is {rho!r}, but it must be a number strictly between 0 and 1.")
"""

from __future__ import annotations

import errno
import logging
import re
import sys
from typing import NoReturn

log = logging.getLogger("user_error")


class UserError(Exception):
    """A mistake in what the user gave; the message is one sentence naming the key or file and the remedy."""

    prefix = "Error"


class ConfigError(UserError, ValueError):
    """A config value, or a combination of values, that is not allowed."""

    prefix = "Config error"


class DataError(UserError):
    """A dataset's files: missing, unreadable, or not what their format promises."""

    prefix = "Data error"


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(error: BaseException | None) -> UserError | None:
    """No space left on the device (or the user's quota) for a write, anywhere in ``error``'s chain: the sentence
    that names the file, not the traceback of whatever was writing (torch.save, a logger, numpy)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            written = f"{error.filename} cannot be written" if error.filename else "a file cannot be written"
            return UserError(f"{written}: {error.strerror}; free space on its disk, or write elsewhere "
                             f"(hydra.run.dir=, or hydra.sweep.dir= with -m, for a run's files; DATA_DIR= for "
                             f"datasets).")
        error = error.__cause__ or error.__context__
    return None


def shown(value) -> str:
    """A config value as a sentence gives it: null, 3, 'auto' (as typed, not Python's None)."""
    return "null" if value is None else repr(value)


def one_line(text: str) -> str:
    """The text on one line, an object's default repr (``<framework.loggers.CSVLogger object at 0x7f..>``) shown as
    its class name."""
    return re.sub(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>", r"\1", " ".join(str(text).split()))


def report(error: UserError) -> str:
    """The line the entry points print for ``error``."""
    return f"{error.prefix}: {one_line(error)}"


def require_usable_gpu(device: str) -> None:
    """A script's ``--device cuda`` where torch sees no CUDA device: one sentence on stderr and exit code 2, instead
    of torch's traceback at the first tensor moved there."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        print(f"{sys.argv[0]}: --device {device} needs a usable GPU, but torch sees none; run it on a machine with "
              f"one or give --device cpu.", file=sys.stderr)
        raise SystemExit(2)


def refuse(error: UserError) -> NoReturn:
    """Stop the command with ``error``'s line on stderr and exit code 2 (called where it was caught: no traceback)."""
    print(report(error), file=sys.stderr)
    raise SystemExit(2) from None


def error_prefixes(cls: type[UserError] = UserError) -> set[str]:
    """The prefixes that start the line of ``cls`` and of its subclasses (``Config error``, ...)."""
    return {cls.prefix}.union(*(error_prefixes(sub) for sub in cls.__subclasses__()))


def close_progress_bars() -> None:
    """A run stopped mid-epoch leaves its tqdm bars open and the cursor after a bar: end them, so that the sentence
    starts a line of its own."""
    from tqdm import tqdm

    for bar in sorted(getattr(tqdm, "_instances", ()), key=lambda bar: abs(bar.pos), reverse=True):  # inner first
        bar.close()


def log_to_files(message: str, error: BaseException | None = None, logger: logging.Logger = log) -> None:
    """``message`` (and ``error``'s traceback) as an error record of ``logger`` in the job's log file (train.log)
    only: the console gets it once, from the caller's print (or Hydra's, which prints a failed job's traceback)."""
    traceback = (type(error), error, error.__traceback__) if error is not None else None
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, traceback)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)

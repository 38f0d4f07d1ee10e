"""The user's mistakes: one exception family, one sentence, exit code 2, no traceback.

Raise a :class:`UserError` subclass (or one of its subclasses below) wherever a mistake in what
the user gave is found: a config value, a file, a combination of options. The entry points
(train.py, evaluate.py) run their work inside :func:`reporting_user_errors`, which prints
``<prefix>: <sentence>`` and exits with code 2, whoever raised it:
our validation, a DataModule, a callback's constructor or hooks, Lightning while it builds the
Trainer (:func:`instantiate_node` translates that at the construction boundary). Every other
exception is a bug and keeps its traceback.

The sentence names the key or the file, the value, and what is allowed or what to do.

    from framework.errors import ConfigError
    raise ConfigError(f"Config key 'model.rho' is {rho!r}, but it must be a number strictly between 0 and 1.")
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, ListConfig, OmegaConf

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


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def report(error: UserError) -> str:
    """The line the entry points print for ``error``."""
    return f"{error.prefix}: {one_line(error)}"


# ---- the construction boundary: constructor errors as user errors ---------------------------------------
_UNKNOWN_ARGUMENT = re.compile(r"unexpected keyword argument '(\w+)'")
_MISSING_ARGUMENT = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.+)$")
# What Lightning's classes (Trainer, callbacks, loggers) raise, besides MisconfigurationException, for an argument
# they refuse: Trainer(precision=17) a ValueError, Trainer(devices=-2) a TypeError, accelerator="tpu" an ImportError.
_REFUSALS = (ValueError, TypeError, ImportError)


def _is_lightning(target) -> bool:
    """Is ``target`` a Lightning class or a subclass of one (Trainer, ModelCheckpoint, CSVLogger, ...)?"""
    try:
        classes = get_object(str(target)).__mro__
    except Exception:  # not importable or not a class: validate() has reported the former
        return False
    return any(c.__module__.startswith("lightning.") for c in classes)


def _argument(node: dict, name: str, prefix: str) -> tuple[str, str] | None:
    """(dotted key, owner's class name) of the first ``name`` in ``node``'s subtree: where an argument was set."""
    if name in node:
        return f"{prefix}.{name}", str(node.get("_target_", prefix)).rsplit(".", 1)[-1]
    children = ((key, child) for key, child in node.items() if isinstance(child, dict))
    return next(filter(None, (_argument(child, name, f"{prefix}.{key}") for key, child in children)), None)


def _refused_keys(values: dict, message: str) -> list[str]:
    """The keys a Lightning message is about: quoted (`devices`, devices=0), else named, else their value quoted."""
    for pattern in (r"`{key}`|\b{key}=", r"\b{key}\b"):
        keys = [key for key in values if re.search(pattern.format(key=re.escape(key)), message, re.IGNORECASE)]
        if keys:
            return keys
    return [key for key, value in values.items()
            if isinstance(value, str) and len(value) > 2 and re.search(rf"\b{re.escape(value)}\b", message)]


def construction_error(error: Exception, node: DictConfig, key: str) -> UserError | None:
    """The user error behind an exception raised while constructing config node ``key``; ``None``: a bug."""
    if isinstance(error, UserError):
        return error
    message = one_line(error)
    config = OmegaConf.to_container(node, resolve=True)
    target = str(config.get("_target_", key)).rsplit(".", 1)[-1]
    if isinstance(error, TypeError) and (unknown := _UNKNOWN_ARGUMENT.search(message)):
        argument, owner = _argument(config, unknown[1], key) or (f"{key}.{unknown[1]}", target)
        return ConfigError(f"Config key '{argument}' is not an argument of {owner}; remove it or fix its spelling.")
    if isinstance(error, TypeError) and (missing := _MISSING_ARGUMENT.search(message)):
        return ConfigError(f"Config group '{key}' ({target}) lacks the required argument(s) {missing[1]}; add them "
                           f"with +{key}.<name>=<value>.")
    values = {k: v for k, v in config.items() if k != "_target_"}
    if _is_lightning(config.get("_target_")) and isinstance(error, (MisconfigurationException, *_REFUSALS)):
        keys = _refused_keys(values, message)
        preset = " or choose another trainer preset (conf/trainer/)" if key == "trainer" else ""
        if not keys:
            return ConfigError(f"Lightning's {target} refuses the config group '{key}': {message.rstrip('.!')}; "
                               f"change its keys{preset}.")
        named = ", ".join(f"'{key}.{k}' is {values[k]!r}" for k in keys)
        return ConfigError(f"Config key {named}, which Lightning's {target} refuses: {message.rstrip('.!')}; change "
                           f"{'it' if len(keys) == 1 else 'them'}{preset}.")
    return None


def instantiate_node(node: DictConfig | ListConfig, key: str, **kwargs):
    """``hydra.utils.instantiate`` with the user's mistakes raised as :class:`UserError`.

    Hydra wraps whatever a constructor raises in an InstantiationException; a UserError inside is
    unwrapped, an argument the constructor does not take (or Lightning's Trainer refuses) becomes a
    ConfigError naming its key, anything else is re-raised as it is: a bug, with its traceback.
    """
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        user_error = construction_error(cause, node, key) if isinstance(cause, Exception) else None
        if user_error is None:
            raise
        raise user_error from None


# ---- the entry points ---------------------------------------------------------------------------------
_job = {"started": False}


@contextmanager
def reporting_user_errors():
    """Around the work of a Hydra job: a UserError becomes its sentence on stderr and in the job's log, exit code 2.

        @hydra.main(...)
        def main(cfg):
            with reporting_user_errors():
                ...
    """
    _job["started"] = True
    try:
        yield
    except UserError as error:
        where = f" (output directory: {HydraConfig.get().runtime.output_dir})" if HydraConfig.initialized() else ""
        log.error(report(error) + where)
        print(report(error), file=sys.stderr)
        raise SystemExit(2) from None


def run_entry_point(main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function from ``if __name__ == "__main__"``.

    Hydra refuses a bad command line itself (an unknown group option, a key that is not in the
    config, an override it cannot parse): it prints what is wrong and the available options, then
    exits with 1 before any job starts. Those are user errors too, so they exit with 2; a job that
    started and failed keeps Hydra's exit code 1 (a bug: its traceback is printed).
    """
    _job["started"] = False
    try:
        main()
    except SystemExit as stop:
        if stop.code == 1 and not _job["started"]:
            sys.exit(2)
        raise

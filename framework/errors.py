"""The user's mistakes: one exception family, one sentence, exit code 2, no traceback.

Raise a :class:`UserError` subclass (or one of its subclasses below) wherever a mistake in what
the user gave is found: a config value, a file, a combination of options. The entry points
(train.py, evaluate.py) print ``<prefix>: <sentence>`` and exit with code 2, whoever raised it:
our validation, a DataModule, a callback's constructor or hooks, Lightning while it builds the
Trainer (:func:`instantiate_node` translates that at the construction boundary). Every other
exception is a bug and keeps its traceback.

The sentence names the key or the file, the value, and what is allowed or what to do.

    from framework.errors import ConfigError
    raise ConfigError(f"Config key 'model.rho' is {rho!r}, but it must be a number strictly between 0 and 1.")
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf


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
# What Lightning's Trainer raises for an argument it refuses (MisconfigurationException is an Exception).
_TRAINER_REFUSALS = (ValueError, TypeError, ImportError)


def _key_of(node: dict, name: str, prefix: str) -> str | None:
    """Dotted key of the first ``name`` in ``node``'s subtree (where an unknown argument was set)."""
    if name in node:
        return f"{prefix}.{name}"
    children = ((key, child) for key, child in node.items() if isinstance(child, dict))
    return next(filter(None, (_key_of(child, name, f"{prefix}.{key}") for key, child in children)), None)


def _refused_trainer_keys(values: dict, message: str) -> list[str]:
    """Trainer keys a Lightning message is about: quoted (`devices`, devices=0), else named, else their value quoted."""
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
    values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"}
    target = str(node.get("_target_", key)).rsplit(".", 1)[-1]
    if isinstance(error, TypeError) and (unknown := _UNKNOWN_ARGUMENT.search(message)):
        argument = _key_of(values, unknown[1], key) or f"{key}.{unknown[1]}"
        return ConfigError(f"Config key '{argument}' is not an argument of {target}; remove "
                           f"it (or fix its spelling): {message}")
    if isinstance(error, TypeError) and (missing := _MISSING_ARGUMENT.search(message)):
        return ConfigError(f"Config group '{key}' ({target}) lacks the required argument(s) {missing[1]}; add them "
                           f"with +{key}.<name>=<value>.")
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if key == "trainer" and isinstance(error, (MisconfigurationException, *_TRAINER_REFUSALS)):
        keys = _refused_trainer_keys(values, message)
        if not keys:
            return ConfigError(f"Lightning's Trainer refuses the trainer config: {message.rstrip('.')}; change the "
                               f"trainer.* keys or choose another trainer preset (conf/trainer/).")
        named = ", ".join(f"'trainer.{k}' is {values[k]!r}" for k in keys)
        return ConfigError(f"Config key {named}, which Lightning's Trainer refuses: {message.rstrip('.!')}; change "
                           f"{'it' if len(keys) == 1 else 'them'} or choose another trainer preset (conf/trainer/).")
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
def run_entry_point(main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function from ``if __name__ == "__main__"``.

    Hydra refuses a bad command line itself (an unknown group option, a key that is not in the
    config, an override it cannot parse): it prints what is wrong and the available options, then
    exits with 1 before the job starts. Those are user errors too, so they exit with 2; a job that
    started and failed keeps Hydra's exit code 1 (a bug: its traceback is printed).
    """
    try:
        main()
    except SystemExit as stop:
        if stop.code == 1 and not HydraConfig.initialized():
            sys.exit(2)
        raise

"""The user's mistakes: one exception family, one sentence, exit code 2, no traceback.

Raise a :class:`UserError` subclass (or one of its subclasses below) wherever a mistake in what
the user gave is found: a config value, a file, a combination of options. The entry points
(train.py, evaluate.py) run their work inside :func:`reporting_user_errors`, which prints
``<prefix>: <sentence>`` and exits with code 2, whoever raised it:
our validation, a DataModule, a callback's constructor or hooks (in a spawned DDP worker too:
:func:`worker_user_error`), Lightning while it builds the Trainer (:func:`instantiate_node` translates
that at the construction boundary). :func:`run_entry_point` does the same for Hydra's refusals of the
command line (:func:`hydra_refusal`). Every other exception is a bug and keeps its traceback.

The sentence names the key or the file, the value, and what is allowed or what to do.

This module imports neither torch nor Lightning (about 6 s): the entry points import it before Hydra has decided to
run a job, and ``--help``, ``--cfg``, tab completion and Hydra's refusals of a command line need neither. The
functions that work on a job's torch or Lightning objects import them.

    from framework.errors import ConfigError
    raise ConfigError(f"Config key 'model.rho' is {rho!r}, but it must be a number strictly between 0 and 1.")
"""

from __future__ import annotations

import copy
import difflib
import errno
import inspect
import itertools
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import hydra._internal.utils as hydra_internals
import yaml
from hydra._internal.hydra import Hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    HydraException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.types import RunMode
from hydra.utils import get_object as _hydra_get_object
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, flag_override
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

from framework.compose import CONF, ROOT
from framework.processes import child_processes, command_line

if TYPE_CHECKING:
    from torch.multiprocessing import ProcessRaisedException

log = logging.getLogger("user_error")


def get_object(path: str):
    """``hydra.utils.get_object`` without the ERROR lines Hydra logs for a path that does not import: the caller says
    that in one sentence."""
    logger = logging.getLogger("hydra.utils")
    disabled, logger.disabled = logger.disabled, True
    try:
        return _hydra_get_object(path)
    finally:
        logger.disabled = disabled


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


def disk_full(error: BaseException | None) -> UserError | None:
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


# ---- the construction boundary: constructor errors as user errors ---------------------------------------
_UNKNOWN_ARGUMENT = re.compile(r"unexpected keyword argument '(\w+)'")
_MISSING_ARGUMENT = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.+)$")
_NEGATIVE_SIZE = re.compile(r"negative dimension (-\d+)")
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


def _raised_by_lightning(error: Exception) -> bool:
    """Was ``error`` raised in Lightning's code (not in ours, e.g. a LightningModule subclass's constructor)?"""
    innermost = error.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    module = innermost.tb_frame.f_globals.get("__name__", "") if innermost is not None else ""
    return module.split(".")[0] in ("lightning", "lightning_fabric", "lightning_utilities")


def _argument(node: dict, prefix: str, wanted) -> tuple[str, str] | None:
    """(dotted key, owner's class name) of the first argument in ``node``'s subtree for which ``wanted(name, value)``
    holds: where an argument was set (by name), or which one holds a value torch refused."""
    for name, value in node.items():
        if wanted(name, value):
            return f"{prefix}.{name}", str(node.get("_target_", prefix)).rsplit(".", 1)[-1]
    children = ((key, child) for key, child in node.items() if isinstance(child, dict))
    return next(filter(None, (_argument(child, f"{prefix}.{key}", wanted) for key, child in children)), None)


_PLAIN_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}


def _annotation_text(annotation) -> str:
    """``int``, ``float | None``: an annotation as written (a string under ``from __future__ import annotations``)."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _fits(value, annotation) -> bool:
    """Whether ``value`` (from a config) fits a parameter annotated with plain types (``int``, ``float | None``,
    ...); True for any other annotation, which this does not judge."""
    text = _annotation_text(annotation)
    optional = text.startswith("Optional[") and text.endswith("]")  # Optional[int]: int | None
    names = [part.strip() for part in (text[len("Optional["):-1] if optional else text).split("|")]
    names += ["None"] if optional else []
    if annotation is inspect.Parameter.empty or not all(name in _PLAIN_TYPES for name in names):
        return True
    kinds = {_PLAIN_TYPES[name] for name in names}
    if isinstance(value, list | tuple) or (isinstance(value, dict) and "_target_" not in value):
        return False  # hidden=[1,2] for an int (Hydra's sweep of 1 and 2 is hidden=1,2 with -m)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int):
        return bool(kinds & {int, float})
    return not isinstance(value, float | str | type(None)) or type(value) in kinds


def _mistyped_argument(node: dict, prefix: str) -> tuple[str, object, str, str] | None:
    """(dotted key, value, class name, annotation) of the first argument in ``node``'s subtree whose value does not
    fit its parameter's plain-type annotation (``in_channels: int`` given 'abc'): why a constructor failed."""
    if "_target_" in node:
        try:
            parameters = inspect.signature(get_object(str(node["_target_"]))).parameters
        except Exception:  # not importable or no signature
            parameters = {}
        for name, value in node.items():
            if name in parameters and not _fits(value, parameters[name].annotation):
                owner = str(node["_target_"]).rsplit(".", 1)[-1]
                return f"{prefix}.{name}", value, owner, _annotation_text(parameters[name].annotation)
    children = ((key, child) for key, child in node.items() if isinstance(child, dict))
    return next(filter(None, (_mistyped_argument(child, f"{prefix}.{key}") for key, child in children)), None)


# What a module passes when it calls a partial config: an optimizer's params, a scheduler's optimizer.
PASSED_WHEN_CALLED = {"params", "optimizer"}


def _needs_partial(node: dict, names: list[str], prefix: str) -> tuple[str, str] | None:
    """(dotted key, class name) of a node below ``node`` without ``_partial_: true`` whose target requires one of
    ``names``: where a required argument is missing (or, for PASSED_WHEN_CALLED, where _partial_ is)."""
    for key, child in node.items():
        if not isinstance(child, dict):
            continue
        if "_target_" in child and child.get("_partial_") is not True:
            try:
                parameters = inspect.signature(get_object(str(child["_target_"]))).parameters
            except Exception:  # not importable or no signature: not this one
                parameters = {}
            if any(name in parameters and parameters[name].default is inspect.Parameter.empty for name in names):
                return f"{prefix}.{key}", str(child["_target_"]).rsplit(".", 1)[-1]
        if found := _needs_partial(child, names, f"{prefix}.{key}"):
            return found
    return None


def _refused_keys(values: dict, message: str) -> list[str]:
    """The keys a Lightning message is about: quoted (`devices`), else assigned (devices=0), else named, else their
    value quoted; those of its first sentence, which states the problem (the others may name remedies: "set
    `limit_val_batches` to 0.0 instead"), where it names any."""
    for text in (message.split(". ", 1)[0], message):
        for pattern in (r"`{key}`", r"\b{key}=", r"\b{key}\b"):
            keys = [key for key in values if re.search(pattern.format(key=re.escape(key)), text, re.IGNORECASE)]
            if keys:
                return keys
    return [key for key, value in values.items()
            if isinstance(value, str) and len(value) > 2 and re.search(rf"\b{re.escape(value)}\b", message)]


def construction_error(error: Exception, node: DictConfig, key: str) -> UserError | None:
    """The user error behind an exception raised while constructing config node ``key``; ``None``: a bug."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(error, UserError):
        return error
    message = one_line(error)
    config = OmegaConf.to_container(node, resolve=True)
    target = str(config.get("_target_", key)).rsplit(".", 1)[-1]
    if isinstance(error, TypeError) and (unknown := _UNKNOWN_ARGUMENT.search(message)):
        named = _argument(config, key, lambda name, _: name == unknown[1])
        argument, owner = named or (f"{key}.{unknown[1]}", target)
        return ConfigError(f"Config key '{argument}' is not an argument of {owner}; remove it or fix its spelling.")
    if isinstance(error, TypeError) and (missing := _MISSING_ARGUMENT.search(message)):
        names = re.findall(r"'(\w+)'", missing[1])
        nested, owner = _needs_partial(config, names, key) or (key, target)
        if nested != key and set(names) <= PASSED_WHEN_CALLED:
            return ConfigError(f"Config key '{nested}' ({owner}) lacks _partial_: true; {owner} takes "
                               f"{missing[1]} from the module that calls it when training starts, so its config "
                               f"must be a partial one: add _partial_: true to it (or +{nested}._partial_=true).")
        return ConfigError(f"Config {'group' if nested == key else 'key'} '{nested}' ({owner}) lacks the required "
                           f"argument(s) {missing[1]}; add them with +{nested}.<name>=<value>.")
    if (negative := _NEGATIVE_SIZE.search(message)) and (argument := _argument(
            config, key, lambda _, value: type(value) is int and value == int(negative[1]))):
        return ConfigError(f"Config key '{argument[0]}' is {negative[1]}, but {argument[1]} makes a tensor of that "
                           f"size; give a positive integer.")
    if mistyped := mistyped_argument_error(config, key):
        return mistyped
    values = {k: v for k, v in config.items() if k != "_target_"}
    if (_is_lightning(config.get("_target_")) and isinstance(error, (MisconfigurationException, *_REFUSALS))
            and _raised_by_lightning(error)):
        keys = _refused_keys(values, message)
        preset = " or choose another trainer preset (conf/trainer/)" if key == "trainer" else ""
        if not keys:
            return ConfigError(f"Lightning's {target} refuses the config group '{key}': {message.rstrip('.!')}; "
                               f"change its keys{preset}.")
        return refused_keys_error(key, values, keys, f"Lightning's {target} refuses", message, preset)
    return None


def mistyped_argument_error(config: dict | DictConfig, key: str) -> ConfigError | None:
    """The first argument in config node ``key`` whose value does not fit its parameter's plain-type annotation, as
    one sentence; None: every value fits. Asked only once something has failed: the value is then the likely cause."""
    if isinstance(config, DictConfig):
        try:
            config = OmegaConf.to_container(config, resolve=True)
        except OmegaConfBaseException:  # e.g. ${hydra:...} in a spawned DDP worker, where Hydra is not set up
            return None
    if not (mistyped := _mistyped_argument(config, key)):
        return None
    argument, value, owner, annotation = mistyped
    return ConfigError(f"Config key '{argument}' is {value!r}, but {owner}'s argument {argument.rsplit('.', 1)[-1]} "
                       f"takes {annotation}; give a value of that type.")


def refused_keys_error(key: str, values: dict, keys: list[str], refuser: str, message: str,
                       remedy: str = "") -> ConfigError:
    """``Config key 'trainer.x' is 3, which <refuser>: <message>; change it<remedy>.``"""
    named = ", ".join(f"'{key}.{k}' is {values[k]!r}" for k in keys)
    return ConfigError(f"Config key {named}, which {refuser}: {message.strip().rstrip('.!')}; change "
                       f"{'it' if len(keys) == 1 else 'them'}{remedy}.")


@contextmanager
def trainer_refusals(trainer_node: DictConfig, model_node: DictConfig | None = None) -> Iterator[None]:
    """Around ``trainer.fit``: Lightning checks some Trainer arguments only once it knows the data (e.g.
    ``val_check_interval`` against the batches per epoch). A refusal raised in Lightning's code that names one of
    the trainer config's keys is one sentence, as is its refusal of a LightningModule of one's own that lacks a
    method it needs (``configure_optimizers``); anything else stays a bug."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except MisconfigurationException as error:
        if model_node is not None and (lacking := re.match(r"No `(\w+)\(\)` method defined", str(error))):
            raise ConfigError(f"Config key 'model' is {model_node.get('_target_')}, which defines no {lacking[1]}(), "
                              f"and Lightning trains only a LightningModule that does; define it, or give your "
                              f"network as model.net of model=lenet5's module (ClassificationModule).") from None
        raise_refused_trainer_keys(trainer_node, error)
        raise
    except ValueError as error:
        raise_refused_trainer_keys(trainer_node, error)
        raise


def raise_refused_trainer_keys(trainer_node: DictConfig, error: Exception) -> None:
    """One sentence for a refusal raised in Lightning's code that names one of the trainer config's keys."""
    values = {k: v for k, v in OmegaConf.to_container(trainer_node, resolve=True).items() if k != "_target_"}
    if keys := (_refused_keys(values, one_line(error)) if _raised_by_lightning(error) else []):
        raise refused_keys_error("trainer", values, keys, "Lightning's Trainer refuses for this data",
                                 one_line(error)) from None


def instantiate_node(node: DictConfig | ListConfig, key: str, **kwargs):
    """``hydra.utils.instantiate`` with the user's mistakes raised as :class:`UserError`.

    Hydra wraps whatever a constructor raises in an InstantiationException; a UserError inside is
    unwrapped, an argument the constructor does not take (or Lightning's code refuses) becomes a
    ConfigError naming its key, anything else is re-raised as it is: a bug, with its traceback (our
    own LightningModule's ValueError included: raise ConfigError there).
    """
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        user_error = construction_error(cause, node, key) if isinstance(cause, Exception) else None
        if user_error is None:
            raise
        raise user_error from None


# ---- user errors that reach the entry points in another shape: a spawned worker's, Hydra's own ---------
def worker_exception(error: ProcessRaisedException) -> tuple[str, str] | None:
    """(class, message) of the exception a spawned DDP worker (``strategy=ddp_spawn``) stopped with.

    torch.multiprocessing hands the parent only the worker's traceback as text; the exception's own lines,
    ``<module>.<class>: <message>``, follow the last traceback's (indented) frames.
    """
    last = error.msg.rsplit("Traceback (most recent call last):", 1)[-1]
    lines = itertools.dropwhile(lambda line: not line or line[0].isspace(), last.splitlines())
    found = re.fullmatch(r"([A-Za-z_][\w.]*): (.*)", "\n".join(lines).strip(), re.DOTALL)
    return (found[1], found[2]) if found else None


def worker_user_error(error: Exception) -> UserError | None:
    """The UserError a spawned DDP worker stopped with (``error``: torch's ProcessRaisedException, which only a process
    that imported torch.multiprocessing meets); ``None``: the worker's bug, or an exception of another kind."""
    raised_in_a_worker = getattr(sys.modules.get("torch.multiprocessing"), "ProcessRaisedException", None)
    if raised_in_a_worker is None or not isinstance(error, raised_in_a_worker):
        return None
    found = worker_exception(error)
    try:
        kind = get_object(found[0]) if found else None
    except Exception:  # a class that does not import here (e.g. from the worker's __main__): not ours to name
        return None
    return kind(found[1]) if isinstance(kind, type) and issubclass(kind, UserError) else None


def _config_keys(node, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config (interpolations left unresolved)."""
    for key in node.keys() if isinstance(node, DictConfig) else ():
        yield f"{prefix}{key}"
        yield from _config_keys(node._get_node(key), f"{prefix}{key}.")


def _closest_keys(config: DictConfig, key: str) -> list[str]:
    """The existing keys the user may have meant by ``key``: the same name elsewhere, then similar spellings."""
    keys = [k for k in _config_keys(config) if key.startswith("hydra.") or not k.startswith("hydra.")]
    same_name = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    return list(dict.fromkeys(same_name + difflib.get_close_matches(key, keys, n=3, cutoff=0.7)))[:5]


def _arguments_the_added_group_leaves(added: str) -> list[tuple[str, str]]:
    """The keys that ``+<added>`` (``model/optimizer=adam`` on a model whose optimizer config is its own) would leave
    in the node it merges into that the option's class does not take: composed with the rest of the command line,
    so that one sentence gives the whole remedy. Nothing where that does not compose."""
    from hydra import compose

    from framework.validate import arguments_not_taken

    arguments = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if {"-m", "--multirun"} & set(sys.argv[1:]) or added not in arguments:
        return []
    try:
        cfg = compose(Path(sys.argv[0]).stem, [f"+{added}" if arg == added else arg for arg in arguments])
    except Exception:  # noqa: BLE001 - another mistake on the command line: its own sentence comes on the next try
        return []
    group = added.split("=", 1)[0]
    return list(arguments_not_taken(OmegaConf.select(cfg, group.replace("/", ".")), group.replace("/", ".")))


def _option_not_chosen(key: str) -> tuple[str, str] | None:
    """``logger.wandb.project`` without logger=wandb: (group, option) where ``key`` lies below a config group's
    option that the config file of that option defines (conf/logger/wandb.yaml holds logger.wandb)."""
    parts = key.split(".")
    if len(parts) < 3:
        return None
    group, option = parts[:2]
    file = CONF / group / f"{option}.yaml"
    if not file.is_file():
        return None
    return (group, option) if option in (OmegaConf.load(file) or {}) else None


def _chosen_options(group: str) -> list[str]:
    """The options of ``group`` that the command line chooses (its last ``group=...``), else an experiment it chooses
    (``override /callbacks: mi_lr`` in conf/experiment/, followed through the files it builds on), else train.py's
    default; [] for none."""
    typed = [arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.split("=", 1)[0].lstrip("+") == group and "=" in arg]
    experiments = [arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.split("=", 1)[0].lstrip("+") == "experiment"]
    chosen = typed[-1] if typed else next(filter(None, (_experiment_choice(group, name) for name in experiments)),
                                          _default_option(group))
    if isinstance(chosen, str):
        chosen = chosen.strip("[]").split(",")
    return [str(option).strip() for option in chosen or [] if str(option).strip() not in ("", "none", "null")]


def _experiment_choice(group: str, experiment: str) -> str | list | None:
    """The option(s) of ``group`` that conf/experiment/<experiment>.yaml overrides, or a file it builds on."""
    file = CONF / "experiment" / f"{experiment}.yaml"
    for entry in (OmegaConf.load(file).get("defaults", []) if file.is_file() else []):
        if isinstance(entry, DictConfig) and f"override /{group}" in entry:
            chosen = entry[f"override /{group}"]
            return list(chosen) if isinstance(chosen, ListConfig) else chosen
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            if (built_on := _experiment_choice(group, entry)) is not None:  # perceptual/base
                return built_on
    return None


def _default_option(group: str) -> str | None:
    """The option of ``group`` in train.py's defaults list (conf/train.yaml); None where it chooses none."""
    defaults = OmegaConf.load(CONF / "train.yaml").get("defaults", [])
    return next((entry[group] for entry in defaults if isinstance(entry, DictConfig) and group in entry), None)


def _split_by_a_space(override: str) -> ConfigError | None:
    """``-m seed=1 2 3``, ``seed=1, 2`` or ``seed=[1, 2]``: the shell split one override at its spaces, and Hydra
    refused the first piece that is not key=value (or the override that ends with a comma)."""
    words = sys.argv[1:]
    if override not in words:
        return None
    at = words.index(override)
    if override.endswith(",") and "=" in override:
        first, rest = override, words[at + 1:]
    elif at > 0 and "=" in words[at - 1] and _a_piece_of_a_value(override, words[at - 1]):
        first, rest = words[at - 1], words[at:]
    else:
        return None
    pieces = [first]
    for word in rest:
        if not _a_piece_of_a_value(word, pieces[-1]):
            break
        pieces.append(word)
    if len(pieces) == 1:
        return None
    joined = ",".join(piece.strip(",") for piece in pieces if piece.strip(","))
    sweep = "," in joined.split("=", 1)[1] and "[" not in joined and not {"-m", "--multirun"} & set(words)
    return ConfigError(f"The command-line words {' '.join(map(repr, pieces))} are one override that a space split; "
                       f"write its values with commas and no spaces ({'-m ' if sweep else ''}{joined}), or quote the "
                       f"whole override.")


def _a_piece_of_a_value(word: str, before: str) -> bool:
    """Is ``word`` the rest of a value that the word ``before`` it began: a number or a list's end (``2]``), or any
    word without '=' after a comma?"""
    if "=" in word or word.startswith(("+", "~", "-")) and not re.fullmatch(r"-[\d.]+", word):
        return False
    return before.endswith(",") or word.startswith(",") or word.endswith(("]", ",")) or \
        re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", word) is not None


def _choosing_file(group: str) -> Path | None:
    """The config file chosen on the command line (``experiment=mine``, in conf/ or a ``hydra.searchpath`` folder)
    whose defaults list chooses ``group`` without ``override``."""
    words = sys.argv[1:]
    config_dirs = [Path(words[n + 1]) for n, word in enumerate(words[:-1]) if word in ("-cd", "--config-dir")] + \
        [Path(word.split("=", 1)[1]) for word in words if word.startswith("--config-dir=")]
    folders = [CONF, *config_dirs, *(Path(path) for arg in words if arg.startswith("hydra.searchpath=")
                                     for path in re.findall(r"file://([^,\]'\"]+)", arg))]
    chooses = re.compile(rf"^\s*-\s*/?{re.escape(group)}\s*:", re.MULTILINE)
    for arg in sys.argv[1:]:
        key, _, option = arg.lstrip("+").partition("=")
        for file in (folder / key / f"{option}.yaml" for folder in folders if option and "." not in key):
            if file.is_file() and chooses.search(file.read_text()):
                return file
    return None


def hydra_refusal(error: HydraException) -> ConfigError:
    """One sentence for Hydra's refusal of a command line (Hydra prints several lines and its search path)."""
    if sweep := re.search(r"BasicSweeper does not support sweep type : (\w+)", str(error)):
        kind = sweep[1].lower().removesuffix("_sweep")
        typed = next((arg for arg in sys.argv[1:] if f"{kind}(" in arg), None)  # else in an experiment's sweeper params
        key, _, value = typed.lstrip("+").partition("=") if typed else ("key", "", "")
        given = f"Config key '{key}' is swept with {value}, but " if typed else ""
        return ConfigError(f"{given}Hydra's basic sweeper cannot run {kind} sweeps (interval() is for optimising "
                           f"sweepers such as Optuna's, not installed here); list the values instead: {key}=0.01,0.03,"
                           f"0.1, {key}=range(1,4) or {key}=choice(a,b).")
    if isinstance(error, OverrideParseException):
        if split := _split_by_a_space(str(error.override)):
            return split
        reason = str(error.message).splitlines()[0]
        return ConfigError(f"The command-line override {error.override!r} cannot be parsed ({reason}); write "
                           f"key=value with balanced brackets and quotes (see https://hydra.cc/docs/advanced/"
                           f"override_grammar/basic/).")
    if isinstance(error, MissingConfigException) and "/" in str(error.missing_cfg_file or ""):
        group, option = str(error.missing_cfg_file).rsplit("/", 1)
        searched = re.findall(r"provider=hydra\.searchpath[^,]*, path=file://(\S+)", str(error))
        files = [file for folder in [CONF, *map(Path, searched)] for file in (folder / group).glob("*.yaml")]
        options = error.options or sorted({file.stem for file in files})  # Hydra lists none for logger=[csv,nope]
        if not options:
            return ConfigError(one_line(str(error)))
        close = difflib.get_close_matches(option, options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        absent = [path for path in searched if not Path(path).is_dir()]  # Hydra passes over it without a word
        where = f" (hydra.searchpath names file://{absent[0]}, which is not a folder here)" if absent else ""
        return ConfigError(f"Config group '{group}' has no option {option!r}{hint}{where}; choose one of "
                           f"{', '.join(options)}.")
    cause, added = error.__cause__, re.search(r"use \+(\S+)", str(error))
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and added:
        root = cause.parent_node._get_root() if cause.parent_node is not None else None
        closest = _closest_keys(root, str(cause.full_key)) if isinstance(root, DictConfig) else []
        hint = f" (the closest existing keys: {', '.join(closest)})" if closest else ""
        key = added[1].split("=", 1)[0]
        parent, _, last = key.rpartition(".")
        numbered = OmegaConf.select(root, parent) if parent and isinstance(root, DictConfig) else None
        if last.isdigit() and isinstance(numbered, DictConfig) and len(numbered) and \
                all(isinstance(name, int) for name in numbered.keys()):  # {3: 500}: a dotted key gives "3", text
            given = OmegaConf.to_container(numbered) | {int(last): added[1].split("=", 1)[1]}
            mapping = "{" + ",".join(f"{name}:{value}" for name, value in given.items()) + "}"
            return ConfigError(f"Config key '{parent}' is a mapping with numbers as its keys, which a dotted key on "
                               f"Hydra's command line ({key}) gives as text; give the whole mapping: "
                               f"'{parent}={mapping}'.")
        if unchosen := _option_not_chosen(key):
            group, option = unchosen
            chosen = _chosen_options(group)
            choose = f"'{group}=[{','.join([*chosen, option])}]'" if chosen else f"{group}={option}"
            return ConfigError(f"Config key '{key}' belongs to the {group} option {option}, which this run does not "
                               f"choose; add it with {choose} (its file: conf/{group}/{option}.yaml), then {added[1]} "
                               f"sets it.")
        if {"-m", "--multirun"} & set(sys.argv[1:]):  # a sweep starts from the config without its swept groups
            typed = next((arg for arg in sys.argv[1:] if arg.split("=", 1)[0].lstrip("+~") == key), added[1])
            return ConfigError(f"Config key '{key}' is not in the config of every job of this sweep (the config it "
                               f"starts from, or a job's option of a swept group){hint}; fix its spelling, or give "
                               f"it as ++{typed.lstrip('+~')} (added where a job's config lacks it, overridden where "
                               f"it has it).")
        return ConfigError(f"Config key '{key}' is not in the config{hint}; fix its spelling, or add a new key with "
                           f"+{added[1]}.")
    message = str(error)
    if (deleted := re.fullmatch(r"Error merging override ~(\S+?)(?:=.*)?", message.strip())) and \
            isinstance(cause, InterpolationResolutionError):
        return ConfigError(f"Config key '{deleted[1]}' cannot be deleted with ~{deleted[1]}: Hydra reads its value "
                           f"first, and that value refers to Hydra's runtime settings, which do not exist yet while "
                           f"the command line is applied; set it instead ({deleted[1]}=<value>).")
    if (merging := re.fullmatch(r"Error merging override (\S+?)=(.*)", message.strip())) and \
            isinstance(cause, ValidationError):  # a typed key of Hydra's own config (hydra.launcher.timeout_min=abc)
        kind = re.search(r"could not be converted to (\w+)|is not a (ListConfig)", str(cause))
        wanted = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false",
                  "ListConfig": "a list in brackets ([a,b])"}.get(kind and (kind[1] or kind[2]), "of another type")
        return ConfigError(f"Config key '{merging[1]}' is {merging[2]!r}, but Hydra's settings are typed and it must "
                           f"be {wanted}; give one.")
    if exists := re.search(r"An item is already at '([^']+)'.*remove \+ prefix: '([^']*)'", message, re.DOTALL):
        return ConfigError(f"Config key '{exists[1]}' exists already, so +{exists[2]} cannot add it; override it with "
                           f"{exists[2]} (or ++{exists[2]}: add or override).")
    # Hydra says "Multiple values for model" where it names the option, else "model appears more than once"
    twice = re.search(r"Multiple values for (\S+)\. To override a value use 'override \S+: (\S+)'", message) or \
        re.fullmatch(r"(\S+) appears more than once in the final defaults list()", message.strip())
    if twice:
        group, option = twice[1], twice[2] or None
        if not any(arg.startswith(f"+{group}=") for arg in sys.argv[1:]):
            file = _choosing_file(group)
            line = f" ('- /{group}: {option}')" if option else ""
            return ConfigError(f"Config group '{group}' is chosen twice: by the defaults, and by the defaults list of "
                               f"{file or 'a config file chosen on the command line'}{line}; write '- override "
                               f"/{group}: {option or '<option>'}' there.")
        return ConfigError(f"Config group '{group}' is chosen already (by the defaults or an experiment), so "
                           f"+{group}={option or '...'} cannot add it again; choose it without the +: "
                           f"{group}={option or '<option>'}.")
    if unchosen := re.search(r"Could not override '(\S+)'\. No match in the defaults list.*use \+(\S+)", message,
                             re.DOTALL):
        leftovers = _arguments_the_added_group_leaves(unchosen[2])
        keys = [key for key, owner in leftovers if owner == leftovers[0][1]]
        why = (f" (the option merges into the config the model has there, whose "
               f"{', '.join(key.rsplit('.', 1)[-1] for key in keys)} {leftovers[0][1]} does not take)" if keys else "")
        return ConfigError(f"Config group '{unchosen[1]}' is not chosen by default, so there is nothing to override; "
                           f"add it with {' '.join([f'+{unchosen[2]}', *(f'~{key}' for key in keys)])}{why}.")
    if ambiguous := re.search(r"Ambiguous value for argument '([^=']+)=([^']*)'", message):
        typed, value = ambiguous[1], ambiguous[2]
        key = typed.lstrip("+")
        if (CONF / key).is_dir():  # a config group: a list would merge its options into one config
            return ConfigError(f"Config group '{key}' is given {value!r} with commas; add -m (--multirun) to run one "
                               f"job per option, or write {typed}=[{value}] to merge them all into one config (as "
                               f"logger=[csv,tensorboard] logs to both).")
        return ConfigError(f"Config key '{key}' is given {value!r} with commas; add -m (--multirun) to run one job "
                           f"per value, or write {typed}=[{value}] for a list, {as_typed_in_a_shell(typed, value)} "
                           f"for a string (as typed in a shell).")
    return ConfigError(one_line(message))


def group_given_null() -> ConfigError:
    """``logger=null`` (or ``-m model=lenet5,null``) on the command line, which Hydra refuses with a ValueError naming
    no group."""
    def given_null(arg: str) -> bool:  # Hydra reads NULL and Null as null too
        key, _, value = arg.partition("=")
        return (CONF / key.lstrip("+~")).is_dir() and "null" in value.lower().split(",")

    typed = next((arg for arg in sys.argv[1:] if given_null(arg)), None)
    if typed is None:  # in a config file's defaults list
        return ConfigError("A config group is given null in a defaults list, but a group takes one of its options "
                           "(none, where it has one, leaves it out); choose one there.")
    group = typed.split("=", 1)[0].lstrip("+~")
    options = sorted(path.stem for path in (CONF / group).glob("*.yaml"))
    if _default_option(group) is None:  # experiment, debug: none unless chosen
        return ConfigError(f"Config group '{group}' is given null, which the command line cannot give a group; leave "
                           f"{group}= out (it chooses no option by default), or choose one of {', '.join(options)}.")
    leave_out = f" ({group}=none leaves it out)" if "none" in options else ""
    return ConfigError(f"Config group '{group}' is given null, but it takes one of its options: "
                       f"{', '.join(options)}{leave_out}; choose one.")


_job = {"started": False}


def _reporting_hydra_refusals(compose_or_run: Callable[[], object]):
    """Inside Hydra's own reporter: its refusal of the command line becomes one sentence and exit code 2; a sweep
    that a job's bug stopped says where its jobs wrote before Hydra prints the traceback."""
    try:
        return _refusals_as_sentences(compose_or_run)
    except Exception:
        if _job.get("sweep_dir"):  # Hydra has let go of the job's config by now
            _job["started"] = True  # a job's bug, also where it ran in a process of its own: Hydra's exit code 1
            print(f"sweep directory: {_job['sweep_dir']} (a job failed with the traceback below)", file=sys.stderr)
        raise


def _refusals_as_sentences(compose_or_run: Callable[[], object]):
    try:
        with stopping_quietly_when_stdout_closes():  # before Hydra's reporter prints it (--cfg job | head -1)
            return compose_or_run()
    except HydraException as error:  # composition, parsing, a sweep the sweeper cannot run
        if _job["started"] or os.environ.get("HYDRA_FULL_ERROR") == "1":  # a job's bug; Hydra's debugging output
            raise
        print(report(hydra_refusal(error)), file=sys.stderr)
        raise SystemExit(2) from None
    except UserError as error:  # a sweep's job stopped with it, and Hydra ran the others first (reporting_user_errors);
        # before OSError: DatasetMissingError is a FileNotFoundError too
        where = getattr(error, "output_dir", None)
        if _job.get("sweep_dir"):  # as after a sweep that ended well (PrintSweepDir): its finished jobs' results
            print(f"sweep directory: {_job['sweep_dir']}", file=sys.stderr)
            if _job.get("script") == "train":
                for command in evaluate_commands(_job.get("evaluate_tasks"), _job["sweep_dir"]):
                    print(f"summarise its finished jobs with: {command}", file=sys.stderr)
        print(f"The sweep ran every job; the first that stopped{f' ({where})' if where else ''} said:", file=sys.stderr)
        print(report(error), file=sys.stderr)  # again: a submitit job's own output is in its .submitit log, not here
        raise SystemExit(2) from None
    except yaml.MarkedYAMLError as error:  # a config file of the user's that is not valid YAML
        if _job["started"] or os.environ.get("HYDRA_FULL_ERROR") == "1" or error.problem_mark is None:
            raise
        mark = error.problem_mark
        print(report(ConfigError(f"The config file {mark.name} is not valid YAML: {error.problem} (line "
                                 f"{mark.line + 1}, column {mark.column + 1}); fix it, e.g. the indentation there.")),
              file=sys.stderr)
        raise SystemExit(2) from None
    except ModuleNotFoundError as error:  # hydra/launcher=slurm or local in an environment without submitit
        if error.name != "submitit" or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(report(ConfigError("Config key 'hydra/launcher' runs its jobs through submitit, but this environment has "
                                 "no module 'submitit'; install the project's environment again (make setup), or "
                                 "pip install hydra-submitit-launcher, which brings it.")), file=sys.stderr)
        raise SystemExit(2) from None
    except RuntimeError as error:  # submitit: a multi-task SLURM job that one failed task stopped
        said = failed_slurm_task(error)
        if said is None:
            raise
        folder, task, sentence = said
        if sentence is None:  # a bug: its traceback is in the task's log, and submitit's below
            print(f"The SLURM job whose logs are in {folder} stopped when its task {task} failed; its log has the "
                  f"traceback.", file=sys.stderr)
            raise
        if stop := re.match(r"Stopped by (SIG[A-Z]+)", sentence):  # scancel, or the cluster stopped it
            print(f"The SLURM job whose logs are in {folder} was stopped; task {task} said:", file=sys.stderr)
            print(sentence, file=sys.stderr)
            raise SystemExit(128 + signal.Signals[stop[1]]) from None
        print(f"The SLURM job whose logs are in {folder} stopped when its task {task} failed (srun ended the "
              f"others, which were waiting for it); task {task} said:", file=sys.stderr)
        print(sentence, file=sys.stderr)
        raise SystemExit(2) from None
    except (OSError, ValueError) as error:  # Hydra making the output directory, its log file (logging's
        # ValueError, caused by the OSError) or its .hydra/ records, before any job
        if not _job["started"] and (full := disk_full(error)):
            print(report(full), file=sys.stderr)
            raise SystemExit(2) from None
        if not _job["started"] and str(error).startswith("Config group override must be a string or a list. Got"):
            print(report(group_given_null()), file=sys.stderr)
            raise SystemExit(2) from None
        cause = error if isinstance(error, OSError) else error.__cause__ or error.__context__
        if _job["started"] or os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(cause, OSError) or \
                not cause.filename:
            raise
        print(report(ConfigError(f"The output directory cannot be made or written: {cause.filename} "
                                 f"({cause.strerror}); point paths.log_dir= (or hydra.run.dir=, hydra.sweep.dir= with "
                                 f"-m) at a folder you can write.")), file=sys.stderr)
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
    folder, prefixes = Path(path[1]), "|".join(re.escape(prefix) for prefix in _prefixes(UserError))
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


def _prefixes(cls: type[UserError]) -> set[str]:
    return {cls.prefix}.union(*(_prefixes(sub) for sub in cls.__subclasses__()))


# ---- the entry points ---------------------------------------------------------------------------------
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
    for handler in {*logging.getLogger().handlers, *log.handlers}:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def in_a_sweep() -> bool:
    """Is this process running a job of a Hydra multirun?"""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def as_typed_in_a_shell(key: str, value: str) -> str:
    """``key=value`` as one shell word that Hydra reads as that string: quoted for Hydra where the value holds
    characters of its grammar (``runs='logs/a,b'``), then for the shell where it holds any of the shell's."""
    if set(value) & set(",[]{}()'\"\\=$"):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    word = f"{key}={value}"
    if shlex.quote(word) == word or set(word) & set('"$`\\!'):
        return shlex.quote(word)
    return f'"{word}"'  # reads better than shlex's '...'"'"'...


def evaluate_commands(tasks: list[str] | None, runs: str) -> list[str]:
    """``python evaluate.py [task=<task>] runs=<runs>`` for each task (``table``, evaluate.py's default, unnamed),
    for a sweep directory that holds some finished job's results.json; none for one that holds none. Started
    outside the repository (a folder of one's own configs), the script's path as typed from there."""
    if not any(Path(runs).rglob("results.json")):
        return []
    tasks = [tasks] if isinstance(tasks, str) else tasks or ["table"]  # evaluate_tasks=reae_table1 is one task
    runs_word = as_typed_in_a_shell("runs", runs)
    script = "evaluate.py" if Path.cwd().resolve() == ROOT else shlex.quote(os.path.relpath(ROOT / "evaluate.py"))
    return [f"python {script} {'' if task == 'table' else f'task={task} '}{runs_word}" for task in tasks]


def remember_the_sweep(script: str, sweep_dir: str, evaluate_tasks: list[str] | None,
                       jobs_on_slurm: bool = False) -> None:
    """What a failed sweep prints at its end: its directory and the commands that summarise its finished jobs. Set
    in each job, and in the process that launched them, where a launcher runs the jobs in processes of their own
    (submitit's local and SLURM launchers); ``jobs_on_slurm``: in the launching process of a SLURM sweep."""
    _job.update(script=script, sweep_dir=sweep_dir, evaluate_tasks=evaluate_tasks, jobs_on_slurm=jobs_on_slurm)


def remember_the_job(evaluate_tasks: list[str] | None = None, ckpt_path: str | None = None) -> None:
    """What a job that stops or fails says of itself: its script, its folder and its sweep's, its ``ckpt_path``."""
    _job["ckpt_path"] = ckpt_path
    if HydraConfig.initialized():
        _job["script"] = HydraConfig.get().job.config_name  # train or evaluate, whatever hydra.job.name says
        _job["run_dir"] = HydraConfig.get().runtime.output_dir
    if in_a_sweep():
        remember_the_sweep(_job["script"], HydraConfig.get().sweep.dir, evaluate_tasks)


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
    _job["started"] = True
    remember_the_job(evaluate_tasks, ckpt_path)
    try:
        yield
    except Exception as error:
        user_error = error if isinstance(error, UserError) else worker_user_error(error) or disk_full(error)
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
def stopping_before_any_job():
    """Around a multirun's own checks (a Hydra callback's ``on_multirun_start``): a UserError becomes its sentence
    on stderr and exit code 2, before any job has started or been submitted."""
    try:
        yield
    except Exception as error:
        if (user_error := error if isinstance(error, UserError) else disk_full(error)) is None:
            raise
        print(report(user_error), file=sys.stderr)
        raise SystemExit(2) from None


def _mode_flags() -> list[str]:
    flags = ("-m", "--multirun", "-c", "--cfg", "-i", "--info", "-r", "--run", "-sc", "--shell-completion")
    return [arg for arg in sys.argv[1:] if arg.split("=", 1)[0] in flags]


def _lightning_sigterm() -> type[SystemExit] | None:
    """Lightning's SIGTERMException, which its signal handling (and ``_sigterm_outside_lightning``) raises to stop a
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
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else 1
    return 1


def _where_and_how_to_go_on() -> str:
    """Where the stopped job or sweep is, and how to continue it: the same command with ckpt_path=auto, and with its
    folder where the command did not give one (a new default folder, named after the time, would start afresh)."""
    sweep = _job.get("sweep_dir")
    where = f"sweep directory: {sweep}" if sweep else ""
    key, folder = ("hydra.sweep.dir", sweep) if sweep else ("hydra.run.dir", _job.get("run_dir"))
    given = any(arg.startswith(f"{key}=") for arg in sys.argv[1:])
    also = f" {as_typed_in_a_shell(key, str(folder))}" if folder and not given else ""
    how = (f"a run goes on from its last checkpoint when the same command is given again with ckpt_path=auto{also}"
           if _job.get("script") == "train" else "")
    if _job.get("script") == "train" and requeued_by_slurm():  # it continues by itself
        how = "SLURM has requeued the job, which starts again by itself" + (
            ", from its last checkpoint" if _job.get("ckpt_path") == "auto" else
            f"; without ckpt_path=auto that start stops at the files this run left, and the same command given again "
            f"with ckpt_path=auto{also} continues the run")
    if _job.get("jobs_on_slurm"):  # the launching command stopped, not its jobs
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


def _sigterm_outside_lightning(signal_number: int, frame) -> None:
    """SIGTERM while no Trainer runs in this process (a job's set-up, its best checkpoint's scoring, results.json,
    between a sweep's jobs, or while ddp_spawn's ranks train) stops the job as Lightning's own handler stops a fit,
    with its exception: killed by the signal, the job left no sentence, and its ranks trained on. The ranks are
    killed: Lightning stops a rank at the end of the batch in which its signal arrived, with no word to the others,
    so a SIGTERM passed on to each rank left the one that got it a batch later waiting for the others for good. Their
    checkpoints are written whole or not at all, and the job continues from the last. While a Trainer runs here,
    Lightning's handler is the one installed; it calls this one too, after noting the signal, and stops the run at
    its next batch."""
    if signal.getsignal(signal.SIGTERM) is _sigterm_outside_lightning:
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
    process (``_sigterm_outside_lightning``). Any other handler is left as it is."""
    handler = signal.getsignal(signal.SIGTERM)
    if type(getattr(handler, "__self__", None)).__module__.startswith("submitit."):
        remember_the_job()  # its sentence says how the sweep goes on, whenever the signal comes
        signal.signal(signal.SIGTERM, _sigterm_outside_lightning)
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


def stop_submitit_local_jobs(grace_s: float = SUBMITIT_LOCAL_GRACE_S) -> None:
    """``hydra/launcher=local``: submitit runs each job in a process of its own under a controller process, which
    passes SIGTERM on to it; a launcher that SIGTERM stopped left its jobs training with no launcher to wait for them.
    Each job gets the signal as on a cluster, and the launcher waits until they have stopped (Lightning stops at the
    next batch), killing those still there after ``grace_s``, so that the sweep can go on with ckpt_path=auto."""
    controllers = [pid for pid in child_processes(os.getpid()) if "submitit.local._local" in command_line(pid)]
    for controller in controllers:
        with suppress(ProcessLookupError):
            os.kill(controller, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
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


def no_srun_hint_outside_slurm_jobs() -> None:
    """Lightning hints, on any machine with srun on PATH (a cluster's login node), that a command not started by srun
    be prepended with it; outside a SLURM job (no ``SLURM_JOB_ID``) that is no advice for a run here, and it came
    before a user error's one sentence. Inside a job, where the advice may be right, it stays."""
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


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
    _job.update(started=False, sweep_dir=None, script=None, run_dir=None, jobs_on_slurm=False, ckpt_path=None)
    no_srun_hint_outside_slurm_jobs()
    if "--experimental-rerun" in sys.argv[1:]:  # Hydra would fail on our paths' ${hydra:...}, or on a missing pickle
        print(report(ConfigError(
            f"--experimental-rerun cannot rerun this framework's runs: their paths come from Hydra's runtime "
            f"(${{hydra:runtime.output_dir}}), which Hydra's rerun does not set up; run it again with the overrides in "
            f"its .hydra/overrides.yaml (python {Path(sys.argv[0]).name} <those overrides>), or continue it with "
            f"ckpt_path=auto hydra.run.dir=<its folder>.")), file=sys.stderr)
        raise SystemExit(2)
    run_and_report = hydra_internals.run_and_report
    hydra_internals.run_and_report = lambda function: run_and_report(lambda: _reporting_hydra_refusals(function))
    hydra_node = Hydra.get_sanitized_hydra_cfg
    if "--resolve" in sys.argv[1:]:
        Hydra.get_sanitized_hydra_cfg = staticmethod(_resolved_in_the_whole_config(hydra_node))
    default_sigterm = signal.signal(signal.SIGTERM, _sigterm_outside_lightning)
    try:
        with stopping_quietly_when_stdout_closes(), logging_stopping_when_stdout_closes():
            main()
    except ValueError as error:  # Hydra's own check of its flags, before its reporter runs
        if _job["started"] or not str(error).startswith("Only one of --run, --multirun"):
            raise
        print(report(ConfigError(f"The command line gives {' and '.join(_mode_flags())}, but Hydra does one of --run, "
                                 f"--multirun (-m), --cfg, --info and --shell-completion at a time; to see a sweep "
                                 f"job's config, drop -m and give that job's values with --cfg job.")), file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl+C outside Lightning's loops: while data is set up, between a sweep's jobs
        stop_submitit_local_jobs()  # hydra/launcher=local: they leave Ctrl+C to the launcher (below)
        stopped_by(signal.SIGINT)
    except SystemExit as stop:
        if is_lightning_sigterm(stop):  # Lightning's after a SIGTERM (kill, a scheduler's stop): a SystemExit of code 0
            stopped_by(signal.SIGTERM)
        if isinstance(stop.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) after Ctrl+C in its loops
            stopped_by(signal.SIGINT)
        if stop.code == 1 and not _job["started"]:
            sys.exit(2)
        raise
    finally:
        hydra_internals.run_and_report = run_and_report
        Hydra.get_sanitized_hydra_cfg = staticmethod(hydra_node)
        signal.signal(signal.SIGTERM, default_sigterm)

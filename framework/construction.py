"""The construction boundary: what a constructor raises for a config node, as the user's mistake behind it.

Hydra's ``instantiate`` wraps whatever a constructor raises; :func:`instantiate_node` unwraps a UserError and turns
an argument the class does not take, a required one left out, a value of the wrong type or Lightning's refusal of
a Trainer, callback or logger argument into a ConfigError naming its key. :func:`trainer_refusals` does the same
for what Lightning refuses only once it knows the data, and :func:`worker_user_error` finds the UserError a spawned
DDP worker stopped with. Anything else stays a bug, with its traceback.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import logging
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hydra.errors import InstantiationException
from hydra.utils import get_object as _hydra_get_object
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.errors import ConfigError, UserError, one_line, shown

if TYPE_CHECKING:
    from torch.multiprocessing import ProcessRaisedException


def get_object(path: str):
    """``hydra.utils.get_object`` without the ERROR lines Hydra logs for a path that does not import: the caller says
    that in one sentence."""
    logger = logging.getLogger("hydra.utils")
    disabled, logger.disabled = logger.disabled, True
    try:
        return _hydra_get_object(path)
    finally:
        logger.disabled = disabled


def parameters_of(target) -> Mapping[str, inspect.Parameter]:
    """The parameters of the class or function that the ``_target_`` ``target`` names; none where it does not import
    or has no signature."""
    try:
        return inspect.signature(get_object(str(target))).parameters
    except Exception:  # not importable (validate() says so), or no signature
        return {}


def arguments_up_the_classes(target) -> tuple[list[str], bool]:
    """The named arguments of the class ``target`` names and of the base classes its ``**kwargs`` go on to
    (MNISTDataModule's train_part, its base's batch_size; a function's own), and whether those are all it takes: the
    chain ends in a signature without ``**kwargs``. ([], False) where it does not import."""
    try:
        found = get_object(str(target))
    except Exception:  # not importable: validate() says so
        return [], False
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names: dict[str, None] = {}
    callables = [cls.__init__ for cls in found.__mro__ if cls is not object] if isinstance(found, type) else [found]
    for callable_ in callables:
        try:
            parameters = inspect.signature(callable_).parameters
        except (TypeError, ValueError):  # a builtin's
            continue
        names.update((name, None) for name, parameter in parameters.items()
                     if name != "self" and parameter.kind not in variadic)
        if all(parameter.kind is not inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            return list(names), True
    return list(names), False


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


def has_lightnings_constructor(target) -> bool:
    """Does ``target`` construct with Lightning's ``__init__`` (Trainer, TQDMProgressBar, and RunModelCheckpoint,
    which keeps ModelCheckpoint's), whose annotations are exact?"""
    try:
        classes = get_object(str(target)).__mro__
    except Exception:  # not importable or not a class
        return False
    constructor = next((c for c in classes if "__init__" in vars(c)), object)
    return constructor.__module__.startswith("lightning.")


def _raised_by_lightning(error: Exception) -> bool:
    """Was ``error`` raised in Lightning's code (not in ours, e.g. a LightningModule subclass's constructor)?"""
    innermost = error.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    module = innermost.tb_frame.f_globals.get("__name__", "") if innermost is not None else ""
    return module.split(".")[0] in ("lightning", "lightning_fabric", "lightning_utilities")


def _nodes(node: dict, prefix: str) -> Iterator[tuple[str, dict]]:
    """``node`` and every mapping below it, depth first, each with its dotted key."""
    yield prefix, node
    for key, child in node.items():
        if isinstance(child, dict):
            yield from _nodes(child, f"{prefix}.{key}")


def _owner(node: dict, prefix: str) -> str:
    """The class name of the node's ``_target_`` (else the last part of its key)."""
    return str(node.get("_target_", prefix)).rsplit(".", 1)[-1]


def _argument(node: dict, prefix: str, wanted) -> tuple[str, str] | None:
    """(dotted key, owner's class name) of the first argument in ``node``'s subtree for which ``wanted(name, value)``
    holds: where an argument was set (by name), or which one holds a value torch refused."""
    return next(((f"{at}.{name}", _owner(owner, at)) for at, owner in _nodes(node, prefix)
                 for name, value in owner.items() if wanted(name, value)), None)


_PLAIN_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}


def _annotation_text(annotation) -> str:
    """``int``, ``float | None``: an annotation as written (a string under ``from __future__ import annotations``)."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _plain_types(annotation) -> list[str] | None:
    """The names of the plain types (``_PLAIN_TYPES``) an annotation allows (``int``, ``float | None``,
    ``Optional[int]``, ``Union[int, float, NoneType]``); None for any other annotation."""
    if annotation is inspect.Parameter.empty:
        return None
    text = _annotation_text(annotation).replace("NoneType", "None")
    optional = text.startswith("Optional[") and text.endswith("]")  # Optional[int]: int | None
    text = text[len("Optional["):-1] if optional else text
    if text.startswith("Union[") and text.endswith("]"):  # Union[int, float]: int | float
        text = text[len("Union["):-1].replace(",", "|")  # a generic's own commas (dict[str, int]) make no plain type
    names = [part.strip() for part in text.split("|")] + (["None"] if optional else [])
    return names if all(name in _PLAIN_TYPES for name in names) else None


def _plain_types_text(names: list[str]) -> str:
    """``int``, ``int or None``, ``int, float or None``."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _fits(value, annotation) -> bool:
    """Whether ``value`` (from a config) fits a parameter annotated with plain types (:func:`_plain_types`); True for
    any other annotation, which this does not judge."""
    if (names := _plain_types(annotation)) is None:
        return True
    kinds = {_PLAIN_TYPES[name] for name in names}
    if isinstance(value, list | tuple) or (isinstance(value, dict) and "_target_" not in value):
        return False  # hidden=[1,2] for an int (Hydra's sweep of 1 and 2 is hidden=1,2 with -m)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int):
        return bool(kinds & {int, float})
    return not isinstance(value, float | str | type(None)) or type(value) in kinds


def _mistyped_argument(node: dict, prefix: str, judged: Collection[str] = ()) -> tuple[str, object, str, str] | None:
    """(dotted key, value, class name, annotation) of the first argument in ``node``'s subtree, bar the dotted keys
    ``judged`` (by a rule of their own), whose value does not fit its parameter's plain-type annotation
    (``in_channels: int`` given 'abc'): why a constructor failed."""
    for at, owner in _nodes(node, prefix):
        parameters = parameters_of(owner["_target_"]) if "_target_" in owner else {}
        for name, value in owner.items():
            if name in parameters and f"{at}.{name}" not in judged and not _fits(value, parameters[name].annotation):
                return f"{at}.{name}", value, _owner(owner, at), _plain_types_text(_plain_types(
                    parameters[name].annotation))
    return None


# What a module passes when it calls a partial config: an optimizer's params, a scheduler's optimizer.
PASSED_WHEN_CALLED = {"params", "optimizer"}


def _needs_partial(node: dict, names: list[str], prefix: str) -> tuple[str, str] | None:
    """(dotted key, class name) of a node below ``node`` without ``_partial_: true`` whose target requires one of
    ``names``: where a required argument is missing (or, for PASSED_WHEN_CALLED, where _partial_ is)."""
    for at, child in itertools.islice(_nodes(node, prefix), 1, None):  # the nodes below ``node``
        if "_target_" in child and child.get("_partial_") is not True:
            parameters = parameters_of(child["_target_"])
            if any(name in parameters and parameters[name].default is inspect.Parameter.empty for name in names):
                return at, _owner(child, at)
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
    target = _owner(config, key)
    if isinstance(error, TypeError) and (unknown := _UNKNOWN_ARGUMENT.search(message)):
        at, holder = next(((at, holder) for at, holder in _nodes(config, key) if unknown[1] in holder), (key, config))
        close = difflib.get_close_matches(unknown[1], arguments_up_the_classes(holder.get("_target_"))[0], n=3)
        hint = f" (the closest: {', '.join(close)})" if close else ""
        return ConfigError(f"Config key '{at}.{unknown[1]}' is not an argument of {_owner(holder, at)}{hint}; remove "
                           f"it or fix its spelling.")
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


def mistyped_argument_error(config: dict | DictConfig, key: str, judged: Collection[str] = ()) -> ConfigError | None:
    """The first argument in config node ``key`` whose value does not fit its parameter's plain-type annotation, as
    one sentence; None: every value fits. Asked once something has failed (the value is then the likely cause), or
    before any work of a class whose annotations are exact (validate's check_lightning_argument_types)."""
    if isinstance(config, DictConfig):
        try:
            config = OmegaConf.to_container(config, resolve=True)
        except OmegaConfBaseException:  # e.g. ${hydra:...} in a spawned DDP worker, where Hydra is not set up
            return None
    if not (mistyped := _mistyped_argument(config, key, judged)):
        return None
    argument, value, owner, annotation = mistyped
    return ConfigError(f"Config key '{argument}' is {shown(value)}, but {owner}'s argument "
                       f"{argument.rsplit('.', 1)[-1]} takes {annotation}; give a value of that type.")


def refused_keys_error(key: str, values: dict, keys: list[str], refuser: str, message: str,
                       remedy: str = "") -> ConfigError:
    """``Config key 'trainer.x' is 3, which <refuser>: <message>; change it<remedy>.``"""
    named = ", ".join(f"'{key}.{k}' is {shown(values[k])}" for k in keys)
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
    except (MisconfigurationException, ValueError) as error:
        lacking = re.match(r"No `(\w+)\(\)` method defined", str(error))
        if model_node is not None and isinstance(error, MisconfigurationException) and lacking:
            raise ConfigError(f"Config key 'model' is {model_node.get('_target_')}, which defines no {lacking[1]}(), "
                              f"and Lightning trains only a LightningModule that does; define it, or give your "
                              f"network as model.net of model=lenet5's module (ClassificationModule).") from None
        if refusal := _refused_trainer_keys_error(trainer_node, error):
            raise refusal from None
        raise


def _refused_trainer_keys_error(trainer_node: DictConfig, error: Exception) -> ConfigError | None:
    """One sentence for a refusal raised in Lightning's code that names one of the trainer config's keys."""
    values = {k: v for k, v in OmegaConf.to_container(trainer_node, resolve=True).items() if k != "_target_"}
    keys = _refused_keys(values, one_line(error)) if _raised_by_lightning(error) else []
    return refused_keys_error("trainer", values, keys, "Lightning's Trainer refuses for this data",
                              one_line(error)) if keys else None


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

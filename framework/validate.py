"""Config validation before any work starts: one clear sentence per mistake.

Each rule names a dotted config key, a predicate on its value and what is allowed. A rule
applies only when its key is present; a rule about one class's argument (``of=``) applies
only where the key belongs to a ``_target_`` of that class or a subclass, so that a network
or DataModule of the user's own may take an argument of the same name (``model.net.hidden: 32``).
Every ``_target_`` in the config must import. Hydra itself rejects an unknown group option
(``model=nope``) and lists the available ones.

Add a rule with :func:`rule`; :func:`validate` raises :class:`ConfigError` (framework/errors.py).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import inspect
import math
import os
import pkgutil
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.machinery import PathFinder
from numbers import Integral, Real
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from framework.command_line import unresolvable_error
from framework.compose import ABSENT, CONF, ROOT, lookup
from framework.construction import get_object, has_lightnings_constructor, mistyped_argument_error, parameters_of
from framework.errors import ConfigError, shown
from lightning_modules.perceptual_procedures import PERCEPTUAL_AUTOENCODER as PERCEPTUAL
from lightning_modules.perceptual_procedures import PROCEDURES


@dataclass(frozen=True)
class Rule:
    key: str
    check: Callable[[object], bool]
    allowed: str
    of: str | None = None  # the class (dotted path) whose argument the key is; None: any config
    null: bool = False  # whether null is allowed (Lightning's or our default); every other null is refused


RULES: list[Rule] = []


def rule(key: str, check: Callable[[object], bool], allowed: str, of: str | None = None, null: bool = False) -> None:
    RULES.append(Rule(key, check, allowed, of, null))


def is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def positive(value) -> bool:
    return is_number(value) and value > 0


def non_negative(value) -> bool:
    return is_number(value) and value >= 0


def open_unit_interval(value) -> bool:
    return is_number(value) and 0 < value < 1


def int_at_least(low: int) -> Callable[[object], bool]:
    return lambda value: is_int(value) and value >= low


SEED_BOUND = 2**32  # Lightning's seed_everything replaces a seed outside [0, 2^32) by 0, with a warning
is_seed = lambda value: is_int(value) and 0 <= value < SEED_BOUND
rule("seed", is_seed, "an integer in [0, 2^32), or null", null=True)
rule("trainer.max_epochs", lambda v: is_int(v) and (v >= 1 or v == -1),
     "an integer >= 1, or -1 (no epoch limit, as in Lightning: give +trainer.max_steps or +trainer.max_time), or null "
     "(Lightning's 1000 epochs)", null=True)
rule("trainer.check_val_every_n_epoch", int_at_least(1), "an integer >= 1, or null (validate by val_check_interval)",
     null=True)
rule("trainer.accumulate_grad_batches", int_at_least(1), "an integer >= 1")
TIMEDELTA_KEYS = {"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"}


def is_duration(value, two_digits: bool = True) -> bool:
    """'DD:HH:MM:SS' (Lightning's Timer wants two digits after the days, its validation interval any), or a
    mapping of timedelta's keys: what Lightning reads as a duration (timedelta(**mapping) raised a TypeError)."""
    if isinstance(value, str):
        return re.fullmatch(r"\d+:\d\d:\d\d:\d\d" if two_digits else r"\d+:\d+:\d+:\d+", value.strip()) is not None
    return isinstance(value, DictConfig) and len(value) > 0 and set(map(str, value.keys())) <= TIMEDELTA_KEYS and \
        all(is_number(amount) for amount in value.values())


rule("trainer.max_time", is_duration, "a duration 'DD:HH:MM:SS' (00:12:00:00: 12 hours), a mapping of weeks, days, "
     "hours, minutes or seconds ('{hours:12}'), or null (no time limit)", null=True)
rule("trainer.val_check_interval", lambda v: (is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1) or
     is_duration(v, two_digits=False), "an integer >= 1 (training batches between validations), a fraction of an "
     "epoch in (0, 1], a duration 'DD:HH:MM:SS' or a mapping such as '{minutes:30}' (time between validations), or "
     "null (at each epoch's end)", null=True)
rule("trainer.deterministic", lambda v: isinstance(v, bool) or v == "warn",
     "true, false, 'warn' or null (Lightning leaves any other value as if it were false)", null=True)
rule("data.batch_size", int_at_least(1), "an integer >= 1")
rule("data.num_workers", int_at_least(0), "an integer >= 0")
rule("model.optimizer.lr", positive, "a number > 0")
rule("model.optimizer.weight_decay", non_negative, "a number >= 0")
rule("model.optimizer.momentum", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
rule("optimized_mode", lambda v: v in ("max", "min"), "'max' or 'min' (whether a higher optimized_metric is better)")
rule("callbacks.early_stopping.patience", int_at_least(0), "an integer >= 0 (validations without improvement)",
     of="lightning.pytorch.callbacks.EarlyStopping")
rule("model.param_groups", lambda v: v in ("per_layer", "single"),
     "'per_layer' (one optimizer group per top-level layer) or 'single'",
     of="lightning_modules.classifier.ClassificationModule")


def each(check: Callable[[object], bool]) -> Callable[[object], bool]:
    """A number that passes ``check``, or a non-empty list of them."""
    return lambda value: (
        all(check(v) for v in value) and len(value) > 0 if isinstance(value, ListConfig | list) else check(value)
    )


is_bool = lambda value: isinstance(value, bool)
# train=no was truthy: a run meant to only test trained on
rule("train", is_bool, "true or false (false: the run only validates and tests ckpt_path)")
rule("test", is_bool, "true or false (false: no test after fitting)")
rule("task_name", lambda v: isinstance(v, str) and v.strip() != "" and "/" not in v and not v.startswith("."),
     "a folder's name (logs/<task_name>/runs/...; its log is <task_name>.log), without '/'")


def evaluate_task_names() -> list[str]:
    from evaluate import TASKS  # the entry point's registry; imported when a config names tasks

    return list(TASKS)


rule("evaluate_tasks", lambda v: isinstance(v, ListConfig | list) and all(t in evaluate_task_names() for t in v),
     "a list of evaluate.py's tasks (e.g. [table]), which a sweep's last lines print as commands, or null ([table])",
     null=True)

# ---- the datasets' arguments (datamodules/). Which splits a family has is checked by check_data_splits.
IN_MEMORY = "datamodules.base.InMemoryDataModule"
rule("data.val_fraction", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1) (0: no validation split)",
     of=IN_MEMORY)
rule("data.split_seed", is_seed, "an integer in [0, 2^32)", of=IN_MEMORY)
for _key in ("download", "grayscale", "flatten", "stratify"):
    rule(f"data.{_key}", is_bool, "true or false", of=IN_MEMORY)
rule("data.pad_to", int_at_least(1), "an integer >= the image size, or null", of=IN_MEMORY, null=True)
rule("data.pad_mode", lambda v: v in ("zeros", "wrap"), "'zeros' or 'wrap'", of=IN_MEMORY)
rule("data.mean", each(is_number), "a number or one number per channel", of=IN_MEMORY)
rule("data.std", each(positive), "a number or one number per channel, each > 0 (inputs are divided by it)",
     of=IN_MEMORY)
for _key in ("translate", "scale", "squeeze", "shear", "original_fraction"):  # their ranges: AffineDistortion
    rule(f"data.distortion.{_key}", is_number, "a number", of=IN_MEMORY)
DIGITS = "datamodules.digits.DigitsDataModule"
rule("data.test_fraction", open_unit_interval, "a number strictly between 0 and 1", of=DIGITS)
rule("data.image_size", int_at_least(1), "an integer >= 1", of=DIGITS)
MNIST = "datamodules.mnist.MNISTDataModule"
rule("data.train_part", lambda v: v in ("full", "P1", "P2"), "'full', 'P1' or 'P2'", of=MNIST)
rule("data.part_seed", is_seed, "an integer in [0, 2^32)", of=MNIST)
rule("data.train_size", int_at_least(1), "an integer >= 1, or null for the whole part", of=MNIST, null=True)
RANDOM = "datamodules.random.RandomImagesDataModule"
for _key in ("num_train", "num_test", "channels", "image_size"):
    rule(f"data.{_key}", int_at_least(1), "an integer >= 1", of=RANDOM)
LUNAR_LANDER = "datamodules.lunarlander.LunarLanderDataModule"
for _key, _low in (("rollouts", 1), ("steps_per_rollout", 1), ("image_size", 1), ("train_seed", 0), ("test_seed", 0)):
    rule(f"data.{_key}", int_at_least(_low), f"an integer >= {_low}", of=LUNAR_LANDER)
rule("data.label_observation", lambda v: v in ("before", "after"), "'before' or 'after' (the step)", of=LUNAR_LANDER)
rule("data.filter_offscreen", is_bool, "true or false", of=LUNAR_LANDER)
rule("data.progress", is_bool, "true or false", of=LUNAR_LANDER)
rule("data.generation_workers", int_at_least(1), "an integer >= 1, or null for one per CPU", of=LUNAR_LANDER,
     null=True)

# ---- adversarial training (callbacks/adversarial_training.py; its layers are checked against the network) ----
ADVERSARIAL_TRAINING = "callbacks.adversarial_training.AdversarialTraining"
for _key in ("pool_size", "refresh_every", "mix", "c_steps", "max_iter"):
    rule(f"callbacks.adversarial_training.{_key}", int_at_least(1), "an integer >= 1", of=ADVERSARIAL_TRAINING)
rule("callbacks.adversarial_training.refresh_fraction", lambda v: is_number(v) and 0 < v <= 1,
     "a number in (0, 1] (the share of each pool replaced at a refresh)", of=ADVERSARIAL_TRAINING)
rule("callbacks.adversarial_training.weight", non_negative, "a number >= 0", of=ADVERSARIAL_TRAINING)

# ---- forward-trained autoencoders (REAE, PIAN, RAN, ROAN; lightning_modules/forward_autoencoder.py) ----
FORWARD = "lightning_modules.forward_autoencoder.ForwardAutoencoderModule"
rule("model.feature_map", lambda v: v in ("reae", "pian", "ran", "roan"), "one of reae, pian, ran, roan", of=FORWARD)
rule("model.hidden_size", int_at_least(1), "an integer >= 1", of=FORWARD)
rule("model.init_scale", positive, "a number > 0", of=FORWARD)
rule("model.rho", each(open_unit_interval), "a number strictly between 0 and 1, or a list of such numbers", of=FORWARD)
rule("model.lambdas", each(non_negative), "a number >= 0, or a non-empty list of numbers >= 0", of=FORWARD)
rule("model.taus", each(non_negative), "a number >= 0, or a non-empty list of numbers >= 0", of=FORWARD)
rule("model.kl_lr", positive, "a number > 0", of=FORWARD)
for _key, _low in (("kl_steps", 0), ("kl_retries", 0), ("kl_batch_size", 1), ("max_iter", 1)):
    rule(f"model.{_key}", int_at_least(_low), f"an integer >= {_low}", of=FORWARD)

# ---- mutual-information learning rates (callbacks/mutual_information.py, callbacks/batch_size.py) ----
MI_LR = "callbacks.mutual_information.MutualInformationLR"
for _key, _choices in (("policy", ("relative_change", "reference", "none")), ("scope", ("network", "layer")),
                       ("norm", ("euclidean", "max")), ("reference", ("estimate", "ceiling", "tiled")),
                       ("estimator", ("ross", "ksg")), ("output", ("softmax", "logits"))):
    rule(f"callbacks.mi_lr.{_key}", lambda v, choices=_choices: v in choices,
         " or ".join(f"'{choice}'" for choice in _choices), of=MI_LR)
rule("callbacks.mi_lr.layers", lambda v: isinstance(v, ListConfig) and len(v) > 0,
     "a non-empty list of layer (optimizer group) names, or null for every named group", of=MI_LR, null=True)
for _key in ("lr_min", "lr_max", "mi_floor"):
    rule(f"callbacks.mi_lr.{_key}", positive, "a number > 0", of=MI_LR)
for _key in ("gamma1", "gamma2", "gamma3", "epsilon", "jitter"):
    rule(f"callbacks.mi_lr.{_key}", non_negative, "a number >= 0", of=MI_LR)
for _key, _low in (("sample_size", 2), ("k", 1), ("tiles", 1), ("batch_size", 1), ("value_only_from", 0),
                   ("value_only_epochs", 0)):
    rule(f"callbacks.mi_lr.{_key}", int_at_least(_low), f"an integer >= {_low}", of=MI_LR)
rule("callbacks.batch_size.milestones",
     lambda v: isinstance(v, DictConfig) and len(v) > 0 and all(is_int(e) and e >= 1 and is_int(s) and s >= 1
                                                                for e, s in v.items()),
     "a non-empty mapping {epoch >= 1: batch size >= 1}", of="callbacks.batch_size.BatchSizeSchedule")

# ---- LeNet-5 classic's schedule (lightning_modules/sdlm.py) ----
PIECEWISE = "lightning_modules.sdlm.PiecewiseConstantLR"
rule("model.scheduler.values", lambda v: isinstance(v, ListConfig) and len(v) > 0 and all(map(non_negative, v)),
     "a list of one or more learning rates >= 0, one per stretch of epochs (e.g. [0.0005,0.0002])", of=PIECEWISE)
rule("model.scheduler.epochs", lambda v: isinstance(v, ListConfig) and all(map(int_at_least(1), v)),
     "a list of epoch counts >= 1, how long each value but the last lasts (e.g. [2] for [0.0005,0.0002])",
     of=PIECEWISE)

# ---- Szegedy et al. model zoo (lightning_modules/szegedy.py) ----
SZEGEDY_NET = "lightning_modules.szegedy.SzegedyNet"
rule("model.net.kind", lambda v: v in ("softmax", "fc", "ae", "conv"), "one of softmax, fc, ae, conv", of=SZEGEDY_NET)
rule("model.net.hidden", lambda v: isinstance(v, ListConfig) and all(int_at_least(1)(units) for units in v),
     "a list of layer widths, each an integer >= 1", of=SZEGEDY_NET)
rule("model.net.weight_decay", each(non_negative), "a number >= 0, or one number >= 0 per layer", of=SZEGEDY_NET)
rule("model.net.dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)", of=SZEGEDY_NET)
rule("model.pretrain_epochs", int_at_least(0), "an integer >= 0", of="lightning_modules.szegedy.SzegedyModule")

# ---- feature-prediction autoencoders (seed 003; lightning_modules/perceptual_autoencoder.py) ----
rule("model.procedure", lambda v: isinstance(v, str) and v in PROCEDURES, f"one of {', '.join(PROCEDURES)}",
     of=PERCEPTUAL)
rule("model.latent_dim", int_at_least(1), "an integer >= 1", of=PERCEPTUAL)
rule("model.feature_hidden_max", int_at_least(1), "an integer >= 1", of=PERCEPTUAL)
rule("model.gamma", non_negative, "a number >= 0 (0: not variational)", of=PERCEPTUAL)
rule("model.input_size", lambda v: is_int(v) and v >= 64 and (v - 64) % 16 == 0,
     "a side of 64 + 16N (64, 80, 96, ...): the four-layer (V)AE's input; SVHN: data.pad_to=64", of=PERCEPTUAL)
rule("model.loss_network.weights", lambda v: v in ("imagenet", "random") or Path(str(v)).is_file(),
     "'imagenet', 'random' or an existing checkpoint file with AlexNet-shaped features", of=PERCEPTUAL)
PROBE = "callbacks.embedding_probe.EmbeddingProbe"
rule("callbacks.probe.task", lambda v: v in ("regression", "classification"), "'regression' or 'classification'",
     of=PROBE)
rule("callbacks.probe.max_epochs", int_at_least(1), "an integer >= 1", of=PROBE)
rule("callbacks.probe.patience", int_at_least(1), "an integer >= 1", of=PROBE)
rule("callbacks.probe.grid", lambda v: isinstance(v, ListConfig) and len(v) > 0 and all(
    isinstance(widths, ListConfig) and all(map(int_at_least(1), widths)) for widths in v),
     "a non-empty list of hidden-layer width lists, each width an integer >= 1 ([] for a linear probe)", of=PROBE)

# ---- loggers (conf/logger/): what wandb.init refuses with a traceback, or takes and misreads ----
WANDB = "lightning.pytorch.loggers.wandb.WandbLogger"
wandb_name = lambda v: isinstance(v, str) and v.strip() != "" and not set(v) & set("/\\#?%:")  # wandb's rule
rule("tags", lambda v: isinstance(v, ListConfig) and all(isinstance(tag, str) and 0 < len(tag) <= 64 for tag in v),
     "a list of words of 1-64 characters (wandb's limit), e.g. tags=[baseline,lr_sweep] ([] or null for none)",
     null=True)
rule("logger.wandb.project", lambda v: wandb_name(v) and len(v) <= 128,
     "a name of at most 128 characters without / \\ # ? % :, or null (wandb's default)", of=WANDB, null=True)
rule("logger.wandb.id", wandb_name, "a run id without / \\ # ? % :, or null (the run directory's own id)", of=WANDB,
     null=True)
rule("logger.wandb.resume", lambda v: v in ("allow", "must", "never", "auto"),
     "one of allow, must, never, auto, or null (wandb's default)", of=WANDB, null=True)
rule("logger.wandb.offline", lambda v: isinstance(v, bool), "true or false, or null (false)", of=WANDB, null=True)
rule("logger.wandb.log_model", lambda v: v is True or v is False or v == "all", "true, false or 'all', or null (false)",
     of=WANDB, null=True)
WANDB_MODES = ("online", "offline", "shared", "disabled", "dryrun", "run")  # wandb.Settings' mode (tested)
rule("logger.wandb.mode", lambda v: v in WANDB_MODES, f"one of {', '.join(WANDB_MODES)} (offline: no network), or "
     f"null (WANDB_MODE's, else online)", of=WANDB, null=True)
rule("logger.wandb.save_dir", lambda v: not Path(str(v)).is_file(), "a folder, not a file (wandb would write "
     "elsewhere)", of=WANDB)

# ---- evaluate.py's study options (conf/evaluate.yaml) ----
is_name = lambda v: isinstance(v, str) or is_int(v)  # Hydra reads metrics=3 (a metric named 3) as a number
names_or_a_name = lambda v: is_name(v) or (isinstance(v, ListConfig) and all(map(is_name, v)))
rule("group_by", names_or_a_name, "a list of dotted config keys (group_by=[model.optimizer.lr,seed]) or one key, "
     "or null (every key the runs' command lines set, but seed and those that say how a run ran)", null=True)
rule("metrics", names_or_a_name, "a list of metric names as results.json holds them (metrics=[test/acc,val/acc]) or "
     "one name, or null (test/acc and val/acc where the runs have them)", null=True)
rule("szegedy.examples", int_at_least(1), "an integer >= 1 (images attacked per model)")
rule("szegedy.c_steps", int_at_least(1), "an integer >= 1")
rule("szegedy.batch_size", int_at_least(1), "an integer >= 1")
rule("szegedy.layer", int_at_least(0), "an integer >= 0 (0: the first hidden layer)")
rule("szegedy.device", lambda v: v in ("auto", "cpu") or str(v).startswith("cuda"), "'auto', 'cpu' or 'cuda'")
rule("mi_sample_size.sizes", lambda v: isinstance(v, ListConfig) and len(v) > 0 and all(int_at_least(20)(n) for n in v),
     "a non-empty list of sample sizes, each an integer >= 20 (two images of each of the 10 classes at least)")
rule("mi_sample_size.draws", int_at_least(1), "an integer >= 1")
rule("mi_sample_size.estimator", lambda v: v in ("ross", "ksg"), "'ross' or 'ksg'")


def _targets(node, prefix: str = ""):
    """Yield (dotted key, value) for every ``_target_`` in the config."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            child_key = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_":
                yield child_key, node._get_node(key)._value()
            else:
                yield from _targets(node._get_node(key), child_key)
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            yield from _targets(item, f"{prefix}[{index}]")


def check_missing_values(cfg: DictConfig) -> None:
    """Every value must resolve: no mandatory ``???`` left unset, no ``${...}`` that points nowhere."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        raise ConfigError(f"Config key '{error.full_key}' has no value (??? in the config); give it on the command "
                          f"line, e.g. {error.full_key}=<value>.") from None
    except InterpolationResolutionError as error:
        cause = error.__context__  # a resolver's own sentence (framework/metric_mode.py) ends the chain
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__context__
        if cause is not None:
            raise cause from None
        message = str(error).splitlines()[0]
        missing = re.fullmatch(r"Interpolation key '([^']+)' not found", message)
        choice = missing and group_chosen_on_command_line(missing.group(1).split(".")[0])
        if choice:  # experiment=perceptual_lunarlander data=mnist: its probe reads LunarLander's ${data.rollouts}
            experiment = HydraConfig.get().runtime.choices.get("experiment")
            written_for = f": experiment={experiment} was written for another one" if experiment else ""
            raise ConfigError(f"Config key '{error.full_key}' reads ${{{missing.group(1)}}}, which {choice} does not "
                              f"have{written_for}; leave out {choice}, or give {error.full_key} a value.") from None
        raise unresolvable_error(error, error.full_key) from None


def group_chosen_on_command_line(group: str) -> str | None:
    """``data=mnist`` when the command line chose config group ``group`` (else None)."""
    if not HydraConfig.initialized():
        return None
    for override in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False):  # as typed: ${...} too
        name, _, value = override.lstrip("+").partition("=")
        if name == group:
            return f"{group}={value}"
    return None


@functools.cache
def _is_subclass(target: str, of: str) -> bool:
    try:
        cls, owner = get_object(target), get_object(of)
    except Exception:  # a target that does not import: validate() says so in its own sentence
        return False
    return isinstance(cls, type) and issubclass(cls, owner)


def _belongs(cfg: DictConfig, key: str, of: str) -> bool:
    """Whether the nearest node above ``key`` that has a ``_target_`` targets ``of`` or a subclass."""
    parts = key.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        target = lookup(cfg, ".".join(parts[:depth]) + "._target_")
        if isinstance(target, str):
            return _is_subclass(target, of)
    return False


def check_rules(cfg: DictConfig, keys: tuple[str, ...] | None = None) -> None:
    """Every :func:`rule` whose key the config has (train.py's and evaluate.py's configs alike), or those of
    ``keys``."""
    for item in RULES if keys is None else [item for item in RULES if item.key in keys]:
        value = lookup(cfg, item.key)
        if value is ABSENT or value is None and item.null or (item.of and not _belongs(cfg, item.key, item.of)):
            continue
        if not item.check(value):
            parent, _, name = item.key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            source = f" (read from {node._get_node(name)._value()}: change the value there)" if isinstance(
                node, DictConfig) and OmegaConf.is_interpolation(node, name) else ""
            raise ConfigError(f"Config key '{item.key}' is {shown(value)}{source}, but it must be {item.allowed}.")


def check_arguments(of: str, arguments: dict[str, object]) -> None:
    """The rules about the arguments of ``of`` (a dotted class path), applied to a call of its constructor: one made in
    Python, or from a config key of another name than the rules' (``callbacks.mi.k: 0``), gets their sentence."""
    values = OmegaConf.create({name: value for name, value in arguments.items() if value is not None})
    for item in RULES:
        name = item.key.rpartition(".")[2]
        if item.of == of and name in values and not item.check(values[name]):
            raise ConfigError(f"{of.rpartition('.')[2]}: {name}={arguments[name]!r}, but it must be {item.allowed}.")


def check_one_checkpoint(ckpt_path) -> None:
    """``ckpt_path=[a.ckpt,b.ckpt]``: a run continues or tests one checkpoint."""
    if ckpt_path is not None and ckpt_path is not ABSENT and not isinstance(ckpt_path, str):
        shown = OmegaConf.to_container(ckpt_path) if isinstance(ckpt_path, ListConfig | DictConfig) else ckpt_path
        raise ConfigError(f"Config key 'ckpt_path' is {shown!r}, but a run continues or tests one checkpoint: give "
                          f"one file, auto or null, or one job per checkpoint with -m ckpt_path=<file>,<file>.")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first value that is not allowed."""
    check_required_groups(cfg)
    check_missing_values(cfg)
    check_rules(cfg)
    ckpt_path = lookup(cfg, "ckpt_path")
    check_one_checkpoint(ckpt_path)
    if ckpt_path not in (ABSENT, None, "auto", "last", "hpc"):
        given = Path(str(ckpt_path))
        if given.is_dir():
            run_dir = given.parent if given.name == "checkpoints" else given
            files = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda file: file.name != "last.ckpt")
            example = files[0] if files else run_dir / "checkpoints" / "last.ckpt"
            raise ConfigError(f"Config key 'ckpt_path' is the directory {str(given)!r}; give a checkpoint file (e.g. "
                              f"ckpt_path={example}), or ckpt_path=auto with hydra.run.dir={run_dir} to resume that "
                              f"run.")
        if ckpt_path == "best" and not given.is_file():
            raise ConfigError("Config key 'ckpt_path' is 'best', Lightning's word for the weights to test after "
                              "fitting, which a run picks by itself (its best checkpoint when one is kept, else its "
                              "last weights); ckpt_path names the weights to continue from (with train=false, to "
                              "test): a checkpoint file, 'auto' or 'last' (this run's last.ckpt if present), or null.")
        if not given.is_file():
            raise ConfigError(
                f"Config key 'ckpt_path' is {ckpt_path!r}, but no such file exists; give an existing "
                f"checkpoint file, 'auto' or 'last' (this run's last.ckpt if present), or null."
            )
    for key, target in _targets(cfg):
        try:
            get_object(str(target))
        except Exception as error:  # ImportError, AttributeError, ValueError from Hydra
            package = str(target).split(".")[0]
            if package and importlib.util.find_spec(package) is None:
                raise ConfigError(f"Config key '{key}' is {target!r}, but no module {package!r} is on Python's path; "
                                  f"put the folder that holds {package} on PYTHONPATH (PYTHONPATH=<folder> python "
                                  f"train.py ...), or fix the dotted path.") from None
            if hidden := hidden_module(package):
                raise ConfigError(f"Config key '{key}' is {target!r}, but the framework's package {package!r} "
                                  f"({ROOT / package}) comes first on Python's path and hides your {hidden}; rename "
                                  f"your module (e.g. my_{package}) and its dotted paths.") from None
            if lacking := name_lacking(str(target)):
                owner, name, close = lacking
                hint = f" (the closest: {', '.join(close)})" if close else ""
                raise ConfigError(f"Config key '{key}' is {target!r}, but {owner} has no {name}{hint}; fix its "
                                  f"spelling.") from None
            raise ConfigError(
                f"Config key '{key}' is {target!r}, which cannot be imported ({type(error).__name__}); "
                f"give the full dotted path of an existing class or function."
            ) from None
    check_data_splits(cfg)
    check_group_entries_have_targets(cfg)
    check_accelerator(cfg)
    check_default_root_dir(cfg)
    check_barebones(cfg)
    check_validation_monitor(cfg)
    check_early_stopping_has_a_metric(cfg)
    check_nested_groups_chosen_with_a_slash(cfg)
    check_no_chosen_config_is_shadowed()
    check_partial_arguments(cfg)
    check_logger_keywords(cfg)
    check_sdlm_has_its_hessian(cfg)
    check_no_learning_rate_finder_on_the_frameworks_modules(cfg)
    check_lightning_argument_types(cfg)


def name_lacking(target: str) -> tuple[str, str, list[str]] | None:
    """For a dotted path whose module imports but lacks the next name (torch.optim.Adamw): that module (or class),
    the name, and the closest names it has."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = get_object(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not importable this far: try a shorter prefix
            continue
        if hasattr(owner, parts[cut]):
            return None  # it is there, and fails to import for another reason (an error inside the module)
        names = {name for name in dir(owner) if not name.startswith("_")}
        if hasattr(owner, "__path__"):  # a package: its modules too, imported or not
            names |= {module.name for module in pkgutil.iter_modules(owner.__path__)}
        names = sorted(names)
        close = [name for name in names if name.lower() == parts[cut].lower()] or \
            difflib.get_close_matches(parts[cut], names, n=3)
        return ".".join(parts[:cut]), parts[cut], close
    return None


def hidden_module(package: str) -> str | None:
    """A module or package named ``package`` further along Python's path than the repository's own of that name
    (``callbacks``, ``datamodules``, ...), which the import of a user's ``callbacks.Mine`` never reaches."""
    found = importlib.util.find_spec(package)
    own = {ROOT / package / "__init__.py", ROOT / f"{package}.py"}  # not what a .venv inside the repository holds
    if found is None or not found.origin or Path(found.origin).resolve() not in own:
        return None
    for entry in sys.path:
        if Path(entry or ".").resolve() != ROOT and (other := PathFinder.find_spec(package, [entry])) and other.origin:
            return other.origin.removesuffix(f"{os.sep}__init__.py")
    return None


def check_default_root_dir(cfg: DictConfig) -> None:
    """Every file of a run goes to its output directory (checkpoints, loggers, results.json), which Lightning's
    ``default_root_dir`` follows; set elsewhere, it would hold nothing."""
    root, output = lookup(cfg, "trainer.default_root_dir"), lookup(cfg, "paths.output_dir")
    if root not in (ABSENT, None) and output not in (ABSENT, None) and \
            Path(str(root)).resolve() != Path(str(output)).resolve():
        raise ConfigError(f"Config key 'trainer.default_root_dir' is {str(root)!r}, but a run writes every file into "
                          f"its output directory ({output}); choose that with hydra.run.dir={root} (a sweep: "
                          f"hydra.sweep.dir), and leave trainer.default_root_dir as it is.")


def check_barebones(cfg: DictConfig) -> None:
    """Lightning's barebones Trainer refuses loggers, callbacks and a logging interval one at a time, the last two
    set by our own defaults: all that ``trainer.barebones=true`` needs, in one sentence."""
    if lookup(cfg, "trainer.barebones") is not True:
        return
    needed = [override for override, present in (
        ("logger=none", bool(lookup(cfg, "logger") not in (ABSENT, None) and len(cfg.logger))),
        ("callbacks=none", bool(lookup(cfg, "callbacks") not in (ABSENT, None) and len(cfg.callbacks))),
        ("trainer.log_every_n_steps=null", lookup(cfg, "trainer.log_every_n_steps") not in (ABSENT, None)),
        *((f"trainer.{key}=false", lookup(cfg, f"trainer.{key}") is True)
          for key in ("enable_checkpointing", "enable_progress_bar", "enable_model_summary"))) if present]
    if needed:
        raise ConfigError(f"Config key 'trainer.barebones' is true, and Lightning's barebones Trainer runs without "
                          f"loggers, callbacks (checkpoints included) and their settings; add {' '.join(needed)}.")


def check_lightning_argument_types(cfg: DictConfig) -> None:
    """Lightning's Trainer, callbacks and loggers take their arguments as given and meet a mistyped one only where
    they first use it: a traceback when fitting starts (``trainer.log_every_n_steps=abc``,
    ``callbacks.progress_bar.refresh_rate=null``), after training (``trainer.min_epochs=abc`` once early stopping
    fires) or never (``trainer.min_steps=abc``). Their annotations are exact, so they are checked before any work
    (a key with a rule of its own has been judged by it); a class of the user's own is judged by its annotations
    only once its construction failed."""
    nodes = [("trainer", lookup(cfg, "trainer"))]
    for group in ("callbacks", "logger"):
        if isinstance(options := lookup(cfg, group), DictConfig):
            nodes += [(f"{group}.{name}", node) for name, node in options.items()]
    ruled = {rule.key for rule in RULES}
    for key, node in nodes:
        if isinstance(node, DictConfig) and has_lightnings_constructor(node.get("_target_")) and \
                (mistyped := mistyped_argument_error(node, key, judged=ruled)):
            raise mistyped


def check_accelerator(cfg: DictConfig) -> None:
    """``trainer.accelerator=gpu`` on a machine without one, or more GPUs asked for than it has: say so
    before Lightning raises deep inside."""
    accelerator = lookup(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"Config key 'trainer.accelerator' is {accelerator!r}, but this machine has no usable GPU; "
                f"run with trainer=cpu (or trainer=ddp_sim for DDP on CPU processes)."
            )
        devices, available = lookup(cfg, "trainer.devices"), torch.cuda.device_count()
        if isinstance(devices, int) and devices > available:
            raise ConfigError(
                f"Config key 'trainer.devices' is {devices}, but this machine has {available} usable GPU"
                f"{'s' if available > 1 else ''}; give trainer.devices={available} or fewer (-1: all of them)."
            )


def check_study_device(cfg: DictConfig) -> None:
    """evaluate.py's ``szegedy.device=cuda`` on a machine without a GPU."""
    device = lookup(cfg, "szegedy.device")
    if isinstance(device, str) and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"Config key 'szegedy.device' is {device!r}, but this machine has no usable GPU; give "
                              f"szegedy.device=cpu (or auto: the GPU where there is one).")


def check_validation_monitor(cfg: DictConfig) -> None:
    """Without validation no callback may monitor a val/ metric (checkpointing, early stopping)."""
    watchers = {name: node.get("monitor") for name, node in (cfg.get("callbacks") or {}).items()
                if isinstance(node, DictConfig) and str(node.get("monitor")).startswith("val/")}
    if not watchers:
        return
    optimized, by_metric, fixes = lookup(cfg, "optimized_metric"), defaultdict(list), []
    for name, metric in watchers.items():
        by_metric[metric].append(f"callbacks.{name}")
        fixes.append("callbacks.early_stopping=null" if name == "early_stopping" else  # it needs a metric
                     "optimized_metric=null" if metric == optimized else f"callbacks.{name}.monitor=null")
    watched = " and ".join(f"{' and '.join(names)} monitor{'s' * (len(names) == 1)} {metric!r}"
                           + (" (optimized_metric)" if metric == optimized else "")
                           for metric, names in by_metric.items())
    remedy = "set " + " and ".join(dict.fromkeys(fixes))
    for key, meaning, allow in (("data.val_fraction", "no validation split", "give a validation fraction"),
                                ("trainer.limit_val_batches", "no validation batches", "allow validation batches")):
        if lookup(cfg, key) == 0:
            raise ConfigError(f"Config key '{key}' is 0 ({meaning}), but {watched}; {remedy}, or {allow}.")
    every, epochs = lookup(cfg, "trainer.check_val_every_n_epoch"), lookup(cfg, "trainer.max_epochs")
    if is_int(every) and is_int(epochs) and 0 < epochs < every:
        raise ConfigError(f"Config key 'trainer.check_val_every_n_epoch' is {every}, more than trainer.max_epochs "
                          f"({epochs}), so no validation runs, but {watched}; {remedy}, or validate at least once "
                          f"(trainer.check_val_every_n_epoch={epochs}).")


def check_early_stopping_has_a_metric(cfg: DictConfig) -> None:
    """Early stopping needs a metric to watch: optimized_metric, or a monitor of its own."""
    node = lookup(cfg, "callbacks.early_stopping")
    if not (isinstance(node, DictConfig) and "_target_" in node and node.get("monitor") is None):
        return
    if lookup(cfg, "optimized_metric") is None:
        raise ConfigError("Config key 'optimized_metric' is null, but early stopping monitors it; leave early stopping "
                          "out with callbacks.early_stopping=null, or name a metric (e.g. optimized_metric=val/acc).")
    raise ConfigError("Config key 'callbacks.early_stopping.monitor' is null, but early stopping needs a metric to "
                      "watch; leave early stopping out with callbacks.early_stopping=null, or name a metric (e.g. "
                      "callbacks.early_stopping.monitor=val/loss).")


def check_no_learning_rate_finder_on_the_frameworks_modules(cfg: DictConfig) -> None:
    """Lightning's LearningRateFinder sets a model attribute ``lr`` from a search at every fit's start: the framework's
    modules have none (a traceback), and build their optimizer from model.optimizer, whose learning rate results.json
    records and a continued run keeps."""
    model = str(lookup(cfg, "model._target_"))
    callbacks = lookup(cfg, "callbacks")
    if not model.startswith("lightning_modules.") or not isinstance(callbacks, DictConfig):
        return
    from lightning.pytorch.callbacks import LearningRateFinder

    for name, node in callbacks.items():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        found = get_object(str(target)) if target else None
        if isinstance(found, type) and issubclass(found, LearningRateFinder):
            raise ConfigError(f"Config key 'callbacks.{name}._target_' is {target!r}, which sets the model's learning "
                              f"rate at each fit's start, but the framework's modules take it from "
                              f"model.optimizer.lr (which results.json records and a continued run keeps); compare "
                              f"learning rates with a sweep instead (python train.py -m "
                              f"model.optimizer.lr=0.01,0.03,0.1).")


def check_sdlm_has_its_hessian(cfg: DictConfig) -> None:
    """SDLM steps by the Hessian diagonal that the HessianEstimation callback estimates before every epoch; the
    callback estimates it for SDLM (or a subclass) only, and beside another optimizer would do nothing."""
    optimizer = lookup(cfg, "model.optimizer._target_")
    if not isinstance(optimizer, str):
        return
    callbacks = lookup(cfg, "callbacks")
    estimating = [key for key, node in (callbacks.items() if isinstance(callbacks, DictConfig) else ())
                  if isinstance(node, DictConfig) and isinstance(node.get("_target_"), str)
                  and _is_subclass(node.get("_target_"), "callbacks.hessian_estimation.HessianEstimation")]
    sdlm = _is_subclass(optimizer, "lightning_modules.sdlm.SDLM")
    if sdlm and not estimating:
        raise ConfigError("Config key 'model.optimizer._target_' is SDLM, which steps by a Hessian diagonal that no "
                          "callback estimates; add callbacks=sdlm (or the HessianEstimation callback to yours).")
    if estimating and not sdlm:
        raise ConfigError(f"Config key 'callbacks.{estimating[0]}' estimates the Hessian diagonal that the SDLM "
                          f"optimizer steps by, but model.optimizer._target_ is {optimizer!r}, which does not use it; "
                          f"choose model=lenet5_classic_sdlm (SDLM), or callbacks=default.")


def check_nested_groups_chosen_with_a_slash(cfg: DictConfig) -> None:
    """``model.optimizer=adam`` replaces the optimizer's config by the string 'adam'. Where the model takes its
    optimizer from the nested group conf/model/optimizer/, an option is chosen with a slash
    (``model/optimizer=adam``); elsewhere the optimizer is the model's own config, changed key by key."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    for folder in sorted(path for path in CONF.glob("*/*") if path.is_dir()):
        group = folder.relative_to(CONF).as_posix()
        key, value = group.replace("/", "."), lookup(cfg, group.replace("/", "."))
        if not isinstance(value, str):
            continue
        if group in choices:
            options = ", ".join(sorted(path.stem for path in folder.glob("*.yaml")))
            raise ConfigError(f"Config key '{key}' is {value!r}, but it holds a config of the group {group}; "
                              f"choose one with {group}={value} (one of: {options}).")
        raise ConfigError(f"Config key '{key}' is {value!r}, but it holds a config, and this model does not take "
                          f"it from the group {group}; set {key}._target_ (a class path) and its arguments "
                          f"({key}.<argument>=<value>, ~{key}.<argument> to remove one).")


def users_config_folders() -> list[Path]:
    """The config folders of one's own that this run reads (``hydra.searchpath``, ``--config-dir``/``-cd``)."""
    if not HydraConfig.initialized():
        return []
    hydra_cfg = HydraConfig.get()
    start = Path(hydra_cfg.runtime.cwd)
    folders = [start / str(entry).removeprefix("file://") for entry in hydra_cfg.searchpath
               if str(entry).startswith("file://")]
    folders += [Path(source.path) for source in hydra_cfg.runtime.get("config_sources", [])
                if source.schema == "file" and source.provider == "command-line"]  # --config-dir
    return list(dict.fromkeys(folders))


def check_no_chosen_config_is_shadowed() -> None:
    """A user's config folder (on ``hydra.searchpath``, or given with ``--config-dir``/``-cd``) with a file named like
    one of conf/'s (``model/lenet5.yaml``): Hydra reads conf/'s, which comes first on its search path, so the run would
    silently use the built-in one."""
    if not HydraConfig.initialized():
        return
    choices = HydraConfig.get().runtime.choices
    shadowed = []  # (your file, group, option)
    for folder in users_config_folders():
        for group, option in choices.items():
            yours, ours = folder / group / f"{option}.yaml", CONF / group / f"{option}.yaml"
            if option and yours.is_file() and ours.is_file() and yours.resolve() != ours.resolve():
                shadowed.append((yours, group, option))
    if shadowed:
        _, group, option = shadowed[0]
        files = " and ".join(f"{file} (conf/{g}/{o}.yaml)" for file, g, o in shadowed)
        named = "s {} have the names of built-in ones" if len(shadowed) > 1 else " {} has the name of a built-in one"
        raise ConfigError(f"The config file{named.format(files)}, which Hydra reads instead (conf/ comes first on "
                          f"its search path); rename yours, e.g. "
                          f"{group}/my_{option}.yaml, and choose it with {group}=my_{option}.")


def arguments_not_taken(node, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(key, class name) for each key of a ``_partial_`` node (an optimizer, a scheduler) that its target does not
    take. Such a node is called only once training starts, so this is checked before then."""
    if isinstance(node, DictConfig) and node.get("_partial_") is True and isinstance(node.get("_target_"), str):
        parameters = parameters_of(node._target_)  # none to read: left to the call
        if parameters and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            yield from ((f"{prefix}.{name}", node._target_.rsplit(".", 1)[-1]) for name in node.keys()
                        if not str(name).startswith("_") and name not in parameters)
    if isinstance(node, DictConfig):
        for name in node.keys():
            yield from arguments_not_taken(node._get_node(name), f"{prefix}.{name}" if prefix else str(name))


def keywords_receiver(logger_target: str) -> tuple[str, Callable] | None:
    """The callable to which a Lightning logger passes the keys its own signature lacks (its ``**kwargs``), and
    its name: wandb.init for WandbLogger, TensorBoard's SummaryWriter for TensorBoardLogger (Lightning's choice of
    the two SummaryWriters)."""
    name, lightnings = logger_target.rsplit(".", 1)[-1], logger_target.split(".")[0].endswith("lightning")
    if name == "WandbLogger" and lightnings:
        import wandb

        return "wandb.init", wandb.init
    if name == "TensorBoardLogger" and lightnings:
        from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE

        if _TENSORBOARD_AVAILABLE:
            from torch.utils.tensorboard import SummaryWriter
        else:
            from tensorboardX import SummaryWriter
        return "SummaryWriter", SummaryWriter
    return None


def check_logger_keywords(cfg: DictConfig) -> None:
    """``+logger.wandb.entity=lab`` reaches wandb.init through WandbLogger's ``**kwargs``; a key that neither takes
    (``+logger.wandb.entitiy=lab``) was a TypeError traceback once training began."""
    loggers = lookup(cfg, "logger")
    for name, node in (loggers.items() if isinstance(loggers, DictConfig) else ()):
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if not isinstance(target, str) or (receiver := keywords_receiver(target)) is None:
            continue
        receiver_name, receiver_callable = receiver
        received = inspect.signature(receiver_callable).parameters
        if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in received.values()):
            continue  # it takes any key
        taken = set(parameters_of(target)) | set(received)
        for key in (str(key) for key in node.keys() if not str(key).startswith("_")):
            if key not in taken:
                close = difflib.get_close_matches(key, sorted(taken), n=3)
                hint = f" (the closest: {', '.join(close)})" if close else ""
                owner = target.rsplit(".", 1)[-1]
                raise ConfigError(f"Config key 'logger.{name}.{key}' is an argument of neither {owner} nor "
                                  f"{receiver_name}, to which {owner} passes the keys it does not take{hint}; remove "
                                  f"it with ~logger.{name}.{key}, or fix its spelling.")


def check_partial_arguments(cfg: DictConfig) -> None:
    """``model.optimizer._target_=torch.optim.Adam`` keeps SGD's momentum: named, all at once."""
    if leftovers := list(arguments_not_taken(cfg)):
        raise ConfigError(arguments_not_taken_sentence(leftovers))


def arguments_not_taken_sentence(leftovers: list[tuple[str, str]]) -> str:
    """One sentence naming every key that the first of ``leftovers``' classes does not take, and the remedy."""
    owner = leftovers[0][1]
    keys = [key for key, of in leftovers if of == owner]
    names, removals = ", ".join(f"'{key}'" for key in keys), " ".join(f"~{key}" for key in keys)
    if len(keys) == 1:
        return f"Config key {names} is not an argument of {owner}; remove it with {removals} or fix its spelling."
    return f"Config keys {names} are not arguments of {owner}; remove them with {removals} or fix their spelling."


def check_data_splits(cfg: DictConfig) -> None:
    """``data.train_split`` / ``data.test_split`` must be splits the chosen dataset family has."""
    target = lookup(cfg, "data._target_")
    splits = getattr(get_object(str(target)), "splits", None) if target not in (ABSENT, None) else None
    for key in ("train_split", "test_split"):
        value = lookup(cfg, f"data.{key}")
        if splits and value not in (ABSENT, None) and value not in splits:
            raise ConfigError(
                f"Config key 'data.{key}' is {value!r}, but {str(target).rsplit('.', 1)[-1]} has the splits "
                f"{', '.join(splits)}; choose one of them."
            )


def check_required_groups(cfg: DictConfig) -> None:
    """Every run trains one model on one dataset with one trainer: a group removed with ``~data``, or given a list of
    options (``model=[lenet5,szegedy]``, which Hydra merges into one config) is one sentence."""
    typed = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False) if HydraConfig.initialized() \
        else []  # as typed: data.batch_size=${nope} is the sentence of its own check
    groups_typed = [word for word in typed if re.match(r"[+~]*(data|model|trainer)=\[", word)]
    for override in OverridesParser.create().parse_overrides(groups_typed):
        if isinstance(chosen := override.value(), list) and len(chosen) > 1:
            group, options = override.key_or_group, [str(option) for option in chosen]
            raise ConfigError(f"Config group '{group}' is given the options {', '.join(options)}, which Hydra merges "
                              f"into one config, but a run has one {group}; choose one, or run one job each with -m "
                              f"{group}={','.join(options)}.")
    for group in ("data", "model", "trainer"):
        node = lookup(cfg, group)
        if not isinstance(node, DictConfig) or "_target_" not in node:  # debug=fdr alone leaves trainer a few keys
            chosen = HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None
            files = [file for folder in [*users_config_folders(), CONF]
                     if (file := folder / group / f"{chosen}.yaml").is_file()] if chosen else []
            if files and "_target_" not in (OmegaConf.load(files[0]) or {}):  # not ~model._target_ on the command line
                raise ConfigError(f"Config group '{group}' is {chosen}, whose file {files[0]} names no class at its "
                                  f"top level (_target_), and every run needs one; give the file a _target_: line "
                                  f"(keys under a '{group}:' line sit one level too deep: remove that level).")
            options = sorted({path.stem for folder in [CONF, *users_config_folders()]
                              for path in (folder / group).glob("*.yaml")})
            raise ConfigError(f"Config group '{group}' names no class (_target_; removed with ~{group}?), and every "
                              f"run needs one; choose one of {', '.join(options)} with {group}=<option>.")


def check_group_entries_have_targets(cfg: DictConfig) -> None:
    """Options for a callback or logger that is not there (``lr_policy=layerwise`` without ``callbacks=mi_lr``)."""
    for group in ("callbacks", "logger"):
        entries = lookup(cfg, group)
        for name, node in entries.items() if isinstance(entries, DictConfig) else ():
            if isinstance(node, DictConfig) and "_target_" not in node:
                defining = [path.stem for path in sorted((CONF / group).glob("*.yaml"))
                            if name in (OmegaConf.load(path) or {})]
                add = " or ".join(f"{group}={option}" for option in defining) or \
                    f"+{group}.{name}._target_=<its class, e.g. mymodule.MyCallback>"
                raise ConfigError(
                    f"Config key '{group}.{name}' sets {', '.join(map(str, node.keys()))} but names no {group} "
                    f"(_target_); add the {group} (e.g. {add}) or remove these options."
                )

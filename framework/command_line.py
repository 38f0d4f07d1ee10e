"""Hydra's refusals of a command line, as one sentence each (:func:`hydra_refusal`).

Hydra refuses an unknown group option, a key that is not in the config, an override it cannot parse, a group
chosen twice, ... with several lines, its search path, and sometimes a remedy that the next command refuses too.
Each becomes one ConfigError naming the key or group, the value and the remedy, found from ``sys.argv`` and the
config files in conf/ (and the user's folders of configs).
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import hydra._internal.utils as hydra_internals
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    ValidationError,
)

from framework.compose import CONF
from framework.errors import ConfigError, one_line, shown


def _multirun() -> bool:
    return bool({"-m", "--multirun"} & set(sys.argv[1:]))


def _sweeps_a_group(config: DictConfig | None) -> bool:
    """Does this sweep run over a config group (``data=digits,mnist``, ``experiment=a,b``, or a group in the
    ``hydra.sweeper.params`` of ``config``)? Then it starts from a config that lacks a job's options; where it sweeps
    values alone, it starts from every job's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    typed = [arg for arg in sys.argv[1:] if not arg.startswith("-") and ("=" in arg or arg.startswith("~"))]
    try:  # (not a flag's value: --config-dir conf)
        overrides = OverridesParser.create().parse_overrides(typed)
    except Exception:  # noqa: BLE001 - Hydra refuses the command line with its own sentence
        return True
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) if config is not None else None
    swept = [override.key_or_group for override in overrides if override.is_sweep_override()]
    return any((CONF / name.lstrip("+~")).is_dir() for name in [*swept, *(params or {})])


def _config_keys(node, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config (interpolations left unresolved)."""
    for key in node.keys() if isinstance(node, DictConfig) else ():
        yield f"{prefix}{key}"
        yield from _config_keys(node._get_node(key), f"{prefix}{key}.")


def _closest_keys(config: DictConfig, key: str) -> list[str]:
    """The existing keys the user may have meant by ``key``: the same name elsewhere, then similar spellings."""
    keys = [k for k in _config_keys(config) if (key.startswith("hydra.") or not k.startswith("hydra."))
            and not key.startswith(f"{k}.")]  # not the node the key is below
    same_name = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    return list(dict.fromkeys(same_name + difflib.get_close_matches(key, keys, n=3, cutoff=0.7)))[:5]


def _arguments_the_added_group_leaves(added: str) -> list[tuple[str, str]]:
    """The keys that ``+<added>`` (``model/optimizer=adam`` on a model whose optimizer config is its own) would leave
    in the node it merges into that the option's class does not take: composed with the rest of the command line,
    so that one sentence gives the whole remedy. Nothing where that does not compose."""
    from hydra import compose

    from framework.validate import arguments_not_taken

    arguments = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if _multirun() or added not in arguments:
        return []
    try:
        cfg = compose(Path(sys.argv[0]).stem, [f"+{added}" if arg == added else arg for arg in arguments])
    except Exception:  # noqa: BLE001 - another mistake on the command line: its own sentence comes on the next try
        return []
    group = added.split("=", 1)[0]
    return list(arguments_not_taken(OmegaConf.select(cfg, group.replace("/", ".")), group.replace("/", ".")))


def _option_not_chosen(key: str, config: DictConfig | None) -> tuple[str, str] | None:
    """``logger.wandb.project`` without logger=wandb: (group, option) where ``key`` lies below a config group's
    option that the config file of that option defines (conf/logger/wandb.yaml holds logger.wandb) and ``config``,
    the composed one, lacks; None for a new key of a chosen option (callbacks.model_checkpoint.every_n_epochs)."""
    parts = key.split(".")
    if len(parts) < 3:
        return None
    group, option = parts[:2]
    file = CONF / group / f"{option}.yaml"
    if not file.is_file() or (config is not None and OmegaConf.select(config, f"{group}.{option}") is not None):
        return None
    return (group, option) if option in (OmegaConf.load(file) or {}) else None


def _target_arguments(key: str, config: DictConfig | None) -> tuple[str, list[str], bool]:
    """The class (or function) that the ``_target_`` beside ``key`` names, the arguments it takes (up the base classes
    its ``**kwargs`` reach) that the config does not give (``trainer`` is Lightning's Trainer, and ``trainer.max_time``
    one that conf/trainer leaves out), and whether those are all it takes."""
    from framework.construction import arguments_up_the_classes

    parent = key.rpartition(".")[0]
    target = OmegaConf.select(config, f"{parent}._target_", default=None) if parent and config is not None else None
    arguments, closed = arguments_up_the_classes(target) if isinstance(target, str) else ([], False)
    if not arguments and not closed:
        return "", [], False
    given = OmegaConf.select(config, parent)
    return target.rsplit(".", 1)[-1], [name for name in arguments if name not in given], closed


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


def _split_override_error(override: str) -> ConfigError | None:
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
    sweep = "," in joined.split("=", 1)[1] and "[" not in joined and not _multirun()
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


class OverrideRefused(ConfigCompositionException):
    """A command-line override refused before Hydra applied it; its text is the sentence."""


def _rule_of(key: str) -> str | None:
    """What framework/validate.py's rule for ``key`` allows (its ``allowed`` text); None where no rule judges it."""
    from framework.validate import RULES  # here: validate imports this module

    return next((rule.allowed for rule in RULES if rule.key == key), None) if key else None


def _key_below_an_item_or_a_value(key: str, config: DictConfig, deleting: bool = False) -> ConfigError | None:
    """``key`` names an item a list lacks (``model.scheduler.values.x``, ``...values.6`` of 6 values) or a key below a
    single value (``seed.x``): Hydra fails on the first with a traceback or "Error merging override", and turns the
    value into a mapping for the second. ``deleting`` (``~key``): an item of a list, which Hydra's ~ fails on with a
    traceback, a key not in the config, which Hydra names without the keys it may be a misspelling of, or a key whose
    value is null, which Hydra says does not exist."""
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        path, last = ".".join(parts[:depth]), depth == len(parts) - 1
        if node._is_none() and (allowed := _rule_of(path)):  # group_by.x: Hydra said to add it, which made a mapping
            return ConfigError(f"Config key '{path}' is null, and {key} names nothing below it; set the key itself "
                               f"({path}=<value>), which must be {allowed}.")
        if node._is_none() or node._is_missing() or node._is_interpolation():
            return None  # Hydra's own sentences: what such a node holds is not known here
        if isinstance(node, DictConfig):
            node = node._get_node(part, validate_access=False)
            if node is None and deleting and last:
                closest = _closest_keys(config, key)
                hint = f" (the closest existing keys: {', '.join(closest)})" if closest else ""
                return ConfigError(f"Config key '{key}' is not in the config, so ~{key} deletes nothing{hint}; fix "
                                   f"its spelling.")
            if node is not None and node._is_none() and deleting and last:  # Hydra: "'ckpt_path' does not exist"
                return ConfigError(f"Config key '{key}' is null, and Hydra's ~ cannot delete a key whose value is null "
                                   f"(it takes it for a missing key); leave it null, or set it with {key}=<value>.")
            if node is None:
                return None  # a key not in the config: Hydra's refusal, and hydra_refusal's sentence
            continue
        if isinstance(node, ListConfig):
            items = OmegaConf.to_container(node)
            item = int(part) if re.fullmatch(r"-?\d+", part) and -len(items) <= int(part) < len(items) else None
            if item is not None and not (deleting and last):
                node = node._get_node(item)
                continue
            size = f"a list of {len(items)} items, numbered 0 to {len(items) - 1}," if items else "an empty list"
            if deleting and last:
                kept = ",".join(map(str, items[:item] + items[item + 1:] if item is not None else items))
                return ConfigError(f"Config key '{path}' is {size} and ~{key} cannot delete an item of it (Hydra's ~ "
                                   f"deletes keys of mappings); give the list without it: '{path}=[{kept}]'.")
            whole = ",".join(map(str, items)) if items else "<value>,<value>"
            return ConfigError(f"Config key '{path}' is {size} so it has no item {part!r} ({key}); set an item with "
                               f"{path}.<number>=<value>, or give the whole list: '{path}=[{whole}]'.")
        return ConfigError(f"Config key '{path}' is {shown(node._value())}, a single value with no keys below it, so "
                           f"{key} names nothing; set the value itself with {path}=<value>.")
    return None


LAUNCHER_CHOICES = {"BasicLauncher": "basic", "LocalLauncher": "local", "SlurmLauncher": "slurm"}


def _submitit_launcher_options() -> dict[str, list[str]]:
    """The options of hydra/launcher=local and slurm (conf/hydra/launcher/): the fields of the submitit plugin's
    configs, which are all its launchers pass on to submitit."""
    from dataclasses import fields

    try:
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
    except ModuleNotFoundError:  # an environment without the plugin: entry_point says so when a sweep uses it
        return {}
    return {choice: [field.name for field in fields(conf) if field.name != "_target_"]
            for choice, conf in (("local", LocalQueueConf), ("slurm", SlurmQueueConf))}


def _launcher_option_refusal(key: str, config: DictConfig) -> ConfigError | None:
    """``hydra.launcher.timeout_mn=5`` (with +, ++ or neither): a launcher takes its own options alone, and submitit
    refused any other with a NameError traceback at the sweep's start (Hydra's basic launcher with a TypeError)."""
    parts = key.split(".")
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    if parts[:2] != ["hydra", "launcher"] or len(parts) != 3 or not isinstance(launcher, DictConfig) or \
            launcher._get_node(parts[2], validate_access=False) is not None:
        return None
    target = str(launcher.get("_target_", "its launcher")).rsplit(".", 1)[-1]
    choice = LAUNCHER_CHOICES.get(target)
    this = f"{f'hydra/launcher={choice}' if choice else target}, this command's launcher"
    if parts[2] == "n_jobs":  # Hydra's joblib launcher's (not installed): how many jobs run side by side
        remedy = {"local": "starts every job at once already; leave n_jobs out",
                  "slurm": "runs as many at once as SLURM allows; leave n_jobs out (hydra.launcher.array_parallelism="
                           "<n> limits them)"}.get(choice, "runs one job after another: choose hydra/launcher=local "
                                                           "(each job a process of its own, all started at once) "
                                                           "instead of n_jobs")
        return ConfigError(f"Config key '{key}' is the number of parallel jobs of Hydra's joblib launcher, which is "
                           f"not installed here; {this}, {remedy}.")
    if having := [f"hydra/launcher={name}" for name, options in _submitit_launcher_options().items()
                  if parts[2] in options and name != choice]:
        return ConfigError(f"Config key '{key}' is an option of {' and '.join(having)}, not of {this}; choose "
                           f"{having[0]} with it ({having[0]} {key}=...), or leave the key out.")
    options = [name for name in launcher.keys() if name != "_target_"]
    if not options:
        return ConfigError(f"Config key '{key}' is not an option of {this}, which takes none; leave it out.")
    close = difflib.get_close_matches(parts[2], options, n=3, cutoff=0.6)
    hint = f" (the closest: {', '.join(close)})" if close else f" (its options: {', '.join(options)})"
    extra = " (an sbatch option it does not list goes in +hydra.launcher.additional_parameters.<name>=<value>)" \
        if "additional_parameters" in options else ""
    return ConfigError(f"Config key '{key}' is not an option of {this}{hint}, and a launcher takes no others; fix its "
                       f"spelling{extra}.")


@contextmanager
def checking_keys_of_overrides() -> Iterator[None]:
    """Within it, Hydra checks each override's key against the config as composed so far
    (:func:`_key_below_an_item_or_a_value`) before it applies it (``ConfigLoaderImpl._apply_overrides_to_config``)."""
    apply = ConfigLoaderImpl._apply_overrides_to_config

    def apply_checked(overrides: list, config: DictConfig) -> None:
        for override in overrides:
            key = override.key_or_group
            refusal = _key_below_an_item_or_a_value(key, config, override.is_delete()) or \
                (None if override.is_delete() else _launcher_option_refusal(key, config))
            if refusal:
                raise OverrideRefused(str(refusal))
            apply([override], config)

    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_checked)
    try:
        yield
    finally:
        ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply)


def hydra_refusal(error: HydraException) -> ConfigError:
    """One sentence for Hydra's refusal of a command line (Hydra prints several lines and its search path)."""
    if isinstance(error, OverrideRefused):
        return ConfigError(str(error))
    if sweep := re.search(r"BasicSweeper does not support sweep type : (\w+)", str(error)):
        kind = sweep[1].lower().removesuffix("_sweep")
        typed = next((arg for arg in sys.argv[1:] if f"{kind}(" in arg), None)  # else in an experiment's sweeper params
        key, _, value = typed.lstrip("+").partition("=") if typed else ("key", "", "")
        given = f"Config key '{key}' is swept with {value}, but " if typed else ""
        return ConfigError(f"{given}Hydra's basic sweeper cannot run {kind} sweeps (interval() is for optimising "
                           f"sweepers such as Optuna's, not installed here); list the values instead: {key}=0.01,0.03,"
                           f"0.1, {key}=range(1,4) or {key}=choice(a,b).")
    if hydras := re.fullmatch(r"Sweeping over Hydra's configuration is not supported : '\+*([^=]+)=(.*)'",
                              str(error).strip()):
        key, value = hydras[1], hydras[2]
        swept = key.removeprefix("hydra.sweeper.params.")
        remedy = (f"give the sweep as {swept}={value} (hydra.sweeper.params is where a config file lists its sweeps)"
                  if swept != key else f"give one value ({key}={value.split(',')[0] if '(' not in value else '<value>'}"
                                        f"), and run a sweep for each")
        return ConfigError(f"Config key '{key}' is given the sweep {value}, but Hydra's own settings take one value "
                           f"for the whole sweep; {remedy}.")
    if isinstance(error, OverrideParseException):
        if split := _split_override_error(str(error.override)):
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
        config = root if isinstance(root, DictConfig) else None
        closest = _closest_keys(config, str(cause.full_key)) if config is not None else []
        hint = f" (the closest existing keys: {', '.join(closest)})" if closest else ""
        key = added[1].split("=", 1)[0]
        parent, _, last = key.rpartition(".")
        numbered = OmegaConf.select(config, parent) if parent and config is not None else None
        if last.isdigit() and isinstance(numbered, DictConfig) and len(numbered) and \
                all(isinstance(name, int) for name in numbered.keys()):  # {3: 500}: a dotted key gives "3", text
            given = OmegaConf.to_container(numbered) | {int(last): added[1].split("=", 1)[1]}
            mapping = "{" + ",".join(f"{name}:{value}" for name, value in given.items()) + "}"
            return ConfigError(f"Config key '{parent}' is a mapping with numbers as its keys, which a dotted key on "
                               f"Hydra's command line ({key}) gives as text; give the whole mapping: "
                               f"'{parent}={mapping}'.")
        if unchosen := _option_not_chosen(key, config):
            group, option = unchosen
            chosen = _chosen_options(group)
            choose = f"'{group}=[{','.join([*chosen, option])}]'" if chosen else f"{group}={option}"
            return ConfigError(f"Config key '{key}' belongs to the {group} option {option}, which this run does not "
                               f"choose; add it with {choose} (its file: conf/{group}/{option}.yaml), then {added[1]} "
                               f"sets it.")
        # a mapping given to an existing key (hydra.sweeper.params={seed:"1,2"}) adds a key below it
        absent = str(cause.full_key) if str(cause.full_key).startswith(f"{key}.") else key
        owner, arguments, closed = _target_arguments(absent, config)
        taken = absent.rsplit(".", 1)[-1] in arguments
        if not taken and (close := difflib.get_close_matches(absent.rsplit(".", 1)[-1], arguments, n=3)):
            hint = f"{hint[:-1]}; arguments of {owner}: {', '.join(close)})" if hint else \
                f" (the closest arguments of {owner}: {', '.join(close)})"
        left_out = f"it is an argument of {owner} that the config leaves at its default:"
        if _multirun() and not key.startswith("hydra.") and (taken or not closed or _sweeps_a_group(config)):
            # a sweep starts from the config without its swept groups
            typed = next((arg for arg in sys.argv[1:] if arg.split("=", 1)[0].lstrip("+~") == key), added[1])
            return ConfigError(f"Config key '{absent}' is not in the config of every job of this sweep (the config it "
                               f"starts from, or a job's option of a swept group){'' if taken else hint}; "
                               f"{left_out if taken else 'fix its spelling, or'} give it as ++{typed.lstrip('+~')} "
                               f"(added where a job's config lacks it, overridden where it has it).")
        if taken:
            return ConfigError(f"Config key '{absent}' is not in the config; {left_out} add it with +{added[1]}.")
        if closed:  # +key would be refused as no argument of the class
            return ConfigError(f"Config key '{absent}' is not in the config, nor an argument of {owner}{hint}; fix its "
                               f"spelling.")
        return ConfigError(f"Config key '{absent}' is not in the config{hint}; fix its spelling, or add a new key "
                           f"with +{added[1]}.")
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
        shown = next((arg for arg in ("--help", "-h") if arg in sys.argv[1:]), None)
        if _multirun() and shown:  # it composes one job's config
            return ConfigError(f"Config key '{key}' is given {value!r} with commas, but {shown} shows one job's "
                               f"config, not a sweep's; give one of the values there ({typed}={value.split(',')[0]}), "
                               f"or leave {shown} out to run the sweep.")
        if (CONF / key).is_dir():  # a config group: a list would merge its options into one config
            return ConfigError(f"Config group '{key}' is given {value!r} with commas; add -m (--multirun) to run one "
                               f"job per option, or write {typed}=[{value}] to merge them all into one config (as "
                               f"logger=[csv,tensorboard] logs to both).")
        return ConfigError(f"Config key '{key}' is given {value!r} with commas; add -m (--multirun) to run one job "
                           f"per value, or write {typed}=[{value}] for a list, {as_typed_in_a_shell(typed, value)} "
                           f"for a string (as typed in a shell).")
    return ConfigError(one_line(message))


def group_given_null_error() -> ConfigError:
    """``logger=null`` (or ``-m model=lenet5,null``) on the command line, which Hydra refuses with a ValueError naming
    no group."""
    def given_null(arg: str) -> bool:  # Hydra reads NULL and Null as null too
        key, _, value = arg.partition("=")
        return "null" in value.lower().split(",") and _group_options(key.lstrip("+~")) is not None

    typed = next((arg for arg in sys.argv[1:] if given_null(arg)), None)
    if typed is None:  # in a config file's defaults list
        return ConfigError("A config group is given null in a defaults list, but a group takes one of its options "
                           "(none, where it has one, leaves it out); choose one there.")
    group = typed.split("=", 1)[0].lstrip("+~")
    options = _group_options(group)
    if _chosen_without(typed, group) is None:  # experiment, debug: none unless chosen
        return ConfigError(f"Config group '{group}' is given null, which the command line cannot give a group; leave "
                           f"{group}= out (it chooses no option by default), or choose one of {', '.join(options)}.")
    leave_out = f" ({group}=none leaves it out)" if "none" in options else ""
    return ConfigError(f"Config group '{group}' is given null, but it takes one of its options: "
                       f"{', '.join(options)}{leave_out}; choose one.")


def _group_options(group: str) -> list[str] | None:
    """The options of config group ``group`` in the folders of configs the command searches (conf/, or -cp's folder
    instead; -cd's and hydra.searchpath's too); None where none of them holds such a group."""
    if not GlobalHydra.instance().is_initialized():  # no command line composed yet: the repository's conf/
        return sorted(path.stem for path in (CONF / group).glob("*.yaml")) if (CONF / group).is_dir() else None
    loader = GlobalHydra.instance().config_loader()
    searchpath = [word for word in sys.argv[1:] if word.startswith("hydra.searchpath=")]
    parent, _, name = group.rpartition("/")  # the primary config's own hydra.searchpath counts too
    if name not in loader.get_group_options(parent, ObjectType.GROUP, _primary_config(), searchpath):
        return None
    return sorted(loader.get_group_options(group, ObjectType.CONFIG, _primary_config(), searchpath))


def _primary_config() -> str:
    """The name of the config the command composes: -cn's (--config-name's), else the script's (train, evaluate)."""
    words = sys.argv[1:]
    named = [words[n + 1] for n, word in enumerate(words[:-1]) if word in ("-cn", "--config-name")] + \
        [word.split("=", 1)[1] for word in words if word.startswith("--config-name=")]
    return named[-1] if named else Path(sys.argv[0]).stem


def _chosen_without(typed: str, group: str) -> str | None:
    """The option of ``group`` that the command line chooses without its override ``typed`` (None: no option), as
    Hydra composes it (model=szegedy chooses model/optimizer=lbfgs); train.py's default where that does not compose
    (a sweep's values)."""
    from hydra import compose

    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-") and arg != typed]
    try:
        cfg = compose(_primary_config(), overrides, return_hydra_config=True)
    except Exception:  # noqa: BLE001 - e.g. seed=1,2 of a sweep, which compose does not take
        return _default_option(group)
    return cfg.hydra.runtime.choices.get(group)


def as_typed_in_a_shell(key: str, value: str) -> str:
    """``key=value`` as one shell word that Hydra reads as that string: quoted for Hydra where the value holds
    characters of its grammar (``runs='logs/a,b'``), then for the shell where it holds any of the shell's."""
    if set(value) & set(",[]{}()'\"\\=$"):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    word = f"{key}={value}"
    if shlex.quote(word) == word or set(word) & set('"$`\\!'):
        return shlex.quote(word)
    return f'"{word}"'  # reads better than shlex's '...'"'"'...


def mode_flags() -> list[str]:
    flags = ("-m", "--multirun", "-c", "--cfg", "-i", "--info", "-r", "--run", "-sc", "--shell-completion")
    return [arg for arg in sys.argv[1:] if arg.split("=", 1)[0] in flags]


def hydra_flag_refusal(error: ValueError) -> ConfigError | None:
    """Hydra's own checks of its flags, which it raises as ValueErrors with a traceback; None for any other error."""
    message = str(error)
    script = Path(sys.argv[0]).name
    if message.startswith("Only one of --run, --multirun"):
        return ConfigError(f"The command line gives {' and '.join(mode_flags())}, but Hydra does one of --run, "
                           f"--multirun (-m), --cfg, --info and --shell-completion at a time; to see a sweep job's "
                           f"config, drop -m and give that job's values with --cfg job.")
    if message.startswith("The --resolve flag can only be used in conjunction with --cfg or --help"):
        return ConfigError(f"The command line gives --resolve, which resolves the config that --cfg prints and is "
                           f"taken only with --cfg (or --help); add --cfg job to see the config resolved, or leave "
                           f"--resolve out (python {script} --cfg job --resolve ...).")
    if message.startswith("Expecting one subcommand from"):
        return ConfigError(f"The command line gives --shell-completion (-sc) without what to do; give install=bash "
                           f"(or zsh, fish), uninstall=bash or query=bash: eval \"$(python {script} -sc "
                           f"install=bash)\" sets up tab completion in this shell.")
    return None


def flags_after_overrides() -> ConfigError | None:
    """``python train.py debug=smoke -m seed=1,2``: Hydra's argument parser takes the overrides before its first
    flag and refuses those after it with its usage and "unrecognized arguments"; the same words, flags first, run."""
    words = sys.argv[1:]
    if "--version" in words:  # argparse prints the version while it parses
        return None
    parser = hydra_internals.get_args_parser()

    def not_ours(message: str = "", *args) -> NoReturn:
        raise _ArgparseWouldRefuse

    parser.error, parser.exit = not_ours, not_ours
    try:
        args, unknown = parser.parse_known_args(words)
    except _ArgparseWouldRefuse:  # another mistake, which argparse says itself
        return None
    overrides = [*args.overrides, *unknown]
    if not unknown or not args.overrides or any(word.startswith("-") for word in unknown):
        return None
    first_flag = next(word for word in words[words.index(args.overrides[-1]):] if word.startswith("-"))
    reordered = [*(word for word in words if word not in overrides), *overrides]
    return ConfigError(f"The command line gives overrides after the flag {first_flag}, and Hydra reads overrides "
                       f"only after its flags; put the flags first: python {Path(sys.argv[0]).name} "
                       f"{' '.join(map(shlex.quote, reordered))}")


class _ArgparseWouldRefuse(Exception):
    pass


def unresolvable_error(error: InterpolationResolutionError, key: str | None) -> ConfigError:
    """A ``${...}`` in config key ``key`` (None: not known) that does not resolve, as one sentence."""
    reason = str(error).splitlines()[0]
    named = f"Config key '{key}'" if key else "A value of the config"
    if unset := re.search(r"Environment variable '([^']+)' not found", reason):
        return ConfigError(f"{named} reads the environment variable {unset[1]}, which is not set; set it, or give "
                           f"a default there: ${{oc.env:{unset[1]},<default>}}.")
    return ConfigError(f"{named} cannot be resolved ({reason}); give a value or a ${{...}} reference to an existing "
                       f"key.")

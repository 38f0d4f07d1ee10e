"""Compose the real configs outside ``python train.py`` (tests, benchmarks, notebooks).

    cfg = compose_config(["model=lenet5_classic", "trainer.max_epochs=3"], Path("logs/scratch"))
    train(cfg)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_with_hydra(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The composed config with its ``hydra`` node (a multirun's callbacks see this, less the sweeps)."""
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # as in a fresh interpreter: the last composition's job is not this one's
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """The config ``python <entry point>.py <overrides>`` would run with, writing into ``output_dir``."""
    cfg = compose_with_hydra(overrides, config_name)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())  # where the command starts, as Hydra sets it
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def paths_from_start_dir(cfg: DictConfig, keys: tuple[str, ...], keywords: tuple[str, ...] = ()) -> None:
    """With ``hydra.job.chdir=true`` a job runs in its output directory, but the relative paths a user types are
    relative to the directory the command started in (as conf/train.yaml says): make those under ``keys``
    absolute against it. ``keywords`` are values that are not paths (``ckpt_path=auto``)."""
    start = Path(HydraConfig.get().runtime.cwd)
    if Path.cwd() == start:
        return

    def absolute(value):
        if isinstance(value, str) and value not in keywords and not Path(value).expanduser().is_absolute():
            return str(start / value)
        return value

    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, [absolute(v) for v in value] if isinstance(value, ListConfig)
                                 else absolute(value), merge=False)


ABSENT = object()


def lookup(cfg: DictConfig, key: str):
    """The value at the dotted ``key``, ``???`` left as it is, or ``ABSENT`` where the config has no such key."""
    return OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=False)


def at_or_below(key: str, names: Sequence[str]) -> bool:
    """Is the config key ``key`` one of ``names``, or a key below one (``model.optimizer.lr`` below
    ``model.optimizer``, a choice ``hydra/launcher`` below ``hydra``)?"""
    return any(key == name or key.startswith((f"{name}.", f"{name}/")) for name in names)


def script_of(hydra_node: DictConfig | None) -> str | None:
    """Which entry point composed this config, ``train`` or ``evaluate``: a training config chooses a trainer, also
    one of the user's own (``-cn mine``, whose defaults list builds on train). None for a node without its choices
    (a hydra.yaml that a kill or a full disk left empty)."""
    choices = OmegaConf.select(hydra_node, "runtime.choices", default=None) if hydra_node is not None else None
    return None if choices is None else "train" if "trainer" in choices else "evaluate"

"""Shared fixtures: compose the real configs with Hydra, tiny, into a temporary output dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from tests.dataset_files import write_all

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train"):
    """The config ``python train.py <overrides>`` would run with, writing into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(ROOT)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Small files of every dataset, in their real on-disk formats."""
    return write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture
def make_cfg(tmp_path, data_root):
    def make(*overrides: str, config_name: str = "train"):
        return compose_config([f"paths.data_dir={data_root}", *overrides], tmp_path / "run", config_name)

    return make


def run_cli(*args: str, env: dict | None = None, timeout: int = 300, cwd: Path = ROOT,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run an entry point in a fresh interpreter, as a user would."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([*prefix, sys.executable, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)

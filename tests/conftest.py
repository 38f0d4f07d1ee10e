"""Shared fixtures: compose the real configs with Hydra, tiny, into a temporary output dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.compose import ROOT, compose_config
from tests.dataset_files import write_all


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

"""Shared fixtures: compose the real configs with Hydra, tiny, into a temporary output dir."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.compose import ROOT, compose_config
from tests.commands import Runner, start_preloaded_forkserver
from tests.dataset_files import write_all

# Where a run started from the repository writes by default. Tests write under their own folders; a test that left a
# run here would fill the user's logs/ (and `make clean` deletes it with theirs).
REPOSITORY_RUNS = [ROOT / "logs" / script / kind for script in ("train", "evaluate") for kind in ("runs", "multiruns")]


def repository_runs() -> set[Path]:
    return {path for folder in REPOSITORY_RUNS if folder.is_dir() for path in folder.iterdir()}


# The modules that take longest, in the order they start: `make test` hands each of its two workers whole modules
# (--dist loadscope) in collection order (--no-loadscope-reorder), and a long one handed out last ran alone at the end
# (test_runs.py's 139 s, while the other worker had ended a minute before). Seconds on 2026-12-07, two workers:
# README commands 266 (two at a time), interrupted runs 144, train 142, runs 139, slurm 112, user errors 102.
LONGEST_FIRST = ["test_readme_commands.py", "test_interrupted_runs.py", "test_train.py", "test_runs.py",
                 "test_slurm.py", "test_user_errors.py", "test_perceptual_autoencoder.py"]


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


def pytest_sessionstart(session):
    session.config.repository_runs_before = repository_runs()


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controlling process checks once
        return
    session.config.runs_left = sorted(map(str, repository_runs() - session.config.repository_runs_before))
    if session.config.runs_left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    """After pytest's own summary (which pytest.exit in pytest_sessionfinish would have cut off)."""
    if left := getattr(config, "runs_left", None):
        terminalreporter.write_line(f"the tests (or a command run from this checkout meanwhile) left {len(left)} run "
                                    f"folder(s) in the repository's logs/: {', '.join(left[:5])}; a test must write "
                                    f"its runs under its own tmp_path.", red=True)


@pytest.fixture
def pretend_gpus(monkeypatch):
    """``pretend_gpus(n)``: torch.cuda reports n usable devices (none when n is 0) for the rest of the test."""
    import torch

    def pretend(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return pretend


@pytest.fixture(scope="session", autouse=True)
def preloaded_forkserver():
    """Before any test can start the forkserver with less in it (tests/commands.py)."""
    start_preloaded_forkserver()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Small files of every dataset, in their real on-disk formats."""
    return write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture
def make_cfg(tmp_path, data_root):
    def make(*overrides: str, config_name: str = "train", run: str = "run"):
        """``run``: the output directory's name in tmp_path (a second fresh run needs its own)."""
        return compose_config([f"paths.data_dir={data_root}", *overrides], tmp_path / run, config_name)

    return make


@contextlib.contextmanager
def warnings_said() -> Iterator[list[str]]:
    """The message of every warning raised in the block (filled as the block ends), each time it is raised; filters
    that the code under test adds still apply."""
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield said
    said.extend(str(warning.message) for warning in caught)


def path_with_stand_in(folder: Path, command: str, script: str = "") -> str:
    """PATH with a stand-in ``command`` in ``<folder>/bin`` first, a shell script running ``script`` (by default
    nothing: a do-nothing ``srun`` makes a machine with SLURM's client, where Lightning hints that commands be run
    under srun)."""
    (folder / "bin").mkdir(exist_ok=True)
    (folder / "bin" / command).write_text(f"#!/bin/sh\n{script}")
    (folder / "bin" / command).chmod(0o755)
    return f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"


@functools.cache
def preloaded_interpreter() -> Runner:
    outputs = Path(tempfile.mkdtemp(prefix="run_cli_"))  # each command's stdout and stderr, until the tests end
    atexit.register(shutil.rmtree, outputs, ignore_errors=True)
    return Runner(outputs)


def run_cli(*args: str, env: dict | None = None, timeout: int = 300, cwd: Path = ROOT,
            prefix: tuple[str, ...] = (), new_interpreter: bool = False):
    """Run an entry point in a process of its own, as a user would: ``python <args>``, forked from an interpreter
    that has imported torch, Lightning and Hydra once (tests/commands.py: saves ~7 s of imports a command), or
    in a new interpreter (``new_interpreter``, or under a ``prefix`` such as ``unshare -n``). Returns returncode,
    stdout and stderr."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    if not (prefix or new_interpreter) and args[0].endswith(".py"):
        return preloaded_interpreter().python(list(args), cwd, full_env, timeout)
    return subprocess.run([*prefix, sys.executable, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def imported_and_said(stderr: str) -> tuple[set[str], str]:
    """``python -X importtime ...``'s stderr: the modules the interpreter imported, and the rest of what it wrote."""
    lines = stderr.splitlines(True)
    timed = [line for line in lines if line.startswith("import time:")]
    return ({line.rsplit("|", 1)[-1].strip() for line in timed},
            "".join(line for line in lines if not line.startswith("import time:")))

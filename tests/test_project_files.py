"""The repository's own files: what a clean clone holds and what runs without the test suite."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_no_config_file_is_ignored_by_git():
    """An ignore rule that matches a config (an unanchored ``data/`` matched conf/data/) keeps it out of a clone."""
    configs = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "conf").rglob("*.yaml"))
    assert configs
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(configs),
                             capture_output=True, text=True, timeout=60)
    assert (ignored.returncode, ignored.stdout) == (1, ""), f"ignored by .gitignore: {ignored.stdout.split()}"


def test_nothing_outside_the_tests_imports_them():
    """Entry points, benchmarks and library code run where the test suite and pytest are not installed."""
    packages = ("framework", "lightning_modules", "datamodules", "callbacks", "analysis", "benchmarks", "examples")
    sources = [*ROOT.glob("*.py"), *(path for package in packages for path in (ROOT / package).rglob("*.py"))]
    assert len(sources) > 20
    importing = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            importing += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if name.split(".")[0] in ("tests", "pytest", "_pytest")]
    assert not importing


def test_the_modules_the_suite_starts_first_exist():
    """A module renamed or removed would silently leave the order of `make test` (tests/conftest.py)."""
    from tests.conftest import LONGEST_FIRST

    assert [name for name in LONGEST_FIRST if not (ROOT / "tests" / name).is_file()] == []

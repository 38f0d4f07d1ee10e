"""results.json: what a run produced, written atomically so a killed run never leaves half a file."""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from framework.atomic import write_atomically
from framework.errors import ConfigError

LIBRARIES = ("torch", "torchvision", "lightning", "hydra-core", "torchmetrics", "scikit-learn", "wandb")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """Write JSON through a temporary file in the same folder, renamed over ``path`` (framework/atomic.py)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    return write_atomically(path, lambda stream: stream.write(text.encode()))


def to_float_dict(metrics) -> dict[str, float]:
    """Tensor or number metrics -> plain floats (what json can hold)."""
    return {key: float(value) for key, value in metrics.items()}


def find_results(path: str | Path) -> list[Path]:
    """results.json of one run directory, or of every job below a multirun directory."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.rglob("results.json"))


def jobs_without_results(path: str | Path) -> list[Path]:
    """Job directories below ``path`` (Hydra wrote their .hydra/) that hold no results.json: failed, killed or
    still running."""
    path = Path(path)
    if path.is_file():
        return []
    return sorted(folder.parent for folder in path.rglob(".hydra") if not (folder.parent / "results.json").is_file())


def load_results(path: str | Path) -> list[dict]:
    found = find_results(path)
    if not found:
        raise ConfigError(f"Config key 'runs' is {str(path)!r}, but there is no results.json under it; give the "
                          f"output directory of a finished run or multirun.")
    return [json.loads(p.read_text()) | {"path": str(p.parent)} for p in found]

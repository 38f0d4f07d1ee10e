"""Hydra callbacks (``hydra.callbacks`` in conf/hydra/default.yaml): they run in the process that launches
a multirun, before and after its jobs."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def slurm_unreachable_reason() -> str | None:
    """Why jobs cannot be submitted to SLURM from here, or None when its controller answers (the README-command
    test asks this; framework/slurm_preflight.py checks a sweep's request before submitting it)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo are not installed here"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from the SLURM controller in 30 s"
    if answer.returncode != 0:
        lines = answer.stderr.strip().splitlines()
        return f"sinfo failed: {lines[-1] if lines else f'exit code {answer.returncode}'}"
    return None


class PrintSweepDir(Callback):
    """After a multirun, print where its jobs wrote and the command that summarises them."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name != "train":
            return
        sweep_dir = config.hydra.sweep.dir
        print(f"sweep directory: {sweep_dir}")
        print(f"summarise it with: python evaluate.py runs={sweep_dir}")

"""Hydra callbacks (``hydra.callbacks`` in conf/hydra/default.yaml): they run in the process that launches
a multirun, before and after its jobs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def slurm_unreachable_reason() -> str | None:
    """Why jobs cannot be submitted to SLURM from here, or None when its controller answers."""
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


class CheckLauncher(Callback):
    """Before a multirun: a SLURM launcher on a machine where no SLURM controller answers gets one sentence
    and exit code 2, not submitit's traceback."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "SlurmLauncher" not in str(config.hydra.launcher.get("_target_", "")):
            return
        reason = slurm_unreachable_reason()
        if reason is not None:
            print(f"SLURM error: hydra/launcher=slurm cannot submit jobs from this machine ({reason.rstrip('.')}); "
                  f"run on a SLURM login node, or leave out hydra/launcher=slurm to run here.", file=sys.stderr)
            raise SystemExit(2)


class PrintSweepDir(Callback):
    """After a multirun, print where its jobs wrote and the command that summarises them."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name != "train":
            return
        sweep_dir = config.hydra.sweep.dir
        print(f"sweep directory: {sweep_dir}")
        print(f"summarise it with: python evaluate.py runs={sweep_dir}")

"""Hydra launchers with the framework's user-error rule: a machine that cannot run them gets one sentence."""

from __future__ import annotations

import shutil
import subprocess
import sys

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


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


class SlurmLauncher(SubmititSlurmLauncher):
    """Hydra's submitit SLURM launcher, checking before any submission that a SLURM controller answers."""

    def launch(self, job_overrides, initial_job_idx):
        reason = slurm_unreachable_reason()
        if reason is not None:
            print(f"SLURM error: hydra/launcher=slurm cannot submit jobs from this machine ({reason.rstrip('.')}); "
                  f"run on a SLURM login node, or leave out hydra/launcher=slurm to run here.", file=sys.stderr)
            raise SystemExit(2)
        return super().launch(job_overrides, initial_job_idx)

"""The date and time in a run directory's name (conf/hydra/default.yaml's ``hydra.run.dir``):

    dir: ${paths.log_dir}/${task_name}/runs/${run_stamp:}   # 2026-12-06_09-41-52-342267

Each task of a DDP run that srun starts by hand (``srun --ntasks-per-node=2 python train.py trainer=ddp ...``, as
Lightning documents for SLURM) is a process of its own, and each read its own clock: rank 0 wrote the run and every
other rank left a folder of its own, holding only .hydra/ and an empty train.log. The tasks of one job step name it
after the step instead (2026-12-06_slurm-1234.0). Importing ``framework`` registers the resolver.
"""

from __future__ import annotations

import os
from datetime import datetime

from omegaconf import OmegaConf


def run_stamp() -> str:
    now = datetime.now()
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    if job and step and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return f"{now:%Y-%m-%d}_slurm-{job}.{step}"
    return f"{now:%Y-%m-%d_%H-%M-%S-%f}"


OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True, replace=True)

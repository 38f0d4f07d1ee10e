"""The one training entry point: compose -> validate -> seed -> instantiate -> fit -> test -> results.

    python train.py                                   # LeNet-5 on the bundled digits
    python train.py model=lenet5_classic data=mnist trainer.max_epochs=3 seed=1
    python train.py experiment=lenet5_classic_mnist logger=wandb
    python train.py -m model.optimizer.lr=0.01,0.1 seed=1,2,3     # one job directory each
    python train.py ckpt_path=auto hydra.run.dir=<old run>         # resume a killed run

Every run writes into its Hydra output directory: the composed config (.hydra/),
checkpoints/ (last.ckpt and the best), the logger's files and results.json. ``main``
returns ``optimized_metric`` for Hydra sweepers.

The job is framework/training.py. This file imports Hydra alone, and the job imports torch and
Lightning (about 6 s) once Hydra runs it: --help, --cfg, tab completion (-sc) and Hydra's refusal
of a command line answer in well under a second.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from framework.entry_point import run_entry_point


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from framework.training import training_job

    return training_job(cfg)


if __name__ == "__main__":
    run_entry_point(main)

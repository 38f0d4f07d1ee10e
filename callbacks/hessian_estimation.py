"""Re-estimate SDLM's Hessian diagonal on a few hundred training samples before every epoch.

LeCun et al. 1998 (Appendix C) re-estimate it on 500 patterns before each pass. With
``first_epoch_every_n_steps`` it is also re-estimated every that many steps of the first epoch: the
initial weights are small, so the first estimate is tiny (about 1e-5 for C1) and every step runs at
nearly eta / mu while the weights, and the curvature with them, grow by orders of magnitude within a
few hundred steps (docs/lenet5.md). The samples are a random subset that depends only on (run seed,
global step), so a resumed run estimates from the same images as an uninterrupted one. The network
supplies ``diagonal_hessian(images)`` (LeNet5Classic does).
"""

from __future__ import annotations

import logging
import os

import lightning as L
import torch

from framework.errors import ConfigError
from lightning_modules.sdlm import SDLM

log = logging.getLogger(__name__)


class HessianEstimation(L.Callback):
    def __init__(self, num_samples: int = 500, first_epoch_every_n_steps: int = 0):
        if num_samples < 1 or first_epoch_every_n_steps < 0:
            raise ConfigError(f"Config key 'callbacks.hessian_estimation' has num_samples={num_samples} and "
                              f"first_epoch_every_n_steps={first_epoch_every_n_steps}, but it needs num_samples >= 1 "
                              f"and first_epoch_every_n_steps >= 0 (0: only before each epoch).")
        self.num_samples, self.first_epoch_every_n_steps = num_samples, first_epoch_every_n_steps

    def samples(self, trainer: L.Trainer, device: torch.device) -> torch.Tensor:
        datamodule = trainer.datamodule
        dataset = datamodule.datasets["train"]
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        # drawn by (seed, global step), so a resumed run sees the same ones; the primes keep this stream apart from
        # the other seeded draws of a run and of runs with neighbouring seeds
        generator = torch.Generator().manual_seed(seed * 1_000_003 + trainer.global_step + 500_009)
        index = torch.randperm(len(dataset), generator=generator)[: self.num_samples]
        images, _ = dataset[index.to(dataset.images.device)]
        return datamodule.to_float(images.to(device))  # undistorted, also in the distorted experiment (docs/lenet5.md)

    @staticmethod
    def network(pl_module: L.LightningModule):
        return getattr(pl_module, "net", pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not any(isinstance(opt, SDLM) for opt in trainer.optimizers):
            return
        if not hasattr(net := self.network(pl_module), "diagonal_hessian"):
            raise ConfigError(f"The SDLM optimizer (model.optimizer) steps by the network's Hessian diagonal, but "
                              f"{type(net).__name__} has no diagonal_hessian(images) method to estimate it; give the "
                              f"network that method (as lightning_modules.lenet5.LeNet5Classic has), or choose "
                              f"another model.optimizer.")
        if (available := len(trainer.datamodule.datasets["train"])) < self.num_samples:
            log.warning(f"callbacks.hessian_estimation.num_samples is {self.num_samples}, but the training set holds "
                        f"{available} images: the Hessian diagonal is estimated on all of them.")

    def estimate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizers = [opt for opt in trainer.optimizers if isinstance(opt, SDLM)]
        if not optimizers:
            return
        diagonal = self.network(pl_module).diagonal_hessian(self.samples(trainer, pl_module.device))
        for optimizer in optimizers:
            optimizer.set_hessian_diagonal(diagonal)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.estimate(trainer, pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        every = self.first_epoch_every_n_steps
        if every and trainer.current_epoch == 0 and batch_idx > 0 and batch_idx % every == 0:
            self.estimate(trainer, pl_module)

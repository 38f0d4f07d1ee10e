"""Re-estimate SDLM's Hessian diagonal on a few hundred training samples before every epoch.

LeCun et al. 1998 (Appendix C) re-estimate it on 500 patterns before each pass. The samples are a
random subset that depends only on (run seed, epoch), so a resumed run estimates from the same
images as an uninterrupted one. The network supplies ``diagonal_hessian(images)`` (LeNet5Classic does).
"""

from __future__ import annotations

import os

import lightning as L
import torch

from lightning_modules.sdlm import SDLM


class HessianEstimation(L.Callback):
    def __init__(self, num_samples: int = 500):
        self.num_samples = num_samples

    def samples(self, trainer: L.Trainer, device: torch.device) -> torch.Tensor:
        datamodule = trainer.datamodule
        dataset = datamodule.datasets["train"]
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        generator = torch.Generator().manual_seed(seed * 1_000_003 + trainer.current_epoch + 500_009)
        index = torch.randperm(len(dataset), generator=generator)[: self.num_samples]
        images, _ = dataset[index.to(dataset.images.device)]
        return datamodule.to_float(images.to(device))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizers = [opt for opt in trainer.optimizers if isinstance(opt, SDLM)]
        if not optimizers:
            return
        net = getattr(pl_module.net, "_orig_mod", pl_module.net)
        diagonal = net.diagonal_hessian(self.samples(trainer, pl_module.device))
        for optimizer in optimizers:
            optimizer.set_hessian_diagonal(diagonal)

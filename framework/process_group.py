"""Destroy the torch.distributed process group before the interpreter exits.

Lightning registers this clean-up for NCCL only. A spawned DDP worker on CPU (``trainer=ddp_sim``,
gloo) that exits with its process group alive can abort during interpreter finalisation: gloo's
worker threads still hold tensors whose release needs the GIL, and the process dies with SIGABRT
("terminate called without an active exception"; pytorch/pytorch#190489). Seen once in about a dozen
``python train.py trainer=ddp_sim`` runs here, during the test phase.
"""

from __future__ import annotations

import atexit

import lightning as L
import torch.distributed as dist


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DestroyProcessGroupAtExit(L.Callback):
    """Registers :func:`destroy_process_group` with ``atexit`` in every process that sets up a trainer.

    Unregistered first, so that the many trainers of an in-process sweep leave one handler, not one each.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        atexit.unregister(destroy_process_group)
        atexit.register(destroy_process_group)

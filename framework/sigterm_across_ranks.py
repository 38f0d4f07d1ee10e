"""A SIGTERM stops every DDP rank at the same batch, whenever it reaches each of them.

Lightning 2.6's SIGTERM handler broadcasts from rank 0 inside the signal handler, so its collective is paired with
whatever collective the other ranks issue next, and each rank then stops at the end of the batch in which its own
signal arrived. A scheduler signals each rank on its own (SLURM's requeue or time limit, a process group's kill),
and where the signals straddle a batch or a rank gets none, the ranks disagree: with one rank signalled alone, rank
1's stop left rank 0 with a traceback ("Connection reset by peer"), and rank 0's left rank 1 training on and the
job waiting for good. Under srun a rank's traceback has srun kill the others before their stop sentence.

Here the handler only notes the signal, and the ranks agree on it (an all-reduce of every rank's note) where they
all pass together: before each training batch (raising there, as Lightning's own check does), at each training
epoch's end (Lightning's check then stops them after the epoch's checkpoints), and after the fit. A signal during a
validation stops the ranks at the next of these; one during the scoring of the fit's checkpoint (a validate and a
test, seconds) lets them finish it. Outside DDP nothing changes: the signal stops the run at the end of its batch,
as Lightning does.

    with_sigterm_agreed_across_ranks(trainer)   # once the Trainer is built
"""

from __future__ import annotations

import logging
from contextlib import suppress

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_prefixed_message

log = logging.getLogger(__name__)


def _distributed(trainer: L.Trainer) -> bool:
    return dist.is_available() and dist.is_initialized() and trainer.world_size > 1


class SigtermNotedUnderDDP(_SignalConnector):
    """Lightning's signal connector, whose SIGTERM handler issues no collective: under DDP it notes the signal
    (``noted``) and leaves the stop to :func:`sigterm_agreed`; in one process it stops the run as Lightning's does."""

    def __init__(self, trainer: L.Trainer):
        super().__init__(trainer)
        self.noted = False

    def register_signal_handlers(self) -> None:
        self.noted = False
        super().register_signal_handlers()

    def _sigterm_notifier_fn(self, signum, frame) -> None:
        log.info(rank_prefixed_message(f"Received SIGTERM: {signum}", self.trainer.local_rank))
        if not (self.received_sigterm or self.noted) and (launcher := self.trainer.strategy.launcher) is not None:
            launcher.kill(signum)  # trainer=ddp on one machine: rank 0 passes it on to the ranks it started
        if _distributed(self.trainer):
            self.noted = True
        else:
            self.received_sigterm = True


def sigterm_agreed(trainer: L.Trainer) -> bool:
    """Whether the run is to stop for a SIGTERM: under DDP, called on every rank at the same point, true on all of
    them once any rank has noted one (and then ``trainer.received_sigterm`` too, which Lightning's loops check)."""
    connector = trainer._signal_connector
    if isinstance(connector, SigtermNotedUnderDDP) and _distributed(trainer) and not connector.received_sigterm:
        noted = torch.tensor([int(connector.noted)], device=trainer.strategy.root_device)
        try:
            dist.all_reduce(noted, op=dist.ReduceOp.MAX)
        except RuntimeError:  # a rank has gone: this one stops on its own note, or meets the loss at its next step
            noted.fill_(int(connector.noted))
        connector.received_sigterm = bool(noted.item())
    return trainer.received_sigterm


class SigtermAgreed(L.Callback):
    """The points where every rank agrees on a SIGTERM (:func:`sigterm_agreed`); it does nothing outside DDP."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if _distributed(trainer) and sigterm_agreed(trainer):
            with suppress(RuntimeError):
                dist.barrier()  # every rank has read the agreement before any leaves the process group
            raise SIGTERMException

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sigterm_agreed(trainer)  # the fit loop stops after the epoch's checkpoints


def with_sigterm_agreed_across_ranks(trainer: L.Trainer) -> None:
    """Our connector, and where the Trainer has several ranks, the callback (one process's batches call no hook)."""
    trainer._signal_connector = SigtermNotedUnderDDP(trainer)
    if trainer.world_size > 1:
        trainer.callbacks.append(SigtermAgreed())

"""Lightning's training, validation and test steps as one ``_step(batch, stage)`` of the module's own, and epoch
means of what the steps compute.

    class MyModule(StageSteps, L.LightningModule):   # before LightningModule, whose hooks it replaces
        def _step(self, batch, stage: str) -> torch.Tensor:   # stage: "train", "val" or "test"
            self.add_to_epoch_means(stage, {"loss": loss}, len(batch[0]))   # logged as val/loss, ... (log_epoch)
"""

from __future__ import annotations

import functools
import re
import warnings

import torch

from framework.profiler import HookNameSetDirectly


class StageSteps(HookNameSetDirectly):  # a cheaper hook name on the module (framework/profiler.py)
    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch("test")

    def log_epoch(self, stage: str) -> None:
        """What a stage logs at its epoch's end: the means of what its steps added (a module may log more)."""
        self.log_epoch_means(stage)

    # Only epoch values are logged, so the steps just add to sums: a `self.log` per step cost ~10% of a LeNet-5
    # epoch on the CPU (benchmarks/overhead.py).
    def add_to_epoch_means(self, stage: str, values: dict[str, torch.Tensor], samples: int) -> None:
        """Adds one batch's ``values`` (each a mean over its ``samples``) to the stage's epoch sums. A value that only
        some steps add (an autoencoder's pre-training loss) is the mean over the samples of those steps."""
        # in __dict__: a mixin without an __init__ of its own, and nn.Module's __getattr__ would look elsewhere first
        sums = self.__dict__.setdefault("epoch_sums", {}).setdefault(stage, {})
        for name, value in values.items():
            total, count = sums.get(name, (0.0, 0))
            sums[name] = (total + value.detach().double() * samples, count + samples)

    def log_epoch_means(self, stage: str, prog_bar: tuple[str, ...] = ("loss",),
                        unlogged: tuple[str, ...] = ()) -> dict[str, float] | None:
        """Logs ``<stage>/<name>``: the epoch's sample-weighted means, summed over the DDP ranks before dividing.
        The ranks' shares of a validation or test set may differ in size, and Lightning's ``sync_dist`` mean then
        divides by the mean share rounded down (101 test images on 2 ranks: by 50, not 50.5). Returns the
        ``unlogged`` names' means (the same on every rank), computed but not logged; None: the stage ran no steps
        this epoch."""
        sums = self.__dict__.get("epoch_sums", {}).pop(stage, None)
        if not sums:
            return None
        names = list(sums)
        totals = torch.stack([sums[name][0] for name in names])
        counts = totals.new_tensor([sums[name][1] for name in names])
        totals, counts = self.trainer.strategy.reduce(torch.cat([totals, counts]), reduce_op="sum").split(len(names))
        kept = {}
        for name, total, count in zip(names, totals, counts, strict=True):
            if name in unlogged:
                kept[name] = float(total / count)
            else:
                self.log(f"{stage}/{name}", (total / count).float(), prog_bar=name in prog_bar)
                if self.trainer.world_size > 1:
                    no_sync_dist_advice_for(f"{stage}/{name}")
        return kept


@functools.cache
def no_sync_dist_advice_for(name: str) -> None:
    """Lightning recommends sync_dist=True for a value logged at an epoch's end under DDP; ``name``'s is summed over
    the ranks already, so the recommendation (which made users doubt correct metrics) is left out for it alone."""
    warnings.filterwarnings("ignore", message=re.escape(f"It is recommended to use `self.log({name!r}, ..., "
                                                        f"sync_dist=True)`"))

"""Lightning's training, validation and test steps as one ``_step(batch, stage)`` of the module's own.

    class MyModule(StageSteps, L.LightningModule):   # before LightningModule, whose hooks it replaces
        def _step(self, batch, stage: str) -> torch.Tensor: ...   # stage: "train", "val" or "test"
"""

from __future__ import annotations


class StageSteps:
    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

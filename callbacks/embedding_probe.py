"""At the end of fit: the embedding probes (analysis/embedding_probes.py) on the best checkpoint's encoder.

``data`` is the labelled datamodule the probes train and test on (the autoencoder may have trained on
other frames: STL-10 unlabeled, SVHN extra, another LunarLander run); ``None`` uses the trainer's.
The results go to the loggers and to ``trainer.callback_metrics`` (hence results.json) as ``probe/*``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from analysis.embedding_probes import PROBE_GRID, compute_embeddings, mean_baseline, probe_grid
from analysis.perceptual_study import probe_metrics
from framework.combinations import TARGETS
from framework.errors import ConfigError

log = logging.getLogger(__name__)


class EmbeddingProbe(L.Callback):
    def __init__(self, data=None, task: str = "regression", num_classes: int = 10, grid=PROBE_GRID,
                 max_epochs: int = 500, patience: int = 25, batch_size: int = 512, seed: int = 0):
        self.data, self.task, self.num_classes, self.grid = data, task, num_classes, [list(h) for h in grid]
        self.options = {"max_epochs": max_epochs, "patience": patience, "batch_size": batch_size, "seed": seed}
        self.result: dict | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Before training: the probe's task must be what its data's targets are, and its data must be there."""
        data = self.data if self.data is not None else trainer.datamodule
        data_task = getattr(data, "task", self.task)
        if data_task == "unlabeled":
            raise ConfigError(f"The embedding probe needs labelled data, but {type(data).__name__} has no labels; give "
                              f"callbacks.probe.data a labelled datamodule (as experiment=perceptual_stl10 does).")
        if data_task != self.task:
            raise ConfigError(f"Config key 'callbacks.probe.task' is {self.task!r}, but the probe's data "
                              f"({type(data).__name__}) has {TARGETS[data_task]}; set "
                              f"callbacks.probe.task={data_task}.")
        if self.data is not None and stage == "fit":
            self.check_probe_data(trainer.datamodule)

    def check_probe_data(self, run_data) -> None:
        """Before training, not after it: the probe's files are there and its images are shaped as the run's."""
        if hasattr(self.data, "check_files"):
            self.data.check_files()
        shapes = [data.sample_shape() if hasattr(data, "sample_shape") else None for data in (self.data, run_data)]
        if None not in shapes and shapes[0] != shapes[1]:
            raise ConfigError(f"The embedding probe's data ({type(self.data).__name__}, callbacks.probe.data) hands "
                              f"the encoder inputs of shape {list(shapes[0])}, the run's data {list(shapes[1])}, which "
                              f"the encoder is built for; give callbacks.probe.data the run's image settings "
                              f"(image_size, pad_to, grayscale).")

    def run(self, model: L.LightningModule, datamodule) -> dict:
        embeddings = compute_embeddings(model, datamodule, self.options["batch_size"])
        result = probe_grid(embeddings, self.task, self.grid, self.num_classes, **self.options)
        result["baseline"] = mean_baseline(embeddings, self.task)
        result["loss_network_weights"] = getattr(model, "loss_network_weights", None)
        return result

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best and Path(best).is_file():  # the authors reload the best validation checkpoint
            pl_module.load_state_dict(torch.load(best, map_location=pl_module.device, weights_only=False)["state_dict"])
        self.result = self.run(pl_module, self.data if self.data is not None else trainer.datamodule)
        metrics = probe_metrics(self.result)
        log.info(f"Embedding probe: {metrics} (hidden {self.result['hidden']})")
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in metrics.items()})

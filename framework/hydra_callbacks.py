"""Hydra callbacks (``hydra.callbacks`` in conf/hydra/default.yaml)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class PrintSweepDir(Callback):
    """After a multirun, print where its jobs wrote and the command that summarises them."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.job.name != "train":
            return
        sweep_dir = config.hydra.sweep.dir
        print(f"sweep directory: {sweep_dir}")
        print(f"summarise it with: python evaluate.py runs={sweep_dir}")

"""A monitored metric the run does not log: one sentence naming its config key, not Lightning's traceback.

Checkpointing and early stopping monitor ``optimized_metric`` (or their own ``monitor``); which metrics a run
logs is known only once it has logged them, so this callback checks then, before they read them.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig

from framework.errors import ConfigError


def monitor_keys(cfg: DictConfig) -> dict[str, str]:
    """{monitored metric: the config key that chose it} for the configured callbacks."""
    keys = {}
    for name, node in (cfg.get("callbacks") or {}).items():
        metric = node.get("monitor") if isinstance(node, DictConfig) else None
        if metric is not None:
            keys.setdefault(metric, "optimized_metric" if metric == cfg.get("optimized_metric")
                            else f"callbacks.{name}.monitor")
    return keys


def logged_names(metrics) -> str:
    """The metrics a run has logged, as a refusal lists them: not the learning rates, nor ModelCheckpoint's epoch and
    step."""
    return ", ".join(sorted(name for name in metrics if name not in ("epoch", "step") and not name.startswith("lr-")))


class MonitoredMetricsLogged(L.Callback):
    """After each validation, before checkpointing and early stopping read them: every metric they monitor then
    is logged. (Early stopping at the training epoch's end checks its metric then, and a checkpoint its train/
    metric when it saves: framework/checkpoints.py.)

    Place it before those callbacks in the trainer's list (Lightning runs checkpoint callbacks last anyway)."""

    def __init__(self, keys: dict[str, str]):
        self.keys = keys

    def check(self, trainer: L.Trainer) -> None:
        # Lightning's callbacks skip the sanity check, and every step under fast_dev_run, where this checks all the
        # same: a config tried with debug=fdr before a sweep fails as the real run would
        if trainer.sanity_checking:
            return
        for callback in trainer.callbacks:
            metric = getattr(callback, "monitor", None)
            if not isinstance(callback, EarlyStopping | ModelCheckpoint) or not metric:
                continue
            # EarlyStopping's (None for ModelCheckpoint): True, it reads the metric at the training epoch's end, by
            # which a metric logged in training (mi/ihyll at the epoch's start) is there; RunEarlyStopping checks then
            at_epoch_end = getattr(callback, "_check_on_train_epoch_end", None)
            checked_when_saved = metric.startswith("train/") and at_epoch_end is None  # a checkpoint's train/ metric
            if metric in trainer.callback_metrics or at_epoch_end or checked_when_saved:
                continue
            key = self.keys.get(metric, "optimized_metric")
            if metric.startswith("train/"):
                raise ConfigError(f"Config key '{key}' is {metric!r}, which {type(callback).__name__} checks after "
                                  f"each validation, before the epoch's train/ metrics are logged; monitor a val/ "
                                  f"metric or set callbacks.early_stopping.check_on_train_epoch_end=true.")
            raise ConfigError(f"Config key '{key}' is {metric!r}, which {type(callback).__name__} monitors, but "
                              f"this run logs no such metric; set {key} to one it logs "
                              f"({logged_names(trainer.callback_metrics)}).")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)


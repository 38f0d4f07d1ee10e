"""Whether a higher value of a metric is better: the default of ``optimized_mode`` (conf/train.yaml), which
checkpointing and early stopping use as their ``mode``.

    optimized_mode: ${metric_mode:${optimized_metric}}   # max for accuracies, min for losses, errors, distances

As Keras's ``mode="auto"``, the metric's name decides; ``optimized_mode=max|min`` on the command line overrides it.
Importing ``framework`` registers the resolver.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf

HIGHER_IS_BETTER = {"acc", "accuracy", "auc", "f1", "precision", "recall", "score"}
LOWER_IS_BETTER = {"loss", "error", "err", "distance", "reconstruction", "kld", "mse", "mae", "nll", "seconds"}


def metric_mode(metric: str | None) -> str:
    """'max' or 'min' by the words of the name (val/acc: max; val/loss, probe/test_mean_distance: min)."""
    if metric is None:
        return "max"  # nothing is monitored, and Lightning ignores the mode
    words = set(re.split(r"[/_.\-\s]+", str(metric).lower()))
    if words & HIGHER_IS_BETTER:
        return "max"
    if words & LOWER_IS_BETTER:
        return "min"
    from framework.errors import ConfigError  # here: importing framework stays light (framework.slurm_cluster)

    raise ConfigError(f"Config key 'optimized_mode' follows optimized_metric {metric!r}, whose name does not say "
                      f"whether higher is better; set optimized_mode=max or optimized_mode=min.")


OmegaConf.register_new_resolver("metric_mode", metric_mode, replace=True)

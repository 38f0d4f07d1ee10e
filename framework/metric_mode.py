"""Whether a higher value of a metric is better: the default of ``optimized_mode`` (conf/train.yaml), and of the
``mode`` of checkpointing and early stopping (conf/callbacks/), which follow their own ``monitor``:

    optimized_mode: ${metric_mode:${optimized_metric}}   # max for accuracies, min for losses, errors, distances
    mode: ${monitor_mode:${.monitor}}   # optimized_mode where the callback monitors optimized_metric, else by name

As Keras's ``mode="auto"``, the metric's name decides; ``optimized_mode=max|min`` (or a callback's ``mode``) on the
command line overrides it. Importing ``framework`` registers the resolvers.
"""

from __future__ import annotations

import difflib
import re

from omegaconf import OmegaConf

HIGHER_IS_BETTER = {"acc", "accuracy", "auc", "f1", "precision", "recall", "score"}
LOWER_IS_BETTER = {"loss", "error", "err", "distance", "reconstruction", "kld", "mse", "mae", "nll", "seconds"}


def metric_mode(metric: str | None, key: str = "optimized_mode", follows: str = "optimized_metric") -> str:
    """'max' or 'min' by the words of the name (val/acc: max; val/loss, probe/test_mean_distance: min); ``key`` is
    the config key whose value this is, ``follows`` the key that names the metric."""
    if metric is None:
        return "max"  # nothing is monitored, and Lightning ignores the mode
    from framework.errors import ConfigError  # here: importing framework stays light (framework.slurm_cluster)

    if not isinstance(metric, str):
        raise ConfigError(f"Config key '{follows}' is {metric!r}, but it must be the name of one metric (e.g. "
                          f"val/acc), or null.")
    words = set(re.split(r"[/_.\-\s]+", str(metric).lower()))
    higher, lower = sorted(words & HIGHER_IS_BETTER), sorted(words & LOWER_IS_BETTER)
    if higher and lower:  # f1_loss: a loss, though f1 alone is better higher
        raise ConfigError(f"Config key '{key}' follows {follows} {metric!r}, whose name has words of both kinds "
                          f"({', '.join(higher)}: higher is better; {', '.join(lower)}: lower is better); set "
                          f"{key}=max or {key}=min.")
    if higher or lower:
        return "max" if higher else "min"
    known = sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER)
    near = next(((word, close[0]) for word in sorted(words) if (close := difflib.get_close_matches(word, known, n=1))),
                None)
    spelling = f" ({near[0]!r}: did you mean {near[1]}?); fix its spelling, or" if near else ";"
    raise ConfigError(f"Config key '{key}' follows {follows} {metric!r}, whose name does not say whether higher is "
                      f"better{spelling} set {key}=max or {key}=min.")


def monitor_mode(monitor: str | None, *, _root_, _node_) -> str:
    """A callback's ``mode``: ``optimized_mode`` where its ``monitor`` is ``optimized_metric`` (so that
    ``optimized_mode=min`` reaches it), else by the monitored metric's name: ``callbacks.model_checkpoint.monitor=
    val/loss`` kept val/acc's max, and the "best" checkpoint was the one of the highest loss."""
    if monitor == _root_.get("optimized_metric"):
        return _root_.optimized_mode
    key = _node_._get_full_key(None)
    return metric_mode(monitor, key, f"{key.rsplit('.', 1)[0]}.monitor")


OmegaConf.register_new_resolver("metric_mode", metric_mode, replace=True)
OmegaConf.register_new_resolver("monitor_mode", monitor_mode, replace=True)

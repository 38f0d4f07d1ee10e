"""The paper's four panels for one run of the MI learning-rate callback, as one PNG.

LR vs epoch, I(H; Y) vs epochs completed (every layer, IHYLL and the reference IXY),
validation accuracy vs epochs completed, and validation accuracy vs IHYLL (the paper plots
test accuracy; a run only measures validation accuracy every epoch).

Usage::

    path = plot_history(json.load(open("mi_lr_history.json"))["history"], "mi_lr.png")
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict], path: str | Path) -> Path:
    """Draw the four panels from the callback's history records and save them as ``path``."""
    epochs = [r["epoch"] for r in history]
    figure, (lr_axis, mi_axis, acc_axis, scatter_axis) = plt.subplots(1, 4, figsize=(18, 4))
    with_lr = [r for r in history if r["lr"]]
    for group in with_lr[0]["lr"] if with_lr else []:
        lr_axis.plot([r["epoch"] for r in with_lr], [r["lr"][group] for r in with_lr], marker=".", label=group)
    lr_axis.set(xlabel="epoch", ylabel="learning rate", title="LR vs epoch")
    for layer in history[0]["mi"]:
        mi_axis.plot(epochs, [r["mi"][layer] for r in history], label=layer)
    mi_axis.plot(epochs, [r["ihyll"] for r in history], "k", linewidth=2, label="IHYLL")
    mi_axis.plot(epochs, [r["ixy"] for r in history], "k--", label="IXY")
    mi_axis.set(xlabel="epochs completed", ylabel="I(H; Y) [nats]", title="I vs epoch")
    measured = [r for r in history if r["val_acc"] is not None]
    acc_axis.plot([r["epoch"] for r in measured], [r["val_acc"] for r in measured], marker=".")
    acc_axis.set(xlabel="epochs completed", ylabel="validation accuracy", title="accuracy vs epoch")
    scatter_axis.scatter([r["ihyll"] for r in measured], [r["val_acc"] for r in measured],
                         c=[r["epoch"] for r in measured], cmap="viridis")
    scatter_axis.set(xlabel="IHYLL [nats]", ylabel="validation accuracy", title="accuracy vs IHYLL")
    for axis in (lr_axis, mi_axis):
        axis.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


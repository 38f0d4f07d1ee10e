"""The paper's four panels for one run of the MI learning-rate callback, as one PNG.

LR vs epoch, I(H; Y) vs epochs completed (every layer, IHYLL and the reference IXY),
accuracy vs epochs completed, and accuracy vs IHYLL: test accuracy where the run measured it
every epoch (the callback's ``test_every_epoch``, as the paper plots), else validation accuracy.

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
    # test_acc of record t is measured after epoch t; val_acc of record t (taken at its start) after epoch t - 1.
    kind, shift = ("test", 1) if any(r.get("test_acc") is not None for r in history) else ("val", 0)
    measured = [(r["epoch"] + shift, r[f"{kind}_acc"]) for r in history if r.get(f"{kind}_acc") is not None]
    ihyll = {r["epoch"]: r["ihyll"] for r in history}  # measured at the start of that epoch
    acc_axis.plot([e for e, _ in measured], [acc for _, acc in measured], marker=".")
    acc_axis.set(xlabel="epochs completed", ylabel=f"{kind} accuracy", title="accuracy vs epoch")
    paired = [(ihyll[e], acc, e) for e, acc in measured if e in ihyll]
    scatter_axis.scatter([p[0] for p in paired], [p[1] for p in paired], c=[p[2] for p in paired], cmap="viridis")
    scatter_axis.set(xlabel="IHYLL [nats]", ylabel=f"{kind} accuracy", title="accuracy vs IHYLL")
    for axis in (lr_axis, mi_axis):
        axis.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


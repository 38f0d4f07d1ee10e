"""Embedding probes (seed 003): how much of a label a frozen encoder's embedding holds.

Embeddings of the train/val/test splits are computed once, batched, on the model's device; then the
authors' grid of small MLPs is trained on them (on standardised embeddings, see ``Probe``; Adam, MSE on
the target: one-hot classes or (x, y) positions, early stopping on validation loss) and the net with the
lowest validation loss is tested: accuracy (classification) or mean Euclidean distance between predicted
and true positions (regression).

    embeddings = compute_embeddings(model, datamodule)           # {"train": (X, Y), "val": ..., "test": ...}
    result = probe_grid(embeddings, task="regression")         # {"test_metric": ..., "hidden": [64, 32], ...}
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

PROBE_GRID = ([], [32], [64], [32, 32], [64, 32], [64, 64], [128, 128])
SPLITS = ("train", "val", "test")


@torch.no_grad()
def compute_embeddings(model: nn.Module, datamodule, batch_size: int = 512) -> dict[str, tuple[torch.Tensor, ...]]:
    """(embedding, target) of every item of each split, in order, on the CPU; the model is put in eval mode."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    embeddings = {}
    for split in SPLITS:
        dataset = datamodule.datasets[split]
        parts = []
        for start in range(0, len(dataset), batch_size):
            images = dataset.images[start : start + batch_size].to(device)
            images, _ = datamodule.on_after_batch_transfer((images, None), 0)
            parts.append(model(images).float().cpu())
        embeddings[split] = (torch.cat(parts), dataset.targets.clone())
    model.train(was_training)
    return embeddings


def mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Sequential:
    layers, width = [], inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.LeakyReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, outputs))


class Probe(nn.Module):
    """An MLP on the embeddings centred and divided by one common scale, predicting the offset from the mean target.

    Both are affine maps the first and last layers could learn, so the nets it can express are the authors';
    only their training is better conditioned: a briefly trained encoder's embeddings can spread 1e-3, which
    asks for weights ~1000x larger than unit-scale ones, ~1e5 steps of Adam at lr 1e-3; and a bias starting
    at 0 would spend hundreds of steps walking to the mean position.
    """

    def __init__(self, hidden: list[int], x: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.net = mlp(x.shape[1], hidden, y.shape[1])
        # One scale for all dimensions: per-dimension scales would blow up a dimension nearly constant in training
        scale = x.var(0).mean().sqrt()
        self.register_buffer("x_mean", x.mean(0))
        self.register_buffer("x_scale", scale if scale > 0 else torch.ones(()))
        self.register_buffer("y_mean", y.mean(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_scale) + self.y_mean


def regression_targets(targets: torch.Tensor, task: str, num_classes: int) -> torch.Tensor:
    return F.one_hot(targets.long(), num_classes).float() if task == "classification" else targets.float()


def train_probe(hidden: list[int], train: tuple, val: tuple, max_epochs: int, patience: int,
                batch_size: int, seed: int) -> tuple[nn.Module, float]:
    """One probe (``Probe``: the MLP on standardised embeddings) trained with MSE until the validation loss has
    not improved for ``patience`` epochs; returns the net at its best epoch and that validation loss."""
    generator = torch.Generator().manual_seed(seed)
    (x, y), (x_val, y_val) = train, val
    with torch.random.fork_rng(devices=[]):  # the layers' initialisation, leaving the run's random state as it was
        torch.manual_seed(seed)
        net = Probe(hidden, x, y)
    optimizer = torch.optim.Adam(net.parameters())
    best_loss, best_state, waited = float("inf"), copy.deepcopy(net.state_dict()), 0
    for _ in range(max_epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad()
            F.mse_loss(net(x[index]), y[index]).backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = F.mse_loss(net(x_val), y_val).item()
        if val_loss < best_loss:
            best_loss, best_state, waited = val_loss, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    net.load_state_dict(best_state)
    return net.eval(), best_loss


def mean_distance(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """The positioning metric (LunarLander's probe/test_mean_distance): the mean Euclidean distance between predicted
    and true points [N, D], in the observation's units; ``predicted`` may be one point for all."""
    return torch.linalg.vector_norm(predicted.double() - true.double(), dim=-1).mean().item()


def probe_metric(predictions: torch.Tensor, targets: torch.Tensor, task: str) -> float:
    if task == "classification":
        return (predictions.argmax(1) == targets.long()).float().mean().item()
    return mean_distance(predictions, targets)


def probe_grid(embeddings: dict, task: str, grid=PROBE_GRID, num_classes: int = 10, max_epochs: int = 500,
               patience: int = 25, batch_size: int = 512, seed: int = 0) -> dict:
    """Train every probe of ``grid``, keep the lowest validation loss, report its test metric."""
    if task not in ("classification", "regression"):
        raise ValueError(f"probe task is {task!r}, but it must be 'classification' or 'regression'")
    splits = {split: (x, regression_targets(y, task, num_classes)) for split, (x, y) in embeddings.items()}
    val_losses, best = [], None
    for hidden in grid:
        net, val_loss = train_probe(list(hidden), splits["train"], splits["val"], max_epochs, patience, batch_size,
                                    seed)
        val_losses.append(val_loss)
        if best is None or val_loss < best[1]:
            best = (list(hidden), val_loss, net)
    hidden, val_loss, net = best
    with torch.no_grad():
        predictions = net(embeddings["test"][0])
    return {"task": task, "metric": "accuracy" if task == "classification" else "mean_distance",
            "test_metric": probe_metric(predictions, embeddings["test"][1], task), "hidden": hidden,
            "val_loss": val_loss, "val_losses": val_losses, "grid": [list(h) for h in grid]}


def mean_baseline(embeddings: dict, task: str) -> float:
    """The test metric of predicting the training mean position (regression) or the majority class."""
    targets, test = embeddings["train"][1], embeddings["test"][1]
    if task == "classification":
        majority = targets.long().bincount().argmax()
        return (test.long() == majority).float().mean().item()
    return mean_distance(targets.float().mean(0), test)

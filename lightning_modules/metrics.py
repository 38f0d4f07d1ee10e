"""Metrics shared by model families that are not in torchmetrics.

    distance = MeanEuclideanDistance()
    distance.update(predicted_xy, true_xy)    # [N, 2] each, e.g. LunarLander lander positions
    distance.compute()                        # mean over all samples of ||predicted - true||_2
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class MeanEuclideanDistance(Metric):
    """Mean L2 distance between predicted and true points ``[N, D]`` (the LunarLander positioning metric)."""

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape != target.shape or preds.ndim != 2:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must both be [N, D]")
        distances = torch.linalg.vector_norm(preds.double() - target.double(), dim=1)
        self.total += distances.sum()
        self.count += distances.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()

"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C) and its learning-rate schedule.

Every parameter w_k takes the step ``eta / (mu + h_kk) * dE/dw_k``, where h_kk estimates the diagonal of
the Gauss-Newton approximation of the Hessian. The estimate is LeCun's: second derivatives are
back-propagated like first derivatives, with squared weights and squared inputs, dropping the
off-diagonal terms and the squashing function's second derivative (so every h_kk >= 0):

    d2E/da_i^2 = f'(a_i)^2 d2E/dx_i^2      d2E/dx_j^2 = sum_i w_ij^2 d2E/da_i^2      d2E/dw_ij^2 = x_j^2 d2E/da_i^2

summed over the connections that share a weight, and averaged over a few hundred samples before each
pass (:class:`callbacks.hessian_estimation.HessianEstimation`). Every layer here is linear in its
input and in each of its parameters, so running it on squared inputs with squared parameters and
asking autograd for the gradient with ``d2E/da^2`` as the output gradient gives both sums at once.

The paper updates after every sample. A mini-batch of B samples whose loss is the batch mean takes
the step ``samples_per_step * eta / (mu + h_kk) * mean gradient``: with ``samples_per_step = B`` that is
the sum of the B online steps taken at the same point, so the paper's eta keeps its meaning.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.optim.lr_scheduler import LRScheduler

from framework.errors import ConfigError


def layer_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Fully connected layers read their input flattened (C5's 120 maps of 1x1 feed F6)."""
    return x.flatten(1) if isinstance(layer, nn.Linear) else x


def diagonal_gauss_newton(
    layers: Sequence[nn.Module],
    squash: Callable[[torch.Tensor], torch.Tensor],
    squash_derivative: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    output_curvature: float,
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample average of LeCun's diagonal Gauss-Newton estimate d2E/dw^2 for every parameter.

    ``layers`` are applied in turn, each followed by ``squash``; ``output_curvature`` is d2E/dx^2 of
    the loss with respect to each unit of the last layer's squashed output.
    """
    inputs, pre_activations = [], []
    with torch.no_grad():
        x = images
        for layer in layers:
            x = layer_input(layer, x)
            inputs.append(x)
            pre_activations.append(layer(x))
            x = squash(pre_activations[-1])
    curvature = torch.full_like(x, output_curvature)
    diagonal = {}
    for depth in reversed(range(len(layers))):
        layer, a = layers[depth], pre_activations[depth]
        curvature_a = curvature * squash_derivative(a).square()
        names, params = zip(*layer.named_parameters(), strict=True)
        squared = [p.detach().square().requires_grad_() for p in params]
        squared_input = inputs[depth].square().requires_grad_()
        with torch.enable_grad():
            out = functional_call(layer, dict(zip(names, squared, strict=True)), (squared_input,))
            grads = torch.autograd.grad(out, (squared_input, *squared), curvature_a)
        for param, grad in zip(params, grads[1:], strict=True):
            diagonal[param] = grad / len(images)
        if depth > 0:
            curvature = grads[0].reshape(pre_activations[depth - 1].shape)
    return diagonal


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt: ``w -= samples_per_step * lr / (mu + h) * grad``.

    ``h`` (one tensor per parameter) comes from :meth:`set_hessian_diagonal`; a step before any
    estimate is an error rather than a silent plain-gradient step of size lr / mu.
    """

    def __init__(self, params, lr: float = 5e-4, mu: float = 0.02, samples_per_step: int = 1):
        if lr <= 0 or mu <= 0 or samples_per_step < 1:
            raise ConfigError(f"Config key 'model.optimizer' has lr={lr}, mu={mu}, samples_per_step="
                              f"{samples_per_step}, but SDLM needs lr > 0, mu > 0 and samples_per_step >= 1.")
        super().__init__(params, {"lr": lr, "mu": mu, "samples_per_step": samples_per_step})

    @torch.no_grad()
    def set_hessian_diagonal(self, diagonal: dict[torch.Tensor, torch.Tensor]) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param]["hessian_diagonal"] = diagonal[param].detach().to(param).clone()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                hessian = self.state[param].get("hessian_diagonal")
                if hessian is None:
                    raise RuntimeError("SDLM.step before set_hessian_diagonal: add the HessianEstimation callback "
                                       "(callbacks.hessian_estimation), which estimates it before every epoch.")
                param.addcdiv_(param.grad, hessian + group["mu"], value=-group["lr"] * group["samples_per_step"])
        return loss


class PiecewiseConstantLR(LRScheduler):
    """``values[0]`` for ``epochs[0]`` epochs, then ``values[1]`` for ``epochs[1]``, ...; the last value thereafter.

    LeCun et al. 1998: values 5e-4, 2e-4, 1e-4, 5e-5, 1e-5 for epochs 2, 3, 3, 4.
    """

    def __init__(self, optimizer, values: Sequence[float], epochs: Sequence[int], last_epoch: int = -1):
        if len(epochs) != len(values) - 1:
            raise ConfigError(f"Config key 'model.scheduler.epochs' has {len(epochs)} epoch counts and "
                              f"'model.scheduler.values' {len(values)} values, but PiecewiseConstantLR needs one epoch "
                              f"count for every value except the last; give {len(values) - 1} epoch counts.")
        set_rates = {group["lr"] for group in optimizer.param_groups}
        if last_epoch == -1 and set_rates != {values[0]}:  # the schedule overrides the optimizer's own rate
            raise ConfigError(f"Config key 'model.optimizer.lr' is {', '.join(map(str, sorted(set_rates)))}, but "
                              f"PiecewiseConstantLR sets every epoch's rate from 'model.scheduler.values', whose first "
                              f"is {values[0]}, so it would have no effect; set the rates in model.scheduler.values "
                              f"instead (model.optimizer.lr must equal their first).")
        self.values, self.boundaries = list(values), list(itertools.accumulate(epochs))
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        value = self.values[bisect.bisect_right(self.boundaries, self.last_epoch)]
        return [value for _ in self.optimizer.param_groups]

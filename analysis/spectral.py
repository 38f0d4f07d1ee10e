"""Upper Lipschitz bounds per layer (Szegedy et al. 2014, section 4.3, Table 5).

* fully connected: the largest singular value of W;
* convolution, stride 1, zero padding p, on n x n inputs: an upper bound from the 2-D DFT of the kernel at
  m = n + 2p (Sedghi et al. 2019). The DFT block-diagonalises a circular convolution on m x m inputs: its
  singular values are those of the F x C matrices fft2(kernel, (m, m))[:, :, u, v] over all m^2 frequencies
  (u, v). The padded convolution is zero padding (an isometry into m x m) followed by a valid convolution,
  whose outputs are a subset of the circular one's, so its norm is at most the circular one's. (The DFT at n
  is no bound: a padded convolution on n x n is not a part of the circular one on n x n.);
* convolution, stride > 1, other padding modes (or any linear map): power iteration on A^T A, with A^T from
  autograd, until the estimate changes by less than a relative ``tol`` (it rises towards the norm from below);
* max-pooling <= 1 over non-overlapping windows (the zoo's 2x2, stride 2; overlapping ones, AlexNet's 3x3 with
  stride 2, can double a norm: this table multiplies none in), ReLU <= 1, sigmoid <= 1/4 (the largest slope),
  multiplied in per layer.

    sigma = conv_norm(conv, n=13)    # the DFT at 13 + 2 x padding for a stride-1 convolution
    rows = network_bounds(SzegedyNet(kind="conv"))
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATION_FACTOR = {"sigmoid": 0.25, "relu": 1.0, "identity": 1.0}


def linear_norm(weight: torch.Tensor) -> float:
    """Largest singular value of a fully connected layer's weight matrix."""
    return float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))


def conv_norm_dft(kernel: torch.Tensor, n: int | tuple[int, int]) -> float:
    """Operator norm of the stride-1 circular convolution with ``kernel [F, C, k, k]`` on n x n inputs (or on
    height x width ones, n = (height, width))."""
    kernel, size = kernel.detach().double(), (n, n) if isinstance(n, int) else tuple(n)
    if kernel.shape[-2] > size[0] or kernel.shape[-1] > size[1]:
        raise ValueError(f"kernel {tuple(kernel.shape[-2:])} is larger than the {size[0]}x{size[1]} input")
    spectrum = torch.fft.fft2(kernel, s=size)  # [F, C, h, w]
    return float(torch.linalg.matrix_norm(spectrum.permute(2, 3, 0, 1), ord=2).max())


def power_iteration_norm(linear_map, input_shape: tuple[int, ...], tol: float = 1e-8, max_iterations: int = 10_000,
                         seed: int = 0, dtype=torch.float64) -> float:
    """Largest singular value of a linear map (a function of one tensor) by power iteration on A^T A, until the
    estimate changes by less than ``tol`` relative. It rises towards the norm from below, about as 1 / iterations
    where the top singular values crowd (a convolution's frequencies): there it stops up to a few thousand
    times tol short."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(input_shape, generator=generator, dtype=dtype)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(max_iterations):
        x = v.detach().requires_grad_(True)
        y = linear_map(x)
        (w,) = torch.autograd.grad(y, x, grad_outputs=y.detach())  # A^T A v
        previous, sigma = sigma, float(w.norm().sqrt())
        v = w / w.norm()
        if sigma - previous <= tol * sigma:
            break
    return sigma


def dft_describes(conv: nn.Conv2d) -> bool:
    """Whether the zero-padded DFT bound describes ``conv``: stride 1, no dilation, one group, zero padding."""
    return (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


def conv_norm(conv: nn.Conv2d, n: int) -> float:
    """Upper bound of a Conv2d on n x n inputs: where the DFT describes it (dft_describes), with zero padding p, the
    DFT bound at the padded size n + 2p, otherwise power iteration (on the layer's own padding, without its bias)."""
    if dft_describes(conv):
        return conv_norm_dft(conv.weight, (n + 2 * conv.padding[0], n + 2 * conv.padding[1]))
    weight = conv.weight.detach().double()

    def linear_map(x):
        return conv._conv_forward(x, weight, None)

    return power_iteration_norm(linear_map, (1, conv.in_channels, n, n))


def network_bounds(net) -> list[dict]:
    """One row per layer of a SzegedyNet, at the input size it was built for: operator norm, activation factor and
    their product."""
    rows, size = [], net.input_shape[-1]
    for name in net.layer_names:
        layer = getattr(net, name)
        if isinstance(layer, nn.Conv2d):
            sigma = conv_norm(layer, size)
            shape = f"{layer.out_channels}x{layer.in_channels}x{layer.kernel_size[0]}x{layer.kernel_size[1]}"
            activation = "relu + max-pool"
            factor = 1.0
            size = (size - layer.kernel_size[0] + 1) // net.pool.kernel_size
        else:
            sigma, shape = linear_norm(layer.weight), f"{layer.in_features}->{layer.out_features}"
            activation = "identity" if name == "output" else ("relu" if net.kind == "conv" else "sigmoid")
            factor = ACTIVATION_FACTOR[activation]
        rows.append({"layer": name, "size": shape, "sigma": sigma, "activation": activation,
                     "bound": sigma * factor})
    return rows


def alexnet_conv_bounds(features: nn.Sequential, image_size: int = 224) -> list[dict]:
    """Upper bounds of every convolution in an AlexNet ``features`` stack at its real input size."""
    rows, x = [], torch.zeros(1, 3, image_size, image_size)
    for module in features:
        if isinstance(module, nn.Conv2d):
            n = x.shape[-1]
            method = "DFT" if dft_describes(module) else f"power iteration (stride {module.stride[0]})"
            rows.append({"layer": f"conv {len(rows) + 1}",
                         "size": f"{module.kernel_size[0]}x{module.kernel_size[1]}, {module.in_channels}->"
                                 f"{module.out_channels}, input {n}x{n}",
                         "sigma": conv_norm(module, n), "method": method})
        with torch.no_grad():
            x = module(x)
    return rows

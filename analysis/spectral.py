"""Upper Lipschitz bounds per layer (Szegedy et al. 2014, section 4.3, Table 5).

* fully connected: the largest singular value of W;
* convolution, stride 1: exact, from the 2-D DFT of the kernel (Sedghi et al. 2019). A circular
  convolution on n x n inputs is block-diagonalised by the DFT: its singular values are those of the
  F x C matrices fft2(kernel, (n, n))[:, :, u, v] over all n^2 frequencies (u, v);
* convolution, stride > 1 (or any linear map): power iteration on A^T A, with A^T from autograd;
* max-pooling <= 1, ReLU <= 1, sigmoid <= 1/4 (the largest slope), multiplied in per layer.

    sigma = conv_norm_dft(conv.weight, n=13)
    rows = network_bounds(SzegedyNet(kind="conv"))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_FACTOR = {"sigmoid": 0.25, "relu": 1.0, "identity": 1.0}


def linear_norm(weight: torch.Tensor) -> float:
    """Largest singular value of a fully connected layer's weight matrix."""
    return float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))


def conv_norm_dft(kernel: torch.Tensor, n: int) -> float:
    """Exact operator norm of the stride-1 circular convolution with ``kernel [F, C, k, k]`` on n x n inputs."""
    kernel = kernel.detach().double()
    if kernel.shape[-1] > n or kernel.shape[-2] > n:
        raise ValueError(f"kernel {tuple(kernel.shape[-2:])} is larger than the {n}x{n} input")
    spectrum = torch.fft.fft2(kernel, s=(n, n))  # [F, C, n, n]
    return float(torch.linalg.matrix_norm(spectrum.permute(2, 3, 0, 1), ord=2).max())


def power_iteration_norm(linear_map, input_shape: tuple[int, ...], iterations: int = 200, seed: int = 0,
                         dtype=torch.float64) -> float:
    """Largest singular value of a linear map (a function of one tensor) by power iteration on A^T A."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(input_shape, generator=generator, dtype=dtype)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(iterations):
        x = v.detach().requires_grad_(True)
        y = linear_map(x)
        (w,) = torch.autograd.grad(y, x, grad_outputs=y.detach())  # A^T A v
        sigma = float(w.norm().sqrt())
        v = w / w.norm()
    return sigma


def conv_norm(conv: nn.Conv2d, n: int, iterations: int = 200) -> float:
    """Upper bound of a Conv2d on n x n inputs: the DFT bound at stride 1, power iteration otherwise."""
    if conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1:
        return conv_norm_dft(conv.weight, n)
    weight = conv.weight.detach().double()

    def linear_map(x):
        return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    return power_iteration_norm(linear_map, (1, conv.in_channels, n, n), iterations)


def network_bounds(net, image_size: int = 28) -> list[dict]:
    """One row per layer of a SzegedyNet: operator norm, activation factor and their product."""
    rows, size = [], image_size
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


def alexnet_conv_bounds(features: nn.Sequential, image_size: int = 224, iterations: int = 100) -> list[dict]:
    """Upper bounds of every convolution in an AlexNet ``features`` stack at its real input size."""
    rows, x = [], torch.zeros(1, 3, image_size, image_size)
    for module in features:
        if isinstance(module, nn.Conv2d):
            n = x.shape[-1]
            method = "DFT" if module.stride == (1, 1) else f"power iteration (stride {module.stride[0]})"
            rows.append({"layer": f"conv {len(rows) + 1}",
                         "size": f"{module.kernel_size[0]}x{module.kernel_size[1]}, {module.in_channels}->"
                                 f"{module.out_channels}, input {n}x{n}",
                         "sigma": conv_norm(module, n, iterations), "method": method})
        with torch.no_grad():
            x = module(x)
    return rows

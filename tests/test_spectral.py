"""Per-layer upper Lipschitz bounds (analysis/spectral.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.spectral import conv_norm, conv_norm_dft, linear_norm, network_bounds, power_iteration_norm
from lightning_modules.szegedy import SzegedyNet


def dense_matrix(linear_map, input_shape):
    """The map's matrix, one column per input basis vector."""
    basis = torch.eye(torch.Size(input_shape).numel(), dtype=torch.float64).view(-1, *input_shape[1:])
    return linear_map(basis).flatten(1).T


def test_dft_norm_equals_power_iteration_and_the_dense_matrix_of_a_circular_convolution():
    torch.manual_seed(0)
    kernel = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    n = 6

    def circular(x):  # stride 1 on the n x n torus: y[f, i, j] = sum_c,a,b K[f, c, a, b] x[c, i + a, j + b]
        return F.conv2d(F.pad(x, (0, 2, 0, 2), mode="circular"), kernel)

    dense = torch.linalg.matrix_norm(dense_matrix(circular, (1, 3, n, n)), ord=2).item()
    assert conv_norm_dft(kernel, n) == pytest.approx(dense, rel=1e-10)
    assert power_iteration_norm(circular, (1, 3, n, n), iterations=500) == pytest.approx(dense, rel=1e-6)


def test_power_iteration_bounds_a_strided_zero_padded_convolution_exactly():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).double()
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 2, 7, 7)), ord=2).item()
    assert conv_norm(conv, 7, iterations=500) == pytest.approx(dense, rel=1e-6)
    # Zero padding only removes wrap-around terms: the stride-1 DFT bound stays an upper bound.
    conv.stride = (1, 1)
    dense_stride1 = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 2, 7, 7)), ord=2).item()
    assert dense_stride1 <= conv_norm(conv, 9) + 1e-9


def test_network_bounds_multiply_in_the_activation_slopes():
    net = SzegedyNet(kind="fc", hidden=[20, 30])
    rows = network_bounds(net)
    assert [row["layer"] for row in rows] == ["fc1", "fc2", "output"]
    expected = torch.linalg.svdvals(net.fc1.weight.double())[0].item()
    assert rows[0]["sigma"] == pytest.approx(expected) == linear_norm(net.fc1.weight)
    assert rows[0]["bound"] == pytest.approx(expected / 4)  # sigmoid: slope at most 1/4
    assert rows[2]["bound"] == pytest.approx(rows[2]["sigma"])
    conv_net = SzegedyNet(kind="conv", hidden=[10], conv_channels=4)
    conv_rows = network_bounds(conv_net)
    assert conv_rows[0]["sigma"] == pytest.approx(conv_norm_dft(conv_net.conv.weight, 28))
    assert conv_rows[0]["bound"] == conv_rows[0]["sigma"]  # ReLU and max-pool are 1-Lipschitz
    assert conv_rows[1]["size"] == "576->10"  # 4 channels x 12 x 12 after the 24 -> 12 pooling

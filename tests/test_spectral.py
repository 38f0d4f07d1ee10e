"""Per-layer upper Lipschitz bounds (analysis/spectral.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.spectral import (
    alexnet_conv_bounds,
    conv_norm,
    conv_norm_dft,
    linear_norm,
    network_bounds,
    power_iteration_norm,
)
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
    assert power_iteration_norm(circular, (1, 3, n, n)) == pytest.approx(dense, rel=1e-6)


def test_power_iteration_bounds_a_strided_zero_padded_convolution_exactly():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).double()
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 2, 7, 7)), ord=2).item()
    assert conv_norm(conv, 7) == pytest.approx(dense, rel=1e-6)


def test_the_dft_bound_of_a_zero_padded_convolution_is_taken_at_the_padded_size():
    # A 3x3 checkerboard, padding 1, on 13 x 13: the DFT at 13 gave 8.6547, below the true norm 8.7016. The
    # padded convolution is part of the circular one on 15 x 15, whose norm 8.7397 bounds it.
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]]))
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 1, 13, 13)), ord=2).item()
    assert dense == pytest.approx(8.7016, abs=1e-4) and conv_norm_dft(conv.weight, 13) < dense
    assert dense <= conv_norm(conv, 13) <= 1.05 * dense
    assert conv_norm(conv, 13) == conv_norm_dft(conv.weight, 15) == pytest.approx(8.7397, abs=1e-4)
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 5, padding=2, bias=False).double()  # several channels, AlexNet conv 2's padding
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 2, 9, 9)), ord=2).item()
    assert dense <= conv_norm(conv, 9) == conv_norm_dft(conv.weight, 13)


def test_power_iteration_runs_to_its_tolerance_where_the_top_singular_values_crowd():
    # Singular values 1 - t^2, t in [0, 1], as a convolution's frequencies crowd at its norm: the estimate rises
    # about as 1 / iterations; 200 fixed iterations stopped 6.3e-4 below the norm, 100 (AlexNet conv 1's) 1.3e-3.
    scale = (1 - torch.linspace(0, 1, 10_000, dtype=torch.float64) ** 2)
    assert power_iteration_norm(lambda x: x * scale, (10_000,)) == pytest.approx(1.0, rel=1e-4)
    features = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    rows = alexnet_conv_bounds(features, image_size=12)
    assert [row["method"] for row in rows] == ["power iteration (stride 2)", "DFT"]

    def strided(x):
        return F.conv2d(x, features[0].weight.double(), stride=2, padding=2)

    dense = torch.linalg.matrix_norm(dense_matrix(strided, (1, 3, 12, 12)), ord=2).item()
    assert rows[0]["sigma"] == pytest.approx(dense, rel=1e-6)
    assert rows[1]["sigma"] == conv_norm_dft(features[2].weight, 8)  # its 6 x 6 input padded by 1 on each side
    dilated = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2))  # stride 1, yet no DFT bound: so labelled
    assert [row["method"] for row in alexnet_conv_bounds(dilated, image_size=6)] == ["power iteration (stride 1)"]


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


def test_network_bounds_take_the_input_size_the_network_was_built_for():
    """A conv net built for 20 x 20 inputs is bounded at 20, not at MNIST's 28: the DFT at 28 fell below the true
    norm of a kernel whose peak frequency a 28-point grid misses (12.18 against 12.24 at 96 x 96)."""
    net = SzegedyNet(kind="conv", hidden=[10], conv_channels=2, image_size=20)
    with torch.no_grad():
        net.conv.weight.zero_()
        grid = torch.arange(net.conv.kernel_size[0], dtype=torch.float64)
        net.conv.weight[0, 0] = torch.cos(2 * torch.pi * (grid[:, None] + grid[None, :]) / 3)
    rows = network_bounds(net)
    assert rows[0]["sigma"] == conv_norm_dft(net.conv.weight, 20) != conv_norm_dft(net.conv.weight, 28)
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: net.conv._conv_forward(x, net.conv.weight.double(), None),
                                                  (1, 1, 20, 20)), ord=2).item()
    assert dense <= rows[0]["sigma"] + 1e-9  # an upper bound of the layer as built
    assert rows[1]["size"] == f"{2 * 8 * 8}->10"  # 20 - 5 + 1 = 16, pooled to 8


def test_dft_norm_on_a_rectangular_torus_matches_the_dense_matrix():
    """Height and width are not interchangeable: a 3 x 2 kernel on a 5 x 7 torus (the DFT at 7 x 5, or of the
    kernel transposed, gives 7.3707 against the true 7.2252); a kernel as large as the torus is allowed, a larger one
    refused (the DFT at a smaller size would silently crop it)."""
    torch.manual_seed(2)
    kernel = torch.randn(2, 3, 3, 2, dtype=torch.float64)

    def circular(x):
        return F.conv2d(F.pad(x, (0, 1, 0, 2), mode="circular"), kernel)

    dense = torch.linalg.matrix_norm(dense_matrix(circular, (1, 3, 5, 7)), ord=2).item()
    assert conv_norm_dft(kernel, (5, 7)) == pytest.approx(dense, rel=1e-10)
    assert conv_norm_dft(kernel, (7, 5)) == pytest.approx(7.3707, abs=1e-4)  # not the 5 x 7 one's norm
    square = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: F.conv2d(F.pad(x, (0, 2, 0, 2), mode="circular"), square),
                                                  (1, 3, 3, 3)), ord=2).item()
    assert conv_norm_dft(square, 3) == pytest.approx(dense, rel=1e-10)
    with pytest.raises(ValueError, match="larger than the 2x3 input"):
        conv_norm_dft(square, (2, 3))


@pytest.mark.parametrize("options", [{"padding": 2, "dilation": 2}, {"padding": 1, "groups": 2},
                                     {"padding": 1, "padding_mode": "circular"}])
def test_convolutions_the_zero_padded_dft_does_not_describe_are_bounded_by_power_iteration(options):
    """Dilation, groups and circular padding are no zero-padded stride-1 convolution of ``weight``: the DFT of the
    weight at n + 2p gave 1.142, 1.491 and 1.093 against the true 0.931, 1.212 and 1.066."""
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 4, 3, bias=False, **options).double()
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 4, 8, 8)), ord=2).item()
    assert conv_norm(conv, 8) == pytest.approx(dense, rel=1e-5)


def test_an_asymmetric_zero_padding_is_taken_per_side():
    """Padding (1, 2) on 8 x 8 inputs pads them to 10 x 12: the DFT bound is taken there, not at 10 x 10."""
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 4, 3, padding=(1, 2), bias=False).double()
    dense = torch.linalg.matrix_norm(dense_matrix(lambda x: conv(x), (1, 4, 8, 8)), ord=2).item()
    assert dense <= conv_norm(conv, 8) == conv_norm_dft(conv.weight, (10, 12)) != conv_norm_dft(conv.weight, 10)


def test_power_iteration_stops_at_a_relative_tolerance_whatever_the_scale_of_the_map():
    """The map scaled by 2^-10 (exact in floating point) runs the same iterations: its norm is exactly 2^-10 times
    the unscaled one's. An absolute tolerance of 1e-8 stopped the scaled one early."""
    scale = (1 - torch.linspace(0, 1, 10_000, dtype=torch.float64) ** 2)
    unscaled = power_iteration_norm(lambda x: x * scale, (10_000,))
    assert power_iteration_norm(lambda x: x * (scale * 2**-10), (10_000,)) == unscaled * 2**-10


def test_the_hidden_fully_connected_layers_of_a_conv_net_take_the_relu_slope():
    conv_net = SzegedyNet(kind="conv", hidden=[10], conv_channels=4)
    rows = network_bounds(conv_net)
    assert [row["activation"] for row in rows] == ["relu + max-pool", "relu", "identity"]
    assert rows[1]["bound"] == rows[1]["sigma"] == pytest.approx(linear_norm(conv_net.fc1.weight), rel=1e-12)

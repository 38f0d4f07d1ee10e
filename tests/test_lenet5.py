import pytest
import torch

from lightning_modules.lenet5 import (
    C3_CONNECTIONS,
    LeNet5,
    LeNet5Classic,
    Subsampling,
    digit_prototypes,
    scaled_tanh,
)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_classic_parameter_counts_per_layer_match_the_paper():
    net = LeNet5Classic()
    per_layer = {name: count(child) for name, child in net.named_children()}
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "output": 0}
    assert count(net) == 60_000


def test_output_shapes_for_32x32_input():
    x = torch.randn(5, 1, 32, 32)
    assert LeNet5Classic()(x).shape == (5, 10)
    assert LeNet5()(x).shape == (5, 10)
    assert LeNet5(in_channels=3)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    classic = LeNet5Classic()
    assert classic.features(x).shape == (5, 84)


def test_c3_connection_table_is_lecun_table_one():
    sizes = [len(c) for c in C3_CONNECTIONS]
    assert sizes == [3] * 6 + [4] * 9 + [6]
    # Each S2 map feeds exactly 10 C3 maps in Table I.
    uses = [sum(m in c for c in C3_CONNECTIONS) for m in range(6)]
    assert uses == [10] * 6
    # The dense kernel is zero exactly where Table I has no connection.
    c3 = LeNet5Classic().c3
    dense = c3.dense_weight()
    for out_map, inputs in enumerate(C3_CONNECTIONS):
        for in_map in range(6):
            nonzero = dense[out_map, in_map].abs().sum() > 0
            assert bool(nonzero) == (in_map in inputs)


def test_subsampling_is_sum_times_coefficient_plus_bias():
    layer = Subsampling(2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([2.0, -1.0]))
        layer.bias.copy_(torch.tensor([0.5, 1.0]))
    x = torch.arange(32, dtype=torch.float).view(1, 2, 4, 4)
    y = layer(x)
    window_sum = x[0, 0, :2, :2].sum()
    assert y.shape == (1, 2, 2, 2)
    assert torch.isclose(y[0, 0, 0, 0], 2.0 * window_sum + 0.5)
    assert torch.isclose(y[0, 1, 1, 1], -1.0 * x[0, 1, 2:, 2:].sum() + 1.0)


def test_rbf_prototypes_are_distinct_plus_minus_one_bitmaps():
    prototypes = digit_prototypes()
    assert prototypes.shape == (10, 84)
    assert set(prototypes.unique().tolist()) == {-1.0, 1.0}
    distances = torch.cdist(prototypes, prototypes)
    assert (distances + torch.eye(10) * 100).min() > 4  # every pair differs in several pixels


def test_rbf_output_is_squared_distance_to_the_prototypes():
    net = LeNet5Classic()
    x = torch.randn(3, 1, 32, 32)
    features = net.features(x)
    expected = ((features[:, None, :] - digit_prototypes()[None]) ** 2).sum(-1)
    torch.testing.assert_close(-net(x), expected)


def test_scaled_tanh_maps_plus_minus_one_to_itself():
    torch.testing.assert_close(scaled_tanh(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=2e-4, rtol=0)


def test_classic_losses():
    net = LeNet5Classic(criterion="rbf")
    scores = -torch.tensor([[1.0, 5.0, 9.0], [4.0, 2.0, 8.0]])
    targets = torch.tensor([0, 1])
    assert net.loss(scores, targets).item() == pytest.approx((1.0 + 2.0) / 2)
    map_net = LeNet5Classic(criterion="map", map_constant=0.1)
    distances = -scores
    per_sample = [d[t] + torch.log(torch.exp(torch.tensor(-0.1)) + torch.exp(-d).sum())
                  for d, t in zip(distances, targets, strict=True)]
    expected = sum(per_sample) / 2
    assert map_net.loss(scores, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="criterion"):
        LeNet5Classic(criterion="hinge")

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

# LeCun et al. 1998, Fig. 3 (the output RBF units' 7x12 target codes), digits 0..9 left to right, as transcribed
# in the public LeNet-5 reimplementations (e.g. the RBF_BITMAP tables of several GitHub LeNet-5 projects); the seed
# text has no figure to check them against.
FIGURE_3 = """
    .#####. ...##.. .#####. ####### .#####. .#####. ..####. ####### .#####. .#####.
    ....... ..###.. ....... .....## ....... ....... .##.... .....## ##...## ##..###
    ..###.. .####.. .#####. ....##. ....... ####### ##..... .....## ##...## ##...##
    .##.##. ...##.. ##...## ...##.. .##..## ##..... ##..... ....##. ##...## ##...##
    ##...## ...##.. #....## ..####. .##..## ##..... ######. ...##.. .#####. ##..###
    ##...## ...##.. ....##. .....## ###..## .####.. ###..## ...##.. ##...## .######
    ##...## ...##.. ..###.. .....## ##...## ..####. ##...## ..##... ##...## .....##
    ##...## ...##.. .##.... .....## ##...## .....## ##...## ..##... ##...## .....##
    .##.##. ...##.. ##..... ##...## ##..### ##...## ###..## ..##... ##...## ....##.
    ..###.. .###### ####### .#####. .###### .#####. .#####. ..##... .#####. .####..
    ....... ....... ....... ....... .....## ....... ....... ....... ....... .......
    ....... ....... ....... ....... .....## ....... ....... ....... ....... .......
"""

# LeCun et al. 1998, Table I: row i marks the C3 feature maps (columns 0..15) that S2 feature map i feeds.
TABLE_I = """
    0 X . . . X X X . . X X X X . X X
    1 X X . . . X X X . . X X X X . X
    2 X X X . . . X X X . . X . X X X
    3 . X X X . . X X X X . . X . X X
    4 . . X X X . . X X X X . X X . X
    5 . . . X X X . . X X X X . X X X
"""


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
    rows = [line.split()[1:] for line in TABLE_I.strip().splitlines()]  # rows: S2 maps, columns: C3 maps
    table = [tuple(m for m in range(6) if rows[m][j] == "X") for j in range(16)]
    assert table == [tuple(sorted(c)) for c in C3_CONNECTIONS]
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


def test_rbf_prototypes_are_the_bitmaps_of_figure_3():
    rows = [line.split() for line in FIGURE_3.strip().splitlines()]
    assert len(rows) == 12 and all(len(row) == 10 for row in rows)
    prototypes = digit_prototypes().view(10, 12, 7)
    for digit in range(10):
        drawn = "\n".join("".join("#" if v > 0 else "." for v in row) for row in prototypes[digit].tolist())
        assert drawn == "\n".join(row[digit] for row in rows), f"digit {digit}"


def test_every_parameter_starts_uniform_within_2_4_over_its_fan_in():
    torch.manual_seed(0)
    net = LeNet5Classic()
    fan_in = {"c1": 25, "s2": 4, "s4": 4, "c5": 400, "f6": 120}
    for name, param in net.named_parameters():
        param, layer = param.detach(), name.split(".")[0]
        if layer == "c3":  # each C3 map's own fan-in: 3, 4 or 6 S2 maps of 5x5
            per_map = torch.tensor([len(c) * 25 for c in C3_CONNECTIONS], dtype=torch.float)
            bound = 2.4 / (per_map[net.c3.out_index].view(-1, 1, 1) if name.endswith("weight") else per_map)
        else:
            bound = torch.tensor(2.4 / fan_in[layer])
        assert (param.abs() <= bound).all(), name
        if param.numel() >= 50:  # uniform over the whole range, not a constant or a narrower law
            assert (param.abs() / bound).max() > 0.9 and (param.abs() / bound).mean() == pytest.approx(0.5, abs=0.1)
    assert not torch.equal(net.s2.weight, torch.ones(6)) and net.s2.bias.abs().max() > 0


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


@pytest.mark.parametrize("experiment", ["lenet5_classic_mnist", "lenet5_classic_mnist_distorted"])
def test_the_classic_experiments_keep_the_papers_protocol(make_cfg, experiment):
    """LeCun et al. 1998 (docs/lenet5.md's table): all 60,000 training images (here the 200 written) for 20 passes,
    the last pass's weights tested, inputs with background -0.1 and foreground 1.175, SDLM with h on 500 samples, the
    MAP criterion, the paper's schedule (x 4 from the second pass: the experiment's deliberate change, as mu 0.05,
    batches of 16 and the first pass's re-estimation every 50 steps), and for the distorted run the affine family."""
    from hydra.utils import instantiate

    from lightning_modules.sdlm import SDLM

    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.trainer.max_epochs == 20 and cfg.optimized_metric is None and cfg.data.batch_size == 16
    data = instantiate(cfg.data)
    data.setup("fit")
    assert len(data.datasets["train"]) == 200 and len(data.datasets.get("val", ())) == 0
    images = data.to_float(data.datasets["train"].images[:32])
    assert images.shape[-2:] == (32, 32)
    assert (images.min().item(), images.max().item()) == pytest.approx((-0.1, 1.175), abs=1e-5)
    assert cfg.callbacks.hessian_estimation.num_samples == 500
    assert cfg.callbacks.hessian_estimation.first_epoch_every_n_steps == 50
    model = instantiate(cfg.model)
    assert model.net.criterion == "map"
    configured = model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "epoch"  # Lightning steps it once a pass, as the paper's eta
    assert isinstance(optimizer, SDLM) and {group["mu"] for group in optimizer.param_groups} == {0.05}
    paper = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert rates == pytest.approx([rate * (1 if epoch == 0 else 4) for epoch, rate in enumerate(paper)])
    distortion = cfg.data.get("distortion")
    if experiment.endswith("distorted"):
        assert dict(distortion) == {"translate": 2.0, "scale": 0.1, "squeeze": 0.1, "shear": 0.2,
                                    "original_fraction": 0.1}
    else:
        assert distortion is None

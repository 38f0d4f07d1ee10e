"""LeNet-5, classic (LeCun et al. 1998, as in seed 002) and modern, for 32x32 inputs.

Classic, trainable parameters per layer (asserted in tests/test_lenet5.py):

    C1 conv 5x5, 6 maps ............ 156     S2 subsampling, 1 coeff + 1 bias per map ... 12
    C3 conv 5x5, 16 maps, Table I .. 1,516   S4 subsampling .............................. 32
    C5 conv 5x5, 120 maps .......... 48,120  F6 full, 84 units ........................ 10,164
    output: 10 Euclidean RBF units with fixed +-1 prototypes (7x12 bitmaps) ............... 0
                                                                          total ...... 60,000

Every unit up to F6 is squashed by f(a) = 1.7159 tanh(2a/3). The RBF output is a distance
(smaller is better); ``forward`` returns its negative so that argmax predicts for both
networks. The classic loss is the RBF output of the correct class; LeCun's MAP criterion
(which adds a competitive term) is the option ``criterion="map"``.

Modern ("LeNet-5" in most libraries): ReLU, max-pooling, a full C3 and a linear 10-way
output trained with cross-entropy. The two are separate classes with separate names so that
nobody mistakes one for the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from framework.errors import ConfigError
from lightning_modules.sdlm import diagonal_gauss_newton, layer_input

# LeCun et al. 1998, Table I: which S2 maps feed each C3 map.
C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# The 7x12 stylised bitmaps of the digits (LeCun et al. 1998, Fig. 3), 12 rows of 7: '#' -> +1, '.' -> -1.
# As transcribed in the public LeNet-5 reimplementations; tests/test_lenet5.py checks them as pictures.
DIGIT_BITMAPS = {
    0: ".#####.|.......|..###..|.##.##.|##...##|##...##|##...##|##...##|.##.##.|..###..|.......|.......",
    1: "...##..|..###..|.####..|...##..|...##..|...##..|...##..|...##..|...##..|.######|.......|.......",
    2: ".#####.|.......|.#####.|##...##|#....##|....##.|..###..|.##....|##.....|#######|.......|.......",
    3: "#######|.....##|....##.|...##..|..####.|.....##|.....##|.....##|##...##|.#####.|.......|.......",
    4: ".#####.|.......|.......|.##..##|.##..##|###..##|##...##|##...##|##..###|.######|.....##|.....##",
    5: ".#####.|.......|#######|##.....|##.....|.####..|..####.|.....##|##...##|.#####.|.......|.......",
    6: "..####.|.##....|##.....|##.....|######.|###..##|##...##|##...##|###..##|.#####.|.......|.......",
    7: "#######|.....##|.....##|....##.|...##..|...##..|..##...|..##...|..##...|..##...|.......|.......",
    8: ".#####.|##...##|##...##|##...##|.#####.|##...##|##...##|##...##|##...##|.#####.|.......|.......",
    9: ".#####.|##..###|##...##|##...##|##..###|.######|.....##|.....##|....##.|.####..|.......|.......",
}


def digit_prototypes() -> torch.Tensor:
    """The fixed RBF centres: [10, 84] of +-1, one flattened 12x7 bitmap per digit."""
    rows = [DIGIT_BITMAPS[d].replace("|", "") for d in range(10)]
    assert all(len(r) == 84 for r in rows)
    return torch.tensor([[1.0 if c == "#" else -1.0 for c in r] for r in rows])


def scaled_tanh(x: torch.Tensor) -> torch.Tensor:
    """LeCun's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (f(+-1) = +-1)."""
    return 1.7159 * torch.tanh(x * (2.0 / 3.0))


def scaled_tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    return 1.7159 * (2.0 / 3.0) * (1.0 - torch.tanh(x * (2.0 / 3.0)).square())


def lecun_uniform_(module: nn.Module, fan_in: int | None = None) -> None:
    """Weights and biases ~ U(-2.4/F_in, 2.4/F_in), F_in the fan-in of a unit (LeCun 1998, App. C)."""
    fan_in = fan_in or module.weight[0].numel()
    for parameter in (module.weight, module.bias):
        nn.init.uniform_(parameter, -2.4 / fan_in, 2.4 / fan_in)


class Subsampling(nn.Module):
    """Sum of each 2x2 window, times one trainable coefficient per map, plus one bias per map.

    Initialised like every other weight, U(+-2.4/F_in) with F_in = 4 (the window's inputs).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        lecun_uniform_(self, fan_in=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = F.avg_pool2d(x, 2) * 4.0
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SparseConv2d(nn.Module):
    """A convolution in which output map j sees only the input maps ``connections[j]``.

    Only the connected kernels are parameters (so parameter counts are the paper's); they
    are scattered into a dense kernel for ``F.conv2d`` on every call.
    """

    def __init__(self, in_channels: int, connections, kernel_size: int):
        super().__init__()
        self.in_channels, self.connections, self.kernel_size = in_channels, connections, kernel_size
        pairs = [(out, inp) for out, inputs in enumerate(connections) for inp in inputs]
        self.register_buffer("out_index", torch.tensor([p[0] for p in pairs]), persistent=False)
        self.register_buffer("in_index", torch.tensor([p[1] for p in pairs]), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(connections)))
        with torch.no_grad():  # LeCun's init with each output map's own fan-in
            fan_in = torch.tensor([len(inputs) * kernel_size**2 for inputs in connections], dtype=torch.float)
            bound = 2.4 / fan_in
            self.weight.uniform_(-1, 1).mul_(bound[self.out_index].view(-1, 1, 1))
            self.bias.uniform_(-1, 1).mul_(bound)

    def dense_weight(self) -> torch.Tensor:
        k = self.kernel_size
        dense = self.weight.new_zeros(len(self.connections), self.in_channels, k, k)
        return dense.index_put((self.out_index, self.in_index), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)


class EuclideanRBF(nn.Module):
    """y_i = sum_j (x_j - w_ij)^2 with fixed prototypes w (a buffer, not a parameter)."""

    def __init__(self, prototypes: torch.Tensor):
        super().__init__()
        self.register_buffer("prototypes", prototypes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(-1)


class LeNet5Classic(nn.Module):
    """LeNet-5 exactly as in LeCun et al. 1998. Input [N, 1, 32, 32]; returns -RBF distances [N, 10]."""

    input_shape = (1, 32, 32)  # one image [C, H, W]

    def __init__(self, criterion: str = "rbf", map_constant: float = 0.1):
        super().__init__()
        if criterion not in ("rbf", "map"):
            raise ConfigError(f"Config key 'model.net.criterion' is {criterion!r}, but it must be 'rbf' or 'map'.")
        if not (isinstance(map_constant, int | float) and not isinstance(map_constant, bool) and map_constant > 0):
            raise ConfigError(f"Config key 'model.net.map_constant' is {map_constant!r}, but it must be a number > 0: "
                              f"the MAP criterion's j, whose e^-j is the rubbish class's penalty "
                              f"(conf/model/lenet5_classic.yaml's: 0.1).")
        self.criterion, self.map_constant = criterion, map_constant
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = SparseConv2d(6, C3_CONNECTIONS, 5)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = EuclideanRBF(digit_prototypes())
        for module in (self.c1, self.c5, self.f6):
            lecun_uniform_(module)

    def layers(self) -> tuple[nn.Module, ...]:
        """The trainable layers in order; each is followed by the squashing function."""
        return self.c1, self.s2, self.c3, self.s4, self.c5, self.f6

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers():
            x = scaled_tanh(layer(layer_input(layer, x)))
        return x

    def diagonal_hessian(self, images: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        """LeCun's diagonal Gauss-Newton estimate for SDLM, averaged over ``images``.

        The loss's curvature at F6 is that of the correct class's RBF term, d2/dx_j^2 (x_j - w_j)^2 = 2,
        for both criteria (the MAP competitive term's curvature is left out, as it can be negative).
        """
        return diagonal_gauss_newton(self.layers(), scaled_tanh, scaled_tanh_derivative, images, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.output(self.features(x))

    def loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        distances = -scores
        correct = distances.gather(1, targets.unsqueeze(1)).squeeze(1)
        if self.criterion == "rbf":
            return correct.mean()
        # MAP: E = y_correct + log(e^-j + sum_i e^-y_i)
        constant = distances.new_full((len(distances), 1), -self.map_constant)
        return (correct + torch.logsumexp(torch.cat([constant, -distances], dim=1), dim=1)).mean()


class LeNet5(nn.Module):
    """Modern LeNet-5: ReLU, max-pooling, full C3, linear logits for cross-entropy."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.input_shape = (in_channels, 32, 32)  # one image [C, H, W]
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)
        self.hidden_activation = nn.ReLU()  # named, so that the MI callback measures c1-f6 after it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = self.hidden_activation
        x = F.max_pool2d(relu(self.c1(x)), 2)
        x = F.max_pool2d(relu(self.c3(x)), 2)
        x = relu(self.c5(x)).flatten(1)
        return self.output(relu(self.f6(x)))

"""The KSG and Ross estimators against analytic values and scikit-learn (same algorithm, 1-D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression
from sklearn.preprocessing import scale

from analysis.estimator_comparison import mixture, mixture_truth
from analysis.mutual_information import (
    _WORKSPACES,
    _euclidean_within_counts,
    chunks,
    column_std,
    gram,
    ksg_mi,
    label_entropy_ceiling,
    prepare,
    ross_mi,
)


def correlated_gaussians(n: int, d: int, rho: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=generator, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("variant", [1, 2])
def test_ksg_matches_correlated_gaussians(d, variant):
    rho = 0.9
    x, y = correlated_gaussians(1000, d, rho)
    truth = -d / 2 * math.log(1 - rho**2)
    assert ksg_mi(x, y, variant=variant) == pytest.approx(truth, abs=0.1 * d)


def ksg2_point_by_point(x: np.ndarray, y: np.ndarray, k: int = 3, norm: str = "max") -> float:
    """KSG algorithm 2 as Kraskov et al. (2004) define it, one point at a time in float64: the k nearest
    neighbours of i in the joint space (the larger of the two marginal distances), eps_x the largest x
    distance among them, n_x = #{j != i: |x_j - x_i| <= eps_x}, likewise for y."""
    order = np.inf if norm == "max" else 2
    n, total = len(x), 0.0
    for i in range(n):
        dx = np.linalg.norm(x - x[i], ord=order, axis=1)
        dy = np.linalg.norm(y - y[i], ord=order, axis=1)
        dx[i] = dy[i] = np.inf  # i is neither its own neighbour nor counted
        neighbours = np.argsort(np.maximum(dx, dy))[:k]
        n_x, n_y = np.sum(dx <= dx[neighbours].max()), np.sum(dy <= dy[neighbours].max())
        total += digamma(n_x) + digamma(n_y)
    return digamma(k) - 1 / k + digamma(n) - total / n


@pytest.mark.parametrize("d, norm", [(1, "max"), (2, "max"), (3, "euclidean")])
def test_ksg_algorithm_2_equals_the_published_definition_point_by_point(d, norm):
    x, y = correlated_gaussians(200, d, 0.8, seed=11)  # continuous float64 draws: no ties, no jitter needed
    expected = ksg2_point_by_point(x.numpy(), y.numpy(), norm=norm)
    assert ksg_mi(x, y, variant=2, norm=norm, standardize=False, jitter=0) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("d", [1, 10, 100, 500])
def test_independence_gives_about_zero_at_any_dimension(d):
    generator = torch.Generator().manual_seed(d)
    x = torch.randn(1000, d, generator=generator)
    labels = torch.randint(0, 10, (1000,), generator=generator)
    assert abs(ross_mi(x, labels)) < 0.05
    assert abs(ross_mi(x, labels, norm="max")) < 0.05
    if d <= 10:  # KSG between two independent continuous variables
        assert abs(ksg_mi(x, torch.randn(1000, d, generator=generator))) < 0.05


def test_ross_matches_gaussian_mixture_monte_carlo():
    generator = torch.Generator().manual_seed(1)
    means = 1.5 * torch.randn(10, 5, generator=generator, dtype=torch.float64)
    truth = mixture_truth(means, generator)
    x, labels = mixture(1000, means, generator)
    estimate = ross_mi(x, labels)
    assert estimate == pytest.approx(truth, abs=0.05)
    assert estimate <= label_entropy_ceiling(labels)


def test_euclidean_norm_is_less_biased_than_max_in_high_dimension():
    generator = torch.Generator().manual_seed(2)
    means = 0.3 * torch.randn(10, 100, generator=generator, dtype=torch.float64)
    truth = mixture_truth(means, generator, n=50_000)
    x, labels = mixture(1000, means, generator)
    assert ross_mi(x, labels, norm="max") < ross_mi(x, labels, norm="euclidean") < truth


def sklearn_jittered(rng: np.random.RandomState, v: np.ndarray) -> np.ndarray:
    """What scikit-learn's _estimate_mi does to a continuous column: scale, then 1e-10 noise."""
    v = scale(v.astype(np.float64), with_mean=False)
    return v + 1e-10 * np.maximum(1, np.mean(np.abs(v), axis=0)) * rng.standard_normal(size=v.shape)


def test_equals_sklearn_regression_and_classification_on_the_same_jittered_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 1))
    y = 0.8 * x[:, 0] + 0.6 * rng.standard_normal(500)
    labels = (x[:, 0] + 0.5 * rng.standard_normal(500) > 0).astype(int) + (x[:, 0] > 1)

    same_noise = np.random.RandomState(3)  # sklearn draws X's noise, then y's, from one stream
    x_j, y_j = sklearn_jittered(same_noise, x), sklearn_jittered(same_noise, y)
    expected = mutual_info_regression(x, y, n_neighbors=3, random_state=3)[0]
    ours = ksg_mi(torch.from_numpy(x_j), torch.from_numpy(y_j), standardize=False, jitter=0)
    assert expected > 0.3 and ours == pytest.approx(expected, abs=1e-6)

    x_j = sklearn_jittered(np.random.RandomState(3), x)
    expected = mutual_info_classif(x, labels, n_neighbors=3, random_state=3)[0]
    ours = ross_mi(torch.from_numpy(x_j), torch.from_numpy(labels), standardize=False, jitter=0)
    assert expected > 0.3 and ours == pytest.approx(expected, abs=1e-6)


def test_x_and_y_get_noise_of_their_own_also_when_they_are_the_same_tensor():
    """I(X; X) of tied ReLU activations: the same noise on both would tie every joint distance to a marginal one."""
    x = torch.relu(torch.randn(300, 3, generator=torch.Generator().manual_seed(0))).round(decimals=1)
    own_noise = ksg_mi(prepare(x, seed=5), prepare(x, seed=6), standardize=False, jitter=0)
    assert ksg_mi(x, x, seed=5) == own_noise
    assert ksg_mi(prepare(x, seed=5), prepare(x, seed=5), standardize=False, jitter=0) > own_noise + 0.5


def test_the_estimator_comparisons_row_gives_ross_then_ksg_on_the_data_as_it_is():
    from analysis.estimator_comparison import both

    generator = torch.Generator().manual_seed(0)
    means = 1.5 * torch.randn(4, 3, generator=generator, dtype=torch.float64)
    x, labels = mixture(200, means, generator)
    values = [float(cell.split(" (")[0]) for cell in both(100 * x, labels)]  # a scale standardising would undo
    expected = [ross_mi(100 * x, labels, standardize=False),
                ksg_mi(100 * x, torch.nn.functional.one_hot(labels).double(), standardize=False)]
    assert values == pytest.approx(expected, abs=5e-4) and abs(values[0] - values[1]) > 0.01


def test_jitter_survives_float32_and_breaks_relu_ties():
    activations = torch.relu(torch.randn(200, 8, generator=torch.Generator().manual_seed(0))).float()
    activations[:50] = 0.0  # dead samples: exact ties
    prepared = prepare(activations, standardize=False)
    assert prepared.dtype == torch.float64
    assert len(torch.unique(prepared[:50, 0])) == 50
    labels = torch.arange(200) % 4
    assert ross_mi(activations, labels) == ross_mi(activations.double(), labels)  # cast before the jitter
    assert ross_mi(activations, labels, seed=0) != ross_mi(activations, labels, seed=1)


def test_chunked_distances_give_the_same_answer(monkeypatch):
    x, y = correlated_gaussians(300, 3, 0.7, seed=4)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    whole = ksg_mi(x, y), ksg_mi(x, y, variant=2), ross_mi(x, labels)
    monkeypatch.setattr("analysis.mutual_information.CHUNK_ELEMENTS", 40 * 300)
    assert len(list(chunks(300, 300))) == 8
    assert (ksg_mi(x, y), ksg_mi(x, y, variant=2), ross_mi(x, labels)) == pytest.approx(whole, abs=1e-12)


def test_label_entropy_ceiling_is_psi_n_minus_mean_psi_class_size():
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 2])  # the single '2' is left out
    psi = torch.special.digamma
    expected = psi(torch.tensor(6.0)) - (2 * psi(torch.tensor(2.0)) + 4 * psi(torch.tensor(4.0))) / 6
    assert label_entropy_ceiling(labels) == pytest.approx(expected.item())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x, y: ross_mi(x, y, norm="l1"), "norm='l1'"),
        (lambda x, y: ross_mi(x, y[:5]), "X has 10 samples but Y has 5"),
        (lambda x, y: ksg_mi(x, x, k=10), "k=10"),
        (lambda x, y: ksg_mi(x, x, variant=3), "variant=3"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(torch.randn(10, 2), torch.arange(10) % 2)


def test_tiled_input_estimate_measures_label_entropy_not_dependence():
    """The paper's tiled IXY: with more than k copies of each point, X independent of Y still gives ~H(Y)."""
    from callbacks.mutual_information import MutualInformationLR

    generator = torch.Generator().manual_seed(5)
    images, labels = torch.randn(200, 1, 8, 8, generator=generator), torch.randint(0, 4, (200,), generator=generator)
    assert abs(ross_mi(images, labels)) < 0.1
    tiled = MutualInformationLR(reference="tiled", tiles=6).reference_mi(images, labels)
    assert tiled == pytest.approx(label_entropy_ceiling(labels.repeat(6)), abs=0.05)
    assert label_entropy_ceiling(labels) == pytest.approx(math.log(4), abs=0.05)


def within_counts_by_differences(x: torch.Tensor, labels: torch.Tensor, k: int = 3):
    """The reference m_i: every distance taken by differences in float64, no tricks; with the kept
    labels and class sizes (points of one-member classes left out)."""
    distances = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").fill_diagonal_(float("inf"))
    sizes = (labels[:, None] == labels[None, :]).sum(1)
    keep = sizes > 1
    distances, labels, sizes = distances[keep][:, keep], labels[keep], sizes[keep].double()
    ranks = sizes.long().clamp(max=k + 1) - 1
    same_class = labels[:, None] == labels[None, :]
    nearest = distances.masked_fill(~same_class, float("inf")).sort(1).values
    return (distances <= nearest.gather(1, ranks[:, None] - 1)).sum(1).double(), ranks, sizes


def ross_by_differences(x: torch.Tensor, labels: torch.Tensor, k: int = 3) -> float:
    """The reference: Ross's estimate from every distance taken by differences in float64, no tricks."""
    within, ranks, sizes = within_counts_by_differences(x, labels, k)
    psi = torch.special.digamma
    return float(psi(torch.tensor(float(len(within)), dtype=torch.float64)) - psi(sizes).mean()
                 + psi(ranks.double()).mean() - psi(within).mean())


def hard_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Inputs on which a ranking by a float32 matrix product alone gets counts wrong."""
    generator = torch.Generator().manual_seed(6)
    labels = torch.randint(0, 5, (300,), generator=generator)
    labels[:3] = torch.tensor([5, 6, 6])  # a class of one (left out) and a class of two (k = 1)
    wide = torch.randn(300, 1100, generator=generator, dtype=torch.float64) + 1e3  # 3 blocks, far from 0
    base = torch.randn(50, 20, generator=generator, dtype=torch.float64)
    relu = torch.relu(torch.randn(300, 30, generator=generator, dtype=torch.float64))
    relu[::3] = 0.0  # dead samples: ties broken only by the jitter
    return {"wide": (wide, labels), "relu": (relu, labels),
            "copies": (base.repeat(6, 1) + 5.0, torch.randint(0, 3, (50,), generator=generator).repeat(6))}


@pytest.mark.parametrize("case", ["wide", "relu", "copies"])
@pytest.mark.parametrize("chunked", [False, True])
def test_ross_euclidean_counts_equal_the_exact_differences_path(case, chunked, monkeypatch):
    x, labels = hard_cases()[case]
    prepared = prepare(x, standardize=False, jitter=1e-10)
    expected = ross_by_differences(prepared, labels)
    if chunked:  # row chunks: no single symmetric product
        monkeypatch.setattr("analysis.mutual_information.CHUNK_ELEMENTS", 64 * len(x))
    for ranking in (torch.float32, torch.float64):
        assert ross_mi(prepared, labels, standardize=False, jitter=0, ranking=ranking) == pytest.approx(
            expected, abs=1e-12)


@pytest.mark.parametrize("width, offset", [(1, 0.0), (1, 0.7), (8, 3.0)])
def test_euclidean_counts_on_tied_jittered_data_equal_brute_force_float64(width, offset):
    """ReLU zeros are ties broken only by the 1e-10 jitter; far from the mean (offset) centring in place
    rounded that jitter and changed counts. Every count must equal the brute-force float64 one."""
    generator = torch.Generator().manual_seed(9)
    x = torch.relu(torch.randn(400, width, generator=generator, dtype=torch.float64)) + offset
    x[::2] = offset  # half the samples tied
    labels = torch.randint(0, 4, (400,), generator=generator)
    prepared = prepare(x, standardize=False, jitter=1e-10)
    assert len(torch.unique(prepared[::2, 0])) == 200  # the jitter survived: no ties left
    expected, ranks, _ = within_counts_by_differences(prepared, labels)
    for ranking in (torch.float32, torch.float64):
        counts = _euclidean_within_counts(prepared, labels, ranks[:, None], 3, ranking)
        assert torch.equal(counts, expected)
    assert torch.equal(prepared, prepare(x, standardize=False, jitter=1e-10))  # the input is left as it was


def test_gram_is_the_matrix_product_written_into_out():
    """300 rows: the mirrored triangle spans several strips; 1,300 columns: three blocks (syrk on the CPU)."""
    a = torch.randn(300, 1300, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = a @ a.T
    out = torch.full((300, 300), float("nan"), dtype=torch.float64)  # whatever a kept buffer held
    assert gram(a, out=out) is out
    assert torch.allclose(out, expected, rtol=0, atol=1e-9)
    assert torch.allclose(gram(a.float()), expected.float(), rtol=0, atol=1e-2)
    assert torch.allclose(gram(a[:, :100]), a[:, :100] @ a[:, :100].T)  # below SYRK_MIN_WIDTH: matrix products


def test_column_std_equals_numpy_std_across_row_blocks():
    """1,000 rows of 500 columns span several row blocks; an offset of 1e6 would sink a one-pass sum of squares."""
    x = 1e6 + torch.randn(1000, 500, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[:, 7] = 2.5  # a constant column: std 0
    expected = torch.from_numpy(x.numpy().std(axis=0))
    assert torch.allclose(column_std(x), expected, rtol=1e-12, atol=1e-12)
    assert column_std(x)[7] == 0


def test_buffers_kept_between_calls_carry_nothing_over():
    """Whatever the kept CPU buffers hold (NaN here), every count is exact: a larger problem after a smaller
    one, a wider one after a narrower one, and back."""
    x, labels = hard_cases()["wide"]
    prepared = prepare(x, standardize=False, jitter=1e-10)
    problems = [(prepared[:120, :300], labels[:120]), (prepared, labels), (prepared[:120, :300], labels[:120])]
    for data, data_labels in problems:
        expected = ross_by_differences(data, data_labels)
        for buffer in vars(_WORKSPACES).values():
            buffer.fill_(float("nan"))
        assert ross_mi(data, data_labels, standardize=False, jitter=0) == pytest.approx(expected, abs=1e-12)
    assert vars(_WORKSPACES)  # the buffers were kept


def test_ross_accepts_activations_that_require_grad():
    x = torch.randn(60, 300, generator=torch.Generator().manual_seed(8), requires_grad=True)
    labels = torch.arange(60) % 3
    assert ross_mi(x, labels) == ross_mi(x.detach(), labels)


def test_small_problems_run_serially_and_leave_the_thread_count_alone(monkeypatch):
    x = torch.randn(300, 50, generator=torch.Generator().manual_seed(10))
    labels = torch.arange(300) % 3
    inside = []  # torch's thread count while the counts are computed

    def recording(*args):
        inside.append(torch.get_num_threads())
        return _euclidean_within_counts(*args)

    monkeypatch.setattr("analysis.mutual_information._euclidean_within_counts", recording)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = ross_mi(x, labels)
        assert inside == [1] and torch.get_num_threads() == 2
        monkeypatch.setattr("analysis.mutual_information.SERIAL_ELEMENTS", 300 * 300 - 1)  # now too big
        assert ross_mi(x, labels) == two and inside == [1, 2]
        torch.set_num_threads(1)
        assert ross_mi(x, labels) == two
    finally:
        torch.set_num_threads(threads)


def test_ross_needs_two_samples_of_some_class():
    """Singleton classes are left out; with nothing left the estimate is refused, not an empty computation."""
    with pytest.raises(ValueError, match="every class of Y has a single sample"):
        ross_mi(torch.randn(4, 5, generator=torch.Generator().manual_seed(0)), torch.arange(4))

"""The batched box-constrained L-BFGS attack (analysis/lbfgs_attack.py) on a small trained softmax model."""

import contextlib
import errno
import os

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.datasets import load_digits

from analysis.lbfgs_attack import (
    AttackInputError,
    AttackResult,
    attack_rows,
    batched_lbfgsb,
    choose_targets,
    distortion,
    lbfgs_attack,
    quantize,
    scipy_reference_rows,
)


@pytest.fixture(scope="module")
def softmax_model():
    """A softmax (one linear layer) trained to convergence on scikit-learn's 8x8 digits, pixels in [0, 1]."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels) + 1e-3 * model[1].weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    model.requires_grad_(False).eval()
    correct = model(images).argmax(1) == labels
    assert correct.float().mean() > 0.95
    return model, images[correct][:24], labels[correct][:24]


@pytest.mark.parametrize("targets", ["all", "runner_up", "random"])
def test_every_success_is_classified_as_its_target_inside_the_box(softmax_model, targets, tmp_path):
    model, images, labels = softmax_model
    result = lbfgs_attack(model, images, labels, targets=targets, seed=3)
    assert result.success.all()
    predicted = model(result.adversarial).argmax(1)
    assert torch.equal(predicted, result.target) and not (result.target == labels).any()
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    torch.testing.assert_close(result.adversarial * 255, (result.adversarial * 255).round())  # uint8-exact
    torch.testing.assert_close(result.distortion, ((result.adversarial - images) ** 2).mean((1, 2, 3)).sqrt())
    assert (result.c > 0).all()
    loaded = AttackResult.load(result.save(tmp_path / "attack.pt"))
    assert torch.equal(loaded.adversarial, result.adversarial) and torch.equal(loaded.target, result.target)


def test_an_attack_cache_that_fails_to_be_written_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    def result(value: float) -> AttackResult:
        return AttackResult(torch.full((2, 1, 4, 4), value), torch.tensor([0, 1]), torch.tensor([1, 0]),
                            torch.ones(2), torch.zeros(2), torch.ones(2, dtype=torch.bool))

    path = result(0.25).save(tmp_path / "attack.pt")
    saved = path.read_bytes()

    def disk_fills_up(obj, file, *args, **kwargs):
        with open(file, "wb") if isinstance(file, str | os.PathLike) else contextlib.nullcontext(file) as stream:
            stream.write(b"the first bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(OSError, match="No space left on device"):
        result(0.75).save(path)
    assert path.read_bytes() == saved and list(tmp_path.iterdir()) == [path]


def test_untargeted_is_the_best_of_the_targeted_attacks(softmax_model):
    model, images, labels = softmax_model
    images, labels = images[:3], labels[:3]
    best = lbfgs_attack(model, images, labels, targets="all", c_steps=6)
    # The batched and the single solves round floats differently (batch-dependent kernels, thread count), which
    # can move one pixel of the uint8-rounded result by one level: by the triangle inequality that changes the
    # RMS distortion by at most (1/255) / sqrt(pixels).
    one_level = 1 / 255 / images[0].numel() ** 0.5
    for target in range(10):
        keep = labels != target
        single = lbfgs_attack(model, images[keep], labels[keep], targets="chosen", chosen=target, c_steps=6)
        assert (best.distortion[keep] <= single.distortion + one_level).all()


def test_random_targets_are_seeded(softmax_model):
    model, images, labels = softmax_model
    a = lbfgs_attack(model, images[:8], labels[:8], targets="random", seed=5)
    b = lbfgs_attack(model, images[:8], labels[:8], targets="random", seed=5)
    assert a.success.all()  # a failed example reports its prediction as target, not the one it was given
    assert torch.equal(a.target, b.target) and torch.equal(a.adversarial, b.adversarial)
    assert torch.equal(a.target, choose_targets(model, images[:8], labels[:8], "random", seed=5))
    # Another seed draws other targets: on 1000 labels a coincidence has probability 9^-1000.
    many = torch.arange(1000) % 10
    five, six = (choose_targets(None, None, many, "random", seed=seed) for seed in (5, 6))
    assert torch.equal(five, choose_targets(None, None, many, "random", seed=5)) and not torch.equal(five, six)
    assert not (five == many).any()


def test_inner_solution_matches_scipy_lbfgsb_per_example(softmax_model):
    """For a softmax model the inner problem ||x'-x||^2 + c CE(Wx'+b, l) is strongly convex (modulus 2), so the
    minimiser in the box is unique; both solvers stop at a projected gradient of ~1e-5, which bounds the
    distance to it by ~sqrt(64) 1e-5 / 2: the distortions agree to 1e-4 absolute."""
    model, images, labels = softmax_model
    x0 = images[:8].flatten(1)
    target = (labels[:8] + 1) % 10
    c = torch.linspace(0.5, 20, 8)

    def objective(points, rows):
        loss = torch.nn.functional.cross_entropy(model(points), target[rows], reduction="none")
        return (points - x0[rows]).pow(2).sum(1) + c[rows] * loss

    ours = batched_lbfgsb(objective, x0, max_iter=300, gtol=1e-6)
    for i in range(8):
        reference = scipy_lbfgsb(objective, x0[i], i, gtol=1e-6, ftol=1e-12, maxiter=300)
        reference = torch.tensor(reference.x, dtype=torch.float32)
        assert float(objective(ours[i : i + 1], torch.tensor([i]))) <= reference_value(objective, reference, i) + 1e-4
        torch.testing.assert_close(distortion(ours[i : i + 1], x0[i : i + 1]),
                                   distortion(reference[None], x0[i : i + 1]), atol=1e-4, rtol=0)

    # That problem is well conditioned (projected gradient descent solves it as fast); the curvature history shows
    # on ill-conditioned quadratics: the batched solver reaches scipy's minimisers within 2x scipy's iterations + 10.
    quadratic, start = box_quadratics(rows=4, n=20), torch.full((4, 20), 0.5, dtype=torch.float64)
    references = [scipy_lbfgsb(quadratic, start[i], i, gtol=1e-10, ftol=1e-15, maxcor=10) for i in range(4)]
    ours = batched_lbfgsb(quadratic, start, max_iter=2 * max(r.nit for r in references) + 10, gtol=1e-10, ftol=1e-15)
    torch.testing.assert_close(ours, torch.tensor(np.stack([r.x for r in references])), atol=1e-6, rtol=0)


def test_halvings_tried_together_take_the_same_steps_in_fewer_calls():
    """The line search takes the largest step 2^-k that passes the Armijo test, whether the halvings are tried one
    call at a time or several in one call: the iterates are the same, the objective is called fewer times."""
    quadratic, start = box_quadratics(rows=6, n=20), torch.full((6, 20), 0.5, dtype=torch.float64)
    calls = []

    def counted(points, rows):
        calls.append(len(points))
        return quadratic(points, rows)

    def solve(halvings_per_call):
        calls.clear()
        return batched_lbfgsb(counted, start, max_iter=40, halvings_per_call=halvings_per_call), len(calls)

    one_at_a_time, calls_one_at_a_time = solve(1)
    for halvings_per_call in (3, 20):
        together, calls_together = solve(halvings_per_call)
        torch.testing.assert_close(together, one_at_a_time, atol=1e-12, rtol=0)
        assert calls_together < calls_one_at_a_time  # fewer: so the search did backtrack


def scipy_lbfgsb(objective, start, i, **options):
    """scipy's L-BFGS-B in the box [0, 1] on row ``i`` of a batched ``objective(points, rows)``, from ``start``."""
    def fun(z):
        point = torch.tensor(z, dtype=start.dtype, requires_grad=True)
        value = objective(point[None], torch.tensor([i]))[0]
        return float(value.detach()), torch.autograd.grad(value, point)[0].double().numpy()

    return minimize(fun, start.double().numpy(), jac=True, method="L-BFGS-B", bounds=[(0, 1)] * len(start),
                    options=options)


def box_quadratics(rows, n):
    """Per row 0.5 (x - m)^T A (x - m), A with eigenvalues 1..1000 in a random basis, m partly outside [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(rows, n, n, generator=generator, dtype=torch.float64))[0]
    hessian = basis @ torch.diag_embed(torch.logspace(0, 3, n, dtype=torch.float64).expand(rows, n)) @ basis.mT
    centre = torch.rand(rows, n, generator=generator, dtype=torch.float64) * 1.6 - 0.3

    def objective(points, index):
        r = points - centre[index]
        return 0.5 * torch.einsum("bi,bij,bj->b", r, hessian[index], r)

    return objective


def reference_value(objective, point, i):
    return float(objective(point[None], torch.tensor([i])))


def test_whole_c_search_matches_the_per_example_scipy_attack(softmax_model):
    """Same objective, same c schedule; rows differ only where a minimiser lies within solver tolerance of the
    decision boundary at a bisection step, which moves that row's c by one bisection interval: the mean
    distortion agrees within 2%."""
    model, images, labels = softmax_model
    x0, target = images[:6].flatten(1), (labels[:6] + 3) % 10
    ours = attack_rows(model, x0, target, (64,), 0.01, 8, True)
    reference = scipy_reference_rows(model, x0, target, (64,), 0.01, 8, True)
    assert ours[2].all() and reference[2].all()
    ratio = distortion(ours[0], x0).mean() / distortion(reference[0], x0).mean()
    assert abs(float(ratio) - 1) < 0.02


def test_c_search_returns_the_smallest_successful_c_of_a_problem_solved_by_hand():
    """One pixel x0 = 0.2, scores (0, w (x - 1/2)): class 1 iff x > 1/2. The minimiser of
    r^2 + c softplus(-w (x0 + r - 1/2)) satisfies 2r = c w sigmoid(-w (x0 + r - 1/2)), increasing in c; it reaches
    the boundary r = 0.3 where sigmoid = 1/2, at c* = 1.2 / w. With w = 10, c* = 0.12."""
    w = 10.0

    def model(x):
        x = x.flatten(1)
        return torch.cat([torch.zeros_like(x), w * (x - 0.5)], 1)

    x0 = torch.tensor([[0.2]])
    best_x, best_c, success = attack_rows(model, x0, torch.tensor([1]), (1,), 0.01, 16, False, gtol=1e-8)
    # c = 0.01, 0.1 fail, 1 succeeds; 13 bisections of [0.1, 1] leave an interval of 0.9 / 2^13 = 1.1e-4.
    assert success.all() and 0.12 <= float(best_c) <= 0.12 + 1.2e-4
    assert 0.5 < float(best_x) < 0.5 + 1e-3


def test_the_c_search_keeps_its_least_distorted_success_not_its_last(monkeypatch):
    """A smaller c need not give a smaller distortion once the solution is quantized or the model is not convex:
    scripted solutions of the three rounds all succeed, the second nearest; keeping the last passed every test."""
    import analysis.lbfgs_attack

    def model(x):  # class 1 iff x > 1/2
        x = x.flatten(1)
        return torch.cat([torch.zeros_like(x), x - 0.5], 1)

    scripted = iter([0.9, 0.6, 0.7])  # at c = 1, 0.5, 0.25
    monkeypatch.setattr(analysis.lbfgs_attack, "batched_lbfgsb",
                        lambda objective, x0, **solver: torch.full_like(x0, next(scripted)))
    best_x, best_c, success = attack_rows(model, torch.tensor([[0.2]]), torch.tensor([1]), (1,), 1.0, 3, False)
    assert success.all() and float(best_c) == 0.5 and float(best_x) == pytest.approx(0.6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"targets": "chosen", "chosen": 10}, "out of range"),
    ({"targets": "chosen", "chosen": -1}, "out of range"),
    ({"targets": "chosen", "chosen": "same"}, "equals its true label"),
    ({"c_init": 0.0}, "must be a number > 0"),
    ({"targets": "nearest"}, "must be one of"),
])
def test_bad_input_is_one_sentence_before_any_work(softmax_model, kwargs, message):
    model, images, labels = softmax_model
    if kwargs.get("chosen") == "same":
        kwargs = kwargs | {"chosen": labels[:3]}

    def untouchable(x):
        raise AssertionError("the model ran before the input was checked")

    with pytest.raises(AttackInputError, match=message):
        lbfgs_attack(untouchable, images[:3], labels[:3], **kwargs)


def test_quantize_rounds_to_the_nearest_of_the_256_levels():
    levels = torch.arange(255, dtype=torch.float64)
    torch.testing.assert_close(quantize((levels + 0.3) / 255), levels / 255, atol=0, rtol=0)
    torch.testing.assert_close(quantize((levels + 0.7) / 255), (levels + 1) / 255, atol=0, rtol=0)
    assert quantize(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]


def test_one_solver_iteration_rejects_a_step_that_does_not_decrease_the_objective():
    """50 (x - 1/2)^2 from x = 1/4: the gradient -25 gives the direction +1 (no history yet: -g / max(|g|, 1)). The
    step 1 leaves the box (projected to 1: f = 12.5), the step 1/2 lands on the mirror point 3/4 with f unchanged
    (3.125), which Armijo's sufficient decrease refuses; the step 1/4 reaches the minimiser in one iteration."""
    def parabola(points, rows):
        return 50 * (points - 0.5).pow(2).sum(1)

    start = torch.tensor([[0.25]], dtype=torch.float64)
    assert float(batched_lbfgsb(parabola, start, max_iter=1)) == 0.5
    assert float(batched_lbfgsb(parabola, start, max_iter=0)) == 0.25


def test_a_start_at_the_constrained_minimiser_costs_one_evaluation():
    """At a bound with the gradient pushing outwards the projected gradient is 0 (scipy's pgtol test), though the
    gradient itself is not: the solver stops before any step."""
    calls = []

    def outside(points, rows):  # minimised at 2 (above the box) and at -1 (below it)
        calls.append(len(points))
        return (points[:, :2] - 2).pow(2).sum(1) + (points[:, 2:] + 1).pow(2).sum(1)

    start = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    assert torch.equal(batched_lbfgsb(outside, start), start) and calls == [3]


def test_an_attack_in_chunks_attacks_every_example(softmax_model):
    """batch_size 2 with one row per example: chunks of two examples; 18 with targets="all": one example a chunk.
    Chunked and whole runs round floats differently (batch-dependent kernels): one uint8 level of RMS distortion."""
    model, images, labels = softmax_model
    images, labels = images[:5], labels[:5]
    one_level = 1 / 255 / images[0].numel() ** 0.5
    for targets, batch_size in (("runner_up", 2), ("all", 18)):
        result = lbfgs_attack(model, images, labels, targets=targets, batch_size=batch_size, c_steps=6)
        assert result.success.all() and torch.equal(model(result.adversarial).argmax(1), result.target)
        whole = lbfgs_attack(model, images, labels, targets=targets, c_steps=6)
        assert ((result.distortion - whole.distortion).abs() <= one_level).all()
        if targets == "runner_up":  # one target per example: the same ones
            assert torch.equal(result.target, whole.target)


def test_an_example_no_c_can_move_is_reported_failed_with_its_image_and_nan():
    """Class 1 iff the pixel exceeds 2, outside the box: no c reaches it."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2)).requires_grad_(False)
    model[1].weight.copy_(torch.tensor([[0.0], [1.0]]))  # scores (0, x - 2)
    model[1].bias.copy_(torch.tensor([0.0, -2.0]))
    images = torch.tensor([0.2, 0.9]).view(2, 1, 1, 1)
    result = lbfgs_attack(model, images, torch.tensor([0, 0]), targets="chosen", chosen=1, num_classes=2, c_steps=4)
    assert not result.success.any() and torch.equal(result.adversarial, images)
    assert result.distortion.isnan().all() and result.c.isnan().all() and result.target.tolist() == [0, 0]


def test_an_example_already_misclassified_leaves_the_others_their_own_targets_and_c(softmax_model):
    """Example 0 given a wrong label is a success at distortion 0 and c 0, its prediction as target; examples 1..3
    get what the c search gives their rows alone (same rows, same computation: equal)."""
    model, images, labels = softmax_model
    images, labels = images[:4], labels[:4].clone()
    predicted, labels[0] = labels[0].item(), (labels[0] + 1) % 10
    result = lbfgs_attack(model, images, labels, targets="runner_up")
    targets = choose_targets(model, images, labels, "runner_up")
    assert len(set(targets[1:].tolist())) > 1  # so a target of the wrong row shows
    x, c, ok = attack_rows(model, images[1:].flatten(1), targets[1:], images.shape[1:], 0.01, 12, True)
    assert result.success.all() and ok.all()
    assert result.target.tolist() == [predicted, *targets[1:].tolist()]
    assert torch.equal(result.adversarial[0], images[0]) and result.distortion[0] == 0 and result.c[0] == 0
    assert torch.equal(result.c[1:], c) and torch.equal(result.adversarial[1:].flatten(1), x)
    assert len(set(c.tolist())) > 1  # so a c of the wrong row shows


def test_random_targets_draw_every_wrong_label_and_runner_up_the_best_scoring_wrong_one():
    many = torch.arange(1000) % 10
    drawn = choose_targets(None, None, many, "random", seed=5)
    assert {(int(a), int(b)) for a, b in zip(many, drawn, strict=True)} == {
        (a, b) for a in range(10) for b in range(10) if a != b}
    scores = torch.tensor([[5.0, 3.0, 1.0], [3.0, 5.0, 1.0]])  # the second misclassified: its runner-up is 1
    assert choose_targets(lambda x: scores.clone(), None, torch.tensor([0, 0]), "runner_up").tolist() == [1, 1]


def test_a_box_without_an_upper_bound_is_open_above():
    """Hidden representations (callbacks/adversarial_training.py) are bounded below by 0 only: upper=inf. From 2 and
    from 1/2 the minimiser 5 of (x - 5)^2 is reached; a start there costs one evaluation (projected gradient 0)."""
    calls = []

    def above(points, rows):
        calls.append(len(points))
        return (points - 5).pow(2).sum(1)

    start = torch.tensor([[2.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(batched_lbfgsb(above, start, upper=float("inf")), torch.full_like(start, 5.0))
    calls.clear()
    at_minimum = torch.full_like(start, 5.0)
    assert torch.equal(batched_lbfgsb(above, at_minimum, upper=float("inf")), at_minimum) and calls == [1]

"""Box-constrained L-BFGS adversarial examples (Szegedy et al. 2014, section 4.1), batched.

For an image x with label y and a target l != y the attack solves

    minimise  ||x' - x||^2 + c * CE(f(x'), l)   subject to  x' in [0, 1]^n

and searches the smallest c > 0 whose minimiser f classifies as l (c grows tenfold until the first
success, then bisects). The paper writes c|r| + loss and asks for the "minimum c"; moving c onto the
loss makes "smallest c" mean "least distortion", and squaring the norm keeps the objective smooth at
r = 0. Both trace the same minimisers as c varies (stationarity gives a*r/|r| = 2b*r), as in foolbox 1's
LBFGSAttack and Carlini-Wagner. Distortion is the paper's sqrt(sum r^2 / n).

Batching: every (example, target) pair is one row. The objective is a sum of independent per-row terms, so
one backward pass gives every row its own gradient; the L-BFGS-B solver keeps a curvature history, a step
length, a convergence flag and a c search interval per row (``torch.optim.LBFGS`` over the summed objective
would share one line search and one history, coupling the rows). Box bounds: the direction is restricted
to the free variables (not at a bound with the gradient pushing outwards) and every trial point projected.

    result = lbfgs_attack(model, images, labels, targets="runner_up", seed=0)
    result.save("attack.pt")
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from framework.atomic import write_atomically
from framework.errors import ConfigError

TARGET_MODES = ("chosen", "random", "runner_up", "all")


class AttackInputError(ConfigError):
    """A target label, a constant or a model the attack cannot work with (reported in one sentence)."""


@dataclass
class AttackResult:
    """Per example: the best adversarial image found (uint8-exact floats), its c, target, distortion, success.

    Examples the model already misclassifies count as successes with distortion 0 (target = the prediction). A failed
    example (success False) keeps its original image, distortion and c NaN, and target = the model's prediction
    (its label): no target was reached, and with targets="all" there is no single one to report."""

    adversarial: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor
    c: torch.Tensor
    distortion: torch.Tensor
    success: torch.Tensor

    def save(self, path: str | Path, **metadata: str) -> Path:
        """torch.save of the fields as CPU tensors and ``metadata`` (e.g. what was attacked), written atomically."""
        stored = {key: value.cpu() for key, value in asdict(self).items()} | metadata
        return write_atomically(path, lambda file: torch.save(stored, file))

    @classmethod
    def load(cls, path: str | Path) -> AttackResult:
        return cls.load_with_metadata(path)[0]

    @classmethod
    def load_with_metadata(cls, path: str | Path) -> tuple[AttackResult, dict[str, str]]:
        stored = torch.load(path, weights_only=True)
        names = {field.name for field in fields(cls)}
        return (cls(**{key: value for key, value in stored.items() if key in names}),
                {key: value for key, value in stored.items() if key not in names})


def distortion(adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The paper's per-example distortion sqrt(sum (x' - x)^2 / n), n = pixels per example."""
    difference = (adversarial - images).flatten(1)
    return difference.pow(2).mean(1).sqrt()


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels an 8-bit image can hold (what a saved adversarial image really is)."""
    return images.mul(255).round().div(255)


@torch.no_grad()
def batched_lbfgsb(objective, x0: torch.Tensor, lower: float = 0.0, upper: float = 1.0, max_iter: int = 100,
                   history: int = 10, gtol: float = 1e-5, ftol: float = 1e-9, max_backtracks: int = 20,
                   halvings_per_call: int = 4):
    """Minimise ``objective(x, rows) -> [len(rows)]`` independently per row of ``x0 [B, n]`` in [lower, upper].

    Projected L-BFGS: two-loop recursion with one history per row, a backtracking (Armijo) line search with a
    step per row along the projected path, rows leave the batch when their projected gradient or their
    relative decrease is below tolerance (scipy L-BFGS-B's pgtol / factr criteria)."""
    rows_total, n = x0.shape
    x = x0.clone()
    s_hist = x.new_zeros(rows_total, history, n)
    y_hist = x.new_zeros(rows_total, history, n)
    rho = x.new_zeros(rows_total, history)  # 0 marks an empty slot: the two-loop recursion skips it
    active = torch.arange(rows_total, device=x.device)

    def value_and_grad(points, rows):
        with torch.enable_grad():
            points = points.detach().requires_grad_(True)
            values = objective(points, rows)
            (grad,) = torch.autograd.grad(values.sum(), points)
        return values.detach(), grad

    f, g = value_and_grad(x, active)
    for _ in range(max_iter):
        xa = x[active]
        projected_gradient = (xa - (xa - g).clamp(lower, upper)).abs().amax(1)
        keep = projected_gradient > gtol
        if not keep.all():
            active, xa, f, g = active[keep], xa[keep], f[keep], g[keep]
        if len(active) == 0:
            break
        free = ~(((xa <= lower) & (g > 0)) | ((xa >= upper) & (g < 0)))
        s, y, r = s_hist[active], y_hist[active], rho[active]
        q = g * free
        alphas = []
        for i in reversed(range(history)):
            alpha = r[:, i] * (s[:, i] * q).sum(1)
            q = q - alpha[:, None] * y[:, i]
            alphas.append(alpha)
        has_history = r[:, -1] > 0
        yy = (y[:, -1] * y[:, -1]).sum(1)
        gamma = torch.where(has_history, 1.0 / (r[:, -1] * yy).clamp_min(1e-30), 1.0 / g.norm(dim=1).clamp_min(1.0))
        d = q * gamma[:, None]
        for i, alpha in zip(range(history), reversed(alphas), strict=True):
            beta = r[:, i] * (y[:, i] * d).sum(1)
            d = d + s[:, i] * (alpha - beta)[:, None]
        d = -d * free
        not_descent = (d * g).sum(1) >= 0
        d = torch.where(not_descent[:, None], -g * free / g.norm(dim=1, keepdim=True).clamp_min(1.0), d)

        # Backtracking: the largest step 2^-k (k < max_backtracks) that passes the Armijo test. Most rows take the
        # whole step, tried alone first; the few rows left try several halvings in one call of the objective, as
        # extra rows (with a call per halving, most calls were trials of a few rows).
        accepted = torch.zeros(len(active), dtype=torch.bool, device=x.device)
        x_new, f_new = xa.clone(), f.clone()
        pending = torch.arange(len(active), device=x.device)
        for first, end in itertools.pairwise([0, *range(1, max_backtracks, halvings_per_call), max_backtracks]):
            steps = 0.5 ** torch.arange(first, end, device=x.device, dtype=x.dtype)
            trial = (xa[pending, None] + steps[:, None] * d[pending, None]).clamp(lower, upper)  # [rows, steps, n]
            trial_rows = active[pending].repeat_interleave(len(steps))
            f_trial = objective(trial.flatten(0, 1), trial_rows).view(len(pending), -1)
            ok = f_trial <= f[pending, None] + 1e-4 * (g[pending, None] * (trial - xa[pending, None])).sum(2)
            passed = ok.any(1)
            largest = ok[passed].int().argmax(1)  # the first step that passed: the largest
            done = pending[passed]
            x_new[done], f_new[done] = trial[passed, largest], f_trial[passed, largest]
            accepted[done] = True
            pending = pending[~passed]
            if len(pending) == 0:
                break
        g_new = value_and_grad(x_new, active)[1]
        s_step, y_step = x_new - xa, g_new - g
        sy = (s_step * y_step).sum(1)
        update = accepted & (sy > 1e-10 * (y_step * y_step).sum(1))
        rows = active[update]
        s_hist[rows] = torch.cat([s_hist[rows, 1:], s_step[update, None]], 1)
        y_hist[rows] = torch.cat([y_hist[rows, 1:], y_step[update, None]], 1)
        rho[rows] = torch.cat([rho[rows, 1:], 1.0 / sy[update, None]], 1)
        x[active] = x_new
        converged = ~accepted | ((f - f_new) <= ftol * torch.maximum(f.abs(), f_new.abs()).clamp_min(1.0))
        keep = ~converged
        active, f, g = active[keep], f_new[keep], g_new[keep]
        if len(active) == 0:
            break
    return x


def choose_targets(model, images, labels, mode: str, chosen=None, seed: int = 0, num_classes: int = 10):
    """One target per example (``chosen``, ``random`` wrong label, ``runner_up`` class)."""
    if mode == "chosen":
        return torch.as_tensor(chosen, device=labels.device).long().expand_as(labels).clone()
    if mode == "random":
        generator = torch.Generator().manual_seed(seed)
        offsets = torch.randint(1, num_classes, (len(labels),), generator=generator).to(labels.device)
        return (labels + offsets) % num_classes
    with torch.no_grad():
        scores = model(images)
    scores[torch.arange(len(labels)), labels] = -float("inf")
    return scores.argmax(1)


def check_attack_inputs(labels, targets, c_init: float, num_classes: int) -> None:
    if not c_init > 0:
        raise AttackInputError(f"The attack constant c is {c_init}, but it must be a number > 0.")
    if targets is None:
        return
    targets = torch.as_tensor(targets)
    bad = (targets < 0) | (targets >= num_classes)
    if bad.any():
        raise AttackInputError(f"Target label {int(targets[bad][0])} is out of range; give a label in "
                               f"0..{num_classes - 1}.")
    equal = (targets.expand_as(labels).cpu() == labels.cpu()).nonzero()
    if len(equal):
        index = int(equal[0, 0])
        raise AttackInputError(f"Target label {int(labels[index])} of example {index} equals its true label; "
                               f"choose a different target (or targets=random / runner_up / all).")


def lbfgs_attack(model, images: torch.Tensor, labels: torch.Tensor, targets="all", chosen=None, seed: int = 0,
                 c_init: float = 0.01, c_steps: int = 12, batch_size: int = 1024, num_classes: int = 10,
                 quantized: bool = True, progress: bool = False, **solver) -> AttackResult:
    """Least-distorted adversarial example per image. ``targets``: ``chosen`` (give ``chosen``: a label or one per
    image), ``random``, ``runner_up`` or ``all`` (untargeted: the best of every wrong label). ``c_steps`` rounds
    of the c search (x10 until success, then bisection); ``solver``: options of ``batched_lbfgsb``."""
    if targets not in TARGET_MODES:
        raise AttackInputError(f"targets is {targets!r}, but it must be one of {', '.join(TARGET_MODES)}.")
    if targets == "chosen" and chosen is None:
        raise AttackInputError("targets is 'chosen' but no target label was given; give chosen=<label>.")
    check_attack_inputs(labels, chosen if targets == "chosen" else None, c_init, num_classes)
    model.eval()
    device = images.device
    labels = labels.to(device)
    shape = images.shape[1:]
    flat = images.flatten(1)
    if targets == "all":
        target = torch.arange(num_classes, device=device).repeat(len(labels))
        owner = torch.arange(len(labels), device=device).repeat_interleave(num_classes)
        wrong = target != labels[owner]
        target, owner = target[wrong], owner[wrong]
    else:
        target = choose_targets(model, images, labels, targets, chosen, seed, num_classes)
        owner = torch.arange(len(labels), device=device)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    best = AttackResult(images.clone(), labels.clone(), predicted.clone(), images.new_zeros(len(labels)),
                        images.new_zeros(len(labels)), predicted != labels)
    best.distortion[~best.success] = float("inf")
    best.c[~best.success] = float("nan")
    pending = (~best.success).nonzero().squeeze(1)  # correctly classified examples
    per_chunk = max(1, batch_size // (num_classes - 1 if targets == "all" else 1))
    bar = tqdm(total=len(pending), disable=not progress, desc="L-BFGS attack", unit="example")
    for start in range(0, len(pending), per_chunk):
        examples = pending[start : start + per_chunk]
        rows = torch.isin(owner, examples).nonzero().squeeze(1)
        x_rows, c_rows, ok = attack_rows(model, flat[owner[rows]], target[rows], shape, c_init, c_steps,
                                         quantized, **solver)
        dist = distortion(x_rows, flat[owner[rows]]).masked_fill(~ok, float("inf"))
        for example in examples.tolist():  # each example keeps its least-distorted successful target
            mine = (owner[rows] == example).nonzero().squeeze(1)
            pick = mine[dist[mine].argmin()]
            if ok[pick]:
                best.adversarial[example] = x_rows[pick].view(shape)
                best.distortion[example], best.c[example] = dist[pick], c_rows[pick]
                best.target[example], best.success[example] = target[rows[pick]], True
        bar.update(len(examples))
    bar.close()
    best.distortion[~best.success] = float("nan")
    return best


def attack_rows(model, x0, target, shape, c_init, c_steps, quantized, **solver):
    """The c search for a batch of (image, target) rows: best adversarial row, its c, success."""
    rows = len(x0)
    c = x0.new_full((rows,), c_init)
    low, high = x0.new_zeros(rows), x0.new_full((rows,), float("inf"))
    best_x, best_c = x0.clone(), x0.new_full((rows,), float("nan"))
    best_d = x0.new_full((rows,), float("inf"))
    for _ in range(c_steps):
        def objective(points, index, c=c):
            scores = model(points.view(-1, *shape))
            loss = F.cross_entropy(scores, target[index], reduction="none")
            return (points - x0[index]).pow(2).sum(1) + c[index] * loss

        x = batched_lbfgsb(objective, x0, **solver)
        if quantized:
            x = quantize(x)
        with torch.no_grad():
            success = model(x.view(-1, *shape)).argmax(1) == target
        d = distortion(x, x0)
        better = success & (d < best_d)
        best_x[better], best_d[better], best_c[better] = x[better], d[better], c[better]
        high = torch.where(success, torch.minimum(high, c), high)
        low = torch.where(success, low, torch.maximum(low, c))
        c = torch.where(torch.isinf(high), c * 10, (low + high) / 2)
    return best_x, best_c, torch.isfinite(best_d)


def scipy_reference_rows(model, x0, target, shape, c_init, c_steps, quantized, maxiter=100, gtol=1e-5, ftol=1e-9):
    """The per-example baseline (cleverhans / foolbox style): scipy's L-BFGS-B on one row at a time, float64
    in numpy, the same objective and the same c search. Returns what ``attack_rows`` returns."""
    from scipy.optimize import minimize

    best = [x0[i].clone() for i in range(len(x0))]
    best_c = torch.full((len(x0),), float("nan"))
    best_d = torch.full((len(x0),), float("inf"))
    for i in range(len(x0)):
        original = x0[i].double().cpu().numpy()
        low, high, c = 0.0, float("inf"), c_init
        for _ in range(c_steps):
            def fun(z, c=c, i=i):
                point = torch.tensor(z, dtype=x0.dtype, device=x0.device, requires_grad=True)
                loss = F.cross_entropy(model(point.view(1, *shape)), target[i : i + 1])
                value = (point - x0[i]).pow(2).sum() + c * loss
                (grad,) = torch.autograd.grad(value, point)
                return float(value.detach()), grad.double().cpu().numpy()

            solution = minimize(fun, original, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(original),
                                options={"maxiter": maxiter, "gtol": gtol, "ftol": ftol, "maxcor": 10})
            x = torch.tensor(solution.x, dtype=x0.dtype, device=x0.device)
            x = quantize(x) if quantized else x
            with torch.no_grad():
                success = int(model(x.view(1, *shape)).argmax(1)) == int(target[i])
            d = float(distortion(x[None], x0[i : i + 1]))
            if success and d < best_d[i]:
                best[i], best_d[i], best_c[i] = x, d, c
            high, low = (min(high, c), low) if success else (high, max(low, c))
            c = c * 10 if np.isinf(high) else (low + high) / 2
    return torch.stack(best), best_c, torch.isfinite(best_d)

"""Forward-trained autoencoders (REAE, PIAN, RAN, ROAN) and their softmax classifier, as plain functions.

Samples are ROWS here (torch convention): X is [M, d], H = sigmoid(X Wp^T + bp) is [M, J].
The paper writes samples as columns (X_paper = X^T, H_paper = H^T), so its decoder
Wd = X H^T (H H^T + lambda I)^-1 is, transposed, ``Wd^T = (H^T H + lambda I)^-1 H^T X`` here.

    draw = random_map(784, 750, generator)                        # ONE U[-1, 1] draw per run, shared by
    Wp, bp = feature_map("reae", X, draw, rho=0.2)                # every rho and by "ran" / "roan"; "pian" ignores it
    path = DecoderPath(hidden(X, Wp, bp), X)                      # one eigendecomposition ...
    encoders = [path.encoder(lam) for lam in LAMBDA_GRID]         # ... for the whole lambda grid
    F = encode(X, encoders[0], dtype=torch.float32)               # tied encoder We = Wd^T, sigmoid
    fits = fit_softmax_path(F, y, taus=LAMBDA_GRID, num_classes=10)   # all taus as ONE batched problem

Everything runs on the device of its inputs. The decoder (Gram matrix, eigendecomposition, Cholesky) is
float64; the encoder features and the classifier may run in float32 (tests/test_forward_autoencoder.py
checks that float32 chooses as float64 does). ``fit_softmax`` (scipy L-BFGS-B, float64, one tau at a
time) is the former sequential path, kept as the reference of the tests and the baseline of
benchmarks/forward_autoencoder.py.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FEATURE_MAPS = ("reae", "pian", "ran", "roan")
ACTIVATIONS = ("sigmoid", "linear")
LAMBDA_GRID = tuple(10.0**k for k in range(-5, 3))  # the paper's {1e-5, ..., 1e2} for lambda and tau


def hidden(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Feature map H = sigmoid(X Wp^T + bp), [M, J], in the weight's dtype."""
    pre = X.to(weight.dtype) @ weight.T
    return torch.sigmoid(pre if bias is None else pre + bias)


# ---- feature maps ---------------------------------------------------------------------------------------------
def random_map(input_size: int, hidden_size: int, generator: torch.Generator | None = None):
    """RAN's draw Wp, bp ~ U[-1, 1], float64 on the CPU (the same numbers on every device)."""
    weight = torch.rand(hidden_size, input_size, generator=generator, dtype=torch.float64) * 2 - 1
    bias = torch.rand(hidden_size, generator=generator, dtype=torch.float64) * 2 - 1
    return weight, bias


def orthonormal_map(weight: torch.Tensor, bias: torch.Tensor):
    """ROAN (ELM-AE, Kasun et al. 2013): rows of Wp orthonormal (columns when J > d), bp scaled to unit norm."""
    if weight.shape[0] <= weight.shape[1]:
        weight = torch.linalg.qr(weight.T).Q.T  # [J, d] with orthonormal rows
    else:
        weight = torch.linalg.qr(weight).Q  # [J, d] with orthonormal columns
    return weight, bias / bias.norm()


def pian_map(X: torch.Tensor, hidden_size: int):
    """PIAN (PILAE, Wang et al. 2017): the rank-J part of pinv(X_paper), Sigma_J^-1 U_J^T, scaled; no bias.

    With X_paper = U Sigma V^T (d x M), pinv(X_paper) = V Sigma^-1 U^T; its low-rank approximation keeps the
    J largest singular values. V's rows belong to individual samples, so the map keeps the sample-free factor
    Sigma_J^-1 U_J^T ([J, d]): the hidden pre-activations X Wp^T = V_J are the normalised principal
    components. It depends on the data only through X^T X, hence not on the sample order; singular
    vectors' signs are fixed by making each one's largest entry positive. Singular values below MATLAB's
    pinv cutoff max(d, M) eps s_max do not count, so at most rank(X) <= min(d, M) units: a larger
    hidden_size is cut to the rank (MNIST: ~712 of 750; the 8x8 digits: at most 64).

    Scale: V_J's columns have unit norm over the M samples, so unscaled each unit's pre-activations have
    root-mean-square 1 / sqrt(M) (0.004 on MNIST): H = sigmoid(V_J) = 0.5 + V_J / 4 is constant up to 1e-3,
    the decoder has to amplify that ~1,000-fold, and the tied encoder's features saturate (99 % on MNIST,
    79 % accuracy). The pseudo-inverse fixes the directions, not the scale (a scaled map spans the same
    hidden space), so each unit is scaled to the root-mean-square that RAN's U[-1, 1] draw has in
    expectation on the same data, E (w x + b)^2 = (mean_m ||x_m||^2 + 1) / 3 (29.6 on MNIST: a root-mean-square
    of 5.4): PIAN and RAN then differ only in their directions, the paper's "same network structure". Still a
    function of X^T X.
    """
    X = X.double()
    _, singular_values, right = torch.linalg.svd(X, full_matrices=False)  # right = U_paper^T, [r, d]
    cutoff = max(X.shape) * torch.finfo(torch.float64).eps * singular_values[0]
    keep = min(hidden_size, int((singular_values > cutoff).sum()))
    right = right[:keep]
    signs = torch.sign(right.gather(1, right.abs().argmax(1, keepdim=True)))
    rms = ((X.square().sum(1).mean() + 1) / 3).sqrt()  # RAN's expected pre-activation scale
    return right * signs * (rms * math.sqrt(len(X)) / singular_values[:keep, None]), None


def reae_map(X: torch.Tensor, rho: float, draw: tuple[torch.Tensor, torch.Tensor], init_scale: float = 0.1,
             steps: int = 300, lr: float = 0.02, batch_size: int = 512, seed: int = 0, tolerance: float = 0.1,
             retries: int = 3):
    """REAE: start from init_scale * the RAN draw, then minimise sum_j KL(rho || rho_hat_j) (paper eq. 5).

    The steps are Adam's (per-parameter scaled: units that start saturated have tiny sigmoid slopes, so
    plain gradient steps would barely move them) with a cosine-decayed step size, on the analytic gradient
    dKL/dz_mj = (rho_hat_j - rho) / (rho_hat_j (1 - rho_hat_j)) * h_mj (1 - h_mj) / M.
    rho_hat_j is estimated on a fresh random minibatch of ``batch_size`` samples each step (the whole set
    when it is smaller): a mean of 512 activations in [0, 1] has standard error <= 0.5 / sqrt(512) = 0.022,
    and the decaying step size averages that noise out over the last steps. The minibatches come from
    ``seed`` (drawn on the CPU), so every rho candidate, and every device, sees the same ones.
    Adam moves every weight by about the step size, so each pre-activation by up to ~step x sum_i |x_i|
    (~0.05 x 100 on MNIST, whose pixels in [0, 1] sum to ~100 an image): at step 0.05 units overshoot into
    saturation at small rho and stay there (their gradients vanish); 0.02 for 300 steps meets rho 0.01-0.9 to ~1 %
    on MNIST-like data. Other data may need more (gray natural images: rho 0.01 about 1,000 steps): while some
    unit's mean activation over the whole set is more than ``tolerance`` x rho away from rho, the descent starts
    again with twice the steps, up to ``retries`` times, then says how far it got. The descent runs in float32 on
    X's device (it only has to meet a constraint on means); the result is float64.
    """
    X = X.float()
    for attempt in range(retries + 1):
        params = kl_descent(X, rho, draw, init_scale, steps * 2**attempt, lr, batch_size, seed)
        reached = hidden(X, *params).mean(0)
        off = float((reached - rho).abs().max()) / rho
        if steps == 0 or off <= tolerance:
            break
    else:
        log.warning(f"REAE met rho={rho} only to within {off:.0%} of it after {steps * 2**retries} steps (the units' "
                    f"mean activations {float(reached.min()):.4g}-{float(reached.max()):.4g}); give more steps with "
                    f"model.kl_steps (now {steps}).")
    return params[0].double(), params[1].double()


def kl_descent(X: torch.Tensor, rho: float, draw: tuple[torch.Tensor, torch.Tensor], init_scale: float, steps: int,
               lr: float, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``steps`` Adam steps on sum_j KL(rho || rho_hat_j) from init_scale * the draw (see ``reae_map``)."""
    params = [(init_scale * p).to(X.device, torch.float32) for p in draw]  # [Wp, bp]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # Adam's usual constants
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        batch = X if len(X) <= batch_size else X[torch.randint(len(X), (batch_size,), generator=generator).to(X.device)]
        h = hidden(batch, *params)
        rho_hat = h.mean(0).clamp(1e-6, 1 - 1e-6)
        grad_pre = h * (1 - h) * ((rho_hat - rho) / (rho_hat * (1 - rho_hat)) / len(batch))
        gradients = [grad_pre.T @ batch, grad_pre.sum(0)]
        step_size = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        for param, gradient, (first, second) in zip(params, gradients, moments, strict=True):
            first.mul_(beta1).add_(gradient, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (second / (1 - beta2**step)).sqrt_().add_(eps)
            param.addcdiv_(first, denominator, value=-step_size / (1 - beta1**step))
    return params


def feature_map(name: str, X: torch.Tensor, draw: tuple[torch.Tensor, torch.Tensor], rho: float = 0.2,
                **reae_options):
    """Wp, bp (bp is None for PIAN) of one of FEATURE_MAPS, float64 on X's device; ``draw`` is the run's RAN draw."""
    if name == "reae":
        return reae_map(X, rho, draw, **reae_options)
    if name == "pian":
        return pian_map(X, draw[0].shape[0])
    if name in ("ran", "roan"):
        weight, bias = (p.to(X.device, torch.float64) for p in draw)
        return orthonormal_map(weight, bias) if name == "roan" else (weight, bias)
    raise ValueError(f"feature_map is {name!r}, but it must be one of {', '.join(FEATURE_MAPS)}.")


# ---- decoder and tied encoder ---------------------------------------------------------------------------------
def decoder_transpose(H: torch.Tensor, X: torch.Tensor, lam: float, form: str = "auto") -> torch.Tensor:
    """Wd^T [J, d] minimising ||H Wd^T - X||^2 + lam ||Wd||^2, by a float64 Cholesky solve.

    form "samples_gt_hidden" (paper eq. 7, M > J): (H^T H + lam I_J) Wd^T = H^T X.
    form "hidden_ge_samples" (paper eq. 8, J >= M): Wd^T = H^T A with (H H^T + lam I_M) A = X.
    "auto" picks the smaller system, as the paper does.
    """
    H, X = H.double(), X.double()
    num_samples, hidden_size = H.shape
    if form == "auto":
        form = "samples_gt_hidden" if num_samples > hidden_size else "hidden_ge_samples"
    if form == "samples_gt_hidden":
        gram, rhs = H.T @ H, H.T @ X
    elif form == "hidden_ge_samples":
        gram, rhs = H @ H.T, X
    else:
        raise ValueError(f"form is {form!r}, but it must be auto, samples_gt_hidden or hidden_ge_samples.")
    gram.diagonal().add_(lam)
    solution = torch.cholesky_solve(rhs, torch.linalg.cholesky(gram))
    return solution if form == "samples_gt_hidden" else H.T @ solution


class DecoderPath:
    """Wd^T for many lambdas from ONE float64 eigendecomposition of the smaller Gram matrix.

    With H^T H = Q diag(e) Q^T (M > J): Wd^T(lam) = Q diag(1 / (e + lam)) Q^T H^T X, so each further
    lambda costs one [J, J] x [J, d] product instead of a new factorisation (J >= M: same with H H^T).
    """

    def __init__(self, H: torch.Tensor, X: torch.Tensor):
        H, X = H.double(), X.double()
        self.samples_gt_hidden = H.shape[0] > H.shape[1]
        gram = H.T @ H if self.samples_gt_hidden else H @ H.T
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(gram)
        self.eigenvalues.clamp_(min=0.0)  # round-off can make the smallest eigenvalue of a PSD matrix negative
        rhs = H.T @ X if self.samples_gt_hidden else X
        self.projected = self.eigenvectors.T @ rhs
        self.H = None if self.samples_gt_hidden else H

    def encoder(self, lam: float) -> torch.Tensor:
        """The tied encoder We = Wd^T, [J, d], float64."""
        solution = self.eigenvectors @ (self.projected / (self.eigenvalues + lam).unsqueeze(1))
        return solution if self.samples_gt_hidden else self.H.T @ solution


def encode(X: torch.Tensor, encoder_weight: torch.Tensor, activation: str = "sigmoid",
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """Encoder features g(X We^T) in ``dtype`` (default: the encoder's): no bias (the decoder has none)."""
    dtype = dtype or encoder_weight.dtype
    pre = X.to(dtype) @ encoder_weight.to(dtype).T
    if activation == "sigmoid":
        return torch.sigmoid(pre)
    if activation == "linear":
        return pre
    raise ValueError(f"activation is {activation!r}, but it must be one of {', '.join(ACTIVATIONS)}.")


# ---- classifiers on the encoder features ----------------------------------------------------------------------
class SoftmaxPath(NamedTuple):
    """One classifier per tau: weight [T, C, J], bias [T, C], final objective [T] (float64), iterations [T]."""

    weight: torch.Tensor
    bias: torch.Tensor
    objective: torch.Tensor
    iterations: torch.Tensor


def softmax_losses(params: torch.Tensor, features: torch.Tensor, targets: torch.Tensor, taus: torch.Tensor,
                   gradient: bool = True):
    """Objectives mean CE + (tau_t / 2) ||W_t||^2 (bias unpenalised) of T stacked problems, and their gradients.

    params [T, C, J + 1] = [W | b] per tau. All T problems share ONE [M, J] x [J, T C] product (and one for
    the gradient). The per-sample losses are summed in float64, so the objective resolves decreases far
    below the float32 rounding of a single loss term.
    """
    num_taus, num_classes, _ = params.shape
    weight, bias = params[..., :-1], params[..., -1]
    logits = (features @ weight.reshape(num_taus * num_classes, -1).T).view(len(features), num_taus, num_classes)
    log_probabilities = torch.log_softmax(logits + bias, dim=2)
    picked = log_probabilities.gather(2, targets.view(-1, 1, 1).expand(-1, num_taus, 1)).squeeze(2)
    penalty = 0.5 * taus * weight.double().square().sum((1, 2))
    value = -picked.double().sum(0) / len(features) + penalty
    if not gradient:
        return value, None
    residual = log_probabilities.exp_()
    residual.scatter_add_(2, targets.view(-1, 1, 1).expand(-1, num_taus, 1),
                          torch.full((len(features), num_taus, 1), -1.0, dtype=residual.dtype, device=residual.device))
    residual /= len(features)
    grad_weight = (residual.view(len(features), -1).T @ features).view(num_taus, num_classes, -1)
    grad_weight += taus.to(weight.dtype)[:, None, None] * weight
    return value, torch.cat([grad_weight, residual.sum(0).unsqueeze(2)], dim=2)


def robust_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh``; where LAPACK's dsyevd does not converge (it failed on the covariance of a few dozen
    random images' saturated features), that of the matrix plus a graded diagonal of 1e-10 to 2e-10 of its unit
    scale, which separates repeated eigenvalues. A preconditioner this close leaves the minimiser unchanged."""
    try:
        return torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        graded = torch.linspace(1e-10, 2e-10, len(matrix), dtype=matrix.dtype, device=matrix.device)
        return torch.linalg.eigh(matrix + torch.diag(graded))


class Preconditioner:
    """Approximate inverse Hessians of the T softmax problems, for L-BFGS to start from instead of the identity.

    At W = 0 (uniform class probabilities) the cross-entropy Hessian is G kron (I / C - 1 1^T / C^2) with
    G = [F 1]^T [F 1] / M. In the coordinates (W, b' = b + W mu) of centred features F - mu, G is
    block-diagonal: the covariance S for W, 1 for b'. The preconditioner is the class-diagonal part plus
    the penalty, (S / C + tau_t I)^-1 for W and C for the unpenalised b', mapped back to (W, b). On the badly
    conditioned sigmoid features this needs far fewer iterations than the identity, with the same minimiser.
    S comes from at most ``rows`` evenly spaced samples (float32 product, float64 eigh).
    """

    def __init__(self, features: torch.Tensor, taus: torch.Tensor, num_classes: int, rows: int = 10_000):
        sample = features[:: max(1, len(features) // rows)]
        self.mean = sample.mean(0)
        centred = sample - self.mean
        covariance = (centred.T @ centred).double() / len(sample)
        # Decomposed at unit mean variance: one-thread LAPACK (dsyevd) failed to converge on a covariance of
        # ~1e-6 and rank one (saturated features of a large lambda, `model=forward_autoencoder debug=limit`).
        scale = covariance.diagonal().mean().clamp(min=torch.finfo(torch.float64).tiny)
        eigenvalues, eigenvectors = robust_eigh(covariance / scale)
        eigenvalues = eigenvalues * scale
        self.eigenvectors = eigenvectors.to(features.dtype)
        self.inverse = (1 / (eigenvalues.clamp(min=0) / num_classes + taus[:, None])).to(features.dtype)  # [T, J]
        self.num_classes = num_classes

    def __call__(self, q: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """H0 q for the taus ``index``; q [len(index), C, J + 1] in (W, b) coordinates."""
        q_weight, q_bias = q[..., :-1], q[..., -1:]
        q_weight = q_weight - q_bias * self.mean  # the gradient in (W, b') coordinates
        weight = ((q_weight @ self.eigenvectors) * self.inverse[index, None, :]) @ self.eigenvectors.T
        bias = self.num_classes * q_bias - weight @ self.mean[:, None]  # back to (W, b): b = b' - W mu
        return torch.cat([weight, bias], dim=2)


def fit_softmax_path(features: torch.Tensor, targets: torch.Tensor, taus, num_classes: int, max_iter: int = 200,
                     init: torch.Tensor | None = None, gtol: float = 1e-5, ftol: float = 1e-10, memory: int = 10,
                     max_halvings: int = 30) -> SoftmaxPath:
    """Multinomial logistic regression for every tau at once: batched L-BFGS on the stacked [T, C, J + 1] weights.

    Each tau keeps its own problem, history and step length (the batching only shares the matrix
    products), so the result equals T separate fits. Every iteration: the two-loop recursion on each tau's
    last ``memory`` pairs, started from the Preconditioner scaled by s.y / y.H0 y, then a backtracking
    (Armijo) line search from the unit step. A tau stops when its largest gradient entry is <= gtol, or
    its objective drops by less than ftol * max(|f|, 1) (scipy's two tests; the defaults suit float32
    features, whose gradient is accurate to ~1e-6), or after max_iter iterations; stopped taus leave the
    batch. ``init`` [T, C, J + 1] warm-starts each tau (e.g. from the previous lambda's solution); zeros
    otherwise. Runs in the features' dtype on their device.
    """
    device, dtype = features.device, features.dtype
    taus = torch.as_tensor(taus, dtype=torch.float64, device=device)
    targets = targets.to(device).long()
    num_taus, size = len(taus), (len(taus), num_classes, features.shape[1] + 1)
    params = torch.zeros(size, dtype=dtype, device=device) if init is None else init.to(device, dtype).clone()
    value, gradient = softmax_losses(params, features, targets, taus)
    preconditioner = Preconditioner(features, taus, num_classes)
    steps_s = torch.zeros((memory, *size), dtype=dtype, device=device)
    steps_y = torch.zeros_like(steps_s)
    inverse_curvature = torch.zeros(memory, num_taus, dtype=torch.float64, device=device)  # 1 / (s.y); 0: no pair
    scale = torch.ones(num_taus, dtype=torch.float64, device=device)  # s.y / y.H0 y of the newest pair
    iterations = torch.zeros(num_taus, dtype=torch.long, device=device)
    active = torch.ones(num_taus, dtype=torch.bool, device=device)
    dot = lambda a, b: (a.double() * b.double()).sum((-2, -1))  # noqa: E731  (per-tau inner products)
    for iteration in range(max_iter):
        active &= gradient.abs().amax((1, 2)) > gtol
        if not active.any():
            break
        index = active.nonzero().squeeze(1)
        # two-loop recursion, newest pair first; a zero inverse curvature marks a missing pair
        q = -gradient[index]
        order = [(iteration - 1 - k) % memory for k in range(min(iteration, memory))]
        alphas = []
        for slot in order:
            alpha = inverse_curvature[slot, index] * dot(steps_s[slot, index], q)
            q -= alpha.to(dtype)[:, None, None] * steps_y[slot, index]
            alphas.append(alpha)
        q = scale[index].to(dtype)[:, None, None] * preconditioner(q, index)
        for slot, alpha in zip(reversed(order), reversed(alphas), strict=True):
            beta = inverse_curvature[slot, index] * dot(steps_y[slot, index], q)
            q += (alpha - beta).to(dtype)[:, None, None] * steps_s[slot, index]
        slope = dot(gradient[index], q)
        # backtracking line search: every trial point is evaluated with its gradient, accepted ones are kept
        step = torch.ones(len(index), dtype=torch.float64, device=device)
        pending = torch.arange(len(index), device=device)
        slot = iteration % memory
        inverse_curvature[slot, index] = 0.0
        for _ in range(max_halvings):
            tau_index = index[pending]
            trial = params[tau_index] + step[pending].to(dtype)[:, None, None] * q[pending]
            trial_value, trial_gradient = softmax_losses(trial, features, targets, taus[tau_index])
            accepted = trial_value <= value[tau_index] + 1e-4 * step[pending] * slope[pending]
            done = tau_index[accepted]
            s, y = trial[accepted] - params[done], trial_gradient[accepted] - gradient[done]
            sy = dot(s, y)
            good = sy > 1e-10 * dot(y, y).sqrt() * dot(s, s).sqrt()  # strictly convex: s.y > 0 up to round-off
            steps_s[slot, done], steps_y[slot, done] = s, y
            inverse_curvature[slot, done] = torch.where(good, 1 / sy, torch.zeros_like(sy))
            scale[done] = torch.where(good, sy / dot(y, preconditioner(y, done)), scale[done])
            small_decrease = value[done] - trial_value[accepted] <= ftol * trial_value[accepted].abs().clamp(min=1)
            params[done], value[done], gradient[done] = trial[accepted], trial_value[accepted], trial_gradient[accepted]
            iterations[done] += 1
            active[done[small_decrease]] = False
            pending = pending[~accepted]
            if not len(pending):
                break
            step[pending] /= 2
        active[index[pending]] = False  # no decrease along the direction: as close as the precision allows
    return SoftmaxPath(params[..., :-1].contiguous(), params[..., -1].contiguous(), value, iterations)


def softmax_objective(params: np.ndarray, features: np.ndarray, one_hot: np.ndarray, tau: float):
    """mean cross-entropy + (tau / 2) ||W||^2 (bias unpenalised) and its gradient; params = [W | b] flat (numpy)."""
    num_samples, num_features = features.shape
    num_classes = one_hot.shape[1]
    weight = params.reshape(num_classes, num_features + 1)
    logits = features @ weight[:, :-1].T + weight[:, -1]
    logits -= logits.max(1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(1, keepdims=True))
    probabilities = np.exp(logits - log_norm)
    value = -(one_hot * (logits - log_norm)).sum() / num_samples + 0.5 * tau * (weight[:, :-1] ** 2).sum()
    residual = (probabilities - one_hot) / num_samples
    gradient = np.concatenate([residual.T @ features + tau * weight[:, :-1], residual.sum(0)[:, None]], axis=1)
    return value, gradient.ravel()


def fit_softmax(features: torch.Tensor, targets: torch.Tensor, tau: float, num_classes: int, max_iter: int = 200,
                init: tuple[torch.Tensor, torch.Tensor] | None = None, gtol: float = 1e-6):
    """The sequential reference: ONE tau, scipy L-BFGS-B in float64 on the CPU; W [C, J], b [C], objective history.

    Same minimiser as scikit-learn's LogisticRegression(C=1 / (M * tau)): its objective
    C * sum CE + ||W||^2 / 2 is this one, mean CE + (tau / 2) ||W||^2, divided by tau.
    """
    X = features.double().cpu().numpy()
    one_hot = np.eye(num_classes)[targets.cpu().numpy()]
    if init is None:
        start = np.zeros((num_classes, X.shape[1] + 1))
    else:
        start = np.concatenate([init[0].double().cpu().numpy(), init[1].double().cpu().numpy()[:, None]], axis=1)
    history = [softmax_objective(start.ravel(), X, one_hot, tau)[0]]
    result = scipy.optimize.minimize(
        softmax_objective, start.ravel(), args=(X, one_hot, tau), jac=True, method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-12},
        callback=lambda intermediate_result: history.append(float(intermediate_result.fun)),
    )
    params = torch.from_numpy(result.x.reshape(num_classes, -1))
    return params[:, :-1].contiguous(), params[:, -1].contiguous(), history


def fit_ridge_path(features: torch.Tensor, targets: torch.Tensor, taus, num_classes: int, **_) -> SoftmaxPath:
    """Ridge output layer per tau: min mean ||F W^T + b - onehot||^2 + tau ||W||^2 (centred: b unpenalised).

    One float64 eigendecomposition of the centred Gram matrix serves every tau (as DecoderPath does)."""
    X = features.double()
    one_hot = F.one_hot(targets.to(X.device).long(), num_classes).double()
    mean_x, mean_y = X.mean(0), one_hot.mean(0)
    centred = X - mean_x
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(X))
    projected = eigenvectors.T @ (centred.T @ (one_hot - mean_y) / len(X))
    taus = torch.as_tensor(taus, dtype=torch.float64, device=X.device)
    weight = torch.stack([(eigenvectors @ (projected / (eigenvalues.clamp(min=0) + tau)[:, None])).T for tau in taus])
    bias = mean_y - weight @ mean_x
    zeros = torch.zeros(len(taus), dtype=torch.long)
    return SoftmaxPath(weight.to(features.dtype), bias.to(features.dtype), torch.full((len(taus),), math.nan), zeros)


CLASSIFIER_PATHS = {"softmax": fit_softmax_path, "ridge": fit_ridge_path}


def accuracy(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    """Share of correct predictions of one classifier (W [C, J], b [C]) in the features' dtype."""
    logits = features @ weight.to(features.dtype).T + bias.to(features.dtype)
    return (logits.argmax(1) == targets.to(logits.device)).double().mean().item() if len(targets) else math.nan

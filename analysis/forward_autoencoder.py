"""Forward-trained autoencoders (REAE, PIAN, RAN, ROAN) and their softmax classifier, as plain functions.

Samples are ROWS here (torch convention): X is [M, d], H = sigmoid(X Wp^T + bp) is [M, J].
The paper writes samples as columns (X_paper = X^T, H_paper = H^T), so its decoder
Wd = X H^T (H H^T + lambda I)^-1 is, transposed, ``Wd^T = (H^T H + lambda I)^-1 H^T X`` here.

    Wp, bp = feature_map("reae", X, hidden_size=750, rho=0.2)     # or "pian", "ran", "roan"
    H = hidden(X, Wp, bp)
    path = DecoderPath(H, X)                                      # one eigendecomposition ...
    encoders = [path.encoder(lam) for lam in LAMBDA_GRID]         # ... for the whole lambda grid
    F = encode(X, encoders[0])                                    # tied encoder We = Wd^T, sigmoid
    W, b, objective = fit_softmax(F, y, tau=1e-3, num_classes=10)

Everything is float64; the decoder is solved with a Cholesky factorisation (one lambda) or an
eigendecomposition (a lambda path), never with an explicit inverse.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F

FEATURE_MAPS = ("reae", "pian", "ran", "roan")
ACTIVATIONS = ("sigmoid", "linear")
LAMBDA_GRID = tuple(10.0**k for k in range(-5, 3))  # the paper's {1e-5, ..., 1e2} for lambda and tau


def hidden(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Feature map H = sigmoid(X Wp^T + bp), [M, J]."""
    pre = X @ weight.T
    return torch.sigmoid(pre if bias is None else pre + bias)


# ---- feature maps ---------------------------------------------------------------------------------------------
def random_map(input_size: int, hidden_size: int, orthonormal: bool = False, generator: torch.Generator | None = None):
    """RAN: Wp, bp ~ U[-1, 1]. ROAN (ELM-AE, Kasun et al. 2013): rows of Wp orthonormal (columns when J > d)
    and bp scaled to unit norm."""
    weight = torch.rand(hidden_size, input_size, generator=generator, dtype=torch.float64) * 2 - 1
    bias = torch.rand(hidden_size, generator=generator, dtype=torch.float64) * 2 - 1
    if orthonormal:
        if hidden_size <= input_size:
            weight = torch.linalg.qr(weight.T).Q.T  # [J, d] with orthonormal rows
        else:
            weight = torch.linalg.qr(weight).Q  # [J, d] with orthonormal columns
        bias = bias / bias.norm()
    return weight, bias


def pian_map(X: torch.Tensor, hidden_size: int):
    """PIAN (PILAE, Wang et al. 2017): Wp = the first J rows of pinv(X_paper), no bias.

    The rank cutoff is MATLAB's pinv tolerance max(d, M) * eps * s_max on the singular values.
    """
    num_samples, input_size = X.shape
    if hidden_size > num_samples:
        raise ValueError(
            f"pian takes the first hidden_size={hidden_size} rows of pinv(X), which has only {num_samples} "
            f"(one per training sample); use hidden_size <= {num_samples} or more training data."
        )
    rtol = max(num_samples, input_size) * torch.finfo(torch.float64).eps
    return torch.linalg.pinv(X.T.double(), rtol=rtol)[:hidden_size], None


def kl_divergence(rho: float, rho_hat: torch.Tensor) -> torch.Tensor:
    """sum_j KL(rho || rho_hat_j) for Bernoulli means (the paper's equation 5)."""
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def reae_map(X: torch.Tensor, hidden_size: int, rho: float, steps: int = 100, lr: float = 0.05,
             batch_size: int = 512, generator: torch.Generator | None = None):
    """REAE: start from the RAN draw, then minimise sum_j KL(rho || rho_hat_j) by gradient descent.

    The steps are Adam's (per-parameter scaled: units that start saturated have tiny sigmoid slopes, so
    plain gradient steps would barely move them) with a cosine-decayed step size, on the analytic gradient
    dKL/dz_mj = (rho_hat_j - rho) / (rho_hat_j (1 - rho_hat_j)) * h_mj (1 - h_mj) / M.
    rho_hat_j is estimated on a fresh random minibatch of ``batch_size`` samples each step (the whole set
    when it is smaller): the full-batch estimate costs a [M, d] x [d, J] product per step (~2 s at MNIST
    size on 2 cores), while a mean of 512 activations in [0, 1] has standard error <= 0.5 / sqrt(512)
    = 0.022, and the decaying step size averages that noise out over the last steps. The descent runs in
    float32 (it only has to meet a constraint on means); the result is returned in float64.
    """
    params = [p.float() for p in random_map(X.shape[1], hidden_size, generator=generator)]  # [Wp, bp]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # Adam's usual constants
    X = X.float()
    for step in range(1, steps + 1):
        batch = X if len(X) <= batch_size else X[torch.randint(len(X), (batch_size,), generator=generator)]
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
    return params[0].double(), params[1].double()


def feature_map(name: str, X: torch.Tensor, hidden_size: int, rho: float = 0.2, generator=None, **reae_options):
    """Wp, bp (bp is None for PIAN) of one of the four strategies in FEATURE_MAPS."""
    if name == "reae":
        return reae_map(X, hidden_size, rho, generator=generator, **reae_options)
    if name == "pian":
        return pian_map(X, hidden_size)
    if name in ("ran", "roan"):
        return random_map(X.shape[1], hidden_size, orthonormal=name == "roan", generator=generator)
    raise ValueError(f"feature_map is {name!r}, but it must be one of {', '.join(FEATURE_MAPS)}.")


# ---- decoder and tied encoder ---------------------------------------------------------------------------------
def decoder_transpose(H: torch.Tensor, X: torch.Tensor, lam: float, form: str = "auto") -> torch.Tensor:
    """Wd^T [J, d] minimising ||H Wd^T - X||^2 + lam ||Wd||^2, by a Cholesky solve.

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
    """Wd^T for many lambdas from ONE eigendecomposition of the smaller Gram matrix.

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
        """The tied encoder We = Wd^T, [J, d]."""
        solution = self.eigenvectors @ (self.projected / (self.eigenvalues + lam).unsqueeze(1))
        return solution if self.samples_gt_hidden else self.H.T @ solution


def encode(X: torch.Tensor, encoder_weight: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Encoder features g(X We^T): no bias (the decoder has none), sigmoid or linear."""
    pre = X.to(encoder_weight.dtype) @ encoder_weight.T
    if activation == "sigmoid":
        return torch.sigmoid(pre)
    if activation == "linear":
        return pre
    raise ValueError(f"activation is {activation!r}, but it must be one of {', '.join(ACTIVATIONS)}.")


# ---- classifiers on the encoder features ----------------------------------------------------------------------
def softmax_objective(params: np.ndarray, features: np.ndarray, one_hot: np.ndarray, tau: float):
    """mean cross-entropy + (tau / 2) ||W||^2 (bias unpenalised) and its gradient; params = [W | b] flat."""
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
    """Multinomial logistic regression, full-batch L-BFGS (scipy): W [C, J], b [C] and the objective per iteration.

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


def fit_ridge(features: torch.Tensor, targets: torch.Tensor, tau: float, num_classes: int, **_):
    """Ridge output layer: min mean ||F W^T + b - onehot||^2 + tau ||W||^2 (centred, so b is unpenalised)."""
    X = features.double()
    one_hot = F.one_hot(targets.long(), num_classes).double()
    mean_x, mean_y = X.mean(0), one_hot.mean(0)
    centred = X - mean_x
    gram = centred.T @ centred / len(X)
    gram.diagonal().add_(tau)
    weight = torch.cholesky_solve(centred.T @ (one_hot - mean_y) / len(X), torch.linalg.cholesky(gram)).T
    return weight, mean_y - mean_x @ weight.T, []


CLASSIFIERS = {"softmax": fit_softmax, "ridge": fit_ridge}


def accuracy(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    logits = features.double() @ weight.T + bias
    return (logits.argmax(1) == targets).double().mean().item() if len(targets) else math.nan

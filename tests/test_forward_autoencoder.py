"""REAE / PIAN / RAN / ROAN: the closed-form pieces against reference solutions, and the pipeline through train()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from analysis.forward_autoencoder import (
    DecoderPath,
    decoder_transpose,
    feature_map,
    fit_softmax,
    hidden,
    pian_map,
    random_map,
    reae_map,
)
from framework.validate import ConfigError, validate


@pytest.fixture(autouse=True)
def one_thread():
    """BLAS and torch threads spin against each other on a loaded 2-core machine (60x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def data(num_samples: int, input_size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(num_samples, input_size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def least_squares_decoder(H: torch.Tensor, X: torch.Tensor, lam: float) -> torch.Tensor:
    """min ||H B - X||^2 + lam ||B||^2 as an ordinary least-squares problem on [H; sqrt(lam) I]."""
    augmented = torch.cat([H, lam**0.5 * torch.eye(H.shape[1], dtype=H.dtype)])
    target = torch.cat([X, torch.zeros(H.shape[1], X.shape[1], dtype=X.dtype)])
    return torch.linalg.lstsq(augmented, target, driver="gelsd").solution


@pytest.mark.parametrize("num_samples, hidden_size", [(60, 20), (20, 60)])
def test_decoder_closed_forms_equal_least_squares(num_samples, hidden_size):
    X = data(num_samples, 15)
    weight, bias = random_map(15, hidden_size, generator=torch.Generator().manual_seed(1))
    H = hidden(X, weight, bias)
    reference = least_squares_decoder(H, X, 0.1)
    for form in ("samples_gt_hidden", "hidden_ge_samples", "auto"):
        torch.testing.assert_close(decoder_transpose(H, X, 0.1, form=form), reference, rtol=1e-9, atol=1e-10)


def test_lambda_path_equals_separate_solves():
    for num_samples, hidden_size in [(80, 30), (30, 80)]:
        X = data(num_samples, 12)
        H = hidden(X, *random_map(12, hidden_size, generator=torch.Generator().manual_seed(2)))
        path = DecoderPath(H, X)
        for lam in (1e-3, 1e-1, 1.0, 100.0):
            torch.testing.assert_close(path.encoder(lam), decoder_transpose(H, X, lam), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("rho", [0.1, 0.8])
def test_reae_drives_mean_activations_to_rho(rho):
    X = data(500, 30)
    before = hidden(X, *random_map(30, 40, generator=torch.Generator().manual_seed(3))).mean(0)
    weight, bias = reae_map(X, 40, rho, steps=300, batch_size=128, generator=torch.Generator().manual_seed(3))
    after = hidden(X, weight, bias).mean(0)
    assert (before - rho).abs().max() > 0.2  # the random start is far from the constraint
    # Minibatches of 128: per-step estimate error <= 0.5 / sqrt(128) = 0.044; the decayed steps average it
    # out, so every unit's full-data mean lands within 0.02 (the full-batch optimum would be exact).
    assert (after - rho).abs().max() < 0.02


def test_roan_rows_orthonormal_and_unit_bias():
    weight, bias = random_map(50, 20, orthonormal=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(weight @ weight.T, torch.eye(20, dtype=torch.float64))
    assert bias.norm().item() == pytest.approx(1.0)
    tall, _ = random_map(10, 30, orthonormal=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(tall.T @ tall, torch.eye(10, dtype=torch.float64))  # J > d: columns


def test_pian_deterministic_and_first_rows_of_pseudo_inverse():
    X = data(40, 10)
    first, bias = pian_map(X, 25)
    torch.manual_seed(123)
    again, _ = feature_map("pian", X, 25)
    assert bias is None and torch.equal(first, again)
    np.testing.assert_allclose(first.numpy(), np.linalg.pinv(X.numpy().T)[:25], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="hidden_size=41"):
        pian_map(X, 41)


def test_softmax_objective_decreases_and_matches_sklearn():
    rng = np.random.default_rng(5)
    features = torch.from_numpy(rng.normal(size=(120, 6)))
    targets = torch.from_numpy(rng.integers(0, 3, 120))
    tau = 0.05
    weight, bias, history = fit_softmax(features, targets, tau, num_classes=3, gtol=1e-10)
    assert len(history) > 3 and all(b <= a + 1e-12 for a, b in zip(history, history[1:], strict=False))
    reference = LogisticRegression(C=1 / (len(features) * tau), tol=1e-10, max_iter=10_000).fit(features, targets)
    np.testing.assert_allclose(weight.numpy(), reference.coef_, atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, atol=1e-5)


def test_ridge_output_layer_matches_sklearn_ridge():
    from sklearn.linear_model import Ridge

    from analysis.forward_autoencoder import fit_ridge

    rng = np.random.default_rng(6)
    features, targets = torch.from_numpy(rng.normal(size=(80, 5))), torch.from_numpy(rng.integers(0, 3, 80))
    weight, bias, _ = fit_ridge(features, targets, tau=0.1, num_classes=3)
    # mean squared error + tau ||W||^2  ==  (sum squared error + n tau ||W||^2) / n
    reference = Ridge(alpha=80 * 0.1).fit(features.numpy(), np.eye(3)[targets.numpy()])
    np.testing.assert_allclose(weight.numpy(), reference.coef_, atol=1e-10)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, atol=1e-10)


@pytest.mark.parametrize("override, key", [
    ("model.rho=1.0", "model.rho"),
    ("model.rho=[0.2,0.0]", "model.rho"),
    ("model.lambdas=[0.1,-1]", "model.lambdas"),
    ("model.taus=[-0.1]", "model.taus"),
    ("model.hidden_size=0", "model.hidden_size"),
    ("model.feature_map=pca", "model.feature_map"),
])
def test_bad_config_named_before_any_work(make_cfg, override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate(make_cfg("experiment=reae_digits", override))


GRIDS = ((0.1, 0.5), (0.01, 1.0), (1e-4, 1e-2))


@pytest.mark.slow
def test_digits_pipeline_beats_chance_and_best_checkpoint_reproduces(make_cfg):
    import lightning as L
    from hydra.utils import instantiate

    from train import train

    cfg = make_cfg("experiment=reae_digits", "model.hidden_size=200", "model.rho=[0.1,0.5]",
                   "model.lambdas=[0.01,1.0]", "model.taus=[1e-4,1e-2]", "logger=none", "~callbacks.lr_monitor",
                   "~callbacks.progress_bar", "~callbacks.early_stopping")
    metrics = train(cfg)["metrics"]
    assert metrics["test/acc"] > 0.85 and metrics["val/acc"] > 0.85  # chance is 0.1
    chosen = [metrics[f"chosen/{name}"] for name in ("rho", "lambda", "tau")]  # logged as float32
    assert [min(grid, key=lambda v: abs(v - value)) for grid, value in zip(GRIDS, chosen, strict=True)] == \
        pytest.approx(chosen, rel=1e-6)
    # A fresh, unsolved module restored from the best checkpoint gives the same test accuracy.
    checkpoint = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt"))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    restored = trainer.test(instantiate(cfg.model), datamodule=instantiate(cfg.data), ckpt_path=str(checkpoint),
                            verbose=False)
    assert restored[0]["test/acc"] == pytest.approx(metrics["test/acc"])


def fake_run(feature_map: str, seed: int, acc: float, rho: float = 0.2, hidden_size: int = 750) -> dict:
    return {"seed": seed, "config": {"model": {"feature_map": feature_map, "rho": rho, "hidden_size": hidden_size}},
            "metrics": {"test/acc": acc, "chosen/lambda": 0.01, "chosen/tau": 1e-4}}


def test_study_tables_and_figure(tmp_path):
    from analysis.reae_study import figure, table1, table2

    rean, ran = [0.90, 0.91, 0.92], [0.80, 0.81, 0.83]
    runs = [fake_run("reae", s, a) for s, a in enumerate(rean)] + [fake_run("ran", s, a) for s, a in enumerate(ran)]
    assert "| REAN | 91.00 ± 1.00 | — | 0.01 | 0.0001 | 3 |" in table1(runs)
    # differences 0.10, 0.10, 0.09: t = 0.0967 / (0.00577 / sqrt(3)) = 29.0 with 2 degrees of freedom, p = 0.0012
    assert "| RAN | 1 | 0.00119 | 3 |" in table2(runs)
    points = [fake_run("reae", s, 0.5 + rho / 10 + s / 100, rho, hidden) for s in range(2)
              for rho in (0.1, 0.2) for hidden in (350, 750)]
    text = figure(points, "model.rho", "model.hidden_size", tmp_path / "figure.png")
    assert "| 350 | 0.2 | 52.50 ± 0.71 | 2 |" in text
    assert (tmp_path / "figure.png").read_bytes()[:4] == b"\x89PNG"

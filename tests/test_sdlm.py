"""Stochastic diagonal Levenberg-Marquardt (lightning_modules/sdlm.py) against hand and autograd computations."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from lightning_modules.lenet5 import Subsampling, scaled_tanh, scaled_tanh_derivative
from lightning_modules.sdlm import SDLM, PiecewiseConstantLR, diagonal_gauss_newton


def test_one_unit_step_equals_the_hand_computed_one():
    unit = nn.Linear(2, 1)
    with torch.no_grad():
        unit.weight.copy_(torch.tensor([[0.5, 0.25]]))
        unit.bias.fill_(0.1)
    x, target = torch.tensor([[1.0, -2.0]]), 0.3
    # By hand: a = 0.5 - 0.5 + 0.1, f'(a) = 1.7159 * 2/3 * (1 - tanh(2a/3)^2); E = (f(a) - t)^2 has d2E/df^2 = 2, so
    # the Gauss-Newton diagonal is 2 f'(a)^2 x_j^2 for w_j and 2 f'(a)^2 for the bias.
    a = 0.1
    slope = 1.7159 * 2 / 3 * (1 - math.tanh(2 * a / 3) ** 2)
    out = 1.7159 * math.tanh(2 * a / 3)
    h_w, h_b = [2 * slope**2 * 1.0, 2 * slope**2 * 4.0], 2 * slope**2
    g_w, g_b = [2 * (out - target) * slope * 1.0, 2 * (out - target) * slope * -2.0], 2 * (out - target) * slope

    hessian = diagonal_gauss_newton([unit], scaled_tanh, scaled_tanh_derivative, x, 2.0)
    torch.testing.assert_close(hessian[unit.weight], torch.tensor([h_w]))
    torch.testing.assert_close(hessian[unit.bias], torch.tensor([h_b]))

    lr, mu = 0.01, 0.02
    optimizer = SDLM(unit.parameters(), lr=lr, mu=mu)
    optimizer.set_hessian_diagonal(hessian)
    ((scaled_tanh(unit(x)) - target) ** 2).sum().backward()
    optimizer.step()
    expected_w = [0.5 - lr * g_w[0] / (mu + h_w[0]), 0.25 - lr * g_w[1] / (mu + h_w[1])]
    torch.testing.assert_close(unit.weight.detach(), torch.tensor([expected_w]))
    torch.testing.assert_close(unit.bias.detach(), torch.tensor([0.1 - lr * g_b / (mu + h_b)]))


def test_two_layer_diagonal_equals_the_autograd_gauss_newton_diagonal():
    # Without weight sharing and with a diagonal output Hessian, LeCun's diagonal back-propagation is exact for two
    # layers: each weight feeds one unit. Reference: per-sample Jacobians J of the outputs, h = mean_n sum_o 2 J_o^2.
    torch.manual_seed(0)
    layers = [nn.Linear(3, 4), nn.Linear(4, 2)]
    net = nn.Sequential(layers[0], nn.Module(), layers[1])
    images = torch.randn(16, 3)
    params = {name: p.detach() for name, p in net.named_parameters()}

    def outputs(p, x):
        hidden = scaled_tanh(functional_call(layers[0], {"weight": p["0.weight"], "bias": p["0.bias"]}, (x,)))
        return scaled_tanh(functional_call(layers[1], {"weight": p["2.weight"], "bias": p["2.bias"]}, (hidden,)))

    jacobians = vmap(jacrev(outputs), in_dims=(None, 0))(params, images)  # name -> [N, 2, *param shape]
    hessian = diagonal_gauss_newton(layers, scaled_tanh, scaled_tanh_derivative, images, 2.0)
    for name, param in net.named_parameters():
        expected = (2 * jacobians[name] ** 2).sum(1).mean(0)
        torch.testing.assert_close(hessian[param], expected, rtol=1e-5, atol=1e-7)
        assert (hessian[param] > 0).all()


def test_shared_weight_sums_its_connections():
    # A subsampling coefficient is shared by every window of its map: d2E/dw^2 = sum over windows of
    # x^2-weighted curvature, here 2 f'(a)^2 * (sum of the window's squared inputs), averaged over samples.
    torch.manual_seed(1)
    layer = Subsampling(2)
    images = torch.randn(3, 2, 4, 4)
    hessian = diagonal_gauss_newton([layer], scaled_tanh, scaled_tanh_derivative, images, 2.0)
    curvature = 2 * scaled_tanh_derivative(layer(images).detach()) ** 2  # [3, 2, 2, 2]
    window_squares = torch.nn.functional.avg_pool2d(images**2, 2) * 4
    torch.testing.assert_close(hessian[layer.weight], (curvature * window_squares).sum((2, 3)).mean(0))
    torch.testing.assert_close(hessian[layer.bias], curvature.sum((2, 3)).mean(0))


def test_samples_per_step_scales_the_step_and_a_step_needs_an_estimate():
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = SDLM([weight], lr=0.1, mu=0.5, samples_per_step=4)
    weight.grad = torch.tensor([2.0])
    with pytest.raises(RuntimeError, match="HessianEstimation"):
        optimizer.step()
    optimizer.set_hessian_diagonal({weight: torch.tensor([1.5])})
    optimizer.step()
    assert weight.item() == pytest.approx(1.0 - 4 * 0.1 * 2.0 / (0.5 + 1.5))
    with pytest.raises(ValueError, match="mu"):
        SDLM([weight], lr=0.1, mu=0.0)


def test_schedule_is_the_papers_per_epoch_learning_rate():
    optimizer = SDLM([nn.Parameter(torch.zeros(1))], lr=5e-4)
    schedule = PiecewiseConstantLR(optimizer, values=[5e-4, 2e-4, 1e-4, 5e-5, 1e-5], epochs=[2, 3, 3, 4])
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: nothing moves, but the scheduler sees the usual order
        schedule.step()
    assert seen == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    with pytest.raises(ValueError, match="epoch count"):
        PiecewiseConstantLR(optimizer, values=[1.0, 0.5], epochs=[1, 2])
    with pytest.raises(ValueError, match="'model.optimizer.lr' is 0.1, but PiecewiseConstantLR sets every epoch's"):
        PiecewiseConstantLR(SDLM([nn.Parameter(torch.zeros(1))], lr=0.1), values=[5e-4, 2e-4], epochs=[2])


def test_first_epoch_refreshes_of_the_hessian_estimate_depend_only_on_seed_and_step(tmp_path, monkeypatch, caplog):
    import functools
    import logging

    import lightning as L

    from callbacks.hessian_estimation import HessianEstimation
    from datamodules.random import RandomImagesDataModule
    from lightning_modules.classifier import ClassificationModule
    from lightning_modules.lenet5 import LeNet5Classic

    def run(every: int, epochs: int, disturb: bool = False, num_samples: int = 20,
            seed: int = 3) -> list[tuple[int, torch.Tensor]]:
        L.seed_everything(seed)
        model = ClassificationModule(LeNet5Classic(), functools.partial(SDLM, lr=5e-4, mu=0.05))
        if disturb:  # the global generator's state, as after a resume or other random draws, must not matter
            torch.rand(1000)
        estimates = []

        def recorded(images):
            estimates.append((trainer.global_step, images.clone()))
            return diagonal_hessian(images)
        diagonal_hessian = model.net.diagonal_hessian
        monkeypatch.setattr(model.net, "diagonal_hessian", recorded)
        data = RandomImagesDataModule(num_train=56, num_test=8, image_size=32, batch_size=8, val_fraction=0)
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[HessianEstimation(num_samples, every)],
                            limit_val_batches=0)
        trainer.fit(model, datamodule=data)
        return estimates

    refreshed = run(every=3, epochs=2)
    assert [step for step, _ in refreshed] == [0, 3, 6, 7]  # 7 batches per epoch: refreshes in the first only
    assert [step for step, _ in run(every=0, epochs=2)] == [0, 7]  # the paper: before each epoch
    again = run(every=3, epochs=1, disturb=True)
    for (_, first), (_, second) in zip(refreshed, again, strict=False):
        assert torch.equal(first, second)  # the same images at the same step
    assert len(refreshed[0][1]) == 20 and not torch.equal(refreshed[0][1], refreshed[1][1])
    assert not torch.equal(run(every=0, epochs=1, seed=4)[0][1], refreshed[0][1])  # another seed, other images
    with pytest.raises(ValueError, match="first_epoch_every_n_steps=-1"):
        HessianEstimation(500, -1)
    with caplog.at_level(logging.WARNING, logger="callbacks.hessian_estimation"):
        assert [len(images) for _, images in run(every=0, epochs=1, num_samples=100)] == [56]
    assert "num_samples is 100, but the training set holds 56 images: the Hessian diagonal is estimated on all" \
        in caplog.text

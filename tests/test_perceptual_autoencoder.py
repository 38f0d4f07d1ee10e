"""Feature-prediction autoencoders (seed 003): sizes, losses, the frozen loss network, tiny LunarLander runs."""

from __future__ import annotations

import copy
import functools
import json
import re
import types

import lightning as L
import pytest
import torch
from matplotlib.axes import Axes
from omegaconf import OmegaConf, open_dict

from analysis import perceptual_study
from analysis.embedding_probes import PROBE_GRID, compute_embeddings, mean_baseline, probe_grid, train_probe
from callbacks.embedding_probe import EmbeddingProbe
from datamodules.digits import DigitsDataModule
from datamodules.lunarlander import LunarLanderDataModule
from framework.combinations import shape_problems
from framework.compose import compose_config, compose_with_hydra
from framework.errors import DataError
from framework.hydra_callbacks import needs_imagenet_alexnet
from framework.pretrained import TORCHVISION_FILE
from framework.validate import ConfigError, validate
from lightning_modules import perceptual_autoencoder
from lightning_modules.perceptual_autoencoder import PerceptualAutoencoderModule, kl_divergence
from lightning_modules.perceptual_procedures import PROCEDURES
from tests.conftest import run_cli, warnings_said

RANDOM = {"weights": "random"}
# The authors' sizes at z = 128 (reference file), millions, for 64 and 96 inputs.
AUTHORS_MILLIONS = {"I-I": (4.65, 6.49), "I-F": (20.5, 49.6), "F-F": (39.3, 96.0), "F-I": (23.5, 52.9)}


def module(procedure: str, **options) -> PerceptualAutoencoderModule:
    return PerceptualAutoencoderModule(procedure, **{"latent_dim": 16, "loss_network": RANDOM, **options})


@pytest.mark.parametrize("gamma", [0.0, 0.01])
@pytest.mark.parametrize("side", [64, 96])
@pytest.mark.parametrize("procedure", list(PROCEDURES))
def test_parameter_counts_equal_the_authors(procedure, side, gamma):
    with torch.device("meta"):  # sizes only: no memory, no initialisation
        model = module(procedure, latent_dim=128, gamma=gamma, input_size=side)
    expected = AUTHORS_MILLIONS[procedure[:3]][side == 96]
    assert float(f"{model.autoencoder_parameters() / 1e6:.3g}") == expected  # the authors' three significant digits
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == model.autoencoder_parameters() - (0 if gamma else 128 * model.mu.in_features + 128)
    assert model.feature_size == (None if procedure == "I-I-PW" else 192 * (7 if side == 64 else 11) ** 2)


@pytest.mark.parametrize("side", [64, 96])
def test_decoder_output_side_equals_input_side(side):
    model = module("I-I-PS", input_size=side).eval()
    images = torch.rand(2, 3, side, side)
    assert model.decoder(model(images)).shape == images.shape
    assert model(images).shape == (2, 16)


def test_each_loss_equals_its_formula_and_kl_vanishes_without_gamma():
    torch.manual_seed(0)
    images = torch.linspace(0, 1, 2 * 64 * 64).reshape(2, 1, 64, 64)  # grayscale: repeated to RGB
    rgb = images.repeat(1, 3, 1, 1)
    for procedure, (_, _, loss) in PROCEDURES.items():
        model = module(procedure).eval()
        alex = model.loss_network.features if model.loss_network else None
        features = torch.sigmoid(alex(rgb)).reshape(2, -1) if alex else None
        mu = model.mu(model.encoder(rgb if procedure[0] == "I" else features))
        output = model.decoder(mu)
        if loss == "pixel":
            expected = ((output - rgb) ** 2).mean()
        elif loss == "perceptual":
            expected = ((torch.sigmoid(alex(output)).reshape(2, -1) - features) ** 2).mean()
        else:
            expected = ((output - features) ** 2).mean()
        losses = model.losses(images)
        torch.testing.assert_close(losses["loss"], expected)
        assert losses["kld"].item() == 0.0 and not model.variational
    variational = module("I-F-FP", gamma=0.5).eval()
    mu, logvar = variational.mu(variational.encoder(rgb)), variational.logvar(variational.encoder(rgb))
    kld = -(1 + logvar - mu**2 - logvar.exp()).mean()
    losses = variational.losses(images)
    torch.testing.assert_close(losses["loss"], losses["reconstruction"] + 0.5 * kld)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    assert kl_divergence(torch.ones(3, 4), torch.zeros(3, 4)).item() == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:.*self.trainer.*")  # _step's self.log without a Trainer
def test_training_and_validation_sample_z_while_the_test_loss_and_the_embedding_use_mu():
    """As the authors' VAE: val/loss (which picks the checkpoint) decodes a sample of z, as training does."""
    torch.manual_seed(0)
    model = module("I-I-PW", gamma=0.5).eval()  # eval: BatchNorm as in validation; sampling must not depend on it
    decoded = []
    model.decoder.register_forward_hook(lambda _, inputs, output: decoded.append((inputs[0], output)))
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        hidden = model.encoder(images)
        mu, logvar = model.mu(hidden), model.logvar(hidden)
        kld = -(1 + logvar - mu**2 - logvar.exp()).mean()
        torch.manual_seed(1)
        sample = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        for stage, z in (("train", sample), ("val", sample), ("test", mu)):
            torch.manual_seed(1)
            loss = model._step((images,), stage)
            decoder_input, output = decoded.pop()
            torch.testing.assert_close(decoder_input, z, msg=stage)
            torch.testing.assert_close(loss, ((output - images) ** 2).mean() + 0.5 * kld, msg=stage)
        assert (sample - mu).abs().mean() > 0.5
        assert torch.equal(model(images), mu) and torch.equal(model(images), model(images))  # embeddings: mu
        deterministic = module("I-I-PW").eval()  # gamma = 0: nothing to sample
        assert torch.equal(deterministic._step((images,), "val"), deterministic._step((images,), "test"))


def test_the_mean_epoch_time_over_the_run_is_logged_next_to_the_last_epoch_s(monkeypatch):
    """train.py keeps the last epoch's callback_metrics in results.json: the mean over all epochs must be one."""
    ticks = [0.0, 2.0, 10.0, 14.0, 20.0, 29.0]  # a scripted clock, read at each epoch's start and end: no real time
    clock = iter(ticks)
    monkeypatch.setattr(perceptual_autoencoder, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    durations = [end - start for start, end in zip(ticks[::2], ticks[1::2], strict=True)]
    torch.manual_seed(0)
    model = module("I-I-PW", latent_dim=4)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(4, 3, 64, 64)), batch_size=4)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(model, train_dataloaders=data, val_dataloaders=data)
    logged = {name: value.item() for name, value in trainer.callback_metrics.items() if name.startswith("train/epoch")}
    assert model.epoch_seconds == durations
    assert logged == {"train/epoch_seconds": durations[-1], "train/epoch_seconds_mean": sum(durations) / len(durations)}


@pytest.mark.parametrize(("options", "key"), [
    ({"procedure": "I-X-FP"}, "model.procedure"), ({"input_size": 72}, "model.input_size"),
    ({"latent_dim": 0}, "model.latent_dim"), ({"gamma": -0.1}, "model.gamma"),
    ({"loss_network": {"weights": "random", "feature_size": 1728}}, "model.loss_network.feature_size"),
])
def test_bad_input_is_one_sentence_naming_the_key(options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        PerceptualAutoencoderModule(**{"procedure": "I-F-FP", "loss_network": RANDOM, **options})


@pytest.mark.parametrize("layout", ["torchvision", "features", "perceptual-run"])
def test_the_loss_network_takes_alexnets_first_convolutions_from_each_file_layout(tmp_path, layout):
    """torchvision's AlexNet state dict, its features alone (the converted ImageNet file's keys) or a perceptual run's
    checkpoint: only torchvision's full state dict passed (all five convolutions were required)."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    source = alexnet()
    state = {"torchvision": source.state_dict(), "features": source.features.state_dict(),
             "perceptual-run": {"state_dict": {f"loss_network.features.{key}": value
                                               for key, value in source.features[:5].state_dict().items()}}}[layout]
    torch.save(state, tmp_path / "weights.pt")
    loss_network = perceptual_autoencoder.LossNetwork(str(tmp_path / "weights.pt"))
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(loss_network(images), torch.sigmoid(source.features[:5](images)).flatten(1))


def test_a_loss_network_file_without_alexnets_first_convolutions_is_one_sentence(tmp_path):
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp_path / "half.pt")  # conv 3 missing
    with pytest.raises(ConfigError) as error:
        perceptual_autoencoder.LossNetwork(str(tmp_path / "half.pt"))
    assert str(error.value) == (
        f"Config key 'model.loss_network.weights' is '{tmp_path}/half.pt', but that file holds no AlexNet convolutions "
        f"0 and 3 (features.0: conv 3->64 k11, features.3: 64->192 k5); give 'imagenet', 'random' or a file that holds "
        f"them (torchvision's AlexNet state dict, its features, or a perceptual run's checkpoint).")


def test_gray_images_fit_the_three_channels_the_module_expects():
    """The module repeats a one-channel image into its three channels (``rgb``), so gray data of its side fits it
    (the digits, data.image_size=64); a model that says nothing of gray is told that the channels differ."""
    net = module("I-I-PW")
    assert net.takes_gray and net.input_shape == (3, 64, 64)
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 16)
    assert shape_problems(OmegaConf.create({}), (1, 64, 64), (1, 64, 64), net.input_shape, takes_gray=True) == []
    assert shape_problems(OmegaConf.create({}), (1, 64, 64), (1, 64, 64), net.input_shape) == [
        "the model expects 3 channel(s), the data has 1"]


def test_data_of_side_64_is_offered_the_smallest_input_size():
    """The (V)AE takes sides 64 + 16N: 64x64 data beside a model of another side names model.input_size=64 too."""
    cfg = OmegaConf.create({"model": {"input_size": 80}, "data": {"image_size": 64}})
    assert shape_problems(cfg, (3, 64, 64), (3, 64, 64), (3, 80, 80)) == [
        "the model expects 80x80 images, the data has 64x64 (set data.image_size=80 or model.input_size=64)"]


def test_probe_grid_chooses_the_lowest_validation_loss():
    torch.manual_seed(0)
    x = torch.randn(300, 4)
    y = torch.stack([torch.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1)
    embeddings = {"train": (x[:200], y[:200]), "val": (x[200:250], y[200:250]), "test": (x[250:], y[250:])}
    result = probe_grid(embeddings, "regression", max_epochs=40, patience=5, batch_size=64)
    assert len(result["val_losses"]) == len(PROBE_GRID)
    assert result["val_loss"] == min(result["val_losses"])
    assert result["hidden"] == list(PROBE_GRID[result["val_losses"].index(min(result["val_losses"]))])
    _, again = train_probe(result["hidden"], embeddings["train"], embeddings["val"], 40, 5, 64, 0)
    assert again == result["val_loss"]  # deterministic
    # Validation targets unrelated to the inputs stop training early: the net comes back from its best epoch.
    noise = (x[200:250], torch.randn(50, 2))
    net, best = train_probe([32], embeddings["train"], noise, 40, 3, 64, 0)
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(net(noise[0]), noise[1]).item() == pytest.approx(best, rel=1e-6)
    assert result["test_metric"] < mean_baseline(embeddings, "regression")


def test_probe_is_indifferent_to_the_embeddings_scale_and_offset():
    """A briefly trained encoder's embeddings can spread 1e-3 around an offset: the probe standardises them
    (and starts from the mean target), so it learns the same net as on unit-scale embeddings."""
    torch.manual_seed(0)
    x = torch.randn(300, 4)
    y = torch.stack([torch.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1) + torch.tensor([0.0, 1.3])
    splits = {"train": slice(0, 200), "val": slice(200, 250), "test": slice(250, 300)}
    unit = {split: (x[index], y[index]) for split, index in splits.items()}
    tiny = {split: (5.0 + 1e-3 * x[index], y[index]) for split, index in splits.items()}
    results = [probe_grid(e, "regression", [[], [32]], max_epochs=40, patience=5, batch_size=64) for e in (unit, tiny)]
    assert results[0]["hidden"] == results[1]["hidden"]
    assert results[1]["test_metric"] == pytest.approx(results[0]["test_metric"], rel=1e-3)
    assert results[1]["test_metric"] < 0.8 * mean_baseline(tiny, "regression")


def test_default_optimizer_is_the_fused_adam_with_the_for_loop_adams_updates():
    # F-F-FP: no conv bias before a BatchNorm, whose zero gradient makes Adam's step a ratio of rounding noise
    torch.manual_seed(0)
    fused = module("F-F-FP", feature_hidden_max=64)
    loop = module("F-F-FP", feature_hidden_max=64, optimizer=functools.partial(torch.optim.Adam, lr=1e-3,
                                                                                foreach=False))
    loop.load_state_dict(fused.state_dict())
    start = {name: p.clone() for name, p in fused.named_parameters()}
    images = torch.rand(8, 3, 64, 64)
    for model in (fused, loop):
        optimizer = model.configure_optimizers()
        assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["fused"] is (model is fused or None)
        for _ in range(3):
            optimizer.zero_grad()
            model.losses(images)["loss"].backward()
            optimizer.step()
    assert not torch.equal(fused.decoder[2].weight, start["decoder.2.weight"])  # it trained
    for (name, p), q in zip(fused.named_parameters(), loop.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def lunarlander(tmp_path_factory):
    # One terrain for all rollouts: probes fitted on 4 rollouts of random terrain learn the terrain, not the lander.
    data = LunarLanderDataModule(data_dir=str(tmp_path_factory.mktemp("lunar")), rollouts=4, steps_per_rollout=40,
                                 train_seed=1, test_seed=2, terrain_seed=0, generation_workers=1, progress=False,
                                 batch_size=32)
    data.prepare_data()
    return data


@pytest.mark.slow
@pytest.mark.parametrize("procedure", list(PROCEDURES))
def test_tiny_lunarlander_run_trains_keeps_the_loss_network_frozen_and_its_probe_beats_the_mean(procedure, lunarlander):
    L.seed_everything(0)
    model = module(procedure, feature_hidden_max=64, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    frozen = {k: v.clone() for k, v in model.loss_network.state_dict().items()} if model.loss_network else {}
    probe = EmbeddingProbe(task="regression", grid=[[], [32]], max_epochs=20, patience=5, batch_size=64)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[probe], num_sanity_val_steps=0)
    data = lunarlander
    data.setup("fit")
    terms = model.eval().losses(data.on_after_batch_transfer(data.datasets["train"][:64], 0)[0])
    before = terms["loss"].item()
    with warnings_said() as said:
        trainer.fit(model.train(), datamodule=data)
    assert not [message for message in said if "in eval mode" in message]  # the frozen loss network's
    assert {f"train/{term}" for term in terms} | {"val/loss", "train/epoch_seconds"} <= set(trainer.callback_metrics)
    after = model.eval().losses(data.on_after_batch_transfer(data.datasets["train"][:64], 0)[0])["loss"].item()
    assert after < before
    if model.loss_network:
        assert not model.loss_network.training
        for name, parameter in model.loss_network.named_parameters():
            assert parameter.grad is None and not parameter.requires_grad
            assert torch.equal(parameter, frozen[name])
    metrics = trainer.callback_metrics
    assert metrics["probe/test_mean_distance"] < metrics["probe/baseline_mean_distance"]  # beats the mean position
    assert metrics["probe/val_loss"] == probe.result["val_loss"]
    assert trainer.callback_metrics["probe/random_loss_network"] == float(model.loss_network is not None)


def test_a_fresh_module_warns_of_no_module_in_eval_mode_and_of_any_beyond_the_loss_network(lunarlander):
    """As train.py fits it: built, not yet put in train mode; Lightning warned of the loss network's modules."""
    model = module("I-F-FP", feature_hidden_max=64)
    warned = []
    for eval_mode in ([], [model.mu]):  # then one module besides the loss network's
        for extra in eval_mode:
            extra.eval()
        trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        with warnings_said() as said:
            trainer.fit(model, datamodule=lunarlander)
        warned.append([message for message in said if "in eval mode" in message])
    counted = len(list(model.loss_network.modules())) + 1
    assert warned[0] == [] and len(warned[1]) == 1, warned
    assert warned[1][0].startswith(f"Found {counted} module(s) in eval mode"), warned


@pytest.mark.parametrize(("override", "key"), [
    ("model.procedure=I-I-FP", "model.procedure"), ("model.input_size=100", "model.input_size"),
    ("model.latent_dim=0", "model.latent_dim"), ("model.gamma=-1", "model.gamma"),
    ("model.loss_network.weights=resnet", "model.loss_network.weights"),
])
def test_experiment_configs_compose_and_bad_values_are_named(make_cfg, override, key):
    for experiment in ("perceptual_lunarlander", "perceptual_stl10", "perceptual_svhn"):
        validate(make_cfg(f"experiment={experiment}"))
    with pytest.raises(ConfigError, match=rf"Config key '{key}' is .*, but it must be"):
        validate(make_cfg("experiment=perceptual_lunarlander", override))


@pytest.mark.parametrize("experiment", ["perceptual_lunarlander", "perceptual_stl10", "perceptual_svhn"])
def test_the_grid_repeats_each_run_with_four_seeds_as_the_paper(experiment):
    # "The complete experiment procedure was repeated 4 times."
    assert compose_with_hydra([f"experiment={experiment}"]).hydra.sweeper.params.seed == "0,1,2,3"


def fake_run(dataset: str, procedure: str, z: int, seed: int, value: float, seconds: float, *overrides: str) -> dict:
    """``seconds``: the mean over the run's epochs; its last epoch took 100 s more (a noisy sample)."""
    metric = "probe/test_mean_distance" if dataset == "LunarLander" else "probe/test_accuracy"
    return {"config": {"data": {"_target_": f"datamodules.x.{dataset}DataModule"},
                       "model": {"procedure": procedure, "latent_dim": z, "loss_network": {"weights": "imagenet"}},
                       "trainer": {"max_epochs": 50}},
            "metrics": {metric: value, "train/epoch_seconds": seconds + 100.0, "train/epoch_seconds_mean": seconds,
                        "probe/random_loss_network": float("model.loss_network.weights=random" in overrides)},
            "overrides": [f"model.procedure={procedure}", f"model.latent_dim={z}", f"seed={seed}", *overrides],
            "seed": seed, "path": f"sweep/{dataset}-{procedure}-{z}-{seed}"}


def test_table1_and_figures_aggregate_over_seeds_with_the_uncorrected_std(tmp_path, monkeypatch):
    runs = [fake_run("LunarLander", "I-F-FP", 128, 0, 1.0, 2.0), fake_run("LunarLander", "I-F-FP", 128, 1, 3.0, 4.0),
            fake_run("LunarLander", "I-I-PS", 128, 0, 5.0, 6.0), fake_run("LunarLander", "I-F-FP", 64, 0, 9.0, 1.0),
            fake_run("SVHN", "I-I-PW", 128, 0, 0.8, 7.0)]
    table = perceptual_study.table1(runs, 128)
    # the paper's "uncorrected sample standard deviation": sqrt(((1 - 2)^2 + (3 - 2)^2) / 2) = 1, not 1.4142 (n - 1)
    assert "| I-F-FP | 2.0000 ± 1.0000 (n=2) | – |" in table
    assert "| I-I-PW | – | 0.8000 ± — (n=1) |" in table and "random" not in table  # one seed: no spread, not 0
    assert table.endswith("\n\nMean ± uncorrected (population) standard deviation over the n seeds, as in the paper."
                          "\n\nLeft out: 1 run(s) at model.latent_dim 64 (the table is at z = 128).")
    # (z, n, seconds per epoch ± std, performance ± std): the runs' mean epoch times, not their last epochs'
    assert perceptual_study.points(runs, "LunarLander")["I-F-FP"] == [(64, 1, 1.0, 0.0, 9.0, 0.0),
                                                                       (128, 2, 3.0, 1.0, 2.0, 1.0)]
    bars = []  # Figures 6-8: mean ± std on both axes
    errorbar = Axes.errorbar

    def spy(axes, x, y, **options):
        bars.append((options["label"], x, y, options["xerr"], options["yerr"]))
        return errorbar(axes, x, y, **options)

    monkeypatch.setattr(Axes, "errorbar", spy)
    text = perceptual_study.figure(runs, tmp_path)
    assert ("I-F-FP", [1.0, 3.0], [9.0, 2.0], [0.0, 1.0], [0.0, 1.0]) in bars
    assert "| I-F-FP | 128 | 2 | 3.00 ± 1.00 | 2.0000 ± 1.0000 |" in text
    assert "| I-F-FP | 64 | 1 | 1.00 ± — | 9.0000 ± — |" in text  # one seed: no spread
    assert "the mean over each run's epochs." in text and "predate" not in text
    assert (tmp_path / "perceptual_lunarlander.png").stat().st_size > 1000
    assert (tmp_path / "perceptual_svhn.png").exists()
    runs[:2] = [fake_run("LunarLander", "I-F-FP", 128, seed, value, 2.0, "model.loss_network.weights=random")
                for seed, value in ((0, 1.0), (1, 3.0))]
    assert "2.0000 ± 1.0000 (n=2) (random AlexNet)" in perceptual_study.table1(runs, 128)
    sections = [line for line in perceptual_study.figure(runs, tmp_path).splitlines() if line.startswith("###")]
    assert sections == ["### LunarLander (random AlexNet)", "### SVHN"]  # SVHN's were marked by LunarLander's runs


def test_figures_leave_out_a_run_without_probe_metrics_listed_before_the_probed_ones(tmp_path):
    """A run trained without callbacks.probe, listed first, stopped the figures with a TypeError (Table I left it
    out)."""
    unprobed = fake_run("LunarLander", "I-I-PS", 128, 0, 0.0, 2.0)
    del unprobed["metrics"]["probe/test_mean_distance"]
    runs = [unprobed, fake_run("LunarLander", "I-F-FP", 128, 0, 1.0, 2.0), fake_run("LunarLander", "I-F-FP", 128, 1,
                                                                                    3.0, 4.0)]
    assert "Left out: 1 run(s) without probe metrics" in perceptual_study.table1(runs, 128)
    text = perceptual_study.figure(runs, tmp_path)
    assert "| procedure | z | n | seconds per epoch | mean distance (lower is better) |" in text
    assert "| I-F-FP | 128 | 2 | 3.00 ± 1.00 | 2.0000 ± 1.0000 |" in text and "I-I-PS" not in text


def test_runs_probed_after_training_count_in_table1_and_the_figures(tmp_path):
    """task=perceptual_probe writes probe.json into a run trained without the probe; Table I and the figures read
    results.json alone and left such runs out."""
    from evaluate import evaluate
    from framework.results import write_json_atomic

    sweep = tmp_path / "sweep"
    for seed, value in ((0, None), (1, 1.0)):
        run = fake_run("LunarLander", "I-F-FP", 128, seed, value or 0.0, 2.0)
        del run["path"]
        run["config"]["model"]["_target_"] = "lightning_modules.perceptual_autoencoder.PerceptualAutoencoderModule"
        if value is None:  # trained without the probe, probed since
            del run["metrics"]["probe/test_mean_distance"]
            write_json_atomic(sweep / str(seed) / "probe.json", {
                "metric": "mean_distance", "test_metric": 3.0, "val_loss": 0.5, "baseline": 9.0, "hidden": [],
                "loss_network_weights": "imagenet", "checkpoint": "best.ckpt"})
        write_json_atomic(sweep / str(seed) / "results.json", run)
    table = evaluate(compose_config([f"runs={sweep}", "task=perceptual_table1"], tmp_path / "out", "evaluate"))
    assert "| I-F-FP | 2.0000 ± 1.0000 (n=2) |\n" in table and "Left out" not in table
    figures = evaluate(compose_config([f"runs={sweep}", "task=perceptual_figures"], tmp_path / "out", "evaluate"))
    assert "| I-F-FP | 128 | 2 | 2.00 ± 0.00 | 2.0000 ± 1.0000 |" in figures
    (sweep / "0" / "probe.json").write_text("{}")
    with pytest.raises(DataError, match=rf"^{sweep / '0' / 'probe.json'} is not a probe.json that "
                                        r"task=perceptual_probe wrote \(KeyError: 'metric'\); run"):
        evaluate(compose_config([f"runs={sweep}", "task=perceptual_table1"], tmp_path / "out", "evaluate"))


def test_later_probes_keep_a_runs_own_metrics_and_its_unprobed_runs_and_name_an_unreadable_probe_json(tmp_path):
    """A run's own probe metrics stay beside a probe.json; a run with neither stays (Table I counts it as left out);
    a probe.json that is not JSON, or not a mapping, is named."""
    from framework.results import write_json_atomic

    probe = {"metric": "mean_distance", "test_metric": 7.0, "val_loss": 0.5, "baseline": 9.0, "hidden": [],
             "loss_network_weights": "imagenet", "checkpoint": "best.ckpt"}
    own = fake_run("LunarLander", "I-F-FP", 128, 0, 1.0, 2.0) | {"path": str(tmp_path / "own")}
    write_json_atomic(tmp_path / "own" / "probe.json", probe)
    never = fake_run("LunarLander", "I-F-FP", 128, 1, 0.0, 2.0) | {"path": str(tmp_path / "never")}
    del never["metrics"]["probe/test_mean_distance"]
    assert perceptual_study.with_later_probes([own, never]) == [own, never]
    broken = never | {"path": str(tmp_path / "broken")}
    (tmp_path / "broken").mkdir()
    for text, why in (("{", "JSONDecodeError"), ("[]", "TypeError")):
        (tmp_path / "broken" / "probe.json").write_text(text)
        with pytest.raises(DataError, match=rf"probe.json is not a probe.json that task=perceptual_probe wrote "
                                            rf"\({why}: "):
            perceptual_study.with_later_probes([broken])


@pytest.mark.parametrize(("overrides", "message"), [
    (["trainer.max_epochs=1", "trainer.max_epochs=3"], r"differ in trainer.max_epochs \(1, 3\)"),
    (["model.loss_network.weights=random", None], r"differ in model.loss_network.weights \(random, imagenet\)"),
])
def test_a_cell_refuses_runs_that_differ_in_a_setting_the_table_does_not_show(overrides, message, tmp_path):
    """1- and 3-epoch runs, or random and ImageNet loss networks, were averaged in one cell of Table I."""
    runs = [fake_run("LunarLander", "I-F-FP", 128, seed, 1.0, 2.0, *[o for o in [override] if o])
            for seed, override in enumerate(overrides)]
    match = message + r", which a cell of Table I or a point of Figures 6-8 would pool .*group_by=\[model.procedure,"
    for study in (lambda: perceptual_study.table1(runs, 128), lambda: perceptual_study.figure(runs, tmp_path)):
        with pytest.raises(ConfigError, match=match):
            study()
    other_dataset = fake_run("SVHN", "I-F-FP", 128, 0, 0.8, 2.0, *[o for o in overrides[:1] if o])  # another cell
    assert "| I-F-FP | 1.0000 ± — (n=1) | 0.8000 ± — (n=1)" in perceptual_study.table1([runs[1], other_dataset], 128)


def test_a_seed_s_run_given_twice_is_refused_not_counted_as_two_repeats(tmp_path):
    """A sweep's folder given under two names made Table I say n=4 for two seeds."""
    runs = [fake_run("LunarLander", "I-F-FP", 128, seed, 1.0 + seed, 2.0) for seed in (0, 1)]
    copied = {**runs[1], "path": "copy/LunarLander-I-F-FP-128-1"}
    match = re.escape("Config key 'runs' gives two runs of seed 1 with one setting (sweep/LunarLander-I-F-FP-128-1, "
                      "copy/LunarLander-I-F-FP-128-1), which a cell of Table I or a point of Figures 6-8 would count "
                      "as two repeats; give each seed's run once.")
    for study in (lambda: perceptual_study.table1([*runs, copied], 128),
                  lambda: perceptual_study.figure([*runs, copied], tmp_path)):
        with pytest.raises(ConfigError, match=match):
            study()


def test_table1_names_the_runs_it_leaves_out_and_refuses_runs_of_another_z():
    unprobed = fake_run("LunarLander", "I-F-FP", 128, 1, 0.0, 2.0)
    del unprobed["metrics"]["probe/test_mean_distance"]  # trained without callbacks.probe
    table = perceptual_study.table1([fake_run("LunarLander", "I-F-FP", 128, 0, 1.0, 2.0), unprobed], 128)
    assert "| I-F-FP | 1.0000 ± — (n=1) |" in table
    assert table.endswith("\n\nLeft out: 1 run(s) without probe metrics (probe/test_mean_distance or "
                          "probe/test_accuracy) in results.json: sweep/LunarLander-I-F-FP-128-1.")
    with pytest.raises(ConfigError, match=r"^Config key 'runs' holds no probed run at model.latent_dim=128, the z of "
                                          r"Table I \(the probed runs have model.latent_dim 64\); give runs= runs of "
                                          r"model.latent_dim=128"):
        perceptual_study.table1([fake_run("LunarLander", "I-F-FP", 64, 0, 1.0, 2.0)], 128)
    with pytest.raises(ConfigError, match=r"\(no run has probe/test_mean_distance or probe/test_accuracy\)"):
        perceptual_study.table1([unprobed], 128)


def test_runs_from_before_the_mean_epoch_time_fall_back_to_their_last_epoch_and_say_so(tmp_path):
    runs = [fake_run("LunarLander", "I-F-FP", 128, seed, 1.0, 2.0 * (seed + 1)) for seed in range(3)]
    del runs[2]["metrics"]["train/epoch_seconds_mean"]  # an older results.json: 106 s, its last epoch's
    assert perceptual_study.points(runs, "LunarLander")["I-F-FP"][0].seconds == pytest.approx((2 + 4 + 106) / 3)
    assert "1 of 3 runs predate `train/epoch_seconds_mean` and give their last epoch's." in perceptual_study.figure(
        runs, tmp_path)


@pytest.mark.parametrize("procedure", ["I-I-PW", "I-F-FP"])
def test_evaluate_probes_every_finished_run_s_checkpoint(tmp_path, lunarlander, procedure):
    """I-F-FP: trained against a loss network from a file of the user's, since moved away (its tensors are in the
    checkpoint; the probe stopped, unable to read the file)."""
    from omegaconf import OmegaConf
    from torchvision.models import alexnet

    from evaluate import evaluate
    from framework.compose import compose_config
    from framework.results import write_json_atomic

    weights = tmp_path / "my_alexnet.pt"
    torch.save(alexnet().state_dict(), weights)
    model_cfg = {"_target_": "lightning_modules.perceptual_autoencoder.PerceptualAutoencoderModule",
                 "procedure": procedure, "latent_dim": 8, "loss_network": {"weights": str(weights)}}
    data_cfg = {"_target_": "datamodules.lunarlander.LunarLanderDataModule", "data_dir": str(lunarlander.data_dir),
                "rollouts": 4, "steps_per_rollout": 40, "train_seed": 1, "test_seed": 2, "terrain_seed": 0,
                "progress": False}
    probe_cfg = {"_target_": "callbacks.embedding_probe.EmbeddingProbe", "task": "regression", "grid": [[]],
                 "max_epochs": 5, "patience": 2, "data": None, "seed": "${seed}"}  # as conf/callbacks/probe.yaml
    sweep, expected = tmp_path / "sweep", []
    for seed in (0, 1):  # a sweep of two runs: each gets its own probe.json
        run_dir = sweep / str(seed)
        (run_dir / ".hydra").mkdir(parents=True)
        OmegaConf.save({"seed": seed, "model": model_cfg, "data": data_cfg, "callbacks": {"probe": probe_cfg}},
                       run_dir / ".hydra" / "config.yaml")
        torch.manual_seed(seed)
        model = PerceptualAutoencoderModule(procedure, latent_dim=8, loss_network={"weights": str(weights)})
        torch.save({"state_dict": model.state_dict()}, run_dir / "best.ckpt")
        write_json_atomic(run_dir / "results.json", {"metrics": {}, "best_checkpoint": str(run_dir / "best.ckpt"),
                                                     "config": {"model": model_cfg}})
        expected.append(EmbeddingProbe(task="regression", grid=[[]], max_epochs=5, patience=2, seed=seed).run(
            model, lunarlander))
    weights.unlink()
    text = evaluate(compose_config([f"runs={sweep}", "task=perceptual_probe"], tmp_path / "out", "evaluate"))
    for seed, wanted in enumerate(expected):
        probe = json.loads((sweep / str(seed) / "probe.json").read_text())
        assert probe["test_metric"] == pytest.approx(wanted["test_metric"]) and probe["hidden"] == []
        assert probe["loss_network_weights"] == (str(weights) if procedure == "I-F-FP" else None)
        assert f"Probe of {sweep / str(seed) / 'best.ckpt'}: test mean_distance {wanted['test_metric']:.4f}" in text
    assert expected[0]["test_metric"] != expected[1]["test_metric"]


def multirun_config(*overrides: str, sweeps: tuple[str, ...] = ()):
    """What a multirun's callbacks see: the config composed without its sweeps, all overrides in hydra.overrides."""
    cfg = compose_with_hydra(list(overrides))
    with open_dict(cfg):
        cfg.hydra.overrides.task = [*overrides, *sweeps]
    return cfg


@pytest.mark.parametrize(("overrides", "sweeps", "needed"), [
    (["experiment=perceptual_lunarlander"], [], True),  # the grid's six procedures
    (["experiment=perceptual_lunarlander", "model.procedure=I-I-PW"], [], False),  # the command line beats the grid
    (["experiment=perceptual_lunarlander"], ["model.procedure=I-I-PW,I-I-PS"], True),
    (["experiment=perceptual_lunarlander", "model.loss_network.weights=random"], [], False),
    (["experiment=perceptual_lunarlander"], ["model.loss_network.weights=random,imagenet"], True),
    (["model=perceptual_autoencoder"], ["seed=range(0,2)"], True),  # the model's default procedure, I-F-FP
    (["model=perceptual_autoencoder", "model.procedure=I-I-PW"], ["seed=range(0,2)"], False),
    (["model=lenet5"], ["seed=range(0,2)"], False),
])
def test_a_multirun_knows_whether_its_jobs_need_the_imagenet_alexnet(overrides, sweeps, needed):
    assert needs_imagenet_alexnet(multirun_config(*overrides, sweeps=tuple(sweeps))) is needed


def test_a_sweep_whose_weights_are_unusable_stops_before_its_first_job(tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(3)}, hub / TORCHVISION_FILE)
    (tmp_path / "data").mkdir()
    result = run_cli("train.py", "-m", "experiment=perceptual_lunarlander", "data.rollouts=2",
                     "data.steps_per_rollout=20", "debug=smoke", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     env={"TORCH_HOME": str(tmp_path / "torch"), "DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Weights error: {hub / TORCHVISION_FILE} does not hold")
    assert not (tmp_path / "sweep" / "0").exists()  # the twelve I-I-PW jobs of the grid did not run first
    assert not any((tmp_path / "data").iterdir())  # nor was any LunarLander frame generated


@pytest.mark.parametrize(("experiment", "settings"), [
    ("perceptual_lunarlander", {"data_dir": "/elsewhere", "image_size": 96, "label_observation": "before",
                                "terrain_seed": 5, "grayscale": True, "mean": 0.5, "std": 0.25}),
    ("perceptual_svhn", {"data_dir": "/elsewhere", "pad_to": 96, "pad_mode": "constant", "grayscale": True}),
    ("perceptual_stl10", {"data_dir": "/elsewhere", "grayscale": True, "mean": 0.5}),
])
def test_the_probes_data_takes_the_runs_data_settings(tmp_path, experiment, settings):
    """The probes train and test on other frames or splits than the autoencoder, but embed them with its encoder: a
    data setting of the run (its terrain, image size, the labelled state, the folder) now reaches them too; it was
    left at the class default, so data.terrain_seed changed nothing the probes saw and data.image_size=96 failed
    after the whole training."""
    cfg = compose_config([f"experiment={experiment}", *(f"data.{key}={value}" for key, value in settings.items())],
                         tmp_path, "train")
    probe_data = OmegaConf.to_container(cfg.callbacks.probe.data, resolve=True)
    assert {key: probe_data[key] for key in settings} == settings


def test_a_probe_stops_after_patience_epochs_without_a_lower_validation_loss(monkeypatch):
    from analysis import embedding_probes

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(90, 4, generator=generator), torch.randn(90, 2, generator=generator)  # nothing to learn
    train, val = (x[:60], y[:60]), (x[60:], y[60:])
    losses = []
    forward = embedding_probes.Probe.forward

    def spied(net, inputs):
        outputs = forward(net, inputs)
        if inputs is val[0]:
            losses.append(torch.nn.functional.mse_loss(outputs, val[1]).item())
        return outputs

    monkeypatch.setattr(embedding_probes.Probe, "forward", spied)
    _, best = train_probe([16], train, val, max_epochs=100, patience=4, batch_size=16, seed=0)
    assert best == min(losses) and len(losses) == losses.index(best) + 1 + 4 < 100


def test_the_baselines_predict_the_training_splits_mean_position_or_majority_class():
    positions = {"train": (None, torch.tensor([[0.0, 0.0], [2.0, 0.0]])),  # mean (1, 0), the test's (2.5, 1.5)
                 "test": (None, torch.tensor([[4.0, 0.0], [1.0, 3.0]]))}
    assert mean_baseline(positions, "regression") == pytest.approx(3.0)
    classes = {"train": (None, torch.tensor([1, 1, 2])), "test": (None, torch.tensor([2, 2, 1]))}
    assert mean_baseline(classes, "classification") == pytest.approx(1 / 3)  # class 1, the test split's majority 2


def test_a_classification_probe_reports_the_accuracy_of_its_highest_score():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=generator)
    labels = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # four classes, each a quadrant
    embeddings = {"train": (x[:250], labels[:250]), "val": (x[250:320], labels[250:320]),
                  "test": (x[320:], labels[320:])}
    result = probe_grid(embeddings, "classification", [[32]], num_classes=4, max_epochs=60, patience=10,
                        batch_size=64)
    assert result["metric"] == "accuracy" and result["test_metric"] > 0.9
    assert mean_baseline(embeddings, "classification") < 0.4


def test_embeddings_are_computed_in_eval_mode_and_the_model_keeps_its_mode():
    """An encoder with BatchNorm (F-F-FP's) embeds each image with its running statistics, not its batch's."""
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 4), torch.nn.BatchNorm1d(4))
    reference = compute_embeddings(copy.deepcopy(encoder).eval(), DigitsDataModule(batch_size=64), batch_size=100)
    embeddings = compute_embeddings(encoder.train(), DigitsDataModule(batch_size=64), batch_size=100)
    assert encoder.training
    for split, (x, y) in embeddings.items():
        torch.testing.assert_close(x, reference[split][0], rtol=0, atol=0)
        assert torch.equal(y, reference[split][1])


def test_the_probe_embeds_with_the_best_checkpoints_weights(tmp_path):
    """The authors probe the encoder of the best validation checkpoint, not the last epoch's."""
    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

    best, last = Tiny(), Tiny()
    trained_last = last.layer.weight.detach().clone()
    torch.save({"state_dict": best.state_dict()}, tmp_path / "best.ckpt")
    probe, seen = EmbeddingProbe(), []
    probe.run = lambda model, data: seen.append(model.layer.weight.detach().clone()) or {
        "metric": "mean_distance", "test_metric": 1.0, "val_loss": 1.0, "baseline": 2.0, "hidden": [],
        "loss_network_weights": None}
    checkpoints = types.SimpleNamespace(best_model_path=str(tmp_path / "best.ckpt"))
    trainer = types.SimpleNamespace(checkpoint_callback=checkpoints, datamodule=None, loggers=[], callback_metrics={},
                                    global_step=0)
    probe.on_fit_end(trainer, last)
    assert torch.equal(seen[0], best.layer.weight) and not torch.equal(seen[0], trained_last)


def test_a_probe_leaves_the_global_random_state_as_it_was():
    """The probes train at the end of fit, before the best checkpoint's validation and test: a variational model
    samples there, and a probe that reseeded the global generator gave every seed's run the same samples."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=generator), torch.randn(60, 2, generator=generator)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    net, _ = train_probe([8], (x[:40], y[:40]), (x[40:], y[40:]), 3, 2, 16, 7)
    assert torch.equal(torch.get_rng_state(), before)
    again, _ = train_probe([8], (x[:40], y[:40]), (x[40:], y[40:]), 3, 2, 16, 7)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))

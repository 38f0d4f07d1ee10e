"""The MI learning-rate callback: policies on scripted histories, real fits, resume, DDP, configs."""

from __future__ import annotations

import csv
import functools
import json
import math
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from analysis.mutual_information import ksg_mi, label_entropy_ceiling, ross_mi
from callbacks.batch_size import BatchSizeSchedule
from callbacks.mutual_information import LRPolicy, MutualInformationLR, balanced_subsample
from datamodules.digits import DigitsDataModule
from framework.compose import compose_config
from framework.errors import ConfigError
from lightning_modules.classifier import ClassificationModule
from lightning_modules.lenet5 import LeNet5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train ~100x faster on one thread than on two contended ones (shared 2-core CI)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- policies on scripted I(H; Y) histories, against sequences worked out by hand ----------------


def run_policy(policy: LRPolicy, series: list[float], ixy: float = 2.0) -> list[float]:
    """LR_t for t = 0..len(series)-1, LR_0 = lr_min, LR_t from series[:t+1] (I measured at epoch starts)."""
    lrs = [policy.lr_min]
    for t in range(1, len(series)):
        lrs.append(policy.next_lr(lrs[-1], series[: t + 1], ixy))
    return lrs


def test_relative_change_policy_sequence():
    policy = LRPolicy("relative_change", lr_min=0.001, lr_max=0.1, gamma1=0.1, gamma2=1.0, epsilon=0.01)
    lrs = run_policy(policy, [1.0, 1.5, 1.8, 1.81, 1.815, 1.815])
    expected = [0.001]
    expected.append(0.001 + 0.1 * (0.5 / 1.5))            # delta 1/3 > eps: increase by gamma1 delta
    expected.append(expected[-1] + 0.1 * (0.3 / 1.8))     # delta 1/6
    expected.append(expected[-1] - 1.0 * (0.01 / 1.81))   # delta 0.0055 <= eps: decrease by gamma2 delta
    expected.append(expected[-1] - 1.0 * (0.005 / 1.815))
    expected.append(expected[-1] - 0.0)                   # no change at all
    assert lrs == pytest.approx(expected, abs=1e-15)
    assert expected[2] == pytest.approx(0.051)


def test_reference_policy_sequence_and_clamps():
    policy = LRPolicy("reference", lr_min=0.001, lr_max=0.1, gamma1=0.1, gamma2=0.1, gamma3=0.1, epsilon=0.01)
    lrs = run_policy(policy, [1.0, 1.5, 1.9, 1.905, 2.2, 2.2, 2.2], ixy=2.0)
    expected = [0.001, 0.026, 0.031, 0.02625, 0.01625, 0.00625, 0.001]
    # d1 = 0.25, d2 = 1/3: up 0.1*0.25; d1 = 0.05: up 0.005; d1 = 0.0475, d2 = 0.0026: down 0.00475;
    # d1 = -0.1 (above IXY), rising: down 0.01; saturated above: down 0.01; then clamped at lr_min.
    assert lrs == pytest.approx(expected, abs=1e-15)
    fast = LRPolicy("reference", lr_min=0.001, lr_max=0.1, gamma1=1.0)
    assert run_policy(fast, [0.2, 0.5, 0.8], ixy=2.0) == pytest.approx([0.001, 0.1, 0.1])  # lr_max clamp


def test_floor_keeps_ratios_finite():
    policy = LRPolicy("relative_change", lr_min=0.001, lr_max=0.1, floor=1e-3)
    assert policy.next_lr(0.01, [0.5, 0.0], ixy=2.0) == 0.1  # delta = 0.5 / floor, clamped
    assert LRPolicy("reference").next_lr(0.01, [0.5, 0.6], ixy=0.0) == 0.001  # IXY floored, d1 << 0


def test_network_and_layer_scope_follow_the_right_series():
    records = [{"mi": {"a": 1.0, "b": 1.0}, "ihyll": 1.0, "ixy": 2.0, "epoch": 0},
               {"mi": {"a": 1.5, "b": 1.0}, "ihyll": 1.0, "ixy": 2.0, "epoch": 1}]
    for scope, expected in (("network", {"a": 0.001, "b": 0.001}), ("layer", {"a": 0.026, "b": 0.001})):
        callback = MutualInformationLR(policy="reference", scope=scope)
        callback.history = [{**records[0], "lr": callback.next_lrs(records[0], ["a", "b"])}]
        assert callback.next_lrs(records[1], ["a", "b"]) == pytest.approx(expected)


def test_balanced_subsample_is_seeded_and_balanced():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 3)
    chosen = balanced_subsample(labels, 30, seed=1)
    assert torch.bincount(labels[chosen]).tolist() == [14, 13, 3]  # the small class gives all it has
    assert torch.equal(chosen, balanced_subsample(labels, 30, seed=1))
    assert not torch.equal(chosen, balanced_subsample(labels, 30, seed=2))


# ---- real fits on the bundled digits ------------------------------------------------------


def make_model(param_groups: str = "per_layer", scheduler=None) -> ClassificationModule:
    torch.manual_seed(0)
    return ClassificationModule(LeNet5(), functools.partial(torch.optim.SGD, lr=0.01), scheduler=scheduler,
                                param_groups=param_groups)


def make_trainer(root, callbacks, max_epochs: int, **kwargs) -> L.Trainer:
    options = dict(max_epochs=max_epochs, limit_train_batches=3, limit_val_batches=1, logger=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root),
                   accelerator="cpu", devices=1, num_sanity_val_steps=0)
    return L.Trainer(callbacks=callbacks, **{**options, **kwargs})


def quick_callback(**kwargs) -> MutualInformationLR:
    # epsilon 0: any change counts as significant, so the rates must move from lr_min.
    return MutualInformationLR(**{"policy": "relative_change", "gamma1": 1.0, "epsilon": 0.0,
                                  "sample_size": 100, "plot": False, **kwargs})


def test_callback_sets_the_optimizer_rates_during_a_fit(tmp_path):
    callback = quick_callback(plot=True, test_every_epoch=True)
    trainer = make_trainer(tmp_path, [callback], max_epochs=3, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=32))
    groups = trainer.optimizers[0].param_groups
    assert [g["name"] for g in groups] == ["c1", "c3", "c5", "f6", "output"]
    assert [r["epoch"] for r in callback.history] == [0, 1, 2]
    assert callback.history[0]["lr"] == dict.fromkeys(["c1", "c3", "c5", "f6", "output"], 0.001)
    final = callback.history[-1]["lr"]
    assert all(final[g["name"]] == g["lr"] > 0.001 for g in groups)
    assert trainer.callback_metrics["lr/c1"].item() == pytest.approx(final["c1"])
    assert set(callback.history[-1]["mi"]) == {"c1", "c3", "c5", "f6", "output"}
    assert callback.history[-1]["ihyll"] == callback.history[-1]["mi"]["output"]  # the output layer is the output
    for name in ("mi/c1", "mi/ihyll", "mi/ixy"):
        assert math.isfinite(trainer.callback_metrics[name].item())
    assert (tmp_path / "mi_lr.png").stat().st_size > 10_000
    tested = trainer.test(trainer.lightning_module, DigitsDataModule(batch_size=32), verbose=False)[0]["test/acc"]
    assert callback.history[-1]["test_acc"] == pytest.approx(tested, abs=1e-6)  # the whole test split, final weights
    assert callback.history[0]["test_acc"] != tested
    saved = json.loads((tmp_path / "mi_lr_history.json").read_text())["history"]
    assert len(saved) == 4 and saved[-1]["lr"] == {}  # plus the measurement after the last epoch


def test_resume_restores_state_and_gives_the_same_rates(tmp_path, monkeypatch):
    def fit(root, max_epochs, ckpt_path=None, callback=None):
        callback = callback or quick_callback()
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)
        trainer = make_trainer(root, [callback, checkpoint], max_epochs=max_epochs)
        trainer.fit(make_model(), DigitsDataModule(batch_size=32), ckpt_path=ckpt_path)
        return callback, trainer

    uninterrupted, _ = fit(tmp_path / "a", 4)
    first, _ = fit(tmp_path / "b", 2)
    # The subsample and I(X; Y) come from the checkpoint, not from drawing and estimating them again.
    monkeypatch.setattr("callbacks.mutual_information.balanced_subsample",
                        lambda *args: pytest.fail("the subsample was drawn again on resume"))
    callback = quick_callback()
    monkeypatch.setattr(callback, "reference_mi", lambda *args: pytest.fail("I(X; Y) was estimated again on resume"))
    resumed, trainer = fit(tmp_path / "b", 4, ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"),
                           callback=callback)
    assert resumed.indices == first.indices == uninterrupted.indices
    assert resumed.history[:2] == first.history
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in uninterrupted.history]
    assert [r["ihyll"] for r in resumed.history] == pytest.approx([r["ihyll"] for r in uninterrupted.history])
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == list(uninterrupted.history[-1]["lr"].values())
    # the validation accuracy before the resumed epoch is the checkpoint's: Lightning keeps no logged metric
    assert [r["val_acc"] for r in resumed.history] == [r["val_acc"] for r in uninterrupted.history]
    assert resumed.history[2]["val_acc"] is not None


def test_a_run_continued_within_an_epoch_logs_that_epochs_rates_and_information(tmp_path):
    """Lightning starts no epoch it continues, and the callback logged mi/* and lr/* only when one started: the
    continued epoch's row had none of them. Logged at a batch (of 10), the epoch's mean of a value was not the value
    in float32."""
    def fit(root, max_epochs, ckpt_path=None):
        within_epoch_1 = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, filename="step_4", every_n_train_steps=4)
        trainer = make_trainer(root, [quick_callback(), within_epoch_1], max_epochs,
                               logger=L.pytorch.loggers.CSVLogger(root, name="csv", version=""))
        trainer.fit(make_model(), DigitsDataModule(batch_size=10), ckpt_path=ckpt_path)
        with open(root / "csv" / "metrics.csv") as file:
            rows = [row for row in csv.DictReader(file) if row.get("mi/ihyll")]
        return {int(row["epoch"]): {key: float(value) for key, value in row.items()
                                    if key.startswith(("mi/", "lr/"))} for row in rows}

    uninterrupted = fit(tmp_path / "a", 3)
    fit(tmp_path / "b", 2)  # 3 batches an epoch: step 4 is within epoch 1
    continued = fit(tmp_path / "c", 3, ckpt_path=str(tmp_path / "b" / "step_4.ckpt"))
    assert sorted(continued) == [1, 2] and sorted(uninterrupted) == [0, 1, 2]
    for epoch in (1, 2):
        assert continued[epoch] == uninterrupted[epoch], epoch  # exactly
        assert len(continued[epoch]) == 12  # mi/ of 5 layers, ihyll and ixy; lr/ of 5 groups


def test_a_record_after_an_epoch_without_validation_has_no_validation_accuracy(tmp_path):
    """check_val_every_n_epoch=2: the records of epochs after an unvalidated one repeated the last accuracy."""
    callback = quick_callback()
    trainer = make_trainer(tmp_path, [callback], max_epochs=4, check_val_every_n_epoch=2, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=32))
    accuracies = [record["val_acc"] for record in callback.history]
    assert accuracies[0] is None and accuracies[1] is None and accuracies[3] is None
    assert 0 <= accuracies[2] <= 1
    final = json.loads((tmp_path / "mi_lr_history.json").read_text())["history"][-1]
    assert final["val_acc"] == pytest.approx(trainer.callback_metrics["val/acc"].item())


def test_mismatched_groups_and_schedulers_are_refused(tmp_path):
    datamodule = DigitsDataModule(batch_size=32)
    with pytest.raises(ConfigError, match=r"layers \['c1'\] have no optimizer parameter group.*\['all'\]"):
        make_trainer(tmp_path, [quick_callback(layers=["c1"])], 1).fit(make_model("single"), datamodule)
    with pytest.raises(ConfigError, match=r"scope=layer: groups \['c3', 'c5', 'f6', 'output'\]"):
        make_trainer(tmp_path, [quick_callback(layers=["c1"], scope="layer")], 1).fit(make_model(), datamodule)
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    with pytest.raises(ConfigError, match="remove the LR scheduler"):
        make_trainer(tmp_path, [quick_callback()], 1).fit(make_model(scheduler=scheduler), datamodule)
    with pytest.raises(ConfigError, match="policy='cosine', but it must be 'relative_change' or 'reference' or 'none'"):
        MutualInformationLR(policy="cosine")


def test_batch_size_schedule_applies_and_survives_resume(tmp_path):
    class Record(L.Callback):
        sizes: dict[int, int] = {}  # epoch: the size of its batches (Lightning starts no epoch it continues)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.sizes[trainer.current_epoch] = len(batch[1])

    def fit(root, max_epochs, ckpt_path=None):
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)
        within_epoch_1 = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, filename="step_4", every_n_train_steps=4)
        callbacks = [BatchSizeSchedule({2: 50}), Record(), checkpoint, within_epoch_1]
        trainer = make_trainer(root, callbacks, max_epochs, reload_dataloaders_every_n_epochs=1)
        trainer.fit(make_model(), DigitsDataModule(batch_size=20), ckpt_path=ckpt_path)

    fit(tmp_path / "a", 4)
    assert Record.sizes == {0: 20, 1: 20, 2: 50, 3: 50}
    Record.sizes = {}
    fit(tmp_path / "b", 2)
    shutil.copy(tmp_path / "b" / "step_4.ckpt", tmp_path / "within_epoch_1.ckpt")
    fit(tmp_path / "b", 4, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    assert Record.sizes == {0: 20, 1: 20, 2: 50, 3: 50}
    Record.sizes = {}  # continued within epoch 1 (3 batches an epoch), it trained the rest of it with epoch 2's size
    fit(tmp_path / "c", 4, ckpt_path=str(tmp_path / "within_epoch_1.ckpt"))
    assert Record.sizes == {1: 20, 2: 50, 3: 50}


def scripted(monkeypatch, ihyll: list[float], ixy: float = 2.0) -> None:
    """The callback measures IHYLL = ihyll[epoch] (the last value after that) against IXY = ixy."""
    def measure(self, trainer, pl_module):
        value = ihyll[min(trainer.current_epoch, len(ihyll) - 1)]
        return {"mi": dict.fromkeys(self.layers, value), "ihyll": value, "ixy": ixy, "val_acc": None}

    monkeypatch.setattr(MutualInformationLR, "measure", measure)


def test_cool_down_fires_when_ihyll_exceeds_the_reference(tmp_path, monkeypatch):
    """The paper's regime (epsilon 0.01, gammas 0.1): up while below IXY and rising, down once above it."""
    scripted(monkeypatch, [1.0, 1.5, 1.9, 2.2, 2.4, 2.4])
    callback = MutualInformationLR(sample_size=100, plot=False)  # the defaults: reference policy
    trainer = make_trainer(tmp_path, [callback], max_epochs=6, limit_train_batches=1, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=32))
    lrs = [r["lr"]["c1"] for r in callback.history]
    # d1 = 1 - I/2: 0.25 (up 0.025), 0.05 (up 0.005), -0.1 (down 0.01), -0.2 (down 0.02), -0.2 (down, clamped)
    assert lrs == pytest.approx([0.001, 0.026, 0.031, 0.021, 0.001, 0.001], abs=1e-12)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.001)


def test_figure5_restart_value_only_phase_then_both_terms(tmp_path, monkeypatch):
    """Restart a fixed-rate run from its epoch-2 checkpoint with the batch size grown and the reference
    policy following the value alone for epochs 3-4: IHYLL has saturated below IXY (change < epsilon), so
    the full policy would lower the rate, the value-only phase raises it; from epoch 5 on it comes down."""
    class Record(L.Callback):
        sizes: list[int] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.sizes.append(trainer.train_dataloader.batch_sampler.batch_size)

    scripted(monkeypatch, [1.0, 1.2, 1.5, 1.5, 1.501, 1.502, 1.502])
    fixed = MutualInformationLR(policy="none", sample_size=100, plot=False)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "fixed", save_top_k=-1, every_n_epochs=1,
                                                      filename="epoch_{epoch:03d}", auto_insert_metric_name=False)
    make_trainer(tmp_path, [fixed, checkpoints], 5, limit_train_batches=1).fit(make_model(), DigitsDataModule(32))
    dynamic = MutualInformationLR(sample_size=100, plot=False, value_only_from=3, value_only_epochs=2)
    Record.sizes = []
    trainer = make_trainer(tmp_path, [dynamic, BatchSizeSchedule({3: 64}), Record()], 7, limit_train_batches=1,
                           reload_dataloaders_every_n_epochs=1, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=32), ckpt_path=str(tmp_path / "fixed" / "epoch_002.ckpt"))
    assert Record.sizes == [64, 64, 64, 64]
    lrs = [r["lr"]["c1"] for r in dynamic.history]
    # epochs 0-2 from the fixed run; d1 = 0.25, 0.2495 (up by 0.1 d1); then d2 < 0.01, d1 = 0.249 (down)
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.035, 0.05995, 0.03505, 0.01015], abs=1e-12)


@pytest.mark.slow
def test_default_dynamics_in_the_paper_regime_end_to_end(tmp_path, monkeypatch):
    """A real fit with the callback's defaults (reference policy, IXY estimated on the same subsample,
    epsilon 0.01, gammas 0.1, IHYLL from the softmax): the rate leaves lr_min, IHYLL overtakes IXY and
    the cool-down branch lowers the rate by exactly gamma3 d1. Digits at batch 10 (115 steps an epoch),
    shuffled by split_seed: with the order of seed 42 IHYLL moves < 1% per epoch and the rate stays at
    lr_min (see docs/mutual-information.md), so the order is pinned, not left to an earlier test's seed."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    callback = MutualInformationLR(sample_size=200, plot=False)
    trainer = make_trainer(tmp_path, [callback], max_epochs=8, limit_train_batches=None, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=10))
    history = callback.history
    assert callback.ixy < label_entropy_ceiling(history_labels(callback, trainer))  # an estimate, not the bound
    assert max(r["lr"]["c1"] for r in history) > 0.02
    above = [t for t in range(2, len(history)) if history[t]["ihyll"] > callback.ixy]
    assert above, "IHYLL never exceeded IXY"
    for t in above:
        d1 = 1 - history[t]["ihyll"] / callback.ixy
        assert history[t]["lr"]["c1"] == pytest.approx(max(0.001, history[t - 1]["lr"]["c1"] + 0.1 * d1), abs=1e-15)
    images, labels = callback.subsample(trainer, trainer.lightning_module)
    trainer.lightning_module.eval()
    with torch.no_grad():
        softmax = trainer.lightning_module(images).softmax(dim=1)
    assert callback.measure(trainer, trainer.lightning_module)["ihyll"] == ross_mi(softmax, labels, standardize=False)


def history_labels(callback, trainer):
    return callback.subsample(trainer, trainer.lightning_module)[1]


def test_ksg_reference_is_taken_on_the_pixels_scale_whatever_the_normalisation():
    """KSG's max norm compares the inputs' distances with the one-hot labels' 1: on normalised digits (pixels
    (x - 0.13) / 0.31, as MNIST's DataModule serves them) it read about 0 nats, and the reference policy then
    held every rate at lr_min. IXY is I(X; Y) of the pixels in [0, 1] whatever the inputs' normalisation; Ross's
    estimate does not depend on the scale."""
    digits = load_digits()
    pixels = torch.tensor(digits.data[:300] / 16.0)
    labels = torch.tensor(digits.target[:300])
    normalised = ((pixels - 0.1307) / 0.3081).float()
    ksg = MutualInformationLR(estimator="ksg", sample_size=300)
    on_pixels = ksg_mi(pixels, torch.nn.functional.one_hot(labels).double(), standardize=False, jitter=1e-10)
    assert on_pixels > 1.0
    # float32's rounding of the normalised pixels outweighs the jitter that breaks the digits' many ties
    assert ksg.reference_mi(normalised, labels) == pytest.approx(on_pixels, abs=0.02)
    assert ksg.reference_mi(pixels, labels) == pytest.approx(on_pixels, abs=1e-6)
    ross = MutualInformationLR(sample_size=300)
    assert ross.reference_mi(normalised, labels) == ross.mi(normalised, labels)  # the images as the model sees them


def test_ksg_option_and_logits_option_change_what_is_measured(tmp_path):
    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(120) % 3
    scores = 3 * torch.nn.functional.one_hot(labels).float() + torch.randn(120, 3, generator=generator)
    ross = MutualInformationLR()
    assert ross.mi(scores.softmax(1), labels) == ross_mi(scores.softmax(1), labels)
    ksg = MutualInformationLR(estimator="ksg")
    expected = ksg_mi(scores, torch.nn.functional.one_hot(labels).double(), standardize=False, jitter=1e-10)
    assert ksg.mi(scores, labels) == expected != ross.mi(scores, labels)

    logits = MutualInformationLR(output="logits", sample_size=100, plot=False)
    trainer = make_trainer(tmp_path, [logits], max_epochs=1, limit_train_batches=1, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=32))
    model = trainer.lightning_module.eval()
    images, labels = logits.subsample(trainer, model)
    with torch.no_grad():
        raw = model(images)
    measured = logits.measure(trainer, model)
    assert measured["ihyll"] == measured["mi"]["output"] == ross_mi(raw, labels, standardize=False)
    assert measured["ihyll"] != ross_mi(raw.softmax(1), labels, standardize=False)
    with pytest.raises(ConfigError, match="output='probabilities', but it must be 'softmax' or 'logits'"):
        MutualInformationLR(output="probabilities")


def test_the_subsample_of_a_distorted_training_set_is_its_undistorted_images(tmp_path):
    """With data.distortion the training set also yields each image's index (it used to fail to unpack)."""
    callback = MutualInformationLR(policy="none", sample_size=100, plot=False)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1, limit_train_batches=1, enable_checkpointing=False)
    distorted = DigitsDataModule(batch_size=32, distortion={"shear": 0.2, "original_fraction": 0.0})
    trainer.fit(make_model(), distorted)
    images, labels = callback.subsample(trainer, trainer.lightning_module)
    plain = DigitsDataModule(batch_size=32)
    plain.setup("fit")
    originals, _ = plain.datasets["train"].__getitems__(callback.indices)
    assert torch.equal(images, plain.to_float(originals)) and len(callback.history) == 1


def test_a_hidden_layer_is_measured_after_the_network_s_relu(tmp_path):
    """The paper's I(H_i; Y) is of a layer's activations: LeNet-5's c5 and f6 after their ReLU, which a hook on the
    Conv2d or Linear does not see (their pre-activations are partly negative)."""
    callback = MutualInformationLR(layers=["c5", "f6"], policy="none", sample_size=100, plot=False)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1, limit_train_batches=1, enable_checkpointing=False)
    trainer.fit(make_model(), DigitsDataModule(batch_size=32))
    model = trainer.lightning_module.eval()
    images, labels = callback.subsample(trainer, model)
    net, pool = model.net, torch.nn.functional.max_pool2d
    with torch.no_grad():
        c5 = net.c5(pool(net.c3(pool(net.c1(images).relu(), 2)).relu(), 2))
        f6 = net.f6(c5.relu().flatten(1))
    assert (f6 < 0).any() and (c5 < 0).any()
    measured = callback.measure(trainer, model)["mi"]
    assert measured["f6"] == ross_mi(f6.relu(), labels, standardize=False) != ross_mi(f6, labels, standardize=False)
    assert measured["c5"] == ross_mi(c5.relu(), labels, standardize=False)


# ---- DDP: 2 CPU processes agree on the rates ----------------------------------------------


class ReportRanks(L.Callback):
    """Writes every rank's final rates and MI history to <dir>/rank<r>.json (spawned ranks return nothing)."""

    def __init__(self, directory: str):
        self.directory = directory

    def on_train_end(self, trainer, pl_module):
        history = next(c for c in trainer.callbacks if isinstance(c, MutualInformationLR)).history
        payload = {"lrs": [g["lr"] for g in trainer.optimizers[0].param_groups], "history": history}
        with open(f"{self.directory}/rank{trainer.global_rank}.json", "w") as stream:
            json.dump(payload, stream)


@pytest.mark.slow
def test_ddp_ranks_end_with_identical_rates_and_test_the_whole_split(tmp_path, monkeypatch):
    """test/epoch_acc counted rank 0's half of the test split (its DDP share)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the spawned ranks
    trainer = make_trainer(tmp_path, [quick_callback(test_every_epoch=True), ReportRanks(str(tmp_path))],
                           max_epochs=3, strategy="ddp_spawn", devices=2, enable_checkpointing=False,
                           limit_train_batches=2)
    model = make_model()
    trainer.fit(model, DigitsDataModule(batch_size=16))
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["lrs"] == rank1["lrs"] and min(rank0["lrs"]) > 0.001  # changed, and identical
    assert rank0["history"] == rank1["history"] and len(rank0["history"]) == 3
    one_process = make_trainer(tmp_path, [], max_epochs=1).test(model, DigitsDataModule(batch_size=16), verbose=False)
    assert rank0["history"][-1]["test_acc"] == pytest.approx(one_process[0]["test/acc"], abs=1e-6)  # final weights


# ---- the experiment configs compose and run ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ("experiment=mi_lr_digits", "lr_policy=reference", "batch_schedule=grow"),
    ("experiment=mi_lr_mnist", "lr_policy=layerwise"),
])
def test_mi_experiments_run_with_fast_dev_run(make_cfg, overrides):
    from framework.training import train

    cfg = make_cfg(*overrides, "debug=fdr", "callbacks.mi_lr.sample_size=40")
    assert cfg.callbacks.mi_lr.reference == "estimate" and cfg.callbacks.mi_lr.test_every_epoch
    results = train(cfg)
    assert {"test/epoch_acc", "mi/ihyll", "mi/ixy"} <= set(results["metrics"])
    assert results["metrics"]["lr/c1"] == pytest.approx(0.001)  # a dynamic policy's first epoch runs at lr_min


@pytest.mark.parametrize("kind", ["test", "val"])
def test_the_figures_accuracy_follows_the_epochs_completed_when_it_was_measured(tmp_path, monkeypatch, kind):
    """A record's test accuracy is measured after its epoch, its validation accuracy (taken at its start) after the
    epoch before: the accuracy panels put each at the epochs completed then, beside the IHYLL measured then."""
    from callbacks import mi_plots

    history = [{"epoch": e, "mi": {"c1": 0.1 * e}, "ihyll": 1.0 + e, "ixy": 2.0, "lr": {"c1": 0.01},
                f"{kind}_acc": 0.5 + e / 10} for e in range(3)]
    figures = []
    monkeypatch.setattr(mi_plots.plt, "close", figures.append)
    mi_plots.plot_history(history, tmp_path / "mi_lr.png")
    _, _, accuracy, scatter = figures[0].axes
    x, y = accuracy.lines[0].get_data()
    shift = 1 if kind == "test" else 0
    assert list(x) == [shift, 1 + shift, 2 + shift] and list(y) == pytest.approx([0.5, 0.6, 0.7])
    points = scatter.collections[0].get_offsets()
    np.testing.assert_allclose(points, [[1.0 + e + shift, 0.5 + e / 10] for e in range(3 - shift)])
    monkeypatch.undo()
    mi_plots.plt.close(figures[0])


def test_early_stopping_at_the_training_epochs_end_may_watch_the_information_the_callback_logs(make_cfg):
    """mi/ihyll is logged at each epoch's start: after the first validation it was not there yet, and the run was
    refused for monitoring a metric it does not log."""
    from framework.training import train

    results = train(make_cfg("callbacks=mi_lr", "callbacks.mi_lr.sample_size=100", "debug=limit", "logger=none",
                             "callbacks.early_stopping.monitor=mi/ihyll", "callbacks.early_stopping.mode=min",
                             "callbacks.early_stopping.check_on_train_epoch_end=true"))
    assert results["epochs_completed"] == 2 and "mi/ihyll" in results["metrics"]


@pytest.mark.parametrize("experiment", ["mi_lr_mnist", "mi_lr_cifar10", "mi_lr_digits"])
def test_figure5_runs_keep_what_the_fixed_run_s_checkpoint_was_made_with(make_cfg, experiment):
    """Figure 5 restarts lr_policy=fixed,reference from the fixed run's epoch-2 checkpoint: a restart may not change
    what the checkpoint restores (framework/checkpoints.py), so every policy shares the optimizer and patience."""
    from framework.checkpoints import kept_values

    fixed = kept_values(make_cfg(f"experiment={experiment}", "lr_policy=fixed"))
    for policy in ("reference", "relative_change", "layerwise", "reference_dampened"):
        assert kept_values(make_cfg(f"experiment={experiment}", f"lr_policy={policy}", "batch_schedule=grow")) == fixed


@pytest.mark.slow
def test_figure5_restarts_the_reference_policy_from_the_fixed_run_s_epoch_2_checkpoint(make_cfg, tmp_path):
    from framework.training import train

    limits = ("callbacks.mi_lr.sample_size=200", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
              "logger=none")
    fixed = train(make_cfg("experiment=mi_lr_digits", "lr_policy=fixed", "mi_epochs.baseline=3", *limits))
    checkpoint = Path(fixed["output_dir"]) / "checkpoints" / "epoch_002.ckpt"
    restarted = compose_config(["experiment=mi_lr_digits", "lr_policy=reference", "batch_schedule=grow",
                                f"ckpt_path={checkpoint}", "mi_epochs.dynamic=5", *limits,
                                f"paths.data_dir={fixed['config']['paths']['data_dir']}"], tmp_path / "restart")
    results = train(restarted)
    assert results["epochs_completed"] == 5 and results["metrics"]["lr/c1"] != pytest.approx(0.01)


def write_mi_run(run: Path, overrides: list[str], seed: int, curve: list[float], lrs: list[float],
                 tested: bool = True) -> None:
    """A finished MI run as the study reads it: results.json, mi_lr_history.json and a CSV log. ``curve``: the test
    accuracy after each epoch (callbacks.mi_lr.test_every_epoch), else (``tested=False``) the validation accuracy."""
    (run / "csv").mkdir(parents=True)  # with a test curve, a validation accuracy that it must win over
    validation = [f"{e},,{acc if not tested else 0.1}\n" for e, acc in enumerate(curve)]
    (run / "csv" / "metrics.csv").write_text("epoch,train/loss,val/acc\n" + "".join(
        f"{e},1.5,\n{line}" for e, line in enumerate(validation)))
    results = {"overrides": [*overrides, f"seed={seed}"], "seed": seed, "config": {}, "metrics": {"test/acc": 0.75},
               "wall_seconds": 12.0}
    (run / "results.json").write_text(json.dumps(results))
    history = [{"epoch": e, "lr": {"c1": lrs[min(e, len(lrs) - 1)]}, "test_acc": acc if tested else None}
               for e, acc in enumerate(curve)]
    (run / "mi_lr_history.json").write_text(json.dumps({"history": [*history, {"epoch": 3, "lr": {}}]}))


def test_study_table_compares_every_seed_with_the_fixed_run_of_that_seed(tmp_path):
    from analysis.mi_lr_study import study_table

    runs = [("fixed", 1, [0.5, 0.8, 0.7], [0.01]), ("reference", 1, [0.6, 0.7, 0.9], [0.001, 0.05]),
            ("fixed", 2, [0.5, 0.9, 0.9], [0.01]), ("reference", 2, [0.85, 0.88, 0.89], [0.001, 0.02])]
    for job, (policy, seed, curve, lrs) in enumerate(runs):
        write_mi_run(tmp_path / str(job), [f"lr_policy={policy}", "experiment=x", "data.batch_size=10"], seed, curve,
                     lrs)
    table = study_table(tmp_path).splitlines()
    assert table[2] == "| lr_policy=fixed | 1 | 0.7000 | 0.8000 (1) | 1 | 0.0100-0.0100 | 12 |"
    assert table[3] == "| lr_policy=reference | 1 | 0.9000 | 0.9000 (2) | 1 | 0.0010-0.0500 | 12 |"
    assert table[4] == "| lr_policy=fixed | 2 | 0.9000 | 0.9000 (1, 2) | 1 | 0.0100-0.0100 | 12 |"
    assert table[5] == "| lr_policy=reference | 2 | 0.8900 | 0.8900 (2) | never | 0.0010-0.0200 | 12 |"
    assert "test accuracy after each epoch" in table[-1]
    assert table[-1].endswith("Every run: data.batch_size=10 experiment=x.")


def test_study_table_of_runs_without_a_test_every_epoch_reads_their_validation_accuracy(tmp_path):
    from analysis.mi_lr_study import study_table

    for policy, curve in {"fixed": [0.5, 0.8, 0.7], "reference": [0.6, 0.75, 0.9]}.items():
        write_mi_run(tmp_path / policy, [f"lr_policy={policy}"], 0, curve, [0.01], tested=False)
    table = study_table(tmp_path).splitlines()
    assert table[2] == "| lr_policy=fixed | 0 | 0.7000 | 0.8000 (1) | 1 | 0.0100-0.0100 | 12 |"
    assert table[3] == "| lr_policy=reference | 0 | 0.9000 | 0.9000 (2) | 1 | 0.0100-0.0100 | 12 |"
    assert "\nAccuracies: val accuracy after each epoch" in "\n".join(table)


def test_study_table_pairs_a_run_with_the_fixed_run_of_its_own_settings_and_names_a_missing_one(tmp_path):
    """runs=[digits sweep, MNIST sweep]: each MNIST run is compared with the MNIST fixed run (not the digits one of
    its seed), the labels keep experiment=, and a seed without a fixed run says so rather than "never"."""
    from analysis.mi_lr_study import study_table

    sweeps = {"mi_lr_digits": {"fixed": [0.5, 0.6, 0.95], "reference": [0.7, 0.9, 0.96]},
              "mi_lr_mnist": {"fixed": [0.5, 0.6, 0.7], "reference": [0.6, 0.8, 0.85]}}
    for experiment, policies in sweeps.items():
        for policy, curve in policies.items():
            write_mi_run(tmp_path / experiment / policy, [f"experiment={experiment}", f"lr_policy={policy}"], 0, curve,
                         [0.01])
    write_mi_run(tmp_path / "mi_lr_mnist" / "seed1", ["experiment=mi_lr_mnist", "lr_policy=reference"], 1,
                 [0.6, 0.7, 0.8], [0.01])  # its fixed-rate job was killed
    assert set(study_table(tmp_path).splitlines()[2:-2]) == {
        "| experiment=mi_lr_digits lr_policy=fixed | 0 | 0.9500 | 0.9500 (2) | 2 | 0.0100-0.0100 | 12 |",
        "| experiment=mi_lr_digits lr_policy=reference | 0 | 0.9600 | 0.9600 (2) | 2 | 0.0100-0.0100 | 12 |",
        "| experiment=mi_lr_mnist lr_policy=fixed | 0 | 0.7000 | 0.7000 (2) | 2 | 0.0100-0.0100 | 12 |",
        "| experiment=mi_lr_mnist lr_policy=reference | 0 | 0.8500 | 0.8500 (2) | 1 | 0.0100-0.0100 | 12 |",
        "| experiment=mi_lr_mnist lr_policy=reference | 1 | 0.8000 | 0.8000 (2) | no lr_policy=fixed run of seed 1 | "
        "0.0100-0.0100 | 12 |"}
    write_mi_run(tmp_path / "again", ["experiment=mi_lr_mnist", "lr_policy=fixed"], 0, [0.5], [0.01])
    with pytest.raises(ConfigError, match=r"two lr_policy=fixed runs of seed 0 with the same settings \(.*again, "
                                          r".*mi_lr_mnist/fixed\); .* give one of them\.$"):
        study_table(tmp_path)


def test_a_layer_is_the_shallowest_submodule_of_its_name():
    """A parameter group is a top-level child of the network (``conv1`` of a torchvision ResNet), though its residual
    blocks have a ``conv1`` each; two of the same name at the same depth stay ambiguous."""
    from torch import nn
    from torchvision.models import resnet18

    net = resnet18(num_classes=10)
    module = ClassificationModule(net=net, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    assert MutualInformationLR._find_module(module, "conv1") is net.conv1
    assert MutualInformationLR._find_module(module, "layer4") is net.layer4
    twins = nn.ModuleDict({"a": nn.Sequential(nn.Linear(2, 2)), "b": nn.Sequential(nn.Linear(2, 2))})
    module = ClassificationModule(net=twins, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    with pytest.raises(ConfigError, match=r"layer '0' matches 2 submodules"):
        MutualInformationLR._find_module(module, "0")


@pytest.mark.parametrize(("arguments", "sentence"), [
    ({"k": 0}, "MutualInformationLR: k=0, but it must be an integer >= 1."),
    ({"sample_size": 1.5}, "MutualInformationLR: sample_size=1.5, but it must be an integer >= 2."),
    ({"layers": []}, "MutualInformationLR: layers=[], but it must be a non-empty list of layer (optimizer group) "
                     "names, or null for every named group."),
    ({"epsilon": -1}, "MutualInformationLR: epsilon=-1, but it must be a number >= 0."),
    ({"policy": "fixed"}, "MutualInformationLR: policy='fixed', but it must be 'relative_change' or 'reference' or "
                          "'none'."),
])
def test_the_callback_made_in_python_gets_the_sentences_of_its_config_keys(arguments, sentence):
    """Its config's rules apply at callbacks.mi_lr only: made in Python (or under another key) k=0 got as far as the
    estimator, whose error named neither."""
    with pytest.raises(ConfigError) as refused:
        MutualInformationLR(**arguments)
    assert str(refused.value) == sentence
    assert MutualInformationLR(layers=["conv1"]).layers == ["conv1"]

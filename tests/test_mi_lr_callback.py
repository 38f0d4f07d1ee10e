"""The MI learning-rate callback: policies on scripted histories, real fits, resume, DDP, configs."""

from __future__ import annotations

import functools
import json
import math

import lightning as L
import pytest
import torch

from callbacks.batch_size import BatchSizeSchedule
from callbacks.mutual_information import LRPolicy, MutualInformationLR, balanced_subsample
from datamodules.digits import DigitsDataModule
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
    records = [{"mi": {"a": 1.0, "b": 1.0}, "ihyll": 1.0, "ixy": 2.0},
               {"mi": {"a": 1.5, "b": 1.0}, "ihyll": 1.0, "ixy": 2.0}]
    for scope, expected in (("network", {"a": 0.001, "b": 0.001}), ("layer", {"a": 0.026, "b": 0.001})):
        callback = MutualInformationLR(policy="reference", scope=scope)
        callback.history = [{**records[0], "epoch": 0, "lr": callback.next_lrs(records[0], ["a", "b"])}]
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
    callback = quick_callback(plot=True)
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
    assert 0 < callback.history[-1]["ihyll"] <= callback.ixy
    for name in ("mi/c1", "mi/ihyll", "mi/ixy"):
        assert math.isfinite(trainer.callback_metrics[name].item())
    assert (tmp_path / "mi_lr.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "mi_lr_history.json").read_text())["history"]
    assert len(saved) == 4 and saved[-1]["lr"] == {}  # plus the measurement after the last epoch


def test_resume_restores_state_and_gives_the_same_rates(tmp_path):
    def fit(root, max_epochs, ckpt_path=None):
        callback = quick_callback()
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)
        trainer = make_trainer(root, [callback, checkpoint], max_epochs=max_epochs)
        trainer.fit(make_model(), DigitsDataModule(batch_size=32), ckpt_path=ckpt_path)
        return callback, trainer

    uninterrupted, _ = fit(tmp_path / "a", 4)
    first, _ = fit(tmp_path / "b", 2)
    resumed, trainer = fit(tmp_path / "b", 4, ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"))
    assert resumed.indices == first.indices == uninterrupted.indices
    assert resumed.history[:2] == first.history
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in uninterrupted.history]
    assert [r["ihyll"] for r in resumed.history] == pytest.approx([r["ihyll"] for r in uninterrupted.history])
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == list(uninterrupted.history[-1]["lr"].values())


def test_mismatched_groups_and_schedulers_are_refused(tmp_path):
    datamodule = DigitsDataModule(batch_size=32)
    with pytest.raises(ConfigError, match=r"layers \['c1'\] have no optimizer parameter group.*\['all'\]"):
        make_trainer(tmp_path, [quick_callback(layers=["c1"])], 1).fit(make_model("single"), datamodule)
    with pytest.raises(ConfigError, match=r"scope=layer: groups \['c3', 'c5', 'f6', 'output'\]"):
        make_trainer(tmp_path, [quick_callback(layers=["c1"], scope="layer")], 1).fit(make_model(), datamodule)
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    with pytest.raises(ConfigError, match="remove the LR scheduler"):
        make_trainer(tmp_path, [quick_callback()], 1).fit(make_model(scheduler=scheduler), datamodule)
    with pytest.raises(ValueError, match="policy='cosine' is not known"):
        MutualInformationLR(policy="cosine")


def test_batch_size_schedule_applies_and_survives_resume(tmp_path):
    class Record(L.Callback):
        sizes: list[int] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.sizes.append(trainer.train_dataloader.batch_size)

    def fit(root, max_epochs, ckpt_path=None):
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)
        callbacks = [BatchSizeSchedule({2: 50}), Record(), checkpoint]
        trainer = make_trainer(root, callbacks, max_epochs, reload_dataloaders_every_n_epochs=1)
        trainer.fit(make_model(), DigitsDataModule(batch_size=20), ckpt_path=ckpt_path)

    fit(tmp_path / "a", 4)
    assert Record.sizes == [20, 20, 50, 50]
    Record.sizes = []
    fit(tmp_path / "b", 2)
    fit(tmp_path / "b", 4, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    assert Record.sizes == [20, 20, 50, 50]


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
def test_ddp_ranks_end_with_identical_rates(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the spawned ranks
    trainer = make_trainer(tmp_path, [quick_callback(), ReportRanks(str(tmp_path))], max_epochs=3,
                           strategy="ddp_spawn", devices=2, enable_checkpointing=False, limit_train_batches=2)
    trainer.fit(make_model(), DigitsDataModule(batch_size=16))
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["lrs"] == rank1["lrs"] and min(rank0["lrs"]) > 0.001  # changed, and identical
    assert rank0["history"] == rank1["history"] and len(rank0["history"]) == 3


# ---- the experiment configs compose and run ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ("experiment=mi_lr_digits", "lr_policy=warmup", "batch_schedule=grow"),
    ("experiment=mi_lr_mnist", "lr_policy=layerwise"),
])
def test_mi_experiments_run_with_fast_dev_run(make_cfg, overrides):
    from train import train

    cfg = make_cfg(*overrides, "debug=fdr", "callbacks.mi_lr.sample_size=40")
    results = train(cfg)
    assert 0 <= results["metrics"]["test/acc"] <= 1
    assert "mi/ihyll" in results["metrics"] and "lr/c1" in results["metrics"]


def test_study_table_reports_final_best_and_epoch_reached(tmp_path):
    from analysis.mi_lr_study import study_table

    for job, (policy, curve, lrs) in enumerate([("fixed", [0.5, 0.8, 0.7], [0.01]), ("reference", [0.6, 0.7, 0.9],
                                                                                      [0.001, 0.05])]):
        run = tmp_path / str(job)
        (run / "csv").mkdir(parents=True)
        rows = "".join(f"{epoch},{acc},\n{epoch},,0.1\n" for epoch, acc in enumerate(curve))
        (run / "csv" / "metrics.csv").write_text("epoch,val/acc,train/loss\n" + rows)
        results = {"overrides": [f"lr_policy={policy}", "experiment=x"], "metrics": {"test/acc": 0.75},
                   "wall_seconds": 12.0}
        (run / "results.json").write_text(json.dumps(results))
        history = [{"lr": {"c1": lr}} for lr in lrs]
        (run / "mi_lr_history.json").write_text(json.dumps({"history": history}))
    table = study_table(tmp_path).splitlines()
    assert table[2] == "| lr_policy=fixed | 0.7000 | 0.8000 (1) | 1 | 0.7500 | 0.0100-0.0100 | 12 |"
    assert table[3] == "| lr_policy=reference | 0.9000 | 0.9000 (2) | 1 | 0.7500 | 0.0010-0.0500 | 12 |"

"""In-process training through train.train(cfg) on the real configs."""

from pathlib import Path

import pytest

from train import train

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))
# Feature-prediction autoencoders: no AlexNet download in tests, small MLPs, a one-net probe grid, and
# LunarLander at the size tests/dataset_files.py generates.
PERCEPTUAL = ("model.loss_network.weights=random", "model.feature_hidden_max=64", "callbacks.probe.grid=[[]]",
              "callbacks.probe.max_epochs=2")
SMALL = {"perceptual_lunarlander": (*PERCEPTUAL, "data.rollouts=2", "data.steps_per_rollout=20", "data.train_seed=1"),
         "perceptual_stl10": PERCEPTUAL, "perceptual_svhn": PERCEPTUAL}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_fast_dev_run(make_cfg, experiment):
    small = ["callbacks.mi_lr.sample_size=40"] if experiment.startswith("mi_lr") else []  # the test sets are tiny
    results = train(make_cfg(f"experiment={experiment}", "debug=fdr", *small, *SMALL.get(experiment, ())))
    assert any(key.startswith("test/") for key in results["metrics"]), results["metrics"]
    assert (Path(results["output_dir"]) / "results.json").is_file()


@pytest.mark.parametrize(("model", "epochs", "floor"), [("lenet5", 8, 0.8), ("lenet5_classic", 8, 0.8)])
def test_digits_training_reaches_far_above_chance(make_cfg, model, epochs, floor):
    cfg = make_cfg(f"model={model}", f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu", "seed=0",
                   "callbacks.progress_bar.refresh_rate=0")
    results = train(cfg)
    metrics = results["metrics"]
    assert metrics["test/acc"] > floor, metrics  # chance is 0.1
    assert metrics["val/acc"] > floor
    assert Path(results["best_checkpoint"]).is_file()
    assert results["epochs_completed"] == epochs
    assert results["versions"]["torch"].startswith("2.15")


def test_results_json_holds_metrics_config_and_seed(make_cfg):
    import json

    results = train(make_cfg("debug=limit", "seed=7"))
    stored = json.loads((Path(results["output_dir"]) / "results.json").read_text())
    assert stored["seed"] == 7
    assert stored["config"]["model"]["net"]["_target_"] == "lightning_modules.lenet5.LeNet5"
    assert set(stored["metrics"]) >= {"train/loss", "val/acc", "test/acc", "test/loss"}
    assert stored["metrics"] == pytest.approx(results["metrics"])


@pytest.mark.parametrize(("logger", "expected"), [("tensorboard", {"csv", "tensorboard"}), ("wandb", {"csv", "wandb"})])
def test_every_logger_keeps_the_csv_log(make_cfg, logger, expected):
    assert set(make_cfg(f"logger={logger}").logger) == expected


def test_logger_none_trains_without_the_lr_monitor(make_cfg, caplog):
    """Lightning refuses a LearningRateMonitor without a logger; `logger=none` with the default callbacks trains."""
    with caplog.at_level("INFO", logger="train"):
        results = train(make_cfg("logger=none", "debug=limit"))
    assert {"train/loss", "test/acc"} <= set(results["metrics"])
    assert "the learning-rate monitor (callbacks.lr_monitor) has nothing to log to and is left out" in caplog.text

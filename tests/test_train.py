"""In-process training through framework.training.train(cfg) on the real configs."""

import errno
import json
import os
import re
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from framework.checkpoints import TRAINED_WITH, TRAINING_METRICS
from framework.errors import DataError
from framework.results import read_results
from framework.resuming import lost_accumulation_warning
from framework.training import train
from lightning_modules.classifier import ClassificationModule
from tests.conftest import ROOT, path_with_stand_in, run_cli, warnings_said

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))
# Feature-prediction autoencoders: no AlexNet download in tests, small MLPs, a one-net probe grid, and
# LunarLander at the size tests/dataset_files.py generates.
PERCEPTUAL = ("model.loss_network.weights=random", "model.feature_hidden_max=64", "callbacks.probe.grid=[[]]",
              "callbacks.probe.max_epochs=2")
# REAE: one lambda and tau, few solver steps (each experiment's rho grid and hidden size stay)
REAE = ("model.lambdas=[0.01]", "model.taus=[0.01]", "model.kl_steps=5", "model.max_iter=20")
SMALL = {"perceptual_lunarlander": (*PERCEPTUAL, "data.rollouts=2", "data.steps_per_rollout=20", "data.train_seed=1"),
         "perceptual_stl10": PERCEPTUAL, "perceptual_svhn": PERCEPTUAL,
         **{name: REAE for name in EXPERIMENTS if name.startswith("reae_")}}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_fast_dev_run(make_cfg, experiment):
    small = ["callbacks.mi_lr.sample_size=40"] if experiment.startswith("mi_lr") else []  # the test sets are tiny
    with warnings_said() as said:
        results = train(make_cfg(f"experiment={experiment}", "debug=fdr", *small, *SMALL.get(experiment, ())))
    # data.val_fraction=0 (LeCun's protocol, the MI studies): fast_dev_run validated an empty loader, with a warning
    assert not [message for message in said if "DataLoader` across ranks is zero" in message]
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
    # CPU sums are ordered by the thread count and the vector instructions: a figure reproduces with both
    assert results["compute"] == {"device": "cpu", "processes": 1, "torch_threads": torch.get_num_threads(),
                                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    # train=false scores the weights of ckpt_path (it used to test the untrained model, ignoring ckpt_path)
    with warnings_said() as said:
        tested = train(make_cfg(f"model={model}", "train=false", f"ckpt_path={results['best_checkpoint']}",
                                "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0", run="tested"))
    assert not [message for message in said if "dirpath has changed" in message]  # of another run's folder
    assert tested["evaluated_checkpoint"] == f"checkpoint {results['best_checkpoint']}"
    for key in ("test/acc", "test/loss", "val/acc", "val/loss"):
        assert tested["metrics"][key] == pytest.approx(metrics[key]), key
    # README's way to a trained network outside train.py, as written there but for the run's path
    predicted = readme_loading_code(Path(results["output_dir"]) / "results.json")["predicted"]
    datamodule = instantiate(OmegaConf.create(results["config"]).data)
    datamodule.setup("test")
    labels = datamodule.datasets["test"].targets
    assert torch.cat(predicted).eq(labels).float().mean().item() == pytest.approx(metrics["test/acc"], abs=1e-6)


def readme_loading_code(results_json: Path) -> dict:
    """Runs README's block that loads a trained network, on ``results_json``; returns its variables."""
    block = next(block for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
                 if "load_from_checkpoint" in block)
    code, replaced = re.subn(r'open\("[^"]*results\.json"\)', f"open({str(results_json)!r})", block)
    assert replaced == 1, block
    variables = {}
    exec(compile(code, "README.md", "exec"), variables)
    return variables


@pytest.mark.parametrize(("saved", "refusal"), [
    ({}, "holds no config of its network (train.py saves one in every checkpoint)"),
    ({"model.net._target_": "os.system", "model.net._args_": ["touch {made}"]},
     "gives model.net a _target_ 'os.system', which is not an importable torch.nn.Module class"),
    ({"model.net._target_": "torch.nn.Sequential",
      "model.net._args_": [{"_target_": "os.system", "_args_": ["touch {made}"]}]},
     "gives model.net a _target_ 'os.system', which is not an importable torch.nn.Module class"),
    ({"model.net._target_": "no_such_module.Net"},
     "gives model.net a _target_ 'no_such_module.Net', which is not an importable torch.nn.Module class"),
])
def test_loading_a_checkpoint_builds_only_networks_from_its_config(tmp_path, saved, refusal):
    made = tmp_path / "made"
    saved = json.loads(json.dumps(saved).replace("{made}", str(made)))
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, TRAINED_WITH: saved}, path)
    with pytest.raises(DataError) as raised:
        ClassificationModule.load_from_checkpoint(path)
    assert str(raised.value).startswith(f"Checkpoint {path} ") and refusal in str(raised.value)
    assert str(raised.value).endswith(f"give the network built as it trained: load_from_checkpoint({str(path)!r}, "
                                      f"net=<network>).")
    assert not made.exists()


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


@pytest.mark.parametrize(("setting", "left_out"), [
    ("logger=none", "callbacks.lr_monitor (LearningRateMonitor) would have nothing to do and is left out"),
    ("+trainer.enable_progress_bar=false", "callbacks.progress_bar (TQDMProgressBar) would have nothing to do"),
    ("+trainer.enable_checkpointing=false", "callbacks.model_checkpoint (RunModelCheckpoint), "
                                            "callbacks.last_checkpoint (RunModelCheckpoint) would have nothing to do "
                                            "and are left out")])
def test_a_setting_that_idles_a_default_callback_leaves_it_out(make_cfg, caplog, setting, left_out):
    """Lightning refuses these callbacks with these settings; with the default callbacks the run trains."""
    with caplog.at_level("INFO", logger="train"):
        results = train(make_cfg(setting, "debug=limit"))
    assert {"train/loss", "test/acc"} <= set(results["metrics"])
    assert f"{setting.lstrip('+')}: {left_out}" in caplog.text
    assert (results["best_checkpoint"] is None) == ("RunModelCheckpoint" in left_out)


def test_a_run_with_no_training_batches_says_that_it_tests_the_initial_weights(make_cfg, caplog):
    """trainer.limit_train_batches=0 (a way to test the initial weights) trained nothing without a word in train.log."""
    with caplog.at_level("INFO", logger="train"):
        results = train(make_cfg("debug=limit", "++trainer.limit_train_batches=0"))
    assert "test/acc" in results["metrics"] and results["best_checkpoint"] is None
    assert "trainer.limit_train_batches=0: no training batch runs, so the metrics below are those of the initial " \
           "weights" in caplog.text


def test_an_empty_test_split_says_so(make_cfg, caplog):
    """A test loader with no batches left the run without test/ metrics, and only Lightning's warning on stderr."""
    with caplog.at_level("INFO", logger="train"):
        results = train(make_cfg("debug=limit", "++trainer.limit_test_batches=0"))
    assert not any(key.startswith("test/") for key in results["metrics"])
    assert "test=true, but DigitsDataModule's test loader gave no batches, so there are no test/ metrics; give the " \
           "data a test split, or test=false." in caplog.text


def test_a_barebones_run_trains_and_says_that_it_logged_no_metrics(make_cfg, caplog):
    """Lightning's barebones mode allows no logger, callbacks or logging interval, and turns off self.log."""
    with caplog.at_level("INFO", logger="train"):
        results = train(make_cfg("+trainer.barebones=true", "logger=none", "callbacks=none",
                                 "trainer.log_every_n_steps=null", "debug=limit"))
    assert results["metrics"] == {} and results["epochs_completed"] == 2
    assert "metrics of the final weights: none were logged (trainer.barebones turns off self.log)" in caplog.text
    assert "test loader gave no batches" not in caplog.text  # it gave batches; their metrics were not logged


def test_max_time_may_be_lightning_s_dict_of_durations(make_cfg):
    """Lightning's Timer takes a dict, not the DictConfig that Hydra would pass it (a traceback)."""
    results = train(make_cfg("+trainer.max_time={minutes: 30}", "debug=limit", "logger=none"))
    assert results["epochs_completed"] == 2 and "test/acc" in results["metrics"]


@pytest.mark.parametrize(("overrides", "best"), [(("optimized_metric=val/loss",), min),
                                                 (("optimized_metric=val/loss", "optimized_mode=max"), max),
                                                 (("callbacks.model_checkpoint.monitor=val/loss",), min)])
def test_the_best_checkpoint_follows_the_metric_s_direction(make_cfg, overrides, best):
    """optimized_mode follows the metric's name (a loss: lower is better) unless it is given; so does the mode of a
    checkpoint callback given a monitor of its own (it kept val/acc's max: the best checkpoint had the highest loss)."""
    import csv

    results = train(make_cfg(*overrides, "trainer.max_epochs=3", "+trainer.limit_train_batches=4", "seed=0",
                             "callbacks.progress_bar.refresh_rate=0"))
    with open(Path(results["output_dir"]) / "csv" / "metrics.csv") as file:
        losses = [float(row["val/loss"]) for row in csv.DictReader(file) if row.get("val/loss")]
    assert len(losses) == 3 and len(set(losses)) == 3
    assert Path(results["best_checkpoint"]).name == f"epoch_{losses.index(best(losses)):03d}.ckpt"


def test_checkpoints_may_monitor_a_training_metric(make_cfg):
    """ModelCheckpoint reads a train/ metric at the training epoch's end, where it is logged, unlike early stopping
    (which checks after each validation): only the latter is refused before the metric exists."""
    results = train(make_cfg("optimized_metric=train/loss", "callbacks.early_stopping=null", "debug=limit",
                             "logger=none"))
    assert results["epochs_completed"] == 2 and Path(results["best_checkpoint"]).is_file()


def test_early_stopping_stops_after_validation_and_max_steps_ends_before_one(make_cfg):
    """Early stopping is checked after each validation: it stops a run whose val/acc cannot improve by min_delta,
    and a run that ends before its first validation (+trainer.max_steps shorter than an epoch) tests its weights."""
    stopped = train(make_cfg("callbacks.early_stopping.patience=0", "callbacks.early_stopping.min_delta=1.0",
                             "trainer.max_epochs=5", "logger=none"))
    assert stopped["epochs_completed"] == 2  # the first validation sets the best, the second cannot beat it by 1.0
    for max_epochs in (40, -1):  # -1: no epoch limit, as in Lightning
        short = train(make_cfg(f"trainer.max_epochs={max_epochs}", "+trainer.max_steps=5", "logger=none",
                               run=f"short_{max_epochs}"))
        assert short["evaluated_checkpoint"] == "final weights" and "test/acc" in short["metrics"]
        assert "val/acc" not in short["metrics"]


def test_a_run_stopped_early_and_continued_stays_stopped(make_cfg, caplog):
    """Continued with ckpt_path=auto and more epochs (with another tag: not "finished with this config"), an
    early-stopped run trained on past its stop (Lightning restores the count but not the decision) and replaced its
    results; an uninterrupted run stops there, so the continued one ends at once with the same test metrics."""
    stop = ("callbacks.early_stopping.patience=0", "callbacks.early_stopping.min_delta=1.0", "logger=none",
            "debug=limit", "ckpt_path=auto")
    stopped = train(make_cfg(*stop, "trainer.max_epochs=5"))
    assert stopped["epochs_completed"] == 2
    with caplog.at_level("INFO", logger="train"):
        continued = train(make_cfg(*stop, "trainer.max_epochs=8", "tags=[continued]"))
    assert continued["epochs_completed"] == 2 and continued["metrics"] == pytest.approx(stopped["metrics"])
    assert {"train/loss", "train/acc"} <= set(continued["metrics"])  # its last epoch's, from the earlier results.json
    assert "The checkpoint's run was stopped early in epoch 1 by early stopping (patience exhausted): it is not " \
           "trained further; to train longer, start a fresh run with a larger callbacks.early_stopping.patience or " \
           "callbacks.early_stopping=null." in caplog.text


@pytest.mark.parametrize("fast_dev_run", ["true", "3"])
def test_a_fast_dev_run_does_not_continue_a_run(make_cfg, fast_dev_run):
    """Lightning's fast_dev_run saves no checkpoint: a finished run continued with it (ckpt_path=auto) had its
    results.json replaced by one batch's, and its metrics.csv's test row set aside."""
    from framework.errors import ConfigError

    finished = Path(train(make_cfg("debug=limit", "logger=csv"))["output_dir"])
    files = {path: path.read_bytes() for path in finished.rglob("*") if path.is_file()}
    with pytest.raises(ConfigError) as refused:
        train(make_cfg("debug=limit", "logger=csv", f"+trainer.fast_dev_run={fast_dev_run}", "ckpt_path=auto"))
    assert str(refused.value) == (
        f"Config key 'trainer.fast_dev_run' is {'True' if fast_dev_run == 'true' else 3}, but ckpt_path=auto continues "
        f"the run in {finished}, whose results a fast_dev_run (a batch or few, no checkpoint) would replace; leave out "
        f"ckpt_path, and give the fast_dev_run a hydra.run.dir of its own.")
    assert {path: path.read_bytes() for path in finished.rglob("*") if path.is_file()} == files


@pytest.mark.parametrize("callbacks", [(), ("callbacks=mi_lr", "callbacks.mi_lr.sample_size=100",
                                            "callbacks.mi_lr.test_every_epoch=true")], ids=["default", "mi-lr"])
def test_a_run_killed_after_fit_keeps_its_training_metrics_when_continued(make_cfg, callbacks):
    """A run killed after fit but before results.json (while testing) kept nothing of its last epoch's training
    metrics: continued with ckpt_path=auto it trains no batch, so Lightning logs none. The last checkpoint, saved at
    the training epoch's end, holds them (the MI callback's test/epoch_acc, logged while fitting, too); a best one
    saved after a validation within an epoch holds none, which would be stale."""
    run = ("logger=none", "debug=limit", "ckpt_path=auto", "trainer.max_epochs=2", *callbacks)
    finished = train(make_cfg(*run))
    (Path(finished["output_dir"]) / "results.json").unlink()
    continued = train(make_cfg(*run))
    assert continued["epochs_completed"] == 2
    training = {key: value for key, value in finished["metrics"].items() if key.startswith("train/")}
    assert set(training) >= {"train/loss", "train/acc"}
    assert {key: continued["metrics"][key] for key in training} == training
    assert continued["metrics"] == pytest.approx(finished["metrics"])
    assert ("test/epoch_acc" in continued["metrics"]) == bool(callbacks)
    within = train(make_cfg("logger=none", "debug=limit", "trainer.max_epochs=1", "+trainer.val_check_interval=0.5",
                            run="within"))
    best = torch.load(within["best_checkpoint"], weights_only=False)  # saved after a validation, within the epoch
    assert TRAINING_METRICS not in best and best["global_step"] > 0
    last = torch.load(Path(within["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)
    assert set(last[TRAINING_METRICS]) >= {"train/loss", "train/acc"}  # at the training epoch's end, always


def test_a_continuation_from_within_a_gradient_accumulation_is_told_that_it_lacks_those_gradients():
    def saved(batches: int, at_the_epochs_end: bool = False) -> dict:
        return {"global_step": 40, "loops": {"fit_loop": {
            "epoch_loop.batch_progress": {"is_last_batch": at_the_epochs_end},
            "state_dict": {"combined_loader": [{"epoch": 2, "batches": batches}]}}}}

    assert lost_accumulation_warning("x.ckpt", saved(9), 2) == (
        "ckpt_path x.ckpt was saved after batch 9 of its epoch, within an accumulation of "
        "trainer.accumulate_grad_batches=2 batches: the gradients accumulated since the last optimizer step are in no "
        "checkpoint, so the continued run makes its next step without them")
    assert lost_accumulation_warning("x.ckpt", saved(9), 3) is None  # 9 batches: 3 whole accumulations
    assert lost_accumulation_warning("x.ckpt", saved(9), 1) is None
    assert lost_accumulation_warning("x.ckpt", saved(9, at_the_epochs_end=True), 2) is None  # Lightning steps there
    assert lost_accumulation_warning("x.ckpt", {"global_step": 0}, 2) is None  # no loader state: nothing to say


SAVES_AT_STEPS = ("+callbacks.steps._target_=framework.checkpoints.RunModelCheckpoint",
                  "+callbacks.steps.dirpath=${paths.output_dir}/steps", "+callbacks.steps.save_top_k=-1",
                  '+callbacks.steps.filename="step_{step:03d}"', "+callbacks.steps.auto_insert_metric_name=false",
                  "logger=none")


@pytest.mark.parametrize("options, saved", [
    (("+callbacks.steps.every_n_train_steps=5", "trainer.max_epochs=3"), range(5, 54, 5)),
    (("+callbacks.steps.every_n_train_steps=9", "+callbacks.steps.save_last=true", "+trainer.val_check_interval=0.5",
      "+trainer.max_steps=10"), [9, "last"]),
    (("+callbacks.steps.every_n_train_steps=18", "+callbacks.steps.monitor=val/acc", "+callbacks.steps.mode=max",
      "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2", "+trainer.val_check_interval=9"), [27, 36]),
], ids=["at-those-steps-only", "waiting-for-validation-with-save-last", "monitored-before-the-first-validation"])
def test_a_checkpoint_callback_saving_every_n_steps_saves_at_those_steps_only(make_cfg, options, saved):
    """Epochs of 18 batches. Only one set to save at the training epoch's end (as last.ckpt's) saves there as well. A
    save that waits for its batch's validation writes last.ckpt too. One whose metric no validation has logged yet
    saves at the next validation, as Lightning's own does (step 18's at step 27)."""
    finished = train(make_cfg(*SAVES_AT_STEPS, *options))
    steps = {path.name: torch.load(path, weights_only=False)["global_step"]
             for path in (Path(finished["output_dir"]) / "steps").iterdir()}
    numbered = [step for step in saved if step != "last"]
    assert steps == {**{f"step_{step:03d}.ckpt": step for step in numbered},
                     **({"last.ckpt": numbered[-1]} if "last" in saved else {})}


def _received(rank: int, callbacks: list) -> None:
    """What a ddp_sim process does with the callbacks it is sent: unpickle them (the work is done by then)."""


def test_lightnings_device_stats_monitor_logs_the_cpu_stats_of_a_cpu_run(make_cfg):
    """A Lightning callback added on the command line (+callbacks.<name>._target_=...) runs as in a plain script;
    DeviceStatsMonitor's CPU figures need psutil (a dependency: without it, a traceback)."""
    import csv

    results = train(make_cfg("+callbacks.stats._target_=lightning.pytorch.callbacks.DeviceStatsMonitor",
                             "trainer.log_every_n_steps=1", "debug=limit", "logger=csv"))
    with open(Path(results["output_dir"]) / "csv" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    memory = "DeviceStatsMonitor.on_train_batch_end/cpu_vm_percent"  # the share of the machine's memory in use
    logged = {int(row["step"]): float(row[memory]) for row in rows if row.get(memory)}
    assert list(logged) == list(range(2 * 3))  # every training step of debug=limit's 2 epochs of 3 batches
    assert all(0 < percent < 100 for percent in logged.values())


def test_every_callback_can_be_sent_to_ddp_sim_processes(make_cfg):
    """trainer=ddp_sim pickles the callbacks into its processes (forked from a forkserver; spawned, with
    trainer.strategy=ddp_spawn); torch cannot send some objects there (a torch.Generator in a callback's __init__
    failed with "unable to resize file")."""
    import torch.multiprocessing

    from framework.training import instantiate_group

    options = [f"callbacks={path.stem}" for path in (Path(__file__).parents[1] / "conf" / "callbacks").glob("*.yaml")]
    callbacks = [callback for option in [*options, "experiment=szegedy_fc100_adversarial"]  # its callback is inline
                 for callback in instantiate_group(make_cfg(option), "callbacks").values()]
    assert "AdversarialTraining" in {type(callback).__name__ for callback in callbacks}
    torch.multiprocessing.start_processes(_received, args=(callbacks,), nprocs=1, start_method="forkserver")


class OneStepToThree(L.LightningModule):
    """Loss (w - 3)², whatever the batch: one SGD step of 0.1 from w = 1 makes w = 1.4 on every rank. It notes where
    its rank 0 ran, and with which PL_GLOBAL_SEED, in ``noted``."""

    def __init__(self, noted: str):
        super().__init__()
        self.w, self.noted = torch.nn.Parameter(torch.tensor([1.0])), noted

    def training_step(self, batch, batch_idx):
        if self.global_rank == 0:
            Path(self.noted).write_text(f"{os.environ.get('PL_GLOBAL_SEED')} {os.getcwd()}")
        return (self.w - 3).pow(2).sum() + 0 * batch[0].sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1)), batch_size=1)


@pytest.mark.slow
def test_ddp_workers_from_a_forkserver_have_the_parents_state_at_each_launch_and_a_module_of_their_own(
        make_cfg, tmp_path, monkeypatch):
    """trainer=ddp_sim forks its workers from a forkserver, which keeps the environment and working directory of the
    launch that started it: the next job of an in-process sweep ran with the first job's seed. Both ranks also
    stepped one shared module (w = 1.8 after one step)."""
    from lightning.pytorch.strategies import DDPStrategy

    from framework.combinations import FirstBatchWatch
    from framework.ddp_workers import with_job_worker_launcher

    for seed in (1, 2):
        (tmp_path / str(seed)).mkdir()
        monkeypatch.chdir(tmp_path / str(seed))
        monkeypatch.setenv("PL_GLOBAL_SEED", str(seed))
        trainer = L.Trainer(strategy=DDPStrategy(start_method="forkserver"), accelerator="cpu", devices=2,
                            max_steps=1, callbacks=[FirstBatchWatch()], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        with_job_worker_launcher(trainer, make_cfg())
        model = OneStepToThree(str(tmp_path / "noted"))
        trainer.fit(model)
        assert model.w.item() == pytest.approx(1.4)
        assert (tmp_path / "noted").read_text() == f"{seed} {tmp_path / str(seed)}"


class StateLargerThanAPipe(L.Callback):
    """A state larger than a pipe's buffer (64 KiB), as the adversarial training's pools are."""

    state = None

    def on_train_end(self, trainer, pl_module) -> None:
        self.state = torch.arange(100_000.0)

    def state_dict(self) -> dict:
        return {"state": self.state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.state = state_dict["state"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_ddp_sim_worker_sends_back_callback_states_larger_than_a_pipe_holds(make_cfg, tmp_path, monkeypatch):
    """The workers' callback states went through Lightning's result queue, which the parent reads only after the
    workers have ended: a state over the pipe's buffer (experiment=szegedy_fc100_adversarial's pools) kept rank 0
    waiting for good after its fit. They go through a file now, removed once read."""
    from lightning.pytorch.strategies import DDPStrategy

    from framework.combinations import FirstBatchWatch
    from framework.ddp_workers import with_job_worker_launcher

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    large = StateLargerThanAPipe()
    trainer = L.Trainer(strategy=DDPStrategy(start_method="forkserver"), accelerator="cpu", devices=2, max_steps=1,
                        callbacks=[FirstBatchWatch(), large], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with_job_worker_launcher(trainer, make_cfg())
    trainer.fit(OneStepToThree(str(tmp_path / "noted")))
    assert torch.equal(large.state, torch.arange(100_000.0))  # rank 0's, in the launching process
    assert not list(tmp_path.rglob("callback_states.pt"))


def test_last_checkpoint_holds_the_last_epoch_when_the_metric_stopped_improving(make_cfg):
    """What ckpt_path=auto resumes from. Lightning's save_last wrote last.ckpt only with a new top-k checkpoint,
    so a resumed run went back to its best epoch."""
    import torch

    results = train(make_cfg("debug=limit", "seed=42", "logger=none"))  # 2 epochs of 3 batches
    assert Path(results["best_checkpoint"]).name == "epoch_000.ckpt"  # the case: the second epoch did not improve
    last = torch.load(Path(results["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 6)


def test_a_copy_to_last_ckpt_that_fails_midway_leaves_no_last_ckpt(make_cfg, monkeypatch):
    """ckpt_path=auto after a stop between an epoch's best checkpoint and its last.ckpt copies the best to last.ckpt:
    a copy that fails (a full disk) must leave no part of a last.ckpt for the next start to continue from."""
    import shutil

    from framework.resuming import complete_an_interrupted_save

    folder = Path(train(make_cfg("debug=limit", "trainer.max_epochs=1", "logger=none"))["output_dir"]) / "checkpoints"
    (folder / "last.ckpt").unlink()
    before = sorted(path.name for path in folder.iterdir())

    def disk_fills_up(source, target, *args):
        target.write(source.read(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfileobj", disk_fills_up)
    with pytest.raises(OSError, match="No space left on device"):
        complete_an_interrupted_save(folder.parent)
    assert sorted(path.name for path in folder.iterdir()) == before


def test_a_run_that_would_mix_its_files_with_an_earlier_runs_is_one_sentence_and_leaves_them(make_cfg, tmp_path,
                                                                                              caplog):
    """A second run with the same hydra.run.dir appended its rows to the first one's metrics.csv and replaced its
    last.ckpt and results.json: started fresh, from another run's checkpoint, or test-only. ckpt_path=auto still
    continues it, and a test-only run of a killed run's last.ckpt (no results.json yet) still goes into its folder."""
    from framework.errors import ConfigError

    first = train(make_cfg("debug=limit", "trainer.max_epochs=1", "seed=1"))
    other = train(make_cfg("debug=limit", "trainer.max_epochs=1", "seed=2", run="other"))["best_checkpoint"]
    folder = Path(first["output_dir"])
    files = {path: path.read_bytes() for path in [*folder.glob("checkpoints/*.ckpt"), folder / "csv" / "metrics.csv",
                                                   folder / "results.json"]}
    earlier = rf"^The output directory {folder} holds an earlier run \(checkpoints/epoch_000.ckpt, checkpoints/"
    earlier += r"last.ckpt, "
    for overrides, expected in (
            ((), earlier + r"results.json, \.\.\.\), and this run starts fresh, so it would mix its metrics and "
                           r"checkpoints with that run's; continue that run with ckpt_path=auto, leave hydra.run.dir "
                           r"out \(each run gets a new folder\), or delete the earlier run's files\.$"),
            ((f"ckpt_path={other}",), rf"and this run resumes from another run's checkpoint \({other}\)"),
            (("train=false", "ckpt_path=auto"), earlier + rf"results.json, \.\.\.\), whose results.json this test-only "
                                                rf"run \(train=false\) would replace; give ckpt_path={folder}/"
                                                rf"checkpoints/last.ckpt and leave hydra.run.dir out")):
        with pytest.raises(ConfigError, match=expected):
            train(make_cfg("debug=limit", "trainer.max_epochs=1", "seed=1", *overrides))
    assert {path: path.read_bytes() for path in files} == files and len(list(folder.glob("checkpoints/*"))) == 2
    with warnings_said() as said:
        continued = train(make_cfg("debug=limit", "trainer.max_epochs=2", "seed=1", "ckpt_path=auto"))
    assert continued["epochs_completed"] == 2
    assert not [message for message in said if "exists and is not empty" in message]  # the run's own folder
    kept = (folder / "results.json").read_bytes()  # finished with this config: kept, not re-tested
    again = train(make_cfg("debug=limit", "trainer.max_epochs=2", "seed=1", "ckpt_path=auto"))
    assert (folder / "results.json").read_bytes() == kept and "train/loss" in again["metrics"]

    (folder / "checkpoints" / "last.ckpt").unlink()  # as if stopped between an epoch's best checkpoint and last.ckpt
    best = next(folder.glob("checkpoints/epoch_*.ckpt"))
    assert train(make_cfg("debug=limit", "trainer.max_epochs=2", "seed=1", "ckpt_path=auto"))["metrics"] == \
        again["metrics"]  # continued from the best checkpoint, copied to last.ckpt: the run had finished
    assert (folder / "checkpoints" / "last.ckpt").read_bytes() == best.read_bytes()
    damaged = (folder / "checkpoints" / "last.ckpt").read_bytes()[:30_000]  # a disk's damage: the saves are atomic
    (folder / "checkpoints" / "last.ckpt").write_bytes(damaged)
    assert train(make_cfg("debug=limit", "trainer.max_epochs=2", "seed=1", "ckpt_path=auto"))["metrics"] == \
        again["metrics"]
    assert (folder / "checkpoints" / "last.damaged-1").read_bytes() == damaged  # kept, and said
    assert f"{folder}/checkpoints/last.ckpt cannot be read as a checkpoint (truncated or damaged; it is kept as " \
           f"last.damaged-1): the run continues from the newest readable one, {best.name} (global step" in caplog.text
    killed = tmp_path / "killed"  # a run killed before its results.json: a test-only run's results would end it
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "checkpoints" / "last.ckpt").write_bytes(Path(other).read_bytes())
    with pytest.raises(ConfigError, match=re.escape(
            f"The output directory {killed} holds an earlier run (checkpoints/last.ckpt), whose results.json this "
            f"test-only run (train=false) would write (it would look finished); give ckpt_path={killed}/checkpoints/"
            f"last.ckpt and leave hydra.run.dir out (each run gets a new folder).")):
        train(make_cfg("debug=limit", "seed=2", "train=false", "ckpt_path=auto", run="killed"))
    assert not (killed / "results.json").exists()
    (killed / "checkpoints" / "last.ckpt").unlink()
    (killed / "csv").mkdir()
    (killed / "csv" / "metrics.csv").write_text("epoch,step,train/loss\n0,1,2.5\n")  # killed before a checkpoint
    with pytest.raises(ConfigError, match=r"holds an earlier run \(csv/metrics.csv\), and this run starts fresh"):
        train(make_cfg("debug=limit", "seed=2", run="killed"))
    (killed / "tensorboard").mkdir()
    (killed / "tensorboard" / "events.out.tfevents.1").write_text("the killed start's steps")
    again = train(make_cfg("debug=limit", "seed=2", "ckpt_path=auto", run="killed"))  # it starts again, rows apart
    assert again["epochs_completed"] == 2  # debug=limit's max_epochs, from epoch 0
    assert (killed / "csv" / "metrics.killed-1.csv").read_text() == "epoch,step,train/loss\n0,1,2.5\n"
    assert (killed / "tensorboard.killed-1" / "events.out.tfevents.1").read_text() == "the killed start's steps"
    assert "2.5" not in (killed / "csv" / "metrics.csv").read_text()


def test_ckpt_path_auto_in_the_folder_of_a_run_that_saved_no_checkpoint_is_one_sentence_and_leaves_it(make_cfg):
    """A finished run without checkpoints (+trainer.enable_checkpointing=false) leaves results.json and no last.ckpt:
    ckpt_path=auto there has nothing to continue, and started fresh it would replace that run's results.json (its
    metrics.csv set aside as a killed start's)."""
    from framework.errors import ConfigError

    first = train(make_cfg("debug=limit", "+trainer.enable_checkpointing=false"))
    folder = Path(first["output_dir"])
    assert first["best_checkpoint"] is None and not (folder / "checkpoints").exists()
    files = {path: path.read_bytes() for path in (folder / "results.json", folder / "csv" / "metrics.csv")}
    with pytest.raises(ConfigError, match=re.escape(
            f"The output directory {folder} holds an earlier run (results.json) but no checkpoint in checkpoints/ "
            f"for ckpt_path=auto to continue, so this run would start fresh among its files; leave hydra.run.dir out "
            f"(each run gets a new folder), or delete the earlier run's files.")):
        train(make_cfg("debug=limit", "ckpt_path=auto"))
    assert {path: path.read_bytes() for path in files} == files and not (folder / "checkpoints").exists()


@pytest.mark.parametrize("own_config", [False, True])
def test_the_earlier_run_check_stops_a_run_or_sweep_before_hydra_writes_into_its_folders(tmp_path, own_config):
    """Hydra writes a job's .hydra/ files (and a sweep's multirun.yaml) before the job starts: the run's and the
    sweep's Hydra callbacks check first, so the earlier run's record of its config stays. ``own_config``: a config
    of one's own built on train's (-cd <folder> -cn <name>), for which the callbacks checked nothing."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mytrain.yaml").write_text("defaults: [train, _self_]\n")
    primary = ("-cd", str(tmp_path / "mine"), "-cn", "mytrain") if own_config else ()
    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        (sweep / job / "results.json").write_text("{}")
    (sweep / "multirun.yaml").write_text("earlier\n")
    rerun = run_cli("train.py", *primary, "-m", "seed=4,5", "debug=smoke", f"hydra.sweep.dir={sweep}")
    assert rerun.returncode == 2 and "Traceback" not in rerun.stderr
    assert rerun.stderr.strip().splitlines()[-1] == (
        f"Config error: The output directory {sweep}/0 holds an earlier run (results.json), and this run starts fresh, "
        f"so it would mix its metrics and checkpoints with that run's; give another hydra.sweep.dir, or delete the "
        f"earlier run's files.")  # no ckpt_path=auto: there is no last.ckpt to continue
    assert (sweep / "0" / ".hydra" / "overrides.yaml").read_text() == "- seed=0\n"
    assert (sweep / "multirun.yaml").read_text() == "earlier\n"
    run = run_cli("train.py", *primary, "seed=7", "debug=smoke", f"hydra.run.dir={sweep}/1")
    assert run.returncode == 2 and "holds an earlier run (results.json)" in run.stderr
    assert (sweep / "1" / ".hydra" / "overrides.yaml").read_text() == "- seed=1\n"


def test_a_continued_sweep_with_fewer_epochs_than_a_job_trained_stops_before_any_job(tmp_path):
    """Lightning refuses it once fit starts: the sweep ran its new jobs first, with the lower max_epochs."""
    sweep = ("debug=limit", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert run_cli("train.py", "-m", "seed=1", *sweep).returncode == 0
    fewer = run_cli("train.py", "-m", "seed=1,2", "trainer.max_epochs=1", "ckpt_path=auto", *sweep)
    assert fewer.returncode == 2 and fewer.stderr.strip().splitlines()[-1] == (
        f"Config error: Job 0 of this sweep gives trainer.max_epochs=1, but the run it would continue "
        f"({tmp_path}/0/checkpoints/last.ckpt) was saved in epoch 1 (counting from 0); give a larger "
        f"trainer.max_epochs to train on from it, or train=false to test its weights."), fewer.stderr[-2000:]
    assert not (tmp_path / "1").exists()


def test_lightning_s_refusal_of_fewer_epochs_than_trained_names_the_epoch_the_checkpoint_was_saved_in():
    """A checkpoint check_epochs_left does not see (Lightning's ``hpc``) is refused by Lightning once fit starts; the
    current_epoch it names is the restored one, before the fit loop counts a finished epoch as done: the checkpoint's
    own epoch (counting from 0, as the sentence of check_epochs_left says; a real hpc checkpoint in
    test_a_resume_that_changes_what_the_checkpoint_restores_is_one_sentence)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from framework.checkpoints import loading_checkpoint
    from framework.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        with loading_checkpoint("x.ckpt"):  # Lightning's words (its checkpoint_connector)
            raise MisconfigurationException("You restored a checkpoint with current_epoch=2, but you have set "
                                            "Trainer(max_epochs=1).")
    assert str(refused.value) == ("Config key 'trainer.max_epochs' is 1, but ckpt_path x.ckpt was saved in epoch 2 "
                                  "(counting from 0); give a larger trainer.max_epochs to train on from it, or "
                                  "train=false to test its weights.")


def test_a_sweep_job_refused_before_its_first_checkpoint_reruns_with_its_value_corrected(tmp_path):
    """Its folder holds only Hydra's record of the refused value, nothing to continue: the corrected job was refused
    as 'the run of data.batch_size=0.5, which ckpt_path=auto would continue'."""
    sweep = ("debug=smoke", "logger=none", f"hydra.sweep.dir={tmp_path}")
    refused = run_cli("train.py", "-m", "data.batch_size=32,0.5", *sweep)
    assert refused.returncode == 2 and "'data.batch_size' is 0.5" in refused.stderr, refused.stderr[-2000:]
    corrected = run_cli("train.py", "-m", "data.batch_size=32,16", "ckpt_path=auto", *sweep)
    assert corrected.returncode == 0, corrected.stderr[-2000:]
    assert read_results(tmp_path / "1" / "results.json")["config"]["data"]["batch_size"] == 16


def test_a_shuffled_sweep_is_not_continued_into_its_earlier_folders(tmp_path):
    """shuffle() orders the jobs anew at every start, and the check before the jobs drew its own order: a continuation
    passed it by chance and its jobs went on from each other's runs (one warning each), or every job failed."""
    sweep = ("-m", "data.batch_size=shuffle(16,32)", "debug=smoke", "logger=none", f"hydra.sweep.dir={tmp_path}")
    first = run_cli("train.py", *sweep)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli("train.py", *sweep, "ckpt_path=auto")
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1] == (
        f"Config error: Config key 'data.batch_size' is swept with shuffle(), which orders the jobs anew at every "
        f"start, but {tmp_path} holds runs of an earlier start of this sweep, whose folders would go to other jobs; "
        f"sweep the values without shuffle() to continue them, or give another hydra.sweep.dir."), again.stderr[-2000:]


def test_a_shuffled_sweep_whose_earlier_jobs_were_refused_before_a_checkpoint_starts_again(tmp_path):
    """Jobs refused before their first checkpoint leave folders with only .hydra/ in them: nothing for another job to
    continue, so a shuffled sweep may start again there; a checkpoint in one of them refuses it."""
    from omegaconf import open_dict

    from framework.compose import compose_with_hydra
    from framework.continued_runs import check_not_shuffled
    from framework.errors import ConfigError

    config = compose_with_hydra(["hydra.job.name=train"])
    with open_dict(config):
        config.hydra.overrides.task = ["data.batch_size=shuffle(16,32)"]
    for num in (0, 1):
        (tmp_path / str(num) / ".hydra").mkdir(parents=True)
    check_not_shuffled(config, tmp_path)
    (tmp_path / "1" / "checkpoints").mkdir()
    (tmp_path / "1" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^Config key 'data\.batch_size' is swept with shuffle\(\)"):
        check_not_shuffled(config, tmp_path)


def test_a_continued_sweep_stops_before_hydra_writes_when_its_jobs_are_other_runs_or_change_kept_values(tmp_path):
    """A sweep continued with ckpt_path=auto numbers its jobs anew when its values are reordered or inserted: job 0
    went on from job 0's old checkpoint with another job's values, silently for a key no checkpoint keeps. A job
    whose values the checkpoint keeps was stopped only after Hydra had rewritten its .hydra/ record; a custom
    hydra.sweep.subdir was not checked at all, and could give two jobs one folder. An interpolation in an override
    switched the check off (Hydra turns a callback's error into a warning). Appending values, or a new swept key
    whose first value is the default, still continues the earlier jobs."""
    sweep, custom = tmp_path / "sweep", tmp_path / "custom"
    for folder, subdir in ((sweep, "${hydra.job.num}"), (custom, "s${seed}")):
        first = run_cli("train.py", "-m", "seed=1,2", "debug=smoke", f"hydra.sweep.dir={folder}",
                        f"hydra.sweep.subdir={subdir}")
        assert first.returncode == 0, first.stderr[-2000:]
    record = {path: path.read_bytes() for path in [*tmp_path.glob("*/*/.hydra/*.yaml"), *tmp_path.glob("*/*.yaml")]}
    for overrides, expected in (
            (("data.batch_size=32,64", "seed=1"), f"Config error: Job 0 of this sweep gives data.batch_size=32, but "
             f"its folder {sweep}/0 holds the run of data.batch_size=64, which ckpt_path=auto would continue with this "
             f"job's values (jobs are numbered by the order of the swept keys and their values: only values appended "
             f"to the first swept key keep the earlier jobs' numbers); sweep the earlier keys and values in their "
             f"order, or give another hydra.sweep.dir."),
            (("seed=2,1", "+note=${hydra:runtime.output_dir}"), f"Job 0 of this sweep gives seed=2, but its folder "
                                                               f"{sweep}/0 holds the run of seed=1,"),
            (("seed=2",), f"Job 0 of this sweep gives seed=2, but its folder {sweep}/0 holds the run of seed=1,"),
            (("seed=2,1", "hydra.job.name=myexp"), f"Job 0 of this sweep gives seed=2, but its folder {sweep}/0 "
                                                    f"holds the run of seed=1,"),  # a job name turned every check off
            (("seed=1,2", "model.optimizer.lr=0.5"), f"Config error: Job 0 of this sweep would continue the run of "
             f"{sweep}/0/checkpoints/last.ckpt (ckpt_path=auto), but gives model.optimizer.lr=0.5 (the checkpoint's: "
             f"0.02): a resumed run keeps"),
            (("seed=1,2", "train=false"), "this test-only run (train=false) would replace; give another "
                                          "hydra.sweep.dir, with the checkpoints to test as the values of ckpt_path.")):
        rerun = run_cli("train.py", "-m", *overrides, "debug=smoke", "ckpt_path=auto", f"hydra.sweep.dir={sweep}")
        assert rerun.returncode == 2 and expected in rerun.stderr.strip().splitlines()[-1], rerun.stderr[-2000:]
    in_custom = ("-m", "hydra.sweep.subdir=s${seed}", f"hydra.sweep.dir={custom}")
    for overrides, expected in ((("seed=1", "model.optimizer.lr=0.5", "ckpt_path=auto", f"hydra.run.dir={sweep}/0"),
                                 "but this start gives model.optimizer.lr=0.5 (the checkpoint's: 0.02)"),
                                (("seed=1", "model.optimizer.lr=0.5", "ckpt_path=last", f"hydra.run.dir={sweep}/0"),
                                 "but this start gives model.optimizer.lr=0.5 (the checkpoint's: 0.02)"),
                                ((*in_custom, "seed=1,2", "ckpt_path=auto", "model.optimizer.lr=0.5"),
                                 f"would continue the run of {custom}/s1/checkpoints/"),
                                ((*in_custom, "seed=1,2"), f"The output directory {custom}/s1 holds an earlier run"),
                                ((*in_custom, "seed=3", "data.batch_size=16,32", "ckpt_path=auto"),
                                 f"Config key 'hydra.sweep.subdir' is 's${{seed}}', which gives jobs 0 and 1 of this "
                                 f"sweep the same folder {custom}/s3; name every swept key in it (here "
                                 f"'hydra.sweep.subdir=batch_size${{data.batch_size}}'), or leave it out")):
        rerun = run_cli("train.py", *overrides, "debug=smoke")
        assert rerun.returncode == 2 and expected in rerun.stderr, rerun.stderr[-2000:]
    tested = run_cli("train.py", "-m", f"ckpt_path={sweep}/0/checkpoints/last.ckpt,{sweep}/1/checkpoints/last.ckpt",
                     "train=false", "debug=smoke", f"hydra.sweep.dir={sweep}")  # each job failed, after Hydra wrote
    assert tested.returncode == 2 and "whose results.json this test-only run (train=false) would replace" in \
        tested.stderr.strip().splitlines()[-1], tested.stderr[-2000:]
    assert {path: path.read_bytes() for path in record} == record  # .hydra/ and multirun.yaml as first written
    assert not (custom / "s3").exists()
    alone = run_cli("train.py", "-m", "seed=1", "debug=smoke", "trainer.max_epochs=2", "ckpt_path=auto",
                    f"hydra.sweep.dir={sweep}")  # job 0 alone: its record now differs from job 1's in max_epochs
    assert alone.returncode == 0, alone.stderr[-2000:]
    appended = run_cli("train.py", "-m", "data.batch_size=64,32", "seed=1,2", "debug=smoke", "trainer.max_epochs=2",
                       "ckpt_path=auto", f"hydra.sweep.dir={sweep}")  # 64: the default, which jobs 0 and 1 had
    assert appended.returncode == 0, appended.stderr[-2000:]
    assert [read_results(sweep / str(num) / "results.json")["epochs_completed"] for num in range(4)] == [2] * 4
    assert "Resuming from" in (sweep / "1" / "train.log").read_text()
    assert read_results(sweep / "2" / "results.json")["choices"]["model"] == "lenet5"  # evaluate.py's rows read it


def test_a_continued_sweep_may_spell_its_numbers_otherwise(tmp_path):
    """Job 0's folder holds the run of momentum=0, and the continuation gives 0.0: the same value (Hydra reads the
    one as an int, the other as a float), not another job's run."""
    from framework.continued_runs import same

    assert same(0, 0.0) and same(1, 1.0) and not same(0, 0.9) and not same(True, 1) and not same("0", 0)
    sweep = ("debug=smoke", "logger=none", f"hydra.sweep.dir={tmp_path}")
    first = run_cli("train.py", "-m", "model.optimizer.momentum=0,0.9", *sweep)
    assert first.returncode == 0, first.stderr[-2000:]
    continued = run_cli("train.py", "-m", "model.optimizer.momentum=0.0,0.9", "ckpt_path=auto", *sweep)
    assert continued.returncode == 0, continued.stderr[-2000:]


def test_an_error_of_the_earlier_runs_check_stops_the_run_instead_of_a_warning(capsys):
    """Hydra turns an exception of a callback into a warning and launches the jobs: a bug of the check (an override
    it could not read) let a sweep run unchecked. A user error stays its sentence with exit code 2."""
    from framework.errors import ConfigError
    from framework.hydra_callbacks import checking_before_any_job

    for error, code in ((RuntimeError("a bug of the check"), 1), (ConfigError("Config key 'x' is 1."), 2)):
        with pytest.raises(SystemExit) as stop:
            with checking_before_any_job():
                raise error
        assert stop.value.code == code
    printed = capsys.readouterr().err
    assert "Traceback" in printed and "RuntimeError: a bug of the check" in printed
    assert printed.strip().splitlines()[-1] == "Config error: Config key 'x' is 1."


def test_a_resume_that_changes_what_the_checkpoint_restores_is_one_sentence(make_cfg):
    """A resumed run takes the optimizer's values, the scheduler's and early stopping's patience from the checkpoint:
    changed on resume, they trained with the old values while results.json recorded the new ones. Its seed and
    train/validation split stay too."""
    import torch

    from framework.checkpoints import KEPT_VALUES
    from framework.errors import ConfigError

    first = train(make_cfg("debug=limit", "trainer.max_epochs=3", "seed=1", "logger=none"))
    last = Path(first["output_dir"]) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)[KEPT_VALUES]["model.optimizer.lr"] == 0.02
    resume = ("debug=limit", "seed=1", "logger=none", f"ckpt_path={last}")
    with pytest.raises(ConfigError, match=r"gives model\.optimizer\.lr=0\.5 \(the checkpoint's: 0\.02\): a resumed"):
        train(make_cfg(*resume, "trainer.max_epochs=4", "model.optimizer.lr=0.5"))
    for name in ("auto", "last"):  # this run directory's last.ckpt; Lightning's own name for it is checked too
        with pytest.raises(ConfigError, match=r"gives model\.optimizer\.lr=0\.5"):
            train(make_cfg(*resume[:-1], f"ckpt_path={name}", "trainer.max_epochs=4", "model.optimizer.lr=0.5"))
    with pytest.raises(ConfigError, match=r"patience=1 \(the checkpoint's: 20\)"):
        train(make_cfg(*resume, "trainer.max_epochs=4", "callbacks.early_stopping.patience=1"))
    with pytest.raises(ConfigError, match=r"gives seed=2 \(the checkpoint's: 1\), data.val_fraction=0.5 \(the"):
        train(make_cfg(*resume, "trainer.max_epochs=4", "seed=2", "data.val_fraction=0.5"))  # a split mixed midway
    with pytest.raises(ConfigError, match=r"'trainer.max_epochs' is 1, but ckpt_path .*last.ckpt was saved in epoch 2"):
        train(make_cfg(*resume, "trainer.max_epochs=1"))
    # Lightning's hpc checkpoint, which check_epochs_left does not see: Lightning refuses it once fit starts, and
    # that refusal is the checkpoint's sentence, not trainer_refusals' general one
    hpc = last.parent.parent / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(last.read_bytes())
    with pytest.raises(ConfigError, match=r"^Config key 'trainer.max_epochs' is 1, but ckpt_path hpc was saved in "
                                          r"epoch 2 \(counting from 0\)"):  # the epoch check_epochs_left names
        train(make_cfg(*resume[:-1], "ckpt_path=hpc", "trainer.max_epochs=1"))
    hpc.unlink()
    assert train(make_cfg(*resume, "trainer.max_epochs=4"))["epochs_completed"] == 4  # the same values train on


def test_a_resume_keeps_what_the_mi_callback_measures_with(make_cfg):
    """The MI callback's checkpoint holds its subsample, I(X;Y) and I-series: a resume with another estimator (or
    sample) went on with them, said that the new value applied, and the next epoch's rates followed the change of
    estimator as if I(H;Y) had moved. What it only schedules (value_only_*) may change: the Figure 5 restart."""
    from framework.errors import ConfigError

    mi = ("callbacks=mi_lr", "callbacks.mi_lr.sample_size=40", "callbacks.mi_lr.plot=false", "debug=limit",
          "logger=none", "seed=1")
    first = train(make_cfg(*mi, "trainer.max_epochs=1"))
    resume = (f"ckpt_path={Path(first['output_dir']) / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2")
    for change, shown in (("callbacks.mi_lr.estimator=ksg", "callbacks.mi_lr.estimator=ksg (the checkpoint's: ross)"),
                          ("callbacks.mi_lr.sample_size=50", "callbacks.mi_lr.sample_size=50 (the checkpoint's: 40)"),
                          ("callbacks.mi_lr.reference=ceiling",
                           "callbacks.mi_lr.reference=ceiling (the checkpoint's: estimate)")):
        with pytest.raises(ConfigError, match=re.escape(f"but this start gives {shown}: a resumed run keeps")):
            train(make_cfg(*mi, *resume, change, run="resumed"))
    with pytest.raises(ConfigError, match=re.escape("gives callbacks.mi_lr._target_=null (the checkpoint's: "
                                                    "callbacks.mutual_information.MutualInformationLR)")):
        train(make_cfg(*mi[3:], *resume, run="resumed"))  # the rates it set would train on unmeasured
    continued = train(make_cfg(*mi, *resume, "callbacks.mi_lr.value_only_from=1", "callbacks.mi_lr.value_only_epochs=1",
                               run="resumed"))
    assert continued["epochs_completed"] == 2


def test_a_checkpoint_whose_weights_have_other_shapes_only_is_one_sentence():
    """The same layer names with other sizes (another hidden width) lack and add nothing: the sentence says which
    weights have another shape."""
    from framework.checkpoints import check_weights_fit
    from framework.errors import ConfigError

    saved = torch.nn.Linear(2, 3).state_dict()
    check_weights_fit("x.ckpt", saved, torch.nn.Linear(2, 3))  # fits
    with pytest.raises(ConfigError) as refused:
        check_weights_fit("x.ckpt", saved, torch.nn.Linear(2, 4))
    assert str(refused.value) == ("Config key 'ckpt_path' is 'x.ckpt', whose weights do not fit this model (the "
                                  "checkpoint has another shape for weight and 1 more); give a checkpoint of a run "
                                  "with the same model config.")


def test_a_resume_that_changes_a_value_no_check_keeps_says_so_and_records_it(make_cfg, caplog):
    """A resume may change data.batch_size or a distortion (the later epochs train with them), but results.json then
    recorded only the new values, as if the whole run had had them. Keys of how long and where a run runs (more
    epochs, another folder: ${paths.output_dir} as written, not resolved) are no change."""
    first = train(make_cfg("debug=limit", "logger=none"))
    last = Path(first["output_dir"]) / "checkpoints" / "last.ckpt"
    longer = train(make_cfg("debug=limit", "logger=none", f"ckpt_path={last}", "trainer.max_epochs=3",
                            run="elsewhere"))
    assert "changed_on_resume" not in longer
    with caplog.at_level("WARNING", logger="train"):
        changed = train(make_cfg("debug=limit", "logger=none", "ckpt_path=auto", "trainer.max_epochs=3",
                                 "data.batch_size=32", "+data.distortion.translate=2",
                                 "++trainer.gradient_clip_val=1.0"))  # the Trainer's keys of what trains count too
    assert changed["changed_on_resume"] == {"data.batch_size": [64, 32], "data.distortion.translate": ["absent", 2],
                                            "trainer.gradient_clip_val": ["absent", 1.0]}
    assert read_results(Path(changed["output_dir"]) / "results.json")["changed_on_resume"] == changed[
        "changed_on_resume"]
    assert "Resumed with values other than those its checkpoint's run trained with: data.batch_size 64 -> 32, " \
           "data.distortion.translate absent -> 2, trainer.gradient_clip_val absent -> 1.0; the epochs from here " \
           "train with the new ones" in caplog.text


def test_a_key_below_one_that_may_differ_on_resume_may_differ_too_a_config_group_included():
    """A continued sweep's earlier jobs may differ in how long and where they ran (one job resumed alone on SLURM,
    hydra/launcher=slurm): a config group below such a key is written with a slash, and counts as below it too;
    other keys, and names that only begin like one, do not."""
    from framework.checkpoints import MAY_DIFFER_ON_RESUME, may_differ_on_resume

    assert {"hydra", "trainer", "callbacks.progress_bar"} <= set(MAY_DIFFER_ON_RESUME)
    assert may_differ_on_resume("hydra/launcher") and may_differ_on_resume("trainer.max_epochs")
    assert may_differ_on_resume("trainer") and may_differ_on_resume("callbacks.progress_bar.refresh_rate")
    assert not any(may_differ_on_resume(key) for key in ("data.batch_size", "callbacks.early_stopping.patience",
                                                          "trainers", "model/optimizer",
                                                          "trainer.accumulate_grad_batches", "trainer.precision"))


def test_a_resume_keeps_the_images_it_trains_on_and_passes_checkpoints_older_than_a_kept_key(make_cfg):
    """Another STL-10 fold or training split midway would train on other images than results.json says; a
    checkpoint written before data.folds and data.train_split were kept has no value for them to compare."""
    from framework.checkpoints import KEPT_VALUES, check_resumed_values, kept_values
    from framework.errors import ConfigError

    checkpoint = {KEPT_VALUES: kept_values(make_cfg("data=stl10", "data.folds=0"))}
    for change, shown in (("data.folds=1", "data.folds=1 (the checkpoint's: 0)"),
                          ("data.train_split=train+unlabeled", "data.train_split=train+unlabeled (the checkpoint's: "
                                                               "train)")):
        with pytest.raises(ConfigError, match=re.escape(f"gives {shown}: a resumed run keeps")):
            check_resumed_values("last.ckpt", checkpoint, make_cfg("data=stl10", "data.folds=0", change))
    older = {KEPT_VALUES: {key: value for key, value in checkpoint[KEPT_VALUES].items()
                           if key not in ("data.folds", "data.train_split")}}
    check_resumed_values("last.ckpt", older, make_cfg("data=stl10", "data.folds=1"))  # passes, as before
    for data, change in (("data=digits", "data.test_fraction=0.5"), ("data=digits", "data.stratify=true"),
                         ("data=lunarlander", "data.train_seed=0"), ("data=lunarlander", "data.rollouts=20"),
                         ("data=mnist", "data.part_seed=1")):
        with pytest.raises(ConfigError, match=re.escape(f"gives {change} (the checkpoint's: ")):
            check_resumed_values("last.ckpt", {KEPT_VALUES: kept_values(make_cfg(data))}, make_cfg(data, change))
    with pytest.raises(ConfigError, match=re.escape("gives seed=3 (the checkpoint's: 42)")):
        check_resumed_values("last.ckpt", older, make_cfg("data=stl10", "data.folds=1", "seed=3"))


def test_a_test_only_run_scores_the_images_its_checkpoint_held_out(make_cfg):
    """The digits draw their test split from split_seed and test_fraction: another value in a test-only run would
    test on images the checkpoint trained on. Another dataset holds none of them and is tested."""
    from framework.errors import ConfigError

    last = Path(train(make_cfg("debug=limit", "logger=none"))["best_checkpoint"]).parent / "last.ckpt"
    for change in ("data.split_seed=7", "data.test_fraction=0.3"):
        with pytest.raises(ConfigError, match=re.escape(f"but this test-only run gives {change} (the checkpoint's: ")):
            train(make_cfg("train=false", f"ckpt_path={last}", change, "debug=limit", "logger=none", run="t"))
    other = train(make_cfg("train=false", f"ckpt_path={last}", "data=random", "data.num_train=64", "data.num_test=32",
                           "debug=limit", "logger=none", run="t"))
    assert 0 <= other["metrics"]["test/acc"] <= 1


def test_with_hydra_job_chdir_relative_paths_are_from_the_start_directory(make_cfg, tmp_path):
    """hydra.job.chdir=true runs a job in its output directory; a relative ckpt_path or runs= still means the one
    next to where the command started (it used to say that no such file exists)."""
    checkpoint = Path(train(make_cfg("debug=limit", "logger=none"))["best_checkpoint"]).relative_to(tmp_path)
    tested = run_cli(str(ROOT / "train.py"), "hydra.job.chdir=true", "train=false", f"ckpt_path={checkpoint}",
                     "debug=limit", "logger=none", "hydra.run.dir=tested", cwd=tmp_path)
    assert tested.returncode == 0 and "test/acc = " in tested.stdout, tested.stderr[-2000:]
    tabled = run_cli(str(ROOT / "evaluate.py"), "hydra.job.chdir=true", "runs=run", cwd=tmp_path)
    assert tabled.returncode == 0 and (tmp_path / "run" / "table.md").is_file(), tabled.stderr[-2000:]


def test_a_run_resumed_in_a_copied_directory_keeps_its_best_checkpoint(make_cfg, tmp_path):
    """Lightning forgets the best checkpoint when the checkpoint folder's path changed (the first epoch after the
    resume became the best); a copied run keeps it, and a run resumed from another run's checkpoint says that its
    best is among the epochs since the resume, leaving the other run's files alone."""
    import shutil

    common = ("optimized_metric=val/loss", "optimized_mode=max", "logger=none", "debug=limit")  # best: epoch 0
    first = train(make_cfg(*common, f"paths.output_dir={tmp_path / 'a'}"))
    assert first["best_checkpoint"] == str(tmp_path / "a" / "checkpoints" / "epoch_000.ckpt")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copied = train(make_cfg(*common, "trainer.max_epochs=3", "ckpt_path=auto", f"paths.output_dir={tmp_path / 'b'}"))
    assert copied["best_checkpoint"] == str(tmp_path / "b" / "checkpoints" / "epoch_000.ckpt")
    assert copied["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"])
    files = sorted((tmp_path / "a" / "checkpoints").iterdir())
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with warnings_said() as said:
        elsewhere = train(make_cfg(*common, "trainer.max_epochs=3", f"ckpt_path={last}",
                                   f"paths.output_dir={tmp_path / 'c'}"))
    assert not [message for message in said if "dirpath has changed" in message]  # the log names it
    assert elsewhere["best_checkpoint"] == str(tmp_path / "c" / "checkpoints" / "epoch_002.ckpt")
    assert elsewhere["evaluated_checkpoint"].endswith(
        f"among the epochs since the resume (the earlier ones are in {tmp_path / 'a' / 'checkpoints'})")
    assert sorted((tmp_path / "a" / "checkpoints").iterdir()) == files


def test_results_json_names_a_resume_from_another_run_and_a_tested_checkpoint_by_absolute_path(make_cfg, tmp_path,
                                                                                               monkeypatch, caplog):
    """Without a monitored metric (the classic LeNet-5 runs) the run keeps its last checkpoint, and results.json
    still says where the epochs before the resume are; a checkpoint typed relative to the working directory is
    recorded absolute, so results.json names it from anywhere."""
    unmonitored = ("optimized_metric=null", "callbacks.early_stopping=null", "logger=none", "debug=limit")
    first = train(make_cfg(*unmonitored, run="a"))
    monkeypatch.chdir(tmp_path)
    last = Path(first["best_checkpoint"]).parent / "last.ckpt"
    resumed = train(make_cfg(*unmonitored, "trainer.max_epochs=3", f"ckpt_path={last.relative_to(tmp_path)}", run="c"))
    assert resumed["evaluated_checkpoint"] == f"last checkpoint (resumed from another run's, in {last.parent})"
    assert resumed["epochs_completed"] == 3
    caplog.clear()
    with caplog.at_level("INFO", logger="train"):
        tested = train(make_cfg("train=false", f"ckpt_path={last.relative_to(tmp_path)}", "logger=none", "debug=limit",
                                run="t"))
    assert tested["best_checkpoint"] == str(last) and tested["evaluated_checkpoint"] == f"checkpoint {last}"
    assert "Resuming from" not in caplog.text  # a test-only run continues nothing


def test_a_sweep_over_experiments_says_which_of_their_grids_it_leaves_out(caplog):
    """Hydra's sweeper reads a grid only from the config a sweep starts from: `-m experiment=a,b` ran one job each,
    without a word that a's and b's own grids (hydra.sweeper.params) were left out."""
    from omegaconf import open_dict

    from framework.compose import compose_with_hydra
    from framework.hydra_callbacks import SweptExperimentsGrids, experiment_has_grid

    assert experiment_has_grid("reae_table1_digits") and experiment_has_grid("perceptual_svhn")  # its own, inherited
    assert not experiment_has_grid("lenet5_digits") and not experiment_has_grid("no_such_experiment")
    config = compose_with_hydra(["hydra.job.name=train"])
    for swept, warned in (("reae_table1_digits,lenet5_digits,perceptual_svhn", True),
                          ("lenet5_digits,lenet5_classic_digits", False), ("reae_table1_digits", False)):
        with open_dict(config):
            config.hydra.overrides.task = [f"experiment={swept}"]
        caplog.clear()
        SweptExperimentsGrids().on_multirun_start(config)
        if warned:
            assert ("but not the grids of reae_table1_digits, perceptual_svhn (Hydra reads a grid only from the config "
                    "a sweep starts from); run each of those as a sweep of its own: python train.py -m "
                    "experiment=reae_table1_digits ..." in caplog.text)
        else:
            assert "grids" not in caplog.text


def test_a_sweeps_jobs_are_numbered_with_the_grid_before_the_command_line():
    """Hydra's basic sweeper puts an experiment's grid (hydra.sweeper.params) before the command line's sweeps, so
    the grid's first key varies slowest and the command line's last key fastest; the checks of a continued sweep
    number its jobs the same way, or each job would be compared with another job's folder."""
    from omegaconf import open_dict

    from framework.compose import compose_with_hydra
    from framework.continued_runs import sweep_jobs

    config = compose_with_hydra(["experiment=reae_table1_digits", "hydra.job.name=train"])
    with open_dict(config):
        config.hydra.overrides.task = ["experiment=reae_table1_digits", "trainer.max_epochs=1,2"]
    jobs = sweep_jobs(config)
    assert len(jobs) == 10 * 4 * 2
    assert jobs[0] == ["seed=0", "model.feature_map=reae", "experiment=reae_table1_digits", "trainer.max_epochs=1"]
    assert jobs[1] == ["seed=0", "model.feature_map=reae", "experiment=reae_table1_digits", "trainer.max_epochs=2"]
    assert jobs[2][:2] == ["seed=0", "model.feature_map=pian"] and jobs[8][:2] == ["seed=1", "model.feature_map=reae"]


def test_a_fixed_wandb_id_is_refused_for_a_sweep_of_several_jobs_and_passes_for_one_job():
    """Every job of a sweep with one logger.wandb.id would write into one wandb run; a sweep of one job (-m to
    continue one run, or to run on SLURM) writes into that run alone."""
    from omegaconf import open_dict

    from framework.compose import compose_with_hydra
    from framework.errors import ConfigError
    from framework.hydra_callbacks import check_one_wandb_run_per_job

    config = compose_with_hydra(["logger=wandb", "logger.wandb.id=fixedid", "hydra.job.name=train"])
    check_one_wandb_run_per_job(config)  # one job
    with open_dict(config):
        config.hydra.overrides.task = [*config.hydra.overrides.task, "seed=1,2"]
    with pytest.raises(ConfigError, match=re.escape(
            "Config key 'logger.wandb.id' is 'fixedid' for every job of this sweep, whose jobs would then all write "
            "into that one wandb run; leave it null (each job's run directory keeps an id of its own), or sweep it "
            "with one id per job.")):
        check_one_wandb_run_per_job(config)


def test_a_resumed_run_s_wall_time_counts_its_earlier_starts(make_cfg, monkeypatch):
    """results.json's wall_seconds (the MI study's "wall s" column) counted only the last start of a resumed run. The
    framework's clock is scripted (it stands still), so what is checked is how the starts add up, not a machine's
    speed."""
    import types

    from framework import checkpoints, training
    from framework.checkpoints import WALL_SECONDS

    still = types.SimpleNamespace(perf_counter=lambda: 50.0)
    monkeypatch.setattr(checkpoints, "time", still)
    monkeypatch.setattr(training, "time", still)
    common = ("debug=limit", "logger=none", "seed=2")
    first = train(make_cfg(*common, "trainer.max_epochs=1"))
    last = Path(first["output_dir"]) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved[WALL_SECONDS] == first["wall_seconds"] == 0.0
    saved[WALL_SECONDS] = 1000.0  # as if the first start had taken that long
    torch.save(saved, last)
    resumed = train(make_cfg(*common, "trainer.max_epochs=2", "ckpt_path=auto"))
    assert resumed["wall_seconds"] == torch.load(last, weights_only=True)[WALL_SECONDS] == 1000.0


def test_a_job_requeued_by_lightnings_slurm_signal_continues_as_ckpt_path_auto(make_cfg, tmp_path, monkeypatch,
                                                                               caplog):
    """Lightning's SIGUSR1 handler saves hpc_ckpt_N.ckpt within a training step and requeues the job, which Lightning
    then resumes from that file, past the continuation's checks and set-asides: the run ended with other metrics than
    an uninterrupted one, and metrics.csv held the epochs after the file twice. Here the file is an older epoch's."""
    import csv
    import shutil

    common = ("debug=limit", "logger=csv", "seed=3", "trainer.max_epochs=3")
    uninterrupted = train(make_cfg(*common, run="uninterrupted"))
    first = train(make_cfg(*common[:-1], "trainer.max_epochs=2", "callbacks.model_checkpoint.save_top_k=-1"))
    folder = Path(first["output_dir"])
    shutil.copy(folder / "checkpoints" / "epoch_000.ckpt", folder / "hpc_ckpt_1.ckpt")
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "study", "SLURM_JOB_ID": "7", "SLURM_PROCID": "0",
                        "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():  # the requeued job's
        monkeypatch.setenv(name, value)
    with caplog.at_level("INFO"):
        requeued = train(make_cfg(*common, "callbacks.model_checkpoint.save_top_k=-1"))
    assert f"{folder / 'hpc_ckpt_1.ckpt'} is Lightning's SLURM requeue checkpoint" in caplog.text
    assert requeued["config"]["ckpt_path"] == "auto"
    assert requeued["metrics"] == uninterrupted["metrics"]
    with open(folder / "csv" / "metrics.csv") as file:
        validated = [row["epoch"] for row in csv.DictReader(file) if row.get("val/acc")]
    assert validated == ["0", "1", "2"]


def test_the_tasks_of_one_srun_step_name_one_run_directory(monkeypatch):
    """srun --ntasks-per-node=2 python train.py trainer=ddp ...: each task read its own clock for hydra.run.dir, and
    every rank but 0 left a folder holding only .hydra/ and an empty train.log."""
    from framework.compose import compose_with_hydra

    alone = compose_with_hydra([]).hydra.run.dir
    assert re.fullmatch(r"logs/train/runs/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}", alone), alone
    for name, value in {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}.items():
        monkeypatch.setenv(name, value)
    tasks = [compose_with_hydra([]).hydra.run.dir for _ in range(2)]  # each task composes its own config
    assert tasks[0] == tasks[1] and tasks[0].endswith("_slurm-77.0"), tasks


def test_the_check_for_an_earlier_run_gives_no_srun_hint_on_a_login_node(tmp_path, monkeypatch):
    """A sweep submitted again into folders holding Lightning's hpc_ckpt_*.ckpt, on a machine with srun: Lightning's
    hint to prepend srun to the command came before the sentence; submitting commands run outside srun."""
    from framework.checkpoints import earlier_run_refusal
    from framework.stopping import no_notices_meant_for_others

    monkeypatch.setenv("PATH", path_with_stand_in(tmp_path, "srun"))
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "hpc_ckpt_1.ckpt").write_bytes(b"")
    (run / "results.json").write_text("{}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        no_notices_meant_for_others()  # as run_entry_point and train.py's main install it
        refusal = earlier_run_refusal(str(run), None, True, multirun=True)
    assert refusal is not None and "holds an earlier run" in str(refusal)


def test_lightnings_loader_builds_a_leafspec_that_torch_deprecates_and_no_run_says_so():
    """Lightning 2.6's CombinedLoader, in every fit, validation and test, builds a LeafSpec, which torch 2.15
    deprecates: advice to Lightning's authors, which every run printed once."""
    from lightning.pytorch.utilities.combined_loader import CombinedLoader

    from framework.stopping import no_notices_meant_for_others

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FutureWarning, match="LeafSpec"):  # the pinned libraries still warn
            CombinedLoader([range(3)])
        no_notices_meant_for_others()
        assert len(CombinedLoader([range(3)]).flattened) == 1


def test_a_run_without_a_validation_split_validates_nothing_and_says_nothing_of_an_empty_loader(make_cfg, caplog):
    """data.val_fraction=0 (LeCun's protocol, the MI study): Lightning warned of the empty validation loader ("make
    sure this was your intention") and the tested checkpoint was loaded twice, once to validate it on nothing."""
    from framework.training import train

    with warnings_said() as said, caplog.at_level("INFO"):
        results = train(make_cfg("experiment=lenet5_classic_mnist", "debug=smoke", "logger=none"))
    assert not [message for message in said if "Total length of" in message]
    assert caplog.text.count("Restoring states from the checkpoint path") == 1  # for the test
    assert "data.val_fraction=0: no validation split, so the run validates nothing" in caplog.text
    assert "test/acc" in results["metrics"] and not [key for key in results["metrics"] if key.startswith("val/")]


@pytest.mark.parametrize("environment", [{}, {"RANK": "2"}, {"LOCAL_RANK": "1"}, {"SLURM_PROCID": "3"},
                                         {"LOCAL_RANK": "1", "SLURM_PROCID": "3"}, {"JSM_NAMESPACE_RANK": "1"}])
def test_the_rank_read_before_lightning_is_imported_is_the_one_lightning_reads(environment, monkeypatch):
    """A sweep's launching process imports no Lightning (tests/test_runs.py), so the Hydra callbacks read the rank from
    the environment, as Lightning does when it is imported (its rank_zero_only.rank)."""
    import sys

    from lightning.fabric.utilities import rank_zero

    from framework.hydra_callbacks import lightning_rank

    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delitem(sys.modules, "lightning.fabric.utilities.rank_zero")
    assert lightning_rank() == (rank_zero._get_rank() or 0)


def test_a_finished_run_is_compared_without_how_its_wandb_run_is_shown():
    """A sweep continued with ckpt_path=auto keeps its finished jobs; when the wandb runs' names changed (a new
    version of the framework names them otherwise), every finished job trained again."""
    from framework.training import compared

    def config(name: str, project: str = "seedframe", ckpt_path: str | None = "auto") -> dict:
        wandb = {"_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "name": name, "group": "sweep",
                 "project": project}
        return {"seed": 1, "ckpt_path": ckpt_path, "logger": {"wandb": wandb, "csv": {"name": "csv"}}}

    earlier = config("default callbacks.progress_bar.refresh_rate=0,data.batch_size=64,logger=wandb,seed=1")
    assert compared(earlier) == compared(config("default seed=1", ckpt_path=None))
    assert compared(earlier) != compared(config("default seed=1", project="another"))
    csv_named = lambda name: {"seed": 1, "logger": {"csv": {"name": name}}}  # another logger's name is its folder's
    assert compared(csv_named("a")) != compared(csv_named("b"))


@pytest.mark.slow
def test_a_sweep_over_a_trainer_key_of_what_trains_continued_with_fewer_values_stops_before_any_job(tmp_path):
    """A sweep over accumulate_grad_batches=1,2 continued with 2 alone: job 0 continued the run of 1 with 2, and its
    results.json said 2 without a word (every Trainer key was one of how long and where a run runs)."""
    sweep = tmp_path / "sweep"
    first = run_cli("train.py", "-m", "seed=1", "++trainer.accumulate_grad_batches=1,2", "debug=smoke",
                    f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli("train.py", "-m", "seed=1", "++trainer.accumulate_grad_batches=2", "debug=smoke", "ckpt_path=auto",
                    f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2, again.stderr[-2000:]
    assert again.stderr.strip().splitlines()[-1].startswith(
        f"Config error: Job 0 of this sweep gives trainer.accumulate_grad_batches=2, but its folder {sweep}/0 holds "
        f"the run of trainer.accumulate_grad_batches=1,"), again.stderr[-2000:]


@pytest.mark.slow
def test_a_sweep_named_by_its_overrides_continued_with_ckpt_path_stops_rather_than_start_again(tmp_path):
    """hydra.sweep.subdir=${hydra.job.override_dirname} names the folders by every override, ckpt_path=auto among
    them: the continuation trained every job again in new folders, and its evaluate command then counted each seed
    twice. Excluding ckpt_path from the names continues the jobs in their folders."""
    sweep, named = tmp_path / "sweep", "hydra.sweep.subdir=${hydra.job.override_dirname}"
    common = ("-m", "seed=1,2", "debug=smoke", named, f"hydra.sweep.dir={sweep}")
    assert run_cli("train.py", *common).returncode == 0
    folders = sorted(sweep.iterdir())
    again = run_cli("train.py", *common, "ckpt_path=auto")
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1] == (
        f"Config error: Config key 'hydra.sweep.subdir' is '${{hydra.job.override_dirname}}', which names each job's "
        f"folder by its overrides, ckpt_path=auto among them, so this sweep would start every job again in new folders "
        f"beside the runs in {sweep}; give hydra.job.config.override_dirname.exclude_keys=[ckpt_path] too, which names "
        f"the folders as the sweep's first start did."), again.stderr[-2000:]
    kept = run_cli("train.py", *common, "ckpt_path=auto", "hydra.job.config.override_dirname.exclude_keys=[ckpt_path]")
    assert kept.returncode == 0 and sorted(sweep.iterdir()) == folders, kept.stderr[-2000:]


def test_a_run_of_a_datamodule_of_ones_own_continued_within_an_epoch_says_it_will_not_end_as_uninterrupted(
        make_cfg, tmp_path, caplog):
    """The framework's DataModules continue an epoch with an uninterrupted run's batches; a plain DataLoader of one's
    own does not, and the README's "ends with exactly the metrics of an uninterrupted one" went unqualified (an
    audit's resumed run: test/acc 0.98 against 0.92)."""
    import lightning as L

    from datamodules.digits import DigitsDataModule
    from framework.training import continue_from

    within = {"epoch": 1, "global_step": 20,
              "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 1, "completed": 1}}}}}
    at_the_end = {**within, "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 2, "completed": 1}}}}}
    cfg, given = make_cfg("logger=none"), str(tmp_path / "elsewhere" / "last.ckpt")
    with caplog.at_level("WARNING", logger="train"):
        continue_from(cfg, given, at_the_end, L.LightningDataModule())
        continue_from(cfg, given, within, DigitsDataModule())
        assert "not one of the framework's DataModules" not in caplog.text
        continue_from(cfg, given, within, L.LightningDataModule())
    assert (f"{given} was saved within an epoch, and LightningDataModule is not one of the framework's DataModules, "
            f"whose training loaders continue an epoch with the batches an uninterrupted run has") in caplog.text


def test_a_run_continued_from_another_runs_checkpoint_leaves_its_later_ones_and_from_its_own_sets_them_aside(
        make_cfg, tmp_path):
    """Only a run's own checkpoints saved after the one it continues from are saved again (and so set aside)."""
    from framework.training import continue_from

    saved = {"epoch": 1, "global_step": 20,
             "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 2, "completed": 1}}}}}
    cfg = make_cfg("logger=none")
    for folder in (tmp_path / "elsewhere" / "checkpoints", Path(cfg.paths.output_dir) / "checkpoints"):
        folder.mkdir(parents=True)
        torch.save({**saved, "global_step": 30}, folder / "epoch_002.ckpt")
        continue_from(cfg, str(folder / "epoch_001.ckpt"), saved, None)
    assert (tmp_path / "elsewhere" / "checkpoints" / "epoch_002.ckpt").is_file()
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "superseded-1" / "epoch_002.ckpt").is_file()


def test_a_resume_of_ones_own_module_with_changed_values_says_its_optimizer_keeps_the_checkpoints(make_cfg, caplog):
    """A module of one's own that builds its optimizer from its own key (model.lr): the resume said the epochs from
    here train with the new lr, but Lightning restored the checkpoint's optimizer, whose lr trained on."""
    from omegaconf import open_dict

    from framework.checkpoints import TRAINED_WITH, trained_with
    from framework.training import continue_from

    cfg = make_cfg("logger=none")
    saved = {"epoch": 1, "global_step": 20, TRAINED_WITH: trained_with(cfg) | {"data.batch_size": 32},
             "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 2, "completed": 1}}}}}
    caveat = "but a value your module builds its optimizer or scheduler from stays the checkpoint's"
    with caplog.at_level("WARNING", logger="train"):
        continue_from(cfg, "elsewhere/last.ckpt", saved, None)
        assert "data.batch_size 32 -> 64" in caplog.text and caveat not in caplog.text
        with open_dict(cfg):
            cfg.model._target_ = "mynets.MyLit"
        continue_from(cfg, "elsewhere/last.ckpt", saved, None)
    assert caveat in caplog.text


def test_a_module_of_ones_own_without_configure_optimizers_is_one_sentence(make_cfg):
    """Lightning refuses it at the fit's start with its MisconfigurationException and a traceback."""
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^Config key 'model' is tests\.own_modules\.WithoutOptimizers, which "
                                          r"defines no configure_optimizers\(\), and Lightning trains only a "
                                          r"LightningModule that does; define it, or give your network as model\.net"):
        train(make_cfg("~model", "+model._target_=tests.own_modules.WithoutOptimizers", "logger=none",
                       "trainer.max_epochs=1", "optimized_metric=null", "callbacks=none"))


def test_a_datamodule_of_ones_own_that_cannot_open_its_folder_is_one_sentence(make_cfg, tmp_path, monkeypatch):
    """torchvision's ImageFolder on a folder that does not exist: FileNotFoundError with a traceback."""
    from framework.errors import DataError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"^FromAFolder cannot open imagez \(No such file or directory\), read from "
                                        rf"the working directory {tmp_path} where relative; give its data key a path "
                                        rf"that exists"):
        train(make_cfg("~data", "+data._target_=tests.own_modules.FromAFolder", "+data.root=imagez", "logger=none",
                       "trainer.max_epochs=1"))


def test_a_datamodule_of_ones_own_that_counts_other_classes_than_the_model_is_one_sentence(make_cfg):
    """Its num_classes was compared only where it also said task = "classification": a 10-way classifier trained on
    its 3 classes without a word."""
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the model has 10 classes, the data 3 \(set model\.num_classes=3"):
        train(make_cfg("~data", "+data._target_=tests.own_modules.CountsItsClasses", "logger=none"))


def test_a_datamodule_of_ones_own_without_a_val_fraction_is_validated(make_cfg):
    """data.val_fraction=0 turns validation off; a DataModule that has no val_fraction at all is not thereby one
    without a validation split."""
    results = train(make_cfg("~data", "+data._target_=tests.own_modules.CountsItsClasses", "model.num_classes=3",
                             "model.net.num_classes=3", "logger=none", "trainer.max_epochs=1"))
    assert {"val/acc", "val/loss"} <= set(results["metrics"])


@pytest.mark.parametrize("module", ["LogsUnderscored", "LogsAfterTheSanityCheck"])
def test_the_log_shows_the_validation_and_test_metrics_of_ones_own_module(make_cfg, caplog, module):
    """A module that logs val_acc and test_acc: the log said "none were logged", though results.json held both. One
    that logs nothing in the sanity check is not refused for it."""
    with caplog.at_level("INFO", logger="train"):
        results = train(make_cfg("~model", f"+model._target_=tests.own_modules.{module}", "logger=none",
                                 "optimized_metric=val_acc", "trainer.max_epochs=1"))
    shown = f"test_acc = {results['metrics']['test_acc']:.4f}, val_acc = {results['metrics']['val_acc']:.4f}"
    assert f"val/ and test/ metrics of the best checkpoint by val_acc (max): {shown}" in caplog.text


def test_a_studys_sweep_runs_every_setting_of_one_seed_before_the_next_seed(make_cfg):
    """A study cut short (a killed sweep, a SLURM time limit) holds complete repeats: Table 2 pairs a seed's four
    feature maps, a figure's curve and a perceptual table need every setting of a seed. Hydra's sweeper varies its
    grid's first key slowest (its order survives a command line that sets the key again); here the jobs of every
    experiment whose own grid (hydra.sweeper.params) repeats seeds, as the sweeper orders them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    checked = []
    for experiment in EXPERIMENTS:
        make_cfg(f"experiment={experiment}", run=experiment)
        params = HydraConfig.get().sweeper.params or {}
        if "seed" not in params:
            continue
        overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
        jobs = BasicSweeper.split_arguments(overrides, max_batch_size=None)[0]
        seeds = [next(word for word in job if word.startswith("seed=")) for job in jobs]
        settings = [sorted(word for word in job if not word.startswith("seed=")) for job in jobs]
        per_seed = len(jobs) // len(set(seeds))
        for start in range(0, len(jobs), per_seed):
            assert len(set(seeds[start : start + per_seed])) == 1, (experiment, seeds)
            assert settings[start : start + per_seed] == settings[:per_seed], experiment
        checked.append(experiment)
    assert {"reae_table1_mnist", "reae_figure2_digits", "reae_figure3_mnist", "perceptual_lunarlander"} <= set(checked)


@pytest.mark.parametrize("grid", ['++hydra.sweeper.params={seed:"1,2"}', '+hydra.sweeper.params.seed="1,2"'])
def test_a_grid_given_on_the_command_line_is_swept(grid):
    """Hydra's basic sweeper has ``params: null``, so a grid typed as the README shows an experiment's
    (hydra.sweeper.params) ended in an AttributeError or AssertionError traceback; conf/hydra/default.yaml has {}."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from framework.compose import compose_with_hydra
    from framework.continued_runs import sweep_overrides

    config = compose_with_hydra([grid, "hydra.mode=MULTIRUN"])
    assert BasicSweeper.split_arguments(sweep_overrides(config), max_batch_size=None)[0] == [["seed=1"], ["seed=2"]]


def test_the_earlier_run_sentence_offers_only_what_the_folder_holds(tmp_path):
    """Without last.ckpt there is no 'continue that run with ckpt_path=auto' to offer, nor a last.ckpt to test; three
    files are listed whole; a sweep is told of hydra.sweep.dir. The run's own checkpoints (and ``hpc``) continue it."""
    from framework.checkpoints import earlier_run_refusal

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "csv").mkdir()
    for name in ("checkpoints/epoch_000.ckpt", "results.json", "csv/metrics.csv"):
        (tmp_path / name).write_text("")
    earlier = f"The output directory {tmp_path} holds an earlier run (checkpoints/epoch_000.ckpt, results.json, " \
              f"csv/metrics.csv)"
    assert str(earlier_run_refusal(tmp_path, None)) == (
        f"{earlier}, and this run starts fresh, so it would mix its metrics and checkpoints with that run's; leave "
        f"hydra.run.dir out (each run gets a new folder), or delete the earlier run's files.")
    assert "; give another hydra.sweep.dir, or delete" in str(earlier_run_refusal(tmp_path, None, multirun=True))
    assert str(earlier_run_refusal(tmp_path, "last", trained=False)) == (
        f"{earlier}, whose results.json this test-only run (train=false) would replace; give ckpt_path=<one of its "
        f"checkpoints> and leave hydra.run.dir out (each run gets a new folder).")
    for own in ("hpc", "auto", str(tmp_path / "checkpoints" / "epoch_000.ckpt")):
        assert earlier_run_refusal(tmp_path, own) is None
    (tmp_path / "other.ckpt").write_text("")
    assert "resumes from another run's checkpoint" in str(earlier_run_refusal(tmp_path, str(tmp_path / "other.ckpt")))
    (tmp_path / "checkpoints" / "epoch_000.ckpt").unlink()
    assert "but no checkpoint in checkpoints/ for ckpt_path=last" in str(earlier_run_refusal(tmp_path, "last"))
    (tmp_path / "results.json").unlink()
    assert earlier_run_refusal(tmp_path, "auto") is None  # killed before its first checkpoint: it starts again


def test_a_checkpoint_torch_cannot_load_or_that_holds_no_state_dict_is_one_sentence(tmp_path):
    """Whatever torch.load raises (the weights-only loader refuses a pickled object with an UnpicklingError)."""
    import argparse

    from framework.checkpoints import check_checkpoint, read_checkpoint

    torch.save({"args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.ckpt")
    unreadable = f"Checkpoint {tmp_path / 'pickled.ckpt'} cannot be read by torch.load (UnpicklingError): it is "
    with pytest.raises(DataError, match=re.escape(f"{unreadable}truncated or not a checkpoint")):
        read_checkpoint(tmp_path / "pickled.ckpt", weights_only=True)
    torch.save({"global_step": 3}, tmp_path / "plain.ckpt")
    with pytest.raises(DataError, match=re.escape(f"Checkpoint {tmp_path / 'plain.ckpt'} is not a Lightning checkpoint "
                                                  f"(it holds no state_dict)")):
        check_checkpoint(str(tmp_path / "plain.ckpt"))
    assert check_checkpoint(str(tmp_path / "gone.ckpt")) is None and check_checkpoint(None) is None


def test_ckpt_path_auto_needs_a_checkpoint_callback_that_saves_into_the_runs_folder():
    """A ModelCheckpoint without a dirpath saves into its logger's folder, where ckpt_path=auto does not look."""
    from framework.checkpoints import continuation_without_checkpoints_refusal

    def config(dirpath, **top) -> dict:
        return OmegaConf.create({"train": True, "ckpt_path": "auto", "trainer": {}, "paths": {"output_dir": "/runs/a"},
                                 "callbacks": {"model_checkpoint": {
                                     "_target_": "framework.checkpoints.RunModelCheckpoint", "dirpath": dirpath}},
                                 **top})

    assert continuation_without_checkpoints_refusal(config("/runs/a/checkpoints")) is None
    assert "but it has no checkpoint callback there" in str(continuation_without_checkpoints_refusal(config(None)))
    assert continuation_without_checkpoints_refusal(config(None, train=False)) is None  # tested: checkpoint_to_test
    assert continuation_without_checkpoints_refusal(config(None, ckpt_path=None)) is None


@pytest.mark.parametrize("folder", ["checkpoints", "csv", "tensorboard", "wandb"])
def test_a_file_in_place_of_any_folder_a_run_writes_into_is_refused_before_it_trains(tmp_path, folder):
    from framework.checkpoints import unwritable_run_folder_refusal

    assert unwritable_run_folder_refusal(tmp_path) is None
    (tmp_path / folder).write_text("")
    assert str(unwritable_run_folder_refusal(tmp_path)).startswith(
        f"The output directory's folder {tmp_path / folder} cannot be written into (it is a file, not a folder)")


def test_fewer_epochs_than_the_checkpoint_trained_are_refused_and_max_epochs_minus_one_is_not():
    from framework.checkpoints import check_epochs_left
    from framework.errors import ConfigError

    cfg = lambda max_epochs: OmegaConf.create({"trainer": {"max_epochs": max_epochs}})
    check_epochs_left("x.ckpt", {"epoch": 1}, cfg(2))
    check_epochs_left("x.ckpt", {"epoch": 5}, cfg(-1))  # no limit of epochs (max_steps ends the run)
    with pytest.raises(ConfigError, match=re.escape("'trainer.max_epochs' is 2, but ckpt_path x.ckpt was saved in "
                                                    "epoch 2 (counting from 0)")):
        check_epochs_left("x.ckpt", {"epoch": 2}, cfg(2))


def test_the_weights_of_a_compiled_network_fit_the_network_uncompiled_and_the_other_way_round():
    """torch.compile's wrapper adds _orig_mod. to every name."""
    from framework.checkpoints import check_weights_fit

    compiled = {f"_orig_mod.{name}": value for name, value in torch.nn.Linear(2, 3).state_dict().items()}
    check_weights_fit("x.ckpt", compiled, torch.nn.Linear(2, 3))
    check_weights_fit("x.ckpt", torch.nn.Linear(2, 3).state_dict(), torch.compile(torch.nn.Linear(2, 3)))


def test_the_weights_check_of_a_network_with_lazy_layers_is_a_sentence_not_the_traceback_of_their_shape():
    """An uninitialized parameter has no shape to read (torch raises); another network's weights are still named."""
    from framework.checkpoints import check_weights_fit
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match="has other.weight, which the model lacks"):
        check_weights_fit("x.ckpt", {"other.weight": torch.zeros(3, 2)}, torch.nn.Sequential(torch.nn.LazyLinear(3)))
    lazy, trained = (torch.nn.Sequential(first, torch.nn.Linear(3, 2)) for first in (torch.nn.LazyLinear(3),
                                                                                      torch.nn.Linear(4, 3)))
    check_weights_fit("x.ckpt", trained.state_dict(), lazy)  # the same network: its lazy layer's shape unknown
    with pytest.raises(ConfigError, match=r"\(the checkpoint has another shape for 1\.weight and 1 more\)"):
        check_weights_fit("x.ckpt", {**trained.state_dict(), "1.weight": torch.zeros(5, 3), "1.bias": torch.zeros(5)},
                          lazy)


def test_a_resume_keeps_the_schedulers_values_which_its_checkpoint_restores(make_cfg):
    from framework.checkpoints import KEPT_VALUES, check_resumed_values, kept_values
    from framework.errors import ConfigError

    checkpoint = {KEPT_VALUES: kept_values(make_cfg("model=lenet5_classic_sdlm"))}
    check_resumed_values("last.ckpt", checkpoint, make_cfg("model=lenet5_classic_sdlm", "data.batch_size=32"))
    with pytest.raises(ConfigError, match=re.escape("gives model.scheduler.epochs=[2, 3, 3, 5] (the checkpoint's: "
                                                    "[2, 3, 3, 4]): a resumed run keeps")):
        check_resumed_values("last.ckpt", checkpoint, make_cfg("model=lenet5_classic_sdlm",
                                                               "model.scheduler.epochs=[2,3,3,5]"))


def test_a_resume_with_other_loader_workers_or_another_data_folder_changes_nothing_that_trains(make_cfg):
    from framework.checkpoints import TRAINED_WITH, changed_on_resume, flattened, trained_with

    checkpoint = {TRAINED_WITH: trained_with(make_cfg("data.num_workers=0"))}
    assert changed_on_resume(checkpoint, make_cfg("data.num_workers=2", "data.data_dir=/elsewhere")) == {}
    assert changed_on_resume(checkpoint, make_cfg("data.batch_size=32")) == {"data.batch_size": [64, 32]}
    assert flattened({"a": {}, "b": {"c": 1, "d": [1, {}]}}) == {"a": {}, "b.c": 1, "b.d": [1, {}]}  # {}: a leaf


def test_a_checkpoint_restores_the_random_states_it_was_saved_with():
    import random

    import numpy as np

    from framework.checkpoints import RandomStatesInCheckpoints

    states, checkpoint = RandomStatesInCheckpoints(), {}
    states.on_save_checkpoint(None, None, checkpoint)
    drawn = (torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random())
    states.on_load_checkpoint(None, None, checkpoint)
    assert (torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random()) == drawn
    states.on_load_checkpoint(None, None, {})  # a checkpoint saved before the states were: nothing restored


def test_early_stopping_keeps_a_run_it_stopped_stopped_and_refuses_an_unlogged_metric_only_when_strict():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

    from framework.checkpoints import RunEarlyStopping
    from framework.errors import ConfigError

    trainer = SimpleNamespace(should_stop=False)
    stopping = RunEarlyStopping(monitor="val/loss", check_on_train_epoch_end=True)
    stopping.on_train_start(trainer, None)
    assert not trainer.should_stop
    stopping.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
    stopping.on_train_start(trainer, None)
    assert trainer.should_stop
    with pytest.raises(ConfigError, match="has logged no such metric by the training epoch's end"):
        stopping._validate_condition_metric({"train/loss": 1.0})
    loose = RunEarlyStopping(monitor="val/loss", check_on_train_epoch_end=True, strict=False)
    assert loose._validate_condition_metric({"train/loss": 1.0}) is False


def test_loading_checkpoint_turns_only_its_own_errors_into_sentences():
    """Lightning's refusals of ckpt_path=hpc and of another network's weights; the same errors elsewhere (a state dict
    loaded by the module itself, with no ckpt_path) stay bugs."""
    from framework.checkpoints import loading_checkpoint
    from framework.errors import ConfigError

    misfit = ("Error(s) in loading state_dict for Lit:\n\tMissing key(s) in state_dict: \"net.a.weight\", "
              "\"net.a.bias\". \n\tsize mismatch for net.b.weight: copying a param with shape [3, 2] from checkpoint")
    with pytest.raises(ConfigError) as refused, loading_checkpoint("x.ckpt"):
        raise RuntimeError(misfit)
    assert "(the checkpoint lacks net.a.weight and 1 more; has another shape for net.b.weight)" in str(refused.value)
    with pytest.raises(RuntimeError, match=r"^Error\(s\) in loading"), loading_checkpoint(None):
        raise RuntimeError(misfit)
    with pytest.raises(ConfigError, match="'ckpt_path' is 'hpc', but there is no HPC checkpoint"), \
            loading_checkpoint("hpc"):
        raise ValueError("`.fit(ckpt_path=\"hpc\")` is set but no HPC checkpoint was found.")
    with pytest.raises(ValueError, match="no HPC checkpoint was found"), loading_checkpoint("x.ckpt"):
        raise ValueError("no HPC checkpoint was found")


def test_a_copied_run_s_best_checkpoints_are_found_in_its_folder_and_another_run_s_are_left_where_they_are(tmp_path):
    from framework.checkpoints import RunModelCheckpoint

    saved = {"dirpath": "/old/checkpoints", "best_model_path": "/old/checkpoints/epoch_001.ckpt",
             "best_model_score": torch.tensor(0.5), "best_k_models": {"/old/checkpoints/epoch_001.ckpt": 0.5},
             "kth_best_model_path": "/old/checkpoints/epoch_001.ckpt", "last_model_path": "/old/checkpoints/last.ckpt",
             "monitor": "val/loss"}
    (tmp_path / "epoch_001.ckpt").write_bytes(b"")
    elsewhere = RunModelCheckpoint(dirpath=tmp_path, monitor="val/loss")
    elsewhere.load_state_dict(saved)  # last.ckpt is not here: another run's folder
    assert elsewhere.resumed_elsewhere == "/old/checkpoints" and elsewhere.best_model_path != str(tmp_path /
                                                                                                  "epoch_001.ckpt")
    (tmp_path / "last.ckpt").write_bytes(b"")
    copied = RunModelCheckpoint(dirpath=tmp_path, monitor="val/loss")
    copied.load_state_dict(saved)
    assert copied.resumed_elsewhere is None and copied.best_model_path == str(tmp_path / "epoch_001.ckpt")
    assert copied.best_k_models == {str(tmp_path / "epoch_001.ckpt"): 0.5}


def test_only_a_checkpoint_folder_outside_the_runs_own_is_warned_of_as_not_empty(tmp_path):
    """The run's own checkpoints/ holds what earlier_run_refusal let through: the checkpoints of the run it continues.
    Another folder may hold another run's."""
    from framework.checkpoints import RunModelCheckpoint

    trainer = L.Trainer(default_root_dir=tmp_path / "run", logger=False, enable_progress_bar=False)
    warned = {}
    for folder in (tmp_path / "run" / "checkpoints", tmp_path / "shared"):
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_bytes(b"")
        with warnings_said() as warned[folder.name]:
            RunModelCheckpoint(dirpath=folder).setup(trainer, None, "fit")
    assert warned == {"checkpoints": [], "shared": [f"Checkpoint directory {tmp_path / 'shared'} exists and is not "
                                                    f"empty."]}


def test_a_checkpoint_at_an_epochs_end_keeps_its_training_metrics_and_the_row_lightning_logs_next():
    """Not the validation metrics, which are scored again; the row is logged at the step before the save's."""
    from types import SimpleNamespace

    from framework.checkpoints import EPOCH_END_ROW, KeptValuesInCheckpoints

    kept = KeptValuesInCheckpoints(OmegaConf.create({"seed": 1, "trainer": {"max_epochs": 2}}))
    trainer = SimpleNamespace(loggers=[], is_global_zero=True, current_epoch=1,
                              callback_metrics={"train/loss": torch.tensor(0.5), "val/acc": torch.tensor(0.75)},
                              _logger_connector=SimpleNamespace(metrics={"log": {"train/loss": torch.tensor(0.5)}}))
    checkpoint = {"global_step": 36, "loops": {"fit_loop": {
        "epoch_progress": {"current": {"processed": 2, "completed": 1}},
        "epoch_loop.state_dict": {"_batches_that_stepped": 36}}}}
    kept.on_save_checkpoint(trainer, None, checkpoint)
    assert checkpoint[TRAINING_METRICS] == {"train/loss": 0.5}
    assert checkpoint[EPOCH_END_ROW] == {"train/loss": 0.5, "epoch": 1, "step": 35}


def test_lightnings_refusal_of_a_logged_monitored_metric_is_not_taken_for_an_unlogged_one(monkeypatch):
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint

    from framework.checkpoints import RunModelCheckpoint
    from framework.errors import ConfigError

    def refused(self, trainer, candidates):
        raise MisconfigurationException("Lightning's own words")

    monkeypatch.setattr(ModelCheckpoint, "_save_topk_checkpoint", refused)
    checkpoints = RunModelCheckpoint(monitor="train/loss", mode="min")
    with pytest.raises(MisconfigurationException, match="Lightning's own words"):
        checkpoints._save_topk_checkpoint(None, {"train/loss": torch.tensor(1.0)})
    with pytest.raises(ConfigError, match="is 'train/loss' .* but the run has logged no such metric by the time"):
        checkpoints._save_topk_checkpoint(None, {"train/acc": torch.tensor(1.0)})


def test_a_checkpoint_saved_before_the_trainers_values_were_kept_reports_none_of_them_changed(make_cfg):
    from framework.checkpoints import TRAINED_WITH, changed_on_resume, trained_with

    older = {key: value for key, value in trained_with(make_cfg()).items() if not key.startswith("trainer.")}
    assert changed_on_resume({TRAINED_WITH: older}, make_cfg("++trainer.gradient_clip_val=1.0")) == {}
    assert changed_on_resume({TRAINED_WITH: trained_with(make_cfg())}, make_cfg("++trainer.gradient_clip_val=1.0")) \
        == {"trainer.gradient_clip_val": ["absent", 1.0]}


def test_epoch_means_weigh_each_batch_by_its_samples_sum_over_the_ranks_and_start_again_each_epoch():
    """A smaller last batch counts less, a value only some steps add is the mean over those steps' samples, the ranks'
    sums are reduced before dividing, and an epoch's sums do not reach the next epoch's means."""
    from types import SimpleNamespace

    from lightning_modules.stage_steps import StageSteps

    class Steps(StageSteps):
        def __init__(self):
            self.logged = {}
            reduce = lambda tensor, reduce_op: tensor * 2  # the sums of two ranks that saw the same batches
            self.trainer = SimpleNamespace(strategy=SimpleNamespace(reduce=reduce), world_size=1)

        def log(self, name, value, prog_bar):
            self.logged[name] = (float(value), prog_bar)

    steps = Steps()
    steps.add_to_epoch_means("val", {"loss": torch.tensor(1.0), "acc": torch.tensor(0.5), "hidden": torch.tensor(0.25)},
                             3)
    steps.add_to_epoch_means("val", {"loss": torch.tensor(4.0), "acc": torch.tensor(1.0)}, 1)
    assert steps.log_epoch_means("val", prog_bar=("loss",), unlogged=("hidden",)) == {"hidden": 0.25}
    assert steps.logged == {"val/loss": (1.75, True), "val/acc": (0.625, False)}
    assert steps.log_epoch_means("val") is None  # no steps since
    steps.add_to_epoch_means("val", {"loss": torch.tensor(2.0)}, 2)
    steps.log_epoch_means("val")
    assert steps.logged["val/loss"] == (2.0, True)


def test_the_finished_run_kept_is_one_continued_with_its_config_and_its_last_checkpoint(tmp_path):
    """ckpt_path=auto or last with the same config keeps a finished run's results.json, whatever its wandb run's group
    (how it is shown); a run without its last.ckpt, another ckpt_path or another config trains."""
    from framework.training import finished_with_this_config

    def config(ckpt_path="last", group="sweep", seed=1):
        return OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "ckpt_path": ckpt_path, "seed": seed,
                                 "logger": {"wandb": {"_target_": "lightning.pytorch.loggers.wandb.WandbLogger",
                                                      "name": "a", "group": group}}})

    results = {"metrics": {"test/acc": 0.5}, "config": OmegaConf.to_container(config("auto"), resolve=True)}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert finished_with_this_config(config("last")) is None  # no last.ckpt
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert finished_with_this_config(config("last")) == results == finished_with_this_config(config("auto"))
    assert finished_with_this_config(config(None)) is None
    assert finished_with_this_config(config("last", group="another")) == results
    assert finished_with_this_config(config("last", seed=2)) is None


def test_a_continuation_that_trains_no_batch_takes_the_training_metrics_of_its_checkpoint_or_its_runs_results(
        tmp_path):
    from framework.training import training_metrics_of_its_run

    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    assert training_metrics_of_its_run(str(checkpoint), {}) == {}
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"metrics": {"train/loss": 0.5, "val/acc": 0.75, "test/acc": 0.25, "lr-SGD/c1": 0.1}}))
    assert training_metrics_of_its_run(str(checkpoint), {}) == {"train/loss": 0.5, "lr-SGD/c1": 0.1}
    assert training_metrics_of_its_run(str(checkpoint), {TRAINING_METRICS: {"train/loss": 0.125}}) == \
        {"train/loss": 0.125}


def test_seed_0_seeds_the_run(make_cfg, monkeypatch):
    """seed=0 is a seed like any other (a truth test would leave the run unseeded)."""
    class Seeded(Exception):
        pass

    def seed_everything(seed, workers):
        raise Seeded(seed, workers)  # before anything is built

    monkeypatch.setattr(L, "seed_everything", seed_everything)
    with pytest.raises(Seeded) as raised:
        train(make_cfg("seed=0"))
    assert raised.value.args == (0, True)


def continued_sweep_config(sweep: Path, *overrides: str):
    """What the multirun callbacks see for ``python train.py -m <overrides> hydra.sweep.dir=<sweep>``; composed inside
    the caller's ``initialize_config_dir``, which the check needs to compose each job."""
    from hydra import compose
    from omegaconf import open_dict

    cfg = compose("train", overrides=["hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep}",
                                      *(override for override in overrides if "," not in override)],
                  return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(overrides)
    return cfg


def earlier_jobs(sweep: Path, *overrides: str, choices: tuple[str, ...] = ()) -> None:
    """Job folders 0, 1, ... of an earlier start, each with its overrides, a last.ckpt and (``choices``) the model its
    hydra.yaml records."""
    for num, override in enumerate(overrides):
        record = sweep / str(num) / ".hydra"
        record.mkdir(parents=True)
        (record / "overrides.yaml").write_text(f"- {override}\n")
        if choices:
            (record / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      model: {choices[num]}\n")
            (record / "config.yaml").write_text(f"model:\n  _target_: {choices[num]}.Module\n")
        (sweep / str(num) / "checkpoints").mkdir()
        (sweep / str(num) / "checkpoints" / "last.ckpt").write_bytes(b"")


def test_a_continued_sweep_compares_a_config_group_that_one_side_did_not_give_by_its_option(tmp_path, monkeypatch):
    """An earlier sweep over model= continued with a seed alone: job 0 has the default model, lenet5, as the run in
    its folder had. A continuation over model= of a sweep that gave none: the earlier run's option is read from its
    hydra.yaml (its config.yaml holds the model's values, never equal to an option's name)."""
    from hydra import initialize_config_dir

    import framework.continued_runs
    from framework.compose import CONF
    from framework.continued_runs import check_sweep
    from framework.errors import ConfigError

    monkeypatch.setattr(framework.continued_runs, "check_resumed_checkpoint", lambda *args, **kwargs: None)
    by_model, by_seed = tmp_path / "by_model", tmp_path / "by_seed"
    earlier_jobs(by_model, "model=lenet5", "model=lenet5_classic")
    earlier_jobs(by_seed, "seed=1", "seed=2", choices=("lenet5", "lenet5"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        check_sweep(continued_sweep_config(by_model, "seed=1", "ckpt_path=auto"))
        with pytest.raises(ConfigError, match=re.escape(
                f"Job 0 of this sweep gives model=lenet5_classic, but its folder {by_model / '0'} holds the run of "
                f"model=lenet5, which ckpt_path=auto would continue")):
            check_sweep(continued_sweep_config(by_model, "seed=1", "model=lenet5_classic", "ckpt_path=auto"))
        with pytest.raises(ConfigError, match=re.escape(
                f"Job 1 of this sweep gives model=lenet5_classic, but its folder {by_seed / '1'} holds the run of "
                f"model=lenet5, which")):
            check_sweep(continued_sweep_config(by_seed, "model=lenet5,lenet5_classic", "seed=1", "ckpt_path=auto"))


def test_a_new_sweep_whose_subdir_gives_two_jobs_one_folder_is_refused_before_its_folder_exists(tmp_path):
    """Not only a continued one: the sweep's first start would run both jobs in one folder."""
    from hydra import initialize_config_dir

    from framework.compose import CONF
    from framework.continued_runs import check_sweep
    from framework.errors import ConfigError

    sweep = tmp_path / "new"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigError, match=re.escape(
                f"Config key 'hydra.sweep.subdir' is 's${{seed}}', which gives jobs 0 and 1 of this sweep the same "
                f"folder {sweep / 's3'};")):
            check_sweep(continued_sweep_config(sweep, "hydra.sweep.subdir=s${seed}", "seed=3", "data.batch_size=16,32"))
    assert not sweep.exists()


def test_a_jobs_folder_is_named_with_its_own_number_and_leaves_hydras_config_as_it_was(tmp_path):
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from framework.compose import CONF
    from framework.continued_runs import job_config, job_folder

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        master = continued_sweep_config(tmp_path, "hydra.sweep.subdir=job${hydra.job.num}_s${seed}", "seed=1,2")
        before = HydraConfig.instance().cfg
        assert job_folder(job_config(master, ["seed=2"], 1)) == tmp_path / "job1_s2"
        assert HydraConfig.instance().cfg is before


def test_a_job_folder_holds_a_run_with_any_checkpoint_or_a_results_json(tmp_path):
    """A run killed in its first epoch may hold only the best checkpoint (no last.ckpt yet): another job's values
    would continue it."""
    from framework.continued_runs import holds_a_run

    (tmp_path / ".hydra").mkdir()
    assert not holds_a_run(tmp_path)  # refused before its first checkpoint: it starts again
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_000.ckpt").write_bytes(b"")
    assert holds_a_run(tmp_path)
    (tmp_path / "checkpoints" / "epoch_000.ckpt").unlink()
    (tmp_path / "results.json").write_text("{}")
    assert holds_a_run(tmp_path)


def test_ckpt_path_hpc_continues_the_run_in_its_folder(tmp_path):
    """Lightning's hpc_ckpt_*.ckpt in the run's own folder: not a path to another run's checkpoint."""
    from framework.continued_runs import check_folder

    (tmp_path / "results.json").write_text("{}")
    check_folder(tmp_path, {"ckpt_path": "hpc", "train": True}, multirun=False)


def test_a_sweep_named_by_its_overrides_is_refused_only_where_it_would_start_its_continued_jobs_again(tmp_path):
    """Without ckpt_path it continues nothing (a new sweep beside the earlier one's folders); folders that its
    overrides name and that exist already (an earlier continuation's) are continued in place."""
    from omegaconf import OmegaConf

    from framework.continued_runs import check_continued_into_its_folders
    from framework.errors import ConfigError

    (tmp_path / "seed=1").mkdir()
    (tmp_path / "seed=1" / "results.json").write_text("{}")
    named = {"sweep": {"subdir": "${hydra.job.override_dirname}"}, "job": {"config": {"override_dirname": {}}}}
    config = lambda ckpt_path: OmegaConf.create({"hydra": named, "ckpt_path": ckpt_path})  # noqa: E731
    new, again = [tmp_path / "ckpt_path=auto,seed=1"], [tmp_path / "seed=1"]
    check_continued_into_its_folders(config(None), new, tmp_path)
    check_continued_into_its_folders(config("auto"), again, tmp_path)
    with pytest.raises(ConfigError, match=r"which names each job's folder by its overrides, ckpt_path=auto among them"):
        check_continued_into_its_folders(config("auto"), new, tmp_path)


def test_a_multiruns_values_of_a_key_are_the_last_sweep_of_it_on_the_command_line_else_its_composed_value():
    """The command line's sweep beats the grid's, a range gives each of its values, ``~key`` gives it none, and a key
    the config lacks has no value."""
    from omegaconf import open_dict

    from framework.compose import compose_with_hydra
    from framework.hydra_callbacks import multirun_values

    config = compose_with_hydra(['+hydra.sweeper.params.seed="range(0,2)"', "hydra.job.name=train"])

    def given(*task: str):
        with open_dict(config):
            config.hydra.overrides.task = list(task)
        return config

    assert multirun_values(given(), "seed") == ["0", "1"]
    assert multirun_values(given("seed=5,6"), "seed") == ["5", "6"]
    assert multirun_values(given("seed=7"), "seed") == ["7"]
    assert multirun_values(given("~logger.wandb"), "logger.wandb") == []
    assert multirun_values(given(), "no.such.key") == []


def test_a_sweep_over_train_checks_each_jobs_folder_with_that_jobs_train(tmp_path):
    """train=true,false continued into its folders: job 1 tests, and would replace the results.json of the run there."""
    from hydra import initialize_config_dir

    from framework.compose import CONF
    from framework.continued_runs import check_sweep
    from framework.errors import ConfigError

    earlier_jobs(tmp_path, "train=true", "train=false")
    for num in (0, 1):
        (tmp_path / str(num) / "results.json").write_text("{}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigError, match=re.escape(
                f"The output directory {tmp_path / '1'} holds an earlier run (checkpoints/last.ckpt, results.json), "
                f"whose results.json this test-only run (train=false) would replace; give another hydra.sweep.dir, "
                f"with the checkpoints to test as the values of ckpt_path.")):
            check_sweep(continued_sweep_config(tmp_path, "train=true,false", "ckpt_path=auto"))


@pytest.mark.parametrize("rank", [0, 1])
def test_rank_zero_holds_a_runs_and_a_sweeps_folder_until_it_ends(tmp_path, monkeypatch, rank):
    """DDP's other ranks run into the same folder: only rank 0 holds it, and lets it go at the run's (sweep's) end."""
    import framework.hydra_callbacks
    from framework.atomic import _held
    from framework.compose import compose_with_hydra
    from framework.hydra_callbacks import EarlierRunsPreflight

    for check in ("check_task_name", "check_run", "check_sweep", "check_one_wandb_run_per_job"):
        monkeypatch.setattr(framework.hydra_callbacks, check, lambda config: None)
    monkeypatch.setattr(framework.hydra_callbacks, "lightning_rank", lambda: rank)
    config = compose_with_hydra(["hydra.job.name=train", f"hydra.run.dir={tmp_path / 'run'}",
                                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    for start, end, folder in (("on_run_start", "on_run_end", tmp_path / "run"),
                               ("on_multirun_start", "on_multirun_end", tmp_path / "sweep")):
        getattr(EarlierRunsPreflight(), start)(config)
        assert (folder in _held) is (rank == 0)
        getattr(EarlierRunsPreflight(), end)(config)
        assert folder not in _held


def test_a_sweep_over_checkpoints_checks_each_jobs_folder_with_that_jobs_checkpoint(tmp_path):
    """ckpt_path=<job 0's last.ckpt>,<job 1's>: each job continues the run in its own folder, not a fresh run among
    its files (the ckpt_path the sweep's own config gives, none)."""
    from hydra import initialize_config_dir

    from framework.compose import CONF
    from framework.continued_runs import check_sweep
    from framework.errors import ConfigError

    earlier_jobs(tmp_path, "seed=1", "seed=2")
    own = ",".join(str(tmp_path / str(num) / "checkpoints" / "last.ckpt") for num in (0, 1))
    crossed = ",".join(str(tmp_path / str(num) / "checkpoints" / "last.ckpt") for num in (1, 0))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        check_sweep(continued_sweep_config(tmp_path, f"ckpt_path={own}"))
        with pytest.raises(ConfigError, match=re.escape(
                f"The output directory {tmp_path / '0'} holds an earlier run (checkpoints/last.ckpt), and this run "
                f"resumes from another run's checkpoint ({tmp_path / '1' / 'checkpoints' / 'last.ckpt'})")):
            check_sweep(continued_sweep_config(tmp_path, f"ckpt_path={crossed}"))


def test_the_callbacks_before_a_run_or_sweep_check_its_task_name_and_a_sweeps_wandb_id(monkeypatch, capsys):
    """Before Hydra makes a log file named after the task, and before a sweep's jobs all write into one wandb run."""
    from omegaconf import open_dict

    import framework.hydra_callbacks
    from framework.compose import compose_with_hydra
    from framework.hydra_callbacks import EarlierRunsPreflight

    for check in ("check_run", "check_sweep"):
        monkeypatch.setattr(framework.hydra_callbacks, check, lambda config: None)
    monkeypatch.setattr(framework.hydra_callbacks, "lightning_rank", lambda: 1)  # holds no folder
    for start in ("on_run_start", "on_multirun_start"):
        with pytest.raises(SystemExit) as stopped:
            getattr(EarlierRunsPreflight(), start)(compose_with_hydra(["hydra.job.name=train", "task_name=a/b"]))
        assert stopped.value.code == 2 and "'task_name'" in capsys.readouterr().err
    config = compose_with_hydra(["hydra.job.name=train", "logger=wandb", "logger.wandb.id=fixedid"])
    with open_dict(config):
        config.hydra.overrides.task = ["seed=1,2"]
    with pytest.raises(SystemExit) as stopped:
        EarlierRunsPreflight().on_multirun_start(config)
    assert stopped.value.code == 2 and "'logger.wandb.id' is 'fixedid'" in capsys.readouterr().err
    with open_dict(config):
        config.hydra.overrides.task = ["seed=1,2", "logger.wandb.id=null"]  # each job's own id
    EarlierRunsPreflight().on_multirun_start(config)


def test_the_rank_read_before_lightning_is_imported_is_the_global_rank_before_the_local_one(monkeypatch):
    """A DDP job on two nodes: node 1's first process has RANK=2 and LOCAL_RANK=0, and is not rank 0."""
    import sys

    from framework.hydra_callbacks import lightning_rank

    monkeypatch.delitem(sys.modules, "lightning.fabric.utilities.rank_zero")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert lightning_rank() == 2

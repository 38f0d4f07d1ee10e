"""Whole runs in fresh interpreters, as users start them: resume after SIGKILL, multirun sweeps
with wandb offline, DDP on two CPU processes."""

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

from framework.compose import ROOT
from framework.ddp_workers import (
    EPHEMERAL_PORTS,
    FIRST_RENDEZVOUS_PORT,
    a_port_below_the_ephemeral_range,
    choose_the_rendezvous_port,
)
from tests.conftest import imported_and_said, run_cli
from tests.wandb_files import wandb_records

QUIET = ("callbacks.progress_bar.refresh_rate=0", "trainer.accelerator=cpu")


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


DROPOUT = ("model=szegedy", "model/optimizer=adam", "model.net.kind=conv", "model.net.hidden=[100]",
           "model.net.weight_decay=0.0", "model.net.dropout=0.5", "data.image_size=28")


@pytest.mark.slow
@pytest.mark.parametrize("model", [(), DROPOUT], ids=["lenet5", "dropout"])
def test_run_killed_after_first_epoch_resumes_to_the_uninterrupted_metrics(tmp_path, model):
    """With dropout too: the checkpoint holds the random number generators' states (a resume used to reseed them,
    and the conv net with dropout ended 0.55 points off)."""
    common = ("trainer.max_epochs=3", "seed=5", *model, *QUIET)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_cli("train.py", *common, f"hydra.run.dir={reference}").returncode == 0

    killed = run_cli("train.py", *common, f"hydra.run.dir={resumed}",
                     "+callbacks.killer._target_=tests.kill_callback.KillAtEpochStart", "+callbacks.killer.epoch=1")
    assert killed.returncode == -signal.SIGKILL
    assert (resumed / "checkpoints" / "last.ckpt").is_file() and not (resumed / "results.json").exists()

    resume = run_cli("train.py", *common, f"hydra.run.dir={resumed}", "ckpt_path=auto")
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert f"Resuming from {resumed / 'checkpoints' / 'last.ckpt'}, saved in epoch 0 (counted from 0, as in the " \
        "metrics) at global step " in resume.stderr + resume.stdout
    # Lightning restored the killed run's state (a fresh start would reach the same metrics: same seed, same data)
    assert f"Restored all states from the checkpoint at {resumed / 'checkpoints' / 'last.ckpt'}" in resume.stderr + \
        resume.stdout
    expected, actual = results(reference), results(resumed)
    assert actual["epochs_completed"] == expected["epochs_completed"] == 3
    assert actual["metrics"] == expected["metrics"]  # exactly, not approximately


@pytest.mark.slow
def test_a_run_trained_with_model_compile_continues_without_it(tmp_path):
    """``model.compile=true`` compiles the network in place, so its checkpoints name the weights as an uncompiled
    run's do and either kind continues the other (torch.compile's wrapper named them net._orig_mod.*, and such a
    checkpoint was refused as weights that do not fit). Whole batches only: each other batch size compiles again."""
    few_batches = ("++trainer.limit_train_batches=4", "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1")
    for epochs, compiled in ((1, True), (2, False)):
        done = run_cli("train.py", f"trainer.max_epochs={epochs}", f"model.compile={compiled}", "ckpt_path=auto",
                       f"hydra.run.dir={tmp_path}", *few_batches, *QUIET)
        assert done.returncode == 0, done.stderr[-3000:]
    assert results(tmp_path)["epochs_completed"] == 2


def test_a_network_with_tied_weights_gets_each_parameter_in_one_group_and_trains():
    """A weight shared by two layers was in both layers' groups, and torch refused the optimizer ("some parameters
    appear in more than one parameter group"); plain Lightning's optimizer over self.parameters() takes it once."""
    from functools import partial

    import torch

    from lightning_modules.classifier import ClassificationModule

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    net[2].weight = net[1].weight
    optimizer = ClassificationModule(net, partial(torch.optim.SGD, lr=0.1)).configure_optimizers()
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(map(id, net.parameters())) and len(grouped) == 3  # a weight, two biases
    assert [group["name"] for group in optimizer.param_groups] == ["1", "2"]


def test_per_layer_groups_are_the_layers_with_trainable_parameters_and_net_for_the_networks_own(tmp_path):
    """A frozen layer, or one without parameters, gets no group (torch would step nothing in it); a parameter the
    network holds directly is in the group "net". A scheduler steps at each epoch's end; L-BFGS takes one group."""
    from functools import partial

    import torch

    from framework.errors import ConfigError
    from lightning_modules.classifier import ClassificationModule

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2).requires_grad_(False))
    net.scale = torch.nn.Parameter(torch.ones(1))
    optimizer = ClassificationModule(net, partial(torch.optim.SGD, lr=0.1), num_classes=2).configure_optimizers()
    assert [(group["name"], [tuple(p.shape) for p in group["params"]]) for group in optimizer.param_groups] == \
        [("1", [(4, 4), (4,)]), ("net", [(1,)])]
    single = ClassificationModule(net, partial(torch.optim.SGD, lr=0.1), partial(torch.optim.lr_scheduler.StepLR,
                                  step_size=1), num_classes=2, param_groups="single").configure_optimizers()
    assert [(group["name"], len(group["params"])) for group in single["optimizer"].param_groups] == [("all", 3)]
    assert single["lr_scheduler"]["interval"] == "epoch"
    checkpoint = {"state_dict": {f"net.{name}": value for name, value in net.state_dict().items()},
                  "hyper_parameters": {"num_classes": 2}, "pytorch-lightning_version": "2.0.0"}
    torch.save(checkpoint, tmp_path / "saved.ckpt")  # an evaluating module is built without an optimizer
    assert ClassificationModule.load_from_checkpoint(tmp_path / "saved.ckpt", net=net).optimizer_factory is None
    with pytest.raises(ConfigError, match=r"gives the optimizer one group per layer \(2\), but model.optimizer is "
                                          r"torch.optim.LBFGS, which takes one group"):
        ClassificationModule(net, partial(torch.optim.LBFGS), num_classes=2).configure_optimizers()


def test_compiled_networks_weights_keep_their_names_and_a_compile_wrappers_names_load():
    import torch

    from lightning_modules.classifier import ClassificationModule
    from lightning_modules.lenet5 import LeNet5

    torch.manual_seed(0)
    plain, compiled = (ClassificationModule(LeNet5(), torch.optim.SGD, compile=compile) for compile in (False, True))
    assert list(compiled.state_dict()) == list(plain.state_dict())
    wrapped = {name.replace("net.", "net._orig_mod.", 1): value for name, value in plain.state_dict().items()}
    compiled.load_state_dict(wrapped)  # a checkpoint of a run compiled before, by torch.compile's wrapper
    assert all(torch.equal(value, compiled.state_dict()[name]) for name, value in plain.state_dict().items())


@pytest.mark.slow
def test_multirun_with_wandb_offline_writes_one_job_dir_and_one_wandb_run_each_without_network(tmp_path):
    if shutil.which("unshare") is None or run_cli("-c", "pass", prefix=("unshare", "-n")).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -n) to prove that no network is used")
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", "seed=1,2", "trainer.max_epochs=1", "logger=wandb", *QUIET,
                     "data.batch_size=64", "model.optimizer.lr=0.02", "model.optimizer.momentum=0.9",
                     f"hydra.sweep.dir={sweep}", env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
                     prefix=("unshare", "-n"))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    run_ids = set()
    for job, seed in zip(jobs, (1, 2), strict=True):
        stored = results(job)
        assert stored["seed"] == seed and f"seed={seed}" in stored["overrides"]
        offline_runs = list((job / "wandb").glob("offline-run-*"))
        assert len(offline_runs) == 1, offline_runs
        run_ids.add(offline_runs[0].name.rsplit("-", 1)[-1])
        [run] = [record.run for record in wandb_records(next(offline_runs[0].glob("run-*.wandb")))
                 if record.WhichOneof("record_type") == "run"]
        assert run.run_group == "sweep"  # one wandb group per sweep: its directory's name
        # the swept values: all the overrides (Hydra's override_dirname) were cut at 128 characters before seed=
        assert run.display_name == f"default seed={seed}"
    assert len(run_ids) == 2

    table = run_cli(str(ROOT / "evaluate.py"), f"runs={sweep}", "metrics=[test/acc]", "group_by=[trainer.max_epochs]",
                    cwd=tmp_path)  # its own run folder goes there, not into the repository's logs/
    assert table.returncode == 0, table.stderr[-2000:]
    mean = (results(jobs[0])["metrics"]["test/acc"] + results(jobs[1])["metrics"]["test/acc"]) / 2
    assert f"| 1 | {mean:.4f} ± " in (sweep / "table.md").read_text()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_sweep_stopped_by_a_signal_exits_with_its_code_and_continues_to_the_uninterrupted_metrics(tmp_path,
                                                                                                   signal_name):
    """Lightning ends a run that gets SIGTERM (kill, a scheduler's stop) with a SystemExit of code 0, and one that
    gets SIGINT (Ctrl+C) with code 1 and no word of where the sweep is: a sweep stopped in its first job ended
    'successfully', with the second job never run, or like a crash."""
    sweep = ("-m", "seed=1,2", "debug=limit", "trainer.max_epochs=3", "logger=none", *QUIET)
    stopper = ("+callbacks.stopper._target_=tests.signal_callback.SignalAtEpochStart", "+callbacks.stopper.epoch=1",
               f"+callbacks.stopper.signal_name={signal_name}")
    stopped = run_cli("train.py", *sweep, f"hydra.sweep.dir={tmp_path / 'stopped'}", *stopper)
    assert stopped.returncode == 128 + getattr(signal, signal_name), stopped.stderr[-3000:]
    assert stopped.stderr.rstrip().endswith(
        f"Stopped by {signal_name} (sweep directory: {tmp_path / 'stopped'}; a run goes on from its last checkpoint "
        f"when the same command is given again with ckpt_path=auto).")
    assert (tmp_path / "stopped" / "0" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "stopped" / "0" / "results.json").exists() and not (tmp_path / "stopped" / "1").exists()
    continued = run_cli("train.py", *sweep, f"hydra.sweep.dir={tmp_path / 'stopped'}", "ckpt_path=auto")
    reference = run_cli("train.py", *sweep, f"hydra.sweep.dir={tmp_path / 'reference'}")
    assert continued.returncode == reference.returncode == 0, continued.stderr[-3000:] + reference.stderr[-3000:]
    for job in ("0", "1"):
        assert results(tmp_path / "stopped" / job)["metrics"] == results(tmp_path / "reference" / job)["metrics"]


def first_ephemeral_port() -> int:
    return int(EPHEMERAL_PORTS.read_text().split()[0])


def test_the_ranks_rendezvous_port_is_a_free_one_below_the_ephemeral_range(monkeypatch):
    """Lightning's port (bind to 0, then closed) was an ephemeral one, which any outgoing connection may be given
    before rank 0 listens on it: `python train.py trainer=ddp_sim` failed once in a suite with EADDRINUSE."""
    port = other = a_port_below_the_ephemeral_range()
    while other == port:  # two draws agree once in ~7,800
        other = a_port_below_the_ephemeral_range()
    assert FIRST_RENDEZVOUS_PORT <= min(port, other) and max(port, other) < first_ephemeral_port()
    with socket.socket() as taken:
        taken.bind(("", port))
        taken.listen()
        draws = iter([port, other])
        monkeypatch.setattr(random.SystemRandom, "randrange", lambda self, low, high: next(draws))
        assert a_port_below_the_ephemeral_range() == other != port  # the port in use is passed over


@pytest.mark.parametrize(("given", "ranks", "expected"), [({}, 2, "chosen"), ({}, 1, None),
                                                          ({"MASTER_PORT": "29555"}, 2, "29555"),
                                                          ({"STANDALONE_PORT": "29556"}, 2, None)])
def test_the_rendezvous_port_is_chosen_for_several_ranks_where_the_user_gave_none(monkeypatch, given, ranks,
                                                                                 expected):
    monkeypatch.setattr(os, "environ", dict(given))
    monkeypatch.setattr("framework.ddp_workers.a_port_below_the_ephemeral_range", lambda: "chosen")
    choose_the_rendezvous_port(LightningEnvironment(), ranks)
    assert os.environ.get("MASTER_PORT") == expected
    monkeypatch.setattr(os, "environ", {})
    choose_the_rendezvous_port(SLURMEnvironment(), 2)  # SLURM's own port, from the job id
    assert os.environ == {}


@pytest.mark.slow
def test_ddp_sim_trains_digits_for_one_epoch_on_two_cpu_processes(tmp_path):
    """Inside a SLURM job's one task, as on a compute node: Lightning took the ranks from SLURM there, and both
    processes were rank 0 (EADDRINUSE, a traceback). In a new interpreter, which starts a forkserver of its own for the
    ranks, as `python train.py trainer=ddp_sim` does (the other commands' ranks come from the tests' preloaded one)."""
    slurm_task = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "study", "SLURM_JOB_ID": "7", "SLURM_PROCID": "0",
                  "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    result = run_cli("train.py", "trainer=ddp_sim", "trainer.max_epochs=1", "data.batch_size=16", *QUIET,
                     "callbacks.last_checkpoint=null", f"hydra.run.dir={tmp_path}",
                     "+callbacks.ranks._target_=tests.slurm_callbacks.RecordRankMetrics",
                     f"+callbacks.ranks.dirpath={tmp_path / 'ranks'}",
                     env={"OMP_NUM_THREADS": "1", **slurm_task}, new_interpreter=True)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["main_port"] == ranks[1]["main_port"] < first_ephemeral_port()  # no outgoing socket's to take
    assert "world_size=2" in result.stdout + result.stderr or "GLOBAL_RANK: 1" in result.stdout + result.stderr
    assert "gave no batches" not in result.stdout + result.stderr  # the workers' batch counts do not reach the parent
    # the stages' means are summed over the ranks already: no recommendation to sync them (it made users doubt them)
    assert "It is recommended to use `self.log(" not in result.stdout + result.stderr
    # rank 0's log lines reach the job's log as a single process's do (the workers started without its handlers)
    assert (tmp_path / "train.log").read_text().count("`Trainer.fit` stopped: `max_epochs=1` reached.") == 1
    stored = results(tmp_path)
    assert stored["metrics"]["test/acc"] > 0.2
    assert stored["epochs_completed"] == 1  # trained in the workers, which send back their loop state (no last.ckpt)
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = [row.split(",")[header.index("epoch")] for row in rows[1:] if row.split(",")[header.index("epoch")]]
    # one epoch of training and validation (LR rows carry no epoch), then the test at epoch 1, as one process logs
    # it (the workers' loop state did not reach the parent: it logged at epoch 0)
    assert epochs == ["0", "0", "1"]
    # The same checkpoint scored by one process: DDP's shares of the 288 validation and 359 test images cover each
    # image once (Lightning's sampler would pad the test set to 360 with a repeat), and the loss is summed, not
    # averaged per rank.
    single = run_cli("train.py", "train=false", f"ckpt_path={stored['best_checkpoint']}", "data.batch_size=16", *QUIET,
                     f"hydra.run.dir={tmp_path / 'single'}", env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-3000:]
    for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert results(tmp_path / "single")["metrics"][key] == pytest.approx(stored["metrics"][key], abs=1e-6), key


@pytest.mark.slow
def test_ddp_sim_reports_the_feature_prediction_losses_of_the_whole_split(tmp_path):
    """The autoencoder's val/ and test/ losses under DDP are those of one process on the same checkpoint: each rank's
    sums, not its own mean (they were rank 0's), and 101 test images on 2 ranks weigh 51 and 50 (Lightning's
    sync_dist mean divided by 50)."""
    model = ("model=perceptual_autoencoder", "model.procedure=I-F-FP", "model.loss_network.weights=random",
             "model.feature_hidden_max=64", "data=random", "data.channels=3", "data.image_size=64",
             "data.num_train=300", "data.num_test=101", "data.batch_size=32", "callbacks=default",
             "optimized_metric=val/loss", *QUIET)
    ddp = run_cli("train.py", *model, "trainer=ddp_sim", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}",
                  env={"OMP_NUM_THREADS": "1"})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    stored = results(tmp_path)
    single = run_cli("train.py", *model, "train=false", f"ckpt_path={stored['best_checkpoint']}",
                     f"hydra.run.dir={tmp_path / 'single'}", env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-3000:]
    for key in ("val/loss", "test/loss", "test/reconstruction"):
        assert results(tmp_path / "single")["metrics"][key] == pytest.approx(stored["metrics"][key], rel=1e-6), key


def test_csv_logger_keeps_rows_written_by_an_earlier_process(tmp_path):
    from framework.loggers import AppendingCSVLogger

    first = AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")
    first.log_metrics({"train/loss": 1.0, "val/acc": 0.5}, step=0)
    first.save()
    second = AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")  # as a resumed process would
    second.log_metrics({"test/acc": 0.75}, step=1)
    second.save()
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == ["step", "test/acc", "train/loss", "val/acc"]
    assert rows[1:] == ["0,,1.0,0.5", "1,0.75,,"]


def test_csv_logger_merges_keys_written_by_another_process_into_an_open_writer(tmp_path):
    from framework.loggers import AppendingCSVLogger

    opened_first = AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")
    assert opened_first.experiment is not None  # created before the other process writes, as under ddp_spawn
    other = AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")
    other.log_metrics({"val/acc": 0.5}, step=0)
    other.save()
    opened_first.log_metrics({"test/acc": 0.75}, step=1)
    opened_first.save()
    assert (tmp_path / "csv" / "metrics.csv").read_text().splitlines() == ["step,test/acc,val/acc", "0,,0.5", "1,0.75,"]


def test_csv_logger_stopped_while_it_rewrites_for_a_new_column_keeps_the_earlier_rows(tmp_path, monkeypatch):
    """Lightning rewrote metrics.csv in place for a new column (the first validation, the test): stopped there
    (SIGKILL; here an interrupt in the middle of the rows), the file was left empty."""
    import framework.loggers as loggers

    logger = loggers.AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    written = (tmp_path / "csv" / "metrics.csv").read_bytes()

    def interrupted(file, header, rows):
        file.write(",".join(header).encode())  # the header written, the rows not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(loggers, "write_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        logger.log_metrics({"test/acc": 0.75}, step=1)  # a new column: the file is rewritten
    assert (tmp_path / "csv" / "metrics.csv").read_bytes() == written
    assert not list((tmp_path / "csv").glob(".metrics.csv.*"))  # no temporary file left behind


def test_csv_logger_rewritten_for_a_new_column_ends_every_row_as_lightning_appends_them(tmp_path):
    """Lightning's writer appends rows ending in "\r\n": the rewrite for a new column ends its rows the same way,
    so that metrics.csv never mixes line ends."""
    from framework.loggers import AppendingCSVLogger, read_csv

    logger = AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.log_metrics({"test/acc": 0.75}, step=1)  # a new column: the file is rewritten
    logger.log_metrics({"train/loss": 0.5}, step=2)  # appended by Lightning
    metrics = tmp_path / "csv" / "metrics.csv"
    assert metrics.read_bytes() == b"step,test/acc,train/loss\r\n0,,1.0\r\n1,0.75,\r\n2,,0.5\r\n"
    assert read_csv(metrics) == (["step", "test/acc", "train/loss"], [["0", "", "1.0"], ["1", "0.75", ""],
                                                                      ["2", "", "0.5"]])


def test_an_empty_metrics_csv_reads_as_no_header_and_no_rows(tmp_path):
    """A run killed between creating metrics.csv and writing its header leaves an empty file."""
    from framework.loggers import read_csv

    (tmp_path / "metrics.csv").write_bytes(b"")
    assert read_csv(tmp_path / "metrics.csv") == ([], [])


def test_csv_logger_counts_the_rows_in_its_file_and_those_waiting_to_be_saved(tmp_path):
    """The count a checkpoint keeps (checkpoints.CSV_ROWS_LOGGED) to set aside the rows a continued run logs again."""
    from framework.loggers import AppendingCSVLogger

    logger = AppendingCSVLogger(save_dir=tmp_path, name="csv", version="")
    assert logger.experiment.rows_logged() == 0  # no file yet
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.log_metrics({"train/loss": 0.5}, step=1)
    logger.experiment.log_metrics({"train/loss": 0.25}, step=2)  # not saved yet
    assert logger.experiment.rows_logged() == 3
    assert AppendingCSVLogger(save_dir=tmp_path, name="csv", version="").experiment.rows_logged() == 2


def test_the_run_log_is_left_to_rank_zero(tmp_path, monkeypatch):
    """Every rank a cluster starts is a Hydra job that opens train.log: the other ranks close theirs."""
    import logging

    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from framework.loggers import run_log_on_rank_zero_only

    root = logging.getLogger()
    file, console = logging.FileHandler(tmp_path / "train.log"), logging.StreamHandler()
    for handler in (file, console):
        monkeypatch.setattr(root, "handlers", [*root.handlers, handler])
    run_log_on_rank_zero_only()
    assert file in root.handlers and console in root.handlers  # rank 0 keeps it
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    run_log_on_rank_zero_only()
    assert file not in root.handlers and console in root.handlers and file.stream is None  # closed


def test_slurm_launcher_starts_one_task_per_gpu(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from framework.compose import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (4, 4, 2)


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep_job_in_its_own_process(tmp_path):
    """Started outside the repository, as on a cluster's scratch space: the job's interpreter, which submitit starts
    in that directory, must still import the framework. A user error in the sweep's other job fails that job only,
    and its sentence reaches the launcher's output (the job's own output is in its .submitit log). The launching process
    (a cluster's login node) imports neither torch nor Lightning: its jobs do."""
    sweep = tmp_path / "sweep"
    result = run_cli("-X", "importtime", str(ROOT / "train.py"), "-m", "hydra/launcher=local", "seed=3",
                     "trainer.max_epochs=1", *QUIET, "model.optimizer.lr=0.02,-1", f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path)
    imported, said = imported_and_said(result.stderr)
    assert not imported & {"torch", "lightning"}, sorted(imported & {"torch", "lightning"})
    assert result.returncode == 2, said[-3000:]
    assert results(sweep / "0")["seed"] == 3 and not (sweep / "1" / "results.json").exists()
    assert list((sweep / ".submitit").iterdir())  # submitit's job folder: the job ran through the launcher
    assert said.rstrip().endswith(f"sweep directory: {sweep}\nsummarise its finished jobs with: python "
                                  f"{os.path.relpath(ROOT / 'evaluate.py', tmp_path)} runs={sweep}\nThe sweep ran "
                                  f"every job; the first that stopped "
                                  f"({sweep}/1) said:\nConfig error: Config key "
                                  f"'model.optimizer.lr' is -1, but it must be a number > 0.")


def test_the_local_launcher_gives_its_jobs_a_week():
    """submitit's local executor stops a job at timeout_min and starts it again: at its default, 60 min, every longer
    job of a local sweep was stopped, and its restart without ckpt_path=auto refused the run the first start left."""
    from framework.compose import compose_with_hydra

    assert compose_with_hydra(["hydra/launcher=local"]).hydra.launcher.timeout_min == 7 * 24 * 60


def test_a_bug_in_a_job_of_a_local_launcher_keeps_hydras_exit_code_1(tmp_path):
    """Exit code 2 is a user error's: a job's bug in a process of its own (submitit) was reported with 2 too."""
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", "hydra/launcher=local", "seed=1", "debug=limit", "logger=none", *QUIET,
                     f"hydra.sweep.dir={sweep}", "+callbacks.bug._target_=tests.signal_callback.BugAtTrainStart")
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"sweep directory: {sweep} (a job failed with the traceback below)" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: a bug (the test's)")


def stopped_job_said(sweep: Path) -> str:
    """The sentence a sweep's job that SIGTERM stopped leaves in its own logs (the launcher's names no folder given)."""
    return (f"Stopped by SIGTERM (sweep directory: {sweep}; a run goes on from its last checkpoint when the same "
            f"command is given again with ckpt_path=auto hydra.sweep.dir={sweep}).")


def test_sigterm_to_a_local_launcher_stops_its_jobs_before_it_exits(tmp_path):
    """`hydra/launcher=local` runs each job in a process of its own under submitit's controller: a SIGTERM to the
    launching process (kill, a terminal's job control) ended it alone, and its jobs trained on with no launcher. Job 0
    stops at its next batch, or at once when the signal found it still setting up (the test below), and says so in its
    own logs: Lightning's exit after a SIGTERM is a SystemExit of code 0, which ended the job without a word."""
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", "hydra/launcher=local", "seed=1,2", "debug=limit", "trainer.max_epochs=100",
                     "~callbacks.early_stopping", "logger=none", *QUIET, f"hydra.sweep.dir={sweep}",
                     "+callbacks.stopper._target_=tests.signal_callback.SignalLauncherAtEpochStart",
                     "+callbacks.stopper.epoch=1")
    left = subprocess.run(["pgrep", "-f", str(sweep)], capture_output=True, text=True).stdout.split()
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(f"Stopped by SIGTERM (sweep directory: {sweep}; a run goes on from its last "
                                           f"checkpoint when the same command is given again with ckpt_path=auto).")
    assert left == []  # every job's process has ended
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file() and not (sweep / "0" / "results.json").exists()
    job_logs = [path.read_text() for path in (sweep / ".submitit").glob("*/*_log.err")]
    assert any(log.rstrip().endswith(stopped_job_said(sweep)) for log in job_logs), job_logs
    assert stopped_job_said(sweep) in (sweep / "0" / "train.log").read_text()


def test_ctrl_c_in_a_local_launchers_terminal_stops_its_jobs_through_it_without_tracebacks(tmp_path):
    """Ctrl+C reaches every process of the terminal's foreground group: submitit's controllers printed a
    KeyboardInterrupt traceback each and killed their jobs a second later, mid-stop, and the launcher exited at once,
    its jobs still there. Now the launcher stops them as at a SIGTERM, each says so in its logs, and it waits."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "train.py", "-m", "hydra/launcher=local", "seed=1,2", "debug=limit",
               "trainer.max_epochs=100", "~callbacks.early_stopping", "logger=none", *QUIET,
               f"hydra.sweep.dir={sweep}"]
    with open(tmp_path / "stderr", "w") as stderr:  # a session of its own: the group a terminal's Ctrl+C reaches
        # SIGINT at its default, as in a terminal's foreground job: a suite started in the background by a script
        # (`make test &`) ignores SIGINT, and so did the launcher, whose sweep then ran on to its end
        launcher = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 240
            while not (sweep / "0" / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            os.killpg(launcher.pid, signal.SIGINT)
            code = launcher.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
    said = (tmp_path / "stderr").read_text()
    left = subprocess.run(["pgrep", "-f", str(sweep)], capture_output=True, text=True).stdout.split()
    assert code == 128 + signal.SIGINT and "Traceback" not in said, said[-3000:]
    assert said.rstrip().endswith(f"Stopped by SIGINT (sweep directory: {sweep}; a run goes on from its last "
                                  f"checkpoint when the same command is given again with ckpt_path=auto).")
    assert left == []  # every job's process had ended when the launcher exited
    assert stopped_job_said(sweep) in (sweep / "0" / "train.log").read_text()


def test_sigterm_to_a_local_launcher_stops_a_job_still_importing_torch(tmp_path):
    """submitit's handler ignores SIGTERM in the jobs it runs ("Bypassing signal SIGTERM"), and Lightning's takes over
    only when a fit starts: a job that got the signal while it imported torch and set up trained on to its end, or
    until the launcher killed it after its grace. Job 0 signals the launcher as it starts (the launcher passes the
    signal on to its jobs), and stops at once, with its sentence in its submitit log and nothing trained."""
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", "hydra/launcher=local", "seed=1,2", "debug=limit", "trainer.max_epochs=100",
                     "~callbacks.early_stopping", "logger=none", *QUIET, f"hydra.sweep.dir={sweep}",
                     "+hydra.callbacks.stopper._target_=tests.signal_at_job_start.SignalAtJobStart",
                     "+hydra.callbacks.stopper.job=0", "+hydra.callbacks.stopper.to=launcher")
    job_logs = [path.read_text() for path in (sweep / ".submitit").glob("*/*_log.err")]
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert any(log.rstrip().endswith(stopped_job_said(sweep)) for log in job_logs), job_logs
    assert not (sweep / "0" / "checkpoints").exists() and not (sweep / "0" / "results.json").exists()


@pytest.mark.parametrize("with_callback", [True, False])
def test_a_process_that_set_up_a_trainer_destroys_its_process_group_before_exiting(tmp_path, with_callback):
    import subprocess
    import sys
    import textwrap

    # atexit runs handlers last-registered-first: the probe, registered before the callback's, sees the result.
    script = textwrap.dedent(f"""
        import atexit
        import torch.distributed as dist
        from framework.process_group import DestroyProcessGroupAtExit
        dist.init_process_group("gloo", init_method="file://{tmp_path}/rendezvous", rank=0, world_size=1)
        atexit.register(lambda: print("initialized at exit:", dist.is_initialized()))
        if {with_callback}:
            DestroyProcessGroupAtExit().setup(None, None, "fit")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"initialized at exit: {not with_callback}"


def test_a_users_own_network_and_datamodule_train_from_a_config_folder_of_their_own(tmp_path):
    """README "Your own network and data": examples/ on PYTHONPATH, its conf/ on Hydra's search path."""
    result = run_cli("train.py", "hydra.searchpath=[file://examples/conf]", "model=mlp", "data=blobs",
                     "model.num_classes=2", f"hydra.run.dir={tmp_path}", *QUIET, env={"PYTHONPATH": "examples"})
    assert result.returncode == 0, result.stderr
    run = results(tmp_path)
    config = run["config"]
    assert config["model"]["net"]["_target_"] == "nets.MLP" and config["data"]["_target_"] == "blobs.Blobs"
    assert run["metrics"]["test/acc"] >= 0.95  # the two classes differ by half a standard deviation in 1,024 pixels
    assert {"lr-Adam/hidden", "lr-Adam/output"} <= run["metrics"].keys()  # the network's children are named groups


def test_data_num_workers_is_a_key_of_the_data_configs_and_workers_make_the_same_batches(tmp_path):
    """`data.num_workers=2` without `+`, as in Lightning's DataLoader; the seeded sampler decides the batches."""
    for workers in (0, 2):
        result = run_cli("train.py", f"data.num_workers={workers}", "trainer.max_epochs=2",
                         f"hydra.run.dir={tmp_path / str(workers)}", *QUIET)
        assert result.returncode == 0, result.stderr
    assert results(tmp_path / "2")["metrics"] == results(tmp_path / "0")["metrics"]


def test_a_sweeps_job_given_again_while_it_still_runs_is_one_sentence(tmp_path):
    """A SLURM sweep's launching command stopped (Ctrl+C) leaves its jobs running on the cluster; the same command
    given again started a second job into the first one's folder, both writing metrics.csv and results.json. A job
    holds its folder (here this test does, as the first job's process 12345 would)."""
    import fcntl

    command = ("train.py", "-m", "seed=1", "debug=smoke", "ckpt_path=auto", *QUIET, f"hydra.sweep.dir={tmp_path}")
    assert run_cli(*command).returncode == 0
    with open(tmp_path / "0" / ".in-use", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("12345")
        held.flush()
        refused = run_cli(*command, "trainer.max_epochs=2")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"Config error: {tmp_path / '0'} is in use: the run of process 12345 writes into it now; wait for it to " \
           f"end, or give the sweep another hydra.sweep.dir." in refused.stderr, refused.stderr[-3000:]
    assert results(tmp_path / "0")["epochs_completed"] == 1  # the first job's results, untouched


@pytest.mark.parametrize("logging", ["default", "disabled", "stdout", "none"])
def test_every_job_logging_option_of_hydra_runs(tmp_path, logging):
    """Hydra's own job-logging options replace ours whole: the file handler that names train.log after task_name
    merged into `disabled` and `stdout` as a handler without a class, and both runs stopped with a traceback."""
    run = run_cli("train.py", f"hydra/job_logging={logging}", "debug=smoke", *QUIET, f"hydra.run.dir={tmp_path}")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "train.log").is_file() == (logging == "default")


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_a_run_or_sweep_into_a_folder_another_one_writes_into_now_is_one_sentence(tmp_path, multirun):
    """Two started at once both passed the check for earlier runs' files, then wrote into each other's metrics.csv,
    checkpoints and results.json. The first holds its folder (here this test does, as process 12345 would)."""
    import fcntl

    folder = tmp_path / "busy"
    folder.mkdir()
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    command = ("train.py", *(["-m", "seed=1,2"] if multirun else []), "debug=smoke", *QUIET, f"{key}={folder}")
    with open(folder / ".in-use", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("12345")
        held.flush()
        refused = run_cli(*command)
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert refused.stderr.strip().splitlines()[-1] == (
            f"Config error: {folder} is in use: the run of process 12345 writes into it now; wait for it to end, or "
            f"give this {'sweep' if multirun else 'run'} another {key}.")
        assert sorted(path.name for path in folder.iterdir()) == [".in-use"]  # nothing written
    ran = run_cli(*command)  # once the other has ended
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (folder / "0" / "results.json" if multirun else folder / "results.json").is_file()

"""Runs killed at the moments between a run's writes, continued with ckpt_path=auto: the same results, checkpoints
and metrics.csv as an uninterrupted run."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from framework.checkpoints import CSV_ROWS_LOGGED
from framework.compose import ROOT
from framework.ddp_workers import EPHEMERAL_PORTS, FIRST_RENDEZVOUS_PORT
from framework.results import read_results
from framework.resuming import set_aside_checkpoints_saved_after, set_aside_rows_logged_after
from framework.sigterm_across_ranks import SigtermAgreed, SigtermNotedUnderDDP, with_sigterm_agreed_across_ranks
from tests.conftest import run_cli
from tests.test_runs import DROPOUT

QUIET = ("callbacks.progress_bar.refresh_rate=0", "trainer.accelerator=cpu")
RUN = ("trainer.max_epochs=3", "seed=5", *QUIET)


def results(run_dir: Path) -> dict:
    return read_results(run_dir / "results.json")


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def all_but_the_training_row_of(epoch: int, run_dir: Path) -> list[dict]:
    """metrics.csv's rows but the training means of ``epoch``: continued from within it, they cover only the batches
    after its checkpoint (Lightning keeps no partial means in a checkpoint)."""
    return [row for row in rows(run_dir) if (row["epoch"], bool(row["train/loss"])) != (str(epoch), True)]


def uninterrupted(folder: Path, run: tuple[str, ...] = RUN, env: dict | None = None) -> Path:
    done = run_cli("train.py", *run, f"hydra.run.dir={folder}", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return uninterrupted(tmp_path_factory.mktemp("reference"))


def continued(folder: Path, *stop: str, run: tuple[str, ...] = RUN, code: int = -signal.SIGKILL,
              env: dict | None = None):
    """The run stopped by ``stop`` (its exit ``code``), then given again with ckpt_path=auto: both outcomes."""
    stopped = run_cli("train.py", *run, f"hydra.run.dir={folder}", *stop, env=env)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    resumed = run_cli("train.py", *run, f"hydra.run.dir={folder}", "ckpt_path=auto", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return stopped, resumed


@pytest.mark.slow
def test_a_run_killed_between_an_epochs_best_checkpoint_and_its_last_ckpt_continues_from_the_best(reference,
                                                                                                    tmp_path):
    """The best checkpoint of an epoch is saved just before its last.ckpt: killed between the two, the run was refused
    (in its first epoch: 'no last.ckpt to continue'), or continued from the epoch before, saving that epoch's best
    again as epoch_001-v1.ckpt beside the old one."""
    for epoch in (0, 1):
        folder = tmp_path / f"epoch{epoch}"
        _, resumed = continued(folder, "callbacks.last_checkpoint._target_=tests.kill_callback.KilledBeforeSaving",
                               f"+callbacks.last_checkpoint.kill_in_epoch={epoch}")
        assert f"{folder}/checkpoints/epoch_00{epoch}.ckpt was saved after last.ckpt (the run was stopped" in \
            resumed.stdout + resumed.stderr
        assert results(folder)["metrics"] == results(reference)["metrics"]
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == \
            sorted(p.name for p in (reference / "checkpoints").iterdir())
        assert rows(folder) == rows(reference)  # the epoch's training row, logged after its checkpoints, included


@pytest.mark.slow
def test_a_run_killed_after_an_epochs_checkpoints_logs_that_epochs_training_row_once(reference, tmp_path):
    """Lightning logs an epoch's training row just after the epoch's checkpoints; a run killed in between, continued
    from last.ckpt, lacked that row in metrics.csv for good."""
    _, resumed = continued(tmp_path, "callbacks.last_checkpoint._target_=tests.kill_callback.KilledAfterSaving",
                           "+callbacks.last_checkpoint.kill_in_epoch=1")
    assert "lacked the training row of epoch 1" in resumed.stdout + resumed.stderr
    assert rows(tmp_path) == rows(reference)
    assert results(tmp_path)["metrics"] == results(reference)["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [
    ("+callbacks.stopper._target_=tests.signal_callback.SignalAtEpochStart", "+callbacks.stopper.epoch=1"),
    ("+callbacks.killer._target_=tests.kill_callback.KillAtTestEnd",),
], ids=["sigterm-in-an-epoch", "killed-after-its-test"])
def test_rows_logged_after_the_checkpoint_are_set_aside_when_the_run_logs_them_again(reference, tmp_path, stop):
    """metrics.csv held the stopped epoch's learning rates, or the test of a run killed before its results.json,
    twice: once from the stopped run, once from its continuation."""
    code = 128 + signal.SIGTERM if "SignalAtEpochStart" in stop[0] else -signal.SIGKILL
    continued(tmp_path, *stop, code=code)
    assert rows(tmp_path) == rows(reference)
    assert results(tmp_path)["metrics"] == results(reference)["metrics"]
    superseded = list((tmp_path / "csv").glob("metrics.superseded-*.csv"))
    assert [path.name for path in superseded] == ["metrics.superseded-1.csv"]


@pytest.mark.slow
def test_sigterm_between_a_sweeps_jobs_is_the_sentence_and_exit_code_of_one_during_fit(tmp_path):
    """Outside a Trainer's fit or test (a job's set-up, scoring its best checkpoint, results.json, between jobs)
    SIGTERM killed the process with no word of where the sweep is or how to continue it."""
    sweep = ("-m", "seed=1,2", "debug=limit", "logger=none", *QUIET, f"hydra.sweep.dir={tmp_path}")
    stopped = run_cli("train.py", *sweep,
                      "+hydra.callbacks.stopper._target_=tests.signal_at_job_start.SignalAtJobStart",
                      "+hydra.callbacks.stopper.job=1")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert stopped.stderr.rstrip().endswith(
        f"Stopped by SIGTERM (sweep directory: {tmp_path}; a run goes on from its last checkpoint when the same "
        f"command is given again with ckpt_path=auto).")
    assert (tmp_path / "0" / "results.json").is_file() and not (tmp_path / "1" / "results.json").exists()
    continued_sweep = run_cli("train.py", *sweep, "ckpt_path=auto")
    assert continued_sweep.returncode == 0, continued_sweep.stderr[-3000:]
    assert (tmp_path / "1" / "results.json").is_file()


REAE = ("experiment=reae_digits", "model.kl_steps=20", "model.max_iter=20", "model.hidden_size=100", *QUIET)
SCHEDULED = ("trainer.max_epochs=4", "seed=5", "trainer.check_val_every_n_epoch=2", *QUIET)
KILLED_AFTER_ITS_TEST = ("+callbacks.killer._target_=tests.kill_callback.KillAtTestEnd",)


@pytest.mark.slow
@pytest.mark.parametrize("run", [REAE, (*REAE, "trainer.max_epochs=3"), SCHEDULED],
                         ids=["reae", "reae-asked-for-more-epochs", "validation-every-2-epochs"])
def test_a_run_killed_after_its_test_continues_to_the_uninterrupted_results_and_rows(tmp_path, run):
    """REAE's solve steps its optimizer once, so its global step is not metrics.csv's step: its validation row was set
    aside with the test row and never logged again. Given more epochs, REAE stops itself after its solve; continued,
    it solved again in a second epoch. With validation every second epoch, last.ckpt was saved after
    the validation, before the epoch's training metrics: the continuation reported none."""
    reference, killed = uninterrupted(tmp_path / "reference", run), tmp_path / "killed"
    continued(killed, *KILLED_AFTER_ITS_TEST, run=run)
    assert results(killed)["metrics"] == results(reference)["metrics"]
    assert rows(killed) == rows(reference)


def test_a_checkpoints_logging_step_is_the_loggers_step_not_the_global_step():
    """REAE's solve steps its optimizer once per epoch, so its global step is not metrics.csv's step. The test above
    also passes with the global step: its rows are told apart by the CSV logger's row count in the checkpoint too;
    the training row put back after a kill (EPOCH_END_ROW) takes its step from here alone."""
    from framework.checkpoints import logging_step

    reae = {"global_step": 1, "loops": {"fit_loop": {"epoch_loop.state_dict": {"_batches_that_stepped": 18}}}}
    assert logging_step(reae) == 18
    assert logging_step({"global_step": 7}) == 7  # a checkpoint without the loop's state


@pytest.mark.slow
def test_a_run_without_last_ckpt_continues_from_its_best_and_writes_none(tmp_path):
    """callbacks.last_checkpoint=null: ckpt_path=auto continues from the newest best checkpoint as it is; copying it to
    last.ckpt, as for a save cut short, left a last.ckpt that the run never updates. Lightning keeps the checkpoint
    a run resumed from, so that one stays beside the later best."""
    run = ("trainer.max_epochs=4", "seed=5", "callbacks.last_checkpoint=null", *QUIET)
    reference, killed = uninterrupted(tmp_path / "reference", run), tmp_path / "killed"
    _, resumed = continued(killed, "+callbacks.killer._target_=tests.kill_callback.KillAtEpochStart",
                           "+callbacks.killer.epoch=2", run=run)
    assert "copied to last.ckpt" not in resumed.stdout + resumed.stderr
    assert results(killed)["metrics"] == results(reference)["metrics"]
    resumed_from = [line for line in (killed / "train.log").read_text().splitlines() if "Resuming from" in line]
    kept = Path(resumed_from[-1].split("Resuming from ")[1].split(",")[0]).name
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == \
        sorted({kept, *(p.name for p in (reference / "checkpoints").iterdir())})
    assert "last.ckpt" not in kept and not (killed / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_sigterm_to_a_ddp_jobs_main_process_stops_its_ranks_and_the_job_continues(tmp_path):
    """trainer=ddp_sim trains in spawned ranks; a scheduler's SIGTERM reaches the main process, which killed by it left
    the ranks training on (or, passing SIGTERM on, could leave one rank waiting for the other for good)."""
    run = ("trainer=ddp_sim", "trainer.max_epochs=2", "data.batch_size=16", *QUIET)
    done, resumed = continued(tmp_path, "+callbacks.stopper._target_=tests.signal_callback.SignalParentAtEpochStart",
                              "+callbacks.stopper.epoch=1", run=run, code=128 + signal.SIGTERM,
                              env={"OMP_NUM_THREADS": "1"})
    assert done.stderr.rstrip().endswith("Stopped by SIGTERM (a run goes on from its last checkpoint when the same "
                                         "command is given again with ckpt_path=auto).")
    assert "Traceback" not in done.stderr
    assert f"Resuming from {tmp_path / 'checkpoints' / 'last.ckpt'}, saved in epoch 0" in resumed.stdout + \
        resumed.stderr  # the ranks stopped in their second epoch
    assert results(tmp_path)["epochs_completed"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(("rank", "epoch", "batch", "last_started"), [
    (1, 1, 3, {"loop": "train", "epoch": 1, "batch": 3, "step": 39}),
    (0, 0, None, {"loop": "validation", "epoch": 0, "batch": 8, "step": 36})])
def test_sigterm_to_one_ddp_rank_alone_stops_every_rank_at_the_same_step_and_the_job_continues(tmp_path, rank, epoch,
                                                                                             batch, last_started):
    """SLURM signals each task on its own, so the ranks may get a SIGTERM a batch apart. Lightning's handler
    broadcast inside the signal handler, and each rank stopped at the end of its own batch: a SIGTERM to rank 1 alone
    left rank 0 with a traceback ("Connection reset by peer"), one to rank 0 alone left rank 1 training, and the
    job's main process waited for their results for good. Now the ranks agree on it: at the next training batch
    (rank 1 signalled before its fourth batch of epoch 1: both stop before the fifth), or at the end of the
    validation during which it came (epoch 0's last, 9 batches a rank: its checkpoints are saved first)."""
    run = ("trainer=ddp_sim", "trainer.max_epochs=2", "data.batch_size=16", *QUIET)
    stop = ("+callbacks.stopper._target_=tests.signal_callback.SignalOneRank", f"+callbacks.stopper.rank={rank}",
            f"+callbacks.stopper.epoch={epoch}", f"+callbacks.stopper.batch={'null' if batch is None else batch}",
            f"+callbacks.stopper.dirpath={tmp_path / 'stops'}")
    done, resumed = continued(tmp_path, *stop, run=run, code=128 + signal.SIGTERM, env={"OMP_NUM_THREADS": "1"})
    assert done.stderr.rstrip().endswith("Stopped by SIGTERM (a run goes on from its last checkpoint when the same "
                                         "command is given again with ckpt_path=auto).")
    assert "Traceback" not in done.stderr
    stops = [json.loads((tmp_path / "stops" / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [{key: value for key, value in stop.items() if key != "port"} for stop in stops] == [last_started] * 2
    assert results(tmp_path)["epochs_completed"] == 2


@pytest.mark.parametrize(("devices", "agreed"), [(1, False), (2, True)])
def test_only_a_trainer_of_several_ranks_agrees_on_sigterm_at_each_batch(devices, agreed):
    """One process's batches call no hook for it (the framework's overhead over a plain loop is measured per batch)."""
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with_sigterm_agreed_across_ranks(trainer)
    assert isinstance(trainer._signal_connector, SigtermNotedUnderDDP)
    assert any(isinstance(callback, SigtermAgreed) for callback in trainer.callbacks) == agreed


@pytest.mark.slow
def test_sigterm_to_a_one_node_ddp_command_stops_both_its_ranks_with_the_sentence(tmp_path):
    """`python train.py trainer=ddp` on one machine (the README's DDP on one node; here two CPU processes): Lightning
    starts rank 1 as a command of its own and passes on a SIGTERM that reaches the command (rank 0). With Lightning's
    handler, which broadcast inside the signal handler, the two signals' moments decided: rank 1 failed with a
    traceback ("Connection closed by peer") or the job hung in some runs, and stopped in others (the deterministic
    cases: the test above)."""
    stop = ("+callbacks.stopper._target_=tests.signal_callback.SignalOneRank", "+callbacks.stopper.rank=0",
            "+callbacks.stopper.epoch=1", "+callbacks.stopper.batch=3",
            f"+callbacks.stopper.dirpath={tmp_path / 'stops'}")
    done = run_cli("train.py", "trainer=ddp", "trainer.devices=2", "trainer.sync_batchnorm=false",
                   "trainer.max_epochs=2", "data.batch_size=16", *QUIET, f"hydra.run.dir={tmp_path}", *stop,
                   env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert done.stderr.count("Stopped by SIGTERM (a run goes on from its last checkpoint when the same command is "
                             "given again with ckpt_path=auto).") == 2  # each rank's
    assert "Traceback" not in done.stderr
    assert done.stdout.count("Output directory:") == 1  # rank 1 shares the console and says only warnings there
    stops = [json.loads((tmp_path / "stops" / f"rank{k}.json").read_text()) for k in (0, 1)]
    port = stops[0].pop("port")
    assert stops == [{"loop": "train", "epoch": 1, "batch": 3, "step": 39}, {**stops[0], "port": port}]
    assert FIRST_RENDEZVOUS_PORT <= port < int(EPHEMERAL_PORTS.read_text().split()[0])  # no outgoing socket's


@pytest.mark.slow
def test_a_ddp_job_continued_after_its_test_logs_that_test_once(tmp_path):
    """trainer=ddp_sim fits and tests in worker processes, and Lightning sent back no loop state: the test row was
    logged at epoch 0, step 0, before every checkpoint, so a job continued after its test (killed before its
    results.json) kept that row beside its new one."""
    run, env = ("trainer=ddp_sim", "trainer.max_epochs=2", *QUIET), {"OMP_NUM_THREADS": "1"}
    reference = uninterrupted(tmp_path / "reference", run, env=env)
    assert (rows(reference)[-1]["epoch"], rows(reference)[-1]["step"]) == ("2", "18")  # 9 batches a rank and epoch
    killed = tmp_path / "killed"
    shutil.copytree(reference, killed)
    (killed / "results.json").unlink()
    resumed = run_cli("train.py", *run, f"hydra.run.dir={killed}", "ckpt_path=auto", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(killed) == rows(reference)
    assert results(killed)["metrics"] == results(reference)["metrics"]


TWICE_AN_EPOCH = ("trainer.max_epochs=3", "seed=5", "+trainer.val_check_interval=0.5", *QUIET)  # 18 batches an epoch


@pytest.fixture(scope="module")
def validated_twice_an_epoch(tmp_path_factory) -> Path:
    return uninterrupted(tmp_path_factory.mktemp("validated_twice_an_epoch"), TWICE_AN_EPOCH)


@pytest.mark.slow
def test_a_best_checkpoint_saved_within_an_epoch_is_passed_over_for_the_last_epochs_end(validated_twice_an_epoch,
                                                                                         tmp_path):
    """With validation twice an epoch, a best checkpoint is saved mid-epoch. Continued from it, the epoch's training
    means would cover only the batches after it (Lightning keeps no partial means in a checkpoint). last.ckpt, saved
    at the epoch's end before it, continues exactly. The best one passed over stayed beside its new save, which took
    the name epoch_002-v1.ckpt and was reported as the run's best."""
    _, resumed = continued(tmp_path, "+callbacks.killer._target_=tests.kill_callback.KillAtStep",
                           "+callbacks.killer.step=48", run=TWICE_AN_EPOCH)  # after epoch 2's first validation
    checkpoints = tmp_path / "checkpoints"
    assert f"Resuming from {checkpoints / 'last.ckpt'}, saved in epoch 1" in resumed.stdout + resumed.stderr
    assert results(tmp_path)["metrics"] == results(validated_twice_an_epoch)["metrics"]
    assert rows(tmp_path) == rows(validated_twice_an_epoch)
    names = lambda folder: sorted(path.name for path in folder.iterdir() if path.is_file())
    assert names(checkpoints) == names(validated_twice_an_epoch / "checkpoints") == ["epoch_002.ckpt", "last.ckpt"]
    assert names(checkpoints / "superseded-1") == ["epoch_002.ckpt"]
    assert Path(results(tmp_path)["best_checkpoint"]).name == "epoch_002.ckpt"


@pytest.mark.slow
def test_a_run_continued_from_a_checkpoint_saved_within_an_epoch_trains_on_with_the_batches_after_it(
        validated_twice_an_epoch, tmp_path):
    """Lightning served the continued epoch again from its first batch (the loader kept no state), so the weights
    differed from an uninterrupted run's; and the validation logged just before the checkpoint was set aside as if
    logged after it, and never logged again."""
    stopped = run_cli("train.py", *TWICE_AN_EPOCH, f"hydra.run.dir={tmp_path}",
                      "+callbacks.killer._target_=tests.kill_callback.KillAtStep", "+callbacks.killer.step=48")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    within = tmp_path / "checkpoints" / "epoch_002.ckpt"  # the best: saved after the validation at step 44
    resumed = run_cli("train.py", *TWICE_AN_EPOCH, f"hydra.run.dir={tmp_path}", f"ckpt_path={within}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {within}, saved in epoch 2 (counted from 0, as in the metrics) at global step 45" in \
        resumed.stdout + resumed.stderr
    evaluated = lambda run_dir: {key: value for key, value in results(run_dir)["metrics"].items()
                                 if key.startswith(("val/", "test/"))}
    assert evaluated(tmp_path) == evaluated(validated_twice_an_epoch)
    # the training means of epoch 2 are those of the batches after the checkpoint; every other row is the same
    assert all_but_the_training_row_of(2, tmp_path) == all_but_the_training_row_of(2, validated_twice_an_epoch)
    assert len(rows(tmp_path)) == len(rows(validated_twice_an_epoch))


@pytest.mark.slow
@pytest.mark.parametrize("model", [(), DROPOUT], ids=["lenet5", "dropout"])
def test_a_run_saving_last_ckpt_every_few_steps_continues_from_within_an_epoch(reference, tmp_path, model):
    """callbacks.last_checkpoint.every_n_train_steps: ckpt_path=auto continues from within an epoch. The learning
    rates logged at that epoch's start were written to metrics.csv only every 100 rows, so the kill lost them. With
    dropout: the training loader's iterator drew its base seed from the global random state after the restored
    states, and the weights ended up to 0.08 apart."""
    expected = uninterrupted(tmp_path / "uninterrupted", (*RUN, *model)) if model else reference
    run, killed = (*RUN, *model, "+callbacks.last_checkpoint.every_n_train_steps=5"), tmp_path / "continued"
    _, resumed = continued(killed, "+callbacks.killer._target_=tests.kill_callback.KillAtStep",
                           "+callbacks.killer.step=33", run=run)
    assert "saved in epoch 1 (counted from 0, as in the metrics) at global step 30" in resumed.stdout + resumed.stderr
    assert results(killed)["metrics"] == results(expected)["metrics"]  # the last epoch's, whole
    assert all_but_the_training_row_of(1, killed) == all_but_the_training_row_of(1, expected)
    assert len(rows(killed)) == len(rows(expected))
    weights = [torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for folder in (killed, expected)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[1])


@pytest.mark.slow
@pytest.mark.parametrize("limit", [("+trainer.max_steps=40",), ()], ids=["a-larger-max-steps", "without-max-steps"])
def test_a_run_that_max_steps_stopped_within_an_epoch_continues_like_an_uninterrupted_one(reference, tmp_path, limit):
    """Stopped by max_steps=30, 12 batches into epoch 1 (of 18), where Lightning ends the epoch and saves it. Continued
    to max_steps=40, it went on with epoch 2's order (the epoch counted processed) and reported 4 epochs for 3; without
    max_steps, it went on with epoch 2, and the rest of epoch 1 was never trained."""
    run = (*RUN, *limit)
    expected = uninterrupted(tmp_path / "uninterrupted", run) if limit else reference
    killed = tmp_path / "continued"
    continued(killed, "++trainer.max_steps=30", run=run, code=0)
    assert results(killed)["metrics"] == results(expected)["metrics"]
    assert results(killed)["epochs_completed"] == results(expected)["epochs_completed"]
    assert all_but_the_training_row_of(1, killed) == all_but_the_training_row_of(1, expected)
    assert len(rows(killed)) == len(rows(expected))  # the stopped epoch's end row and test row are set aside
    weights = [torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for folder in (killed, expected)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[1])


def test_a_run_that_max_steps_stopped_before_a_validation_continues_at_the_uninterrupted_steps(tmp_path):
    """Stopped by max_steps=6 after batch 1 of epoch 1, whose validation (val_check_interval=0.5) had run: continued,
    Lightning counted that batch twice for the loggers, and every later row was logged a step later."""
    run = (*QUIET, "trainer.max_epochs=-1", "++trainer.limit_train_batches=4", "+trainer.val_check_interval=0.5",
           "+trainer.max_steps=11", "logger=csv")
    expected = uninterrupted(tmp_path / "uninterrupted", run)
    stopped = tmp_path / "continued"
    continued(stopped, "++trainer.max_steps=6", run=run, code=0)
    assert all_but_the_training_row_of(1, stopped) == all_but_the_training_row_of(1, expected)
    assert [row["step"] for row in rows(stopped)] == [row["step"] for row in rows(expected)]
    assert results(stopped)["metrics"] == results(expected)["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize(("batch_size", "epoch_1_ends_at"), [(128, 33), (32, 42)])
def test_a_run_continued_within_an_epoch_with_another_batch_size_trains_the_rest_of_it_and_validates(
        tmp_path, batch_size, epoch_1_ends_at):
    """Stopped after 12 batches of 64 of epoch 1 (768 of its 1,150 images), continued in batches of 128 (3 left)
    or 32 (12 left). Lightning counted the epoch's batches in the checkpoint's size while the loader served the new:
    with 128 the epoch ended before the rest was trained, and with 32 it ran past its last batch, whose validation
    never came."""
    run = (*RUN, "+callbacks.last_checkpoint.every_n_train_steps=5", "callbacks.model_checkpoint=null")
    stopped = run_cli("train.py", *run, f"hydra.run.dir={tmp_path}",
                      "+callbacks.killer._target_=tests.kill_callback.KillAtStep", "+callbacks.killer.step=33")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    resumed = run_cli("train.py", *run, f"hydra.run.dir={tmp_path}", "ckpt_path=auto", f"data.batch_size={batch_size}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    validated = [(row["epoch"], row["step"]) for row in rows(tmp_path) if row["val/acc"]]
    per_epoch = -(-1150 // batch_size)
    assert validated == [("0", "17"), ("1", str(epoch_1_ends_at - 1)), ("2", str(epoch_1_ends_at + per_epoch - 1))]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == \
        epoch_1_ends_at + per_epoch


EVERY_6_STEPS = (*RUN, "+callbacks.last_checkpoint.every_n_train_steps=6", "callbacks.model_checkpoint=null")
EVERY_10_STEPS = (*RUN, "+callbacks.last_checkpoint.every_n_train_steps=10")
STOPPED_EARLY = ("trainer.max_epochs=6", "seed=5", "+trainer.val_check_interval=0.5",
                 "callbacks.early_stopping.patience=0", "+callbacks.last_checkpoint.every_n_train_steps=9", *QUIET)


@pytest.mark.slow
@pytest.mark.parametrize(("run", "stop"), [
    (EVERY_6_STEPS, ("+callbacks.killer._target_=tests.kill_callback.KillAtEpochStart", "+callbacks.killer.epoch=2")),
    ((*EVERY_10_STEPS, "callbacks.model_checkpoint=null"), KILLED_AFTER_ITS_TEST),
    ((*EVERY_10_STEPS, "+trainer.max_steps=40"), KILLED_AFTER_ITS_TEST),
    (STOPPED_EARLY, KILLED_AFTER_ITS_TEST),
], ids=["on-an-epochs-last-batch", "saving-at-steps-only", "on-the-step-max-steps-ends", "at-early-stopping"])
def test_a_save_every_few_steps_waits_for_its_batchs_validation_and_epoch_end(tmp_path, run, stop):
    """last.ckpt every n steps, of 18-batch epochs. A save that fell on an epoch's last batch (every 6 steps; the one
    max_steps=40 ends the run in; the one early stopping ends the run after, in the middle of an epoch) was taken at
    the batch's end, and Lightning, which saves once a step, then skipped the epoch's own last.ckpt: continued, the
    run went past that epoch's validation and end (rows, learning rates and training metrics missing, one epoch fewer
    reported). Saving every 10 steps, Lightning saved at steps only, so a finished run's last.ckpt was from the middle
    of its last epoch. (Without a best checkpoint where one saved at that epoch's end would be continued from.)"""
    reference, killed = uninterrupted(tmp_path / "reference", run), tmp_path / "killed"
    continued(killed, *stop, run=run)
    assert results(killed)["metrics"] == results(reference)["metrics"]
    assert results(killed)["epochs_completed"] == results(reference)["epochs_completed"]
    assert rows(killed) == rows(reference)


@pytest.mark.slow
def test_a_run_continued_from_the_best_checkpoint_of_an_epochs_last_validation_keeps_that_epochs_training_row(
        validated_twice_an_epoch, tmp_path):
    """That checkpoint is saved at the step of the epoch's training row, which Lightning logs after it and does not
    log again in a continuation: the row was set aside, for good."""
    stopped = run_cli("train.py", *TWICE_AN_EPOCH, f"hydra.run.dir={tmp_path}",
                      "+callbacks.killer._target_=tests.kill_callback.KillAtEpochStart", "+callbacks.killer.epoch=2")
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    best = tmp_path / "checkpoints" / "epoch_001.ckpt"  # after the validation of epoch 1's last batch
    resumed = run_cli("train.py", *TWICE_AN_EPOCH, f"hydra.run.dir={tmp_path}", f"ckpt_path={best}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert results(tmp_path)["metrics"] == results(validated_twice_an_epoch)["metrics"]
    assert rows(tmp_path) == rows(validated_twice_an_epoch)


@pytest.mark.slow
def test_a_run_with_loader_workers_continues_with_the_uninterrupted_batches(tmp_path):
    """A loader with workers draws its indices as soon as Lightning iterates it, which a continued run does before it
    sets the epoch: the continued epoch was served epoch 0's order."""
    run = (*RUN, "data.num_workers=1")
    reference, killed = uninterrupted(tmp_path / "reference", run), tmp_path / "killed"
    continued(killed, "+callbacks.killer._target_=tests.kill_callback.KillAtEpochStart", "+callbacks.killer.epoch=2",
              run=run)
    assert results(killed)["metrics"] == results(reference)["metrics"]
    assert rows(killed) == rows(reference)


@pytest.mark.slow
def test_a_run_continued_from_an_older_checkpoint_of_its_own_sets_the_later_ones_aside(tmp_path):
    """ckpt_path=<an earlier epoch's checkpoint> in the run's own folder retrains the epochs after it: their
    checkpoints stayed, and the new saves of those epochs took the names epoch_001-v1.ckpt, ..."""
    run = (*RUN, "callbacks.model_checkpoint.save_top_k=-1")
    uninterrupted(tmp_path, run)
    before = results(tmp_path)["metrics"], rows(tmp_path)
    rewound = run_cli("train.py", *run, f"hydra.run.dir={tmp_path}",
                      f"ckpt_path={tmp_path / 'checkpoints' / 'epoch_000.ckpt'}")
    assert rewound.returncode == 0, rewound.stderr[-3000:]
    assert (results(tmp_path)["metrics"], rows(tmp_path)) == before
    names = lambda folder: sorted(path.name for path in folder.iterdir() if path.is_file())
    assert names(tmp_path / "checkpoints") == ["epoch_000.ckpt", "epoch_001.ckpt", "epoch_002.ckpt", "last.ckpt"]
    assert names(tmp_path / "checkpoints" / "superseded-1") == ["epoch_001.ckpt", "epoch_002.ckpt", "last.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [
    ("+callbacks.killer._target_=tests.kill_callback.KillAtEpochStart", "+callbacks.killer.epoch=2"),
    KILLED_AFTER_ITS_TEST,
], ids=["killed-in-an-epoch", "killed-after-its-test"])
def test_a_run_with_max_steps_continues_as_one_without(reference, tmp_path, stop):
    """Lightning takes any continuation of a run with trainer.max_steps for one within an epoch: from last.ckpt it ran
    that epoch's end again, trained no further batch and tested epoch 1's weights; killed while testing, its test row
    said epoch 2 for 3."""
    continued(tmp_path, *stop, run=(*RUN, "+trainer.max_steps=54"))  # RUN's 3 epochs of 18 batches
    assert results(tmp_path)["metrics"] == results(reference)["metrics"]
    assert rows(tmp_path) == rows(reference)


@pytest.mark.slow
def test_a_run_that_max_steps_ended_within_an_epoch_killed_after_its_test_continues_to_its_results(tmp_path):
    """max_steps=30 ends the run 12 batches into epoch 1 (of 18), which counts as completed: killed while testing and
    continued, the run must not take itself for one that max_steps ended at an epoch's end."""
    run = (*RUN, "+trainer.max_steps=30")
    reference, killed = uninterrupted(tmp_path / "reference", run), tmp_path / "killed"
    continued(killed, *KILLED_AFTER_ITS_TEST, run=run)
    assert results(reference)["epochs_completed"] == 2
    assert {key: results(killed)[key] for key in ("epochs_completed", "metrics")} == \
        {key: results(reference)[key] for key in ("epochs_completed", "metrics")}
    assert rows(killed) == rows(reference)


@pytest.mark.slow
def test_a_run_given_a_larger_max_steps_goes_on_within_the_epoch_that_max_steps_cut_short(tmp_path):
    """As Lightning continues it; only an epoch that ran to its last batch is continued at the next epoch."""
    run = ("seed=5", "trainer.max_epochs=-1", *QUIET)
    uninterrupted(tmp_path, (*run, "+trainer.max_steps=40"))  # 2 epochs of 18 batches, and 4 of the third
    longer = run_cli("train.py", *run, "+trainer.max_steps=60", f"hydra.run.dir={tmp_path}", "ckpt_path=auto")
    assert longer.returncode == 0, longer.stderr[-3000:]
    validated = [(row["epoch"], row["step"]) for row in rows(tmp_path) if row["val/acc"]]
    assert validated == [("0", "17"), ("1", "35"), ("2", "53")]  # the third epoch ended after its other 14 batches


def saved_within_an_epoch(step: int, rows_logged: int) -> dict:
    """A checkpoint as Lightning saves it after a validation within an epoch (the epoch processed as far as completed),
    with the CSV logger's row count."""
    return {"global_step": step, CSV_ROWS_LOGGED: rows_logged, "loops": {"fit_loop": {
        "epoch_progress": {"current": {"processed": 2, "completed": 2}},
        "epoch_loop.state_dict": {"_batches_that_stepped": step}}}}


def test_checkpoints_saved_at_the_step_continued_from_are_set_aside_only_when_saved_after_it(tmp_path):
    """At one global step a checkpoint at a batch's end is saved before the batch's validation, and a best one after
    it; the validation's row tells them apart."""
    for name, step, rows_logged in (("before.ckpt", 40, 9), ("continued.ckpt", 45, 7), ("same_step_later.ckpt", 45, 8)):
        torch.save(saved_within_an_epoch(step, rows_logged), tmp_path / name)
    set_aside_checkpoints_saved_after(tmp_path, saved_within_an_epoch(45, 7))
    assert sorted(path.name for path in tmp_path.glob("*.ckpt")) == ["before.ckpt", "continued.ckpt"]
    assert [path.name for path in (tmp_path / "superseded-1").iterdir()] == ["same_step_later.ckpt"]


def test_rows_logged_before_the_checkpoint_stay_whatever_their_step(tmp_path):
    """Rows are set aside when logged after the save (by the logger's count) and at the step the continued run logs
    from (one after a checkpoint saved within a batch) or later."""
    (tmp_path / "csv").mkdir()
    logged = [["0", "17", "0.1"], ["0", "44", "0.5"], ["", "45", "0.02"], ["0", "45", "0.6"], ["1", "44", "0.7"]]
    with open(tmp_path / "csv" / "metrics.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["epoch", "step", "value"], *logged])
    set_aside_rows_logged_after(tmp_path, saved_within_an_epoch(44, 3))  # the continued run logs from step 45
    read = lambda name: list(csv.reader(open(tmp_path / "csv" / name, newline="")))[1:]
    assert read("metrics.csv") == [*logged[:3], logged[4]]  # the third, at 45, was logged before the save
    assert read("metrics.superseded-1.csv") == [logged[3]]
    # a row torn by the kill, without its line end: set aside too, or the next row would be appended to it
    with open(tmp_path / "csv" / "metrics.csv", "a", newline="") as handle:
        handle.write("1,4")
    set_aside_rows_logged_after(tmp_path, saved_within_an_epoch(44, 4))
    assert read("metrics.csv") == [*logged[:3], logged[4]] and read("metrics.superseded-2.csv") == [["1", "4"]]
    assert (tmp_path / "csv" / "metrics.csv").read_bytes().endswith(b"\n")


@pytest.mark.parametrize("first_write", ["log line", "model summary"])
def test_a_run_whose_stdout_reader_has_gone_stops_as_a_pipes_writer(tmp_path, first_write):
    """``python train.py | head -3``: once the reader has gone, the next write stops the run with the code a shell
    gives a command that a closed pipe stopped (141), whether that write is a log line (logging printed a "Logging
    error" and its traceback for every later line) or rich's model summary (rich exits with 1 by itself). The run's
    log file says why it stopped. A fresh interpreter: a forked one's stdout is not the one python opens for a pipe."""
    logging = [] if first_write == "log line" else ["hydra/job_logging=disabled"]
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "train.py", "debug=smoke", f"hydra.run.dir={tmp_path}", *logging],
                              cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        os.close(write)
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    if first_write == "log line":
        assert (tmp_path / "train.log").read_text().rstrip().endswith(
            "Stopped: its standard output was closed, the reader of its pipe gone (a run goes on from its last "
            "checkpoint when the same command is given again with ckpt_path=auto).")


def test_sigterm_to_every_process_of_a_run_with_loader_workers_is_the_stop_of_a_sigterm(tmp_path):
    """SLURM signals a job step's every process: a loader worker died of the SIGTERM, and the run exited 1 with a
    "DataLoader worker is killed by signal" traceback in place of its sentence and 143; continued, it finishes."""
    run = ("train.py", "trainer.max_epochs=2", "logger=none", "data.num_workers=2", f"hydra.run.dir={tmp_path}",
           *QUIET)
    stopped = run_cli(*run, "+callbacks.stop._target_=tests.signal_callback.SignalStepAtEpochStart",
                      "+callbacks.stop.epoch=1")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "Stopped by SIGTERM" in stopped.stderr, stopped.stderr[-3000:]
    continued = run_cli(*run, "ckpt_path=auto")
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert results(tmp_path)["epochs_completed"] == 2


def test_sigterm_as_training_ends_stops_the_run_before_its_test(tmp_path):
    """Lightning looks for a SIGTERM at an epoch's end: one in on_train_end was forgotten, and the run scored its best
    checkpoint, tested and exited 0, a SLURM job working on towards its SIGKILL."""
    run = ("train.py", "trainer.max_epochs=2", "logger=none", f"hydra.run.dir={tmp_path}", *QUIET)
    stopped = run_cli(*run, "+callbacks.stop._target_=tests.signal_callback.SignalAtTrainEnd")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "Stopped by SIGTERM" in stopped.stderr and not (tmp_path / "results.json").exists()
    continued = run_cli(*run, "ckpt_path=auto")
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert results(tmp_path)["epochs_completed"] == 2 and "test/acc" in results(tmp_path)["metrics"]


def test_a_stopped_run_in_a_folder_named_after_the_time_is_told_its_folder_and_continues_by_the_sentence(tmp_path):
    """Without hydra.run.dir a run's folder is named after the time it started: "the same command again with
    ckpt_path=auto" started afresh in a new folder. The sentence names the folder to give."""
    run = (str(ROOT / "train.py"), "trainer.max_epochs=2", "logger=none", *QUIET)
    stopped = run_cli(*run, "+callbacks.stop._target_=tests.signal_callback.SignalAtEpochStart",
                      "+callbacks.stop.epoch=1", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    [folder] = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert stopped.stderr.rstrip().endswith(f"a run goes on from its last checkpoint when the same command is given "
                                            f"again with ckpt_path=auto hydra.run.dir={folder}).")
    continued = run_cli(*run, "ckpt_path=auto", f"hydra.run.dir={folder}", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert results(folder)["epochs_completed"] == 2 and "Resuming from" in (folder / "train.log").read_text()


@pytest.mark.parametrize(("given", "told"), [
    ([], " hydra.run.dir=/runs/a"), (["hydra.run.dir=/runs/a"], ""), (["++hydra.run.dir=/runs/a"], "")])
def test_the_stop_sentence_names_the_run_s_folder_only_where_the_command_did_not_give_it(monkeypatch, capsys, given,
                                                                                       told):
    """`++hydra.run.dir=` gives the folder too: the remedy repeated it, and the command it told to give had the key
    twice."""
    from framework import stopping

    monkeypatch.setattr(sys, "argv", ["train.py", "trainer.max_epochs=2", *given])
    monkeypatch.setattr(stopping, "job", stopping.JobRecord(started=True, script="train", run_dir="/runs/a"))
    with pytest.raises(SystemExit) as stop:
        stopping.stopped_by(signal.SIGINT)
    assert stop.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err.splitlines() == [
        f"Stopped by SIGINT (a run goes on from its last checkpoint when the same command is given again with "
        f"ckpt_path=auto{told})."]


def test_a_stop_closes_the_progress_bars_inner_first_and_writes_its_sentence_to_the_log_file_alone(monkeypatch,
                                                                                                  capsys, tmp_path):
    """The console gets the sentence once, from the print; the job's log file (train.log) gets it as an error."""
    import io
    import logging

    from tqdm import tqdm

    from framework import stopping

    closed = []

    class Bar:  # an open tqdm bar: its place on the terminal, and its close
        def __init__(self, pos: int):
            self.pos = pos

        def close(self) -> None:
            closed.append(self.pos)

    monkeypatch.setattr(tqdm, "_instances", [Bar(0), Bar(1)], raising=False)
    monkeypatch.setattr(sys, "argv", ["evaluate.py"])
    monkeypatch.setattr(stopping, "job", stopping.JobRecord(started=True, script="evaluate"))
    log_file, console = logging.FileHandler(tmp_path / "train.log"), logging.StreamHandler(io.StringIO())
    log_file.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for handler in (log_file, console):
        logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(SystemExit) as stop:
            stopping.stopped_by(signal.SIGINT)
    finally:
        for handler in (log_file, console):
            logging.getLogger().removeHandler(handler)
        log_file.close()
    assert stop.value.code == 128 + signal.SIGINT and closed == [1, 0]
    assert capsys.readouterr().err == "Stopped by SIGINT.\n" and console.stream.getvalue() == ""
    assert (tmp_path / "train.log").read_text() == "ERROR user_error: Stopped by SIGINT.\n"


def test_sigterm_outside_a_fit_kills_ddp_spawns_ranks_and_stops_with_lightnings_exception(monkeypatch):
    """A rank that got a SIGTERM passed on stopped a batch after the others and waited for them for good: they are
    killed. While a Trainer runs, Lightning's handler is installed and calls this one, which leaves the stop to it."""
    import multiprocessing
    from types import SimpleNamespace

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from framework import stopping

    done = []
    monkeypatch.setattr(multiprocessing, "active_children", lambda: [SimpleNamespace(pid=4242)])
    monkeypatch.setattr(os, "kill", lambda pid, number: done.append((pid, number)))
    monkeypatch.setattr(stopping, "stop_submitit_local_jobs", lambda: done.append("local jobs stopped"))
    installed = signal.signal(signal.SIGTERM, stopping.sigterm_outside_lightning)
    try:
        with pytest.raises(SIGTERMException):
            stopping.sigterm_outside_lightning(signal.SIGTERM, None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as when Lightning's own handler is the one installed
        stopping.sigterm_outside_lightning(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, installed)
    assert done == [(4242, signal.SIGKILL), "local jobs stopped"]


def test_the_exit_code_of_a_job_s_end_is_its_signal_s_its_mistake_s_or_its_own():
    """What wandb records as the run's state: Ctrl+C outside Lightning's loops and in them (its sys.exit(1) after the
    KeyboardInterrupt), a user's mistake, a SystemExit's own code, its message's 1 or sys.exit()'s 0, and a bug."""
    from framework.errors import ConfigError
    from framework.stopping import exit_code_of

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)
    except SystemExit as exit_after_ctrl_c:
        lightnings = exit_after_ctrl_c
    ended = (KeyboardInterrupt(), lightnings, ConfigError("bad"), SystemExit(3), SystemExit("a message"), SystemExit(),
             ValueError())
    assert [exit_code_of(error) for error in ended] == [130, 130, 2, 3, 1, 0, 1]
    assert subprocess.run([sys.executable, "-c", "raise SystemExit()"]).returncode == 0  # as Python exits on it


def test_each_entry_point_starts_with_a_fresh_job_record(monkeypatch):
    """What an earlier entry point in this process learnt (a sweep directory, jobs on SLURM) is not this one's."""
    from framework.entry_point import run_entry_point
    from framework.stopping import JobRecord, job

    monkeypatch.setattr(sys, "argv", ["train.py"])
    for key, value in {"started": True, "sweep_dir": "/sweeps/earlier", "jobs_on_slurm": True}.items():
        monkeypatch.setattr(job, key, value)
    seen = []
    run_entry_point(lambda: seen.append(dict(vars(job))))
    assert seen == [vars(JobRecord())]


def test_a_print_whose_reader_has_gone_stops_with_141_and_leaves_the_last_flush_quiet(monkeypatch):
    """A print buffered in the block reaches the closed pipe as the block ends; stdout then writes to /dev/null, so
    that the interpreter's own last flush raises nothing (Python's exit code 120 and an "Exception ignored")."""
    from framework.stopping import stopping_quietly_when_stdout_closes

    read, write = os.pipe()
    os.close(read)
    with open(write, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(SystemExit) as stop, stopping_quietly_when_stdout_closes():
            print("the line the reader would have read")
        print("a line after the stop")
        stdout.flush()
    assert stop.value.code == 128 + signal.SIGPIPE


def test_a_broken_pipe_that_is_not_stdout_s_keeps_its_traceback(monkeypatch, tmp_path):
    """Only a closed standard output is the user's doing (``| head``): another pipe or socket is a bug's."""
    from framework.stopping import stopping_quietly_when_stdout_closes

    with open(tmp_path / "stdout", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(BrokenPipeError), stopping_quietly_when_stdout_closes():
            raise BrokenPipeError("a socket's reader has gone")


def test_a_log_line_to_a_closed_stream_other_than_stdout_is_logging_s_error_and_logging_is_put_back(monkeypatch,
                                                                                                    capsys):
    """Only stdout's reader gone stops the run; a log line that another closed stream refused is logging's own
    "Logging error", even while stdout's reader has gone too. Outside the block, logging handles errors as before."""
    import logging

    from framework.stopping import logging_stopping_when_stdout_closes

    class Gone:
        def write(self, text: str) -> None:
            raise BrokenPipeError

        def flush(self) -> None:
            pass

    read, write = os.pipe()
    os.close(read)
    handle_error = logging.StreamHandler.handleError
    with open(write, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with logging_stopping_when_stdout_closes():
            logging.StreamHandler(Gone()).emit(logging.makeLogRecord({"msg": "a line"}))
    assert "--- Logging error ---" in capsys.readouterr().err
    assert logging.StreamHandler.handleError is handle_error


def saved_at_an_epochs_end(step: int, rows_logged: int) -> dict:
    """A checkpoint as Lightning saves it in on_train_epoch_end: the epoch processed, not yet completed."""
    return {"global_step": step, CSV_ROWS_LOGGED: rows_logged, "loops": {"fit_loop": {
        "epoch_progress": {"current": {"processed": 2, "completed": 1}},
        "epoch_loop.state_dict": {"_batches_that_stepped": step}}}}


def test_ckpt_path_auto_continues_from_last_ckpt_unless_a_checkpoint_of_a_later_epochs_end_is_beside_it(tmp_path):
    """A best checkpoint saved within an epoch is passed over for last.ckpt, and is continued from only where there is
    nothing else; one saved at the same step as last.ckpt (the same epoch's end) leaves last.ckpt the one."""
    from framework.checkpoints import checkpoint_to_continue

    save = lambda checkpoint, name: torch.save(checkpoint, tmp_path / name) or tmp_path / name
    assert checkpoint_to_continue(tmp_path) is None
    last = save(saved_at_an_epochs_end(36, 8), "last.ckpt")
    assert checkpoint_to_continue(tmp_path) == last  # alone (callbacks.model_checkpoint=null)
    save(saved_at_an_epochs_end(36, 8), "epoch_001.ckpt")
    assert checkpoint_to_continue(tmp_path) == last  # the same save: last.ckpt
    save(saved_within_an_epoch(45, 10), "epoch_002.ckpt")
    assert checkpoint_to_continue(tmp_path) == last  # within an epoch, later: passed over
    later = save(saved_at_an_epochs_end(54, 12), "epoch_002-v1.ckpt")
    assert checkpoint_to_continue(tmp_path) == later  # stopped between an epoch's best checkpoint and its last.ckpt
    last.unlink()
    later.unlink()
    assert checkpoint_to_continue(tmp_path) == tmp_path / "epoch_001.ckpt"  # no last.ckpt: an epoch's end first
    (tmp_path / "epoch_001.ckpt").unlink()
    assert checkpoint_to_continue(tmp_path) == tmp_path / "epoch_002.ckpt"  # nothing else
    last.write_bytes(b"damaged")
    assert checkpoint_to_continue(tmp_path) == tmp_path / "epoch_002.ckpt"  # readable, within an epoch or not
    (tmp_path / "epoch_002.ckpt").write_bytes(b"damaged too")
    assert checkpoint_to_continue(tmp_path) == last  # nothing readable: last.ckpt, whose sentence says so


def test_a_checkpoint_saved_before_any_step_is_readable_and_a_foreign_file_is_not(tmp_path):
    """An unreadable last.ckpt is set aside as damaged (complete_an_interrupted_save): a checkpoint at step 0 without a
    CSV logger (logger=none) is readable all the same."""
    from framework.checkpoints import saved_when

    torch.save({"global_step": 0}, tmp_path / "step0.ckpt")
    (tmp_path / "foreign.ckpt").write_bytes(b"not a checkpoint")
    assert saved_when(tmp_path / "step0.ckpt").readable
    assert saved_when(tmp_path / "foreign.ckpt") == ((-1, -1), False)
    assert not saved_when(tmp_path / "foreign.ckpt").readable


def test_ckpt_path_auto_and_last_resolve_to_the_newest_checkpoint_and_a_given_file_to_its_absolute_path(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    from framework.checkpoints import resolve_ckpt_path

    (tmp_path / "checkpoints").mkdir()
    trainer = SimpleNamespace(checkpoint_callbacks=[ModelCheckpoint(dirpath=tmp_path / "checkpoints")])
    assert resolve_ckpt_path("auto", trainer) is None  # nothing saved yet: a fresh start
    torch.save(saved_at_an_epochs_end(18, 4), tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path("auto", trainer) == resolve_ckpt_path("last", trainer) == \
        str(tmp_path / "checkpoints" / "last.ckpt")
    monkeypatch.chdir(tmp_path)
    assert resolve_ckpt_path("checkpoints/last.ckpt", trainer) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path("gone.ckpt", trainer) == "gone.ckpt" and resolve_ckpt_path(None, trainer) is None


def cut_short(step: int, *callbacks: dict) -> dict:
    """Saved at the end Lightning gives an epoch that max_steps (or a stop) cut short: not at its last batch."""
    checkpoint = saved_at_an_epochs_end(step, 5)
    checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"] = {"is_last_batch": False}
    return {**checkpoint, "callbacks": dict(enumerate(callbacks))}


def test_an_epoch_cut_short_goes_on_where_the_continued_run_trains_further_and_early_stopping_did_not_stop_it():
    from framework.resuming import epoch_goes_on, first_step_logged_again

    for max_steps in (-1, None, 41):
        assert epoch_goes_on(cut_short(40), max_steps) and first_step_logged_again(cut_short(40), max_steps) == 39
    assert not epoch_goes_on(cut_short(40), 40) and first_step_logged_again(cut_short(40), 40) == 40  # no further
    stopped = {"RunEarlyStopping{'monitor': 'val/loss', 'mode': 'min'}": {"stopping_reason": 1}}
    assert not epoch_goes_on({**cut_short(40), "callbacks": stopped}, -1)
    running = {"RunEarlyStopping{'monitor': 'val/loss', 'mode': 'min'}": {"stopping_reason": 0}}
    assert epoch_goes_on({**cut_short(40), "callbacks": running}, -1)
    assert not epoch_goes_on(saved_at_an_epochs_end(40, 5), -1)  # no batch progress: a whole epoch
    assert first_step_logged_again(saved_at_an_epochs_end(40, 5)) == 40
    assert first_step_logged_again(saved_within_an_epoch(40, 5)) == 41  # Lightning counts the batch after the save


def test_a_start_killed_before_its_first_checkpoint_is_set_aside_under_the_first_free_numbers(tmp_path):
    from framework.resuming import set_aside_a_killed_start

    (tmp_path / "csv").mkdir()
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "csv" / "metrics.killed-1.csv").write_text("the first killed start")
    (tmp_path / "csv" / "metrics.csv").write_text("the second")
    set_aside_a_killed_start(tmp_path)
    assert (tmp_path / "csv" / "metrics.killed-2.csv").read_text() == "the second"
    assert (tmp_path / "tensorboard.killed-1").is_dir() and not (tmp_path / "tensorboard").exists()
    (tmp_path / "checkpoints").mkdir()
    torch.save(saved_at_an_epochs_end(18, 4), tmp_path / "checkpoints" / "last.ckpt")
    (tmp_path / "csv" / "metrics.csv").write_text("the run's own")
    set_aside_a_killed_start(tmp_path)  # a checkpoint: the run is continued, its metrics.csv stays
    assert (tmp_path / "csv" / "metrics.csv").read_text() == "the run's own"


def test_a_save_cut_short_between_an_epochs_best_checkpoint_and_its_last_ckpt_is_completed(tmp_path, caplog):
    from framework.resuming import complete_an_interrupted_save

    (tmp_path / "checkpoints").mkdir()
    torch.save(saved_at_an_epochs_end(18, 4), tmp_path / "checkpoints" / "last.ckpt")
    complete_an_interrupted_save(tmp_path)  # last.ckpt is the newest: nothing to do
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 18
    torch.save(saved_at_an_epochs_end(36, 8), tmp_path / "checkpoints" / "epoch_001.ckpt")
    with caplog.at_level("INFO", logger="train"):
        complete_an_interrupted_save(tmp_path)
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == \
        (tmp_path / "checkpoints" / "epoch_001.ckpt").read_bytes()
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    assert "epoch_001.ckpt was saved after last.ckpt" in caplog.text


def test_the_training_row_of_the_epochs_end_is_added_only_where_metrics_csv_ends_at_the_save(tmp_path):
    from framework.checkpoints import EPOCH_END_ROW
    from framework.resuming import log_again_the_epoch_end_row

    (tmp_path / "csv").mkdir()
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.write_text("epoch,step,val/acc\n0,17,0.5\n")
    row = {"train/loss": 0.25, "epoch": 0, "step": 17}
    log_again_the_epoch_end_row(tmp_path, {**saved_at_an_epochs_end(18, 2), EPOCH_END_ROW: row})
    assert metrics.read_text() == "epoch,step,val/acc\n0,17,0.5\n"  # two rows at the save, one now: not its end
    log_again_the_epoch_end_row(tmp_path, {**cut_short(18), CSV_ROWS_LOGGED: 1, EPOCH_END_ROW: row})
    assert metrics.read_text() == "epoch,step,val/acc\n0,17,0.5\n"  # logged again at the epoch's real end
    log_again_the_epoch_end_row(tmp_path, {**saved_at_an_epochs_end(18, 1), EPOCH_END_ROW: row})
    assert metrics.read_text() == "epoch,step,train/loss,val/acc\n0,17,,0.5\n0,17,0.25,\n"


def test_a_row_logged_after_the_checkpoint_whose_step_is_not_a_number_is_set_aside(tmp_path):
    """A kill mid-write on a network file system can leave bytes that are no number where the step was."""
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,value\n0,17,0.1\n0,4\x00\x00,0.5\n")
    set_aside_rows_logged_after(tmp_path, saved_within_an_epoch(44, 1))
    assert (tmp_path / "csv" / "metrics.csv").read_text() == "epoch,step,value\n0,17,0.1\n"
    assert (tmp_path / "csv" / "metrics.superseded-1.csv").read_text() == "epoch,step,value\n0,4\x00\x00,0.5\n"


@pytest.mark.filterwarnings("ignore:.*srun")  # Lightning's hint where an srun is on PATH
def test_lightnings_requeue_checkpoint_is_continued_only_within_a_slurm_job(tmp_path, monkeypatch):
    """Outside one (the folder copied to a laptop) hpc_ckpt_1.ckpt is no sign of a requeue."""
    from framework.resuming import lightnings_requeue_checkpoints

    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"")
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert lightnings_requeue_checkpoints(tmp_path) == []
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert lightnings_requeue_checkpoints(tmp_path) == [tmp_path / "hpc_ckpt_1.ckpt"]

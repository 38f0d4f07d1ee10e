"""What a run shows on its dashboards, read back from the local files of an offline wandb run and of TensorBoard:
the config, per-epoch metrics, every PNG the run writes (as it arrives) and results.json as the summary."""

import csv
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import callbacks.figures as figures
from tests.conftest import path_with_stand_in, run_cli
from tests.painter_callback import painting
from tests.wandb_files import wandb_records

EPOCHS = 2


def by_type(records, kind: str) -> list:
    return [getattr(record, kind) for record in records if record.WhichOneof("record_type") == kind]


def items(updates) -> dict:
    """wandb's key/value updates (config, history, summary) as a (nested) dict of decoded JSON values."""
    found = {}
    for update in updates:
        *parents, key = [update.key] if update.key else update.nested_key
        node = found
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = json.loads(update.value_json)
    return found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("dashboards")
    result = run_cli("train.py", "logger=[wandb,tensorboard]", f"trainer.max_epochs={EPOCHS}", "seed=3",
                     "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}",
                     "+callbacks.painter._target_=tests.painter_callback.PaintEveryEpoch",
                     "+callbacks.painter.dirpath=${paths.output_dir}/plots",
                     env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_wandb_run_holds_config_epoch_metrics_figures_and_results_as_summary(run_dir):
    [offline_run] = (run_dir / "wandb").glob("offline-run-*")
    records = wandb_records(next(offline_run.glob("run-*.wandb")))
    assert len(by_type(records, "exit")) == 1  # the run was finished, not left open
    assert [run.run_group for run in by_type(records, "run")] == [""]  # a single run: no group (a sweep's: its name)
    assert [run.display_name for run in by_type(records, "run")] == ["default"]  # experiment_name

    config = {}
    for record in by_type(records, "config"):
        config |= items(record.update)
    assert config["seed"] == 3 and config["trainer"]["max_epochs"] == EPOCHS
    assert config["model"]["_target_"] == json.loads((run_dir / "results.json").read_text())["config"]["model"][
        "_target_"]

    history = [items(record.item) for record in by_type(records, "history")]
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        csv_rows = [row for row in csv.DictReader(handle) if row["val/acc"]]
    wandb_val = [row for row in history if "val/acc" in row]
    assert [row["epoch"] for row in wandb_val] == list(range(EPOCHS))
    assert [row["val/acc"] for row in wandb_val] == pytest.approx([float(row["val/acc"]) for row in csv_rows])

    # Each figure arrives in the epoch after it was written (or at the end), byte for byte the run's PNG.
    figures = {key: row for row in history for key in row if key.startswith("figures/")}
    assert sorted(figures) == [f"figures/plots/epoch_{epoch}" for epoch in range(EPOCHS)]
    steps = [figures[f"figures/plots/epoch_{epoch}"]["trainer/global_step"] for epoch in range(EPOCHS)]
    assert steps[0] < steps[1]
    media = {hashlib.sha256(path.read_bytes()).hexdigest() for path in (offline_run / "files" / "media").rglob("*.png")}
    written = {hashlib.sha256(path.read_bytes()).hexdigest() for path in (run_dir / "plots").glob("*.png")}
    assert len(written) == EPOCHS and written == media

    results = json.loads((run_dir / "results.json").read_text())
    summary = {}
    for record in by_type(records, "summary"):
        summary |= items(record.update)
    assert {key: summary[key] for key in results["metrics"]} == results["metrics"]
    for key in ("seed", "epochs_completed", "best_checkpoint", "overrides", "versions", "wall_seconds"):
        assert summary[key] == results[key], key


def tensorboard_images(run_dir: Path) -> dict[str, list[np.ndarray]]:
    images = {}
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["images"]:
            images.setdefault(tag, []).extend(np.asarray(Image.open(io.BytesIO(event.encoded_image_string))
                                                         .convert("RGB")) for event in accumulator.Images(tag))
    return images


@pytest.mark.slow
def test_a_ddp_run_sends_each_figure_once(tmp_path):
    """trainer=ddp_sim fits and tests in workers that start from the parent's callbacks, which had sent nothing:
    the test's workers sent every figure of the fit again. With srun on PATH outside a SLURM job, the ranks (started
    from a forkserver) printed Lightning's srun hint that the job leaves out (no_notices_meant_for_others)."""
    result = run_cli("train.py", "logger=tensorboard", "trainer=ddp_sim", f"trainer.max_epochs={EPOCHS}",
                     "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path}",
                     "+callbacks.painter._target_=tests.painter_callback.PaintEveryEpoch",
                     "+callbacks.painter.dirpath=${paths.output_dir}/plots",
                     env={"OMP_NUM_THREADS": "1", "PATH": path_with_stand_in(tmp_path, "srun")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "The `srun` command is available" not in result.stdout + result.stderr
    assert "LeafSpec" not in result.stdout + result.stderr  # torch's deprecation that Lightning's loader meets
    images = tensorboard_images(tmp_path)
    assert {tag: len(sent) for tag, sent in images.items()} == {f"figures/plots/epoch_{epoch}": 1
                                                                  for epoch in range(EPOCHS)}


@pytest.mark.slow
def test_tensorboard_gets_the_same_figures(run_dir):
    images = tensorboard_images(run_dir)
    assert sorted(images) == [f"figures/plots/epoch_{epoch}" for epoch in range(EPOCHS)]
    for epoch in range(EPOCHS):
        [pixels] = images[f"figures/plots/epoch_{epoch}"]
        np.testing.assert_array_equal(pixels, painting(epoch))


def hparams_tab(run_dir: Path) -> tuple[dict, dict[str, list]]:
    """The HPARAMS records of a run's tensorboard/hparams/ folder (the run TensorBoard's tab shows) and its scalars."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = EventAccumulator(str(run_dir / "tensorboard" / "hparams"))
    accumulator.Reload()
    records = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
               for tag, content in accumulator.PluginTagToContent("hparams").items()}
    return records, {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_hparams_tab_holds_the_config_and_the_final_metrics(run_dir):
    """Lightning writes no HPARAMS record with default_hp_metric=false unless metrics come with the hyperparameters:
    the tab was empty. The config's values (dotted keys) and results.json's metrics (in the run's own folder the tab
    took the last epoch's val/, not the best checkpoint's), in a folder of their own."""
    records, scalars = hparams_tab(run_dir)
    start = records["_hparams_/session_start_info"].session_start_info
    assert start.hparams["seed"].number_value == 3 and start.hparams["trainer.max_epochs"].number_value == EPOCHS
    assert start.hparams["model._target_"].string_value == "lightning_modules.classifier.ClassificationModule"
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert {info.name.tag for info in records["_hparams_/experiment"].experiment.metric_infos} == set(metrics)
    assert {tag: [round(event.value, 5) for event in events] for tag, events in scalars.items()} == \
        {tag: [round(value, 5)] for tag, value in metrics.items()}
    assert not list((run_dir / "tensorboard").glob(".hparams.*"))  # nothing left of the folder's replacement


@pytest.mark.slow
def test_a_run_stopped_and_continued_sends_each_figure_once(tmp_path):
    """A callback's figure of an epoch's end went out at the next epoch's start, after that epoch's last.ckpt had
    recorded what was sent: a run stopped there and continued from last.ckpt sent it again."""
    common = ("logger=tensorboard", "trainer.max_epochs=3", "seed=3", "ckpt_path=auto", "trainer.accelerator=cpu",
              "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path}",
              "+callbacks.painter._target_=tests.painter_callback.PaintEveryEpoch",
              "+callbacks.painter.dirpath=${paths.output_dir}/plots")
    stopped = run_cli("train.py", *common, "+callbacks.stop._target_=tests.signal_callback.SignalAtEpochStart",
                      "+callbacks.stop.epoch=2")
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    continued = run_cli("train.py", *common)
    assert continued.returncode == 0, continued.stderr[-3000:]
    images = tensorboard_images(tmp_path)
    assert {tag: len(sent) for tag, sent in images.items()} == {f"figures/plots/epoch_{epoch}": 1 for epoch in range(3)}
    # finished, then continued with more epochs: TensorBoard keeps the first HPARAMS record a folder holds, and showed
    # the first finished start's config beside the second's metrics
    more = run_cli("train.py", *(word.replace("max_epochs=3", "max_epochs=4") for word in common))
    assert more.returncode == 0, more.stderr[-3000:]
    records, scalars = hparams_tab(tmp_path)
    assert records["_hparams_/session_start_info"].session_start_info.hparams["trainer.max_epochs"].number_value == 4
    assert [event.value for event in scalars["test/acc"]] == \
        [pytest.approx(json.loads((tmp_path / "results.json").read_text())["metrics"]["test/acc"])]


@pytest.fixture
def sending(tmp_path, monkeypatch):
    """What a FiguresToLoggers on tmp_path sends (the keys, in order), the rank-0 trainer with TensorBoard it sends
    through, and the callback."""
    sent = []
    monkeypatch.setattr(figures, "log_figure", lambda trainer, pixels, key: sent.append(key))
    trainer = type("Trainer", (), {"is_global_zero": True, "global_step": 0,
                                   "loggers": [TensorBoardLogger(tmp_path / "tensorboard")]})()
    return sent, trainer, figures.FiguresToLoggers(tmp_path)


def test_figures_are_looked_for_at_each_epochs_start_and_end_and_after_fitting_and_testing(tmp_path, sending):
    """The start of an epoch catches what a callback after this one wrote at the previous epoch's end."""
    sent, trainer, callback = sending
    hooks = ("on_train_epoch_start", "on_train_epoch_end", "on_fit_end", "on_test_end")
    for index, hook in enumerate(hooks):
        Image.fromarray(painting(index)).save(tmp_path / f"{hook}.png")
        getattr(callback, hook)(trainer, None)
        assert sent == [f"figures/{name}" for name in hooks[:index + 1]]


def test_figures_are_sent_once_each_again_when_rewritten_and_never_from_logger_folders(tmp_path, sending):
    sent, trainer, callback = sending
    (tmp_path / "wandb" / "media").mkdir(parents=True)
    Image.fromarray(painting(0)).save(tmp_path / "wandb" / "media" / "copy.png")
    Image.fromarray(painting(0)).save(tmp_path / "mi_lr.png")
    callback.send(trainer)
    callback.send(trainer)
    assert sent == ["figures/mi_lr"]
    (tmp_path / "grids").mkdir()
    Image.fromarray(painting(1)).save(tmp_path / "grids" / "attack.png")
    Image.fromarray(painting(2)).save(tmp_path / "mi_lr.png")  # rewritten with new content
    callback.send(trainer)
    assert sent == ["figures/mi_lr", "figures/grids/attack", "figures/mi_lr"]
    resumed = figures.FiguresToLoggers(tmp_path)  # a run continued from a checkpoint of this one
    resumed.load_state_dict(callback.state_dict())
    resumed.send(trainer)
    assert sent == ["figures/mi_lr", "figures/grids/attack", "figures/mi_lr"]  # nothing again (it sent them all)


def test_a_figure_being_rewritten_by_another_rank_is_not_sent_again(tmp_path, sending):
    """Under trainer=ddp_sim every rank's callback may write the same figure; rank 0 read it while rank 1 rewrote
    it, and sent epoch_0 twice (CI, 2026-12-06). What is sent is told apart by its pixels, and a file that cannot be
    read whole yet waits for the next look."""
    sent, trainer, callback = sending
    whole = io.BytesIO()
    Image.fromarray(painting(0)).save(whole, format="png")
    figure = tmp_path / "epoch_0.png"
    for written in (whole.getvalue()[:40], whole.getvalue()[:-12]):  # IDAT cut short; all but the IEND chunk
        figure.write_bytes(written)
        callback.send(trainer)
    assert sent == ["figures/epoch_0"]  # the second file decodes whole: those are the figure's pixels
    for written in (b"", whole.getvalue()):  # truncated by the other rank's write, then written again
        figure.write_bytes(written)
        callback.send(trainer)
    Image.fromarray(painting(0)).save(figure, compress_level=0)  # the same pixels in other bytes
    callback.send(trainer)
    assert sent == ["figures/epoch_0"]


def test_a_figure_left_as_it_was_since_the_last_look_is_not_read_again(tmp_path, sending, monkeypatch):
    """A run that writes a figure every epoch decoded every one of them at every look (twice an epoch)."""
    sent, trainer, callback = sending
    read = []
    monkeypatch.setattr(figures, "read_pixels", lambda path, read_pixels=figures.read_pixels:
                        read.append(path.name) or read_pixels(path))
    an_hour_ago = time.time() - 3600
    for epoch in range(3):
        Image.fromarray(painting(epoch)).save(tmp_path / f"epoch_{epoch}.png")
        os.utime(tmp_path / f"epoch_{epoch}.png", (an_hour_ago, an_hour_ago))
    Image.fromarray(painting(0)).save(tmp_path / "mi_lr.png")  # written just now: it may change within the clock tick
    callback.send(trainer)
    callback.send(trainer)
    assert read == ["epoch_0.png", "epoch_1.png", "epoch_2.png", "mi_lr.png", "mi_lr.png"]
    Image.fromarray(painting(3)).save(tmp_path / "epoch_1.png")  # rewritten
    os.utime(tmp_path / "epoch_1.png", (an_hour_ago + 1, an_hour_ago + 1))
    callback.send(trainer)
    assert read[5:] == ["epoch_1.png", "mi_lr.png"]
    assert sent == ["figures/epoch_0", "figures/epoch_1", "figures/epoch_2", "figures/mi_lr", "figures/epoch_1"]


@pytest.mark.slow
def test_a_resumed_run_continues_its_wandb_run(tmp_path):
    """One wandb run per run directory: a restart with ckpt_path=auto (a requeued SLURM job) logs into the run its
    first start made (the same id, kept in <output_dir>/wandb/run_id), from the epoch it resumes at. Started once
    more when it has finished, it is kept as it is, as a run with another logger (the id it was given counted as a
    change of config: it was tested again, and its results.json and wandb run rewritten)."""
    def start(epochs: int) -> str:
        result = run_cli("train.py", "logger=wandb", f"trainer.max_epochs={epochs}", "ckpt_path=auto", "seed=3",
                         "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0",
                         f"hydra.run.dir={tmp_path}", env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    start(1), start(2)
    finished = (tmp_path / "results.json").read_bytes()
    assert "finished with this config already" in start(2) and (tmp_path / "results.json").read_bytes() == finished
    run_id = (tmp_path / "wandb" / "run_id").read_text()
    first, resumed = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert first.name.endswith(f"-{run_id}") and resumed.name.endswith(f"-{run_id}")
    epochs = [[row["epoch"] for row in (items(record.item) for record in by_type(wandb_records(
        next(run.glob("run-*.wandb"))), "history")) if "val/acc" in row] for run in (first, resumed)]
    assert epochs == [[0], [1]]


def test_a_resuming_start_keeps_the_directory_s_wandb_run_id_and_a_fresh_start_replaces_it(tmp_path):
    from framework.loggers import wandb_run_id

    first = wandb_run_id(tmp_path, resuming=True)  # nothing to resume yet: a new id
    assert wandb_run_id(tmp_path, resuming=True) == first and len(first) == 8
    fresh = wandb_run_id(tmp_path, resuming=False)  # a restart from zero: a wandb run of its own
    assert fresh != first and (tmp_path / "wandb" / "run_id").read_text() == fresh
    assert [path.name for path in (tmp_path / "wandb").iterdir()] == ["run_id"]  # no temporary file left behind


@pytest.mark.parametrize(("stop", "code"), [
    (("optimized_metric=val/no_such_acc",), 2),  # a user error, found once the first validation has run
    (("+callbacks.stop._target_=tests.signal_callback.SignalAtEpochStart", "+callbacks.stop.epoch=1"), 143),
], ids=["user-error", "sigterm"])
def test_a_run_that_stops_is_not_finished_on_wandb(tmp_path, stop, code):
    """wandb recorded exit code 0, a finished run, for every job that failed or was stopped: its own hooks had not
    seen the exception when train.py closed the run. The job's exit code goes there, and a SIGTERM (a scheduler's
    requeue) marks the run preempting."""
    result = run_cli("train.py", "logger=wandb", "trainer.max_epochs=2", "trainer.accelerator=cpu",
                     "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path}", *stop,
                     env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert result.returncode == code, result.stderr[-3000:]
    [offline_run] = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(next(offline_run.glob("run-*.wandb")))
    assert [record.exit_code for record in by_type(records, "exit")] == [code]
    assert len(by_type(records, "preempting")) == (code == 143)


def test_a_restart_of_a_start_killed_before_its_first_checkpoint_gets_a_wandb_run_of_its_own(tmp_path):
    """ckpt_path=auto where the killed start left no checkpoint starts from zero: in the killed start's wandb run its
    steps would repeat. With a checkpoint to continue from, the run continues its wandb run."""
    from framework.compose import compose_config
    from framework.loggers import give_wandb_loggers_their_run_id

    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "run_id").write_text("0badc0de")

    def given_id() -> str:
        cfg = compose_config(["logger=wandb", "ckpt_path=auto"], tmp_path, "train")
        give_wandb_loggers_their_run_id(cfg)
        return cfg.logger.wandb.id

    fresh = given_id()
    assert fresh != "0badc0de" and (tmp_path / "wandb" / "run_id").read_text() == fresh
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert given_id() == fresh


def test_wandb_out_of_reach_is_one_sentence():
    """With credentials but no route to wandb's server, wandb.init gives up after its retries (34 s against a closed
    port here, 107 s on a machine without DNS) with a CommError; train.py starts the run inside reaching_wandb."""
    import wandb.errors
    from omegaconf import OmegaConf

    from framework.errors import UserError
    from framework.loggers import reaching_wandb

    cfg = OmegaConf.create({"paths": {"output_dir": "/runs/1"}, "logger": {"wandb": {
        "_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "save_dir": "/runs/1"}}})
    with pytest.raises(UserError, match=re.escape(
            "wandb could not reach its server (Failed to get resume status: no such host); log offline with "
            "WANDB_MODE=offline (and upload later, where there is a network, with wandb sync "
            "/runs/1/wandb/offline-run-*), or choose logger=csv.")):
        with reaching_wandb(cfg):
            raise wandb.errors.CommError("Failed to get resume status: no such host.")
    with pytest.raises(ValueError, match="^other$"):  # anything else stays what it was
        with reaching_wandb(cfg):
            raise ValueError("other")


@pytest.mark.parametrize(("save_dir", "command"), [
    ("/runs/1", "wandb sync /runs/1/wandb/offline-run-*"),
    ("/elsewhere", "wandb sync /elsewhere/wandb/offline-run-*"),  # the files are where the logger saves them
    ("/runs/with space", "wandb sync '/runs/with space/wandb'/offline-run-*"),  # one word to the shell, the glob not
])
def test_the_printed_wandb_sync_command_names_the_offline_runs_as_a_shell_reads_it(save_dir, command):
    from omegaconf import OmegaConf

    from framework.loggers import wandb_sync_command

    cfg = OmegaConf.create({"paths": {"output_dir": "/runs/1"}, "logger": {"wandb": {
        "_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "save_dir": save_dir}}})
    assert wandb_sync_command(cfg) == command


def wandb_config(save_dir: str = "/runs/1"):
    from omegaconf import OmegaConf

    return OmegaConf.create({"paths": {"output_dir": "/runs/1"}, "logger": {"wandb": {
        "_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "save_dir": save_dir}}})


@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    """No API key, token file, server or mode in the environment, and NETRC naming a file yet to be written."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_wandb_credentials_are_a_key_a_token_file_or_wandb_logins_netrc_entry_for_its_server(no_wandb_credentials,
                                                                                             monkeypatch):
    from framework.loggers import has_wandb_credentials

    assert not has_wandb_credentials()  # no netrc file
    no_wandb_credentials.write_text("machine other.example login user password secret\n")
    assert not has_wandb_credentials()
    no_wandb_credentials.write_text("machine api.wandb.ai login user password secret\n")
    assert has_wandb_credentials()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.lab.example")  # a server of one's own: its entry counts
    assert not has_wandb_credentials()
    no_wandb_credentials.write_text("machine wandb.lab.example login user password secret\n")
    assert has_wandb_credentials()
    no_wandb_credentials.write_text("machine wandb.lab.example login user bogus secret\n")  # unreadable: no entry
    assert not has_wandb_credentials()
    monkeypatch.setenv("WANDB_IDENTITY_TOKEN_FILE", "/var/run/token")
    assert has_wandb_credentials()


def test_wandb_without_credentials_logs_offline_and_says_how_to_upload(no_wandb_credentials, caplog):
    from omegaconf import OmegaConf

    from framework.loggers import wandb_offline_without_credentials

    wandb_offline_without_credentials(OmegaConf.create({"paths": {"output_dir": "/runs/1"}, "logger": {"csv": {
        "_target_": "framework.loggers.AppendingCSVLogger"}}}))
    assert "WANDB_MODE" not in os.environ  # a run without wandb leaves wandb's mode alone
    with caplog.at_level("WARNING", logger="train"):
        wandb_offline_without_credentials(wandb_config())
    assert os.environ["WANDB_MODE"] == "offline"
    assert caplog.messages == ["wandb: no API key (WANDB_API_KEY or `wandb login`), so this run logs offline; upload "
                               "it later with: wandb sync /runs/1/wandb/offline-run-*"]


@pytest.mark.parametrize("mode", ["online", "shared"])
def test_wandb_online_without_credentials_is_refused_and_offline_is_taken(no_wandb_credentials, monkeypatch, mode):
    from framework.errors import ConfigError
    from framework.loggers import wandb_offline_without_credentials

    monkeypatch.setenv("WANDB_MODE", mode)
    with pytest.raises(ConfigError, match=re.escape(f"WANDB_MODE is '{mode}', but wandb has no API key here")):
        wandb_offline_without_credentials(wandb_config())
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    wandb_offline_without_credentials(wandb_config())
    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb_offline_without_credentials(wandb_config())
    assert os.environ["WANDB_MODE"] == "offline"


@pytest.fixture
def open_wandb_run(monkeypatch):
    """A stand-in wandb module with an open run: what finish_wandb did to it ("preempting", exit codes), and a switch
    that makes wandb.finish fail."""
    import sys
    from types import SimpleNamespace

    calls, failing = [], []

    def finish(exit_code):
        calls.append(exit_code)
        if failing:
            raise ConnectionResetError("Connection lost")

    wandb = SimpleNamespace(run=SimpleNamespace(mark_preempting=lambda: calls.append("preempting")), finish=finish)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    return wandb, calls, failing


def test_wandb_records_the_exit_code_the_job_ends_with(open_wandb_run, caplog):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from framework.errors import ConfigError
    from framework.loggers import finish_wandb

    wandb, calls, failing = open_wandb_run
    finish_wandb()
    finish_wandb(ConfigError("bad"))
    finish_wandb(RuntimeError("bug"))
    finish_wandb(SIGTERMException())
    assert calls == [0, 2, 1, "preempting", 143]
    failing.append(True)
    with caplog.at_level("WARNING", logger="train"):
        finish_wandb(RuntimeError("bug"))  # the job's own exception stays what ends it
    assert caplog.messages == ["wandb could not close its run while the job stopped (ConnectionResetError: "
                               "Connection lost)."]
    with pytest.raises(ConnectionResetError):
        finish_wandb()  # a job that succeeded: wandb's failure is the job's
    wandb.run, calls[:] = None, []
    finish_wandb()  # no run open: nothing to close
    assert calls == []


def test_only_rank_zero_writes_the_wandb_run_id_and_the_other_ranks_read_the_earlier_one(tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from framework.loggers import wandb_run_id

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert wandb_run_id(tmp_path, resuming=False) is None and not (tmp_path / "wandb").exists()
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "run_id").write_text("0badc0de\n")
    assert wandb_run_id(tmp_path, resuming=True) == "0badc0de"
    assert wandb_run_id(tmp_path, resuming=False) is None


def test_figures_are_sent_by_rank_zero_alone_and_only_to_loggers_that_show_images(tmp_path, sending):
    from lightning.pytorch.loggers import CSVLogger

    sent, trainer, callback = sending
    Image.fromarray(painting(0)).save(tmp_path / "mi_lr.png")
    other_rank = type("Trainer", (), {"is_global_zero": False, "global_step": 0, "loggers": trainer.loggers})()
    callback.send(other_rank)
    csv_only = type("Trainer", (), {"is_global_zero": True, "global_step": 0, "loggers": [CSVLogger(tmp_path)]})()
    callback.send(csv_only)
    assert sent == [] and callback.sent == {}  # still to be sent, where it can be
    callback.send(trainer)
    assert sent == ["figures/mi_lr"]


def test_a_figure_is_sent_as_rgb_pixels_whatever_its_png_mode(tmp_path, monkeypatch):
    sent = {}
    monkeypatch.setattr(figures, "log_figure", lambda trainer, pixels, key: sent.update({key: pixels}))
    trainer = type("Trainer", (), {"is_global_zero": True, "global_step": 0,
                                   "loggers": [TensorBoardLogger(tmp_path / "tensorboard")]})()
    Image.fromarray(painting(0)[..., 0]).save(tmp_path / "grey.png")  # mode L
    Image.fromarray(painting(1)).convert("P").save(tmp_path / "palette.png")
    figures.FiguresToLoggers(tmp_path).send(trainer)
    assert {key: pixels.shape for key, pixels in sent.items()} == {"figures/grey": (12, 16, 3),
                                                                   "figures/palette": (12, 16, 3)}
    np.testing.assert_array_equal(sent["figures/grey"][..., 2], painting(0)[..., 0])


def test_a_figure_removed_after_the_listing_is_passed_over(tmp_path, sending):
    sent, trainer, callback = sending

    class Listing(type(tmp_path)):
        def rglob(self, pattern):
            yield self / "removed.png"  # listed, then removed before its look
            yield from super().rglob(pattern)

    Image.fromarray(painting(0)).save(tmp_path / "kept.png")
    callback.root = Listing(tmp_path)
    callback.send(trainer)
    assert sent == ["figures/kept"]


def test_each_figure_goes_to_wandb_and_tensorboard_at_the_trainers_step():
    from lightning.pytorch.loggers import WandbLogger

    calls = []

    class Wandb(WandbLogger):
        def __init__(self):  # no wandb run
            pass

        def log_image(self, **arguments):
            calls.append(("wandb", arguments))

    class Tensorboard(TensorBoardLogger):
        def __init__(self):
            pass

        experiment = type("Writer", (), {"add_image": lambda self, *args, **options: calls.append(
            ("tensorboard", (args, options)))})()

    pixels = painting(0)
    trainer = type("Trainer", (), {"global_step": 7, "loggers": [Wandb(), Tensorboard()]})()
    figures.log_figure(trainer, pixels, "figures/mi_lr")
    assert calls == [("wandb", {"key": "figures/mi_lr", "images": [pixels], "step": 7}),
                     ("tensorboard", (("figures/mi_lr", pixels), {"global_step": 7, "dataformats": "HWC"}))]


def test_results_go_to_wandbs_summary_without_the_config_and_to_tensorboards_hparams_tab(tmp_path):
    """The wandb run holds the config as its config already; each finished start replaces the HPARAMS record."""
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    from framework.loggers import publish_results

    class Wandb(WandbLogger):
        def __init__(self):  # no wandb run
            pass

        experiment = SimpleNamespace(summary={})

    wandb, tensorboard = Wandb(), TensorBoardLogger(tmp_path / "tensorboard", name="", version="")
    results = {"metrics": {"test/acc": 0.5}, "config": {"seed": 3, "model": {"lr": 0.1}}, "seed": 3,
               "epochs_completed": 2}
    publish_results([wandb, tensorboard], results)
    assert wandb.experiment.summary == {"test/acc": 0.5, "seed": 3, "epochs_completed": 2}
    publish_results([tensorboard], {**results, "metrics": {"test/acc": 0.75}, "config": {"seed": 4, "model": None}})
    records, scalars = hparams_tab(tmp_path)
    start = records["_hparams_/session_start_info"].session_start_info
    assert (start.hparams["seed"].number_value, start.hparams["model"].string_value) == (4, "None")
    assert {tag: [event.value for event in events] for tag, events in scalars.items()} == {"test/acc": [0.75]}
    assert sorted(path.name for path in (tmp_path / "tensorboard").iterdir()) == ["hparams"]


@pytest.fixture
def sweep_job(tmp_path):
    """``job(*overrides)``: the config of a job of the sweep tmp_path/lenet_sweep, with Hydra's record of this job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from framework.compose import compose_with_hydra

    def job(*overrides: str):
        cfg = compose_with_hydra(["logger=wandb", *overrides, f"hydra.sweep.dir={tmp_path / 'lenet_sweep'}",
                                  "hydra.mode=MULTIRUN", "hydra.job.name=train"])
        with open_dict(cfg):
            cfg.hydra.job.override_dirname = ",".join(sorted(cfg.hydra.overrides.task))
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield job
    HydraConfig.instance().cfg = None


def test_a_sweep_job_s_wandb_run_is_named_by_its_swept_values_and_grouped_by_its_sweep(tmp_path, sweep_job):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from framework.loggers import name_and_group_wandb_runs

    cfg = sweep_job("seed=2", "model.optimizer.lr=0.1")
    name_and_group_wandb_runs(cfg)  # no multirun.yaml to read the swept keys from: every override
    assert (cfg.logger.wandb.name, cfg.logger.wandb.group) == (
        "default logger=wandb,model.optimizer.lr=0.1,seed=2", "lenet_sweep")
    (tmp_path / "lenet_sweep").mkdir()  # Hydra's record of the sweep's command: seed (a grid) and lr are swept
    OmegaConf.save({"hydra": {"sweeper": {"params": {"seed": "1,2"}}, "overrides": {"task": [
        "logger=wandb", "model.optimizer.lr=0.1,0.2"]}}}, tmp_path / "lenet_sweep" / "multirun.yaml")
    cfg.logger.wandb.name = cfg.logger.wandb.group = None
    name_and_group_wandb_runs(cfg)
    assert (cfg.logger.wandb.name, cfg.logger.wandb.group) == ("default model.optimizer.lr=0.1,seed=2", "lenet_sweep")
    HydraConfig.instance().cfg = None  # a single run: no group, and a name given is kept
    cfg.logger.wandb.name, cfg.logger.wandb.group = "mine", None
    name_and_group_wandb_runs(cfg)
    assert (cfg.logger.wandb.name, cfg.logger.wandb.group) == ("mine", None)
    cfg.logger.wandb.name = None
    name_and_group_wandb_runs(cfg)
    assert cfg.logger.wandb.name == "default"


@pytest.mark.parametrize(("ckpt_path", "checkpoint", "continued"), [
    (None, None, False), ("auto", None, False), ("last", None, False), ("auto", "epoch=1.ckpt", True),
    ("last", "last.ckpt", True), ("{tmp_path}/elsewhere.ckpt", None, True),
])
def test_a_start_continues_the_wandb_run_of_the_checkpoint_it_continues_from(tmp_path, ckpt_path, checkpoint,
                                                                            continued):
    from omegaconf import OmegaConf

    from framework.loggers import give_wandb_loggers_their_run_id

    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "run_id").write_text("0badc0de")
    if checkpoint:
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / checkpoint).write_bytes(b"")
    cfg = OmegaConf.create({"ckpt_path": ckpt_path and ckpt_path.format(tmp_path=tmp_path),
                            "paths": {"output_dir": str(tmp_path)}, "logger": {
                                "wandb": {"_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "id": None},
                                "other": {"_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "id": "given"}}})
    give_wandb_loggers_their_run_id(cfg)
    assert (cfg.logger.wandb.id == "0badc0de") == continued and cfg.logger.other.id == "given"


@pytest.mark.parametrize("folder", ["wandb", "tensorboard", "checkpoints", "csv", ".hydra", ".submitit",
                                    "logs/wandb"])  # a logger's save_dir below the run
def test_figures_in_the_loggers_and_the_runs_own_folders_are_not_sent(tmp_path, sending, folder):
    sent, trainer, callback = sending
    (tmp_path / folder / "media").mkdir(parents=True)
    Image.fromarray(painting(0)).save(tmp_path / folder / "media" / "copy.png")
    Image.fromarray(painting(1)).save(tmp_path / folder / "copy.png")
    callback.send(trainer)
    assert sent == []


def test_a_figure_rewritten_in_its_size_or_shape_alone_is_sent_again(tmp_path, sending):
    """A rewrite may keep the file's modification time (a copy that keeps it, a coarse clock), or the pixels' bytes
    (another width): either change is a new figure."""
    sent, trainer, callback = sending
    figure, an_hour_ago = tmp_path / "mi_lr.png", time.time() - 3600
    Image.fromarray(painting(0)).save(figure)
    os.utime(figure, (an_hour_ago, an_hour_ago))
    callback.send(trainer)
    Image.fromarray(painting(0).reshape(16, 12, 3)).save(figure, compress_level=0)  # the same bytes, another shape
    os.utime(figure, (an_hour_ago, an_hour_ago))
    callback.send(trainer)
    assert sent == ["figures/mi_lr", "figures/mi_lr"]


def test_a_checkpoint_s_older_record_of_the_figures_sent_adds_to_what_was_sent_since(tmp_path, sending):
    """Under trainer=ddp_sim the test of the best checkpoint starts from the fit's record and loads the checkpoint's,
    which may be older: a figure sent after that checkpoint went out again."""
    sent, trainer, callback = sending
    Image.fromarray(painting(0)).save(tmp_path / "epoch_0.png")
    callback.send(trainer)
    best = callback.state_dict()
    Image.fromarray(painting(1)).save(tmp_path / "epoch_1.png")
    callback.send(trainer)
    tested = figures.FiguresToLoggers(tmp_path)
    tested.load_state_dict(callback.state_dict())  # the fit's record
    tested.load_state_dict(best)
    tested.send(trainer)
    assert sent == ["figures/epoch_0", "figures/epoch_1"]

"""evaluate.py's tasks on results.json files written the way train.py writes them."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.results_table import UnknownKeyError
from evaluate import TASKS, evaluate, task_keys
from framework.compose import ROOT, compose_config
from framework.errors import ConfigError
from framework.results import write_json_atomic
from lightning_modules.perceptual_procedures import PERCEPTUAL_AUTOENCODER
from tests.conftest import imported_and_said, run_cli

FORWARD_AUTOENCODER = "lightning_modules.forward_autoencoder.ForwardAutoencoderModule"


def write_runs(root, runs):
    for number, run in enumerate(runs):
        write_json_atomic(root / str(number) / "results.json", run)


def run(lr: float, seed: int, acc: float) -> dict:
    return {"seed": seed, "overrides": [f"model.optimizer.lr={lr}", f"seed={seed}"],
            "config": {"model": {"optimizer": {"lr": lr}}, "seed": seed}, "metrics": {"test/acc": acc}}


def test_table_groups_by_overridden_keys_except_seed_with_mean_and_sample_std(tmp_path):
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92), run(0.01, 1, 0.80), run(0.01, 2, 0.86)])
    cfg = compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate")
    text = evaluate(cfg)
    assert text.splitlines()[0] == "| model.optimizer.lr | test/acc | runs |"
    assert "| 0.01 | 0.8300 ± 0.0424 | 2 |" in text  # std of (0.80, 0.86) with n - 1
    assert "| 0.1 | 0.9100 ± 0.0141 | 2 |" in text
    assert text.splitlines()[-1].startswith("val/ and test/ metrics of each run's unrecorded checkpoint. ± is")
    assert (sweep / "table.md").read_text().strip() == text


def test_a_table_whose_rows_pool_runs_of_other_settings_says_which(tmp_path):
    """group_by chosen by hand may pool runs that differ in another swept key: the ± is then not over seeds alone."""
    sweep = tmp_path / "sweep"
    runs = [run(0.1, 1, 0.90), run(0.1, 2, 0.92), run(0.1, 1, 0.80), run(0.1, 2, 0.86)]
    for momentum, stored in zip((0.9, 0.9, 0.5, 0.5), runs, strict=True):
        stored["overrides"].append(f"model.optimizer.momentum={momentum}")
    write_runs(sweep, runs)
    pooled = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]", "group_by=[model.optimizer.lr]"],
                                     tmp_path / "out", "evaluate"))
    assert "| 0.1 | 0.8700 ± 0.0529 | 4 |" in pooled
    assert pooled.endswith("Rows pool runs that differ in model.optimizer.momentum (not in group_by).")
    apart = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "Rows pool" not in apart and "| 0.1 | 0.5 | 0.8300 ± 0.0424 | 2 |" in apart


def test_test_only_runs_of_different_checkpoints_get_a_row_each(tmp_path):
    """A sweep of train=false over ckpt_path tests other weights in each job: its mean ± std pooled them, as if
    ckpt_path only said how a run ran (as it does for a run continued with ckpt_path=auto, which stays pooled)."""
    def tested(ckpt_path: str, acc: float, train: bool = False, seed: int = 42) -> dict:
        return {"seed": seed, "overrides": [f"train={str(train).lower()}", f"ckpt_path={ckpt_path}"],
                "config": {"train": train, "ckpt_path": ckpt_path, "seed": seed}, "metrics": {"test/acc": acc}}

    write_runs(tmp_path / "tested", [tested("a/last.ckpt", 0.71), tested("a/epoch_003.ckpt", 0.91)])
    text = evaluate(compose_config([f"runs={tmp_path / 'tested'}", "metrics=[test/acc]"], tmp_path / "out",
                                   "evaluate"))
    assert text.splitlines()[0] == "| train | ckpt_path | test/acc | runs |"
    assert "| false | a/epoch_003.ckpt | 0.9100 ± — | 1 |" in text
    assert "| false | a/last.ckpt | 0.7100 ± — | 1 |" in text
    write_runs(tmp_path / "trained", [tested("auto", 0.71, train=True), tested("auto", 0.91, train=True, seed=43)])
    text = evaluate(compose_config([f"runs={tmp_path / 'trained'}", "metrics=[test/acc]"], tmp_path / "out",
                                   "evaluate"))
    assert "| true | 0.8100 ± 0.1414 | 2 |" in text


def test_a_metric_that_some_runs_of_a_row_lack_says_over_how_many_it_is(tmp_path):
    sweep = tmp_path / "sweep"
    killed_early = run(0.1, 3, 0.0)
    del killed_early["metrics"]["test/acc"]
    killed_early["metrics"]["val/acc"] = 0.5
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92), killed_early])
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "| 0.1 | 0.9100 ± 0.0141 (2 of 3 runs) | 3 |" in text


def test_a_resumed_job_stays_in_the_row_of_its_sweep(tmp_path):
    """A killed job rerun with ckpt_path=auto (and its data elsewhere) trained what its seeds did: one row."""
    sweep = tmp_path / "sweep"
    resumed = run(0.1, 3, 0.97)
    resumed["overrides"] += ["ckpt_path=auto", "data.data_dir=/elsewhere", "hydra.run.dir=sweep/2", "logger=wandb"]
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92), resumed])
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert text.splitlines()[0] == "| model.optimizer.lr | test/acc | runs |"
    assert "| 0.1 | 0.9300 ± 0.0361 | 3 |" in text


def test_runs_given_as_a_list_are_tabled_together_and_the_table_goes_to_their_common_folder(tmp_path):
    """Seeds swept on two days, in two sweep directories: runs=[first,second] makes one table of both."""
    first, second = tmp_path / "sweeps" / "day1", tmp_path / "sweeps" / "day2"
    write_runs(first, [run(0.1, 1, 0.90), run(0.1, 2, 0.92)])
    write_runs(second, [run(0.1, 3, 0.97)])
    text = evaluate(compose_config([f"runs=[{first},{second}]", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "| 0.1 | 0.9300 ± 0.0361 | 3 |" in text  # mean and sample std of 0.90, 0.92, 0.97
    assert (tmp_path / "sweeps" / "table.md").read_text().strip() == text
    again = evaluate(compose_config([f"runs=[{first},{first}/1]", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "| 0.1 | 0.9100 ± 0.0141 | 2 |" in again  # a run named twice counts once


def test_reae_tasks_write_tables_and_figures(tmp_path):
    sweep = tmp_path / "sweep"
    runs = []
    for feature_map, accuracies in (("reae", (0.90, 0.91, 0.92)), ("ran", (0.80, 0.81, 0.83))):
        for seed, acc in enumerate(accuracies):
            runs.append({"seed": seed, "metrics": {"test/acc": acc, "chosen/lambda": 0.01, "chosen/tau": 1e-4},
                         "config": {"model": {"_target_": FORWARD_AUTOENCODER, "feature_map": feature_map, "rho": 0.2,
                                              "hidden_size": 750}}})
    write_runs(sweep, runs)
    tables = evaluate(compose_config([f"runs={sweep}", "task=reae_table1"], tmp_path / "out", "evaluate"))
    assert "| REAN | 91.00 ± 1.00 |" in tables and "| RAN | 1 | 0.00119 | 3 |" in tables
    assert "sample standard deviation (n - 1" in tables
    rean = tmp_path / "rean"  # Figure 2 is REAN's (its curves would pool the networks: refused)
    write_runs(rean, runs[:3])
    evaluate(compose_config([f"runs={rean}", "task=reae_figure2"], tmp_path / "out", "evaluate"))
    assert (rean / "reae_figure2.png").read_bytes()[:4] == b"\x89PNG"
    assert "± is the sample standard deviation (n - 1 in the denominator)" in (rean / "reae_figure2.md").read_text()
    # runs of one rho (a Figure 3 sweep, or a Table 1 grid's fixed one) give each line one point: said, not left bare
    assert ("Every line has one point: the runs share model.rho=0.2, which the figure plots the accuracy against (an "
            "experiment=reae_figure2_* sweep varies it).") in (rean / "reae_figure2.md").read_text()
    with pytest.raises(ConfigError, match=r"differ in model\.feature_map \(reae, ran\), which the figure would pool"):
        evaluate(compose_config([f"runs={sweep}", "task=reae_figure2"], tmp_path / "out", "evaluate"))
    elsewhere = tmp_path / "report" / "figure.md"  # the PNG goes beside the markdown that links it
    evaluate(compose_config([f"runs={rean}", "task=reae_figure2", f"output={elsewhere}"], tmp_path / "out",
                            "evaluate"))
    assert (elsewhere.parent / "reae_figure2.png").read_bytes()[:4] == b"\x89PNG"
    assert "![reae_figure2](reae_figure2.png)" in elsewhere.read_text()
    # the same seeds swept again, given together: the pairs by seed would be ambiguous (one run was kept silently)
    write_runs(tmp_path / "again", runs)
    with pytest.raises(ConfigError, match=r"two REAN runs of seed 0 \(.*sweep/0, .*again/0\); the tables pair"):
        evaluate(compose_config([f"runs=[{sweep},{tmp_path / 'again'}]", "task=reae_table1"], tmp_path / "out",
                                "evaluate"))


def test_reae_choices_say_how_often_and_series_are_in_numeric_order():
    """A tie showed one of the tied values, and no count; hidden size 100 came before 50."""
    from analysis.reae_study import curves, most_common

    assert most_common([0.5, 0.9, 0.1]) == "0.1, 0.5, 0.9 (1 each of 3)"
    assert most_common([0.9] * 5 + [0.5] * 3) == "0.9 (5 of 8)" and most_common([0.2, 0.2]) == "0.2"
    runs = [{"config": {"model": {"hidden_size": size, "rho": 0.1}}, "metrics": {"test/acc": 0.9}, "overrides": []}
            for size in (100, 50)]
    assert list(curves(runs, "model.rho", "model.hidden_size")) == [50, 100]
    seeded = [{**run, "seed": 1, "path": f"sweep/{n}"} for n, run in enumerate(runs)]  # a point's repeats: its seeds
    with pytest.raises(ConfigError, match=r"two runs of seed 1 with one setting \(sweep/1, copy/1\), which the figure"):
        curves([*seeded, {**seeded[1], "path": "copy/1"}], "model.rho", "model.hidden_size")


def test_the_table_says_which_checkpoint_its_metrics_describe(tmp_path):
    sweep = tmp_path / "sweep"
    runs = [run(0.1, 1, 0.9), run(0.1, 2, 0.8)]
    for stored in runs:
        stored["evaluated_checkpoint"] = "best checkpoint by val/acc (max)"
    write_runs(sweep, runs)
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "val/ and test/ metrics of each run's best checkpoint by val/acc (max). ± is the sample standard" in text


@pytest.mark.parametrize(("override", "message"), [
    ("metrics=[test/accuracy]", "'metrics' names 'test/accuracy', which no run has; the runs have the metrics "
                                "test/acc."),
    ("metrics=[test/acc] group_by=[model.lr]", "'group_by' names 'model.lr', which no run has; the runs were "
     "given model.optimizer.lr, seed and their configs have e.g. model.optimizer.lr (any dotted config key works)."),
])
def test_a_key_no_run_has_is_named_with_the_keys_they_have_and_no_table_is_written(tmp_path, override, message):
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.9), run(0.01, 1, 0.8)])
    with pytest.raises(UnknownKeyError) as raised:
        evaluate(compose_config([f"runs={sweep}", *override.split()], tmp_path / "out", "evaluate"))
    assert message in raised.value.args[0]
    assert not (sweep / "table.md").exists()


def test_one_metric_or_key_may_be_typed_without_brackets_and_output_folders_are_made(tmp_path):
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92), run(0.01, 1, 0.80)])
    output = tmp_path / "report" / "tables" / "lr.md"
    typed = evaluate(compose_config([f"runs={sweep}", "metrics=test/acc", "group_by=model.optimizer.lr",
                                     f"output={output}"], tmp_path / "out", "evaluate"))
    listed = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]", "group_by=[model.optimizer.lr]"],
                                     tmp_path / "out", "evaluate"))
    assert typed == listed and output.read_text().strip() == typed
    (tmp_path / "existing").mkdir()
    for folder in (f"{tmp_path}/existing", f"{tmp_path}/new/"):  # a folder: the task's own file name in it
        evaluate(compose_config([f"runs={sweep}", "metrics=test/acc", f"output={folder}"], tmp_path / "out",
                                "evaluate"))
        assert (Path(folder) / "table.md").read_text().strip() == typed


@pytest.mark.parametrize(("task", "made_by"), [("reae_table1", "model=forward_autoencoder"),
                                               ("reae_figure2", "experiment=reae_figure2_* (e.g. reae_figure2_digits)"),
                                               ("reae_figure3", "experiment=reae_figure3_* (e.g. reae_figure3_mnist)"),
                                               ("perceptual_table1", "experiment=perceptual_*"),
                                               ("mi_lr_study", "callbacks=mi_lr")])
def test_a_study_given_runs_of_another_kind_says_which_runs_it_reads(tmp_path, task, made_by):
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.9), run(0.01, 1, 0.8)])
    with pytest.raises(ConfigError, match=re.escape(f"whose 2 run(s) task={task} does not study: it reads runs made "
                                                    f"with {made_by}")):
        evaluate(compose_config([f"runs={sweep}", f"task={task}"], tmp_path / "out", "evaluate"))
    assert list(sweep.glob("*.md")) == [] and list(sweep.glob("*.png")) == []


def test_a_study_given_some_runs_of_another_kind_names_one_and_writes_nothing(tmp_path):
    """Only some of them used to pass: a probe then ran on a classifier's weights (a traceback after the first
    run's probe.json), and mi_lr_study tabled a LeNet-5 run as a row of nan."""
    sweep = tmp_path / "sweep"
    autoencoder = {"seed": 0, "metrics": {"test/acc": 0.9}, "config": {"model": {"_target_": FORWARD_AUTOENCODER,
                                                                                  "feature_map": "reae"}}}
    write_runs(sweep, [autoencoder, run(0.1, 1, 0.9)])
    with pytest.raises(ConfigError, match=f"which holds 1 run\\(s\\) task=reae_table1 does not study "
                                          f"\\({sweep}/1\\): it reads runs made with model=forward_autoencoder.*; "
                                          f"give only such runs."):
        evaluate(compose_config([f"runs={sweep}", "task=reae_table1"], tmp_path / "out", "evaluate"))
    assert list(sweep.glob("*.md")) == []


def test_a_job_folder_named_by_its_number_is_a_run_and_a_number_is_a_metric_s_name(tmp_path, monkeypatch):
    """In a sweep directory, Hydra reads runs=0 and runs=[0,1] (its job folders) as integers."""
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92)])
    monkeypatch.chdir(sweep)
    one = evaluate(compose_config(["runs=0", "metrics=test/acc", f"output={tmp_path}/one.md"], tmp_path / "out",
                                  "evaluate"))
    both = evaluate(compose_config(["runs=[0,1]", "metrics=test/acc", f"output={tmp_path}/both.md"],
                                   tmp_path / "out", "evaluate"))
    assert "| 0.9000 ± — | 1 |" in one and "| 0.9100 ± 0.0141 | 2 |" in both
    with pytest.raises(UnknownKeyError, match="Config key 'metrics' names '3', which no run has"):
        evaluate(compose_config(["runs=[0,1]", "metrics=3"], tmp_path / "out", "evaluate"))


def test_an_empty_list_of_runs_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"Config key 'runs' is \[\], which names no run; name a run or multirun"):
        evaluate(compose_config(["runs=[]"], tmp_path / "out", "evaluate"))


def test_every_task_documents_keys_that_conf_evaluate_yaml_defines():
    defined = {line.split(":")[0] for line in (ROOT / "conf" / "evaluate.yaml").read_text().splitlines()
               if line and line[0].isalpha()}
    for name, task in TASKS.items():
        assert task_keys(task), f"task {name!r}: its docstring has no 'Keys:' line"
        assert set(task_keys(task)) <= defined, (name, task_keys(task))


@pytest.mark.slow
def test_command_line_errors_are_one_sentence_with_exit_2_and_help_lists_tasks(tmp_path):
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.9)])
    no_runs = run_cli(str(ROOT / "evaluate.py"), cwd=tmp_path)  # from another working directory
    assert no_runs.returncode == 2 and "Traceback" not in no_runs.stderr
    assert no_runs.stderr.strip() == ("Config error: Config key 'runs' is not set; name a run or multirun directory, "
                                      "e.g. python evaluate.py runs=logs/train/multiruns/<date>_<time>")
    unknown = run_cli(str(ROOT / "evaluate.py"), f"runs={sweep}", "metrics=[test/accuracy]", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "test/accuracy" in unknown.stderr
    assert not (sweep / "table.md").exists()
    shown = run_cli("evaluate.py", "--help")
    assert shown.returncode == 0
    for name, task in TASKS.items():
        assert f"  {name}: " in shown.stdout and f"keys: {', '.join(task_keys(task))}" in shown.stdout
    assert "data/" not in shown.stdout and "== Config ==" not in shown.stdout  # not train.py's config groups
    # a docstring's first paragraph and a key's comment, whole where they go on for more than one line
    assert "then Table 4: adversarial test-set examples and Gaussian noise of stddev 0.06, then " in shown.stdout
    assert "where runs have them, else the runs' optimized_metric and its test/ twin" in shown.stdout
    # the keys within a key, by their dotted names, as typed on the command line
    assert "  szegedy.examples=100  images attacked per model" in shown.stdout
    assert "  mi_sample_size.sizes=[100, 250, 500, 1000, 2000, 4000]\n" in shown.stdout


@pytest.mark.parametrize(("command", "unbuffered"), [
    (["evaluate.py", "--help"], {}), (["evaluate.py", "--help"], {"PYTHONUNBUFFERED": "1"}),
    (["train.py", "--help"], {}), (["train.py", "--cfg", "job"], {"PYTHONUNBUFFERED": "1"}),
], ids=["evaluate-help-buffered", "evaluate-help-unbuffered", "train-help", "train-cfg-unbuffered"])
def test_output_into_a_pipe_already_closed_ends_quietly(command, unbuffered):
    """``python evaluate.py --help | true``: the reader is gone before the text is written. No traceback, and the exit
    code a shell gives a command that a closed pipe stopped (141, as ``yes | true``). A fresh interpreter: a forked
    one's stdout is not the one python opens for a pipe."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"} | unbuffered
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, *command], cwd=ROOT, stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300, env=environment)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, "")


# What Hydra answers before any job runs, and tables of finished runs ({tmp}: the test's folder, holding two runs in
# sweep/ and a feature-prediction autoencoder's in perceptual/):
# (command, environment, exit code, a line of the answer)
ANSWERED_WITHOUT_TORCH = {
    "train-help": (["train.py", "--help"], {}, 0, "== Configuration groups =="),
    "train-cfg": (["train.py", "--cfg", "job", "model=lenet5_classic"], {}, 0,
                  "_target_: lightning_modules.lenet5.LeNet5Classic"),
    # Hydra resolved its own node alone, without paths.log_dir that the run directory interpolates: a traceback
    "train-cfg-hydra-resolved": (["train.py", "--cfg", "hydra", "-p", "hydra.run", "--resolve"], {}, 0,
                                 "dir: logs/train/runs/20"),
    "train-completion-install": (["train.py", "-sc", "install=bash"], {}, 0, "-F hydra_bash_completion python"),
    "train-completion": (["train.py", "-sc", "query=bash"], {"COMP_LINE": "python train.py model=lenet5_c"}, 0,
                         "model=lenet5_classic model=lenet5_classic_sdlm"),
    "train-refusal": (["train.py", "model=lenet6"], {}, 2, "Config group 'model' has no option 'lenet6'"),
    "evaluate-help": (["evaluate.py", "--help"], {}, 0, "Tasks (task=...; default table):"),
    "evaluate-refusal": (["evaluate.py", "runs=a", "tsk=table"], {}, 2, "Config key 'tsk' is not in the config"),
    "evaluate-table": (["evaluate.py", "runs={tmp}/sweep", "output={tmp}/table.md"], {}, 0,
                       "| 0.1 | 0.8500 ± 0.0707 |"),
    "evaluate-perceptual-table": (["evaluate.py", "task=perceptual_table1", "runs={tmp}/perceptual",
                                   "output={tmp}/"], {}, 0, "| I-F-FP | 0.2500 ± — (n=1) |"),
    "evaluate-perceptual-figures": (["evaluate.py", "task=perceptual_figures", "runs={tmp}/perceptual",
                                     "output={tmp}/"], {}, 0, "| I-F-FP | 128 | 1 | 2.00 ± — | 0.2500 ± — |"),
}


@pytest.mark.parametrize(("command", "environment", "code", "answer"), ANSWERED_WITHOUT_TORCH.values(),
                         ids=ANSWERED_WITHOUT_TORCH)
def test_help_config_completion_refusals_and_tables_answer_without_importing_torch(command, environment, code, answer,
                                                                                   tmp_path):
    """The entry points import torch and Lightning (about 6 s here) only for a job that needs them: Hydra's help, a
    config shown, shell completion (each TAB runs the script), its refusal of a command line and a table of finished
    runs (JSON files) come in under a second. A fresh interpreter, as a user's: python -X importtime lists every
    module it imports."""
    write_runs(tmp_path / "sweep", [run(0.1, 1, 0.9), run(0.1, 2, 0.8)])
    write_runs(tmp_path / "perceptual", [{
        "config": {"data": {"_target_": "datamodules.lunarlander.LunarLanderDataModule"},
                   "model": {"_target_": PERCEPTUAL_AUTOENCODER, "procedure": "I-F-FP", "latent_dim": 128,
                             "loss_network": {"weights": "imagenet"}}},
        "metrics": {"probe/test_mean_distance": 0.25, "train/epoch_seconds_mean": 2.0}, "overrides": ["seed=0"]}])
    script, *arguments = [word.replace("{tmp}", str(tmp_path)) for word in command]
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / script), *arguments], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=os.environ | environment)
    imported, said = imported_and_said(done.stderr)
    assert done.returncode == code and answer in done.stdout + said, (done.stdout + said)[-3000:]
    assert not imported & {"torch", "lightning"}, sorted(imported & {"torch", "lightning"})


def test_unknown_task_and_missing_runs_are_named(tmp_path):
    with pytest.raises(ConfigError, match="'task' is 'attack', but it must be one of table, "):
        evaluate(compose_config([f"runs={tmp_path}", "task=attack"], tmp_path / "out", "evaluate"))
    with pytest.raises(ConfigError, match=f"'runs' is '{tmp_path}', but there is no results.json under it"):
        evaluate(compose_config([f"runs={tmp_path}"], tmp_path / "out", "evaluate"))
    with pytest.raises(ConfigError, match=f"'runs' is '{tmp_path / 'typo'}', but it does not exist; give the output"):
        evaluate(compose_config([f"runs={tmp_path / 'typo'}"], tmp_path / "out", "evaluate"))


def test_a_config_group_chosen_on_the_command_line_groups_by_its_name(tmp_path):
    sweep = tmp_path / "sweep"
    runs = [{"seed": seed, "overrides": [f"model={name}", f"seed={seed}"], "metrics": {"test/acc": acc},
             "config": {"model": {"net": {"_target_": name}}}}
            for name, seed, acc in (("lenet5", 1, 0.9), ("lenet5", 2, 0.9), ("lenet5_classic", 1, 0.8))]
    write_runs(sweep, runs)
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "| lenet5 | 0.9000 ± 0.0000 | 2 |" in text and "| lenet5_classic | 0.8000 ± — | 1 |" in text
    # a group the runs did not choose on the command line: its class, not its whole config
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]", "group_by=[model.net]"], tmp_path / "out",
                                   "evaluate"))
    assert "| lenet5 | 0.9000 ± 0.0000 | 2 |" in text and "| lenet5_classic | 0.8000 ± — | 1 |" in text
    # a key one run set on the command line and the others took from the config: one spelling, as typed
    write_runs(tmp_path / "mixed", [{**runs[0], "config": {"train": True}},
                                    {**runs[1], "overrides": ["train=false"], "config": {"train": False}}])
    text = evaluate(compose_config([f"runs={tmp_path / 'mixed'}", "metrics=[test/acc]", "group_by=[train]"],
                                   tmp_path / "out", "evaluate"))
    assert "| true | 0.9000 ± — | 1 |" in text and "| false | 0.9000 ± — | 1 |" in text
    # Hydra's sweep writes a swept boolean as True, a default model group is a choice in results.json (it was the
    # class's name: two rows for one model, lenet5 typed and ClassificationModule taken from the defaults)
    module = {"_target_": "lightning_modules.classifier.ClassificationModule"}
    typed = {**runs[0], "config": {"model": module, "train": True}}
    swept = {**typed, "seed": 3, "overrides": ["model=lenet5", "train=True", "seed=3"]}
    chosen = [{**typed, "seed": seed, "overrides": [f"seed={seed}"], "choices": {"model": name},
               "metrics": {"test/acc": acc}}
              for name, seed, acc in (("lenet5", 2, 0.9), ("lenet5_classic", 1, 0.8))]
    write_runs(tmp_path / "choices", [typed, swept, *chosen])
    text = evaluate(compose_config([f"runs={tmp_path / 'choices'}", "metrics=[test/acc]", "group_by=[model,train]"],
                                   tmp_path / "out", "evaluate"))
    assert "| lenet5 | true | 0.9000 ± 0.0000 | 3 |" in text and "| lenet5_classic | true | 0.8000 ± — | 1 |" in text


def test_runs_without_accuracy_are_tabled_by_their_optimized_metric(tmp_path):
    """The autoencoders log no test/acc: the default table shows their optimized val/loss and its test/ twin."""
    sweep = tmp_path / "sweep"
    runs = [{"seed": seed, "overrides": ["model.procedure=I-F-FP", f"seed={seed}"], "optimized_metric": "val/loss",
             "metrics": {"val/loss": loss, "test/loss": loss + 0.5, "val/kld": 0.0},
             "config": {"model": {"procedure": "I-F-FP"}}} for seed, loss in ((1, 0.2), (2, 0.4))]
    write_runs(sweep, runs)
    text = evaluate(compose_config([f"runs={sweep}"], tmp_path / "out", "evaluate"))
    assert "| model.procedure | test/loss | val/loss | runs |" in text
    assert "| I-F-FP | 0.8000 ± 0.1414 | 0.3000 ± 0.1414 | 2 |" in text


def test_a_sweep_s_jobs_without_results_are_named_below_its_table(tmp_path):
    """A failed (or killed, or running) job leaves a row with fewer runs; the table says which jobs are missing."""
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92)])
    (sweep / "2" / ".hydra").mkdir(parents=True)
    (sweep / "2" / ".hydra" / "overrides.yaml").write_text("- model.optimizer.lr=0.1\n- seed=3\n")
    (sweep / "2" / ".hydra" / "hydra.yaml").write_text("")  # a kill (or a full disk) while Hydra wrote it
    (sweep / "3" / ".hydra").mkdir(parents=True)
    (sweep / "3" / ".hydra" / "overrides.yaml").write_text("- model.optimizer.lr=0.1\n- seed=4\n")
    (sweep / "3" / ".hydra" / "hydra.yaml").write_text("hydra:\n  run: {dir: 'logs/tr")  # cut short there
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "| 0.1 | 0.9100 ± 0.0141 | 2 |" in text
    assert text.splitlines()[-1] == ("Left out: 2 job directories without results.json (failed, killed or still "
                                     "running): 2 (model.optimizer.lr=0.1 seed=3), 3 (model.optimizer.lr=0.1 seed=4).")
    # evaluate.py's own output folders (under logs/evaluate/, beside logs/train/) write no results.json: not jobs
    (sweep / "evaluate" / ".hydra").mkdir(parents=True)
    # (by its choices, as Hydra records them: hydra.job.name may be set to anything, -cn names a config of one's own)
    (sweep / "evaluate" / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    name: my_study\n    config_name: "
                                                              "my_evaluate\n  runtime:\n    choices:\n"
                                                              "      hydra/launcher: basic\n")
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert text.splitlines()[-1].startswith("Left out: 2 job directories without results.json")


def test_a_run_s_checkpoint_is_found_in_its_folder_where_it_is_now(tmp_path):
    """results.json records absolute paths: a copied run must not read the original's weights, a moved one must
    find its own; a test-only run's checkpoint (outside its folder) stays where it was."""
    from framework.results import run_checkpoint

    moved = {"path": str(tmp_path / "b"), "output_dir": "/old/a",
             "best_checkpoint": "/old/a/checkpoints/epoch_003.ckpt"}
    assert run_checkpoint(moved) == tmp_path / "b" / "checkpoints" / "epoch_003.ckpt"
    tested = {**moved, "best_checkpoint": "/elsewhere/run/checkpoints/last.ckpt"}
    assert run_checkpoint(tested) == Path("/elsewhere/run/checkpoints/last.ckpt")
    assert run_checkpoint({**moved, "best_checkpoint": None}) == tmp_path / "b" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(("experiment", "printed"), [
    ("experiment=reae_table1_digits", ["python evaluate.py task=reae_table1 runs={sweep}"]),
    ("experiment=perceptual_lunarlander", ["python evaluate.py task=perceptual_table1 runs={sweep}",
                                           "python evaluate.py task=perceptual_figures runs={sweep}"]),
    ("model.optimizer.lr=0.1", ["python evaluate.py runs={sweep}"])])
def test_a_sweep_ends_by_printing_its_study_s_evaluate_commands(capsys, tmp_path, experiment, printed):
    from framework.compose import compose_with_hydra
    from framework.hydra_callbacks import PrintSweepDir

    sweep = tmp_path / "s"
    config = compose_with_hydra([experiment, f"hydra.sweep.dir={sweep}", "hydra.job.name=train"])
    PrintSweepDir().on_multirun_end(config)
    assert capsys.readouterr().out.splitlines() == [
        f"sweep directory: {sweep}", "none of its jobs wrote a results.json, so there is nothing to summarise"]
    write_json_atomic(sweep / "0" / "results.json", {"metrics": {}})
    PrintSweepDir().on_multirun_end(config)
    assert capsys.readouterr().out.splitlines() == [
        f"sweep directory: {sweep}", *(f"summarise it with: {command.format(sweep=sweep)}" for command in printed
                                       if "perceptual_table1" not in command)]  # no probed run at z = 128 yet
    probed = {"metrics": {"probe/test_accuracy": 0.5}, "config": {"model": {"latent_dim": 128}}}
    write_json_atomic(sweep / "1" / "results.json", probed)
    PrintSweepDir().on_multirun_end(config)
    assert capsys.readouterr().out.splitlines() == [
        f"sweep directory: {sweep}", *(f"summarise it with: {command.format(sweep=sweep)}" for command in printed)]


def test_a_perceptual_sweep_without_z_128_is_not_offered_table1(tmp_path):
    """Table I shows z = 128 only: a sweep of other z was offered task=perceptual_table1, which then refused."""
    from framework.stopping import evaluate_commands

    tasks = ["perceptual_table1", "perceptual_figures"]
    for job, latent_dim in enumerate((32, 64)):
        write_json_atomic(tmp_path / str(job) / "results.json",
                          {"metrics": {"probe/test_accuracy": 0.5}, "config": {"model": {"latent_dim": latent_dim}}})
    assert evaluate_commands(tasks, str(tmp_path)) == [f"python evaluate.py task=perceptual_figures runs={tmp_path}"]
    assert evaluate_commands(tasks[:1], str(tmp_path)) == [f"python evaluate.py runs={tmp_path}"]  # the default table
    (tmp_path / "1" / "results.json").write_text("{")  # broken: the table's own command names it
    assert len(evaluate_commands(tasks, str(tmp_path))) == 2


def test_a_sweep_given_one_evaluate_task_as_a_word_is_offered_that_task(tmp_path):
    """evaluate_tasks=reae_table1 on the command line is a string, not a list of one task."""
    from framework.stopping import evaluate_commands

    write_json_atomic(tmp_path / "0" / "results.json", {"metrics": {}})
    assert evaluate_commands("reae_table1", str(tmp_path)) == [f"python evaluate.py task=reae_table1 runs={tmp_path}"]


def test_a_perceptual_sweep_probed_after_training_is_offered_table1(tmp_path):
    """Table I counts a run with the probe.json that task=perceptual_probe wrote: the sweep's end offers it then."""
    from framework.stopping import evaluate_commands

    tasks = ["perceptual_table1", "perceptual_figures"]
    write_json_atomic(tmp_path / "0" / "results.json", {"metrics": {}, "config": {"model": {"latent_dim": 128}}})
    assert evaluate_commands(tasks, str(tmp_path)) == [f"python evaluate.py task=perceptual_figures runs={tmp_path}"]
    write_json_atomic(tmp_path / "0" / "probe.json", {"metric": "accuracy", "test_metric": 0.5, "val_loss": 1.0,
                                                      "baseline": 0.1, "loss_network_weights": "imagenet"})
    assert evaluate_commands(tasks, str(tmp_path)) == [f"python evaluate.py task={task} runs={tmp_path}"
                                                       for task in tasks]


@pytest.mark.parametrize(("folder", "typed"), [("my sweep", '"runs={sweep}/my sweep"'),
                                                ("a,b", "\"runs='{sweep}/a,b'\""),
                                                ("a$b", "'runs='\"'\"'{sweep}/a$b'\"'\"''")])
def test_a_printed_evaluate_command_runs_as_printed_in_a_shell(tmp_path, folder, typed):
    """A sweep directory with a space or a comma printed a command that failed as typed; one with a $ must not be
    in double quotes, where the shell would expand it. The shell splits the printed command into its words."""
    import subprocess

    from framework.stopping import evaluate_commands

    runs = tmp_path / folder
    write_json_atomic(runs / "0" / "results.json", {"metrics": {"test/acc": 0.5}})
    [command] = evaluate_commands(None, str(runs))
    assert command == f"python evaluate.py {typed.format(sweep=tmp_path)}"
    words = subprocess.run(["sh", "-c", f"printf '%s\\n' {command}"], capture_output=True, text=True, check=True)
    script, *arguments = words.stdout.splitlines()[1:]
    table = run_cli(str(ROOT / script), *arguments, cwd=tmp_path)
    assert table.returncode == 0, table.stderr[-2000:]
    assert (runs / "table.md").is_file()


def test_every_experiment_s_evaluate_tasks_are_tasks_of_evaluate_py():
    from framework.compose import CONF, compose_with_hydra

    for path in sorted((CONF / "experiment").glob("*.yaml")):
        tasks = compose_with_hydra([f"experiment={path.stem}"]).evaluate_tasks
        assert set(tasks) <= set(TASKS), path.name


@pytest.mark.slow
def test_a_table_of_a_sweep_cut_short_names_the_jobs_it_lacks(tmp_path, monkeypatch):
    """A sweep killed in its third job (a kill, a time limit): the jobs it never started, a whole setting among them,
    went unmentioned; a finished job started again with other overrides and killed was tabled as finished."""
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", "+callbacks.kill.epoch=5,1,7", "seed=1,2", "trainer.max_epochs=2", "logger=none",
                     "+callbacks.kill._target_=tests.kill_callback.KillAtEpochStart", "trainer.accelerator=cpu",
                     "callbacks.progress_bar.refresh_rate=0", f"hydra.sweep.dir={sweep}")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    # the same sweep had it swept seed=shuffle(1,2): reading its multirun.yaml draws another order than the run's
    shutil.copytree(sweep, tmp_path / "shuffled")
    multirun = tmp_path / "shuffled" / "multirun.yaml"
    multirun.write_text(multirun.read_text().replace("- seed=1,2", "- seed=shuffle(1,2)"))
    monkeypatch.setattr("hydra.core.override_parser.types.shuffle", list.reverse)  # 2,1: a deterministic other order
    text = evaluate(compose_config([f"runs={tmp_path / 'shuffled'}", "metrics=[test/acc]"], tmp_path / "out",
                                   "evaluate"))
    assert "Finished with other values" not in text, text  # jobs 0 and 1 ran what the sweep gives, in another order
    never = text.split("Not started, the sweep stopped before them: 3 jobs: ")[-1]
    assert sorted(job.split(" (")[1].split(" trainer.")[0] for job in never.split("), ")) == [
        "+callbacks.kill.epoch=1 seed=2", "+callbacks.kill.epoch=7 seed=1", "+callbacks.kill.epoch=7 seed=2"], text
    monkeypatch.undo()
    # the same sweep with named job folders (hydra.sweep.subdir=seed_${seed}), in a folder of sweeps, given twice
    shutil.copytree(sweep, tmp_path / "sweeps" / "named")
    multirun = tmp_path / "sweeps" / "named" / "multirun.yaml"
    multirun.write_text(multirun.read_text().replace("subdir: ${hydra.job.num}", "subdir: seed_${seed}"))
    (tmp_path / "sweeps" / "half").mkdir()  # a multirun.yaml that a kill cut short: that sweep is not looked into
    (tmp_path / "sweeps" / "half" / "multirun.yaml").write_text(multirun.read_text()[:700])
    (tmp_path / "link").symlink_to(tmp_path / "sweeps")
    runs = f"runs=[{tmp_path / 'sweeps'},{tmp_path / 'link'}]"
    text = evaluate(compose_config([runs, "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    never = text.split("Not started, the sweep stopped before them: 3 jobs: ")[-1]
    assert [job.split(" trainer.")[0] for job in never.split("), ")] == [
        "sweeps/named/job 3 (+callbacks.kill.epoch=1 seed=2", "sweeps/named/job 4 (+callbacks.kill.epoch=7 seed=1",
        "sweeps/named/job 5 (+callbacks.kill.epoch=7 seed=2"], text
    assert "Left out: 1 job directory without results.json (failed, killed or still running): sweeps/named/2 (" in text
    record = sweep / "1" / ".hydra" / "overrides.yaml"  # what Hydra writes as job 1 starts again, with more epochs
    record.write_text(record.read_text().replace("trainer.max_epochs=2", "trainer.max_epochs=3") + "- ckpt_path=auto\n")
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    rows = [line for line in text.splitlines() if line.startswith("| 5 |")]
    assert len(rows) == 1 and rows[0].endswith(" | 2 |"), text  # job 1 keeps its row: its results.json is real
    assert "Left out: 1 job directory without results.json (failed, killed or still running): 2 (" in text
    assert ("Started again with other overrides and not finished, so their rows show the earlier start's results.json: "
            "1 job directory: 1 (+callbacks.kill.epoch=5 seed=2 trainer.max_epochs=3 ") in text
    never = text.split("Not started, the sweep stopped before them: 3 jobs: ")[-1]
    assert [job.split(" trainer.")[0] for job in never.split("), ")] == [
        "3 (+callbacks.kill.epoch=1 seed=2", "4 (+callbacks.kill.epoch=7 seed=1", "5 (+callbacks.kill.epoch=7 seed=2"]
    assert "Finished with other values" not in text
    # the sweep continued with more epochs (its multirun.yaml rewritten) and stopped in job 1: job 0's results.json,
    # finished with 2 epochs, is not what the sweep now gives it
    multirun = sweep / "multirun.yaml"
    multirun.write_text(multirun.read_text().replace("trainer.max_epochs=2", "trainer.max_epochs=3"))
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert ("Finished with other values than the sweep's multirun.yaml now gives them (their rows show the values they "
            "ran with): 1 job directory: 0 (+callbacks.kill.epoch=5 seed=1 trainer.max_epochs=2 ") in text
    named = tmp_path / "sweeps" / "named"  # its jobs found by the numbers their .hydra/hydra.yaml give
    (named / "multirun.yaml").write_text(multirun.read_text().replace("subdir: ${hydra.job.num}", "subdir: s${seed}"))
    text = evaluate(compose_config([f"runs={named}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert ("Finished with other values than the sweep's multirun.yaml now gives them (their rows show the values they "
            "ran with): 2 job directories: 0 (+callbacks.kill.epoch=5 seed=1 trainer.max_epochs=2 ") in text


@pytest.mark.parametrize(("given", "task", "reads"), [
    ("metrics=[val/acc]", "reae_table1", "table"), ("group_by=[seed]", "reae_figure2", "table"),
    ("szegedy.examples=5", "table", "szegedy_table1"), ("mi_sample_size.draws=1", "mi_lr_study", "mi_sample_size")])
def test_a_key_the_task_does_not_read_is_one_sentence(tmp_path, given, task, reads):
    """task=reae_table1 given metrics=[val/acc] tabled test accuracy without a word."""
    key = given.split(".")[0].split("=")[0]
    said = rf"^Config key '{key}' is .*, but task={task} does not read it \(it reads [a-z_, ]+\); leave it out, or "
    with pytest.raises(ConfigError, match=said + rf"give it to a task that reads it \(.*{reads}"):
        evaluate(compose_config([f"task={task}", f"runs={tmp_path}", given], tmp_path / "out", "evaluate"))


def test_a_job_runs_otherwise_by_the_values_it_gives_not_by_their_spelling():
    """A sweep continued with a swept key added, whose first value every earlier job had (README: they are kept as
    they are), or with ckpt_path=auto, runs its finished jobs as they ran; other values, or a key it no longer
    gives, do not."""
    from framework.results import ran_otherwise

    run = {"overrides": ["seed=1", "trainer.max_epochs=2"], "choices": {"model": "lenet5"},
           "config": {"data": {"batch_size": 64}, "seed": 1, "trainer": {"max_epochs": 2}}}
    assert not ran_otherwise(["data.batch_size=64", "seed=1", "trainer.max_epochs=2", "ckpt_path=auto"], run)
    assert not ran_otherwise(["model=lenet5", "seed=1", "trainer.max_epochs=2.0"], run)
    assert ran_otherwise(["seed=1", "trainer.max_epochs=3"], run)
    assert ran_otherwise(["data.batch_size=32", "seed=1", "trainer.max_epochs=2"], run)
    assert ran_otherwise(["seed=1"], run)  # max_epochs now the config's default, which the run's record lacks
    assert ran_otherwise(["seed=1", "trainer.max_epochs=2", "~callbacks.early_stopping"], run)


def test_a_sweep_started_outside_the_repository_prints_the_evaluate_command_as_typed_from_there(tmp_path, monkeypatch):
    """From a folder of one's own configs, the printed `python evaluate.py runs=...` failed: no evaluate.py there."""
    from framework.stopping import evaluate_commands

    write_json_atomic(tmp_path / "sweeps" / "w" / "0" / "results.json", {"metrics": {"test/acc": 0.5}})
    monkeypatch.chdir(tmp_path)
    [command] = evaluate_commands(None, "sweeps/w")
    assert command == f"python {os.path.relpath(ROOT / 'evaluate.py', tmp_path)} runs=sweeps/w"
    table = run_cli(*command.split()[1:], cwd=tmp_path)
    assert table.returncode == 0 and (tmp_path / "sweeps" / "w" / "table.md").is_file(), table.stderr[-2000:]


def write_multirun(sweep: Path, task: list[str], subdir: str = "${hydra.job.num}", script: str = "trainer") -> None:
    """The multirun.yaml Hydra writes as a sweep starts, cut down to what reading a sweep's jobs takes."""
    sweep.mkdir(parents=True, exist_ok=True)
    listed = "".join(f"    - {override}\n" for override in task)
    (sweep / "multirun.yaml").write_text(f"hydra:\n  sweep:\n    dir: {sweep}\n    subdir: {subdir}\n  sweeper:\n"
                                         f"    params: null\n  overrides:\n    task:\n{listed}"
                                         f"  runtime:\n    choices:\n      {script}: default\n")


def write_job(folder: Path, overrides: list[str], num: int | None = None, results: dict | None = None) -> None:
    """A job's folder: Hydra's record of its start, and the results.json it wrote if it finished."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {override}\n" for override in overrides))
    if num is not None:
        (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
    if results is not None:
        write_json_atomic(folder / "results.json", results)


def seed_run(seed: int, *overrides: str) -> dict:
    return {"seed": seed, "overrides": [f"seed={seed}", *overrides], "metrics": {"test/acc": 0.9},
            "config": {"seed": seed, "trainer": {"max_epochs": 2}}}


def test_a_sweep_s_jobs_are_found_by_number_or_by_the_number_their_hydra_yaml_gives(tmp_path):
    """Job 0 finished, job 1 killed, job 2 never started; an evaluate.py multirun beside it is no sweep of jobs."""
    from framework.results import jobs_not_started, jobs_of_other_values, swept_jobs

    sweep = tmp_path / "sweeps" / "numbered"
    write_multirun(sweep, ["seed=1,2,3", "trainer.max_epochs=2"])
    write_job(sweep / "0", ["seed=1", "trainer.max_epochs=2"], results=seed_run(1, "trainer.max_epochs=2"))
    write_job(sweep / "1", ["seed=2", "trainer.max_epochs=2"])
    write_multirun(tmp_path / "sweeps" / "studied", ["task=table,reae_table1"], script="task")
    jobs = swept_jobs(tmp_path / "sweeps")
    assert [(job.name, job.overrides, job.folder) for job in jobs] == [
        ("0", ["seed=1", "trainer.max_epochs=2"], sweep / "0"), ("1", ["seed=2", "trainer.max_epochs=2"], sweep / "1"),
        ("2", ["seed=3", "trainer.max_epochs=2"], None)]
    assert [job.name for job in jobs_not_started(jobs)] == ["2"]
    assert jobs_of_other_values(jobs) == []  # job 1, without results.json, is no job of other values
    write_multirun(sweep, ["seed=1,2,3", "trainer.max_epochs=3"])  # continued with more epochs, stopped in job 1
    assert jobs_of_other_values(swept_jobs(sweep)) == [sweep / "0"]
    named = tmp_path / "named"  # hydra.sweep.subdir=seed_${seed}: the folders say their numbers
    write_multirun(named, ["seed=1,2,3"], subdir="seed_${seed}")
    write_job(named / "seed_2", ["seed=2"], num=1, results=seed_run(2))
    write_job(named / "seed_1", ["seed=1"], num=0, results=seed_run(1))
    assert [(job.name, job.folder) for job in swept_jobs(named)] == [
        ("job 0", named / "seed_1"), ("job 1", named / "seed_2"), ("job 2", None)]


def test_a_shuffled_sweep_s_jobs_not_started_are_the_values_no_job_ran(tmp_path, monkeypatch):
    """shuffle() drew the order the jobs ran in, reading the multirun.yaml another (here reversed): jobs 0 and 1
    ran seeds 1 and 3, so the jobs not started are seeds 2 and 4, whichever job number each is given."""
    from framework.results import jobs_not_started, jobs_of_other_values, swept_jobs

    monkeypatch.setattr("hydra.core.override_parser.types.shuffle", list.reverse)
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["seed=shuffle(1,2,3,4)"])
    write_job(sweep / "0", ["seed=1"], results=seed_run(1))
    write_job(sweep / "1", ["seed=3"], results=seed_run(3))
    jobs = swept_jobs(sweep)
    assert [job.overrides for job in jobs[:2]] == [["seed=1"], ["seed=3"]] and jobs_of_other_values(jobs) == []
    assert sorted(job.overrides[0] for job in jobs_not_started(jobs)) == ["seed=2", "seed=4"]


def test_a_job_started_again_is_one_whose_last_start_gave_other_overrides(tmp_path):
    """A continuation with ckpt_path=auto runs what the job ran; more epochs, started and killed, does not."""
    from framework.results import jobs_started_again

    sweep = tmp_path / "sweep"
    write_job(sweep / "0", ["seed=1", "trainer.max_epochs=2", "ckpt_path=auto"],
              results=seed_run(1, "trainer.max_epochs=2"))
    write_job(sweep / "1", ["seed=2", "trainer.max_epochs=3"], results=seed_run(2, "trainer.max_epochs=2"))
    assert jobs_started_again(sweep) == [sweep / "1"]


def test_a_sweep_given_twice_through_a_link_counts_each_run_and_job_once(tmp_path):
    """runs=[sweeps,link] (a link to sweeps): each run once in its row, each job without results.json named once."""
    from framework.results import jobs_without_results

    sweeps = tmp_path / "sweeps"
    write_runs(sweeps / "a", [run(0.1, 1, 0.90), run(0.1, 2, 0.92)])
    write_job(sweeps / "a" / "2", ["model.optimizer.lr=0.1", "seed=3"])
    write_job(sweeps / "b" / "0", ["model.optimizer.lr=0.1", "seed=4"])
    (tmp_path / "link").symlink_to(sweeps)
    text = evaluate(compose_config([f"runs=[{sweeps},{tmp_path / 'link'}]", "metrics=[test/acc]"], tmp_path / "out",
                                   "evaluate"))
    assert "| 0.1 | 0.9100 ± 0.0141 | 2 |" in text
    assert "Left out: 2 job directories without results.json (failed, killed or still running): sweeps/a/2 (" in text
    assert jobs_without_results([sweeps / "b", sweeps / "a"]) == [sweeps / "a" / "2", sweeps / "b" / "0"]


def test_a_results_json_given_itself_is_tabled(tmp_path):
    sweep = tmp_path / "sweep"
    write_runs(sweep, [run(0.1, 1, 0.90), run(0.1, 2, 0.92)])
    text = evaluate(compose_config([f"runs={sweep / '0' / 'results.json'}", "metrics=[test/acc]",
                                    f"output={tmp_path}/one.md"], tmp_path / "out", "evaluate"))
    assert "| 0.1 | 0.9000 ± — | 1 |" in text


def test_a_metric_written_as_a_bool_is_not_a_number(tmp_path):
    """json's true is an int to isinstance: a mean of it would table 1.0000 as an accuracy."""
    from framework.errors import DataError
    from framework.results import read_results

    write_json_atomic(tmp_path / "results.json", {"metrics": {"test/acc": True}})
    with pytest.raises(DataError, match=r"\(its metric 'test/acc' is True, not a number\)"):
        read_results(tmp_path / "results.json")


def test_a_job_resumed_alone_with_its_data_elsewhere_did_not_finish_with_other_values(tmp_path):
    """A killed job rerun with ckpt_path=auto, its data in another folder and another logger (README: it stays in the
    row of its sweep) trained what the sweep gives it: it is no job that finished with other values."""
    from framework.results import jobs_of_other_values, swept_jobs

    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["seed=1,2"])
    write_job(sweep / "0", ["seed=1"], results=seed_run(1))
    resumed = ["seed=2", "ckpt_path=auto", "data.data_dir=/elsewhere", "logger=wandb"]
    write_job(sweep / "1", resumed, results=seed_run(2, *resumed[1:]))
    assert jobs_of_other_values(swept_jobs(sweep)) == []


def test_a_shuffled_sweep_s_job_resumed_alone_keeps_the_values_it_ran(tmp_path, monkeypatch):
    """Job 1 of seed=shuffle(1,2,3,4) ran seed 3, was killed and resumed alone with ckpt_path=auto: it was paired with
    seed 4, named as finished with other values, and seed 3 named as not started."""
    from framework.results import jobs_not_started, jobs_of_other_values, swept_jobs

    monkeypatch.setattr("hydra.core.override_parser.types.shuffle", list.reverse)
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["seed=shuffle(1,2,3,4)"])
    write_job(sweep / "0", ["seed=1"], results=seed_run(1))
    write_job(sweep / "1", ["seed=3", "ckpt_path=auto"], results=seed_run(3, "ckpt_path=auto"))
    jobs = swept_jobs(sweep)
    assert jobs_of_other_values(jobs) == []
    assert sorted(job.overrides[0] for job in jobs_not_started(jobs)) == ["seed=2", "seed=4"]

"""analysis/results_table.py: which runs a row pools and says it pools, the order of rows, the spelling of cells."""

import pytest

from analysis.results_table import check_one_setting, checkpoint_note, differing_keys, results_table
from evaluate import evaluate
from framework.compose import compose_config
from framework.errors import ConfigError
from framework.results import write_json_atomic

SGD = "torch.optim.SGD"


def write_runs(root, runs):
    for number, run in enumerate(runs):
        write_json_atomic(root / str(number) / "results.json", run)


def lr_run(lr: float, seed: int, acc: float) -> dict:
    """A run of ``model=lenet5`` (a default: in its choices) with ``model.optimizer.lr`` swept."""
    return {"seed": seed, "overrides": [f"model.optimizer.lr={lr}", f"seed={seed}"], "choices": {"model": "lenet5"},
            "config": {"model": {"optimizer": {"_target_": SGD, "lr": lr}}, "seed": seed},
            "metrics": {"test/acc": acc}}


def table(tmp_path, runs, *overrides: str) -> str:
    write_runs(tmp_path / "sweep", runs)
    return evaluate(compose_config([f"runs={tmp_path / 'sweep'}", "metrics=[test/acc]", *overrides],
                                   tmp_path / "out", "evaluate"))


def rows(text: str, column: int = 0) -> list[str]:
    """The cells of one column, in row order."""
    return [line.split(" | ")[column].lstrip("| ") for line in text.splitlines()[2:] if line.startswith("| ")]


LR_SWEEP = [lr_run(0.01, 1, 0.80), lr_run(0.01, 2, 0.82), lr_run(0.05, 1, 0.90), lr_run(0.05, 2, 0.92)]


@pytest.mark.parametrize(("group_by", "cell"), [("model", "lenet5"), ("model.optimizer", "SGD")])
def test_a_row_of_a_parent_key_that_pools_a_swept_key_below_it_says_so(tmp_path, group_by, cell):
    """``model`` shows the group's option and ``model.optimizer`` its class: neither says which lr a run had."""
    text = table(tmp_path, LR_SWEEP, f"group_by=[{group_by}]")
    assert f"| {cell} | 0.8600 ± 0.0589 | 4 |" in text
    assert text.endswith("Rows pool runs that differ in model.optimizer.lr (not in group_by).")
    shown = table(tmp_path, LR_SWEEP, f"group_by=[{group_by},model.optimizer.lr]")
    assert "Rows pool" not in shown and f"| {cell} | 0.01 | 0.8100 ± 0.0141 | 2 |" in shown


def test_only_shown_keys_and_how_a_run_ran_are_not_differences():
    runs = [{**run, "overrides": [*run["overrides"], f"paths.output_dir=/out/{n}", f"hydra.run.dir=/run/{n}",
                                  f"data.data_dir=/data/{n}"]} for n, run in enumerate(LR_SWEEP)]
    assert differing_keys(runs, ["model"]) == ["model.optimizer.lr"]
    assert differing_keys(runs, ["model.optimizer"]) == ["model.optimizer.lr"]
    assert differing_keys(runs, ["model.optimizer.lr"]) == []
    with pytest.raises(ConfigError, match=r"differ in model\.optimizer\.lr \(0\.01, 0\.05\), which the test table "
                                          r"would pool .* group_by=\[model,model\.optimizer\.lr\]"):
        check_one_setting([runs], shown=["model"], table="the test table")
    check_one_setting([runs], shown=["model.optimizer.lr"], table="the test table")


def test_a_row_that_pools_runs_whose_configs_differ_in_a_key_nobody_overrode_says_so(tmp_path):
    """Seeds swept on two days, with a default changed in between: the rows pooled lr 0.02 and 0.2 without a word.
    Paths into each run's own folder and the keys of how a run ran are no difference."""
    def day(lr: float, seed: int) -> dict:
        return {"seed": seed, "overrides": [f"seed={seed}"], "output_dir": f"/runs/{seed}",
                "config": {"model": {"optimizer": {"_target_": SGD, "lr": lr}}, "seed": seed, "paths": {"x": seed},
                           "callbacks": {"model_checkpoint": {"dirpath": f"/runs/{seed}/checkpoints"}}},
                "metrics": {"test/acc": 0.5}}

    runs = [day(0.02, 1), day(0.02, 2), day(0.2, 3)]
    for run in runs:  # the seed under another name (every repeat its own split) is no difference either
        run["config"]["data"] = {"split_seed": run["seed"]}
    assert differing_keys(runs[:2], []) == [] and differing_keys(runs, []) == ["model.optimizer.lr"]
    assert table(tmp_path, runs).endswith("Rows pool runs that differ in model.optimizer.lr (not in group_by).")
    with pytest.raises(ConfigError, match=r"differ in model\.optimizer\.lr \(0\.02, 0\.2\)"):
        check_one_setting([runs], shown=[], table="the test table")
    # the second day's command also gave a default as it is, or a key of how the runs ran: the configs were compared
    # only between runs of the same command line, and the changed default went unsaid
    runs[2]["overrides"] += ["data.batch_size=64", "callbacks.progress_bar.refresh_rate=0", "data.num_workers=1",
                             "data.on_device=false", "+callbacks.last_checkpoint.every_n_train_steps=1"]
    runs[2]["config"] |= {"callbacks": {**runs[2]["config"]["callbacks"], "progress_bar": {"refresh_rate": 0}}}
    for run in runs:
        run["config"]["data"]["batch_size"] = 64
    assert differing_keys(runs, []) == ["model.optimizer.lr"]


def test_where_and_how_a_callback_s_own_data_was_loaded_is_no_difference(tmp_path):
    """The perceptual probe's DataModule (callbacks.probe.data) follows the run's data_dir and generation_workers:
    seeds run on two machines, or the same frames made by another number of processes, are one setting."""
    def run(seed: int, data_dir: str, workers: int | None) -> dict:
        data = {"data_dir": data_dir, "generation_workers": workers, "rollouts": 4}
        return {"seed": seed, "overrides": [f"seed={seed}", f"data.data_dir={data_dir}"],
                "config": {"seed": seed, "data": data, "callbacks": {"probe": {"data": {**data, "train_seed": 1}}}},
                "metrics": {"test/acc": 0.5}}

    runs = [run(0, "/a", 1), run(1, "/b", None)]
    assert differing_keys(runs, []) == []
    check_one_setting([runs], shown=[], table="the test table")
    runs[1]["config"]["callbacks"]["probe"]["data"]["rollouts"] = 8  # which frames: a difference
    assert differing_keys(runs, []) == ["callbacks.probe.data.rollouts"]


def test_one_number_spelled_two_ways_is_one_row(tmp_path):
    """min_delta=0 swept on the command line, beside runs with the config's 0.0: two rows, and a pooled note."""
    def run(delta, seed: int) -> dict:
        given = [f"callbacks.early_stopping.min_delta={delta}"] if isinstance(delta, int) else []
        return {"seed": seed, "overrides": [*given, f"seed={seed}"], "metrics": {"test/acc": 0.5},
                "config": {"callbacks": {"early_stopping": {"min_delta": delta}}, "seed": seed}}

    text = table(tmp_path, [run(0, 1), run(0.0, 2)], "group_by=[callbacks.early_stopping.min_delta]")
    assert rows(text) == ["0"] and "Rows pool" not in text


def test_runs_trained_otherwise_than_their_row_shows_are_named(tmp_path):
    """A run continued with another batch size, and a test-only run (whose config is its own command's), were pooled
    with runs of the settings their rows show, without a word."""
    continued = {**lr_run(0.01, 1, 0.80), "changed_on_resume": {"data.batch_size": [64, 32]}}
    tested_only = lr_run(0.01, 2, 0.82)
    tested_only["config"] |= {"train": False, "ckpt_path": "/runs/other/checkpoints/epoch_000.ckpt"}
    text = table(tmp_path, [continued, tested_only])
    sweep = tmp_path / "sweep"
    assert f"Continued with other values than their checkpoints' runs had: {sweep / '0'} (data.batch_size 64 -> " \
           f"32)." in text
    assert f"Test-only runs, whose rows show their own command's settings, not those their weights were trained " \
           f"with: {sweep / '1'} (weights: /runs/other/checkpoints/epoch_000.ckpt)." in text


def test_a_bar_in_a_value_stays_in_its_cell(tmp_path):
    run = {"seed": 1, "overrides": ["experiment_name=x|y", "seed=1"], "config": {"experiment_name": "x|y"},
           "metrics": {"test/acc": 0.5}}
    assert "| x\\|y | 0.5000 ± — | 1 |" in table(tmp_path, [run])


def test_rows_sort_numbers_as_numbers_and_before_text(tmp_path):
    def sized(size, seed: int = 1) -> dict:
        typed = "null" if size is None else size
        return {"seed": seed, "overrides": [f"model.hidden_size={typed}", f"seed={seed}"],
                "config": {"model": {"hidden_size": size}, "seed": seed}, "metrics": {"test/acc": 0.5}}

    assert rows(table(tmp_path / "sizes", [sized(20), sized(100), sized(5)])) == ["5", "20", "100"]
    by_seed = table(tmp_path / "seeds", [sized(5, seed) for seed in range(10, 0, -1)], "group_by=[seed]")
    assert rows(by_seed) == [str(seed) for seed in range(1, 11)]
    mixed = [sized(size) for size in ("auto", 1e-5, 100, None, 2.5, -3)]
    assert rows(results_table(mixed, ["test/acc"], ["model.hidden_size"])) == ["-3", "1e-05", "2.5", "100", "auto",
                                                                                "null"]
    two_keys = [sized(size, seed) for size in (100, 5) for seed in (10, 2)]
    assert [line.split(" | ")[:2] for line in results_table(two_keys, ["test/acc"], ["model.hidden_size", "seed"])
            .splitlines()[2:]] == [["| 5", "2"], ["| 5", "10"], ["| 100", "2"], ["| 100", "10"]]


def test_a_config_group_a_run_chose_no_option_of_reads_null(tmp_path):
    """Two sweeps tabled together, one run with experiment=digits: the other chose no experiment (None in its
    choices), which is spelled as it would be typed, experiment=null."""
    plain, experiment = lr_run(0.01, 1, 0.80), lr_run(0.01, 2, 0.90)
    plain["choices"]["experiment"] = None
    experiment["choices"]["experiment"] = "digits"
    experiment["overrides"].append("experiment=digits")
    text = table(tmp_path, [plain, experiment])
    assert text.splitlines()[0] == "| model.optimizer.lr | experiment | test/acc | runs |"
    assert "| 0.01 | null | 0.8000 ± — | 1 |" in text and "| 0.01 | digits | 0.9000 ± — | 1 |" in text
    assert "None" not in text


def test_a_seeds_run_of_one_setting_given_twice_is_one_sentence(tmp_path):
    """Seeds 1, 2 swept on one day and 1, 2, 3 on the next, both given: the row counted 5 repeats of 3 seeds and its
    std shrank. Runs without a seed (each its own draw) and one seed's runs of other settings are repeats."""
    day1, day2 = LR_SWEEP[:2], [*LR_SWEEP[:2], lr_run(0.01, 3, 0.84)]
    for n, run in enumerate([*day1, *day2]):
        write_json_atomic(tmp_path / ("day1" if n < 2 else "day2") / str(n) / "results.json", run)
    with pytest.raises(ConfigError, match=r"^Config key 'runs' gives two runs of seed 1 with one setting \(.*day1/0, "
                                          r".*day2/2\), which the table would count as two repeats; give each seed's "
                                          r"run once\.$"):
        evaluate(compose_config([f"runs=[{tmp_path / 'day1'},{tmp_path / 'day2'}]", "metrics=[test/acc]"],
                                tmp_path / "out", "evaluate"))
    assert "| 0.01 | 0.8200 ± 0.0200 | 3 |" in table(tmp_path, day2)
    unseeded = [{**run, "seed": None, "overrides": [o for o in run["overrides"] if not o.startswith("seed=")]}
                for run in LR_SWEEP]
    assert "| 0.01 | 0.8100 ± 0.0141 | 2 |" in table(tmp_path, unseeded)
    assert "Rows pool runs that differ in model.optimizer.lr" in table(tmp_path, LR_SWEEP, "group_by=[model]")


def test_a_hand_written_results_json_without_a_config_is_tabled_beside_a_runs(tmp_path):
    """Given with a run's results, a results.json holding metrics alone failed with KeyError: 'config'."""
    write_runs(tmp_path / "sweep", LR_SWEEP[:1])
    write_json_atomic(tmp_path / "by_hand" / "results.json", {"metrics": {"test/acc": 0.5}})
    text = evaluate(compose_config([f"runs=[{tmp_path / 'sweep'},{tmp_path / 'by_hand'}]", "metrics=[test/acc]"],
                                   tmp_path / "out", "evaluate"))
    assert "| 0.01 | 0.8000 ± — | 1 |" in text and "| — | 0.5000 ± — | 1 |" in text


def test_a_metric_only_one_run_of_a_row_has_shows_no_spread():
    """Two runs in a row, one of them without test/acc: its mean is of one value, whose spread is "—", not 0."""
    killed = lr_run(0.01, 2, 0.0)
    del killed["metrics"]["test/acc"]
    text = results_table([lr_run(0.01, 1, 0.80), killed], ["test/acc"], ["model.optimizer.lr"])
    assert "| 0.01 | 0.8000 ± — (1 of 2 runs) | 2 |" in text


def test_runs_of_several_checkpoints_are_counted_each_most_runs_first():
    """Runs evaluated on other weights: the note names each checkpoint with its count, not the first one alone."""
    runs = [{"evaluated_checkpoint": "last checkpoint"}] * 2 + [{"evaluated_checkpoint": "best checkpoint"}] * 3
    assert checkpoint_note(runs) == "val/ and test/ metrics of: best checkpoint (3 runs); last checkpoint (2 runs)."
    assert checkpoint_note(runs[2:]) == "val/ and test/ metrics of each run's best checkpoint."
    assert checkpoint_note(runs[1:3]) == "val/ and test/ metrics of: last checkpoint (1 run); best checkpoint (1 run)."


def test_a_split_seed_that_only_some_runs_take_from_their_seed_is_a_difference():
    """data.split_seed: ${seed} in one sweep and a fixed split in another: the runs saw other splits, not repeats."""
    runs = [{"seed": seed, "overrides": [f"seed={seed}"], "config": {"seed": seed, "data": {"split_seed": split}},
             "metrics": {"test/acc": 0.5}} for seed, split in ((1, 1), (2, 7))]
    assert differing_keys(runs, []) == ["data.split_seed"]
    runs[1]["config"]["data"]["split_seed"] = 2
    assert differing_keys(runs, []) == []


def test_a_swept_key_is_named_before_a_changed_default_and_keys_below_it_are_not_named_again():
    """Runs of two model options (whose classes differ below model) and a changed batch_size default: the option is
    the difference a refusal names, model.net._target_ goes without saying, the default follows it."""
    def run(model: str, batch_size: int) -> dict:
        return {"seed": 1, "overrides": [f"model={model}", "seed=1"], "metrics": {"test/acc": 0.5},
                "config": {"model": {"net": {"_target_": f"nets.{model}"}}, "data": {"batch_size": batch_size},
                           "seed": 1}}

    runs = [run("lenet5", 64), run("lenet5_classic", 32)]
    assert differing_keys(runs, []) == ["model", "data.batch_size"]
    with pytest.raises(ConfigError, match=r"differ in model \(lenet5, lenet5_classic\), which the test table would "
                                          r"pool .* group_by=\[model\]\.$"):
        check_one_setting([runs], shown=[], table="the test table")


def test_a_key_named_like_a_data_loading_key_outside_a_datamodule_is_a_difference():
    """num_workers or progress below data say how the images were loaded; a model's key of that name is a setting."""
    runs = [{"seed": seed, "overrides": [f"seed={seed}"], "metrics": {"test/acc": 0.5},
             "config": {"seed": seed, "model": {"progress": progress}, "data": {"num_workers": seed}}}
            for seed, progress in ((1, 0.5), (2, 0.9))]
    assert differing_keys(runs, []) == ["model.progress"]


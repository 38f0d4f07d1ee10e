"""evaluate.py's tasks on results.json files written the way train.py writes them."""

import pytest

from evaluate import evaluate
from framework.compose import compose_config
from framework.results import write_json_atomic


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
    assert (sweep / "table.md").read_text().strip() == text


def test_reae_tasks_write_tables_and_figures(tmp_path):
    sweep = tmp_path / "sweep"
    runs = []
    for feature_map, accuracies in (("reae", (0.90, 0.91, 0.92)), ("ran", (0.80, 0.81, 0.83))):
        for seed, acc in enumerate(accuracies):
            runs.append({"seed": seed, "metrics": {"test/acc": acc, "chosen/lambda": 0.01, "chosen/tau": 1e-4},
                         "config": {"model": {"feature_map": feature_map, "rho": 0.2, "hidden_size": 750}}})
    write_runs(sweep, runs)
    tables = evaluate(compose_config([f"runs={sweep}", "task=reae_table1"], tmp_path / "out", "evaluate"))
    assert "| REAN | 91.00 ± 1.00 |" in tables and "| RAN | 1 | 0.00119 | 3 |" in tables
    assert "sample standard deviation (n - 1" in tables
    evaluate(compose_config([f"runs={sweep}", "task=reae_figure2"], tmp_path / "out", "evaluate"))
    assert (sweep / "reae_figure2.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_task_and_missing_runs_are_named(tmp_path):
    with pytest.raises(KeyError, match="'task' is 'attack', but it must be one of"):
        evaluate(compose_config([f"runs={tmp_path}", "task=attack"], tmp_path / "out", "evaluate"))
    with pytest.raises(FileNotFoundError, match=f"No results.json under {tmp_path}"):
        evaluate(compose_config([f"runs={tmp_path}"], tmp_path / "out", "evaluate"))


def test_a_config_group_chosen_on_the_command_line_groups_by_its_name(tmp_path):
    sweep = tmp_path / "sweep"
    runs = [{"seed": seed, "overrides": [f"model={name}", f"seed={seed}"], "metrics": {"test/acc": acc},
             "config": {"model": {"net": {"_target_": name}}}}
            for name, seed, acc in (("lenet5", 1, 0.9), ("lenet5", 2, 0.9), ("lenet5_classic", 1, 0.8))]
    write_runs(sweep, runs)
    text = evaluate(compose_config([f"runs={sweep}", "metrics=[test/acc]"], tmp_path / "out", "evaluate"))
    assert "| lenet5 | 0.9000 ± 0.0000 | 2 |" in text and "| lenet5_classic | 0.8000 ± 0.0000 | 1 |" in text

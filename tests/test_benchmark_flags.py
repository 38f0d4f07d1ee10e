"""The benchmarks' command lines: a count or size that makes no sense, or a device a script cannot use, is argparse's
one-line error with exit code 2 before any work, and so is a --run that is no finished run (naming the flag); the
framework's user errors (a run without a checkpoint, weights that cannot be had) are their one sentence with exit code
2; nothing is left in /tmp."""

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import (
    feature_prediction,
    forward_autoencoder,
    lbfgs_attack,
    lunarlander_generation,
    mutual_information,
    overhead,
)
from benchmarks.summary import at_least, parse_benchmark_args, positive


def refusal(module, argv: list[str], capsys) -> str:
    """The last stderr line of ``module``'s command line ``argv``, which must be refused with exit code 2."""
    with pytest.raises(SystemExit) as stopped:
        parse_benchmark_args(module.build_parser(), module.SMOKE, getattr(module, "SIZES", None), argv=argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(("module", "argv", "expected"), [
    (mutual_information, ["--epochs", "-1"], "argument --epochs: '-1' is not a whole number >= 2 or 0"),
    (mutual_information, ["--epochs", "1"], "argument --epochs: '1' is not a whole number >= 2 or 0"),
    (mutual_information, ["--batch-size", "0"], "argument --batch-size: '0' is not a whole number >= 1"),
    (mutual_information, ["--batch-size", "-1"], "argument --batch-size: '-1' is not a whole number >= 1"),
    (mutual_information, ["--device", "mps"], "argument --device: invalid choice: 'mps' (choose from cpu, cuda)"),
    (lbfgs_attack, ["--examples", "-3"], "argument --examples: '-3' is not a whole number >= 1"),
    (lbfgs_attack, ["--examples", "0"], "argument --examples: '0' is not a whole number >= 1"),
    (lbfgs_attack, ["--c-steps", "0"], "argument --c-steps: '0' is not a whole number >= 1"),
    (forward_autoencoder, ["--baseline-lambdas", "-1"], "argument --baseline-lambdas: '-1' is not a whole number >= 1"),
    (forward_autoencoder, ["--baseline-lambdas", "0"], "argument --baseline-lambdas: '0' is not a whole number >= 1"),
    (forward_autoencoder, ["--hidden", "0"], "argument --hidden: '0' is not a whole number >= 1"),
    (forward_autoencoder, ["--device", "tpu"], "argument --device: invalid choice: 'tpu' (choose from cpu, cuda)"),
    (lunarlander_generation, ["--workers", "0"], "argument --workers: '0' is not a whole number >= 1"),
    (lunarlander_generation, ["--workers", "-2"], "argument --workers: '-2' is not a whole number >= 1"),
    (lunarlander_generation, ["--rollouts", "0"], "argument --rollouts: '0' is not a whole number >= 1"),
    (lunarlander_generation, ["--steps", "0"], "argument --steps: '0' is not a whole number >= 1"),
    (lunarlander_generation, ["--repeats", "0"], "argument --repeats: '0' is not a whole number >= 1"),
    (feature_prediction, ["--frames", "0"], "argument --frames: '0' is not a whole number >= 1"),
    (feature_prediction, ["--frames", "-4"], "argument --frames: '-4' is not a whole number >= 1"),
    (feature_prediction, ["--batch-size", "0"], "argument --batch-size: '0' is not a whole number >= 1"),
    (feature_prediction, ["--repeats", "0"], "argument --repeats: '0' is not a whole number >= 1"),
    (feature_prediction, ["--device", "banana"], "argument --device: invalid choice: 'banana' (choose from cpu, cuda)"),
    (feature_prediction, ["--smoke", "--frames", "2.5"], "argument --frames: '2.5' is not a whole number >= 1"),
    # was a sentence about the config key model.loss_network.weights, which the command line does not name
    (feature_prediction, ["--weights", "foo"],
     "argument --weights: 'foo' is none of imagenet, random and a checkpoint file"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_a_flag_out_of_range_is_one_line_and_exit_code_2(module, argv, expected, capsys):
    line = refusal(module, argv, capsys)
    # Python < 3.12.8 quotes the choices ('cpu', 'cuda'); later ones do not
    assert line.replace("'cpu', 'cuda'", "cpu, cuda").endswith(expected), line


def test_the_documented_values_are_accepted():
    args = parse_benchmark_args(mutual_information.build_parser(), mutual_information.SMOKE, mutual_information.SIZES,
                                argv=["--epochs", "0", "--device", "cpu"])
    assert (args.epochs, args.device) == (0, "cpu")  # 0: the estimator only
    assert parse_benchmark_args(mutual_information.build_parser(), {}, argv=["--epochs", "2"]).epochs == 2
    assert parse_benchmark_args(lbfgs_attack.build_parser(), lbfgs_attack.SMOKE, argv=["--smoke"]).examples == 10
    assert overhead.positive is positive  # one parameterised type for every script
    assert (at_least(2, 0)("0"), at_least(2, 0)("7"), positive("1")) == (0, 7, 1)
    with pytest.raises(argparse.ArgumentTypeError, match="'x' is not a whole number >= 1"):
        positive("x")


def run_main(module, argv: list[str], monkeypatch, capsys) -> str:
    """``module.main()`` with ``argv``, which must stop with exit code 2: its stderr."""
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_lbfgs_attack_names_a_missing_run_or_checkpoint_in_one_sentence(tmp_path, monkeypatch, capsys):
    err = run_main(lbfgs_attack, ["--run", str(tmp_path / "nonexistent")], monkeypatch, capsys)
    assert err == (f"benchmarks/lbfgs_attack.py: --run {tmp_path / 'nonexistent'} does not exist, so it is no finished "
                   f"run's output directory; give that of a python train.py experiment=szegedy_fc100 run, or leave "
                   f"--run out to train one here.\n")
    # a folder above runs (here /tmp's pytest folders hold runs of other tests) is no run either: the flag, not the
    # framework's runs= key, is named
    run = tmp_path / "fc100"
    run.mkdir()
    err = run_main(lbfgs_attack, ["--run", str(tmp_path)], monkeypatch, capsys)
    assert err.startswith(f"benchmarks/lbfgs_attack.py: --run {tmp_path} has no results.json, so it is no ") \
        and err.count("\n") == 1, err
    (run / "results.json").write_text(json.dumps({"path": str(run), "metrics": {}, "config": {
        "model": {"_target_": "lightning_modules.classifier.ClassificationModule"}}}))
    err = run_main(lbfgs_attack, ["--run", str(run)], monkeypatch, capsys)
    assert err.startswith("Data error: ") and "has no checkpoint" in err and err.count("\n") == 1, err


def test_lbfgs_attack_with_nothing_to_attack_says_so_and_none_found_is_no_nan(tmp_path, monkeypatch, capsys):
    """A run that classifies none of the images correctly gave NaN distortions (a mean of none) and exit code 0."""
    always_zero = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    torch.nn.init.zeros_(always_zero[1].weight)
    with torch.no_grad():
        always_zero[1].bias.copy_(torch.eye(10)[0])
    images, labels = torch.rand(5, 1, 2, 2), torch.ones(5, dtype=torch.long)
    run = SimpleNamespace(name="fc100", path=tmp_path, images=lambda split, count: (images, labels),
                          model=lambda device: always_zero)
    monkeypatch.setattr(lbfgs_attack, "load_runs", lambda path: [run])
    (tmp_path / "results.json").write_text("{}")  # what the stand-in for load_runs stands for: a finished run
    err = run_main(lbfgs_attack, ["--run", str(tmp_path), "--examples", "5"], monkeypatch, capsys)
    assert err == (f"benchmarks/lbfgs_attack.py: the run in {tmp_path} classifies none of the first 5 test images "
                   f"correctly, so there is nothing to attack; give a trained --run, or more --examples.\n")
    x0, found = torch.zeros(3, 4), torch.tensor([False, True, True])
    adversarial = x0 + torch.tensor([[3.0], [1.0], [2.0]])  # distortions 3, 1 and 2: sqrt(mean of the squares)
    assert lbfgs_attack.mean_distortion(adversarial, x0, found) == pytest.approx(1.5)
    assert lbfgs_attack.mean_distortion(adversarial, x0, torch.zeros(3, dtype=torch.bool)) is None


def test_lbfgs_attack_leaves_nothing_in_the_temporary_folder(tmp_path, monkeypatch, capsys):
    from datamodules.base import DatasetMissingError

    def train_fc100(output: Path, training: list[str]) -> Path:
        (output / "checkpoints").mkdir()
        (output / "checkpoints" / "last.ckpt").write_bytes(b"0" * 1000)  # what training leaves there
        raise DatasetMissingError("The digits are missing.")  # stops it after training, before the attack

    monkeypatch.setattr(lbfgs_attack, "train_fc100", train_fc100)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert run_main(lbfgs_attack, ["--smoke"], monkeypatch, capsys).endswith("Data error: The digits are missing.\n")
    assert list(tmp_path.iterdir()) == []


def test_feature_prediction_reports_weights_that_cannot_be_had_in_one_sentence(tmp_path, monkeypatch, capsys):
    (tmp_path / "torch_home").write_text("a file, not a folder")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    err = run_main(feature_prediction, ["--smoke", "--weights", "imagenet", "--device", "cpu"], monkeypatch, capsys)
    assert err.startswith("Weights error: ") and err.count("\n") == 1, err


def test_a_cuda_device_that_torch_cannot_use_is_one_sentence_and_exit_code_2(pretend_gpus, monkeypatch, capsys):
    from framework.errors import require_usable_gpu

    monkeypatch.setattr(sys, "argv", ["benchmarks/overhead.py", "--device", "cuda"])
    pretend_gpus(0)
    require_usable_gpu("cpu")
    with pytest.raises(SystemExit) as stopped:
        require_usable_gpu("cuda")
    assert stopped.value.code == 2 and capsys.readouterr().err == (
        "benchmarks/overhead.py: --device cuda needs a usable GPU, but torch sees none; run it on a machine with one "
        "or give --device cpu.\n")
    pretend_gpus(1)
    require_usable_gpu("cuda")

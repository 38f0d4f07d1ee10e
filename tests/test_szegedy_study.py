"""evaluate.py's szegedy_* tasks on tiny runs trained through train.py on the fixture MNIST files."""

import pytest
import torch

from analysis.lbfgs_attack import AttackInputError, AttackResult
from analysis.szegedy_study import load_runs, magnified
from evaluate import evaluate
from framework.compose import compose_config
from framework.errors import ConfigError
from framework.results import write_json_atomic
from train import train


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, data_root):
    """A softmax and an FC net, each trained for 3 full-batch L-BFGS steps on 200 fixture images."""
    root = tmp_path_factory.mktemp("zoo")
    for experiment in ("szegedy_softmax1", "szegedy_fc100"):
        cfg = compose_config([f"paths.data_dir={data_root}", f"experiment={experiment}", "trainer.max_epochs=3",
                              "model.net.hidden=[16,16]", "model.optimizer.max_iter=10",
                              "callbacks.progress_bar.refresh_rate=0", "trainer.accelerator=cpu"],
                             root / experiment, "train")
        train(cfg)
    return root


def study(tmp_path, runs, task, *extra):
    cfg = compose_config([f"runs={runs}", f"task={task}", "szegedy.examples=6", "szegedy.c_steps=6",
                          "szegedy.alexnet=false", *extra], tmp_path / "out", "evaluate")
    return evaluate(cfg)


def test_table1_and_a_cross_model_table_with_100_percent_on_its_diagonal(zoo, tmp_path):
    text = study(tmp_path, zoo, "szegedy_table1")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert set(rows) == {"softmax1", "fc100"}
    assert "| 6/6 |" in rows["fc100"] and "6.7 / 7.4 / 0.062" in rows["softmax1"]
    assert (zoo / "szegedy_table1.md").is_file()
    cross = study(tmp_path, zoo, "szegedy_table2").splitlines()
    assert cross[0] == "| input | fc100 | softmax1 | distortion |"
    assert cross[2].startswith("| fc100 | 100.0% |") and cross[3].split(" | ")[2] == "100.0%"  # the diagonal
    # Off the diagonal: the other model's error % on the source model's cached adversarial examples.
    for row, source, other, column in ((cross[2], "fc100", "softmax1", 2), (cross[3], "softmax1", "fc100", 1)):
        attack = AttackResult.load(zoo / f"szegedy_{source}" / "attacks" / "train_6_6_0.pt")
        wrong = (trained_net(zoo / f"szegedy_{other}")(attack.adversarial).argmax(1) != attack.labels).float().mean()
        assert row.split(" | ")[column] == f"{100 * float(wrong):.1f}%"
    assert cross[4].startswith("| Gaussian noise, stddev 0.1 |") and cross[5].startswith("| Gaussian noise, stddev 0.3")


def trained_net(run):
    """The run's model with its best checkpoint's weights (its data config is the [0, 1] pixel box)."""
    return load_runs(str(run))[0].model(torch.device("cpu"))


def test_figures_and_spectral_table_write_their_files(zoo, tmp_path):
    study(tmp_path, zoo, "szegedy_figure5")
    assert (zoo / "szegedy_figure5_fc100.png").is_file() and (zoo / "szegedy_figure5.md").is_file()
    study(tmp_path, zoo, "szegedy_units")
    assert (zoo / "szegedy_units_fc100_natural.png").is_file() and (zoo / "szegedy_units_fc100_random.png").is_file()
    text = study(tmp_path, zoo, "szegedy_table5")
    assert "| fc100 | fc1 | 784->16 |" in text and "| softmax1 | output | 784->10 |" in text


def test_magnified_perturbation_has_the_requested_stddev_before_clipping():
    images = torch.full((2, 1, 28, 28), 0.5)
    adversarial = images.clone()
    adversarial[0, 0, 3, 4] += 0.01
    adversarial[1] += 0.001
    big = magnified(images, adversarial)
    torch.testing.assert_close(big[1] - images[1], torch.full((1, 28, 28), 0.1))  # stddev 0.1 exactly
    # One pixel would move by 0.1 sqrt(784) = 2.8: clipped to the box, every other pixel untouched.
    assert big[0, 0, 3, 4] == 1.0 and (big[0].flatten().sort().values[:-1] == 0.5).all()


def test_missing_runs_and_non_classifier_runs_are_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="there is no results.json under it"):
        study(tmp_path, tmp_path, "szegedy_table1")
    run = tmp_path / "ae"
    write_json_atomic(run / "results.json", {"config": {"model": {
        "_target_": "lightning_modules.forward_autoencoder.ForwardAutoencoderModule"}}, "metrics": {}})
    with pytest.raises(AttackInputError, match="no differentiable classification loss"):
        study(tmp_path, run, "szegedy_table1")


def test_runs_of_one_experiment_get_distinct_names_for_rows_and_figure_files(tmp_path):
    from omegaconf import OmegaConf

    from analysis.szegedy_study import Run, distinct_names

    def run(name, seed, folder):
        return Run(name, tmp_path / folder, OmegaConf.create({"seed": seed}), tmp_path / folder / "best.ckpt")

    runs = distinct_names([run("fc100", 1, "0"), run("fc100", 2, "1"), run("softmax1", 1, "2"),
                           run("fc200", 3, "3"), run("fc200", 3, "4")])
    assert [r.name for r in runs] == ["fc100-seed1", "fc100-seed2", "softmax1", "fc200-seed3-3", "fc200-seed3-4"]


def test_units_of_runs_without_a_hidden_layer_are_one_sentence(zoo, tmp_path):
    with pytest.raises(AttackInputError, match=r"None of the runs under .*szegedy_softmax1 \(softmax1\) has a hidden"):
        study(tmp_path, zoo / "szegedy_softmax1", "szegedy_units")  # it wrote an empty szegedy_units.md
    assert "Skipped (no hidden layer): softmax1." in study(tmp_path, zoo, "szegedy_units")


def test_figure5_of_a_model_that_misclassifies_every_example_says_so_instead_of_a_grid(zoo, tmp_path, monkeypatch):
    import analysis.szegedy_study as szegedy_study

    def all_misclassified(run, split, cfg):
        images, labels = torch.zeros(3, 1, 28, 28), torch.tensor([1, 2, 3])
        return images, labels, AttackResult(images, labels, labels + 1, torch.zeros(3), torch.zeros(3),
                                            torch.ones(3, dtype=torch.bool))

    monkeypatch.setattr(szegedy_study, "attack", all_misclassified)  # make_grid divided by zero on no tiles
    text = study(tmp_path, zoo / "szegedy_fc100", "szegedy_figure5")
    assert text == ("fc100: no figure, as none of its 3 examples was made adversarial by a perturbation (3 were "
                    "misclassified already)")

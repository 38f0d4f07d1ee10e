"""evaluate.py's szegedy_* tasks on tiny runs trained through train.py on the fixture MNIST files."""

import pytest
import torch

from analysis.lbfgs_attack import AttackInputError, AttackResult
from analysis.szegedy_study import load_runs, magnified, mean_distortion
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


def test_table34_gives_each_models_errors_on_both_parts_and_table4_with_its_two_noise_baselines(zoo, tmp_path):
    table1 = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in
              study(tmp_path, zoo, "szegedy_table1").splitlines()[2:]}
    table3, table4 = (part.splitlines() for part in study(tmp_path, zoo, "szegedy_table34").split("\n\n"))
    assert table3[0].startswith("| model | error on P1 % | error on P2 % | test error % | av. min. distortion |")
    runs = {run.name: run for run in load_runs(str(zoo))}
    for line in table3[2:]:
        cells = line.split(" | ")
        run = runs[cells[0].strip("| ")]
        model = run.model(torch.device("cpu"))
        (p1, p1_labels), (p2, _) = (run.images("train", part=part) for part in ("P1", "P2"))
        assert len(p1) > 0 and not (p1.flatten(1)[:, None] == p2.flatten(1)[None]).all(-1).any()  # disjoint halves
        assert cells[1] == f"{100 * float((model(p1).argmax(1) != p1_labels).float().mean()):.2f}"
        assert cells[3] == table1[run.name][2]  # the test error, as in Table 1
        attack = AttackResult.load(run.path / "attacks" / "test_6_6_0.pt")
        assert cells[4] == f"{float(attack.distortion[attack.success].mean()):.4f}" and cells[6] == "- |"
    # The paper's Table 4: adversarial rows with Gaussian noise of stddev 0.06, then magnified rows with 0.1.
    assert [line.split(" | ")[0].strip("| ") for line in table4[2:]] == [
        "fc100", "softmax1", "Gaussian noise, stddev 0.06", "fc100, magnified to stddev 0.1",
        "softmax1, magnified to stddev 0.1", "Gaussian noise, stddev 0.1"]
    images, labels = runs["fc100"].images("test", 6)
    noisy = (images + 0.06 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    cells = table4[4].split(" | ")
    for column, name in ((1, "fc100"), (2, "softmax1")):
        wrong = (runs[name].model(torch.device("cpu"))(noisy).argmax(1) != labels).float().mean()
        assert cells[column] == f"{100 * float(wrong):.1f}%"
    assert cells[3] == f"{float(((noisy - images) ** 2).mean().sqrt()):.4f} |"


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
    images = torch.full((3, 1, 28, 28), 0.5)
    adversarial = images.clone()
    adversarial[0, 0, 3, 4] += 0.01
    adversarial[1] += 0.001
    big = magnified(images, adversarial)
    torch.testing.assert_close(big[1] - images[1], torch.full((1, 28, 28), 0.1))  # stddev 0.1 exactly
    # One pixel would move by 0.1 sqrt(784) = 2.8: clipped to the box, every other pixel untouched.
    assert big[0, 0, 3, 4] == 1.0 and (big[0].flatten().sort().values[:-1] == 0.5).all()
    assert torch.equal(big[2], images[2])  # r = 0 (misclassified already, or a failed attack): left as it is


def test_average_minimum_distortion_leaves_out_failed_attacks():
    def result(distortion, success):
        n, labels = len(success), torch.zeros(len(success), dtype=torch.long)
        return AttackResult(torch.zeros(n, 1, 28, 28), labels, labels + 1, torch.ones(n), torch.tensor(distortion),
                            torch.tensor(success))

    # A failure keeps distortion NaN; it counted as 0 before: (0.05 + 0.05) / 3 = 0.0333.
    assert mean_distortion(result([0.05, 0.05, float("nan")], [True, True, False])) == pytest.approx(0.05)
    assert mean_distortion(result([0.0, 0.06, float("nan")], [True, True, False])) == pytest.approx(0.03)


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

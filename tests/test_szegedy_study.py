"""evaluate.py's szegedy_* tasks on tiny runs trained through train.py on the fixture MNIST files."""

import json
import re
import shutil

import pytest
import torch

from analysis.lbfgs_attack import AttackInputError, AttackResult, distortion
from analysis.szegedy_study import PAPER_TABLE3, cached_attack, checkpoint_sha256, load_runs, magnified, mean_distortion
from datamodules.base import DatasetMissingError
from evaluate import evaluate
from framework.compose import compose_config
from framework.errors import ConfigError
from framework.results import write_json_atomic
from framework.training import train


def train_tiny(data_root, folder, experiment, *extra):
    """A Szegedy net trained for 3 full-batch L-BFGS steps on the fixture images (a LeNet-5: 3 epochs)."""
    narrow = [] if "softmax" in experiment else ["model.net.hidden=[16,16]"]  # softmax nets have no hidden layer
    tiny = [*narrow, "model.optimizer.max_iter=10"] if experiment.startswith("szegedy") else []
    train(compose_config([f"paths.data_dir={data_root}", f"experiment={experiment}", "trainer.max_epochs=3",
                          "callbacks.progress_bar.refresh_rate=0", "trainer.accelerator=cpu", *tiny, *extra],
                         folder, "train"))
    return folder


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, data_root):
    """A softmax net on 200 fixture images and an FC net on 150 (as the README's AE400-10 on 5,000 of the others'
    10,000: their first training images differ)."""
    root = tmp_path_factory.mktemp("zoo")
    train_tiny(data_root, root / "szegedy_softmax1", "szegedy_softmax1")
    train_tiny(data_root, root / "szegedy_fc100", "szegedy_fc100", "++data.train_size=150")
    return root


@pytest.fixture(scope="module")
def parts(tmp_path_factory, data_root):
    """FC nets on each half (P1, P2) of the fixture's training images: Tables 3-4's runs."""
    root = tmp_path_factory.mktemp("parts")
    for part in ("P1", "P2"):
        train_tiny(data_root, root / part, "szegedy_fc100", f"data.train_part={part}")
    return root


@pytest.fixture(scope="module")
def lenet_digits(tmp_path_factory, data_root):
    """A LeNet-5 classifier on the bundled 8x8 digits, upscaled to 32x32: a classifier outside the zoo."""
    return train_tiny(data_root, tmp_path_factory.mktemp("lenet") / "lenet5_digits", "lenet5_digits")


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
        attack = cache_of(zoo / f"szegedy_{source}", "train")
        wrong = (trained_net(zoo / f"szegedy_{other}")(attack.adversarial).argmax(1) != attack.labels).float().mean()
        assert row.split(" | ")[column] == f"{100 * float(wrong):.1f}%"
    assert cross[4].startswith("| Gaussian noise, stddev 0.1 |") and cross[5].startswith("| Gaussian noise, stddev 0.3")
    # Noise is added to each model's own first training images, and its distortion is the paper's per-example one.
    runs = {run.name: run for run in load_runs(str(zoo))}
    own = {name: run.images("train", 6) for name, run in runs.items()}
    assert not torch.equal(own["fc100"][0], own["softmax1"][0])
    cells, changes = cross[4].split(" | "), []
    for column, name in ((1, "fc100"), (2, "softmax1")):
        images, labels = own[name]
        noisy = (images + 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        wrong = (runs[name].model(torch.device("cpu"))(noisy).argmax(1) != labels).float().mean()
        assert cells[column] == f"{100 * float(wrong):.1f}%"
        changes.append(distortion(noisy, images))
    assert cells[3] == f"{float(torch.cat(changes).mean()):.4f} |"


def cache_of(run, split):
    """The run's cached attack of the first 6 images of ``split``, if made from its checkpoint as it is now."""
    return cached_attack(run / "attacks" / f"{split}_6_6_0.pt", checkpoint_sha256(load_runs(str(run))[0].checkpoint))


def test_table34_gives_each_models_errors_on_both_parts_and_table4_with_its_two_noise_baselines(parts, tmp_path):
    table1 = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in
              study(tmp_path, parts, "szegedy_table1").splitlines()[2:]}
    table3, table4 = (part.splitlines() for part in study(tmp_path, parts, "szegedy_table34").split("\n\n"))
    assert table3[0].startswith("| model | error on P1 % | error on P2 % | test error % | av. min. distortion |")
    runs = {run.name: run for run in load_runs(str(parts))}
    assert [line.split(" | ")[0].strip("| ") for line in table3[2:]] == ["fc100@P1", "fc100@P2"]
    for line in table3[2:]:
        cells = line.split(" | ")
        run = runs[cells[0].strip("| ")]
        model = run.model(torch.device("cpu"))
        (p1, p1_labels), (p2, _) = (run.images("train", part=part) for part in ("P1", "P2"))
        assert len(p1) > 0 and not (p1.flatten(1)[:, None] == p2.flatten(1)[None]).all(-1).any()  # disjoint halves
        assert cells[1] == f"{100 * float((model(p1).argmax(1) != p1_labels).float().mean()):.2f}"
        assert cells[3] == table1[run.name][2]  # the test error, as in Table 1
        attack = cache_of(run.path, "test")
        assert cells[4] == f"{float(attack.distortion[attack.success].mean()):.4f}"
        assert cells[6] == " / ".join(str(value) for value in PAPER_TABLE3[run.name]) + " |"
    # The paper's Table 4: adversarial rows with Gaussian noise of stddev 0.06, then magnified rows with 0.1.
    assert [line.split(" | ")[0].strip("| ") for line in table4[2:]] == [
        "fc100@P1", "fc100@P2", "Gaussian noise, stddev 0.06", "fc100@P1, magnified to stddev 0.1",
        "fc100@P2, magnified to stddev 0.1", "Gaussian noise, stddev 0.1"]
    images, labels = runs["fc100@P1"].images("test", 6)
    noisy = (images + 0.06 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    cells = table4[4].split(" | ")
    for column, name in ((1, "fc100@P1"), (2, "fc100@P2")):
        wrong = (runs[name].model(torch.device("cpu"))(noisy).argmax(1) != labels).float().mean()
        assert cells[column] == f"{100 * float(wrong):.1f}%"
    assert cells[3] == f"{float(distortion(noisy, images).mean()):.4f} |"
    attack = cache_of(runs["fc100@P1"].path, "test")  # a magnified row: the mean of its examples' distortions
    big = magnified(images, attack.adversarial)
    assert table4[5].split(" | ")[3] == f"{float(distortion(big, images).mean()):.4f} |"


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


def test_table5_without_the_alexnet_weights_is_their_sentence_with_its_own_remedy(zoo, tmp_path, monkeypatch):
    """It printed "AlexNet: not computed (...)" below the zoo's rows and exited 0, though AlexNet was asked for."""
    from framework.pretrained import PretrainedWeightsError

    def unreachable(weights):
        raise PretrainedWeightsError("The ImageNet AlexNet weights could not be fetched: neither source answered.")

    monkeypatch.setattr("framework.pretrained.alexnet_features", unreachable)
    (zoo / "szegedy_table5.md").unlink(missing_ok=True)  # an earlier test's
    with pytest.raises(PretrainedWeightsError, match=r"^The ImageNet AlexNet weights could not be fetched: neither "
                                                     r"source answered; or leave AlexNet out of Table 5 with "
                                                     r"szegedy.alexnet=false\.$"):
        study(tmp_path, zoo, "szegedy_table5", "szegedy.alexnet=true")
    assert not (zoo / "szegedy_table5.md").exists()


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


def test_runs_of_one_experiment_get_distinct_names_for_rows_and_figure_files(zoo, tmp_path):
    from omegaconf import OmegaConf

    from analysis.szegedy_study import Run, distinct_names

    def run(name, seed, folder):
        return Run(name, tmp_path / folder, OmegaConf.create({"seed": seed}), tmp_path / folder / "best.ckpt")

    runs = distinct_names([run("fc100", 1, "0"), run("fc100", 2, "1"), run("softmax1", 1, "2"),
                           run("fc200", 3, "3"), run("fc200", 3, "4")])
    assert [r.name for r in runs] == ["fc100-seed1", "fc100-seed2", "softmax1", "fc200-seed3-3", "fc200-seed3-4"]
    for copy in ("a", "b"):  # the study's own loader names them apart too (tables and figure files)
        shutil.copytree(zoo / "szegedy_fc100", tmp_path / "sweep" / copy)
    # the same run given twice (a copy, a sweep under two names) is one sentence, not two rows
    twice = (f"Config key 'runs' gives two runs of seed 42 with one setting ({tmp_path / 'sweep' / 'a'}, "
             f"{tmp_path / 'sweep' / 'b'}), which the study would count as two repeats; give each seed's run once.")
    with pytest.raises(ConfigError, match=re.escape(twice)):
        load_runs(str(tmp_path / "sweep"))
    results = json.loads((tmp_path / "sweep" / "b" / "results.json").read_text())  # one seed's runs of two settings
    results["overrides"] = [o.replace("trainer.max_epochs=3", "trainer.max_epochs=4") for o in results["overrides"]]
    assert "trainer.max_epochs=4" in results["overrides"]
    (tmp_path / "sweep" / "b" / "results.json").write_text(json.dumps(results))
    assert [r.name for r in load_runs(str(tmp_path / "sweep"))] == ["fc100-seed42-a", "fc100-seed42-b"]


def test_images_missing_where_the_runs_or_data_dir_say_name_evaluates_own_key(zoo, tmp_path):
    """The DataModule's remedy names train.py's data.data_dir=, which evaluate.py refuses."""
    with pytest.raises(DatasetMissingError, match=r"MNIST.*; to evaluate\.py, give data_dir=<the folder that holds "
                                                  r"MNIST/raw>\.$"):
        study(tmp_path, zoo, "szegedy_table1", f"data_dir={tmp_path / 'empty'}")


def test_units_of_runs_without_the_hidden_layer_asked_for_are_one_sentence(zoo, tmp_path):
    with pytest.raises(AttackInputError, match=r"None of the runs under .*szegedy_softmax1 \(softmax1\) has a hidden"):
        study(tmp_path, zoo / "szegedy_softmax1", "szegedy_units")  # it wrote an empty szegedy_units.md
    assert "Skipped (no hidden layer 0 (szegedy.layer; 0: the first)): softmax1." in study(tmp_path, zoo,
                                                                                          "szegedy_units")
    assert "fc100 (fc2), natural basis e_i" in study(tmp_path, zoo, "szegedy_units", "szegedy.layer=1")
    with pytest.raises(AttackInputError, match=r"\(fc100, softmax1\) has a hidden layer 2 \(szegedy.layer; 0: the "
                                               r"first\) .*, or a smaller szegedy.layer\."):
        study(tmp_path, zoo, "szegedy_units", "szegedy.layer=2")  # fc100 has two: the study showed its last instead


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


def test_an_attack_cached_before_the_run_was_retrained_is_made_again(zoo, data_root, tmp_path):
    run = shutil.copytree(zoo / "szegedy_fc100", tmp_path / "fc100", ignore=shutil.ignore_patterns("attacks"))
    study(tmp_path, run, "szegedy_table1")  # caches the attack of the first training's weights
    stale = cache_of(run, "train")
    for path in run.iterdir():  # the earlier run's files deleted but for attacks/, and the run trained again
        if path.is_file():
            path.unlink()
        elif path.name != "attacks":
            shutil.rmtree(path)
    train_tiny(data_root, run, "szegedy_fc100", "seed=1")
    row = study(tmp_path, run, "szegedy_table1").splitlines()[2].split(" | ")
    attack = cache_of(run, "train")  # None: the cache was made from another checkpoint
    assert attack is not None and not torch.equal(attack.adversarial, stale.adversarial)
    # The new model's own examples: each success is classified as its target (Table 2's diagonal is 100%).
    success = attack.success
    predicted = trained_net(run)(attack.adversarial[success]).argmax(1)
    assert success.any() and torch.equal(predicted, attack.target[success])
    assert row[3:5] == [f"{mean_distortion(attack):.4f}", f"{int(success.sum())}/6"]


def test_an_attack_cached_without_the_checkpoints_sha256_is_made_again(zoo, tmp_path):
    run = shutil.copytree(zoo / "szegedy_softmax1", tmp_path / "softmax1", ignore=shutil.ignore_patterns("attacks"))
    images, labels, nan = torch.zeros(6, 1, 28, 28), torch.zeros(6, dtype=torch.long), torch.full((6,), float("nan"))
    # As the code before checkpoint fingerprints wrote it: an AttackResult alone (here six failures).
    AttackResult(images, labels, labels + 1, nan, nan, torch.zeros(6, dtype=torch.bool)).save(
        run / "attacks" / "train_6_6_0.pt")
    row = study(tmp_path, run, "szegedy_table1").splitlines()[2].split(" | ")
    attack = cache_of(run, "train")
    assert attack is not None and attack.success.any() and row[4] == f"{int(attack.success.sum())}/6"


def test_an_attack_cache_cut_short_is_made_again(zoo, tmp_path, caplog):
    """Caches are written atomically; one cut short by something else stopped the table with torch.load's traceback."""
    run = shutil.copytree(zoo / "szegedy_softmax1", tmp_path / "softmax1")
    study(tmp_path, run, "szegedy_table1")
    cache = run / "attacks" / "train_6_6_0.pt"
    made = cache_of(run, "train")
    cache.write_bytes(cache.read_bytes()[:100])
    row = study(tmp_path, run, "szegedy_table1").splitlines()[2].split(" | ")
    assert f"The attack cache {cache} cannot be read (RuntimeError); the attack is made again." in caplog.messages
    again = cache_of(run, "train")
    assert torch.equal(again.adversarial, made.adversarial) and row[4] == f"{int(again.success.sum())}/6"


def test_cross_model_tables_of_runs_they_cannot_compare_are_one_sentence(zoo, parts, lenet_digits, tmp_path):
    with pytest.raises(ConfigError, match=r"The run \S*lenet5_digits was trained on DigitsDataModule images 1x32x32, "
                                          r"but the run \S*szegedy_fc100 on MNISTDataModule images 1x28x28, .* give "
                                          r"runs of one dataset and image size\.$"):
        study(tmp_path, f"[{zoo / 'szegedy_fc100'},{lenet_digits}]", "szegedy_table2")  # was: addmm shape mismatch
    with pytest.raises(ConfigError, match=r"The run \S*lenet5_digits was trained on DigitsDataModule images 1x32x32 "
                                          r"with no data.train_part, but Tables 3-4 compare models trained on one of "
                                          r"MNIST's halves \(data.train_part=P1 or P2\)"):
        study(tmp_path, f"[{parts / 'P1'},{lenet_digits}]", "szegedy_table34")  # was: unexpected 'train_part'
    assert not (lenet_digits / "attacks").exists()
    with pytest.raises(ConfigError, match=r"The run \S*szegedy_fc100 was trained on MNISTDataModule images 1x28x28 "
                                          r"with data.train_part=full, but Tables 3-4"):
        study(tmp_path, zoo, "szegedy_table34")


def test_table5_names_the_runs_it_leaves_out_and_refuses_runs_of_no_zoo_network(zoo, lenet_digits, tmp_path):
    text = study(tmp_path, f"[{zoo},{lenet_digits}]", "szegedy_table5")
    assert "| fc100 | fc1 | 784->16 |" in text and ("Left out, as their networks are not of the Szegedy zoo "
                                                   "(SzegedyNet), whose layers this table bounds: lenet5_digits "
                                                   "(lightning_modules.lenet5.LeNet5).") in text
    with pytest.raises(ConfigError, match=r"whose runs \(lenet5_digits \(lightning_modules.lenet5.LeNet5\)\) have no "
                                          r"network of the Szegedy zoo"):
        study(tmp_path, lenet_digits, "szegedy_table5")  # was: a table of its header alone


def test_table1_gives_the_papers_figures_to_runs_told_apart_by_their_seed(data_root, tmp_path):
    for seed in (1, 2):
        train_tiny(data_root, tmp_path / "sweep" / str(seed), "szegedy_softmax1", f"seed={seed}")
    rows = study(tmp_path, tmp_path / "sweep", "szegedy_table1").splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| softmax1-seed1", "| softmax1-seed2"]
    assert all(row.endswith(" | 6.7 / 7.4 / 0.062 |") for row in rows)


@pytest.mark.parametrize("pad_mode", ["wrap", "zeros"])
def test_a_runs_test_error_in_table1_is_the_one_its_training_measured(data_root, tmp_path, pad_mode):
    """The study feeds a run's network the pixels as its training did: a run trained on images tiled to its input
    size (data.pad_mode=wrap) had 88% test error in Table 1 (centred zero padding), and 11% by its results.json."""
    run = train_tiny(data_root, tmp_path / "lenet5_digits", "lenet5_digits", "++data.image_size=16",
                     "++data.pad_to=32", f"++data.pad_mode={pad_mode}", "data.mean=0.3", "data.std=0.4")
    measured = json.loads((run / "results.json").read_text())["metrics"]["test/acc"]
    row = study(tmp_path, tmp_path, "szegedy_table1").splitlines()[2].split(" | ")
    assert row[0] == "| lenet5_digits" and row[2] == f"{100 * (1 - measured):.2f}"


def test_units_are_scored_on_the_inputs_the_network_trained_on(data_root, tmp_path, monkeypatch):
    """Figures 1-2 rank test images by a hidden unit's activation: they took the raw pixels, without the run's
    normalisation (data.mean, data.std), and so ranked other images than the trained network's."""
    from analysis import szegedy_study

    train_tiny(data_root, tmp_path / "szegedy_fc100", "szegedy_fc100", "++data.train_size=150", "data.mean=0.1307",
               "data.std=0.3081")
    grids = {}

    def save_grid(tiles, columns, path, title):
        grids[path.name] = tiles
        return path

    monkeypatch.setattr(szegedy_study, "save_grid", save_grid)
    study(tmp_path, tmp_path, "szegedy_units")
    [loaded] = load_runs(str(tmp_path))
    datamodule = loaded.datamodule()
    datamodule.setup("test")
    test = datamodule.datasets["test"]
    net = loaded.model(torch.device("cpu")).module.net
    hidden = net.hidden_representations(datamodule.to_float(test.images))[0]  # as in training's batches
    units = torch.randperm(hidden.shape[1], generator=torch.Generator().manual_seed(0))[:4]
    top = hidden[:, units].topk(8, dim=0).indices.T.flatten()
    assert torch.equal(grids["szegedy_units_fc100_natural.png"], test.images[top].float() / 255)

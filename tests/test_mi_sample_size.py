"""The MI paper's Figure 1 as an evaluate.py task: I(X; Y) of pixels and labels against sample size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.mutual_information import ross_mi
from callbacks.mutual_information import balanced_subsample
from datamodules.base import DatasetMissingError
from evaluate import evaluate
from framework.compose import compose_config
from tests.dataset_files import idx_bytes


def write_class_patterns(root, count: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format training files whose images depend on the label (a bright column per class, a fifth of them at a
    random class's column) plus noise: with every column right, the estimate was the same on every draw."""
    rng = np.random.default_rng(0)
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = rng.integers(0, 120, (count, 28, 28)).astype(np.uint8)
    columns = np.where(rng.random(count) < 0.8, labels, rng.integers(0, 10, count))
    images[np.arange(count), :, 2 * columns.astype(int) + 3] = 250
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, pixels, targets in (("train", images, labels), ("t10k", images[:20], labels[:20])):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(pixels))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(targets))
    return images, labels


def test_figure1_table_png_and_values_equal_the_estimator_on_balanced_draws(tmp_path):
    images, labels = write_class_patterns(tmp_path / "data")
    cfg = compose_config(["task=mi_sample_size", "mi_sample_size.sizes=[30,200]", "mi_sample_size.draws=3",
                          f"paths.data_dir={tmp_path / 'data'}", f"output={tmp_path / 'out' / 'figure1.md'}"],
                         tmp_path / "run", "evaluate")
    text = evaluate(cfg)
    x, y = torch.from_numpy(images).double() / 255, torch.from_numpy(labels).long()
    for size in (30, 200):  # each row from draws of its own size
        values = [ross_mi(x[chosen], y[chosen], standardize=False) for chosen in
                  (balanced_subsample(y, size, seed) for seed in range(3))]
        assert np.std(values, ddof=1) > 0.02  # the draws differ, and so their estimates
        assert f"| {size} | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} |" in text
    assert np.mean(values) > 1.2  # the pattern mostly gives the label away
    assert "Skipped: cifar10" in text  # no CIFAR-10 files: skipped, not an error
    assert (tmp_path / "out" / "figure1.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "figure1.md").read_text().strip() == text
    assert "mean ± sample standard deviation (n - 1 in the denominator) over 3 draws" in text
    one = compose_config(["task=mi_sample_size", "mi_sample_size.sizes=[30]", "mi_sample_size.draws=1",
                          f"paths.data_dir={tmp_path / 'data'}", f"output={tmp_path / 'one.md'}"], tmp_path / "run",
                         "evaluate")
    single = ross_mi(x[balanced_subsample(y, 30, 0)], y[balanced_subsample(y, 30, 0)], standardize=False)
    assert f"| 30 | {single:.3f} ± — |" in evaluate(one)  # one draw has no spread (it showed ± 0.000)


@pytest.mark.parametrize("datasets", [[], ["mi_sample_size.datasets=mnist"]])  # one dataset typed without brackets
def test_figure1_without_any_dataset_names_the_missing_file(tmp_path, datasets):
    cfg = compose_config(["task=mi_sample_size", f"paths.data_dir={tmp_path}", *datasets], tmp_path / "run", "evaluate")
    with pytest.raises(DatasetMissingError, match="no dataset files for .*mnist.*train-images"):
        evaluate(cfg)

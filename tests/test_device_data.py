"""Data kept on the trainer's device (datamodules/base.py ``on_device``). No GPU here: the choice of device is
tested with a stand-in trainer, and the forced placement runs the same code on the CPU."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from datamodules.base import TensorImageDataset, seeded_split
from datamodules.digits import DigitsDataModule
from framework.compose import compose_config
from train import train


@pytest.mark.parametrize(("on_device", "trainer_device", "expected"), [
    ("auto", "cpu", "cpu"), ("auto", "cuda:0", "cuda:0"), (False, "cuda:0", "cpu"), (True, "cpu", "cpu"),
    (True, "cuda:1", "cuda:1"),
])
def test_the_data_follows_the_trainer_onto_an_accelerator_only_when_asked(on_device, trainer_device, expected):
    datamodule = DigitsDataModule(on_device=on_device)
    datamodule.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(trainer_device)))
    assert datamodule.data_device() == torch.device(expected)
    with pytest.raises(ValueError, match="data.on_device"):
        DigitsDataModule(on_device="gpu")


def test_a_placed_dataset_indexes_on_its_own_device_and_keeps_its_options():
    dataset = TensorImageDataset(torch.arange(12, dtype=torch.uint8).view(6, 1, 1, 2), torch.arange(6), True)
    placed = dataset.to(torch.device("cpu"))
    images, targets, index = placed.__getitems__([4, 1])
    assert index.device == placed.images.device and index.tolist() == [4, 1] and targets.tolist() == [4, 1]
    assert torch.equal(images, dataset.images[[4, 1]])


def test_no_validation_split_trains_on_everything():
    train_index, val_index = seeded_split(50, 0, seed=1)
    assert sorted(train_index.tolist()) == list(range(50)) and len(val_index) == 0


def run(make_cfg, on_device: bool) -> tuple[dict, dict]:
    results = train(make_cfg("debug=limit", "seed=3", f"+data.on_device={str(on_device).lower()}",
                             "callbacks.progress_bar.refresh_rate=0", run=f"on_device_{on_device}"))
    weights = torch.load(Path(results["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return results["metrics"], weights


@pytest.mark.slow
def test_forced_placement_trains_exactly_like_the_loader_path(make_cfg):
    placed_metrics, placed_weights = run(make_cfg, True)
    loader_metrics, loader_weights = run(make_cfg, False)
    assert placed_metrics == loader_metrics
    assert placed_weights.keys() == loader_weights.keys()
    assert all(torch.equal(placed_weights[k], loader_weights[k]) for k in placed_weights)


@pytest.mark.slow
def test_distorted_sdlm_run_resumed_after_one_epoch_ends_with_the_uninterrupted_weights(tmp_path, data_root):
    common = [f"paths.data_dir={data_root}", "experiment=lenet5_classic_mnist_distorted", "debug=limit", "seed=4",
              "+data.on_device=true", "callbacks.progress_bar.refresh_rate=0", "data.batch_size=8"]
    straight = train(compose_config(common, tmp_path / "straight"))
    train(compose_config([*common, "trainer.max_epochs=1"], tmp_path / "resumed"))
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    resumed = train(compose_config([*common, f"ckpt_path={last}"], tmp_path / "resumed"))
    assert resumed["epochs_completed"] == straight["epochs_completed"] == 2

    def weights(results):
        return torch.load(Path(results["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    expected, actual = weights(straight), weights(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert resumed["metrics"]["test/acc"] == straight["metrics"]["test/acc"]

"""Data kept on the trainer's device (datamodules/base.py ``on_device``) and batches indexed where it lives
(``IndexBatches``). Without a GPU the choice of device is tested with a stand-in trainer, the index's device with
images on torch's ``meta`` device, and the forced placement against PyTorch's worker loader on the CPU."""

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import BatchSampler

from datamodules.base import EpochSeededSampler, IndexBatches, TensorImageDataset, seeded_split
from datamodules.digits import DigitsDataModule
from framework.compose import compose_config
from framework.training import train
from lightning_modules.classifier import ClassificationModule
from lightning_modules.lenet5 import LeNet5
from tests.dataset_files import write_mnist


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


@pytest.mark.parametrize(("num_items", "batch_size", "drop_last"),
                         [(50, 7, False), (50, 7, True), (48, 8, True), (0, 4, False)])
def test_index_batches_are_the_batch_samplers_batches_of_the_epoch_set_before_the_first_batch(num_items, batch_size,
                                                                                              drop_last):
    sampler = EpochSeededSampler(num_items, seed=2)
    batches = IndexBatches(sampler, batch_size, drop_last)
    for epoch in (0, 3):
        started = iter(batches)  # Lightning may start the iterator and only then set the epoch, as for BatchSampler
        sampler.set_epoch(epoch)
        expected = list(BatchSampler(sampler, batch_size, drop_last))
        assert [batch.tolist() for batch in started] == expected and len(batches) == len(expected)
    # any sampler, as Lightning rebuilds it with
    assert [batch.tolist() for batch in IndexBatches(range(5), 2)] == [[0, 1], [2, 3], [4]]


def test_the_loader_slices_its_index_where_the_images_are_in_the_samplers_batches():
    module = DigitsDataModule(batch_size=64, num_workers=0)
    module.setup("fit")
    module.datasets["train"].return_index = True
    loader = module.train_dataloader()
    assert isinstance(loader.batch_sampler, IndexBatches)
    expected = list(BatchSampler(loader.batch_sampler.sampler, 64, drop_last=False))
    assert [index.tolist() for _, _, index in loader] == expected
    module.datasets["train"] = module.datasets["train"].to(torch.device("meta"))  # a stand-in accelerator
    on_meta = list(module.train_dataloader())
    assert [len(index) for _, _, index in on_meta] == [len(batch) for batch in expected]
    assert all(index.device.type == images.device.type == "meta" for images, _, index in on_meta)


def test_workers_keep_the_samplers_loader():
    module = DigitsDataModule(batch_size=64, num_workers=1)
    module.setup("fit")
    loader = module.train_dataloader()
    assert loader.batch_size == 64 and isinstance(loader.sampler, EpochSeededSampler)


def test_lightning_rebuilds_the_index_batches_for_prediction_and_overfit_batches(tmp_path):
    module = DigitsDataModule(batch_size=100)
    model = ClassificationModule(LeNet5(), optimizer=lambda params: torch.optim.SGD(params, lr=0.01))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        overfit_batches=2, max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, module)
    assert trainer.num_training_batches == 2
    predicted = trainer.predict(model, module)
    assert sum(len(scores) for scores in predicted) == len(module.datasets["test"]) == 359


def test_no_validation_split_trains_on_everything():
    train_index, val_index = seeded_split(50, 0, seed=1)
    assert sorted(train_index.tolist()) == list(range(50)) and len(val_index) == 0


@pytest.fixture
def deterministic(monkeypatch):
    """The overrides that make two equal runs equal to the bit: on a GPU, ``trainer.deterministic=warn`` (kernels that
    accumulate with atomics would differ in the last bits). Lightning leaves torch's switches set for the rest of the
    process (on an H200 the CUDA solve test that ran next in the same process then failed), so they are put back."""
    if not torch.cuda.is_available():
        yield []
        return
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what Lightning sets; monkeypatch restores it
    enabled, benchmark = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield ["trainer.deterministic=warn"]
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


def run(tmp_path, on_device: bool, deterministic: list[str], *overrides: str) -> tuple[dict, dict]:
    results = train(compose_config(["debug=limit", "seed=3", f"data.on_device={str(on_device).lower()}",
                                    "callbacks.progress_bar.refresh_rate=0", *deterministic, *overrides],
                                   tmp_path / f"on_device_{on_device}"))
    weights = torch.load(Path(results["output_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return results["metrics"], weights


@pytest.mark.slow
def test_forced_placement_trains_exactly_like_the_loader_path(tmp_path, deterministic):
    """Index batches of the placed images against PyTorch's own loader path (a worker process batching the CPU
    tensors by the sampler), the path every run took before IndexBatches: the same batches, the same weights."""
    placed_metrics, placed_weights = run(tmp_path, True, deterministic)
    loader_metrics, loader_weights = run(tmp_path, False, deterministic, "data.num_workers=1")
    assert placed_metrics == loader_metrics
    assert placed_weights.keys() == loader_weights.keys()
    assert all(torch.equal(placed_weights[k], loader_weights[k]) for k in placed_weights)


@pytest.mark.slow
def test_distorted_sdlm_run_resumed_after_one_epoch_ends_with_the_uninterrupted_weights(tmp_path, deterministic):
    write_mnist(tmp_path / "data", num_train=200, num_test=50)  # MNIST alone: the GPU machine cannot make LunarLander
    common = [f"paths.data_dir={tmp_path / 'data'}", "experiment=lenet5_classic_mnist_distorted", "debug=limit",
              "seed=4", "data.on_device=true", "callbacks.progress_bar.refresh_rate=0", "data.batch_size=8",
              *deterministic]
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


def test_a_dataset_on_an_accelerator_moves_an_index_from_the_cpu_there():
    """Lightning rebuilds IndexBatches without a device (overfit_batches, predicting): its CPU slices are moved to
    where the images are, and the index handed on with the batch is the moved one."""
    dataset = TensorImageDataset(torch.zeros(6, 1, 1, 2, dtype=torch.uint8), torch.arange(6), True)
    placed = dataset.to(torch.device("meta"))  # a stand-in accelerator
    images, targets, index = placed.__getitems__([4, 1])
    assert images.device.type == targets.device.type == index.device.type == "meta" and images.shape[0] == 2


def test_the_training_loaders_index_batches_are_sliced_on_the_images_device():
    """The epoch's order is moved to the device once, not each batch's slice by the dataset."""
    module = DigitsDataModule(batch_size=64, num_workers=0)
    module.setup("fit")
    module.datasets["train"] = module.datasets["train"].to(torch.device("meta"))
    batches = module.train_dataloader().batch_sampler
    assert batches.device.type == "meta" and all(batch.device.type == "meta" for batch in batches)
    sampler = EpochSeededSampler(10, seed=0)
    assert all(batch.device.type == "meta" for batch in IndexBatches(sampler, 4, device=torch.device("meta")))

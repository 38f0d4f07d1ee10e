import sys

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from datamodules.base import EpochSeededSampler, seeded_split
from datamodules.digits import DigitsDataModule
from lightning_modules.classifier import ClassificationModule
from lightning_modules.lenet5 import LeNet5


def test_seeded_split_is_reproducible_and_disjoint():
    train_a, val_a = seeded_split(100, 0.2, seed=3)
    train_b, val_b = seeded_split(100, 0.2, seed=3)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(val_a) == 20 and len(train_a) == 80
    assert sorted(torch.cat([train_a, val_a]).tolist()) == list(range(100))
    _, val_other = seeded_split(100, 0.2, seed=4)
    assert not torch.equal(val_a, val_other)


def test_a_stratified_split_whose_classes_all_round_to_none_still_holds_one_item_out():
    """val_fraction 0.003 of 1,437 digits: 4 items unstratified, and every class's round(~144 x 0.003) = 0 stratified,
    which left validation empty without a word (the run then tested its last weights, not its best)."""
    targets = torch.arange(1437) % 10
    assert len(seeded_split(1437, 0.003, seed=0)[1]) == 4
    train, val = seeded_split(1437, 0.003, seed=0, targets=targets)
    assert len(val) == 1 and sorted(torch.cat([train, val]).tolist()) == list(range(1437))
    assert len(seeded_split(1437, 0.0, seed=0, targets=targets)[1]) == 0


def test_a_job_without_a_seed_shuffles_by_split_seed_whatever_an_earlier_job_of_its_process_seeded(make_cfg,
                                                                                                  monkeypatch):
    """Hydra's basic launcher runs a sweep's jobs in one process: seed=null after seed=3 shuffled by 3, the seed
    the earlier job had left in PL_GLOBAL_SEED, instead of by data.split_seed as alone."""
    from framework.training import train

    torch.manual_seed(0)  # the same initial weights: the runs differ in their batches' order alone, if at all
    alone = train(make_cfg("seed=null", "debug=limit", run="alone"))["metrics"]
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    torch.manual_seed(0)
    after_a_seeded_job = train(make_cfg("seed=null", "debug=limit", run="after"))["metrics"]
    assert after_a_seeded_job == alone


def test_epoch_sampler_depends_only_on_seed_and_epoch():
    a, b = EpochSeededSampler(50, seed=1), EpochSeededSampler(50, seed=1)
    a.set_epoch(3)
    list(b)  # iterating at epoch 0 first must not change epoch 3's order
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b) and sorted(b) == list(range(50))


@pytest.mark.parametrize("num_workers", [0, 1], ids=["index-batches", "workers"])
def test_the_training_loader_continues_an_epoch_after_the_batches_its_state_counts(num_workers):
    """Lightning keeps a loader's state in the checkpoint and, continuing a run, iterates the loader before it sets
    the epoch. The loader served the continued epoch from its first batch, and with workers in epoch 0's order."""
    module = DigitsDataModule(batch_size=100, num_workers=num_workers)
    module.setup("fit")
    module.datasets["train"].return_index = True
    indices = lambda batches: [index.tolist() for *_, index in batches]

    def loader_in_epoch(epoch: int, state: dict | None = None):
        loader = module.train_dataloader()
        if state is not None:
            loader.load_state_dict(state)
        started = iter(loader)
        _set_sampler_epoch(loader, epoch)  # as Lightning does, after iter() when it continues a run
        return loader, started

    _, uninterrupted = loader_in_epoch(2)
    expected = indices(uninterrupted)
    stopped, served = loader_in_epoch(2)
    assert indices(next(served) for _ in range(3)) == expected[:3]
    assert stopped.state_dict() == {"epoch": 2, "batches": 3, "batch_size": 100}
    continued, rest = loader_in_epoch(2, stopped.state_dict())
    assert continued.state_dict() == {"epoch": 2, "batches": 3, "batch_size": 100}  # loaded, not yet served: kept
    assert indices(rest) == expected[3:]
    assert continued.state_dict() == {"epoch": 2, "batches": len(expected), "batch_size": 100}
    _, next_epoch = loader_in_epoch(3, continued.state_dict())  # an epoch's state does not shorten the next
    assert len(indices(next_epoch)) == len(expected) and indices(next_epoch) != expected


@pytest.mark.parametrize("batch_size, trained_again", [(50, 0), (200, 100), (100, 0)])
def test_a_loader_continued_with_another_batch_size_passes_over_the_samples_served(batch_size, trained_again, caplog):
    """The loader passed over as many batches of the new size as the checkpoint's run had served of the old: after
    three batches of 100, batches of 50 served samples 150-299 again, and batches of 200 left samples 300-599 out.
    Now it passes over whole batches of the new size, never past the samples served, and says what it serves again."""
    module = DigitsDataModule(batch_size=100)
    module.setup("fit")
    module.datasets["train"].return_index = True
    order = torch.cat([index for *_, index in module.train_dataloader()]).tolist()
    stopped = iter(served := module.train_dataloader())
    for _ in range(3):
        next(stopped)
    module.batch_size = batch_size
    continued = module.train_dataloader()
    continued.load_state_dict(served.state_dict())
    rest = torch.cat([index for *_, index in continued]).tolist()
    assert rest == order[300 - trained_again:]
    assert all(len(index) == batch_size for *_, index in list(module.train_dataloader())[:-1])
    assert (f"so {trained_again} samples are trained on again" in caplog.text) == (trained_again > 0)


def test_digits_are_uint8_32x32_with_a_held_out_test_split(monkeypatch):
    import datamodules.digits

    reads, load_digits = [], datamodules.digits.load_digits

    def counted_load_digits():
        reads.append(1)
        return load_digits()

    monkeypatch.setattr(datamodules.digits, "load_digits", counted_load_digits)
    dm = DigitsDataModule(batch_size=32, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert len(reads) == 1  # read and upscaled once for all three splits (each run did it twice)
    sizes = {split: len(ds) for split, ds in dm.datasets.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 359
    assert dm.datasets["train"].images.dtype == torch.uint8
    assert dm.datasets["train"].images.shape[1:] == (1, 32, 32)
    assert dm.datasets["test"].targets.unique().tolist() == list(range(10))
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 32, 32) and targets.shape == (32,)
    # The three splits partition the dataset: together they hold each (image, label) as often as the dataset does.

    def rows(images, targets):
        return torch.cat([images.flatten(1), targets[:, None].to(torch.uint8)], dim=1)

    splits = torch.cat([rows(dm.datasets[split].images, dm.datasets[split].targets) for split in dm.datasets])
    whole = rows(*DigitsDataModule(test_fraction=0.0).load_split("train"))
    (kinds, counts), (all_kinds, all_counts) = (r.unique(dim=0, return_counts=True) for r in (splits, whole))
    assert torch.equal(kinds, all_kinds) and torch.equal(counts, all_counts)


@pytest.mark.parametrize(("precision", "dtype"), [("64-true", torch.float64), ("bf16-true", torch.bfloat16),
                                                  ("bf16-mixed", torch.float32), ("32-true", torch.float32)])
def test_batches_reach_the_model_in_the_dtype_of_trainer_precision(precision, dtype):
    """Lightning converts a batch for trainer.precision before the datamodule turns its uint8 images into floats."""
    module = DigitsDataModule(batch_size=16)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    reference, _ = module.on_after_batch_transfer(batch, 0)
    module.trainer = L.Trainer(precision=precision, accelerator="cpu", logger=False)
    images, targets = module.on_after_batch_transfer(batch, 0)
    assert images.dtype == dtype and targets.dtype == torch.int64
    assert torch.equal(images, reference.to(dtype))


def test_double_precision_trains_end_to_end(make_cfg):
    from framework.training import train

    metrics = train(make_cfg("trainer.precision=64", "debug=limit", "logger=none"))["metrics"]
    assert {"train/loss", "test/acc"} <= set(metrics) and torch.isfinite(torch.tensor(metrics["test/loss"]))


class TrainingTargets(L.Callback):
    def __init__(self):
        self.epochs: list[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs[-1] += batch[1].tolist()


def test_overfit_batches_trains_on_the_same_batches_every_epoch():
    """As Lightning does with a loader that shuffles: it cannot see our loader's shuffling, and served other batches
    each epoch."""
    seen = TrainingTargets()
    trainer = L.Trainer(overfit_batches=2, max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[seen])
    module = DigitsDataModule(batch_size=8)
    trainer.fit(ClassificationModule(LeNet5(), torch.optim.SGD), datamodule=module)
    module.setup("fit")
    first_batches = module.datasets["train"].targets[:16].tolist()
    assert seen.epochs == [first_batches] * 3


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the default start method on Linux only")
def test_loader_workers_are_forked_whatever_the_processs_default_start_method():
    """A DDP rank started from a forkserver (trainer=ddp_sim) has forkserver as its default: its loader workers each
    started from a fresh interpreter that imported torch (debug=smoke with data.num_workers=1: 28 s, 13 s forked)."""
    module = DigitsDataModule(batch_size=100, num_workers=1)
    module.setup("fit")
    loaders = [module.train_dataloader(), module.val_dataloader()]
    assert [loader.multiprocessing_context.get_start_method() for loader in loaders] == ["fork", "fork"]


def test_a_missing_file_outside_the_data_folder_is_named_with_the_usual_remedy(tmp_path):
    """A DataModule of one's own may read files elsewhere: the sentence's check for a data_dir given as the dataset's
    own folder must not stop at a path outside data_dir."""
    from datamodules.base import DatasetMissingError, InMemoryDataModule

    class Elsewhere(InMemoryDataModule):
        def expected_files(self):
            return [tmp_path / "shared" / "images.npy"]

    with pytest.raises(DatasetMissingError, match=rf"^Elsewhere: expected {tmp_path}/shared/images.npy but it does "
                                                  rf"not exist; put the dataset under {tmp_path}/data in its official"):
        Elsewhere(data_dir=str(tmp_path / "data")).setup("fit")


def test_epoch_orders_differ_between_seeds():
    """The order depends on the run's seed as well as on the epoch: runs of other seeds see other batches."""
    a, b = EpochSeededSampler(50, seed=1), EpochSeededSampler(50, seed=2)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) != list(b) and sorted(a) == sorted(b) == list(range(50))


def test_the_training_loader_shuffles_by_the_runs_seed(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    module = DigitsDataModule(batch_size=100, split_seed=5)
    module.setup("fit")
    assert module.train_dataloader().batch_sampler.sampler.seed == 5  # no seed set: data.split_seed
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # what seed_everything(7) sets
    assert module.train_dataloader().batch_sampler.sampler.seed == 7


@pytest.mark.parametrize("num_workers", [0, 1], ids=["index-batches", "workers"])
def test_serving_the_training_loader_draws_nothing_from_the_global_random_state(num_workers):
    """Each iterator draws a base seed: from the global random state, a run continued within an epoch drew it after
    the states its checkpoint restored, and its dropout was then not the uninterrupted run's."""
    module = DigitsDataModule(batch_size=100, num_workers=num_workers)
    module.setup("fit")
    loader = module.train_dataloader()
    state = torch.get_rng_state()
    batches = iter(loader)
    next(batches)
    assert torch.equal(torch.get_rng_state(), state)
    del batches

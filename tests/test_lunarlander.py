"""LunarLander generation (tiny runs, really rendered), its atomic cache, and the mean-distance metric."""

from __future__ import annotations

import re
import runpy
import signal
import sys

import numpy as np
import pytest
import torch

import datamodules.lunarlander as lunarlander
from analysis.embedding_probes import mean_distance
from datamodules.lunarlander import LunarLanderDataModule, generate_collection, onscreen
from framework.errors import ConfigError

ROLLOUTS, STEPS = 3, 8


@pytest.fixture(scope="module")
def collection():
    return generate_collection(ROLLOUTS, STEPS, seed=5, workers=1, progress=False)


def small_module(data_dir, **options) -> LunarLanderDataModule:
    defaults = {"rollouts": ROLLOUTS, "steps_per_rollout": STEPS, "train_seed": 5, "test_seed": 6,
                "generation_workers": 1, "progress": False}
    return LunarLanderDataModule(data_dir=str(data_dir), **{**defaults, **options})


def test_generation_is_reproducible_and_independent_of_the_workers(collection):
    assert collection["images"].shape == (ROLLOUTS * STEPS, 3, 64, 64) and collection["images"].dtype == np.uint8
    assert collection["before"].shape == collection["after"].shape == (ROLLOUTS * STEPS, 8)
    in_parallel = generate_collection(ROLLOUTS, STEPS, seed=5, workers=2, progress=False)
    for key in collection:
        assert collection[key].tobytes() == in_parallel[key].tobytes()
    other = generate_collection(1, STEPS, seed=6, workers=1, progress=False)
    assert not np.array_equal(other["before"], collection["before"][:STEPS])


def note_and_go_on(signum, frame) -> None:
    """A SIGTERM handler like Lightning's during a fit: it notes the signal, the process goes on."""


def test_generation_workers_stop_at_sigterm_even_when_the_run_only_notes_it():
    """Pool.terminate stops its workers with SIGTERM; a fit's SIGTERM handler (Lightning's notes the signal and
    returns), inherited by a forked worker, kept a worker waiting for a task alive and the run waiting for it."""
    previous = signal.signal(signal.SIGTERM, note_and_go_on)
    try:
        pool = lunarlander.rollout_pool(2)
        handlers = [pool.apply(signal.getsignal, (signum,)) for signum in (signal.SIGTERM, signal.SIGINT)]
        pool.close()
        pool.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert handlers == [signal.SIG_DFL, signal.SIG_IGN]  # Ctrl+C reaches the parent, which stops the pool


def test_frames_show_the_lander_and_observations_follow_each_other(collection):
    before = collection["before"].reshape(ROLLOUTS, STEPS, 8)
    after = collection["after"].reshape(ROLLOUTS, STEPS, 8)
    assert np.array_equal(after[:, :-1], before[:, 1:])  # the label "after" is one step ahead of the image
    assert np.all(np.abs(before[:, 0, 0]) < 0.1) and np.all(np.abs(before[:, 0, 1] - 1.4) < 0.1)  # starts top centre
    images = collection["images"].astype(int)
    assert images[:, :, :20].mean() < images[:, :, 50:].mean()  # black sky above, white moon below: upright
    assert len({frame.tobytes() for frame in collection["images"]}) == ROLLOUTS * STEPS  # every frame differs


def test_a_terrain_seed_gives_every_rollout_of_every_run_the_same_start(collection, tmp_path):
    fixed = {seed: generate_collection(ROLLOUTS, STEPS, seed=seed, workers=1, progress=False, terrain_seed=3)
             for seed in (5, 6)}
    first_frames = np.concatenate([run["images"][::STEPS] for run in fixed.values()])
    assert all(np.array_equal(frame, first_frames[0]) for frame in first_frames)  # same terrain, same start
    assert not np.array_equal(collection["images"][0], collection["images"][STEPS])  # without: a terrain each
    ends = fixed[5]["after"][STEPS - 1 :: STEPS, :2]
    assert len({tuple(end) for end in ends}) == ROLLOUTS  # the random actions still take each lander elsewhere
    assert small_module(tmp_path, terrain_seed=3).cache_path(5).name == (
        "LunarLander-v3_rollouts3_steps8_seed5_terrain3_64px_v1.npz")


def test_onscreen_bounds_are_inclusive():
    positions = np.array([[0, 0], [-1, -0.5], [1, 1.5], [1.01, 0], [0, -0.51], [0, 1.51], [-1.2, 2]], np.float32)
    assert onscreen(positions).tolist() == [True, True, True, False, False, False, False]


def test_datamodule_labels_splits_and_cache(tmp_path, collection, monkeypatch):
    module = small_module(tmp_path, label_observation="before", val_fraction=0.25)
    module.prepare_data()
    cache = module.cache_path(5)
    assert cache.name == "LunarLander-v3_rollouts3_steps8_seed5_64px_v1.npz" and cache.exists()
    assert module.cache_path(6).exists() and not list(cache.parent.glob("*.partial"))

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(lunarlander, "generate_collection", no_generation)
    module = small_module(tmp_path, label_observation="before", val_fraction=0.25)
    module.setup()
    keep = onscreen(collection["before"][:, :2])
    images = np.concatenate([module.datasets[split].images.numpy() for split in ("train", "val")])
    targets = torch.cat([module.datasets[split].targets for split in ("train", "val")])
    assert np.array_equal(images, collection["images"][keep])  # the cached run is the generated one
    assert targets.dtype == torch.float32 and targets.shape == (keep.sum(), 2)
    assert np.array_equal(targets.numpy(), collection["before"][keep, :2])
    assert onscreen(targets.numpy()).all()
    assert len(module.datasets["val"]) == round(keep.sum() * 0.25)  # the last quarter, in order
    num_val = len(module.datasets["val"])
    assert np.array_equal(module.datasets["val"].images.numpy(), collection["images"][keep][-num_val:])
    everything = small_module(tmp_path, label_observation="before", val_fraction=0)
    everything.setup("fit")
    assert len(everything.datasets["train"]) == keep.sum() and len(everything.datasets["val"]) == 0  # 0: none
    with pytest.raises(ConfigError, match="'data.train_seed' and 'data.test_seed' are both 5, so the run would be "
                                          "tested on the frames it trained on"):
        small_module(tmp_path, test_seed=5)
    after = small_module(tmp_path, label_observation="after", filter_offscreen=False)
    after.setup("test")
    assert len(after.datasets["test"]) == ROLLOUTS * STEPS  # unfiltered, as the autoencoder run
    assert np.array_equal(after.datasets["test"].targets.numpy(), np.load(module.cache_path(6))["after"][:, :2])


def test_partial_and_corrupt_cache_files_are_not_trusted(tmp_path, collection):
    module = small_module(tmp_path)
    cache = module.cache_path(5)
    cache.parent.mkdir(parents=True)
    planted = cache.parent / f".{cache.name}.killed.partial"  # what a killed generation leaves behind
    planted.write_bytes(b"PK\x03\x04 half a zip")
    cache.write_bytes(b"PK\x03\x04 not the whole file")  # a truncated cache under the real name
    module.setup("fit")
    arrays = np.load(cache)
    assert np.array_equal(arrays["images"], collection["images"])  # regenerated, identical to a fresh run
    assert not planted.exists()  # never read as the cache, and removed: no process was writing it


def test_preparing_ahead_generates_a_truncated_cache_again(tmp_path, collection):
    """``python -m datamodules.lunarlander`` prepares a sweep's runs in prepare_data: a cache it left broken would be
    generated again by each job of the sweep."""
    module = small_module(tmp_path)
    cache = module.cache_path(5)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"PK\x03\x04 not the whole file")
    module.prepare_data()
    assert np.array_equal(np.load(cache)["images"], collection["images"])


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def killed(file, **arrays):
        file.write(b"PK\x03\x04 first bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        lunarlander.save_atomically(tmp_path / "run.npz", {"x": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_label_observation_and_terrain_seed_are_checked():
    with pytest.raises(ValueError, match="'data.label_observation' is 'during', but it must be 'before' or 'after'"):
        LunarLanderDataModule(label_observation="during")
    for seed in (-1, False):
        with pytest.raises(ValueError, match=f"'data.terrain_seed' is {seed}, but it must be null .* an integer >= 0"):
            LunarLanderDataModule(terrain_seed=seed)
    with pytest.raises(ConfigError, match=r"^Config key 'data.stratify' is true, but LunarLanderDataModule's targets "
                                          r"are not classes to draw the validation split by; leave data.stratify out"):
        LunarLanderDataModule(stratify=True)  # its targets are positions: the split would fail with an IndexError


def test_the_mean_distance_is_the_mean_euclidean_distance_of_the_points():
    rng = np.random.default_rng(0)
    predicted, true = rng.normal(size=(2, 50, 2))
    expected = np.sqrt(((predicted - true) ** 2).sum(axis=1)).mean()
    assert mean_distance(torch.tensor(predicted), torch.tensor(true)) == pytest.approx(expected, rel=1e-12)
    assert mean_distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])) == 5.0
    assert mean_distance(torch.tensor([0.0, 0.0]), torch.tensor([[3.0, 4.0], [6.0, 8.0]])) == 7.5  # one for all


def test_generating_ahead_writes_the_runs_train_py_reads_for_the_same_overrides(tmp_path, collection, monkeypatch):
    overrides = [f"data.data_dir={tmp_path}", f"data.rollouts={ROLLOUTS}", f"data.steps_per_rollout={STEPS}",
                 "data.train_seed=5", "data.test_seed=7", "data.generation_workers=1", "data.progress=false"]
    runs = lunarlander.generate_ahead(overrides)
    assert [run.name for run in runs] == [f"LunarLander-v3_rollouts{ROLLOUTS}_steps{STEPS}_seed{seed}_64px_v1.npz"
                                          for seed in (5, 7)]
    assert np.array_equal(np.load(runs[0])["images"], collection["images"])  # seed 5: the fixture's frames
    monkeypatch.setattr(lunarlander, "generate_collection", lambda *a, **k: pytest.fail("the runs should be read"))
    small_module(tmp_path, test_seed=7).setup()
    with pytest.raises(lunarlander.ConfigError, match="data.rolouts"):
        lunarlander.generate_ahead(["data.rolouts=3"])
    with pytest.raises(lunarlander.ConfigError, match="'data.rollouts' is 0, but it must be an integer >= 1"):
        lunarlander.generate_ahead([f"data.data_dir={tmp_path}", "data.rollouts=0"])  # it cached an empty run
    with pytest.raises(lunarlander.ConfigError, match=re.escape(  # Hydra's sentence said to add -m
            "Config key 'data.rollouts' is given the sweep 2,3, but this command generates the runs of one config; "
            "give one value at a time (a command for each).")):
        lunarlander.generate_ahead(["data.rollouts=2,3"])


@pytest.mark.parametrize(("flags", "code"), [(["--help"], 0), (["-m", "data.rollouts=2,3"], 2)])
def test_the_generating_command_answers_help_and_refuses_flags_with_its_usage(flags, code, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["lunarlander.py", *flags])  # python -m datamodules.lunarlander <flags>
    with pytest.raises(SystemExit) as done:
        runpy.run_path(lunarlander.__file__, run_name="__main__")
    assert done.value.code == code
    printed = capsys.readouterr()
    said = (printed.out if code == 0 else printed.err).strip()
    assert said.startswith("usage: python -m datamodules.lunarlander [data.<key>=<value> ...]: generates the runs")
    assert said.endswith("(given: -m, which it does not take)" if code else "prints their paths")


def test_a_folder_where_a_run_is_cached_is_named_before_generating(tmp_path, monkeypatch):
    """Generating takes minutes on a real run; the atomic rename onto the folder would fail only after them."""
    from datamodules.base import DatasetCorruptError

    monkeypatch.setattr(lunarlander, "generate_collection", lambda *args, **kwargs: pytest.fail("generated"))
    module = small_module(tmp_path, train_seed=7, test_seed=8)
    module.cache_path(7).mkdir(parents=True)
    with pytest.raises(DatasetCorruptError, match=r"seed7_64px_v1.npz is a folder where the LunarLander frames are "
                                                  r"cached; move it away"):
        module.setup("fit")

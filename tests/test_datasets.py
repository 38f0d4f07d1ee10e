"""CIFAR-10, SVHN and STL-10 loaders on small files written in each dataset's exact on-disk format."""

from __future__ import annotations

import logging
import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from datamodules import stl10
from datamodules.base import DatasetCorruptError, DatasetMissingError, rgb_to_luma
from datamodules.cifar10 import CIFAR10DataModule
from datamodules.mnist import MNISTDataModule
from datamodules.stl10 import STL10DataModule
from datamodules.svhn import SVHNDataModule
from framework.validate import ConfigError, validate
from tests.conftest import ROOT, run_cli
from tests.dataset_files import (
    LUNARLANDER_SMALL,
    RunsACommand,
    python2_pickle,
    write_cifar10,
    write_stl10,
    write_svhn,
)


def all_of(module, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = module.datasets[split]
    return dataset.images, dataset.targets


def first_batch(module, split: str = "train"):
    loader = getattr(module, f"{split}_dataloader")()
    return module.on_after_batch_transfer(next(iter(loader)), 0)


def luma_by_pil(images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(image.transpose(1, 2, 0)).convert("L")) for image in images])


# ---- CIFAR-10 -------------------------------------------------------------------------------
def test_cifar10_reads_the_pickled_batches(tmp_path):
    written = write_cifar10(tmp_path, per_batch=10, num_test=12)
    module = CIFAR10DataModule(data_dir=str(tmp_path), val_fraction=0.2, split_seed=3)
    module.setup()
    train_images, train_labels = all_of(module, "train")
    val_images, val_labels = all_of(module, "val")
    assert train_images.shape == (40, 3, 32, 32) and val_images.shape == (10, 3, 32, 32)
    assert train_images.dtype == torch.uint8 and train_labels.dtype == torch.int64
    # train + val are exactly the 50 written training images (all five batches, in their order)
    images, labels = written["train"]
    together = torch.cat([train_images, val_images]).numpy()
    order = np.lexsort(together.reshape(50, -1).T)
    assert np.array_equal(together[order], images[np.lexsort(images.reshape(50, -1).T)])
    test_images, test_labels = all_of(module, "test")
    assert np.array_equal(test_images.numpy(), written["test"][0])  # channel order R, G, B and rows upright
    assert np.array_equal(test_labels.numpy(), written["test"][1])
    assert set(torch.cat([train_labels, val_labels]).tolist()) == set(range(10))


def test_cifar10_grayscale_is_pils_luma_and_flatten_gives_vectors(tmp_path):
    written = write_cifar10(tmp_path, per_batch=4, num_test=8)
    module = CIFAR10DataModule(data_dir=str(tmp_path), grayscale=True, flatten=True, batch_size=8)
    module.setup("test")
    images, _ = all_of(module, "test")
    assert images.shape == (8, 1, 32, 32) and images.dtype == torch.uint8
    assert np.array_equal(images[:, 0].numpy(), luma_by_pil(written["test"][0]))
    batch, _ = first_batch(module, "test")
    assert batch.shape == (8, 1024) and batch.dtype == torch.float32
    assert torch.allclose(batch, images.flatten(1).float() / 255)


def test_rgb_to_luma_is_bit_exact_with_pil():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 3, 9, 7), dtype=np.uint8)
    images[0] = 255  # extremes: white stays 255, black 0
    images[1] = 0
    luma = rgb_to_luma(torch.from_numpy(images), chunk=16)
    assert np.array_equal(luma[:, 0].numpy(), luma_by_pil(images))
    assert luma[0].min() == 255 and luma[1].max() == 0


def test_cifar10_truncated_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DatasetCorruptError, match="data_batch_3 is not a readable CIFAR-10 batch"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")


def test_cifar10_serves_what_torchvisions_cifar10_reads_from_the_same_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    write_cifar10(tmp_path, per_batch=4, num_test=8)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    module = CIFAR10DataModule(data_dir=str(tmp_path), val_fraction=0)
    module.setup()
    for split, train in (("train", True), ("test", False)):
        theirs = torchvision.datasets.cifar.CIFAR10(str(tmp_path), train=train)
        images, labels = all_of(module, split)
        ours = np.concatenate([images.permute(0, 2, 3, 1).flatten(1).numpy(), labels[:, None].numpy()], axis=1)
        expected = np.concatenate([theirs.data.reshape(len(theirs), -1), np.array(theirs.targets)[:, None]], axis=1)
        if split == "train":  # ours in the split's seeded order
            ours, expected = (rows[np.lexsort(rows.T)] for rows in (ours, expected))
        assert np.array_equal(ours, expected)
    theirs = torchvision.datasets.cifar.CIFAR10(str(tmp_path), train=True)
    images, labels = module.load_split("train")  # as the files hold them, before the split: batches 1 to 5, in order
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), theirs.data) and labels.tolist() == theirs.targets


def test_cifar10_batch_that_asks_for_anything_but_numpy_arrays_is_refused_before_it_runs(tmp_path):
    """The batches are files from outside: pickle.load ran a planted batch's command, and the run went on."""
    import pickle

    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    path.write_bytes(python2_pickle({**batch, b"batch_label": RunsACommand(tmp_path / "ran")}))
    with pytest.raises(DatasetCorruptError, match=r"data_batch_4 is not a readable CIFAR-10 batch \(UnpicklingError: "
                                                  r"it asks for posix.system, but only numpy arrays are admitted\); "):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("field, value, found", [
    ("data", lambda rows: rows.astype(np.float32) / 255, "float32 pixels and labels"),  # would truncate to black
    ("labels", lambda labels: [*labels[:-1], 102], r"uint8 pixels and labels \d\.\.102"),
    ("labels", lambda labels: [*labels[:-1], 10], r"uint8 pixels and labels \d\.\.10"),  # one past the last class
    ("labels", lambda labels: [-1, *labels[1:]], r"uint8 pixels and labels -1\.\.\d"),
])
def test_cifar10_batch_of_other_pixels_or_labels_names_the_file(tmp_path, field, value, found):
    import pickle

    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch[field.encode()] = value(batch[field.encode()])
    path.write_bytes(python2_pickle(batch))
    with pytest.raises(DatasetCorruptError, match=f"data_batch_2 holds {found}.*, but a CIFAR-10 batch holds uint8 "
                                                  f"pixels and labels 0..9; delete it"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")


def test_a_file_given_as_the_data_folder_is_named(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(DatasetMissingError, match=f"expected {tmp_path}/afile/cifar-10-batches-py/data_batch_1, but "
                                                  f"{tmp_path}/afile is a file, not a folder; point data.data_dir="):
        CIFAR10DataModule(data_dir=str(tmp_path / "afile")).setup("fit")


def test_a_data_folder_under_home_is_read_as_torchvision_reads_root(tmp_path, monkeypatch):
    """data.data_dir="~/data" (or DATA_DIR=~/data, quoted) was taken literally: a folder named ~ in the working
    directory, where data.download=true then wrote."""
    home = tmp_path / "home"
    write_cifar10(home / "data", per_batch=10, num_test=12)
    monkeypatch.setenv("HOME", str(home))
    module = CIFAR10DataModule(data_dir="~/data")
    module.setup("test")
    assert module.data_dir == home / "data" and len(module.datasets["test"]) == 12
    ran = run_cli(str(ROOT / "train.py"), "data=cifar10", "data.grayscale=true", "hydra.job.chdir=true", "debug=limit",
                  "logger=none", "hydra.run.dir=run", cwd=tmp_path, env={"HOME": str(home), "DATA_DIR": "~/data"})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert not [path for path in tmp_path.rglob("~")]
    with pytest.raises(ConfigError, match=re.escape("Config key 'data.data_dir' is null, but it must be the folder "
                                                    "that holds the dataset; give data.data_dir=<folder> (or set "
                                                    "DATA_DIR).")):
        CIFAR10DataModule(data_dir=None)


def test_missing_files_name_the_path_and_the_remedy(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"cifar-10-batches-py/data_batch_1 .*data.download=true"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")
    with pytest.raises(DatasetMissingError, match=r"\(or point data.data_dir= or DATA_DIR at it\)"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")  # the config key, not the DataModule argument
    with pytest.raises(DatasetMissingError, match=r"extra_32x32.mat .*data.download=true"):
        SVHNDataModule(data_dir=str(tmp_path), train_split="extra").setup("fit")
    with pytest.raises(DatasetMissingError, match=r"stl10_binary/unlabeled_X.bin"):
        STL10DataModule(data_dir=str(tmp_path), train_split="unlabeled").setup("fit")


def test_an_unextracted_archive_is_named_and_download_extracts_it_offline(tmp_path, monkeypatch):
    """cifar-10-python.tar.gz copied into the data folder: the sentence said to download "when online", but
    data.download=true checks the archive's md5 and extracts it without the network."""
    import tarfile
    import urllib.request

    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import calculate_md5

    write_cifar10(tmp_path / "files", per_batch=2, num_test=2)
    archive = tmp_path / "data" / CIFAR10.filename
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "files" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "tgz_md5", calculate_md5(str(archive)))  # the real archive's md5 is the real one's

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetMissingError, match=rf"data_batch_1 but it does not exist, and its archive {archive} is "
                                                  r"there unextracted; run with data.download=true, which checks and "
                                                  r"extracts it without the network\.$"):
        CIFAR10DataModule(data_dir=str(tmp_path / "data")).setup("fit")
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path / "data"), download=True)
    datamodule.prepare_data()
    datamodule.setup("test")
    assert len(datamodule.datasets["test"]) == 2


def test_an_unextracted_stl10_archive_is_named(tmp_path):
    """STL10's archive, like CIFAR-10's, is extracted by data.download=true without the network."""
    from torchvision.datasets import STL10

    (tmp_path / STL10.filename).write_bytes(b"an archive")
    with pytest.raises(DatasetMissingError, match=rf"stl10_binary/train_X.bin but it does not exist, and its archive "
                                                  rf"{tmp_path / STL10.filename} is there unextracted; run with "
                                                  r"data.download=true"):
        STL10DataModule(data_dir=str(tmp_path)).setup("fit")


def test_a_data_folder_given_as_the_datasets_own_folder_names_its_parent(tmp_path):
    """data.data_dir=.../stl10_binary said only that .../stl10_binary/stl10_binary/train_X.bin does not exist."""
    (tmp_path / "stl10_binary").mkdir()
    with pytest.raises(DatasetMissingError, match=rf"; data.data_dir is {tmp_path}/stl10_binary, the dataset's own "
                                                  rf"folder: point data.data_dir= \(or DATA_DIR\) at the folder that "
                                                  rf"holds it, {tmp_path}\.$"):
        STL10DataModule(data_dir=str(tmp_path / "stl10_binary")).setup("fit")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=rf"expected {raw}/MNIST/raw/train-images-idx3-ubyte \(or "
                                                  rf"train-images-idx3-ubyte.gz\) but .* at the folder that holds it, "
                                                  rf"{tmp_path}\.$"):
        MNISTDataModule(data_dir=str(raw)).setup("fit")


@pytest.mark.parametrize("error", [urllib.error.URLError("no network"),
                                   RuntimeError("Error downloading x.gz:\nTried https://..., got: no network")])
def test_download_offline_is_one_clear_sentence(tmp_path, monkeypatch, error):
    """OSErrors, and the RuntimeError torchvision's MNIST wraps them in."""
    import torchvision.datasets.utils

    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    (tmp_path / "kept").mkdir()  # there before: stays
    data_dir = tmp_path / "kept" / "new" / "data"
    module = CIFAR10DataModule(data_dir=str(data_dir), download=True)
    reason = "<urlopen error no network>" if isinstance(error, OSError) else "Error downloading x.gz"
    with pytest.raises(DatasetMissingError, match=rf"into {data_dir} failed \({reason}\); check the network") as raised:
        module.prepare_data()
    assert "\n" not in str(raised.value)
    assert list(tmp_path.rglob("*")) == [tmp_path / "kept"]  # the folders made for the download are gone with it


def fake_download(function: str, calls: list, fail_after_writing: bool = False):
    """torchvision's ``download_url`` or ``download_and_extract_archive`` writing the real layout (small files) where
    it is told to; ``fail_after_writing``: killed after the files are half written."""

    def fetch(url, download_root, extract_root=None, filename=None, md5=None, **kwargs):
        calls.append({"md5": md5, "root": download_root, "extract_root": extract_root})
        target = extract_root or download_root
        if "cifar" in url:
            write_cifar10(target, per_batch=2, num_test=2)
        elif "stl10" in url:
            write_stl10(target, {"train": 2, "test": 2, "unlabeled": 2})
        else:
            write_svhn(target, {filename.removesuffix("_32x32.mat"): 3})
        if fail_after_writing:
            for written in Path(target).rglob("*"):
                if written.is_file() and not written.name.startswith("."):
                    written.write_bytes(written.read_bytes()[:100])  # truncated, as by a kill mid-write
            raise KeyboardInterrupt
    return fetch


DOWNLOADERS = [(CIFAR10DataModule, "download_and_extract_archive", {"c58f30108f718f92721af3b95e74349a"}),
               (STL10DataModule, "download_and_extract_archive", {"91f7769df0f17e558f3565bffb0c7dfb"}),
               (SVHNDataModule, "download_url",
                {"e26dedcc434d2e4c54c9b2d4a06d8373", "eb5a983be6a315427106f1b164d9cef3"})]


@pytest.mark.parametrize(("module", "function", "md5s"), DOWNLOADERS)
def test_downloads_are_checked_against_the_published_md5s(tmp_path, monkeypatch, module, function, md5s):
    """torchvision's download utilities verify what they fetch only when given the md5 (train and test for SVHN)."""
    import torchvision.datasets.utils

    calls = []
    monkeypatch.setattr(torchvision.datasets.utils, function, fake_download(function, calls))
    datamodule = module(data_dir=str(tmp_path), download=True)
    datamodule.prepare_data()
    assert {call["md5"] for call in calls} == md5s and len(calls) == len(md5s)
    assert datamodule.missing_files() == []
    datamodule.setup("test")  # the files were moved into place whole
    (tmp_path / "torchvision").mkdir()
    fake_download(function, [])("https://fake/" + module.__name__.lower(), str(tmp_path / "torchvision"),
                                filename="train_32x32.mat")
    in_place = {path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file()}
    assert {path.relative_to(tmp_path / "torchvision") for path in (tmp_path / "torchvision").rglob("*")
            if path.is_file()} <= in_place  # all that torchvision's download leaves (CIFAR-10's batches.meta, ...)


@pytest.mark.parametrize(("module", "function", "md5s"), DOWNLOADERS)
def test_a_killed_download_leaves_no_file_that_a_later_run_takes_as_present(tmp_path, monkeypatch, module,
                                                                              function, md5s):
    """torchvision writes straight into its target; ours go through a scratch folder and are renamed into place. An
    archive stays in data_dir (torchvision's md5 check fetches a partial one again)."""
    import torchvision.datasets.utils

    calls = []
    monkeypatch.setattr(torchvision.datasets.utils, function, fake_download(function, calls, fail_after_writing=True))
    datamodule = module(data_dir=str(tmp_path), download=True)
    expected = datamodule.expected_files()
    with pytest.raises(KeyboardInterrupt):
        datamodule.prepare_data()
    assert datamodule.missing_files() == expected
    if function == "download_and_extract_archive":
        assert calls[0]["root"] == str(tmp_path) and calls[0]["extract_root"] != str(tmp_path)
    monkeypatch.setattr(torchvision.datasets.utils, function, fake_download(function, calls))
    datamodule.prepare_data()  # the next run with data.download=true fetches them
    datamodule.setup("test")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch folder left


# ---- SVHN -----------------------------------------------------------------------------------
def test_svhn_reads_mat_files_maps_10_to_0_and_picks_splits_per_stage(tmp_path):
    written = write_svhn(tmp_path, {"train": 12, "test": 10, "extra": 25})
    module = SVHNDataModule(data_dir=str(tmp_path), train_split="extra", test_split="train", val_fraction=0.2)
    module.setup()
    assert len(module.datasets["train"]) == 20 and len(module.datasets["val"]) == 5  # from extra
    test_images, test_labels = all_of(module, "test")  # from train
    assert test_images.shape == (12, 3, 32, 32) and test_images.dtype == torch.uint8
    assert np.array_equal(test_images.numpy(), written["train"][0])
    assert np.array_equal(test_labels.numpy(), written["train"][1]) and 0 in test_labels.tolist()
    (tmp_path / "test_32x32.mat").unlink()  # a split no stage reads is not required
    SVHNDataModule(data_dir=str(tmp_path), train_split="extra", test_split="train").setup()


def test_svhn_wrap_padding_tiles_the_digit_and_grayscale(tmp_path):
    written = write_svhn(tmp_path, {"train": 10, "test": 6})
    module = SVHNDataModule(data_dir=str(tmp_path), pad_to=64, batch_size=6)
    module.setup("test")
    batch, _ = first_batch(module, "test")
    expected = np.pad(written["test"][0], ((0, 0), (0, 0), (0, 32), (0, 32)), mode="wrap") / 255  # the authors' pad
    assert batch.shape == (6, 3, 64, 64)
    assert np.allclose(batch.numpy(), expected, atol=1e-6)
    module.pad_to = 80  # more than twice the size: tiled further, still np.pad's wrap
    batch, _ = first_batch(module, "test")
    expected = np.pad(written["test"][0], ((0, 0), (0, 0), (0, 48), (0, 48)), mode="wrap") / 255
    assert batch.shape == (6, 3, 80, 80) and np.allclose(batch.numpy(), expected, atol=1e-6)
    module.pad_to = 16
    with pytest.raises(ValueError, match="'data.pad_to' is 16, but the images are 32x32"):
        first_batch(module, "test")
    gray = SVHNDataModule(data_dir=str(tmp_path), grayscale=True, pad_to=40, pad_mode="zeros", batch_size=6)
    gray.setup("test")
    batch, _ = first_batch(gray, "test")
    assert batch.shape == (6, 1, 40, 40) and batch[:, :, :4].abs().sum() == 0  # zeros, centred
    assert np.allclose(batch[:, 0, 4:36, 4:36].numpy() * 255, luma_by_pil(written["test"][0]), atol=1e-3)


def test_svhn_truncated_mat_and_unknown_split(tmp_path):
    write_svhn(tmp_path, {"train": 10, "test": 6})
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DatasetCorruptError, match="test_32x32.mat is not a readable SVHN .mat file"):
        SVHNDataModule(data_dir=str(tmp_path)).setup("test")
    with pytest.raises(ValueError, match="'data.train_split' is 'unlabeled', but SVHNDataModule has the splits"):
        SVHNDataModule(data_dir=str(tmp_path), train_split="unlabeled")
    import scipy.io

    scipy.io.savemat(path, {"X": np.zeros((28, 28, 3, 6), np.uint8), "y": np.ones((6, 1), np.uint8)})
    with pytest.raises(DatasetCorruptError, match=r"test_32x32.mat holds X of shape \(28, 28, 3, 6\) \(uint8\) with 6 "
                                                  r"labels, but SVHN stores uint8 X as \[32, 32, 3, N\]"):
        SVHNDataModule(data_dir=str(tmp_path)).setup("test")


# ---- STL-10 ---------------------------------------------------------------------------------
def test_stl10_column_major_images_come_out_upright(tmp_path):
    written = write_stl10(tmp_path, {"train": 10, "test": 12, "unlabeled": 15})
    module = STL10DataModule(data_dir=str(tmp_path))
    module.setup("test")
    images, labels = all_of(module, "test")
    assert images.shape == (12, 3, 96, 96) and images.dtype == torch.uint8
    assert (images[:, :, 0, :] == 250).all() and (images[:, :, 1:, 0] == 100).all()  # bright top row, dim left
    assert (images[:, :, 1:, 1:50] == 0).all()
    assert np.array_equal(images.numpy(), written["test"][0])
    assert np.array_equal(labels.numpy(), written["test"][1]) and labels.min() == 0 and labels.max() == 9
    batch, _ = first_batch(module, "test")
    assert torch.allclose(batch[:, :, 0, :], torch.tensor(250 / 255))


def test_stl10_unlabeled_split_for_autoencoders(tmp_path, caplog):
    write_stl10(tmp_path, {"train": 10, "test": 12, "unlabeled": 15})
    module = STL10DataModule(data_dir=str(tmp_path), train_split="unlabeled", val_fraction=0.2)
    with caplog.at_level(logging.WARNING, logger="datamodules.stl10"):
        module.setup("fit")
    assert len(module.datasets["train"]) == 12 and len(module.datasets["val"]) == 3
    # unlabeled_X.bin has no label file to count against: a file cut at a whole image is said to be short
    assert "unlabeled_X.bin holds 15 images, where STL-10's has 100,000" in caplog.text
    assert (module.datasets["train"].targets == -1).all()
    assert (module.datasets["val"].images[:, :, 0, :] == 250).all()


def test_stl10_folds_keep_the_predefined_fold_of_the_labelled_training_images(tmp_path):
    written = write_stl10(tmp_path, {"train": 10, "test": 12, "unlabeled": 15})
    # STL-10's fold_indices.txt: one line per fold, zero-based indices separated by spaces (a trailing one too)
    (tmp_path / "stl10_binary" / "fold_indices.txt").write_text("".join(f"{line} \n" for line in
                                                                        ["0 1 2", "9 3 5 7", *["4 6"] * 8]))
    module = STL10DataModule(data_dir=str(tmp_path), folds=1, val_fraction=0.0)
    module.setup("fit")
    images, labels = all_of(module, "train")
    marks = images[:, 1, 45, 65].tolist()  # stl10_pattern writes each image's index there
    assert sorted(marks) == [3, 5, 7, 9]
    assert labels.tolist() == [written["train"][1][index] for index in marks]
    for folds in (10, False):  # false is no "no folds": it was fold 0, 1,000 images instead of 5,000
        with pytest.raises(ConfigError, match=rf"'data.folds' is {folds}, but it must be one of the predefined "):
            STL10DataModule(data_dir=str(tmp_path), folds=folds)
    with pytest.raises(ConfigError, match=r"'data.folds' is 1, but data.train_split is 'unlabeled', which has no"):
        STL10DataModule(data_dir=str(tmp_path), folds=1, train_split="unlabeled")
    (tmp_path / "stl10_binary" / "fold_indices.txt").write_text("0 1 2 \n")
    with pytest.raises(DatasetCorruptError, match=r"fold_indices.txt holds 1 lines, so it has no fold 1 \(line 2\)"):
        STL10DataModule(data_dir=str(tmp_path), folds=1).setup("fit")
    for line in ("0 1 10", "0,1,2", "", "-1 2", "3 5 3"):  # 10 is past the 10 training images; 3 twice
        (tmp_path / "stl10_binary" / "fold_indices.txt").write_text(f"0 1 2 \n{line}\n")
        with pytest.raises(DatasetCorruptError, match=r"fold_indices.txt line 2 is not a list of distinct zero-based "
                                                      r"indices into the 10 training images"):
            STL10DataModule(data_dir=str(tmp_path), folds=1).setup("fit")
    (tmp_path / "stl10_binary" / "fold_indices.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DatasetCorruptError, match=r"fold_indices.txt cannot be read \(UnicodeDecodeError\); replace "
                                                  r"it with STL-10's file"):
        STL10DataModule(data_dir=str(tmp_path), folds=1).setup("fit")
    labels = (tmp_path / "stl10_binary" / "train_y.bin").read_bytes()
    (tmp_path / "stl10_binary" / "train_y.bin").unlink()
    (tmp_path / "stl10_binary" / "train_y.bin").mkdir()
    with pytest.raises(DatasetCorruptError, match=r"train_y.bin cannot be read \(Is a directory\)"):
        STL10DataModule(data_dir=str(tmp_path)).setup("fit")
    (tmp_path / "stl10_binary" / "train_y.bin").rmdir()
    (tmp_path / "stl10_binary" / "train_y.bin").write_bytes(labels)
    (tmp_path / "stl10_binary" / "fold_indices.txt").unlink()
    with pytest.raises(DatasetMissingError, match=r"stl10_binary/fold_indices.txt"):
        STL10DataModule(data_dir=str(tmp_path), folds=1).setup("fit")


@pytest.mark.parametrize(("module_class", "write", "combined"), [(STL10DataModule, write_stl10, "train+unlabeled"),
                                                                  (SVHNDataModule, write_svhn, "train+extra")])
def test_combined_splits_concatenate_their_parts_in_order(tmp_path, module_class, write, combined):
    written = write(tmp_path)
    module = module_class(data_dir=str(tmp_path), train_split=combined)
    images, labels = module.read_split(combined)
    parts = combined.split("+")
    assert np.array_equal(images.numpy(), np.concatenate([written[part][0] for part in parts]))
    unlabeled = lambda part: np.full(len(written[part][0]), -1)  # STL-10's unlabeled images get label -1
    assert np.array_equal(labels.numpy(), np.concatenate([written[part][1] if written[part][1] is not None
                                                          else unlabeled(part) for part in parts]))
    assert module.task == ("unlabeled" if "unlabeled" in parts else "classification")
    overlap = f"'data.train_split' is '{combined}', and the test stage reads train too"
    with pytest.raises(ConfigError, match=re.escape(overlap)):
        module_class(data_dir=str(tmp_path), train_split=combined, test_split="train")


def test_stl10_corrupt_files_are_named(tmp_path):
    write_stl10(tmp_path, {"train": 4, "test": 4})
    images = tmp_path / "stl10_binary" / "test_X.bin"
    images.write_bytes(images.read_bytes()[:-7])
    with pytest.raises(DatasetCorruptError, match="test_X.bin holds .* bytes, .* truncated or corrupt"):
        STL10DataModule(data_dir=str(tmp_path)).setup("test")
    write_stl10(tmp_path, {"test": 4})
    labels = tmp_path / "stl10_binary" / "test_y.bin"
    labels.write_bytes(labels.read_bytes()[:3])
    with pytest.raises(DatasetCorruptError, match="test_X.bin holds 4 images and test_y.bin 3 labels, where STL-10 has "
                                                  "8,000 of each: they must match one for one; delete both"):
        STL10DataModule(data_dir=str(tmp_path)).setup("test")
    labels.write_bytes(bytes([1, 2, 11, 4]))
    with pytest.raises(DatasetCorruptError, match=r"test_y.bin holds labels in 1..11 \(expected each 1..10"):
        STL10DataModule(data_dir=str(tmp_path)).setup("test")


@pytest.mark.parametrize("cut", ["images", "labels"])
def test_stl10_names_the_file_cut_at_a_whole_image(tmp_path, monkeypatch, cut):
    """An image file cut at a whole image reads like a subset: the label count, STL-10's, says which file was cut
    (the label file was named, and deleting it did not help)."""
    monkeypatch.setitem(stl10.OFFICIAL_IMAGES, "test", 4)
    write_stl10(tmp_path, {"train": 4, "test": 4})
    images, labels = tmp_path / "stl10_binary" / "test_X.bin", tmp_path / "stl10_binary" / "test_y.bin"
    cut_file, kept = (images, 3 * stl10.IMAGE_BYTES) if cut == "images" else (labels, 3)
    cut_file.write_bytes(cut_file.read_bytes()[:kept])
    with pytest.raises(DatasetCorruptError) as raised:
        STL10DataModule(data_dir=str(tmp_path)).setup("test")
    counts = "3 images and test_y.bin 4 labels" if cut == "images" else "4 images and test_y.bin 3 labels"
    assert str(raised.value) == (f"{images} holds {counts}, where STL-10 has 4 of each: {cut_file} was cut short; "
                                 f"delete it and download STL-10 again.")


# ---- the public configs ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "shape"),
    [
        (["data=cifar10", "data.grayscale=true", "data.flatten=true"], (4, 1024)),
        (["data=svhn", "data.train_split=extra", "data.pad_to=64"], (4, 3, 64, 64)),
        (["data=stl10", "data.train_split=unlabeled"], (4, 3, 96, 96)),
        (["data=lunarlander", *(f"data.{key}={value}" for key, value in LUNARLANDER_SMALL.items())], (4, 3, 64, 64)),
    ],
)
def test_configs_compose_validate_and_load(make_cfg, overrides, shape):
    cfg = make_cfg(*overrides, "data.batch_size=4")
    validate(cfg)
    module = instantiate(cfg.data)
    module.prepare_data()
    module.setup("fit")
    images, targets = first_batch(module)
    assert images.shape == shape and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("data.grayscale=yes", "data.grayscale", "it must be true or false"),
        ("data.pad_to=0", "data.pad_to", "it must be an integer >= the image size, or null"),
        ("data.train_split=validation", "data.train_split", "SVHNDataModule has the splits train, test, extra, "
                                                            "train\\+extra; choose one of them"),
        ("data.pad_mode=reflect", "data.pad_mode", "it must be 'zeros' or 'wrap'"),
    ],
)
def test_bad_dataset_config_values_are_one_sentence(make_cfg, override, key, allowed):
    with pytest.raises(ConfigError, match=rf"^Config key '{key}' is .*, but {allowed}\.$"):
        validate(make_cfg("data=svhn", override))


def test_mean_with_the_wrong_number_of_channels_is_named(tmp_path):
    write_cifar10(tmp_path, per_batch=2, num_test=2)
    module = CIFAR10DataModule(data_dir=str(tmp_path), grayscale=True, mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="'data.mean' has 3 values, but the images have 1 channel"):
        module.setup("test")


def test_svhn_gray_trains_lenet5_end_to_end(make_cfg, tmp_path):
    """`data=svhn data.grayscale=true` with the default model trains, and its test loss is the model's
    cross-entropy on PIL's luma of every test image, normalised as configured, with label 10 read as 0."""
    import lightning as L

    from framework.training import train

    (tmp_path / "svhn").mkdir()
    written = write_svhn(tmp_path / "svhn", {"train": 30, "test": 20})
    overrides = ("data=svhn", "data.grayscale=true", f"paths.data_dir={tmp_path / 'svhn'}", "data.mean=0.4",
                 "data.std=0.2", "logger=none", "callbacks=none", "seed=3")
    assert np.isfinite(train(make_cfg(*overrides, "debug=fdr"))["metrics"]["train/loss"])
    # tests the initial weights, made again below
    cfg = make_cfg(*overrides, "+trainer.limit_train_batches=0", run="untrained")
    tested = train(cfg)["metrics"]["test/loss"]
    L.seed_everything(3)
    model = instantiate(cfg.model)
    images, labels = written["test"]
    inputs = (torch.from_numpy(luma_by_pil(images)).float()[:, None] / 255 - 0.4) / 0.2
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model.eval()(inputs), torch.from_numpy(labels))
    assert tested == pytest.approx(expected.item(), rel=1e-5)

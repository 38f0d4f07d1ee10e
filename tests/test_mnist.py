import gzip

import numpy as np
import pytest
import torch

from datamodules.base import DatasetCorruptError, DatasetMissingError
from datamodules.mnist import MNISTDataModule
from tests.dataset_files import idx_bytes, write_mnist


@pytest.mark.parametrize("compress", [False, True])
def test_reads_the_idx_files_it_was_given(tmp_path, compress):
    written = write_mnist(tmp_path, num_train=50, num_test=12, compress=compress)
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=8, val_fraction=0.2, pad_to=32)
    dm.setup("fit")
    dm.setup("test")
    test = dm.datasets["test"]
    assert test.images.dtype == torch.uint8 and test.images.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(test.images[:, 0].numpy(), written["test"][0])
    np.testing.assert_array_equal(test.targets.numpy(), written["test"][1])
    assert len(dm.datasets["train"]) == 40 and len(dm.datasets["val"]) == 10
    # train + val together are exactly the training file, each image once.
    together = torch.cat([dm.datasets["train"].images, dm.datasets["val"].images])
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, written["train"][0][:, None]))


def test_batches_are_padded_to_32_and_normalised_per_batch(tmp_path):
    write_mnist(tmp_path, num_train=20, num_test=4)
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=4, pad_to=32, mean=0.5, std=0.25)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    images, targets = dm.on_after_batch_transfer(batch, 0)
    assert images.shape == (4, 1, 32, 32) and images.dtype == torch.float32
    raw = dm.datasets["test"].images[:4].float() / 255
    torch.testing.assert_close(images[:, :, 2:30, 2:30], (raw - 0.5) / 0.25)
    assert torch.all(images[:, :, :2] == (0 - 0.5) / 0.25)


def test_missing_files_name_the_path_and_the_remedy(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(DatasetMissingError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert "data.download=true" in message


def test_truncated_or_overlong_file_is_reported_by_name(tmp_path):
    write_mnist(tmp_path, num_train=20, num_test=4)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(DatasetCorruptError, match="train-images-idx3-ubyte is truncated"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")
    path.write_bytes(whole + b"\0" * 100)  # more bytes than the header announces: not the file it claims to be
    with pytest.raises(DatasetCorruptError, match=r"announces \(20, 28, 28\) = 15680 bytes but it holds 15780"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")


def label_200(data: bytes) -> bytes:
    return data[:8 + 5] + bytes([200]) + data[8 + 6:]  # the sixth label, after the 8-byte header


@pytest.mark.parametrize(("name", "corrupt", "stage", "sentence"), [
    ("train-images-idx3-ubyte", lambda data: data[:4], "fit",
     "{raw}/train-images-idx3-ubyte is truncated: its header takes 16 bytes but the file holds 4; delete it"),
    ("train-images-idx3-ubyte", lambda data: data[:10], "fit",
     "{raw}/train-images-idx3-ubyte is truncated: its header takes 16 bytes but the file holds 10; delete it"),
    ("train-labels-idx1-ubyte", lambda data: idx_bytes(np.zeros(19, np.uint8)), "fit",
     "{raw}/train-images-idx3-ubyte holds 20 images but train-labels-idx1-ubyte holds 19 labels; delete both"),
    # the combination checks before training take MNIST's images to be 28x28; a file of 32x32 ones is not MNIST's
    ("t10k-images-idx3-ubyte", lambda data: idx_bytes(np.zeros((4, 32, 32), np.uint8)), "test",
     "{raw}/t10k-images-idx3-ubyte holds images of 32x32 pixels, but MNIST's are 28x28; delete it"),
    ("train-labels-idx1-ubyte", label_200, "fit",  # a corrupt file, not a config error of model.num_classes
     "{raw}/train-labels-idx1-ubyte holds the label 200, but MNIST's labels run from 0 to 9; delete it"),
], ids=["cut-after-the-magic-number", "cut-in-the-sizes", "other-counts", "32x32", "label-200"])
def test_a_corrupt_file_is_one_sentence_naming_it(tmp_path, name, corrupt, stage, sentence):
    write_mnist(tmp_path, num_train=20, num_test=4)
    raw = tmp_path / "MNIST" / "raw"
    (raw / name).write_bytes(corrupt((raw / name).read_bytes()))
    with pytest.raises(DatasetCorruptError) as error:
        MNISTDataModule(data_dir=str(tmp_path)).setup(stage)
    assert str(error.value) == f"{sentence.format(raw=raw)} and download MNIST again."


def test_the_extracted_file_is_read_where_torchvision_left_its_gz_beside_it(tmp_path):
    written = write_mnist(tmp_path, num_train=20, num_test=4)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"a download cut short")
    dm = MNISTDataModule(data_dir=str(tmp_path))
    dm.setup("test")
    np.testing.assert_array_equal(dm.datasets["test"].images[:, 0].numpy(), written["test"][0])


def test_the_full_training_part_is_the_files_images_in_their_order(tmp_path):
    written = write_mnist(tmp_path, num_train=21, num_test=4)
    images, labels = MNISTDataModule(data_dir=str(tmp_path)).load_split("train")
    np.testing.assert_array_equal(images[:, 0].numpy(), written["train"][0])
    np.testing.assert_array_equal(labels.numpy(), written["train"][1])
    halves = [MNISTDataModule(data_dir=str(tmp_path), train_part=part).load_split("train")[1] for part in ("P1", "P2")]
    assert [len(half) for half in halves] == [10, 10]  # of an odd count, the one left over is in neither half


def test_wrong_magic_number_is_reported_by_name(tmp_path):
    write_mnist(tmp_path, num_train=20, num_test=4)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[2] = 0x0D  # float instead of uint8
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetCorruptError, match="t10k-labels-idx1-ubyte is not an IDX file"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")


def test_a_folder_or_a_broken_gz_in_place_of_an_idx_file_is_named(tmp_path):
    write_mnist(tmp_path, num_train=20, num_test=4)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").mkdir()
    with pytest.raises(DatasetCorruptError) as error:
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")
    assert str(error.value) == (f"{raw / 't10k-labels-idx1-ubyte'} cannot be read (Is a directory); replace it with "
                                f"MNIST's file (delete it and download MNIST again).")
    (raw / "t10k-labels-idx1-ubyte").rmdir()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not a gzip stream")
    with pytest.raises(DatasetCorruptError, match=r"t10k-labels-idx1-ubyte\.gz cannot be read \(Not a gzipped file"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 100)[:-20])  # cut short: EOFError
    with pytest.raises(DatasetCorruptError, match=r"t10k-labels-idx1-ubyte\.gz cannot be read \(Compressed file ended"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")
    gzip_header = gzip.compress(b"")[:10]
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip_header + b"\xff" * 20)  # bad deflate data: zlib.error
    with pytest.raises(DatasetCorruptError, match=r"t10k-labels-idx1-ubyte\.gz cannot be read \(Error -3 while "
                                                  r"decompressing data"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")


def test_a_broken_test_file_stops_the_run_before_it_trains(tmp_path):
    """The test split is read when fitting starts: a run would otherwise find it only after its whole training."""
    write_mnist(tmp_path, num_train=20, num_test=4)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetCorruptError, match="t10k-images-idx3-ubyte is truncated"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")


def test_a_file_where_the_dataset_folder_belongs_is_named_before_any_download(tmp_path, monkeypatch):
    (tmp_path / "MNIST").write_text("a file where MNIST's folder belongs")
    dm = MNISTDataModule(data_dir=str(tmp_path), download=True)
    monkeypatch.setattr(dm, "download", lambda: pytest.fail("downloaded"))
    with pytest.raises(DatasetMissingError) as error:
        dm.prepare_data()
    assert str(error.value).startswith(f"MNISTDataModule: cannot download into {tmp_path / 'MNIST' / 'raw'}, as it "
                                       f"cannot be created: ")
    assert str(error.value).endswith("; point data.data_dir= or DATA_DIR at a folder you can write.")


def test_an_unknown_training_part_is_one_sentence_from_the_constructor_too():
    """framework/validate.py's rule sees data.train_part in a config; a DataModule built otherwise checks it itself."""
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^Config key 'data.train_part' is 'P3', but it must be one of full, P1, "
                                          r"P2\.$"):
        MNISTDataModule(data_dir="unused", train_part="P3")

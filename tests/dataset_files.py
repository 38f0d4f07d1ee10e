"""Writers of small datasets in each dataset's exact on-disk format, for the loader tests.

Each writer takes a root folder (the ``data_dir`` a DataModule is given) and writes files
where torchvision's download would put them; it returns the arrays it wrote so tests can
compare what the loader reads with what was written.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path
from types import FunctionType

import numpy as np
import scipy.io


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 sizes, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: str | Path, num_train: int = 60, num_test: int = 20, seed: int = 0,
                compress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, count in (("train", "train", num_train), ("test", "t10k", num_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if compress:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
        written[split] = (images, labels)
    return written


def labelled_images(rng: np.random.Generator, count: int, channels: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images ``[N, C, H, W]`` and labels 0..9 (every class present when count >= 10)."""
    images = rng.integers(0, 256, (count, channels, side, side), dtype=np.uint8)
    labels = (np.arange(count) + rng.integers(10)) % 10
    return images, labels.astype(np.int64)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote CIFAR-10's batches: bytes and str as Python 2 strings (which load as
    bytes with ``encoding="bytes"``; Python 3 pickles bytes at protocol 2 through the global ``_codecs.encode``)
    and numpy's array re-constructor under numpy 1's module name."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_string(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        short = len(data) < 256
        self.write((pickle.SHORT_BINSTRING + bytes([len(data)]) if short else
                    pickle.BINSTRING + struct.pack("<i", len(data))) + data)
        self.memoize(obj)

    def save_global(self, obj, name: str | None = None) -> None:
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core.", "numpy.core.")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_python2_string
    dispatch[type] = dispatch[FunctionType] = save_global


class RunsACommand:
    """What a planted pickle holds: unpickling it creates ``marker`` (by os.system), which a safe reader never does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_cifar10(root: str | Path, per_batch: int = 10, num_test: int = 20,
                  seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``cifar-10-batches-py``: pickled dicts of the originals' keys and arrays, pickled as the originals were (Python
    2's protocol 2): the keys load as bytes with ``encoding="bytes"`` and as str with torchvision's
    ``encoding="latin1"``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {"train": [], "test": []}
    names = [("train", f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test", "test_batch", num_test)]
    for split, name, count in names:
        images, labels = labelled_images(rng, count, 3, 32)
        rows = np.concatenate([images[:, channel].reshape(count, 1024) for channel in range(3)], axis=1)  # R, G, B
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": rows,
                 b"filenames": [f"image_{i}.png".encode() for i in range(count)]}
        (folder / name).write_bytes(python2_pickle(batch))
        written[split].append((images, labels))
    meta = {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(python2_pickle(meta))
    return {split: tuple(map(np.concatenate, zip(*parts, strict=True))) for split, parts in written.items()}


def write_svhn(root: str | Path, sizes: dict[str, int] | None = None,
               seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``<split>_32x32.mat``: MATLAB v5 with uint8 ``X`` [32, 32, 3, N] and ``y`` [N, 1] in 1..10 (10 = digit 0)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in (sizes or {"train": 30, "test": 20, "extra": 40}).items():
        images, labels = labelled_images(rng, count, 3, 32)
        stored = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(Path(root) / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored},
                         format="5")
        written[split] = (images, labels)
    return written


def stl10_pattern(count: int) -> np.ndarray:
    """Upright images with an asymmetric mark: a bright top row and a dim left column."""
    images = np.zeros((count, 3, 96, 96), dtype=np.uint8)
    images[:, :, 0, :] = 250
    images[:, :, 1:, 0] = 100
    images[:, 1, 40:50, 60:70] = np.arange(count, dtype=np.uint8)[:, None, None]  # tells images apart
    return images


def write_stl10(root: str | Path, sizes: dict[str, int] | None = None,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``stl10_binary/<split>_X.bin``: raw uint8, each channel column-major; ``<split>_y.bin``: labels 1..10."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in (sizes or {"train": 20, "test": 20, "unlabeled": 30}).items():
        images = stl10_pattern(count)
        column_major = images.transpose(0, 1, 3, 2)  # for each channel: column 0 top to bottom, then column 1, ...
        (folder / f"{split}_X.bin").write_bytes(column_major.tobytes())
        labels = None
        if split != "unlabeled":
            labels = (np.arange(count) + rng.integers(10)) % 10
            (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        written[split] = (images, labels)
    return written


# Tiny LunarLander runs that write_all generates; compose with these overrides to use them.
LUNARLANDER_SMALL = {"rollouts": 2, "steps_per_rollout": 20, "train_seed": 1, "test_seed": 2}


def write_lunarlander(root: str | Path, **parameters) -> None:
    """Generate (really) and cache small LunarLander runs under ``<root>/lunarlander``."""
    from datamodules.lunarlander import LunarLanderDataModule

    options = {**LUNARLANDER_SMALL, "generation_workers": 1, "progress": False, **parameters}
    LunarLanderDataModule(data_dir=str(root), **options).prepare_data()


def write_all(root: str | Path) -> Path:
    """Every dataset the experiment configs use, small, under one root."""
    write_mnist(root, num_train=200, num_test=50)
    write_cifar10(root)
    write_svhn(root)
    write_stl10(root)
    write_lunarlander(root)
    return Path(root)

"""Writers of small datasets in each dataset's exact on-disk format, for the loader tests.

Each writer takes a root folder (the ``data_dir`` a DataModule is given) and writes files
where torchvision's download would put them; it returns the arrays it wrote so tests can
compare what the loader reads with what was written.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


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


def write_all(root: str | Path) -> Path:
    """Every dataset the experiment configs use, small, under one root."""
    write_mnist(root, num_train=200, num_test=50)
    return Path(root)

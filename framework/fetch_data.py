"""``make data``: fetch MNIST and the ImageNet AlexNet convolutions once, and print where they are.

    python -m framework.fetch_data          # MNIST into $DATA_DIR (default ./data), AlexNet into the torch hub cache

Idempotent: what is already there is checked (MNIST's md5s, AlexNet's shapes) and not fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys

import datamodules.mnist as mnist
from datamodules.base import DatasetCorruptError, DatasetMissingError
from framework.pretrained import PretrainedWeightsError, locate_imagenet_features


def fetch_mnist(data_dir: str) -> str:
    datamodule = mnist.MNISTDataModule(data_dir=data_dir, download=True)
    datamodule.prepare_data()
    datamodule.check_files()
    for name, expected in mnist.MD5.items():
        path = datamodule.raw_dir() / name
        if path.exists() and hashlib.md5(path.read_bytes()).hexdigest() != expected:
            raise DatasetCorruptError(f"{path} is not the MNIST file of that name (md5 differs from {expected}); "
                                      f"delete it and run `make data` again.")
    return f"MNIST: {datamodule.raw_dir().resolve()} (4 IDX files, md5-checked)"


def fetch_alexnet() -> str:
    path, _ = locate_imagenet_features()
    return f"ImageNet AlexNet convolutions: {path} (torchvision's features keys and shapes checked)"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        lines = [fetch_mnist(os.environ.get("DATA_DIR", "data")), fetch_alexnet()]
    except (DatasetMissingError, DatasetCorruptError, PretrainedWeightsError) as error:
        print(f"make data: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""``make data``: fetch MNIST and the ImageNet AlexNet convolutions once, and print where they are.

    python -m framework.fetch_data          # MNIST into $DATA_DIR (default ./data), AlexNet into the torch hub cache

Idempotent: what is already there is checked (MNIST's md5s, AlexNet's shapes) and not fetched again.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys

import datamodules.mnist as mnist
from datamodules.base import DatasetCorruptError
from framework.errors import UserError
from framework.pretrained import locate_imagenet_features


def fetch_mnist(data_dir: str) -> str:
    datamodule = mnist.MNISTDataModule(data_dir=data_dir, download=True)
    datamodule.prepare_data()
    datamodule.check_files()
    for name, expected in mnist.MD5.items():
        path, data = mnist.read_uncompressed(datamodule.raw_dir() / name)
        if hashlib.md5(data).hexdigest() != expected:
            raise DatasetCorruptError(f"{path} is not the MNIST file of that name (md5 differs from {expected}"
                                      f"{', uncompressed' if path.suffix == '.gz' else ''}); delete it and run "
                                      f"`make data` again.")
    return f"MNIST: {datamodule.raw_dir().resolve()} (4 IDX files, md5-checked)"


def fetch_alexnet() -> str:
    path, _ = locate_imagenet_features()
    return f"ImageNet AlexNet convolutions: {path} (torchvision's features keys and shapes checked)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m framework.fetch_data", description=(
        "Fetch MNIST into $DATA_DIR (default ./data) and the ImageNet AlexNet convolutions into the torch hub cache, "
        "once (what is there already is checked, not fetched again), and print where they are; `make data` runs it."))
    parser.parse_args(argv)  # no options: --help answers, anything else is refused, before any download
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        lines = [fetch_mnist(os.environ.get("DATA_DIR", "data")), fetch_alexnet()]
    except UserError as error:  # a dataset's or the weights' files: one sentence
        print(f"make data: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(lines))


if __name__ == "__main__":
    main()

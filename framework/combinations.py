"""Do the chosen data and model fit together? Checked on the constructed objects, before any file is read.

A DataModule says what it hands out (``sample_shape()``, ``task``, ``num_classes``; see
datamodules/base.py), a model what it takes (``input_shape``, ``takes_vectors``, ``takes_gray``, ``task``,
``hparams.num_classes``).
Whatever an object does not say is not checked here; a network that then fails on the first batch (a user's own
network or data) is one sentence too (``data_the_network_takes``). The sentence names the keys that make
them fit:

    LunarLanderDataModule does not fit LeNet5: the model expects 1 channel(s), the data has 3 (set
    model.net.in_channels=3 or data.grayscale=true); the model expects 32x32 images, the data has 64x64 ...
"""

from __future__ import annotations

import inspect
import math
import os
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.multiprocessing import ProcessRaisedException

from framework.compose import ABSENT, lookup
from framework.construction import mistyped_argument_error, worker_exception
from framework.errors import ConfigError, DataError, UserError, one_line

TARGETS = {"classification": "class labels", "regression": "regression targets", "unlabeled": "no labels"}


def has_key(cfg: DictConfig, key: str) -> bool:
    return lookup(cfg, key) is not ABSENT


def setting(cfg: DictConfig, key: str, value) -> str:
    """The override that sets ``key``: ``+key=value`` when the config does not have the key yet."""
    return f"{'' if has_key(cfg, key) else '+'}{key}={value}"


def either(fixes: list[str]) -> str:
    return f" (set {' or '.join(fixes)})" if fixes else ""


def shape_problems(cfg: DictConfig, stored: tuple[int, ...], shape: tuple[int, ...],
                   expected: tuple[int, ...], takes_vectors: bool = False, takes_gray: bool = False) -> list[str]:
    """What differs between the data's ``shape`` (from ``stored`` images) and the model's ``expected`` one
    (``takes_vectors``: the model also takes that image flattened; ``takes_gray``: one channel for its three)."""
    if len(shape) == 1 and len(expected) == 3:
        if takes_vectors and shape[0] == math.prod(expected):
            return []
        return [f"the model expects {'x'.join(map(str, expected))} images, the data gives vectors of {shape[0]} "
                f"(set data.flatten=false)"]
    if len(shape) != len(expected):
        return [f"the model expects inputs of shape {expected}, the data gives {shape}"]
    if len(shape) == 1:
        return [f"the model expects vectors of {expected[0]}, the data gives {shape[0]}"] if shape != expected else []
    (channels, height, width), (want_channels, want_height, want_width) = shape, expected
    problems = []
    if channels != want_channels and not (takes_gray and channels == 1):
        fixes = [f"model.net.in_channels={channels}"] if has_key(cfg, "model.net.in_channels") else []
        fixes += [setting(cfg, "data.grayscale", "true")] if (stored[0], want_channels) == (3, 1) else []
        problems.append(f"the model expects {want_channels} channel(s), the data has {channels}{either(fixes)}")
    if (height, width) != (want_height, want_width):
        fixes = []
        if has_key(cfg, "data.image_size"):
            fixes.append(f"data.image_size={want_height}")
        elif stored[1:] == (want_height, want_width):
            fixes.append(setting(cfg, "data.pad_to", "null"))
        elif max(stored[1:]) <= want_height == want_width:  # pad_to pads either side
            fixes.append(setting(cfg, "data.pad_to", want_height))
        if has_key(cfg, "model.input_size") and height == width >= 64 and (height - 64) % 16 == 0:
            fixes.append(f"model.input_size={height}")  # the feature-prediction (V)AE takes sides 64 + 16N
        problems.append(f"the model expects {want_height}x{want_width} images, the data has {height}x{width}"
                        f"{either(fixes)}")
    return problems


def model_name(model) -> str:
    return type(getattr(model, "net", model)).__name__


def check_kinds(cfg: DictConfig, datamodule, model) -> None:
    """``model`` must be a LightningModule and ``data`` a LightningDataModule with the loaders the run uses (a plain
    network or dataset there reached Lightning's traceback; a missing test loader, after the whole training)."""
    if not isinstance(model, L.LightningModule):
        remedy = ("put it under model.net, with model._target_: lightning_modules.classifier.ClassificationModule "
                  "and a _partial_ optimizer, as examples/conf/model/mlp.yaml does" if isinstance(model, nn.Module)
                  else "give a LightningModule")
        raise ConfigError(f"Config key 'model._target_' is {type(model).__name__}, which is not a LightningModule; "
                          f"{remedy}.")
    if not isinstance(datamodule, L.LightningDataModule):
        raise ConfigError(f"Config key 'data._target_' is {type(datamodule).__name__}, which is not a "
                          f"LightningDataModule; give one, with train_dataloader, val_dataloader and test_dataloader "
                          f"methods.")
    for stage, used in (("train", cfg.get("train", True)), ("test", cfg.get("test", True))):
        if used and getattr(type(datamodule), f"{stage}_dataloader") is getattr(L.LightningDataModule,
                                                                              f"{stage}_dataloader"):
            raise ConfigError(f"Config key '{stage}' is true, but {type(datamodule).__name__} has no "
                              f"{stage}_dataloader method; add one, or give {stage}=false.")


def check_data_fits_model(cfg: DictConfig, datamodule, model) -> None:
    """Raise ConfigError when the model cannot take what the datamodule hands out."""
    check_kinds(cfg, datamodule, model)
    problems = []
    data_task, model_task = getattr(datamodule, "task", None), getattr(model, "task", None)
    if data_task is None and getattr(datamodule, "num_classes", None):  # a DataModule of one's own that counts classes
        data_task = "classification"
    if data_task and model_task and data_task != model_task:
        problems.append(f"the model is trained on {TARGETS.get(model_task, model_task)}, the data has "
                        f"{TARGETS.get(data_task, data_task)} (choose another model, data or data.train_split)")
    test_task = getattr(datamodule, "test_task", data_task)
    if cfg.get("test", True) and model_task == "classification" and data_task == model_task != test_task:
        problems.append(f"the model is tested on class labels, the data's test split has "
                        f"{TARGETS.get(test_task, test_task)} (choose another data.test_split, or test=false)")
    data_classes = getattr(datamodule, "num_classes", None)
    model_classes = (getattr(model, "hparams", None) or {}).get("num_classes")
    net_classes = OmegaConf.select(cfg, "model.net.num_classes", default=None)  # a torchvision network's own key
    classes_differ = data_task == model_task == "classification" and data_classes and \
        model_classes not in (None, data_classes)  # named below, with both keys' remedy
    if data_task == model_task == "classification" and isinstance(net_classes, int) and model_classes is not None \
            and net_classes != model_classes and not classes_differ:
        problems.append(f"the network has {net_classes} outputs (model.net.num_classes), the module's metrics "
                        f"count {model_classes} classes (model.num_classes); set both to "
                        f"{data_classes or 'the number of classes'}")
    if classes_differ:
        fixes = [setting(cfg, "model.num_classes", data_classes)]
        follows = has_key(cfg, "model.net") and OmegaConf.is_interpolation(cfg.model.net, "num_classes")
        fixes += [f"model.net.num_classes={data_classes}"] if has_key(cfg, "model.net.num_classes") and not follows \
            else []
        problems.append(f"the model has {model_classes} classes, the data {data_classes} (set {' and '.join(fixes)})")
    shape = datamodule.sample_shape() if hasattr(datamodule, "sample_shape") else None
    expected = getattr(model, "input_shape", None)
    if shape and expected:
        found = shape_problems(cfg, tuple(datamodule.image_shape), tuple(shape), tuple(expected),
                               getattr(model, "takes_vectors", False), getattr(model, "takes_gray", False))
        if found and len(shape) == 1 and getattr(datamodule, "flatten", False):  # and unflattened, would they fit?
            datamodule.flatten = False
            try:
                found += shape_problems(cfg, tuple(datamodule.image_shape), tuple(datamodule.sample_shape()),
                                        tuple(expected), False, getattr(model, "takes_gray", False))
            finally:
                datamodule.flatten = True
        problems += found
    if problems:
        raise ConfigError(f"{type(datamodule).__name__} does not fit {model_name(model)}: {'; '.join(problems)}.")


# ---- what only the first batch shows: a network of the user's that does not take the data's inputs -------------
_SHAPE_WORDS = re.compile(r"\b(shapes?|sizes?|channels|dimensions?|mat1|mat2)\b", re.IGNORECASE)
_DTYPE_WORDS = re.compile(r"same dtype|Input type \(.*\) and \w+ type \(.*\) should be the same")


def _name(dtype: torch.dtype | None) -> str:
    return str(dtype).removeprefix("torch.")


class FirstBatchWatch(Callback):
    """Notes the inputs of the first batch a stage hands the model, and whether any batch has got through."""

    def __init__(self):
        self.first_inputs: tuple[int, ...] | None = None
        self.first_dtype: torch.dtype | None = None
        self.a_batch_passed = False

    def _started(self, batch) -> None:
        inputs = batch[0] if isinstance(batch, list | tuple) and batch else batch
        if self.first_inputs is None and isinstance(inputs, torch.Tensor):
            self.first_inputs, self.first_dtype = tuple(inputs.shape), inputs.dtype

    def _ended(self, *args) -> None:
        self.a_batch_passed = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._started(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._started(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._started(batch)

    on_train_batch_end = on_validation_batch_end = on_test_batch_end = _ended


def failing_layer(error: BaseException, model: nn.Module) -> tuple[str, nn.Module, tuple[int, ...] | None] | None:
    """(name, module, input shape) of the innermost submodule of ``model`` whose forward the error passed through,
    when that is one of torch's own layers (Conv2d, Linear, ...): the error is then about what the layer was given,
    not a bug in a forward of the user's (whose traceback points at its line)."""
    names = {id(module): name for name, module in model.named_modules() if name}
    frames = []
    trace = error.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame)
        trace = trace.tb_next
    for frame in reversed(frames):
        module = frame.f_locals.get("self")
        if frame.f_code.co_name == "forward" and id(module) in names:
            if not type(module).__module__.startswith("torch.nn."):
                return None
            inputs = next((value for value in frame.f_locals.values() if isinstance(value, torch.Tensor)), None)
            return names[id(module)], module, None if inputs is None else tuple(inputs.shape)
    return None


CHANNEL_KEYS = ("model.net.in_channels", "data.grayscale")
SIZE_KEYS = ("data.image_size", "data.pad_to", "data.flatten")
_OUT_OF_RANGE_LABEL = re.compile(r"Target (-?\d+) is out of bounds")


def _data_or_network_refusal(message: str, model, datamodule) -> ConfigError | None:
    """torch's refusals of what a user's DataModule or network gave, as one sentence; None: none of them."""
    data = type(datamodule).__name__
    if "num_samples should be a positive integer value, but got num_samples=0" in message:
        return ConfigError(f"{data}'s train loader has no images (its shuffling sampler got 0); give the data a "
                           f"training split with images.")
    if found := re.search(r"default_collate: batch must contain tensors.*found <class '([\w.]+)'>", message):
        return ConfigError(f"{data}'s dataset returns images of type {found[1]}, which a DataLoader cannot stack into "
                           f"a batch; return tensors (e.g. torchvision.transforms.ToTensor() in its transform).")
    if "optimizer got an empty parameter list" in message:
        return ConfigError(f"The network ({model_name(model)}) has no trainable parameters (requires_grad is False "
                           f"for every one), so there is nothing to train; unfreeze some, or test only (train=false "
                           f"ckpt_path=<its .ckpt>).")
    return None


def _raised_in_the_file_of(error: BaseException, cls: type) -> bool:
    """Whether ``error`` passed through the code of the file that defines ``cls`` (a user's own DataModule, calling
    torchvision's ImageFolder in its setup): the data it was asked to read, not a bug of ours."""
    try:
        source = Path(inspect.getfile(cls)).resolve()
    except (TypeError, OSError):
        return False
    return any(Path(frame.filename).resolve() == source for frame in traceback.extract_tb(error.__traceback__))


@contextmanager
def data_the_network_takes(cfg: DictConfig, model, datamodule, watch: FirstBatchWatch) -> Iterator[None]:
    """Around fit/test, what only the batches show about a user's own network or data (``check_data_fits_model``
    cannot see them), as one sentence instead of a traceback from deep inside torch:

    - one of torch's layers refusing the first batch's shape names the layer and both shapes, its dtype (float64
      from numpy, uint8) the layer's and the inputs' dtypes (after a batch got through, it stays a bug);
    - a label that cross-entropy finds out of range names it and model.num_classes;
    - a split without images, images the loader cannot stack (PIL), a network without trainable parameters;
    - a data or model argument whose value does not fit its annotation (``size: int`` given 'abc'), which a user's
      DataModule may only use in ``setup``.
    """
    try:
        yield
    except UserError:  # already one sentence (a ConfigError is a ValueError too): the config is not read again
        raise
    except (ValueError, TypeError) as error:
        mistyped = (mistyped_argument_error(cfg[key], key) for key in ("data", "model") if key in cfg)
        if refusal := _data_or_network_refusal(str(error), model, datamodule) or next(filter(None, mistyped), None):
            raise refusal from None
        raise
    except FileNotFoundError as error:
        if error.filename is None or not _raised_in_the_file_of(error, type(datamodule)):
            raise
        raise DataError(f"{type(datamodule).__name__} cannot open {error.filename} ({error.strerror}), read from the "
                        f"working directory {os.getcwd()} where relative; give its data key a path that exists (an "
                        f"absolute one, or one relative to that directory).") from None
    except (IndexError, ProcessRaisedException) as error:  # cross-entropy's, here or in a spawned DDP worker
        kind, message = ("IndexError", str(error)) if isinstance(error, IndexError) else \
            worker_exception(error) or ("", "")
        label = _OUT_OF_RANGE_LABEL.search(message) if kind == "IndexError" else None
        if label is None:
            raise
        classes = (getattr(model, "hparams", None) or {}).get("num_classes", "?")
        remedy = ("give only labelled images to a classifier (a negative label such as -1 marks an unlabelled one)"
                  if int(label[1]) < 0 else "set model.num_classes (and the network's outputs) to the data's number "
                                            "of classes")
        raise ConfigError(f"{type(datamodule).__name__} gives the label {label[1]}, out of range for the model's "
                          f"{classes} classes (model.num_classes={classes}; labels run from 0 to num_classes - 1); "
                          f"{remedy}.") from None
    except RuntimeError as error:
        if watch.a_batch_passed or watch.first_inputs is None or isinstance(error, torch.OutOfMemoryError) or \
                not (_SHAPE_WORDS.search(str(error)) or _DTYPE_WORDS.search(str(error))) or \
                (layer := failing_layer(error, model)) is None:
            raise
        name, module, inputs = layer
        weights = next((parameter.dtype for parameter in module.parameters()), None)
        if _DTYPE_WORDS.search(str(error)) and weights is not None:
            raise ConfigError(f"The network ({model_name(model)}) cannot take the first batch of "
                              f"{type(datamodule).__name__} (inputs of dtype {_name(watch.first_dtype)}): its layer "
                              f"{name} ({one_line(module)}) has {_name(weights)} weights, and torch says: "
                              f"{one_line(error).rstrip('.')}; make the dataset return {_name(weights)} inputs "
                              f"(tensor.to(torch.{_name(weights)}), in __getitem__ or a collate_fn).") from None
        got = f" got inputs of shape {list(inputs)}" if inputs else ""
        if isinstance(module, nn.Conv2d) and len(watch.first_inputs) == 3:  # conv2d took [B, H, W] as one image
            raise ConfigError(f"The network ({model_name(model)}) cannot take the first batch of "
                              f"{type(datamodule).__name__} (inputs of shape {list(watch.first_inputs)}): its images "
                              f"have no channel axis, so its layer {name} ({one_line(module)}) reads the batch as one "
                              f"image of {watch.first_inputs[0]} channels; make the dataset return images of shape "
                              f"[channels, height, width] (image.unsqueeze(0) for a grayscale one).") from None
        related = CHANNEL_KEYS if "channels" in str(error) else SIZE_KEYS
        keys = [key for key in related if has_key(cfg, key)]
        remedy = f" (here: {', '.join(keys)})" if keys else ""
        raise ConfigError(f"The network ({model_name(model)}) cannot take the first batch of "
                          f"{type(datamodule).__name__} (inputs of shape {list(watch.first_inputs)}): its layer {name} "
                          f"({one_line(module)}){got}, and torch says: {one_line(error).rstrip('.')}; make the "
                          f"network's inputs fit the data's with the network's or the data's arguments{remedy} (or fix "
                          f"what the network's forward does before that layer).") from None

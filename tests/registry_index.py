"""A local package index (PEP 503 directory tree behind a ``file://`` URL) for the registry fetch tests.

pip reads it through the same configuration variables a user sets (``PIP_INDEX_URL``); every other pip
setting of the machine is switched off (``PIP_CONFIG_FILE=/dev/null``, no other ``PIP_*`` variable).
:func:`registry_unreachable_reason` says whether the real registry can be reached, for the tests that need it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import tarfile
from pathlib import Path
from urllib.parse import urlparse

from framework.registry import RegistryArchive, uv_index_where_pip_has_none


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pinned(project: str, version: str, filename: str, data: bytes) -> RegistryArchive:
    """What the code pins, for an archive the test made."""
    return RegistryArchive(project, version, filename, len(data), hashlib.sha256(data).hexdigest())


def build_index(root: Path, project: str, files: dict[str, bytes]) -> str:
    """``root/simple/<project>/index.html`` linking to ``root/files/<name>``; returns the index URL."""
    normalized = re.sub(r"[-_.]+", "-", project).lower()
    (root / "files").mkdir(parents=True, exist_ok=True)
    page = root / "simple" / normalized
    page.mkdir(parents=True, exist_ok=True)
    links = []
    for name, data in files.items():
        (root / "files" / name).write_bytes(data)
        links.append(f'<a href="../../files/{name}#sha256={hashlib.sha256(data).hexdigest()}">{name}</a><br/>')
    (page / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    return (root / "simple").as_uri()


def use_index(monkeypatch, index_url: str) -> None:
    """Point pip (and only pip's configuration) at ``index_url``; nothing else of this machine's pip or uv setup."""
    for key in [key for key in os.environ if key.startswith("PIP_") or key in ("UV_DEFAULT_INDEX", "UV_INDEX_URL")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index_url)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def registry_unreachable_reason() -> str | None:
    """Why the package registry cannot be reached from here (None when it can): the index pip is pointed at (its
    environment and configuration files, read as pip reads them), probed with one connection, so that tests needing
    it skip with a reason."""
    from pip._internal.commands import create_command

    command = create_command("download")
    index = command.parse_args([])[0].index_url
    if uv_index := uv_index_where_pip_has_none(command.parser):
        index = uv_index[1]
    url = urlparse(index)
    if url.scheme == "file":
        return None if Path(url.path).is_dir() else f"needs the package registry; the index {index} is not a folder"
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
        return None
    except OSError as error:
        return f"needs the package registry; {url.hostname} did not answer ({error})"

"""Files written whole or not at all (caches, results), readable by whoever can read the data directory.

    write_atomically(path, lambda file: np.savez(file, **arrays), readable_like=data_dir)

writes into a temporary ``.<name>.<random>.partial`` in the same folder and renames it into
place. While it writes, the writer holds an exclusive ``flock`` on the temporary file, so a
temporary file that nobody holds a lock on belongs to a writer that died (killed, out of
memory, node lost): :func:`remove_orphans` deletes those, and leaves alone the ones a live
process is writing (in this process or another one; the lock goes with the process).

The written file gets read permission for the group and for others exactly when the
reference directory (the data directory) has it, whatever the umask or ``mkstemp``'s 0600.

The same kind of lock marks a run's folder in use (:func:`hold_folder`: a second run into it stops) and a
download's scratch folder (:func:`scratch_folder`: one that a killed download left is removed by the next).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from framework.errors import DISK_FULL, ConfigError, DataError

SUFFIX = ".partial"
IN_USE = ".in-use"  # the lock file of a run or sweep folder (hold_folder)
_held: dict[Path, int] = {}


def temporaries(path: Path) -> list[Path]:
    """The temporary files of writers of ``path``, finished or not."""
    return sorted(path.parent.glob(f".{path.name}.*{SUFFIX}"))


def remove_orphans(path: str | Path, of_any_file: bool = False) -> list[Path]:
    """Delete the temporary files of ``path`` whose writer is gone (nobody holds their lock); returns them.
    ``of_any_file``: those of every file in ``path``'s folder (a cache of other parameters, killed while written)."""
    removed = []
    path = Path(path)
    for temporary in sorted(path.parent.glob(f".*{SUFFIX}")) if of_any_file else temporaries(path):
        try:
            with open(temporary, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                temporary.unlink()
            removed.append(temporary)
        except OSError:  # a live writer holds it, another run removed it first, or this user may not (a read-only
            continue      # or another user's data folder): left there
    return removed


def exists(path: Path) -> bool:
    """``path.exists()``; a folder on its way that this user may not search (a shared data folder of another user's)
    is one sentence naming it, where Python 3.11 raises PermissionError."""
    try:
        return path.exists()
    except PermissionError:
        closed = next((folder for folder in reversed(path.parents) if not os.access(folder, os.X_OK)), path.parent)
        raise DataError(f"{path} cannot be reached: this user may not open the folder {closed} (permission denied); "
                        f"ask its owner for read and search (x) permission, or use a copy you can read.") from None


def read_bits(reference: Path) -> int:
    """The group/other read and search bits of the nearest existing directory at or above ``reference``."""
    for folder in (reference, *reference.parents):
        if folder.is_dir():
            return stat.S_IMODE(folder.stat().st_mode) & 0o055
    return 0


def make_folders(folder: Path, bits: int) -> None:
    """Create ``folder`` and its missing parents, searchable by whoever may read the data."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        os.chmod(created, 0o700 | bits)


@contextmanager
def folders_removed_if_left_empty(folders: list[Path]) -> Iterator[None]:
    """Those of ``folders`` and their parents that do not exist yet are removed again, deepest first, when the block
    fails and leaves them empty (a failed download leaves no dataset folder behind)."""
    absent = {p for folder in folders for p in (folder, *folder.parents) if not p.exists()}
    try:
        yield
    except BaseException:
        for folder in sorted(absent, key=lambda p: len(p.parts), reverse=True):
            with suppress(OSError):  # not empty, or not there
                folder.rmdir()
        raise


def why_unwritable(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (made here when missing, like write_atomically's folders);
    None when they can. For a sentence before any work, e.g. before a download."""
    try:
        make_folders(folder, read_bits(folder))
    except OSError as error:
        return f"it cannot be created: {error.strerror}"
    if not folder.is_dir():
        return "it is a file, not a folder"
    return None if os.access(folder, os.W_OK | os.X_OK) else "it is not writable"


def _locked_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file for ``path``, locked; retried if a cleaner removed it before the lock was taken."""
    while True:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent)
        fcntl.flock(handle, fcntl.LOCK_EX)
        if os.path.exists(temporary) and os.stat(temporary).st_ino == os.fstat(handle).st_ino:
            return handle, temporary
        os.close(handle)


class _NotingWriteErrors:
    """The file that ``write_atomically`` hands its ``write``: it notes the first OSError of a write, which torch.save
    turns into its zip writer's RuntimeError ("unexpected pos"), where a full disk goes unsaid."""

    def __init__(self, file: BinaryIO):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None], readable_like: str | Path | None = None
                     ) -> Path:
    """Write ``path`` with ``write(file)`` through a locked temporary file, then rename it into place.

    ``readable_like``: the directory whose group/other read bits the file (and created folders) get;
    default: the folder of ``path``. A failure or interrupt leaves no file behind.
    """
    path = Path(path)
    bits = read_bits(Path(readable_like) if readable_like is not None else path.parent)
    make_folders(path.parent, bits)
    remove_orphans(path)
    handle, temporary = _locked_temporary(path)
    noting = None
    try:
        os.fchmod(handle, 0o600 | (bits & 0o044))
        with os.fdopen(handle, "wb") as file:  # closing it releases the lock, after the rename
            write(noting := _NotingWriteErrors(file))
            file.flush()
            os.fsync(file.fileno())
            os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        cause = noting.error if noting is not None and noting.error is not None else error
        if isinstance(cause, OSError) and cause.errno in DISK_FULL:  # the file it was for, not the temporary one
            raise OSError(cause.errno, cause.strerror, str(path)) from error
        raise
    return path


def hold_folder(folder: Path, how_to_move: str) -> None:
    """An exclusive lock on a run's (or sweep's) output ``folder``, made when missing, until :func:`release_folder` or
    the process's end: a second run started into it at the same time stops with one sentence, where both passed the
    check for earlier runs' files and then wrote into each other's (metrics.csv, checkpoints, results.json). Where
    the folder takes no lock (read-only, a file system without locks), nothing is held."""
    folder = folder.absolute()
    if folder in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(folder / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(handle, 32).decode(errors="replace").strip() or "another process"
        os.close(handle)
        raise ConfigError(f"{folder} is in use: the run of process {holder} writes into it now; wait for it to end, "
                          f"or {how_to_move}.") from None
    except OSError:
        os.close(handle)
        return
    try:
        os.ftruncate(handle, 0)
        os.write(handle, str(os.getpid()).encode())
    except OSError as error:  # a full disk: the run could write nothing there
        os.close(handle)
        raise OSError(error.errno, error.strerror, str(folder / IN_USE)) from None
    _held[folder] = handle


def release_folder(folder: Path) -> None:
    if (handle := _held.pop(folder.absolute(), None)) is not None:
        os.close(handle)


def _forget_held_folders() -> None:
    """In a forked child (a loader worker, a DDP rank): its copies of the lock files' descriptors would keep a run's
    folder held after the run was killed, until the child noticed; the parent's own stay held."""
    for handle in _held.values():
        os.close(handle)
    _held.clear()


os.register_at_fork(after_in_child=_forget_held_folders)


@contextmanager
def scratch_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder ``<parent>/<prefix>...`` (a download before its files are checked), removed when the block
    ends. Its user holds a lock on a file in it, so that the next one removes a folder that a killed user left
    (``remove_orphan_folders``) and leaves a live one's."""
    remove_orphan_folders(parent, prefix)
    with tempfile.TemporaryDirectory(dir=parent, prefix=prefix) as scratch, open(Path(scratch) / ".lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield Path(scratch)


def remove_orphan_folders(parent: Path, prefix: str) -> None:
    for folder in parent.glob(f"{prefix}*"):
        try:
            with open(folder / ".lock", "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder)
        except OSError:  # a live user holds it, another removed it first, or this user may not
            continue

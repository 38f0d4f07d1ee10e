"""Cache files: a killed writer's temporary file is removed by the next run (never a live writer's), and the
written file is readable exactly by those who can read the data directory."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import datamodules.lunarlander as lunarlander
from framework.atomic import remove_orphans, temporaries, why_unwritable, write_atomically
from framework.compose import ROOT

# A writer in another process: creates its locked temporary file, says so, then waits (to be killed or released).
WRITER = """
import sys
from framework.atomic import write_atomically, why_unwritable
def write(file):
    file.write(b"half of it")
    file.flush()
    print("writing", flush=True)
    sys.stdin.readline()
    file.write(b" and the rest")
write_atomically(sys.argv[1], write)
"""


def start_writer(path):
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "writing\n"
    return process


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    cache = tmp_path / "run.npz"
    writer = start_writer(cache)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert len(temporaries(cache)) == 1 and not cache.exists()  # what a killed generation leaves behind
    write_atomically(cache, lambda file: file.write(b"whole"))
    assert cache.read_bytes() == b"whole"
    assert sorted(tmp_path.iterdir()) == [cache]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    cache = tmp_path / "run.npz"
    writer = start_writer(cache)
    try:
        assert remove_orphans(cache) == [] and len(temporaries(cache)) == 1
    finally:
        writer.communicate("go on\n", timeout=60)
    assert writer.returncode == 0 and cache.read_bytes() == b"half of it and the rest"
    assert temporaries(cache) == []


def test_an_orphan_this_user_may_not_remove_is_left(tmp_path, monkeypatch):
    """A read-only data folder (a shared one, mounted read-only) with a killed writer's temporary file: the complete
    data beside it is read; the removal failed with a traceback."""
    cache = tmp_path / "run.npz"
    dead = tmp_path / ".run.npz.dead.partial"
    dead.write_bytes(b"PK half a zip")

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert remove_orphans(cache) == [] and dead.exists()


def test_a_scratch_folder_removes_killed_users_folders_and_leaves_live_ones(tmp_path):
    from framework.atomic import scratch_folder

    dead, live = tmp_path / ".download-dead", tmp_path / ".download-live"
    for folder in (dead, live):
        folder.mkdir()
        (folder / ".lock").write_bytes(b"")
    with open(live / ".lock", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a download going on in another process
        with scratch_folder(tmp_path, ".download-") as scratch:
            assert scratch.is_dir() and not dead.exists() and live.exists()
    assert not scratch.exists() and live.exists()


def test_only_unlocked_temporary_files_are_orphans(tmp_path):
    cache = tmp_path / "run.npz"
    dead, live = (tmp_path / f".run.npz.{name}.partial" for name in ("dead", "live"))
    dead.write_bytes(b"PK half a zip")
    live.write_bytes(b"PK being written")
    other = tmp_path / ".other.npz.dead.partial"  # another file's: not ours to judge here
    other.write_bytes(b"")
    with open(live, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # held like a writer in this process holds it
        assert remove_orphans(cache) == [dead]
        assert not dead.exists() and live.exists() and other.exists()
        # a cache of other parameters, killed while written, is removed by a run of any parameters
        assert remove_orphans(cache, of_any_file=True) == [other]
    assert live.exists() and not other.exists()


@pytest.mark.parametrize(("data_dir_mode", "file_mode", "folder_mode"),
                         [(0o750, 0o640, 0o750), (0o755, 0o644, 0o755), (0o700, 0o600, 0o700), (0o705, 0o604, 0o705)],
                         ids=["group", "everyone", "owner-only", "others-not-group"])
def test_the_cache_is_readable_by_whoever_can_read_the_data_directory(tmp_path, data_dir_mode, file_mode,
                                                                      folder_mode):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(data_dir_mode)
    previous = os.umask(0o077)  # a strict umask must not hide the cache from the data directory's group
    try:
        cache = data_dir / "lunarlander" / "run.npz"
        write_atomically(cache, lambda file: np.savez(file, x=np.arange(3)), readable_like=data_dir)
    finally:
        os.umask(previous)
    assert mode(cache) == file_mode and mode(cache.parent) == folder_mode
    assert np.load(cache)["x"].tolist() == [0, 1, 2]


def test_the_lunarlander_cache_follows_the_data_directory_and_clears_dead_writers(tmp_path, monkeypatch):
    def tiny_collection(rollouts, steps, seed, image_size, *args):
        frames = rollouts * steps
        return {"images": np.zeros((frames, 3, image_size, image_size), np.uint8),
                "before": np.zeros((frames, 8), np.float32), "after": np.zeros((frames, 8), np.float32)}

    monkeypatch.setattr(lunarlander, "generate_collection", tiny_collection)
    tmp_path.chmod(0o750)
    module = lunarlander.LunarLanderDataModule(data_dir=str(tmp_path), rollouts=1, steps_per_rollout=4, image_size=8)
    orphan = module.cache_path(1).parent / f".{module.cache_path(1).name}.killed.partial"
    orphan.parent.mkdir()
    orphan.write_bytes(b"PK half a zip")
    module.prepare_data()
    for seed in (1, 2):
        assert mode(module.cache_path(seed)) == 0o640
    assert not orphan.exists()


def test_why_unwritable_makes_a_missing_folder_and_names_what_stops_a_write(tmp_path):
    assert why_unwritable(tmp_path / "new" / "folder") is None and (tmp_path / "new" / "folder").is_dir()
    (tmp_path / "a_file").write_text("")
    assert why_unwritable(tmp_path / "a_file") == "it is a file, not a folder"
    assert why_unwritable(tmp_path / "a_file" / "below") == "it cannot be created: Not a directory"


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("stopped while the checkpoint was being written")


def test_a_checkpoint_is_renamed_into_place_from_its_own_folder_and_a_failed_write_keeps_the_old_one(
        tmp_path, monkeypatch):
    """Lightning's writer took its temporary file from TMPDIR: on another filesystem (here /dev/shm's tmpfs, or a
    node's scratch disk) its rename became a copy that truncated last.ckpt first, and a kill during it left no
    checkpoint to continue from."""
    import torch

    from framework.checkpoints import CheckpointWrittenInPlace

    elsewhere = tmp_path / "tmpdir"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    renames = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: (renames.append((source, target)),
                                                               replace(source, target)))
    last = tmp_path / "checkpoints" / "last.ckpt"
    writer = CheckpointWrittenInPlace()
    writer.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, last)
    assert [os.path.dirname(source) for source, _ in renames] == [str(last.parent)] and renames[0][1] == last
    with pytest.raises(RuntimeError, match="stopped while the checkpoint was being written"):
        writer.save_checkpoint({"epoch": 2, "weights": torch.zeros(3), "later": Unpicklable()}, last)
    assert torch.load(last)["epoch"] == 1 and torch.load(last)["weights"].tolist() == [1.0, 1.0, 1.0]
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"] and list(elsewhere.iterdir()) == []


def unprivileged(check) -> str:
    """``check()``'s string where file permissions bind: as root (who may open any folder), in a forked child that
    runs as the unprivileged uid 65534."""
    if os.geteuid() != 0:
        return check()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, check().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(child, 0)
    return said


def test_a_data_folder_this_user_may_not_open_is_one_sentence_naming_it(monkeypatch):
    """Python 3.11's Path.exists raises PermissionError there (another user's dataset in a shared data folder): each
    reader of dataset or weights files names the folder instead of a traceback."""
    import shutil
    import tempfile

    from datamodules.cifar10 import CIFAR10DataModule
    from datamodules.mnist import MNISTDataModule
    from framework.errors import DataError
    from framework.pretrained import alexnet_features_state_dict
    from tests.dataset_files import write_cifar10, write_mnist

    root = Path(tempfile.mkdtemp())  # not under pytest's folder, which only its owner may open
    root.chmod(0o755)
    write_mnist(root)
    write_cifar10(root)
    (root / "lunarlander").mkdir()
    (root / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    closed = [root / "MNIST" / "raw", root / "cifar-10-batches-py", root / "lunarlander", root / "torch" / "hub"]
    for folder in closed:
        folder.chmod(0)
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))

    def said(reader) -> str:
        try:
            reader()
        except DataError as error:
            return str(error)
        return "no error"

    readers = [lambda: MNISTDataModule(data_dir=str(root)).setup("fit"),
               lambda: CIFAR10DataModule(data_dir=str(root)).setup("fit"),
               lambda: lunarlander.LunarLanderDataModule(data_dir=str(root), rollouts=2, steps_per_rollout=3,
                                                         generation_workers=1, progress=False).prepare_data(),
               alexnet_features_state_dict]
    try:
        sentences = unprivileged(lambda: "\n".join(said(reader) for reader in readers)).split("\n")
    finally:
        for folder in closed:
            folder.chmod(0o755)
        shutil.rmtree(root)
    reached = [root / "MNIST/raw/train-images-idx3-ubyte", root / "cifar-10-batches-py/data_batch_1",
               root / "lunarlander/LunarLander-v3_rollouts2_steps3_seed1_64px_v1.npz",
               root / "torch/hub/checkpoints/alexnet-owt-7be5be79.pth"]
    assert sentences == [f"{path} cannot be reached: this user may not open the folder {folder} (permission denied); "
                         f"ask its owner for read and search (x) permission, or use a copy you can read."
                         for path, folder in zip(reached, closed, strict=True)]


class FullAfter:
    """A file on a disk with ``room`` bytes left: a larger write raises ENOSPC, as the kernel's does."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exception) -> None:
        self.file.close()


@pytest.mark.parametrize("writer", ["torch", "numpy", "bytes"])
def test_a_full_disk_names_the_file_whichever_writer_wrote_it_and_leaves_nothing(tmp_path, monkeypatch, capsys,
                                                                                writer):
    """torch.save's zip writer turned the disk's ENOSPC into RuntimeError("unexpected pos ..."): a traceback that
    never said the disk was full. Now every write_atomically says so, naming the file, and the job says it in one
    sentence with exit code 2."""
    import torch

    from framework.entry_point import reporting_user_errors

    write = {"torch": lambda file: torch.save({"weights": torch.zeros(10_000)}, file),
             "numpy": lambda file: np.savez(file, x=np.zeros(10_000)),
             "bytes": lambda file: file.write(bytes(10_000))}[writer]
    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: FullAfter(fdopen(*args, **kwargs), room=1000))
    path = tmp_path / "run" / "last.ckpt"
    with pytest.raises(SystemExit) as stop, reporting_user_errors():
        write_atomically(path, write)
    assert stop.value.code == 2 and capsys.readouterr().err == (
        f"Error: {path} cannot be written: No space left on device; free space on its disk, or write elsewhere "
        f"(hydra.run.dir=, or hydra.sweep.dir= with -m, for a run's files; DATA_DIR= for datasets).\n")
    assert list(path.parent.iterdir()) == []


def test_a_full_disk_while_hydra_writes_its_records_before_any_job_is_the_sentence(monkeypatch, capsys):
    """Hydra's own writes (.hydra/config.yaml) raise an OSError that names no file: it ended in Hydra's traceback."""
    from framework.entry_point import _refusals_as_sentences
    from framework.stopping import job

    def saving_the_config():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(job, "started", False)
    with pytest.raises(SystemExit) as stop:
        _refusals_as_sentences(saving_the_config)
    assert stop.value.code == 2 and capsys.readouterr().err.startswith(
        "Error: a file cannot be written: No space left on device; free space on its disk, or write elsewhere")


def test_a_full_quota_is_a_full_disk_wherever_it_is_in_the_chain_and_another_write_error_is_not(tmp_path):
    """EDQUOT (the user's quota on a cluster's shared disk) is ENOSPC's sentence too, also where the writer raised
    its own error while handling it (torch.save's zip writer); a refused permission is no full disk."""
    from framework.errors import disk_full_error

    path = tmp_path / "last.ckpt"
    try:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path))
        except OSError:
            raise RuntimeError("unexpected pos 64 vs 0")  # noqa: B904 - as the writer raises it
    except RuntimeError as error:
        assert str(disk_full_error(error)).startswith(f"{path} cannot be written: {os.strerror(errno.EDQUOT)}; free "
                                                      f"space on its disk, or write elsewhere")
    assert disk_full_error(OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))) is None


def test_the_written_bytes_reach_the_disk_before_the_temporary_file_is_renamed_into_place(tmp_path, monkeypatch):
    """A rename that reaches the disk before the data does (no fsync, or one after the rename) can leave, after a
    node's crash, a whole-looking cache or last.ckpt that is empty or cut short, which the next run trusts."""
    cache = tmp_path / "run.npz"
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_size)), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda source, target: (events.append(("replace", Path(source).parent)),
                                                               replace(source, target))[1])
    write_atomically(cache, lambda file: file.write(b"whole"))
    assert events == [("fsync", 5), ("replace", tmp_path)] and cache.read_bytes() == b"whole"


def test_an_interrupted_write_leaves_no_file_behind(tmp_path):
    """Ctrl+C (KeyboardInterrupt) or a stop while the file is written: neither the file nor its temporary file."""
    cache = tmp_path / "run.npz"

    def interrupted(file):
        file.write(b"half of it")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(cache, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_file_a_cleaner_removed_before_its_lock_was_taken_is_made_again(tmp_path, monkeypatch):
    """Another run's remove_orphans can find a new temporary file before its writer locked it, and remove it: the
    writer then wrote into a file without a name, and its rename failed."""
    cache = tmp_path / "run.npz"
    flock, removed = fcntl.flock, []

    def removed_first(handle, operation):
        if not removed:  # a cleaner in another process, just before this lock
            removed.append(Path(os.readlink(f"/proc/self/fd/{handle}")))
            removed[0].unlink()
        return flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", removed_first)
    write_atomically(cache, lambda file: file.write(b"whole"))
    assert len(removed) == 1 and cache.read_bytes() == b"whole" and sorted(tmp_path.iterdir()) == [cache]


def test_a_file_in_new_folders_is_readable_like_the_nearest_existing_folder_by_default(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o750)
    previous = os.umask(0o077)
    try:
        cache = write_atomically(data_dir / "lunarlander" / "run.npz", lambda file: file.write(b"whole"))
    finally:
        os.umask(previous)
    assert mode(cache) == 0o640 and mode(cache.parent) == 0o750


def test_only_hidden_temporary_files_are_removed_for_any_file(tmp_path):
    """A file of the user's that merely ends in .partial (a browser's download) is not a writer's temporary file."""
    (tmp_path / ".other.npz.dead.partial").write_bytes(b"")
    kept = tmp_path / "notes.partial"
    kept.write_bytes(b"the user's")
    assert remove_orphans(tmp_path / "run.npz", of_any_file=True) == [tmp_path / ".other.npz.dead.partial"]
    assert kept.read_bytes() == b"the user's"


def test_a_scratch_folder_in_use_is_left_by_the_next_download(tmp_path):
    from framework.atomic import remove_orphan_folders, scratch_folder

    with scratch_folder(tmp_path, ".download-") as scratch:
        remove_orphan_folders(tmp_path, ".download-")  # another download that starts now
        assert scratch.is_dir() and (scratch / ".lock").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_forked_child_does_not_keep_its_parents_run_folder_held(tmp_path):
    """A loader worker or DDP rank forked while the run holds its folder: a copy of the lock's descriptor in the child
    kept the folder held after the run let it go (or was killed), and the next run into it was refused."""
    from framework.atomic import IN_USE, hold_folder, release_folder

    folder = tmp_path / "run"
    hold_folder(folder, "move")
    read, write = os.pipe()
    started_read, started_write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker that lives on: it says it runs (after the fork's handlers), then waits for a word
        os.write(started_write, b"x")
        os.read(read, 1)
        os._exit(0)
    os.close(read)
    os.close(started_write)
    try:
        assert os.read(started_read, 1) == b"x"
        os.close(started_read)
        release_folder(folder)
        with open(folder / IN_USE, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while the child holds it
    finally:
        os.write(write, b"x")
        os.close(write)
        os.waitpid(child, 0)


def test_why_unwritable_says_a_folder_this_user_may_only_read_is_not_writable():
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp())  # not under pytest's folder, which only its owner may open
    root.chmod(0o755)
    (root / "read-only").mkdir()
    (root / "read-only").chmod(0o555)  # not writable by its owner either, where the tests do not run as root
    (root / "open").mkdir()
    (root / "open").chmod(0o777)
    try:
        said = unprivileged(lambda: f"{why_unwritable(root / 'read-only')}|{why_unwritable(root / 'open')}")
    finally:
        shutil.rmtree(root)
    assert said == "it is not writable|None"


def hold_in_another_process(folder: Path) -> str | None:
    """``hold_folder(folder)`` in a forked process (which drops this one's holds at the fork): its refusal, or None."""
    from framework.atomic import hold_folder

    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            hold_folder(folder, "give it another folder")
            said = b""
        except Exception as error:
            said = str(error).encode()
        os.write(write, said)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(child, 0)
    return said or None


def test_a_held_folder_is_kept_by_its_process_and_refused_to_another_naming_the_holder(tmp_path):
    """The run folder is held twice by a run's process (Hydra's callback, then the training): kept, not refused. The
    lock file names the holder's process, over a longer number a killed earlier holder left in it."""
    from framework.atomic import IN_USE, hold_folder, release_folder

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / IN_USE).write_text("987654321")  # a killed earlier run's
    hold_folder(folder, "move")
    try:
        hold_folder(folder, "move")
        refused = hold_in_another_process(folder)
    finally:
        release_folder(folder)
    assert refused == (f"{folder} is in use: the run of process {os.getpid()} writes into it now; wait for it to end, "
                       f"or give it another folder.")
    assert hold_in_another_process(folder) is None
    hold_folder(folder, "move")  # held again once let go (the next job of a sweep in this process)
    try:
        assert hold_in_another_process(folder) is not None
    finally:
        release_folder(folder)


def test_a_checkpoint_for_a_remote_path_goes_through_lightnings_writer(tmp_path, monkeypatch):
    """write_atomically renames a local file: s3://... (and any fsspec URL) keeps Lightning's fsspec writer."""
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from framework.checkpoints import CheckpointWrittenInPlace

    monkeypatch.chdir(tmp_path)  # written as a local path, the URL would be a folder here
    written = []
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint",
                        lambda self, checkpoint, path, storage_options=None: written.append(path))
    CheckpointWrittenInPlace().save_checkpoint({"epoch": 1}, "memory://bucket/run/checkpoints/last.ckpt")
    assert written == ["memory://bucket/run/checkpoints/last.ckpt"]

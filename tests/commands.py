"""The shell commands of README.md and docs/*.md, and a fast way to run them as a user would.

``documented_commands()`` reads every ```bash / ```sh / ```shell block and returns its command lines, with
``\\`` continuations joined and the trailing comment split off: after optional ``VAR=value`` words, ``uv run``
and ``nice [-n N]``, ``python <script>.py`` (``train.py``, ``evaluate.py``, ``benchmarks/...``), ``python -m
<module>``, ``make`` or ``export VAR=value`` (which sets VAR for the block's later commands). Any other line
of such a block is a command no test would run: ``unrunnable_lines()`` lists them. A comment ``# needs:
gpu,mnist`` names what the command needs (see NEEDS in tests/test_readme_commands.py).

``Runner`` runs Python commands in children of one forkserver that has imported torch, Lightning and Hydra
once: each command still gets a fresh process (own working directory, environment, argv, stdout/stderr and
exit code, as ``python train.py ...`` would), without ~5-10 s of imports per command; a command's own forkserver
(trainer=ddp_sim's ranks) is forked from it too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.reduction
import multiprocessing.resource_tracker
import os
import re
import resource
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s*```\s*(\S*)")
SHELL_LANGUAGES = {"bash", "sh", "shell"}
ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
NEEDS = re.compile(r"needs:\s*([\w\s,]+)")
PLACEHOLDER = re.compile(r"<[^<>]+>")  # <sweep directory>: filled in when the command runs
PLACEHOLDER_WORD = "@PLACEHOLDER@"
PR_SET_PDEATHSIG = 1
ENTRY_POINTS = ("train.py", "evaluate.py")
# What every run imports; sklearn.datasets (the bundled digits) and Hydra's launcher and sweeper saved ~0.08 s of a
# 0.78 s `train.py debug=smoke` forked from here (18 runs each way, interleaved).
PRELOAD = ["torch", "lightning", "hydra", "omegaconf", "torchmetrics", "sklearn", "sklearn.datasets",
           "matplotlib.pyplot", "scipy.stats", "hydra._internal.core_plugins.basic_launcher",
           "hydra._internal.core_plugins.basic_sweeper"]


@dataclass
class Command:
    """One documented command line: where it is, what it runs, what it needs."""

    source: str  # README.md:42
    block: int  # index of its code block in the whole documentation
    text: str  # the line as written (VAR=value words included), continuations joined, comment removed
    env: dict[str, str]  # leading VAR=value words
    words: list[str]  # the command itself: ["python", "train.py", ...], ["make", "train", ...], ["export", "A=b"]
    needs: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``train.py``, ``evaluate.py``, ``script`` (any other .py file), ``module`` (-m), ``make`` or ``export``."""
        if self.words[0] in ("make", "export"):
            return self.words[0]
        if self.words[1] == "-m":
            return "module"
        return self.words[1] if self.words[1] in ENTRY_POINTS else "script"


def split_comment(line: str) -> tuple[str, str]:
    """``cmd  # comment`` -> (``cmd``, ``comment``); a ``#`` inside quotes is not a comment."""
    quote = None
    for index, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1:].strip()
    return line.rstrip(), ""


def parse_command(text: str, comment: str, source: str, block: int) -> Command | None:
    """A Command when ``text`` runs Python, make or export, else None."""
    try:
        words = shlex.split(PLACEHOLDER.sub(PLACEHOLDER_WORD, text))
    except ValueError as error:
        raise ValueError(f"{source}: the shell cannot split {text!r} ({error})") from None
    env = {}
    while words and ENV_WORD.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words and words[0].startswith("--"):
            words.pop(0)
    if words[:1] == ["nice"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    runs_python = len(words) >= 2 and words[0] == "python" and (words[1].endswith(".py") or words[1] == "-m")
    exports = len(words) == 2 and words[0] == "export" and ENV_WORD.match(words[1])
    if not (runs_python or exports or words[:1] == ["make"]):
        return None
    needs = NEEDS.search(comment)
    return Command(source, block, " ".join(text.split()), env, words,
                   [n.strip() for n in needs.group(1).split(",") if n.strip()] if needs else [])


def shell_lines(root: Path = ROOT):
    """(source, block, text, comment) of every line of the shell blocks, continuations joined, blank lines left out."""
    block = -1
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        language, pending, start = None, "", 0
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            fence = FENCE.match(line)
            if fence:
                if language is None:
                    language, block = fence.group(1) or "text", block + 1
                else:
                    language = None
                continue
            if language not in SHELL_LANGUAGES:
                continue
            text, comment = split_comment(line)
            if not pending:
                start = number
            if text.endswith("\\"):  # a continuation: its comment, if any, belongs to the whole command
                pending += text[:-1] + " "
                continue
            if (pending + text).strip():
                yield f"{doc.relative_to(root)}:{start}", block, pending + text, comment
            pending = ""


def documented_commands(root: Path = ROOT) -> list[Command]:
    parsed = (parse_command(text, comment, source, block) for source, block, text, comment in shell_lines(root))
    return [command for command in parsed if command is not None]


def unrunnable_lines(root: Path = ROOT) -> list[str]:
    """``source: text`` of each shell-block line that is not a command this module can run."""
    return [f"{source}: {text.strip()}" for source, block, text, comment in shell_lines(root)
            if parse_command(text, comment, source, block) is None]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    lacking: list[str] = field(default_factory=list)  # what the command needed and the machine lacked when it ran
    cwd: Path | None = None  # where it ran

    def printed(self, label: str) -> str | None:
        """The value of the last ``<label>: value`` line printed, e.g. ``sweep directory``."""
        values = re.findall(rf"^{label}: (.+)$", self.stdout, re.MULTILINE)
        return values[-1].strip() if values else None


def start_preloaded_forkserver() -> None:
    """Start this process's forkserver with PRELOAD imported, unless it runs already. A process has one forkserver,
    shared by Runner, trainer=ddp_sim's launcher and torch.multiprocessing, and whoever starts it sets what it imports:
    started by a ddp_sim run (torch and Lightning only), it left every later command about 4 s of CPU in imports."""
    multiprocessing.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()


class _InheritedFd:
    """A file descriptor of this process, handed to a process started by a forkserver as a number of its own."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):  # while the process is started: the forkserver sends the fd along
        return _detached, (multiprocessing.reduction.DupFd(self.fd),)


def _detached(inherited) -> int:
    return inherited.detach()


def _serve_forks(listener: int, alive: int, stdout: int, stderr: int, cwd: str, env: dict[str, str]) -> None:
    """A command's own forkserver, from the preloaded one: as the interpreter that ``python train.py`` starts for
    it, it writes to the command's stdout and stderr, in its working directory and environment."""
    for fd, target in ((stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    multiprocessing.forkserver.main(listener, alive, preload=[])


def _own_forkserver_from_the_preloaded_one() -> None:
    """In a command: the forkserver it starts when it first needs one (trainer=ddp_sim's ranks are forked from it) is
    a fork of the preloaded forkserver, where a command of its own starts a fresh interpreter that imports torch and
    Lightning again (~5 s of CPU a DDP command). It ends as a forkserver does, when the command has ended."""
    forkserver = multiprocessing.forkserver._forkserver

    def ensure_running():
        multiprocessing.resource_tracker.ensure_running()
        if forkserver._forkserver_pid is not None:
            return
        forkserver._forkserver_pid = 0  # starting: the preloaded forkserver (still this one's address) forks it
        with socket.socket(socket.AF_UNIX) as listener:
            address = multiprocessing.connection.arbitrary_address("AF_UNIX")
            listener.bind(address)
            listener.listen()
            alive_r, alive_w = os.pipe()
            server = multiprocessing.get_context("forkserver").Process(target=_serve_forks, args=(
                *map(_InheritedFd, (listener.fileno(), alive_r, 1, 2)), os.getcwd(), dict(os.environ)))
            path = sys.path[:]
            sys.path.append(str(ROOT))  # where it finds this module (its children get the command's path)
            try:
                server.start()
            finally:
                sys.path[:] = path
                os.close(alive_r)
        multiprocessing.process._children.discard(server)  # neither joined nor stopped by this process's exit
        forkserver._forkserver_address, forkserver._forkserver_alive_fd = address, alive_w
        forkserver._forkserver_pid = server.pid

    forkserver.ensure_running = ensure_running


def _run_python(argv: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    """In a forkserver child: become ``python <argv>`` (a script, or ``-m module``) started in ``cwd``."""
    with contextlib.suppress(OSError, AttributeError):  # Linux: end with the forkserver (and so with pytest)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # Lightning traps SIGTERM
    for fd, path in ((1, stdout), (2, stderr)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # a forkserver's child inherits "forkserver" as its start method: DataLoader workers would each import afresh
    multiprocessing.set_start_method(None, force=True)  # python's default, as in `python <script>`
    _own_forkserver_from_the_preloaded_one()
    # python puts PYTHONPATH's folders after the script's (or -m's working directory), before the rest
    given = [str(Path(cwd, folder)) for folder in env.get("PYTHONPATH", "").split(os.pathsep) if folder]
    others = [p for p in sys.path if p not in ("", str(ROOT), cwd, *given)]
    try:
        if argv[0] == "-m":  # python -m puts the working directory first on the path
            sys.argv, sys.path[:] = [argv[1], *argv[2:]], [cwd, *given, *others]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = Path(cwd, argv[0]).resolve()
            sys.argv, sys.path[:] = [str(script), *argv[1:]], [str(script.parent), *given, *others]
            runpy.run_path(str(script), run_name="__main__")
    finally:  # as python ends: it waits for the threads that are not daemons, then runs the atexit handlers
        threading._shutdown()
        atexit._run_exitfuncs()
        # CPU seconds of this command and the processes it waited for (DDP workers, submitit jobs)
        used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        Path(stdout).with_suffix(".cpu").write_text(str(sum(u.ru_utime + u.ru_stime for u in used)))


class Runner:
    """Runs ``python <script> args`` or ``python -m <module> args`` (fork of a preloaded interpreter), or any other
    argv (subprocess)."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.numbers = itertools.count()

    def python(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Outcome:
        number = next(self.numbers)
        stdout, stderr = self.scratch / f"{number}.out", self.scratch / f"{number}.err"
        process = self.context.Process(target=_run_python, args=(argv, str(cwd), env, str(stdout), str(stderr)))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            return Outcome(-9, stdout.read_text(), stderr.read_text() + f"\nkilled after {timeout} s")
        return Outcome(process.exitcode, stdout.read_text(), stderr.read_text())

    @staticmethod
    def subprocess(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Outcome:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return Outcome(done.returncode, done.stdout, done.stderr)

"""Other processes as Linux's /proc shows them: their command line, parent and children."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path


def command_line(pid: int) -> str:
    """``pid``'s command line, its words joined by spaces; "" for a process that has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent_of(pid: int) -> int | None:
    """``pid``'s parent process; None for a process that has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[1])  # after the command name, which may hold spaces and ")"


def child_processes(parent: int) -> list[int]:
    """The pids of ``parent``'s living child processes."""
    children = []
    for proc in Path("/proc").iterdir():
        with suppress(ValueError):
            if proc.name.isdigit() and parent_of(int(proc.name)) == parent:
                children.append(int(proc.name))
    return children

"""framework/processes.py: other processes' command line, parent and children, as /proc shows them."""

import os
import subprocess
import sys

from framework.processes import child_processes, command_line, parent_of


def test_a_child_is_found_by_its_parent_with_its_command_line_and_is_gone_once_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "a) b"])
    try:
        assert parent_of(child.pid) == os.getpid() and parent_of(os.getpid()) == os.getppid()
        assert child.pid in child_processes(os.getpid())
        assert command_line(child.pid) == f"{sys.executable} -c import time; time.sleep(30) a) b "
    finally:
        child.kill()
        child.wait()
    assert child.pid not in child_processes(os.getpid())
    assert command_line(child.pid) == "" and parent_of(child.pid) is None

"""A throwaway single-node SLURM cluster on this machine, for the tests and for trying hydra/launcher=slurm.

    python -m framework.slurm_cluster start          # prints the directory and how to use it
    export SLURM_CONF=<directory>/slurm.conf         # sbatch, srun, sinfo (and the launcher) now talk to it
    python -m framework.slurm_cluster stop <directory>

In Python (the test suite does this once per session)::

    cluster = SlurmCluster.start()
    subprocess.run(["sinfo"], env=cluster.env)
    cluster.stop()

Needs root: when SLURM is missing it installs Debian's packages (slurmctld, slurmd, slurm-client, munge) with
apt-get, and slurmd runs jobs as root. munged, slurmctld and slurmd run in the foreground as children of the
starting process; their config, munge key, sockets, state and logs live in one temporary directory, and the
ports are free ones, so nothing of the machine's own SLURM or munge set-up is used. The plugins are those that
need no cgroups and no database: proctrack/linuxproc, task/none, jobacct_gather/none. Stopping cancels every
job, then ends the daemons by the pids recorded at start (and any slurmstepd of this cluster still there).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from framework.processes import command_line

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "squeue", "scancel", "scontrol")
SEARCH_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin:/usr/bin"
PARTITION = "debug"
NODE = "localhost"  # resolves everywhere: Lightning's SLURM environment uses it as the DDP master address
START_TIMEOUT_S = 30
INSTALL_LOCK = Path(tempfile.gettempdir()) / "seedframe-slurm-install.lock"


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the cluster (no root, no package manager, the install failed)."""


def _command(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def cluster_unavailable_reason() -> str | None:
    """Why :meth:`SlurmCluster.start` cannot run here (no root; SLURM missing and no apt-get), or None."""
    if os.geteuid() != 0:
        return "a throwaway SLURM cluster needs root (slurmd runs the jobs)"
    missing = [name for name in COMMANDS if _command(name) is None]
    if missing and _command("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get"
    return None


def install_packages() -> None:
    """apt-get the SLURM and munge packages when any of their commands is missing (root, apt-get).

    Clusters started at the same time (the test suite's workers) install one after another, under a file lock:
    concurrent apt-gets would fail on dpkg's lock. The first installs; the others find the commands there."""
    if all(_command(name) for name in COMMANDS):
        return
    reason = cluster_unavailable_reason()
    if reason:
        raise ClusterUnavailable(reason)
    with open(INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(_command(name) for name in COMMANDS):
            _apt_get_install()


def _apt_get_install() -> None:
    # policy-rc.d = 101 keeps the packages' scripts from starting system-wide munge/slurm services.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait = ["-o", "DPkg::Lock::Timeout=600"]  # another apt-get on the machine: wait for it, do not fail
        for command in (["apt-get", *wait, "update", "-qq"],
                        ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise ClusterUnavailable(f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-500:]}")
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _first_job_id() -> int:
    """Where this cluster's job ids start: at random, not at 1. Lightning's SLURMEnvironment takes a DDP job's
    MASTER_PORT from the job id's last four digits (15000 + them), so two throwaway clusters that both counted from
    1 gave their first DDP jobs the same port: the second failed with EADDRINUSE (the test suite's two workers each
    start a cluster)."""
    return random.SystemRandom().randrange(1000, 9000)


def slurm_conf(directory: Path, cpus: int, memory_mb: int) -> str:
    return f"""\
ClusterName=seedframe
SlurmctldHost={NODE}
FirstJobId={_first_job_id()}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s).
AuthInfo=socket={directory}/munge.socket,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Look at pending jobs every second (default 60 s): a requeued job starts as soon as it is eligible.
SchedulerParameters=sched_interval=1,bf_interval=1
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
MailProg=/bin/true
ReturnToService=2
# A requeued or cancelled job gets SIGTERM, then SIGKILL this many seconds later.
KillWait=5
# Use the CPUs and memory below even where the hardware (or a container's limits) says otherwise.
SlurmdParameters=config_overrides
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    directory: Path
    cpus: int
    pids: dict[str, int]
    children: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)  # when started by this process
    die_with_parent: bool = False

    @property
    def conf(self) -> Path:
        return self.directory / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment pointed at the cluster (what `export SLURM_CONF=...` does in a shell)."""
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command (sinfo, squeue, scontrol, ...) against this cluster."""
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    @classmethod
    def start(cls, die_with_parent: bool = False) -> SlurmCluster:
        """Install SLURM when missing, write the config, start munged, slurmctld and slurmd, wait for the node.
        ``die_with_parent``: the daemons get SIGTERM when this process dies, even by SIGKILL (the tests)."""
        reason = cluster_unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason)
        install_packages()
        missing = [name for name in COMMANDS if _command(name) is None]
        if missing:
            raise ClusterUnavailable(f"SLURM is not installed ({', '.join(missing)} missing)")
        directory = Path(tempfile.mkdtemp(prefix="seedframe-slurm-"))  # 0700; short: socket paths max 107 bytes
        for sub in ("state", "spool"):
            (directory / sub).mkdir()
        key = os.open(directory / "munge.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        os.write(key, os.urandom(1024))
        os.close(key)
        cpus = len(os.sched_getaffinity(0))  # what nproc prints
        (directory / "slurm.conf").write_text(slurm_conf(directory, cpus, _memory_mb()))
        cluster = cls(directory, cpus, {}, die_with_parent=die_with_parent)
        try:
            cluster._spawn("munged", "--foreground", "--force", f"--key-file={directory}/munge.key",
                           f"--socket={directory}/munge.socket", f"--pid-file={directory}/munged.pid",
                           f"--log-file={directory}/munged.log", f"--seed-file={directory}/munged.seed")
            cluster._wait_for(lambda: (directory / "munge.socket").exists(), "munged")
            cluster._spawn("slurmctld", "-D", "-f", str(cluster.conf))
            cluster._spawn("slurmd", "-D", "-f", str(cluster.conf), "-N", NODE)
            cluster._wait_for(cluster._node_ready, "the node")
        except BaseException:
            cluster.stop(remove=False)
            raise
        return cluster

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.directory / f"{name}.out", "wb")  # noqa: SIM115 (the daemon keeps writing to it)
        process = subprocess.Popen([_command(name), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent if self.die_with_parent else None)
        log.close()
        self.children[name], self.pids[name] = process, process.pid
        (self.directory / "pids.json").write_text(json.dumps(self.pids))

    def _gone(self, name: str) -> bool:
        child = self.children.get(name)
        return child.poll() is not None if child else _gone(self.pids[name])

    def _node_ready(self) -> bool:
        done = self.run("sinfo", "--noheader", "--format=%T", check=False)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            dead = [name for name in self.pids if self._gone(name)]
            if dead or time.monotonic() > deadline:
                reason = f"{', '.join(dead)} exited" if dead else f"{what} not ready after {START_TIMEOUT_S} s"
                logs = "\n".join(f"--- {path.name}\n{_tail(path)}" for path in sorted(self.directory.glob("*.log"))
                                 + sorted(self.directory.glob("*.out")))
                raise RuntimeError(f"the SLURM cluster in {self.directory} did not start ({reason}):\n{logs}")
            time.sleep(0.2)

    def stop(self, remove: bool = True) -> list[int]:
        """Cancel every job, end the daemons this cluster started; returns the pids of leftovers it had to kill."""
        if "slurmctld" in self.pids and not self._gone("slurmctld"):
            jobs = self.run("squeue", "--noheader", "--format=%A", check=False).stdout.split()
            if jobs:
                self.run("scancel", *jobs, check=False)
                deadline = time.monotonic() + 20
                while self.run("squeue", "--noheader", "--format=%A", check=False).stdout.split():
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.get(name)
            if pid and str(self.directory) in command_line(pid):  # still the process started (not a reused pid)
                _terminate(pid, lambda name=name: self._gone(name))
        leftovers = [pid for pid in _pids_with_env(f"SLURM_CONF={self.conf}")
                     if command_line(pid).startswith("slurmstepd")]
        for pid in leftovers:
            _terminate(pid, lambda pid=pid: _gone(pid))
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)
        return leftovers

    @classmethod
    def attach(cls, directory: Path) -> SlurmCluster:
        """The cluster a `start` in another process left running in ``directory``."""
        pids = json.loads((directory / "pids.json").read_text())
        return cls(directory, 0, pids)


def _die_with_parent() -> None:
    """Runs in the daemon before exec: SIGTERM when the process that started it dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _gone(pid: int) -> bool:
    """The process (not a child of this one) has exited: it is a zombie or no more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


def _pids_with_env(entry: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def _terminate(pid: int, gone, grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL when ``gone()`` is still false after ``grace_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not gone():
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    if argv == ["start"]:
        try:
            cluster = SlurmCluster.start()
        except ClusterUnavailable as error:
            print(f"Cannot start a SLURM cluster here: {error}.", file=sys.stderr)
            return 2
        print(f"""A single-node SLURM cluster is up: node {NODE} with {cluster.cpus} CPUs, partition {PARTITION}.
cluster directory: {cluster.directory}
Point SLURM's commands and the launcher at it, then submit (CPU only: no GPUs on this node):
  export SLURM_CONF={cluster.conf}
  python train.py -m hydra/launcher=slurm hydra.launcher.partition={PARTITION} hydra.launcher.gpus_per_node=0 \\
      hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1 trainer=cpu seed=1,2
Stop it:
  python -m framework.slurm_cluster stop {cluster.directory}""")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        if not (Path(argv[1]) / "pids.json").is_file():
            print(f"No cluster started by `start` in {argv[1]} (no pids.json there).", file=sys.stderr)
            return 2
        SlurmCluster.attach(Path(argv[1])).stop()
        print(f"stopped the SLURM cluster in {argv[1]}")
        return 0
    given = f"given: {shlex.join(argv)}; " if argv else ""
    print(f"usage: python -m framework.slurm_cluster start | stop <directory> ({given}start takes nothing more, stop "
          f"the cluster directory that start printed)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

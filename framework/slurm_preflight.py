"""Check a SLURM sweep against the cluster before anything is submitted: one sentence naming the key, exit 2.

Hydra runs its launcher before train.py's ``main``, so ``validate`` there is too late: a request the cluster
cannot meet would end in sbatch's error and a traceback, or in jobs that wait forever. The check is a Hydra
callback (``hydra.callbacks.slurm_preflight`` in conf/hydra/default.yaml): ``on_multirun_start`` runs in the
submitting process with the composed config, right before the sweeper hands the jobs to the launcher. A
launcher subclass would do the same, but Hydra only instantiates launchers from the ``hydra_plugins`` package.

It asks ``sinfo`` for the partitions, their number of nodes, time limit and the CPUs, memory and GPUs of those
nodes, and checks ``trainer.devices`` / ``trainer.num_nodes`` against the launcher's ``tasks_per_node`` / ``nodes``
(Lightning's SLURM environment needs one task per device, started by srun: a strategy that starts its own
processes cannot run there). Numbers that sbatch would refuse, or read as "all" or "no limit" (0 GB of memory, a
time limit of 0), and a time limit that submitit's requeue signal would take up at once, stop here too.

Hydra uses a launcher only for a multirun: ``hydra/launcher=slurm`` without ``-m`` would train here, on this
machine, so ``on_run_start`` stops such a run. The jobs that submitit runs on the cluster are multirun jobs and
start no run (their process calls only ``on_job_start``), nor do ``--cfg`` and ``--help``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from framework.continued_runs import job_config, overrides_by_key, sweep_jobs
from framework.entry_point import reporting_user_errors_outside_a_job
from framework.errors import shown
from framework.validate import ConfigError, is_int


@dataclass(frozen=True)
class Partition:
    name: str
    cpus: int  # per node, the largest node of the partition (as are the two below)
    memory_mb: int
    gpus: int
    default: bool
    nodes: int  # how many the partition has (a job asking for more waits forever: PartitionNodeLimit)
    max_minutes: float | None = None  # its time limit (MaxTime); None: none (a longer job waits forever otherwise)


def partitions_from_sinfo(text: str) -> dict[str, Partition]:
    """Parse ``sinfo --noheader --format=%P|%c|%m|%G|%D|%l`` (one line per partition and node configuration, with the
    number of such nodes, then the partition's time limit)."""
    found: dict[str, Partition] = {}
    for line in text.strip().splitlines():
        name, cpus, memory, gres, nodes, limit = line.split("|")
        default, name = name.endswith("*"), name.rstrip("*")
        gpus = sum(int(count) for count in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        old = found.get(name, Partition(name, 0, 0, 0, default, 0))
        found[name] = Partition(name, max(old.cpus, int(cpus.rstrip("+"))), max(old.memory_mb, int(memory.rstrip("+"))),
                                max(old.gpus, gpus), default or old.default, old.nodes + int(nodes), minutes(limit))
    return found


def minutes(limit: str) -> float | None:
    """sinfo's time limit (``infinite``, ``30``, ``4:00:00``, ``2-00:00:00``, SLURM's ``[days-]hours:minutes:seconds``
    or ``minutes[:seconds]``) in minutes; None for no limit."""
    days, _, clock = limit.strip().rpartition("-") if "-" in limit else ("0", "", limit.strip())
    if not clock.replace(":", "").isdigit():  # infinite, UNLIMITED, n/a
        return None
    parts = [int(part) for part in clock.split(":")]
    if "-" in limit or len(parts) == 3:  # [days-]hours[:minutes[:seconds]]
        hours, mins, seconds = (parts + [0, 0])[:3]
    else:  # minutes[:seconds]
        hours, (mins, seconds) = 0, (parts + [0])[:2]
    return int(days) * 1440 + hours * 60 + mins + seconds / 60


def query_partitions() -> dict[str, Partition]:
    if shutil.which("sinfo") is None:
        raise ConfigError("hydra/launcher=slurm submits jobs to SLURM, but SLURM's commands (sinfo, sbatch) are "
                          "not on PATH here; run the sweep on a cluster's login node, or use hydra/launcher=local.")
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):  # sinfo would retry reading it for a minute
        raise ConfigError(f"SLURM_CONF is {conf}, but that file does not exist (a stopped cluster?); point it at the "
                          "cluster's slurm.conf or unset it.")
    done = subprocess.run(["sinfo", "--noheader", "--format=%P|%c|%m|%G|%D|%l"], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("sinfo: ")
        raise ConfigError(f"hydra/launcher=slurm cannot reach a SLURM controller (sinfo: {reason}); check SLURM_CONF "
                          "and that the cluster is up, or use hydra/launcher=local.")
    return partitions_from_sinfo(done.stdout)


# The launcher's numbers, the least each may be, and why and what instead, for a value below that (or not a whole
# number); nodes and tasks_per_node follow trainer.num_nodes and trainer.devices, which are checked before them.
LEAST = {
    "nodes": (1, "a job needs at least 1 node", "give 1 or more (trainer.num_nodes sets it)"),
    "tasks_per_node": (1, "a job needs at least 1 task per node (Lightning runs one per device)",
                       "give 1 or more (trainer.devices sets it)"),
    "cpus_per_task": (1, "each task needs at least 1 CPU", "give 1 or more"),
    "gpus_per_node": (0, "a job cannot ask for fewer than 0 GPUs per node",
                      "give 0 for CPU jobs, or the number of GPUs per node"),
    "mem_gb": (1, "a job needs at least 1 GB of memory (SLURM takes 0 as all of a node's memory)",
               "give the memory per node in GB (1 or more)"),
    "timeout_min": (1, "a job's time limit must be at least 1 minute (SLURM takes 0 as no limit at all)",
                    "give the limit in minutes, e.g. 240"),
}


# Lightning's strategy names (ddp_spawn_find_unused_parameters_true, ...) whose processes it starts itself
SELF_STARTING = {"ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}


def check_slurm_request(cfg: DictConfig, partitions: dict[str, Partition]) -> None:
    """Raise ConfigError when the launcher asks for what the cluster or the trainer cannot give."""
    launcher = cfg.hydra.launcher
    trainer = cfg.get("trainer", {})
    # First the trainer's keys that the launcher's tasks_per_node and nodes interpolate: a value of the wrong type
    # (trainer.devices=auto) would otherwise end in omegaconf's traceback when the launcher reads it.
    if "devices" in trainer and not (is_int(trainer.devices) and trainer.devices >= 1):
        raise ConfigError(f"Config key 'trainer.devices' is {shown(trainer.devices)}, but on SLURM it is the number "
                          f"of tasks per node (one per device), a whole number of 1 or more; give the number of "
                          f"devices per node, e.g. trainer.devices=4 for 4 GPUs on each node.")
    if "num_nodes" in trainer and not (is_int(trainer.num_nodes) and trainer.num_nodes >= 1):
        raise ConfigError(f"Config key 'trainer.num_nodes' is {shown(trainer.num_nodes)}, but on SLURM it is the "
                          f"number of nodes of each job, a whole number of 1 or more; give the number of nodes, e.g. "
                          f"trainer.num_nodes=1.")
    for key, (least, why, remedy) in LEAST.items():
        value = launcher.get(key)
        if value is not None and not (is_int(value) and value >= least):
            raise ConfigError(f"Config key 'hydra.launcher.{key}' is {shown(value)}, but {why}; {remedy}.")
    timeout, lead = launcher.get("timeout_min"), launcher.get("signal_delay_s") or 0
    if timeout is not None and timeout * 60 <= lead:
        raise ConfigError(f"Config key 'hydra.launcher.timeout_min' is {timeout}, but submitit signals a job "
                          f"hydra.launcher.signal_delay_s={lead} s before its time limit to requeue it, so every start "
                          f"would be stopped at once; give a limit longer than {lead / 60:g} minutes.")
    strategy = trainer.get("strategy")
    start_method = strategy.get("start_method", "popen") if isinstance(strategy, DictConfig) else next(
        (method for name, method in SELF_STARTING.items() if str(strategy).startswith(name)), "popen")
    if start_method != "popen":
        raise ConfigError(f"Config key 'trainer.strategy' starts its DDP processes itself ({start_method}), but on "
                          f"SLURM srun starts one per task and Lightning joins them, so each task would start its "
                          f"own set; use trainer=ddp (trainer.strategy=ddp) with hydra/launcher=slurm.")
    for trainer_key, launcher_key in (("devices", "tasks_per_node"), ("num_nodes", "nodes")):
        ours, theirs = trainer.get(trainer_key), launcher.get(launcher_key)
        if is_int(ours) and ours != theirs:
            raise ConfigError(f"Config key 'trainer.{trainer_key}' is {ours}, but 'hydra.launcher.{launcher_key}' is "
                              f"{theirs}; Lightning runs one process per SLURM task, so make them equal.")
    requested = launcher.get("partition")
    if requested is None:
        defaults = [p for p in partitions.values() if p.default]
        if not defaults:
            raise ConfigError(f"Config key 'hydra.launcher.partition' is null, but the cluster has no default "
                              f"partition; choose one of {', '.join(partitions)}.")
        partition = defaults[0]
    elif requested not in partitions:
        raise ConfigError(f"Config key 'hydra.launcher.partition' is {requested!r}, but the cluster's partitions are "
                          f"{', '.join(partitions)}; choose one of them.")
    else:
        partition = partitions[requested]
    nodes, tasks = launcher.get("nodes", 1), launcher.get("tasks_per_node", 1)
    cpus_per_task = launcher.get("cpus_per_task") or 1  # null: SLURM's default, 1
    gpus, mem_gb = launcher.get("gpus_per_node") or 0, launcher.get("mem_gb")
    if nodes > partition.nodes:
        raise ConfigError(f"Config key 'hydra.launcher.nodes' is {nodes}, but partition '{partition.name}' has "
                          f"{partition.nodes} node{'s' * (partition.nodes != 1)}; lower it (and trainer.num_nodes "
                          f"with it), or choose a partition with more.")
    where = f"the nodes of partition '{partition.name}' have at most"
    if tasks > partition.cpus:
        raise ConfigError(f"Config key 'hydra.launcher.tasks_per_node' is {tasks}, but {where} {partition.cpus} CPUs; "
                          f"lower it (and trainer.devices with it).")
    if tasks * cpus_per_task > partition.cpus:
        raise ConfigError(f"Config key 'hydra.launcher.cpus_per_task' is {cpus_per_task}: {tasks} task(s) per node x "
                          f"{cpus_per_task} = {tasks * cpus_per_task} CPUs, but {where} {partition.cpus}; lower it.")
    per_task = launcher.get("gpus_per_task") or 0
    # the first of these three that asks for GPUs is what a node gets (gres=gpu: SLURM's count is 1)
    asked_by, requested_gpus = next(((key, count) for key, count in (
        ("gpus_per_node", gpus), ("gpus_per_task", per_task * tasks), ("gres", gres_gpus(launcher.get("gres"))))
        if count), ("gpus_per_node", 0))
    devices = trainer.get("devices")
    if str(trainer.get("accelerator")) in ("gpu", "cuda") and is_int(devices) and requested_gpus < devices:
        raise ConfigError(f"Config key 'hydra.launcher.gpus_per_node' is {shown(launcher.get('gpus_per_node'))}, but "
                          f"trainer.accelerator is '{trainer.accelerator}' with trainer.devices={devices}, a GPU for "
                          f"each task of a node, so the job would find {requested_gpus or 'no'} GPU"
                          f"{'s' * (requested_gpus != 1)} there; give hydra.launcher.gpus_per_node={devices} (its "
                          f"default), or trainer=cpu for a CPU partition.")
    if requested_gpus > partition.gpus:
        asked = launcher.get(asked_by)
        per_node = f" (x {tasks} tasks per node = {requested_gpus})" if asked_by == "gpus_per_task" else ""
        raise ConfigError(f"Config key 'hydra.launcher.{asked_by}' is {shown(asked)}{per_node}, but {where} "
                          f"{partition.gpus} GPUs; lower it (0 or null for CPU jobs), or choose a GPU partition.")
    if None not in (partition.max_minutes, timeout) and timeout > partition.max_minutes:
        raise ConfigError(f"Config key 'hydra.launcher.timeout_min' is {timeout}, but partition '{partition.name}' "
                          f"allows at most {partition.max_minutes:g} minutes (its MaxTime; a longer job waits in the "
                          f"queue for good); lower it, or choose a partition with a longer limit.")
    if mem_gb is not None and mem_gb * 1024 > partition.memory_mb:
        raise ConfigError(f"Config key 'hydra.launcher.mem_gb' is {mem_gb}, but {where} "
                          f"{partition.memory_mb // 1024} GB of memory; lower it.")


def gres_gpus(gres: str | None) -> int:
    """GPUs per node that a ``--gres`` asks for: ``gpu:2``, ``gpu:a100:2``; ``gpu`` or ``gpu:a100`` is 1, as SLURM
    reads a GRES without a count."""
    counts = [entry.split(":")[-1] for entry in str(gres or "").split(",") if entry.strip().startswith("gpu")]
    return sum(int(count) if count.isdigit() else 1 for count in counts)


def requests_of_the_jobs(config: DictConfig) -> list[DictConfig]:
    """The configs of a sweep's jobs as far as their SLURM request goes: Hydra gives ``on_multirun_start`` the config
    without the swept values, so a job of ``trainer.num_nodes=1,2`` would wait forever unchecked. One job's config
    (composed as the launcher composes it) per distinct combination of the values of trainer and launcher keys and
    of config groups (which may set those); the multirun's own config when no such key is swept."""
    groups = set(OmegaConf.select(config, "hydra.runtime.choices", default=None) or {})
    asks = lambda key: key in groups or key.startswith(("trainer.", "hydra.launcher."))
    jobs = sweep_jobs(config)
    distinct = {}
    for num, overrides in enumerate(jobs):
        request = tuple((key, repr(value)) for key, value in overrides_by_key(overrides).items() if asks(key))
        distinct.setdefault(request, (num, overrides))
    if len(distinct) < 2:
        return [config]
    return [job_config(config, overrides, num) for num, overrides in distinct.values()]


def launches_on_slurm(config: DictConfig) -> bool:
    """Whether a multirun's launcher is ``hydra/launcher=slurm`` (its jobs run on the cluster's nodes)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher")


class SlurmPreflight(Callback):
    """Hydra callback: stop a ``hydra/launcher=slurm`` sweep with one sentence before any job is submitted, and a
    ``hydra/launcher=slurm`` run without ``-m`` (which Hydra would run here, not on the cluster) before it starts."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if launches_on_slurm(config):
            with reporting_user_errors_outside_a_job():
                raise ConfigError("Config group 'hydra/launcher' is slurm, but a launcher runs only the jobs of a "
                                  "sweep (-m); add -m to submit this run to SLURM, or drop hydra/launcher=slurm to "
                                  "run it here.")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if launches_on_slurm(config):
            with reporting_user_errors_outside_a_job():
                partitions = query_partitions()
                for request in requests_of_the_jobs(config):
                    check_slurm_request(request, partitions)

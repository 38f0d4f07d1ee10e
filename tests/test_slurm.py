"""Cluster jobs for real: a throwaway single-node SLURM cluster (framework/slurm_cluster.py) runs sweeps, a DDP
job and a requeued job through Hydra's submitit launcher (hydra/launcher=slurm: sbatch, srun), as users run them.

The cluster starts once per session and needs root (and apt-get when SLURM is missing); elsewhere these tests
skip with the reason. All launcher runs are submitted at once by one fixture, so the cluster runs them side by
side; each test then waits for its own run and checks what it left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from framework.compose import CONF, ROOT
from framework.slurm_cluster import SEARCH_PATH, ClusterUnavailable, SlurmCluster
from framework.slurm_cluster import main as slurm_cluster_cli
from framework.slurm_preflight import (
    Partition,
    check_slurm_request,
    gres_gpus,
    launches_on_slurm,
    partitions_from_sinfo,
    query_partitions,
    requests_of_the_jobs,
)
from framework.validate import ConfigError
from tests.conftest import path_with_stand_in, run_cli
from tests.wandb_files import wandb_records

LAUNCHER = ("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1")
TINY = ("trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0", "data.batch_size=64")
DDP = ("trainer=ddp", "trainer.devices=2", "trainer.sync_batchnorm=false", "trainer.max_epochs=2")
RUN_TIMEOUT_S = 480


@pytest.fixture(scope="session")
def slurm_cluster():
    try:
        cluster = SlurmCluster.start(die_with_parent=True)  # no daemon outlives even a killed pytest
    except ClusterUnavailable as error:
        pytest.skip(f"no throwaway SLURM cluster here: {error}")
    yield cluster
    leftovers = cluster.stop()
    assert not leftovers, f"processes of the SLURM cluster outlived it and had to be killed: {leftovers}"


@dataclass
class Submission:
    """A `python train.py -m ...` started in the background; ``wait`` gives its exit code and output."""

    process: subprocess.Popen
    log: Path
    sweep: Path

    def wait(self) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return -signal.SIGKILL, f"{self.log.read_text()}\n(killed: still running after {RUN_TIMEOUT_S} s)"
        return code, self.log.read_text()


def submit(cluster: SlurmCluster, folder: Path, *overrides: str, env: dict | None = None) -> Submission:
    sweep = folder / "sweep"
    folder.mkdir(parents=True)
    log = folder / "launcher.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "train.py", "-m", *LAUNCHER, *TINY, *overrides, f"hydra.sweep.dir={sweep}"],
            cwd=ROOT, env={**cluster.env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return Submission(process, log, sweep)


@pytest.fixture(scope="module")
def submissions(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    runs = {
        # Seed 5 of this sweep is also the uninterrupted reference of the requeued run.
        "sweep": submit(slurm_cluster, root / "sweep", "seed=5,6", "trainer.max_epochs=2", "logger=wandb",
                        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"}),
        "requeue": submit(slurm_cluster, root / "requeue", "seed=5", "trainer.max_epochs=2", "ckpt_path=auto",
                          "+callbacks.requeue._target_=tests.slurm_callbacks.RequeueOnceMidEpoch",
                          "+callbacks.requeue.epoch=1", "+callbacks.requeue.batch=5"),
        # Also the uninterrupted reference of the DDP job that SLURM's time-limit signal requeues.
        "ddp": submit(slurm_cluster, root / "ddp", *DDP,
                      "+callbacks.ranks._target_=tests.slurm_callbacks.RecordRankMetrics",
                      "+callbacks.ranks.dirpath=${paths.output_dir}/ranks"),
        "time_limit": submit(slurm_cluster, root / "time_limit", *DDP, "ckpt_path=auto",
                             "+callbacks.requeue._target_=tests.slurm_callbacks.RequeueOnceMidEpoch",
                             "+callbacks.requeue.epoch=1", "+callbacks.requeue.batch=3",
                             "+callbacks.requeue.how=time_limit"),
        "bad_partition": submit(slurm_cluster, root / "bad", "hydra.launcher.partition=nope", "seed=1,2"),
        "task_fails": submit(slurm_cluster, root / "task_fails", "trainer=ddp", "trainer.devices=2",
                             "trainer.sync_batchnorm=false", "trainer.max_epochs=1",
                             "+callbacks.fail._target_=tests.slurm_callbacks.FailOnTask", "+callbacks.fail.task=1"),
    }
    yield runs
    for run in runs.values():
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()


def results(job: Path) -> dict:
    return json.loads((job / "results.json").read_text())


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(path for path in sweep.iterdir() if path.is_dir() and path.name.isdigit())


def job_log_tails(sweep: Path, chars: int = 1500) -> str:
    """The end of every SLURM job's own stdout and stderr (submitit's logs), for a failure message: the
    launcher's output alone says only that a job failed."""
    logs = sorted((sweep / ".submitit").rglob("*_log.*")) if (sweep / ".submitit").is_dir() else []
    return "".join(f"\n--- {path.relative_to(sweep)}\n{path.read_text(errors='replace')[-chars:]}" for path in logs)


def finished_jobs(run: Submission) -> list[Path]:
    """The sweep's job directories, once its launcher has exited with 0."""
    code, output = run.wait()
    assert code == 0, output[-3000:] + job_log_tails(run.sweep)
    return job_dirs(run.sweep)


def srun_exit_codes(log: str) -> dict[int, int]:
    """{task: exit code} from srun's lines "task 0: Exited with exit code 143", "tasks 0-1: ..." (tasks that ended
    together are named in one line, or else one line each)."""
    codes = {}
    for tasks, code in re.findall(r"tasks? ([\d,-]+): Exited with exit code (\d+)", log):
        for part in tasks.split(","):
            first, _, last = part.partition("-")
            codes |= dict.fromkeys(range(int(first), int(last or first) + 1), int(code))
    return codes


def slurm_job_id(job: Path) -> str:
    """The SLURM job id that submitit recorded as the Hydra job id (``<array job>_<task>``)."""
    return str(OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.job.id)


@pytest.mark.slow
def test_sweep_runs_two_slurm_jobs_with_one_wandb_run_each_and_evaluate_aggregates(submissions):
    run = submissions["sweep"]
    jobs = finished_jobs(run)
    assert [job.name for job in jobs] == ["0", "1"]
    ids = [slurm_job_id(job) for job in jobs]
    assert len(set(ids)) == 2 and all(part.isdigit() for job_id in ids for part in job_id.split("_")), ids
    # Counted from a random start, not 1: Lightning's DDP port is 15000 + the job id's last four digits, and two
    # clusters counting from 1 (the README test's and this one, side by side) gave their DDP jobs the same port.
    assert all(int(job_id.split("_")[0]) >= 1000 for job_id in ids), ids
    for job, seed in zip(jobs, (5, 6), strict=True):
        stored = results(job)
        assert stored["seed"] == seed and stored["epochs_completed"] == 2
        [offline_run] = (job / "wandb").glob("offline-run-*")  # one wandb run per job ...
        records = wandb_records(next(offline_run.glob("run-*.wandb")))
        assert sum(record.WhichOneof("record_type") == "exit" for record in records) == 1  # ... finished
    runs = sorted(run.sweep.rglob("offline-run-*"))
    assert len(runs) == 2 and len({path.name.rsplit("-", 1)[-1] for path in runs}) == 2  # none shared

    table = run_cli(str(ROOT / "evaluate.py"), f"runs={run.sweep}", "metrics=[test/acc]",
                    "group_by=[trainer.max_epochs]", cwd=run.sweep.parent)  # not into the repository's logs/
    assert table.returncode == 0, table.stderr[-2000:]
    mean = sum(results(job)["metrics"]["test/acc"] for job in jobs) / 2
    assert f"| 2 | {mean:.4f} ± " in (run.sweep / "table.md").read_text()


@pytest.mark.slow
def test_ddp_job_takes_its_two_ranks_from_slurm_and_both_agree_on_the_final_metrics(submissions):
    run = submissions["ddp"]
    [job] = finished_jobs(run)
    assert [path.parent for path in run.sweep.rglob("results.json")] == [job]  # written once, by rank 0
    ranks = [json.loads((job / "ranks" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank, record in enumerate(ranks):
        assert record["global_rank"] == rank and record["world_size"] == 2
        assert record["cluster_environment"] == "SLURMEnvironment" and record["backend"] == "gloo"
    assert ranks[0]["metrics"] == ranks[1]["metrics"] == results(job)["metrics"]
    assert {"test/acc", "val/acc", "train/loss"} <= set(ranks[0]["metrics"])
    log = (job / "train.log").read_text()  # rank 0's alone, as trainer=ddp_sim's (rank 1's is in its submitit log)
    assert log.count("Output directory:") == 1 and "[rank: 1]" not in log, log[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "reference", "tasks"), [("requeue", "sweep", 1), ("time_limit", "ddp", 2)])
def test_requeued_job_resumes_from_last_checkpoint_to_the_uninterrupted_metrics(submissions, name, reference, tasks):
    """``requeue``: `scontrol requeue`, as a preemption; ``time_limit``: SIGUSR2, on which submitit requeues the job
    (a DDP job: its ranks stopped otherwise, one with exit code 255, the other with a traceback)."""
    run = submissions[name]
    [job] = finished_jobs(run)
    logs = {path.name: path.read_text() for path in (run.sweep / ".submitit").rglob("*_log.*")}
    assert "DUE TO JOB REQUEUE" in "".join(logs.values())
    assert f"Resuming from {job}/checkpoints/last.ckpt" in "".join(logs.values())
    stopped = (f"Stopped by SIGTERM (sweep directory: {run.sweep}; SLURM has requeued the job, which starts again by "
               f"itself, from its last checkpoint).")
    task_logs = [text for log, text in logs.items() if log.endswith("_log.err")]
    assert len(task_logs) == tasks and all(stopped in text for text in task_logs), logs
    # srun names the exit code of each task it saw end; SLURM's requeue may stop srun before it names some or any
    # (task 1 alone, once in a whole suite; none, once on a machine under three times the suite's load): a task that
    # exited otherwise (255) would be named with that code
    exit_codes = srun_exit_codes("".join(task_logs))
    assert set(exit_codes) <= set(range(tasks)) and set(exit_codes.values()) <= {128 + signal.SIGTERM}, exit_codes
    assert "Traceback" not in "".join(logs.values())
    uninterrupted = results(finished_jobs(submissions[reference])[0])
    assert uninterrupted["seed"] == results(job)["seed"]
    assert results(job)["epochs_completed"] == uninterrupted["epochs_completed"] == 2
    assert results(job)["metrics"] == uninterrupted["metrics"]  # exactly, not approximately


@pytest.mark.slow
def test_a_task_that_fails_ends_its_jobs_other_tasks_instead_of_leaving_them_waiting(submissions, slurm_cluster):
    """Task 1 stops with a user error before the process group forms; task 0 would wait for it there (30 min by
    default). The failed task exits 2 and srun (SLURM_KILL_BAD_EXIT=1 from the launcher's setup) ends task 0, so the
    job leaves the queue. The launcher itself learns a job's end from sacct, which this cluster has not (no
    accounting database): its sentence is tested on this job's logs below."""
    run = submissions["task_fails"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    folders: list[Path] = []
    while time.monotonic() < deadline and not folders:
        folders = [path.parent for path in (run.sweep / ".submitit").glob("*/*_submission.sh")]
        time.sleep(1)
    assert len(folders) == 1, f"the job was not submitted: {run.log.read_text()[-2000:]}"
    job_id = folders[0].name
    queued = lambda: subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True,
                                    env=slurm_cluster.env).stdout.strip()
    while time.monotonic() < deadline and queued():
        time.sleep(1)
    assert not queued(), f"job {job_id} still runs: its task 0 waits for the failed task 1" + job_log_tails(run.sweep)
    step = (folders[0] / f"{job_id}_0_log.err").read_text()
    assert "task 1: Exited with exit code 2" in step, step[-2000:]
    assert ("Data error: task 1 of this job cannot read its data (the test's failure)."
            in (folders[0] / f"{job_id}_1_log.err").read_text())
    os.killpg(run.process.pid, signal.SIGKILL)  # it would wait for sacct to say the job ended
    run.process.wait()
    # What the launcher raises where sacct says so, and what the command then prints instead
    from submitit.core.utils import UncompletedJobError

    from framework.entry_point import failed_slurm_task

    error = UncompletedJobError(f"Job {job_id}_0 (task: 0) with path {folders[0]}/{job_id}_0_result.pkl\nhas not "
                                f"produced any output (state: FAILED)")
    assert failed_slurm_task(error) == (folders[0], 1, "Data error: task 1 of this job cannot read its data (the "
                                                       "test's failure).")


@pytest.mark.parametrize(("error", "said"), [(RuntimeError("rank 1 blew up"), "RuntimeError: rank 1 blew up"),
                                              (ConfigError("the sentence, already printed"), "")])
def test_a_task_that_fails_with_a_bug_leaves_its_traceback_in_its_log(monkeypatch, capsys, error, said):
    """The task ends itself with os._exit before Hydra would print the job's exception, and a rank other than 0
    writes no train.log: a bug's traceback was in no file, though the launcher said its log had it."""
    from hydra.core.utils import JobReturn, JobStatus

    from framework.hydra_callbacks import FailedTaskEndsItsJob

    try:
        raise error
    except Exception as raised:  # with its traceback, as Hydra's job keeps it
        failed = JobReturn(status=JobStatus.FAILED, _return_value=raised)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit) as ended:
        FailedTaskEndsItsJob().on_job_end(OmegaConf.create({}), failed)
    err = capsys.readouterr().err
    assert ended.value.code == (1 if said else 2)
    assert (err.startswith("Traceback (most recent call last):") and err.rstrip().endswith(said)) if said else err == ""


@pytest.mark.slow
def test_unknown_partition_stops_before_any_job_is_submitted(submissions, slurm_cluster):
    run = submissions["bad_partition"]
    code, output = run.wait()
    assert code == 2
    assert output.strip().splitlines()[-1] == ("Config error: Config key 'hydra.launcher.partition' is 'nope', but "
                                               "the cluster's partitions are debug; choose one of them.")
    assert "Traceback" not in output and not (run.sweep / ".submitit").exists()


def compose_launcher(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", [*LAUNCHER, *overrides], return_hydra_config=True)


@pytest.mark.parametrize(("overrides", "key"), [
    (("hydra.launcher.tasks_per_node=4", "trainer.devices=4"), "hydra.launcher.tasks_per_node"),
    (("hydra.launcher.cpus_per_task=2", "trainer.devices=2"), "hydra.launcher.cpus_per_task"),
    (("hydra.launcher.gpus_per_node=1",), "hydra.launcher.gpus_per_node"),
    (("hydra.launcher.mem_gb=100000",), "hydra.launcher.mem_gb"),
    (("hydra.launcher.partition=nope",), "hydra.launcher.partition"),
    (("hydra.launcher.tasks_per_node=1", "trainer.devices=2"), "trainer.devices"),
])
def test_requests_the_cluster_cannot_meet_are_named_by_their_key(slurm_cluster, monkeypatch, overrides, key):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.setenv("PATH", slurm_cluster.env["PATH"])
    partitions = query_partitions()
    assert list(partitions) == ["debug"] and partitions["debug"].cpus == slurm_cluster.cpus
    check_slurm_request(compose_launcher("trainer=cpu"), partitions)  # the tested set-up itself fits
    with pytest.raises(ConfigError, match=rf"^Config key '{key}' is "):
        check_slurm_request(compose_launcher("trainer=cpu", *overrides), partitions)


def test_sinfo_lines_give_each_partitions_largest_node():
    text = ("gpu*|64|512000|gpu:a100:4(S:0-1)|2|2-00:00:00\ngpu*|32|256000|gpu:2|3|2-00:00:00\n"
            "cpu|128+|256000|(null)|1|infinite\nshort|4|8192|(null)|1|10:00\n")
    partitions = partitions_from_sinfo(text)
    assert [(p.name, p.cpus, p.memory_mb, p.gpus, p.default, p.nodes, p.max_minutes) for p in partitions.values()] == [
        ("gpu", 64, 512000, 4, True, 5, 2880), ("cpu", 128, 256000, 0, False, 1, None),  # nodes: of all its lines
        ("short", 4, 8192, 0, False, 1, 10)]


@pytest.mark.parametrize(("limit", "minutes"), [("infinite", None), ("UNLIMITED", None), ("n/a", None), ("30", 30),
                                                ("10:00", 10), ("0:30", 0.5), ("4:00:00", 240), ("1-12", 2160),
                                                ("1-12:30", 2190), ("2-00:00:00", 2880)])
def test_sinfo_time_limits_in_every_format_slurm_writes(limit, minutes):
    from framework.slurm_preflight import minutes as in_minutes

    assert in_minutes(limit) == minutes


def test_a_time_limit_beyond_the_partitions_stops_before_the_job_waits_forever():
    """With EnforcePartLimits=NO (SLURM's default) sbatch takes it and the job pends: PartitionTimeLimit."""
    short = {"debug": Partition("debug", cpus=4, memory_mb=8192, gpus=0, default=True, nodes=1, max_minutes=10)}
    check_slurm_request(compose_launcher("trainer=cpu", "hydra.launcher.timeout_min=10"), short)
    with pytest.raises(ConfigError) as error:
        check_slurm_request(compose_launcher("trainer=cpu"), short)  # the default 240
    assert str(error.value) == ("Config key 'hydra.launcher.timeout_min' is 240, but partition 'debug' allows at most "
                                "10 minutes (its MaxTime; a longer job waits in the queue for good); lower it, or "
                                "choose a partition with a longer limit.")


def test_a_time_limit_within_submitits_requeue_signal_lead_stops_before_submission():
    """submitit signals (USR2) signal_delay_s = 120 s before the limit: a 2-minute job was requeued at once, 3 times."""
    with pytest.raises(ConfigError) as error:
        check_slurm_request(compose_launcher("trainer=cpu", "hydra.launcher.timeout_min=2"), debug_partition())
    assert str(error.value) == ("Config key 'hydra.launcher.timeout_min' is 2, but submitit signals a job "
                                "hydra.launcher.signal_delay_s=120 s before its time limit to requeue it, so every "
                                "start would be stopped at once; give a limit longer than 2 minutes.")
    check_slurm_request(compose_launcher("trainer=cpu", "hydra.launcher.timeout_min=3"), debug_partition())
    check_slurm_request(compose_launcher("trainer=cpu", "hydra.launcher.timeout_min=2",
                                         "hydra.launcher.signal_delay_s=60"), debug_partition())


@pytest.mark.parametrize(("overrides", "method"), [(("trainer=ddp_sim",), "forkserver"),
                                                   (("trainer=ddp_sim", "trainer.strategy=ddp_spawn"), "spawn"),
                                                   (("trainer=cpu", "++trainer.strategy=ddp_fork"), "fork")])
def test_a_strategy_that_starts_its_own_processes_stops_before_submission(overrides, method):
    """srun starts one task per device: each task of trainer=ddp_sim started a pair of its own; they collided on the
    port."""
    with pytest.raises(ConfigError) as error:
        check_slurm_request(compose_launcher(*overrides), {"debug": Partition("debug", 4, 8192, 0, True, 1)})
    assert str(error.value) == (f"Config key 'trainer.strategy' starts its DDP processes itself ({method}), but on "
                                f"SLURM srun starts one per task and Lightning joins them, so each task would start "
                                f"its own set; use trainer=ddp (trainer.strategy=ddp) with hydra/launcher=slurm.")
    check_slurm_request(compose_launcher("trainer=cpu", "++trainer.strategy=ddp", "trainer.devices=2"),
                        {"debug": Partition("debug", 4, 8192, 0, True, 1)})


GPU_NODES = {"gpu": Partition("gpu", cpus=64, memory_mb=512000, gpus=4, default=True, nodes=2)}


@pytest.mark.parametrize(("overrides", "refused"), [
    (("trainer=gpu",), "is 0, but trainer.accelerator is 'gpu' with trainer.devices=1, a GPU for each task of a node, "
                       "so the job would find no GPUs there"),
    (("trainer=ddp", "trainer.devices=2", "hydra.launcher.gpus_per_node=1"), "would find 1 GPU there"),
    (("trainer=ddp", "trainer.devices=2", "hydra.launcher.gpus_per_node=null", "+hydra.launcher.gres=gpu:a100:1"),
     "is null, but trainer.accelerator is 'gpu' with trainer.devices=2"),
    (("trainer=ddp", "trainer.devices=2", "hydra.launcher.gpus_per_node=2"), None),
    (("trainer=ddp", "trainer.devices=2", "hydra.launcher.gpus_per_node=null", "+hydra.launcher.gres=gpu:2"), None),
    (("trainer=ddp", "trainer.devices=2", "hydra.launcher.gpus_per_node=null", "+hydra.launcher.gres=gpu:a100:2"),
     None),
    (("trainer=ddp", "trainer.devices=2", "hydra.launcher.gpus_per_node=null", "hydra.launcher.gpus_per_task=1"),
     None),
])
def test_a_gpu_run_that_asks_slurm_for_fewer_gpus_than_devices_stops_before_submission(overrides, refused):
    """The job was queued and, once started, said that the machine has no usable GPU, naming trainer=ddp_sim as the
    remedy (which the preflight refuses), not the launcher's key."""
    launcher = compose_launcher(*overrides, "hydra.launcher.partition=gpu")
    if refused is None:
        check_slurm_request(launcher, GPU_NODES)
        return
    with pytest.raises(ConfigError) as error:
        check_slurm_request(launcher, GPU_NODES)
    assert str(error.value).startswith("Config key 'hydra.launcher.gpus_per_node' ") and refused in str(error.value)
    assert str(error.value).endswith(f"; give hydra.launcher.gpus_per_node={launcher.trainer.devices} (its default), "
                                     f"or trainer=cpu for a CPU partition.")


def debug_partition(nodes: int = 1) -> dict[str, Partition]:
    return {"debug": Partition("debug", cpus=4, memory_mb=8192, gpus=0, default=True, nodes=nodes)}


def test_more_nodes_than_the_partition_has_stop_before_the_job_waits_forever():
    check_slurm_request(compose_launcher("trainer=cpu"), debug_partition(nodes=1))
    with pytest.raises(ConfigError) as error:  # sbatch would take it, and the job pend: PartitionNodeLimit
        check_slurm_request(compose_launcher("trainer=cpu", "trainer.num_nodes=2"), debug_partition(nodes=1))
    assert str(error.value) == ("Config key 'hydra.launcher.nodes' is 2, but partition 'debug' has 1 node; lower it "
                                "(and trainer.num_nodes with it), or choose a partition with more.")
    check_slurm_request(compose_launcher("trainer=cpu", "trainer.num_nodes=2"), debug_partition(nodes=2))


def test_each_swept_number_of_nodes_is_checked_before_any_job_is_submitted(tmp_path, data_root):
    """Hydra leaves a sweep's values out of the config its callbacks see before the jobs: trainer.num_nodes=1,2 on
    a one-node partition submitted a second job that waits forever. Here sinfo is a script that describes such a
    cluster, and there is no sbatch: a job that passed the check would fail to submit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'debug*|4|8192|(null)|1|infinite'\n")
    (bin_dir / "sinfo").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_CONF": ""}
    result = run_cli("train.py", "-m", *LAUNCHER, "trainer=cpu", "trainer.num_nodes=1,2", "seed=1,2",
                     f"paths.data_dir={data_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "Config error: Config key 'hydra.launcher.nodes' is 2, but partition 'debug' has 1 node; lower it (and "
        "trainer.num_nodes with it), or choose a partition with more.")
    assert "Traceback" not in result.stderr and not (tmp_path / "sweep" / ".submitit").exists()


DEVICES = ("but on SLURM it is the number of tasks per node (one per device), a whole number of 1 or more; give the "
           "number of devices per node, e.g. trainer.devices=4 for 4 GPUs on each node.")
MEMORY = ("but a job needs at least 1 GB of memory (SLURM takes 0 as all of a node's memory); give the memory per "
          "node in GB (1 or more).")
TIME = ("but a job's time limit must be at least 1 minute (SLURM takes 0 as no limit at all); give the limit in "
        "minutes, e.g. 240.")


@pytest.mark.parametrize(("override", "sentence"), [
    ("hydra.launcher.cpus_per_task=0", "Config key 'hydra.launcher.cpus_per_task' is 0, but each task needs at least "
                                       "1 CPU; give 1 or more."),
    ("hydra.launcher.cpus_per_task=-1", "Config key 'hydra.launcher.cpus_per_task' is -1, but each task needs at "
                                        "least 1 CPU; give 1 or more."),
    ("hydra.launcher.mem_gb=-1", f"Config key 'hydra.launcher.mem_gb' is -1, {MEMORY}"),
    ("hydra.launcher.mem_gb=0", f"Config key 'hydra.launcher.mem_gb' is 0, {MEMORY}"),
    ("hydra.launcher.gpus_per_node=-1", "Config key 'hydra.launcher.gpus_per_node' is -1, but a job cannot ask for "
                                        "fewer than 0 GPUs per node; give 0 for CPU jobs, or the number of GPUs per "
                                        "node."),
    ("trainer.devices=0", f"Config key 'trainer.devices' is 0, {DEVICES}"),
    ("trainer.devices=-1", f"Config key 'trainer.devices' is -1, {DEVICES}"),
    ("trainer.devices=auto", f"Config key 'trainer.devices' is 'auto', {DEVICES}"),
    ("hydra.launcher.timeout_min=0", f"Config key 'hydra.launcher.timeout_min' is 0, {TIME}"),
    ("hydra.launcher.timeout_min=-5", f"Config key 'hydra.launcher.timeout_min' is -5, {TIME}"),
    ("hydra.launcher.nodes=0", "Config key 'hydra.launcher.nodes' is 0, but a job needs at least 1 node; give 1 or "
                               "more (trainer.num_nodes sets it)."),
    ("trainer.num_nodes=0", "Config key 'trainer.num_nodes' is 0, but on SLURM it is the number of nodes of each "
                            "job, a whole number of 1 or more; give the number of nodes, e.g. trainer.num_nodes=1."),
    ("hydra.launcher.tasks_per_node=0", "Config key 'hydra.launcher.tasks_per_node' is 0, but a job needs at least 1 "
                                        "task per node (Lightning runs one per device); give 1 or more "
                                        "(trainer.devices sets it)."),
])
def test_numbers_sbatch_would_refuse_or_read_as_no_limit_stop_before_submission(override, sentence):
    """Each would reach sbatch (a FailedJobError traceback, or a job without a time limit or with all of a node's
    memory); trainer.devices=auto would end in omegaconf's traceback for hydra.launcher.tasks_per_node."""
    with pytest.raises(ConfigError) as error:
        check_slurm_request(compose_launcher("trainer=cpu", override), debug_partition())
    assert str(error.value) == sentence


def test_sinfo_gres_of_several_gpu_types_on_one_node_add_up():
    partitions = partitions_from_sinfo("mixed*|32|256000|gpu:a100:2(S:0),gpu:v100:2(S:1)|1|infinite\n")
    assert partitions["mixed"].gpus == 4


def test_sinfo_that_fails_without_a_word_stops_with_one_sentence(monkeypatch, tmp_path):
    (tmp_path / "sinfo").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    with pytest.raises(ConfigError) as error:
        query_partitions()
    assert str(error.value) == ("hydra/launcher=slurm cannot reach a SLURM controller (sinfo: no output); check "
                                "SLURM_CONF and that the cluster is up, or use hydra/launcher=local.")


@pytest.mark.parametrize(("overrides", "sentence"), [
    (("trainer.num_nodes=auto",), "Config key 'trainer.num_nodes' is 'auto', but on SLURM it is the number of nodes "
                                  "of each job, a whole number of 1 or more; give the number of nodes, e.g. "
                                  "trainer.num_nodes=1."),
    (("hydra.launcher.tasks_per_node=2",), "Config key 'trainer.devices' is 1, but 'hydra.launcher.tasks_per_node' "
                                           "is 2; Lightning runs one process per SLURM task, so make them equal."),
    (("hydra.launcher.nodes=1", "trainer.num_nodes=2"), "Config key 'trainer.num_nodes' is 2, but "
                                                        "'hydra.launcher.nodes' is 1; Lightning runs one process per "
                                                        "SLURM task, so make them equal."),
    (("hydra.launcher.partition=null",), "Config key 'hydra.launcher.partition' is null, but the cluster has no "
                                         "default partition; choose one of debug, long."),
    (("hydra.launcher.partition=nope",), "Config key 'hydra.launcher.partition' is 'nope', but the cluster's "
                                         "partitions are debug, long; choose one of them."),
    (("trainer.devices=5",), "Config key 'hydra.launcher.tasks_per_node' is 5, but the nodes of partition 'debug' "
                             "have at most 4 CPUs; lower it (and trainer.devices with it)."),
    (("trainer.devices=2", "hydra.launcher.cpus_per_task=3"), "Config key 'hydra.launcher.cpus_per_task' is 3: 2 "
                                                              "task(s) per node x 3 = 6 CPUs, but the nodes of "
                                                              "partition 'debug' have at most 4; lower it."),
    (("hydra.launcher.gpus_per_node=1",), "Config key 'hydra.launcher.gpus_per_node' is 1, but the nodes of "
                                          "partition 'debug' have at most 0 GPUs; lower it (0 or null for CPU jobs), "
                                          "or choose a GPU partition."),
    (("hydra.launcher.mem_gb=8",), "Config key 'hydra.launcher.mem_gb' is 8, but the nodes of partition 'debug' have "
                                   "at most 7 GB of memory; lower it."),
])
def test_requests_that_no_partition_node_or_trainer_setting_meets_stop_with_their_sentence(overrides, sentence):
    """The same checks as the cluster test above (which skips without root), on a made-up cluster: 8000 MB is 7 GB,
    not 8 (SLURM's GB is 1024 MB)."""
    cluster = {"debug": Partition("debug", cpus=4, memory_mb=8000, gpus=0, default=False, nodes=1),
               "long": Partition("long", cpus=4, memory_mb=8000, gpus=0, default=False, nodes=1)}
    check_slurm_request(compose_launcher("trainer=cpu", "hydra.launcher.mem_gb=7"), cluster)
    with pytest.raises(ConfigError) as error:
        check_slurm_request(compose_launcher("trainer=cpu", *overrides), cluster)
    assert str(error.value) == sentence


@pytest.mark.parametrize(("strategy", "method"), [("ddp_spawn_find_unused_parameters_true", "spawn"),
                                                  ("ddp_notebook", "fork")])
def test_every_strategy_name_that_starts_its_own_processes_stops_before_submission(strategy, method):
    with pytest.raises(ConfigError, match=rf"^Config key 'trainer.strategy' starts its DDP processes itself "
                                          rf"\({method}\), but on SLURM"):
        check_slurm_request(compose_launcher("trainer=cpu", f"++trainer.strategy={strategy}"), debug_partition())


def test_a_strategy_object_without_a_start_method_is_started_by_srun():
    """DDPStrategy's start_method defaults to popen: each SLURM task is one rank."""
    launcher = compose_launcher("trainer=ddp_sim", "~trainer.strategy.start_method")
    check_slurm_request(launcher, debug_partition())


def test_a_cuda_run_that_asks_slurm_for_no_gpus_stops_before_submission():
    with pytest.raises(ConfigError, match=r"trainer.accelerator is 'cuda' with trainer.devices=1, a GPU for each task "
                                          r"of a node, so the job would find no GPUs there"):
        check_slurm_request(compose_launcher("trainer=cpu", "trainer.accelerator=cuda", "hydra.launcher.partition=gpu"),
                            GPU_NODES)


@pytest.mark.parametrize(("overrides", "sentence"), [
    (("trainer=cpu", "+hydra.launcher.gres=gpu:1"), "Config key 'hydra.launcher.gres' is 'gpu:1', but the nodes of "
     "partition 'debug' have at most 0 GPUs"),
    (("trainer=cpu", "hydra.launcher.gpus_per_task=1"), "Config key 'hydra.launcher.gpus_per_task' is 1 (x 1 tasks per "
     "node = 1), but the nodes of partition 'debug' have at most 0 GPUs"),
])
def test_gpus_asked_for_through_gres_or_per_task_are_checked_against_the_partitions(overrides, sentence):
    """Only gpus_per_node was: sbatch then refused them with submitit's traceback ("Invalid generic resource")."""
    with pytest.raises(ConfigError) as refused:
        check_slurm_request(compose_launcher(*overrides), debug_partition())
    assert str(refused.value).startswith(sentence), refused.value


@pytest.mark.parametrize(("gres", "gpus"), [("gpu", 1), ("gpu:a100", 1), ("gpu:3", 3), ("gpu:a100:2,gpu:v100:1", 3),
                                            ("shard:4", 0), (None, 0)])
def test_a_gres_without_a_count_is_one_gpu_as_slurm_reads_it(gres, gpus):
    assert gres_gpus(gres) == gpus


def test_null_memory_leaves_it_to_slurms_default():
    """submitit leaves a null out of the sbatch script: the partition's default memory applies."""
    check_slurm_request(compose_launcher("trainer=cpu", "hydra.launcher.mem_gb=null"), debug_partition())


def test_a_sweeps_jobs_are_checked_once_per_distinct_trainer_or_launcher_request(tmp_path):
    """Swept config groups count (trainer=cpu,ddp_sim sets devices), other keys (seed) do not."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("train", ["hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path}", *LAUNCHER],
                         return_hydra_config=True)
        with open_dict(config):
            config.hydra.overrides.task = [*LAUNCHER, "trainer=cpu,ddp_sim", "seed=1,2"]
        requests = requests_of_the_jobs(config)
        assert [(job.hydra.job.num, job.trainer.devices) for job in requests] == [(0, 1), (2, 2)]
        config.hydra.overrides.task = [*LAUNCHER, "seed=1,2"]
        assert requests_of_the_jobs(config) == [config]


def test_only_the_slurm_launcher_is_checked_against_the_cluster():
    assert launches_on_slurm(compose_launcher())
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert not launches_on_slurm(compose("train", ["hydra/launcher=local"], return_hydra_config=True))


def test_a_slurm_run_without_m_stops_instead_of_training_here(tmp_path, data_root):
    """Hydra uses a launcher only for a multirun: without -m, hydra/launcher=slurm would train on this machine."""
    common = ("hydra/launcher=slurm", "hydra.launcher.partition=nope", "debug=limit", f"paths.data_dir={data_root}",
              "callbacks.progress_bar.refresh_rate=0")
    result = run_cli("train.py", *common, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "Config error: Config group 'hydra/launcher' is slurm, but a launcher runs only the jobs of a sweep (-m); add "
        "-m to submit this run to SLURM, or drop hydra/launcher=slurm to run it here.")
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "results.json").exists()
    for look in ("--cfg", "job"), ("--help",):  # these start no run: they still show the config and the help
        shown = run_cli("train.py", *common, *look)
        assert shown.returncode == 0 and "limit_train_batches: 3" in shown.stdout, shown.stderr[-3000:]


def test_without_a_reachable_cluster_the_launcher_stops_with_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo at all
    with pytest.raises(ConfigError, match=r"SLURM's commands \(sinfo, sbatch\) are not on PATH"):
        query_partitions()
    sinfo = shutil.which("sinfo", path=SEARCH_PATH)
    if sinfo:  # installed (e.g. by the cluster tests): point it at a controller that is down
        conf = tmp_path / "slurm.conf"
        conf.write_text("ClusterName=down\nSlurmctldHost=localhost\nSlurmctldPort=1\nMessageTimeout=1\nTCPTimeout=1\n"
                        "NodeName=localhost CPUs=1\nPartitionName=debug Nodes=localhost\n")
        monkeypatch.setenv("PATH", str(Path(sinfo).parent))
        monkeypatch.setenv("SLURM_CONF", str(tmp_path / "stopped" / "slurm.conf"))
        with pytest.raises(ConfigError, match=r"^SLURM_CONF is .*/stopped/slurm.conf, but that file does not exist"):
            query_partitions()
        monkeypatch.setenv("SLURM_CONF", str(conf))
        with pytest.raises(ConfigError, match=r"^hydra/launcher=slurm cannot reach a SLURM controller \(.*connect"):
            query_partitions()
        (tmp_path / "empty.conf").write_text("")  # sinfo's own lines start 'sinfo: ' here: one is kept, not two
        monkeypatch.setenv("SLURM_CONF", str(tmp_path / "empty.conf"))
        with pytest.raises(ConfigError, match=r"cannot reach a SLURM controller \(sinfo: fatal: Unable to process"):
            query_partitions()


def test_start_without_root_and_stop_without_a_cluster_stop_with_one_sentence(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert slurm_cluster_cli(["start"]) == 2
    assert capsys.readouterr().err == ("Cannot start a SLURM cluster here: a throwaway SLURM cluster needs root "
                                       "(slurmd runs the jobs).\n")
    assert slurm_cluster_cli(["stop", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"No cluster started by `start` in {tmp_path} (no pids.json there).\n"


@pytest.mark.parametrize("argv", [["start", "now"], ["stop"], ["restart"]])
def test_the_cluster_command_refuses_other_words_with_its_usage_and_starts_nothing(monkeypatch, capsys, argv):
    monkeypatch.setattr(SlurmCluster, "start", lambda: pytest.fail("a cluster was started"))  # `start now` started one
    assert slurm_cluster_cli(argv) == 2
    assert capsys.readouterr().err == (f"usage: python -m framework.slurm_cluster start | stop <directory> (given: "
                                       f"{' '.join(argv)}; start takes nothing more, stop the cluster directory that "
                                       f"start printed)\n")


def write_task_logs(folder: Path, job_id: str, *stderr_texts: str) -> None:
    folder.mkdir(parents=True)
    for task, text in enumerate(stderr_texts):
        (folder / f"{job_id}_{task}_log.err").write_text(text)


def test_a_job_stopped_by_a_failed_task_is_the_tasks_sentence_and_exit_code_2(tmp_path, capsys):
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from framework.entry_point import _reporting_hydra_refusals

    folder = tmp_path / ".submitit" / "12_3"
    write_task_logs(folder, "12_3", "srun: error: localhost: task 2: Exited with exit code 2\n",
                    "Seed set to 1\n", "Config error: Config key 'x' is 1, but it must be 2.\nmore\n")
    errors = [UncompletedJobError(f"Job 12_3 (task: 0) with path {folder}/12_3_0_result.pkl\nhas not produced any "
                                  f"output (state: FAILED)"),
              FailedJobError(f"Job (task=2) failed during processing with trace:\n...\nor at paths:\n"
                             f"  - {folder}/12_3_2_log.err\n  - {folder}/12_3_2_log.out")]
    for error in errors:
        with pytest.raises(SystemExit) as stop:
            _reporting_hydra_refusals(lambda error=error: (_ for _ in ()).throw(error))
        assert stop.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"The SLURM job whose logs are in {folder} stopped when its task 2 failed (srun ended the others, which "
            f"were waiting for it); task 2 said:", "Config error: Config key 'x' is 1, but it must be 2."]
    # a bug: no sentence in any log; the traceback stays (exit code 1), after a line that says where the logs are
    (folder / "12_3_2_log.err").write_text("Traceback (most recent call last):\nZeroDivisionError: division by zero\n")
    with pytest.raises(UncompletedJobError):
        _reporting_hydra_refusals(lambda: (_ for _ in ()).throw(errors[0]))
    assert capsys.readouterr().err.startswith(f"The SLURM job whose logs are in {folder} stopped when its task 2 "
                                              f"failed; its log has the traceback.")  # srun's line in task 0's log


def test_a_job_that_scancel_stopped_is_its_stop_sentence_and_exit_code_143(tmp_path, capsys):
    """scancel (or a preemption without requeue) stops a job with SIGTERM: its tasks say so, and the launching command
    reported a failed task, a traceback and exit code 1."""
    from submitit.core.utils import UncompletedJobError

    from framework.entry_point import _reporting_hydra_refusals

    folder = tmp_path / ".submitit" / "14_0"
    stopped = (f"Stopped by SIGTERM (sweep directory: {tmp_path}; a run goes on from its last checkpoint when the "
               f"same command is given again with ckpt_path=auto).")
    write_task_logs(folder, "14_0", f"Seed set to 1\n{stopped}\n", f"{stopped}\n")
    error = UncompletedJobError(f"Job 14_0 (task: 0) with path {folder}/14_0_0_result.pkl\nhas not produced any "
                                f"output (state: CANCELLED)")
    with pytest.raises(SystemExit) as stop:
        _reporting_hydra_refusals(lambda: (_ for _ in ()).throw(error))
    assert stop.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.splitlines() == [
        f"The SLURM job whose logs are in {folder} was stopped; task 0 said:", stopped]


def test_a_slurm_sweeps_launching_command_stopped_says_its_jobs_go_on(monkeypatch, capsys):
    """Ctrl+C (or SIGTERM) stops the command that launched a SLURM sweep, not the jobs it submitted: it told the
    user to give the same command again, which started a second job into each running one's folder."""
    from framework.entry_point import run_entry_point
    from framework.stopping import remember_the_sweep

    def launcher_waiting_for_its_jobs():
        remember_the_sweep("train", "/sweeps/study", None, jobs_on_slurm=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "hydra/launcher=slurm", "hydra.sweep.dir=/sweeps/study"])
    with pytest.raises(SystemExit) as stop:
        run_entry_point(launcher_waiting_for_its_jobs)
    assert stop.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err.splitlines()[-1] == (
        "Stopped by SIGINT (sweep directory: /sweeps/study; its jobs go on running on the cluster: squeue lists them "
        "and scancel stops them; a job stopped there goes on from its last checkpoint when the same command is given "
        "again with ckpt_path=auto).")


def stand_in_scontrol(folder: Path, restarts: int, requeue_refused: bool = False) -> str:
    """PATH with an ``scontrol`` first that records each call's arguments in ``<folder>/scontrol_calls``, shows the
    job with ``restarts`` restarts as SLURM's does, and requeues it (exit code 0) or, ``requeue_refused``, not."""
    shown = f"JobId=$3 JobName=train\n   Requeue=1 Restarts={restarts} BatchFlag=1"
    return path_with_stand_in(folder, "scontrol", f'echo "$@" >> {folder}/scontrol_calls\n'
                                                  f'[ "$1" = show ] && echo "{shown}"\n'
                                                  f'[ "$1" = requeue ] && exit {int(requeue_refused)}\nexit 0\n')


@pytest.mark.parametrize(("restarts", "ckpt_path", "how"), [
    (1, "auto", "SLURM has requeued the job, which starts again by itself, from its last checkpoint"),
    (1, None, "SLURM has requeued the job, which starts again by itself; without ckpt_path=auto that start stops at "
              "the files this run left, and the same command given again with ckpt_path=auto continues the run"),
    (0, "auto", "a run goes on from its last checkpoint when the same command is given again with ckpt_path=auto"),
])
def test_a_job_stopped_as_slurm_requeues_it_says_that_it_starts_again_by_itself(monkeypatch, capsys, tmp_path,
                                                                                 restarts, ckpt_path, how):
    """`scontrol requeue` (an administrator, a preemption, submitit at the time limit) stops a job with SIGTERM and
    starts it again: its sentence told the user to give the command again. SLURM counts the restart as it requeues;
    a scancel (the last case) leaves the count as the job started with."""
    from framework import stopping

    monkeypatch.setenv("PATH", stand_in_scontrol(tmp_path, restarts))
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "hydra/launcher=slurm", "hydra.sweep.dir=/sweeps/study"])
    monkeypatch.setattr(stopping, "job", stopping.JobRecord(started=True, script="train", sweep_dir="/sweeps/study",
                                                            ckpt_path=ckpt_path))
    with pytest.raises(SystemExit) as stop:
        stopping.stopped_by(signal.SIGTERM)
    assert stop.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.splitlines() == [f"Stopped by SIGTERM (sweep directory: /sweeps/study; {how})."]
    assert (tmp_path / "scontrol_calls").read_text() == "show job 4321\n"


class CheckpointableJob:
    """A submitted function that submitit may requeue (it has ``checkpoint``), as Hydra's submitit launcher."""

    def __call__(self) -> None:
        pass

    def checkpoint(self):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


@pytest.mark.parametrize(("timeouts_left", "requeue_refused", "not_requeued_because"), [
    (3, False, None), (0, False, "timed-out too many times."),
    (3, True, "Command '['scontrol', 'requeue', '4321']' returned non-zero exit status 1."),
])
def test_submitits_time_limit_signal_requeues_the_job_and_leaves_its_stop_to_slurms_sigterm(
        monkeypatch, caplog, tmp_path, timeouts_left, requeue_refused, not_requeued_because):
    """SLURM sends SIGUSR2 before the time limit; submitit's handler requeued the job and then exited in the middle of
    a step (exit code 255, no sentence; a DDP job's other ranks failed with a traceback). The requeue stays, and the
    job trains on until the SIGTERM with which SLURM carries the requeue out. A job that timed out its
    max_num_timeout times, or that SLURM would not requeue, trains on until SLURM stops it at the limit."""
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.slurm.slurm import SlurmJobEnvironment

    from framework.stopping import sigterm_stops_a_submitit_job

    monkeypatch.setenv("PATH", stand_in_scontrol(tmp_path, restarts=0, requeue_refused=requeue_refused))
    for key, value in {"SLURM_JOB_ID": "4321", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}.items():
        monkeypatch.setenv(key, value)
    delayed = DelayedSubmission(CheckpointableJob())
    # A limit of 0 minutes has passed at once: submitit takes the signal for its time limit's, not a preemption's.
    delayed._timeout_min, delayed._timeout_countdown = 0, timeouts_left
    paths = JobPaths(tmp_path / "submitit", job_id="4321")
    paths.folder.mkdir(parents=True)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    try:
        SlurmJobEnvironment()._handle_signals(paths, delayed)  # as submitit's job process does before the job runs
        sigterm_stops_a_submitit_job()
        with caplog.at_level("INFO", logger="submitit"):
            signal.raise_signal(signal.SIGUSR2)  # no exit, here or later
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    calls = (tmp_path / "scontrol_calls").read_text() if (tmp_path / "scontrol_calls").exists() else ""
    assert calls == ("requeue 4321\n" if timeouts_left else "")
    assert paths.submitted_pickle.exists()  # submitit's pickle of the job, which a next start would run
    warnings = [message for message in caplog.messages if "trains on" in message]
    assert warnings == ([f"Job not requeued because: {not_requeued_because} The job trains on until SLURM stops it."]
                        if not_requeued_because else [])


def test_a_job_is_taken_for_requeued_only_where_scontrol_shows_more_restarts_than_it_started_with(monkeypatch,
                                                                                                  tmp_path):
    """Outside a SLURM job scontrol is not asked; a first start has no SLURM_RESTART_COUNT (SLURM sets it once the
    job has restarted); an scontrol that does not answer in time is no requeue."""
    from framework.stopping import requeued_by_slurm

    monkeypatch.setenv("PATH", stand_in_scontrol(tmp_path, restarts=1))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert not requeued_by_slurm() and not (tmp_path / "scontrol_calls").exists()
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    assert requeued_by_slurm()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert not requeued_by_slurm()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")

    def hung(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hung)
    assert not requeued_by_slurm()


def test_a_sweeps_job_remembers_its_folders_tasks_and_ckpt_path_for_its_stop_sentence(monkeypatch, capsys, tmp_path):
    """What reporting_user_errors hands on from train.py's config: a requeued job given ckpt_path=auto goes on from
    its checkpoint by itself, and the sentence names its sweep."""
    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from framework import stopping

    monkeypatch.setenv("PATH", stand_in_scontrol(tmp_path, restarts=1))
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "ckpt_path=auto"])
    monkeypatch.setattr(stopping, "job", stopping.JobRecord(started=True))
    hydra = OmegaConf.structured(HydraConf)  # Hydra's record of a sweep's job of train.py
    hydra.mode, hydra.sweep.dir, hydra.runtime.output_dir = RunMode.MULTIRUN, "/sweeps/study", "/sweeps/study/0"
    hydra.runtime.choices = {"trainer": "default"}
    HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra}))
    try:
        stopping.remember_the_job(["table", "mi_lr_study"], ckpt_path="auto")
    finally:
        HydraConfig.instance().cfg = None
    assert (stopping.job.script, stopping.job.run_dir, stopping.job.evaluate_tasks) == (
        "train", "/sweeps/study/0", ["table", "mi_lr_study"])
    with pytest.raises(SystemExit):
        stopping.stopped_by(signal.SIGTERM)
    assert capsys.readouterr().err == ("Stopped by SIGTERM (sweep directory: /sweeps/study; SLURM has requeued the "
                                       "job, which starts again by itself, from its last checkpoint).\n")


def test_an_evaluate_job_stopped_as_slurm_requeues_it_is_told_no_ckpt_path(monkeypatch, capsys, tmp_path):
    """ckpt_path=auto is train.py's key: evaluate.py has no checkpoint to go on from."""
    from framework import stopping

    monkeypatch.setenv("PATH", stand_in_scontrol(tmp_path, restarts=1))
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "runs=/sweeps/study"])
    monkeypatch.setattr(stopping, "job", stopping.JobRecord(started=True, script="evaluate", run_dir="/runs/e"))
    with pytest.raises(SystemExit) as stop:
        stopping.stopped_by(signal.SIGTERM)
    assert stop.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "Stopped by SIGTERM.\n"


def test_a_local_launchers_job_still_there_after_the_grace_is_killed_with_its_task(monkeypatch):
    """The launcher passes SIGTERM on to submitit's controllers (not to its other children) and waits: one that ends
    within the grace, or that was reaped already, is left alone; one still there after it is killed, its task first,
    as SLURM kills a job step, and reaped."""
    from types import SimpleNamespace

    from framework import stopping

    children = {os.getpid(): [103, 101, 102], 101: [201]}
    lines = {101: "python -m submitit.local._local a", 102: "python -m other", 103: "python -m submitit.local._local b"}
    ends = {103: iter([(0, 0), ChildProcessError()]), 101: iter([(0, 0)] * 10)}
    sent, reaped = [], []

    def waitpid(pid: int, options: int):
        if options == 0:
            reaped.append(pid)
            return pid, 9
        if isinstance(answer := next(ends[pid]), Exception):
            raise answer
        return answer

    seconds = iter(range(0, 1000, 10))
    monkeypatch.setattr(stopping, "child_processes", lambda pid: children.get(pid, []))
    monkeypatch.setattr(stopping, "command_line", lambda pid: lines[pid])
    monkeypatch.setattr(stopping, "time", SimpleNamespace(monotonic=lambda: next(seconds), sleep=lambda s: None))
    monkeypatch.setattr(os, "kill", lambda pid, number: sent.append((pid, number)))
    monkeypatch.setattr(os, "waitpid", waitpid)
    stopping.stop_submitit_local_jobs()
    assert sent == [(103, signal.SIGTERM), (101, signal.SIGTERM), (201, signal.SIGKILL), (101, signal.SIGKILL)]
    assert reaped == [101]


def test_submitits_local_executor_keeps_its_own_time_limit_signal(monkeypatch, tmp_path):
    """Only a SLURM job's requeue is left to SLURM's SIGTERM; submitit's local executor requeues as it does."""
    from submitit.core.utils import DelayedSubmission, JobPaths
    from submitit.local.local import LocalJobEnvironment

    from framework.stopping import sigterm_stops_a_submitit_job

    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    try:
        LocalJobEnvironment()._handle_signals(JobPaths(tmp_path, job_id="12"), DelayedSubmission(CheckpointableJob()))
        sigterm_stops_a_submitit_job()
        requeue = signal.getsignal(signal.SIGUSR2)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert requeue.__name__ == "checkpoint_and_try_requeue" and "_exit" not in vars(requeue.__self__)


def test_a_failed_job_of_one_task_is_left_to_hydras_launcher(monkeypatch):
    """Only a task among several leaves others waiting for it; a job of one task reports its failure as any job."""
    from hydra.core.utils import JobReturn, JobStatus

    from framework.hydra_callbacks import FailedTaskEndsItsJob

    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    failed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("a bug"))
    for tasks in ("1", None):
        if tasks is None:
            monkeypatch.delenv("SLURM_NTASKS", raising=False)
        else:
            monkeypatch.setenv("SLURM_NTASKS", tasks)
        FailedTaskEndsItsJob().on_job_end(OmegaConf.create({}), failed)  # no SystemExit


def test_a_failed_task_shuts_its_logging_down_before_it_ends(monkeypatch):
    """os._exit flushes nothing: the task's log file would lose its last lines, the sentence among them."""
    import logging

    from hydra.core.utils import JobReturn, JobStatus

    from framework.hydra_callbacks import FailedTaskEndsItsJob

    order = []
    monkeypatch.setattr(logging, "shutdown", lambda: order.append("logging.shutdown"))
    monkeypatch.setattr(os, "_exit", lambda code: order.append(f"os._exit({code})"))
    monkeypatch.setenv("SLURM_NTASKS", "2")
    FailedTaskEndsItsJob().on_job_end(OmegaConf.create({}), JobReturn(status=JobStatus.FAILED,
                                                                      _return_value=ConfigError("a sentence")))
    assert order == ["logging.shutdown", "os._exit(2)"]


def test_a_multiruns_jobs_import_this_repository_wherever_it_was_started(monkeypatch):
    from framework.hydra_callbacks import JobsImportThisRepository

    monkeypatch.setenv("PYTHONPATH", f"/elsewhere{os.pathsep}")
    JobsImportThisRepository().on_multirun_start(OmegaConf.create({}))
    assert os.environ["PYTHONPATH"] == f"{ROOT}{os.pathsep}/elsewhere"
    JobsImportThisRepository().on_multirun_start(OmegaConf.create({}))  # once only
    assert os.environ["PYTHONPATH"] == f"{ROOT}{os.pathsep}/elsewhere"


def test_of_several_tasks_that_said_a_sentence_the_lowest_is_named(tmp_path):
    from submitit.core.utils import UncompletedJobError

    from framework.entry_point import failed_slurm_task

    folder = tmp_path / ".submitit" / "15_0"
    write_task_logs(folder, "15_0", "Seed set to 1\n", "Data error: task 1's data.\n", "Config error: task 2's key.\n")
    error = UncompletedJobError(f"Job 15_0 (task: 0) with path {folder}/15_0_0_result.pkl\nhas not produced any "
                                f"output (state: FAILED)")
    assert failed_slurm_task(error) == (folder, 1, "Data error: task 1's data.")

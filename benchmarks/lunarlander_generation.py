"""Frames per second of the parallel LunarLander generator vs. a single-process loop, same rollouts, same run.

    uv run python benchmarks/lunarlander_generation.py                 # 16 rollouts x 150 steps, one worker per CPU
    uv run python benchmarks/lunarlander_generation.py --rollouts 32 --repeats 3
    uv run python benchmarks/lunarlander_generation.py --smoke      # does it run? (seconds)

Both paths run ``generate_collection`` on the same rollouts (workers=1 is a plain loop in this
process); the outputs must be byte-identical. Each path runs ``--repeats`` times, interleaved,
and its best time counts (the machine may be shared). Target on 2 cores: ratio >= 1.8.

The CPU seconds of both paths are printed too: their ratio (the parallel path's CPU efficiency)
times the number of workers is the speed-up the workers reach when the cores are free. On a
machine shared by several login sessions the kernel's autogroup scheduler gives each session an
equal share of the CPU, however many processes it runs, so there the measured ratio falls
towards 1 while the efficiency still shows what the parallel path costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.summary import parse_benchmark_args, positive  # noqa: E402
from datamodules.lunarlander import generate_collection  # noqa: E402

SMOKE = {"rollouts": 2, "steps": 5, "repeats": 1}  # --smoke's defaults


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def measure(rollouts: int, steps: int, workers: int) -> tuple[float, float, dict]:
    """(frames per second, CPU seconds, the generated arrays)."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    arrays = generate_collection(rollouts, steps, seed=0, workers=workers, progress=False)
    return rollouts * steps / (time.perf_counter() - started), cpu_seconds() - cpu_started, arrays


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=positive, default=16)
    parser.add_argument("--steps", type=positive, default=150)
    parser.add_argument("--workers", type=positive, default=os.cpu_count(),
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--repeats", type=positive, default=2)
    return parser


def main() -> None:
    args = parse_benchmark_args(build_parser(), SMOKE)

    generate_collection(1, 5, seed=0, workers=1, progress=False)  # imports and first render outside the timing
    single, parallel, single_cpu, parallel_cpu = [], [], [], []
    for _ in range(args.repeats):
        fps, cpu, reference = measure(args.rollouts, args.steps, workers=1)
        single.append(fps)
        single_cpu.append(cpu)
        fps, cpu, arrays = measure(args.rollouts, args.steps, workers=args.workers)
        parallel.append(fps)
        parallel_cpu.append(cpu)
        if any(arrays[key].tobytes() != reference[key].tobytes() for key in reference):
            raise SystemExit("parallel and single-process generation differ")

    ratio = max(parallel) / max(single)
    efficiency = min(single_cpu) / min(parallel_cpu)
    load = os.getloadavg()[0]  # other processes on the machine take cores from both paths
    frames = args.rollouts * args.steps
    print(f"{frames} frames ({args.rollouts} rollouts x {args.steps} steps), best of {args.repeats}")
    for name, runs in (("single process", single), (f"{args.workers} worker processes", parallel)):
        print(f"{name:>18}: {max(runs):8.1f} frames/s  (runs: {', '.join(f'{fps:.1f}' for fps in runs)})")
    print(f"{'ratio':>18}: {ratio:.2f}  (target >= 1.8 on 2 cores; 1-minute load average {load:.1f})")
    print(f"{'CPU seconds':>18}: single {min(single_cpu):.2f}, parallel {min(parallel_cpu):.2f} (all processes); "
          f"efficiency {efficiency:.2f}, x {args.workers} workers = {efficiency * args.workers:.2f} with free cores")
    print(json.dumps({
        "benchmark": "lunarlander_generation", "ratio": round(ratio, 3), "target": ">= 1.8",
        "parallel_fps": round(max(parallel), 1), "single_fps": round(max(single), 1), "workers": args.workers,
        "cpus": os.cpu_count(), "load_average": round(load, 2), "frames": frames,
        "cpu_efficiency": round(efficiency, 3), "estimated_free_core_ratio": round(efficiency * args.workers, 3),
        "baseline": "single-process loop over the same rollouts",
        "threads": args.workers,  # no torch here: the parallelism is the worker processes, one thread each
        **({"smoke": True} if args.smoke else {}),
    }))


if __name__ == "__main__":
    main()

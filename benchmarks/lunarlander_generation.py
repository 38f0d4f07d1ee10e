"""Frames per second of the parallel LunarLander generator vs. a single-process loop, same rollouts, same run.

    uv run python benchmarks/lunarlander_generation.py                 # 16 rollouts x 150 steps, one worker per CPU
    uv run python benchmarks/lunarlander_generation.py --rollouts 32 --repeats 3

Both paths run ``generate_collection`` on the same rollouts (workers=1 is a plain loop in this
process); the outputs must be byte-identical. Each path runs ``--repeats`` times, interleaved,
and its best time counts (the machine may be shared). Target on 2 cores: ratio >= 1.8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from datamodules.lunarlander import generate_collection  # noqa: E402


def frames_per_second(rollouts: int, steps: int, workers: int) -> tuple[float, dict]:
    started = time.perf_counter()
    arrays = generate_collection(rollouts, steps, seed=0, workers=workers, progress=False)
    return rollouts * steps / (time.perf_counter() - started), arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    generate_collection(1, 5, seed=0, workers=1, progress=False)  # imports and first render outside the timing
    single, parallel = [], []
    for _ in range(args.repeats):
        fps, reference = frames_per_second(args.rollouts, args.steps, workers=1)
        single.append(fps)
        fps, arrays = frames_per_second(args.rollouts, args.steps, workers=args.workers)
        parallel.append(fps)
        if any(arrays[key].tobytes() != reference[key].tobytes() for key in reference):
            raise SystemExit("parallel and single-process generation differ")

    ratio = max(parallel) / max(single)
    load = os.getloadavg()[0]  # other processes on the machine take cores from both paths
    frames = args.rollouts * args.steps
    print(f"{frames} frames ({args.rollouts} rollouts x {args.steps} steps), best of {args.repeats}")
    for name, runs in (("single process", single), (f"{args.workers} worker processes", parallel)):
        print(f"{name:>18}: {max(runs):8.1f} frames/s  (runs: {', '.join(f'{fps:.1f}' for fps in runs)})")
    print(f"{'ratio':>18}: {ratio:.2f}  (target >= 1.8 on 2 cores; 1-minute load average {load:.1f})")
    print(json.dumps({
        "benchmark": "lunarlander_generation", "ratio": round(ratio, 3), "target": ">= 1.8",
        "parallel_fps": round(max(parallel), 1), "single_fps": round(max(single), 1), "workers": args.workers,
        "cpus": os.cpu_count(), "load_average": round(load, 2), "frames": frames,
        "baseline": "single-process loop over the same rollouts",
    }))


if __name__ == "__main__":
    main()

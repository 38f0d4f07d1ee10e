"""The LunarLander collection of the feature-prediction paper, generated locally with gymnasium.

A collection is ``rollouts`` episodes of ``steps_per_rollout`` steps each under a uniformly
random policy (the paper: 700 x 150 = 105,000 frames per run; three runs with different
seeds train the autoencoder, train the position probes and test them). Like the authors'
generator, every rollout gets a fresh environment, renders the frame *before* each step and
keeps stepping after the episode has ended (a crashed lander lies still, one that left the
screen keeps flying). Frames (600x400) are resized to ``image_size`` square with antialiased
bicubic resampling, no crop (the aspect ratio is squashed, as the paper's cv2 resize does),
and stored as uint8 together with the 8-dim observation before and after each step.

``terrain_seed`` (not in the paper) resets every rollout of every run with that one seed: the
same terrain and the same initial push, so frames differ only where the random actions took the
lander. Small runs use it to keep their position probes from learning each rollout's terrain.

Label: the lander's (x, y) (``observation[:2]``; x in [-1, 1] across the screen, y = 0 at
pad height) from the observation *after* the step (``label_observation: after``, what the
authors' code records, one step ahead of the image) or *before* it (the pictured state).
``filter_offscreen`` drops frames whose label lies outside -1 <= x <= 1, -0.5 <= y <= 1.5
(the paper filters the probe runs, not the autoencoder run). Validation is the last
``val_fraction`` of the frames, in order, as in the paper (neighbouring frames are
near-duplicates, so a random split would leak).

Generation runs in worker processes (one rollout per task, reassembled in rollout order, so
the bytes do not depend on the number of workers) and is cached in
``<data_dir>/lunarlander/<name keyed by its parameters>.npz``, written atomically and readable
by whoever can read the data directory (framework/atomic.py; the next run removes the temporary
file of a killed writer).

    python train.py data=lunarlander data.rollouts=20                  # a small collection
    python -m datamodules.lunarlander data.rollouts=20                 # its runs only, ahead of time
    python -c "from datamodules.lunarlander import generate_collection; generate_collection(4, 150, seed=0)"
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from datamodules.base import DatasetCorruptError, DatasetMissingError, InMemoryDataModule, validation_count
from framework.atomic import exists, remove_orphans, why_unwritable, write_atomically
from framework.errors import ConfigError

log = logging.getLogger(__name__)

ENV_ID = "LunarLander-v3"  # the current version of the paper's LunarLander-v2
NUM_ACTIONS = 4  # noop, left engine, main engine, right engine
OBSERVATION_SIZE = 8  # x, y, vx, vy, angle, angular velocity, left leg contact, right leg contact
ONSCREEN = {"x": (-1.0, 1.0), "y": (-0.5, 1.5)}  # the paper's bounds of a visible lander
CACHE_VERSION = 1  # bump when the generator's output changes, so old caches are not reused


def run_rollout(task: tuple[int, int, int, int, int | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rollout: (frames uint8 ``[steps, 3, S, S]``, observations before and after each step)."""
    seed, rollout, steps, image_size, terrain_seed = task
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: rgb_array renders off-screen anyway
    import gymnasium as gym
    from PIL import Image

    rng = np.random.default_rng([seed, rollout])  # independent of how rollouts are spread over workers
    env = gym.make(ENV_ID, render_mode="rgb_array", disable_env_checker=True).unwrapped  # no time limit wrapper
    environment_seed = int(rng.integers(2**31))  # drawn either way: the actions are the same with a fixed terrain
    observation, _ = env.reset(seed=environment_seed if terrain_seed is None else terrain_seed)
    frames = np.empty((steps, image_size, image_size, 3), dtype=np.uint8)
    before = np.empty((steps, observation.size), dtype=np.float32)
    after = np.empty_like(before)
    for step, action in enumerate(rng.integers(NUM_ACTIONS, size=steps)):
        frame = Image.fromarray(env.render()).resize((image_size, image_size), Image.Resampling.BICUBIC)
        frames[step] = np.asarray(frame)
        before[step] = observation
        observation, *_ = env.step(int(action))
        after[step] = observation
    env.close()
    return frames.transpose(0, 3, 1, 2), before, after


def generate_collection(rollouts: int, steps: int, seed: int, image_size: int = 64, workers: int | None = None,
                        progress: bool = True, terrain_seed: int | None = None) -> dict[str, np.ndarray]:
    """Generate a collection in ``workers`` processes (``None``: one per CPU; 1: in this process).

    Returns ``images`` uint8 ``[rollouts * steps, 3, S, S]`` and ``before`` / ``after`` float32
    observations ``[rollouts * steps, 8]``; the same arguments always give the same bytes.
    """
    from tqdm import tqdm

    workers = min(workers or os.cpu_count() or 1, rollouts)
    tasks = [(seed, rollout, steps, image_size, terrain_seed) for rollout in range(rollouts)]
    frames = rollouts * steps
    arrays = {"images": np.empty((frames, 3, image_size, image_size), dtype=np.uint8),  # filled in place: one copy
              "before": np.empty((frames, OBSERVATION_SIZE), dtype=np.float32),
              "after": np.empty((frames, OBSERVATION_SIZE), dtype=np.float32)}
    bar = tqdm(total=rollouts * steps, desc=f"LunarLander seed {seed}", unit="frame", disable=not progress)
    pool = rollout_pool(workers) if workers > 1 else None
    try:
        results = pool.imap(run_rollout, tasks) if pool else map(run_rollout, tasks)  # in rollout order
        for rollout, parts in enumerate(results):
            for array, part in zip(arrays.values(), parts, strict=True):
                array[rollout * steps : (rollout + 1) * steps] = part
            bar.update(steps)
        if pool:
            pool.close()  # the workers leave once the queue is empty
            pool.join()
    finally:
        bar.close()
        if pool:
            pool.terminate()
    return arrays


def rollout_pool(workers: int) -> multiprocessing.pool.Pool:
    """``workers`` processes, forked where the platform can (they start at once and inherit the imports; spawn
    would import torch and Lightning again), each with SIGTERM's default action and SIGINT ignored."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers, initializer=stop_as_the_pool_says)


def stop_as_the_pool_says() -> None:
    """A forked worker inherits its parent's Python signal handlers. Inside a fit that is Lightning's SIGTERM handler,
    which only notes the signal, so the SIGTERM with which ``Pool.terminate`` stops its workers was noted and
    ignored by a worker waiting for a task, and the run waited for it for good (seen in the test suite). Ctrl+C
    reaches the whole process group: the parent stops the pool, the workers print no tracebacks of their own."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def onscreen(positions: np.ndarray) -> np.ndarray:
    """Mask of (x, y) positions inside the paper's visible area."""
    (x_low, x_high), (y_low, y_high) = ONSCREEN["x"], ONSCREEN["y"]
    x, y = positions[:, 0], positions[:, 1]
    return (x >= x_low) & (x <= x_high) & (y >= y_low) & (y <= y_high)


def save_atomically(path: Path, arrays: dict[str, np.ndarray], readable_like: Path | None = None) -> None:
    """Write ``.npz`` through a locked temporary file in the same folder (framework/atomic.py), readable like
    ``readable_like`` (the data directory)."""
    write_atomically(path, lambda file: np.savez(file, **arrays), readable_like)


class LunarLanderDataModule(InMemoryDataModule):
    """Lander images with (x, y) regression targets; ``train_seed`` / ``test_seed`` pick the runs.

    Args:
        rollouts, steps_per_rollout: size of each run (the paper: 700 x 150).
        train_seed: run of the fit stages (train + the last ``val_fraction`` as val).
        test_seed: run of the test stage.
        image_size: side of the stored square frames.
        terrain_seed: one environment seed for every rollout of every run (``None``: a fresh one per rollout).
        label_observation: ``after`` (the authors' code) or ``before`` the step.
        filter_offscreen: drop frames whose label lies outside the visible area.
        generation_workers: processes generating a missing run (``None``: one per CPU).
        progress: show a progress bar while generating.
    """

    num_classes = 0  # a regression target: (x, y)

    def __init__(self, rollouts: int = 700, steps_per_rollout: int = 150, train_seed: int = 1, test_seed: int = 2,
                 image_size: int = 64, label_observation: str = "after", filter_offscreen: bool = True,
                 generation_workers: int | None = None, progress: bool = True, terrain_seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if label_observation not in ("before", "after"):
            raise ConfigError(f"Config key 'data.label_observation' is {label_observation!r}, "
                              f"but it must be 'before' or 'after'.")
        if terrain_seed is not None and not (type(terrain_seed) is int and terrain_seed >= 0):  # a bool is no seed
            raise ConfigError(f"Config key 'data.terrain_seed' is {terrain_seed!r}, but it must be null (a fresh "
                              f"terrain per rollout) or an integer >= 0 (one terrain for every rollout).")
        if train_seed == test_seed:
            raise ConfigError(f"Config keys 'data.train_seed' and 'data.test_seed' are both {train_seed}, so the run "
                              f"would be tested on the frames it trained on; give the test run another seed (the "
                              f"paper's: train 1, test 2).")
        self.rollouts, self.steps_per_rollout, self.image_size = rollouts, steps_per_rollout, image_size
        self.image_shape = (3, image_size, image_size)
        self.seeds = {"train": train_seed, "test": test_seed}
        self.label_observation, self.filter_offscreen = label_observation, filter_offscreen
        self.generation_workers, self.progress, self.terrain_seed = generation_workers, progress, terrain_seed

    def cache_path(self, seed: int) -> Path:
        terrain = "" if self.terrain_seed is None else f"_terrain{self.terrain_seed}"
        name = (f"{ENV_ID}_rollouts{self.rollouts}_steps{self.steps_per_rollout}_seed{seed}{terrain}"
                f"_{self.image_size}px_v{CACHE_VERSION}.npz")
        return self.data_dir / "lunarlander" / name

    def expected_files(self) -> list[Path]:
        return [self.cache_path(seed) for seed in dict.fromkeys(self.seeds.values())]

    def read_cache(self, path: Path) -> dict[str, np.ndarray] | None:
        """The cached run, or ``None`` when it is missing or does not hold what its name promises."""
        if not exists(path):
            return None
        if not path.is_file():  # found before generating, whose atomic rename would fail minutes later
            raise DatasetCorruptError(f"{path} is a folder where the LunarLander frames are cached; move it away, "
                                      f"or point data.data_dir= or DATA_DIR at another folder.")
        frames = self.rollouts * self.steps_per_rollout
        try:
            with np.load(path) as archive:
                arrays = {key: archive[key] for key in ("images", "before", "after")}
        except Exception as error:  # a truncated or foreign file: zipfile, pickle and value errors
            log.warning(f"{path} is unreadable ({type(error).__name__}); generating it again.")
            return None
        if arrays["images"].shape != (frames, 3, self.image_size, self.image_size) or len(arrays["after"]) != frames:
            log.warning(f"{path} holds {arrays['images'].shape} images, not the {frames} its name promises; "
                        f"generating it again.")
            return None
        return arrays

    def generate(self, seed: int) -> dict[str, np.ndarray]:
        path = self.cache_path(seed)
        log.info(f"Generating {path.name} ({self.rollouts} rollouts x {self.steps_per_rollout} steps)")
        arrays = generate_collection(self.rollouts, self.steps_per_rollout, seed, self.image_size,
                                     self.generation_workers, self.progress, self.terrain_seed)
        save_atomically(path, arrays, readable_like=self.data_dir)
        return arrays

    def collection(self, seed: int) -> dict[str, np.ndarray]:
        """The run with this seed, from the cache or generated (and cached) now."""
        arrays = self.read_cache(self.cache_path(seed))
        return self.generate(seed) if arrays is None else arrays

    def prepare_data(self) -> None:
        """Generate missing runs once per node, before every rank's ``setup`` reads them; clear dead writers' files."""
        for seed in dict.fromkeys(self.seeds.values()):
            remove_orphans(self.cache_path(seed), of_any_file=True)
            if self.read_cache(self.cache_path(seed)) is None:  # missing, or unreadable: generated again here
                if reason := why_unwritable(self.cache_path(seed).parent):  # before minutes of generation
                    raise DatasetMissingError(f"LunarLander frames cannot be cached in {self.cache_path(seed).parent}, "
                                              f"as {reason}; point data.data_dir= or DATA_DIR at a folder you can "
                                              f"write.")
                self.generate(seed)

    def check_files(self) -> None:
        """Nothing to download: a missing run is generated when it is loaded."""

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = self.collection(self.seeds[split])
        positions = arrays[self.label_observation][:, :2]
        keep = onscreen(positions) if self.filter_offscreen else np.ones(len(positions), dtype=bool)
        return torch.from_numpy(arrays["images"][keep]), torch.from_numpy(np.ascontiguousarray(positions[keep]))

    def train_val_indices(self, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
        num_val = validation_count(num_items, self.val_fraction)
        return torch.arange(num_items - num_val), torch.arange(num_items - num_val, num_items)


def generate_ahead(overrides: list[str]) -> list[Path]:
    """Generate the runs ``python train.py data=lunarlander <overrides>`` reads, where missing; their paths.

    Before a sweep: otherwise each of its jobs that finds a run missing generates the same frames.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf import open_dict

    from framework.command_line import hydra_refusal
    from framework.compose import compose_with_hydra
    from framework.construction import instantiate_node
    from framework.validate import check_rules

    try:
        swept = [override for override in OverridesParser.create().parse_overrides(overrides)
                 if override.is_sweep_override()]
        if swept:  # Hydra's sentence would say to add -m, which this command does not take
            raise ConfigError(f"Config key '{swept[0].key_or_group}' is given the sweep "
                              f"{swept[0].input_line.split('=', 1)[1]}, but this command generates the runs of one "
                              f"config; give one value at a time (a command for each).")
        cfg = compose_with_hydra(["data=lunarlander", *overrides])
    except (ConfigCompositionException, OverrideParseException) as error:
        raise hydra_refusal(error) from None
    check_rules(cfg)  # as train.py does: data.rollouts=0 would cache an empty run
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = os.getcwd()  # paths.data_dir's default, as for train.py started here
    HydraConfig.instance().set_config(cfg)
    datamodule = instantiate_node(cfg.data, "data")
    datamodule.prepare_data()
    return datamodule.expected_files()


USAGE = ("usage: python -m datamodules.lunarlander [data.<key>=<value> ...]: generates the runs that `python "
         "train.py data=lunarlander` with the same data.* overrides reads (conf/data/lunarlander.yaml lists the keys), "
         "where missing, and prints their paths")

if __name__ == "__main__":
    from framework.entry_point import reporting_user_errors_outside_a_job

    if flags := [arg for arg in sys.argv[1:] if arg.startswith("-")]:  # --help, or a flag of train.py's (-m)
        helped = flags == ["--help"] or flags == ["-h"]
        print(USAGE if helped else f"{USAGE} (given: {' '.join(flags)}, which it does not take)",
              file=sys.stdout if helped else sys.stderr)
        raise SystemExit(0 if helped else 2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with reporting_user_errors_outside_a_job():
        print("\n".join(f"run: {path}" for path in generate_ahead(sys.argv[1:])))

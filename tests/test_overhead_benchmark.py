"""benchmarks/overhead.py's bookkeeping: the two paths take turns, each trains every batch once, and each
one's time goes to its own epochs only (the ratio is only as good as this accounting). The clock is scripted:
nothing here measures time."""

from __future__ import annotations

import pytest
import torch

from benchmarks import overhead
from benchmarks.overhead import BATCH, VAL_FRACTION, Interleaved, PlainLoop, framework_run, lightning_run


class ScriptedClock:
    """Time moves only when the test (the framework's work) or the recording plain loop moves it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RecordingPlainLoop:
    """Charges 0.5 s for an epoch's start and 1 s for each batch it is asked to train."""

    def __init__(self, clock: ScriptedClock):
        self.clock, self.turns = clock, []

    def start_epoch(self) -> None:
        self.clock.now += 0.5

    def train_batches(self, first: int, count: int) -> None:
        self.turns.append((first, count))
        self.clock.now += 1.0 * count


def test_each_path_is_charged_its_own_seconds_and_the_turns_cover_every_batch():
    clock = ScriptedClock()
    plain = RecordingPlainLoop(clock)
    interleaved = Interleaved(plain, clock, every=4)
    for _epoch in range(2):
        interleaved.on_train_epoch_start(None, None)
        for batch_idx in range(12):
            interleaved.on_train_batch_start(None, None, None, batch_idx)
            clock.now += 2.0  # the framework's batch
        clock.now += 3.0  # its epoch-end hooks: metrics, logging, checkpoints
    interleaved.on_train_end(None, None)

    assert interleaved.framework_seconds == [12 * 2.0 + 3.0] * 2
    assert interleaved.plain_seconds == [0.5 + 12 * 1.0] * 2
    assert plain.turns == [(0, 4), (4, 4), (8, 4)] * 2


def test_the_plain_loop_trains_each_image_once_per_epoch_in_turns():
    plain = PlainLoop(num_train=1_200, device="cpu")  # 1,080 training images: 4 batches of 256 and one of 56
    seen: list[int] = []
    plain.net.register_forward_pre_hook(lambda _module, inputs: seen.append(len(inputs[0])))
    steps = []
    plain.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    plain.start_epoch()
    for first in range(0, 8, 3):  # turns of 3 batches, the last one past the end
        plain.train_batches(first, 3)
    assert len(plain.images) == round(1_200 * (1 - VAL_FRACTION))
    assert seen == [BATCH] * 4 + [1_080 - 4 * BATCH] and len(steps) == 5
    assert sorted(plain.order.tolist()) == list(range(1_080))


def test_in_a_real_framework_run_the_plain_loop_takes_its_turns_at_every_epoch(tmp_path):
    """The callback reaches train() and its hooks fire as Lightning runs the epochs: 1,080 images are 5 batches, so
    turns of 2 start at batches 0, 2 and 4 of each of the 3 epochs (a warm-up and 2 measured ones)."""
    clock = ScriptedClock()
    plain = RecordingPlainLoop(clock)
    interleaved = Interleaved(plain, clock, every=2)
    framework_run(tmp_path, num_train=1_200, epochs=3, device="cpu", interleaved=interleaved)
    assert plain.turns == [(0, 2), (2, 2), (4, 2)] * 3
    assert len(interleaved.framework_seconds) == len(interleaved.plain_seconds) == 3


def test_in_lightnings_barebones_trainer_the_plain_step_trains_each_image_once_per_epoch(monkeypatch):
    """The second reference: the plain loop's own step, data and optimizer run by Lightning's barebones Trainer,
    with the interleaved plain loop taking its turns as in the framework run; here at --batch 300 (1,080 images:
    3 batches of 300 and one of 180)."""
    batches: list[torch.Tensor] = []
    step = PlainLoop.loss
    monkeypatch.setattr(PlainLoop, "loss", lambda self, index: batches.append(index) or step(self, index))
    steps = []
    monkeypatch.setattr(PlainLoop, "__init__", recording_steps(PlainLoop.__init__, steps))
    clock = ScriptedClock()
    plain = RecordingPlainLoop(clock)
    interleaved = Interleaved(plain, clock, every=2)
    lightning_run(num_train=1_200, epochs=3, device="cpu", interleaved=interleaved, batch=300)
    assert plain.turns == [(0, 2), (2, 2)] * 3
    assert [len(index) for index in batches] == [300, 300, 300, 180] * 3
    for epoch in range(3):
        assert sorted(torch.cat(batches[4 * epoch : 4 * epoch + 4]).tolist()) == list(range(1_080))
    assert len(steps) == 12


def recording_steps(init, steps: list):
    """PlainLoop.__init__, then a hook that counts its optimizer's steps."""
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    return wrapped


def test_the_command_line_explains_itself_and_refuses_sizes_that_measure_nothing(capsys):
    with pytest.raises(SystemExit) as helped:
        overhead.parse_args(["--help"])
    assert helped.value.code == 0 and "images made; 90% of them are trained on" in capsys.readouterr().out
    for arguments, said in ((["--batch", "0"], "argument --batch: '0' is not a whole number >= 1"),
                            (["--num-train", "5"], "--num-train 5 trains 4 images, fewer than one turn of --every 8 "
                                                   "batches of --batch 256")):
        with pytest.raises(SystemExit) as refused:
            overhead.parse_args(arguments)
        stderr = capsys.readouterr().err
        assert refused.value.code == 2 and said in stderr, stderr[-2000:]

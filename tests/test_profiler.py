"""The Trainer's default profiler records nothing and costs nothing; a configured one is Lightning's own."""

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import SimpleProfiler

from framework.profiler import UnrecordedProfiler
from train import train


class ProfilerSeen(Callback):
    def on_train_end(self, trainer, pl_module):
        self.profiler = trainer.profiler


def test_an_unset_profiler_is_the_unrecorded_one_and_its_context_nests():
    profiler = UnrecordedProfiler()
    with profiler.profile("outer"), profiler.profile("inner"):  # Lightning nests hooks' profiles
        pass
    assert profiler.profile("a") is profiler.profile("b")  # nothing is built per call
    assert profiler.summary() == ""


def test_train_uses_the_unrecorded_profiler_unless_the_config_names_one(make_cfg):
    seen = ProfilerSeen()
    train(make_cfg("debug=smoke", "logger=none", "test=false"), callbacks=[seen])
    assert type(seen.profiler) is UnrecordedProfiler

    seen = ProfilerSeen()
    train(make_cfg("debug=smoke", "logger=none", "test=false", "+trainer.profiler=simple", run="simple"),
          callbacks=[seen])
    assert isinstance(seen.profiler, SimpleProfiler)
    assert any("training_step" in action for action in seen.profiler.recorded_durations)

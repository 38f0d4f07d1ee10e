"""The Trainer's default profiler records nothing and costs nothing; a configured one is Lightning's own, and
barebones mode, which refuses any, gets none. Batch hooks a callback does not implement are not called."""

import pytest
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import SimpleProfiler

from framework.errors import ConfigError
from framework.profiler import BATCH_HOOKS, UnrecordedProfiler, leave_out_hooks_not_implemented
from framework.training import train


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


def test_barebones_runs_without_our_profiler_and_refuses_a_named_one_in_one_sentence(make_cfg):
    barebones = ["+trainer.barebones=true", "logger=none", "callbacks=none", "trainer.log_every_n_steps=null",
                 "debug=smoke", "test=false"]
    assert train(make_cfg(*barebones))["epochs_completed"] == 1
    # log_every_n_steps=None fits its Optional[int]: the sentence names what Lightning refuses
    with pytest.raises(ConfigError, match=r"^Config key 'trainer.barebones' is True, 'trainer.profiler' is 'simple', "
                                          r"which Lightning's Trainer refuses: .*Profiling"):
        train(make_cfg(*barebones, "+trainer.profiler=simple", run="named"))


class CountsBatches(Callback):
    """Implements one batch hook; is given another as an attribute of its own."""

    def __init__(self):
        self.ends, self.starts = 0, 0
        self.on_train_batch_start = self.count_start

    def count_start(self, trainer, pl_module, batch, batch_idx):
        self.starts += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends += 1


def test_callbacks_get_the_batch_hooks_they_implement_and_the_others_are_passed_by(make_cfg):
    counts, idle = CountsBatches(), Callback()
    leave_out_hooks_not_implemented([counts, idle])
    assert counts.on_train_batch_end is not None and counts.on_train_batch_start is not None
    assert all(getattr(idle, hook) is None for hook in BATCH_HOOKS)
    assert not any(getattr(Callback, hook) is None for hook in BATCH_HOOKS)  # on the instance, not the class

    counts = CountsBatches()
    results = train(make_cfg("debug=limit", "logger=none", "test=false", "trainer.max_epochs=1"), callbacks=[counts])
    batches = 3  # debug=limit's limit_train_batches
    assert results["epochs_completed"] == 1 and counts.ends == counts.starts == batches
    assert counts.on_before_backward is None  # set by train(): Lightning's loop skips what is not callable


def test_a_hook_name_goes_into_the_module_dict_and_everything_else_through_torch(monkeypatch):
    import torch

    from lightning_modules.classifier import ClassificationModule
    from lightning_modules.lenet5 import LeNet5

    module, head = ClassificationModule(net=LeNet5(), optimizer=None), torch.nn.Linear(2, 2)
    through_torch = []
    setattr_of_torch = torch.nn.Module.__setattr__
    monkeypatch.setattr(torch.nn.Module, "__setattr__",
                        lambda self, name, value: (through_torch.append(name), setattr_of_torch(self, name, value)))
    module._current_fx_name = "training_step"
    module.head = head
    assert through_torch == ["head"] and vars(module)["_current_fx_name"] == "training_step"
    assert "head" in module._modules and "_current_fx_name" not in module._modules

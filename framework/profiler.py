"""Lightning's per-batch hook calls, made cheaper: the Trainer's default profiler, and the callbacks' hooks.

Lightning wraps every hook call of every callback (and of the module, strategy and precision plugin) in
``trainer.profiler.profile(name)``: about 100 calls per training batch with the default callbacks. The default
PassThroughProfiler records nothing, yet its ``profile`` is a generator-based context manager, built anew each
time: 0.1-0.3 ms of a 3.6 ms LeNet-5 batch of 8 on the CPUs here, where a GPU step's launches take 2-3 ms.
:class:`UnrecordedProfiler` hands back one shared no-op context. ``+trainer.profiler=simple`` (or advanced,
pytorch) still gets Lightning's own.

Lightning also calls each of the six training-batch hooks on every callback, whether or not its class implements
it, each call building the name ``[Callback]{state_key}.{hook}`` (a repr of the settings, for a checkpoint
callback): 72 calls per batch with the run's 12 callbacks, about 0.6 ms of a 7 ms CPU step of LeNet-5 at a batch of
4. Its loop skips a hook that is not callable, so :func:`leave_out_hooks_not_implemented` sets the batch hooks a
callback's class leaves to Lightning's empty ``Callback`` method to None on that callback.

Around each hook call Lightning also names the hook on the module, twice (``_current_fx_name``, about 40 times a
batch), through torch's ``Module.__setattr__``, which first checks whether the value is a parameter, a module or a
tensor; :class:`HookNameSetDirectly` stores a hook's name as the plain value it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import PassThroughProfiler

NOTHING_RECORDED = nullcontext()  # reusable and re-entrant: it holds no state

# The hooks Lightning calls once or more per batch, all through its callback loop (trainer/call.py
# _call_callback_hooks); on_save_checkpoint and on_load_checkpoint, which it calls directly, are not among them.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
               "on_before_optimizer_step", "on_before_zero_grad", "on_validation_batch_start",
               "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start",
               "on_predict_batch_end")


class UnrecordedProfiler(PassThroughProfiler):
    def profile(self, action_name: str) -> nullcontext:
        return NOTHING_RECORDED


def leave_out_hooks_not_implemented(callbacks: Iterable[Callback]) -> None:
    """Set to None, on each callback, the batch hooks that its class inherits unchanged from ``Callback`` (and that
    the callback was not given as an attribute of its own), so that Lightning's loop passes them by."""
    for callback in callbacks:
        for hook in BATCH_HOOKS:
            if hook not in vars(callback) and getattr(type(callback), hook) is getattr(Callback, hook):
                setattr(callback, hook, None)


class HookNameSetDirectly:
    """Put before ``L.LightningModule`` in a module's bases: Lightning's ``_current_fx_name`` (a hook's name or None)
    goes straight into the instance's ``__dict__``, where ``Module.__setattr__`` would put it after its checks."""

    def __setattr__(self, name: str, value) -> None:
        if name == "_current_fx_name":
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

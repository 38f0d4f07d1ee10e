"""Per-layer learning rates set every epoch from mutual information (Vasudevan 2018, arXiv 1805.07249).

At the start of every training epoch t the callback runs a fixed, class-balanced, seeded
subsample of the training set through the model, captures the output of the configured
layers with forward hooks, estimates I(H_i; Y) for each (Ross's kNN estimator by default, the
paper's KSG as an option; see analysis/mutual_information.py) and I(H_out; Y) of the model's
softmax output (the paper's IHYLL), then sets the learning rate of every optimizer parameter
group for epoch t from the values measured at the starts of epochs t-1 and t (i.e. after epochs
t-2 and t-1). It starts at ``lr_min``. The two policies of the paper's appendix are
:class:`LRPolicy`; the reference IXY is the same estimator's I(X; Y) on the same subsample.

Works with any LightningModule whose single optimizer has one parameter group per layer with
a ``name`` (ClassificationModule's ``param_groups: per_layer``). Logs ``mi/<layer>``,
``mi/ihyll``, ``mi/ixy`` (measured at the start of the epoch the row belongs to) and
``lr/<group>``; writes ``mi_lr.png`` and ``mi_lr_history.json`` into the run directory.

Usage::

    python train.py callbacks=mi_lr callbacks.mi_lr.policy=relative_change
    trainer = L.Trainer(callbacks=[MutualInformationLR(policy="reference", scope="layer")])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from torch.utils.data import DistributedSampler

from analysis.mutual_information import ksg_mi, label_entropy_ceiling, ross_mi
from callbacks.mi_plots import plot_history
from framework.errors import ConfigError
from framework.results import write_json_atomic
from framework.validate import MI_LR, check_arguments


@dataclass(frozen=True)
class LRPolicy:
    """The paper's appendix policies. ``next_lr(lr, [I_{t-2}, I_{t-1}], IXY)`` gives LR_t.

    relative_change: delta = |I_{t-1} - I_{t-2}| / I_{t-1};
        delta > epsilon -> min(lr_max, lr + gamma1 delta), else max(lr_min, lr - gamma2 delta).
    reference: d1 = 1 - I_{t-1} / IXY, d2 = delta;
        d1 > 0 and d2 > epsilon  -> min(lr_max, lr + gamma1 d1)   (below the reference, still rising)
        d1 > 0 and d2 <= epsilon -> max(lr_min, lr - gamma2 d1)   (saturated below the reference)
        d1 <= 0                  -> max(lr_min, lr + gamma3 d1)   (at or above the reference)
    The paper prints the second case's condition as "d1 <= 0 & d2 <= epsilon", the same as its
    fourth case, which would leave "d1 > 0 & d2 <= epsilon" without a rule; a decrease by
    gamma2 d1 only decreases when d1 > 0, so that is the case it must mean. I values below
    ``floor`` are raised to it in the denominators so that the ratios cannot explode.

    ``value_only=True`` (the paper's Figure 5, for a few epochs after a batch-size change) tracks
    the value alone: d1 > 0 -> min(lr_max, lr + gamma1 d1), else max(lr_min, lr + gamma3 d1).
    """

    name: str = "reference"
    lr_min: float = 0.001
    lr_max: float = 0.1
    gamma1: float = 0.1
    gamma2: float = 0.1
    gamma3: float = 0.1
    epsilon: float = 0.01
    floor: float = 1e-3

    def next_lr(self, lr: float, history: list[float], ixy: float, value_only: bool = False) -> float:
        if len(history) < 2:
            return lr
        before, previous = history[-2], history[-1]
        delta = abs(previous - before) / max(previous, self.floor)
        if value_only and self.name == "reference":
            delta = math.inf  # "still rising": only the value relative to IXY decides
        if self.name == "relative_change":
            if delta > self.epsilon:
                return min(self.lr_max, lr + self.gamma1 * delta)
            return max(self.lr_min, lr - self.gamma2 * delta)
        d1 = 1.0 - previous / max(ixy, self.floor)
        if d1 > 0 and delta > self.epsilon:
            return min(self.lr_max, lr + self.gamma1 * d1)
        if d1 > 0:
            return max(self.lr_min, lr - self.gamma2 * d1)
        return max(self.lr_min, lr + self.gamma3 * d1)


def balanced_subsample(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` indices taken round-robin over the classes (a small class gives all it has), seeded."""
    generator = torch.Generator().manual_seed(seed)
    ranked = []  # (rank within its class, class, index): sorting interleaves the classes
    for position, c in enumerate(torch.unique(labels)):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        ranked += [(rank, position, int(index)) for rank, index in enumerate(members)]
    return torch.tensor(sorted(index for _, _, index in sorted(ranked)[:size]))


def as_model_sees_it(trainer: L.Trainer, pl_module: L.LightningModule, batch):
    """A batch after the batch-transfer hooks (the datamodule's, else the module's), on the module's device."""
    hooks = trainer.datamodule if trainer.datamodule is not None else pl_module
    batch = hooks.on_before_batch_transfer(batch, 0)
    batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
    return hooks.on_after_batch_transfer(batch, 0)


def hidden_activation(pl_module: L.LightningModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """The nonlinearity the network applies to its hidden layers' outputs, where it names one (``hidden_activation``,
    e.g. LeNet5's ReLU): the paper's I(H_i; Y) is of a layer's activations, and a hook on a Conv2d or Linear sees
    its pre-activations."""
    named = getattr(getattr(pl_module, "net", pl_module), "hidden_activation", None)
    return named if named is not None else (lambda values: values)


class MutualInformationLR(Callback):
    """Set each parameter group's learning rate every epoch from I(H; Y).

    Args:
        policy: ``relative_change`` or ``reference`` (see :class:`LRPolicy`), or ``none``: only measure
            and log (the fixed-LR and warm-up baselines; an LR scheduler is allowed then).
        scope: ``network`` (every group follows IHYLL) or ``layer`` (each group follows its own
            layer's I(H; Y); every group name must then be a configured layer).
        layers: module names to hook (each must also be a parameter group name); default: every
            named parameter group.
        lr_min, lr_max, gamma1, gamma2, gamma3, epsilon, mi_floor: the policy's constants.
        sample_size, seed: the fixed class-balanced subsample of the training set.
        estimator: ``ross`` (Ross 2014, continuous H vs discrete Y) or ``ksg`` (the paper's KSG
            algorithm 1 between H and the one-hot labels, max norm).
        k, norm, standardize, jitter: the estimator's settings (``norm``: Ross's only).
        output: IHYLL from the ``softmax`` of the model's output (the paper's "output layer
            activations") or from the raw ``logits``; a hooked layer whose output is the model's
            output is measured the same way.
        reference: IXY = ``estimate`` (the estimator's I(X; Y) on the same subsample, as the paper
            does with KSG: a soft bound IHYLL can exceed, which is what cools the rate down),
            ``ceiling`` (psi(N) - <psi(N_c)>: the most Ross's estimator can return, about H(Y); the
            cool-down branch can never fire) or ``tiled`` (the paper's CNN recipe: the input tiled
            ``tiles`` times; with tiles > k that too measures H(Y), not I(X; Y)).
        value_only_from, value_only_epochs: epochs [from, from + epochs) follow the value of IHYLL
            relative to IXY only (``LRPolicy.next_lr(value_only=True)``; the paper's Figure 5 after
            the batch-size change). Only the ``reference`` policy has a value term.
        test_every_epoch: also measure test accuracy after every training epoch (logged as
            ``test/epoch_acc`` and kept as ``test_acc`` in the history), for the paper's "end acc",
            "max acc" and "first obtained at epoch N".
        batch_size: forward-pass batch size of the measurement.
        plot: write mi_lr.png at the end of training (the figures callback sends it to wandb/TensorBoard).
    """

    def __init__(self, policy: str = "reference", scope: str = "network", layers: list[str] | None = None,
                 lr_min: float = 0.001, lr_max: float = 0.1, gamma1: float = 0.1, gamma2: float = 0.1,
                 gamma3: float = 0.1, epsilon: float = 0.01, mi_floor: float = 1e-3, sample_size: int = 1000,
                 seed: int = 0, estimator: str = "ross", k: int = 3, norm: str = "euclidean",
                 standardize: bool = False, jitter: float = 1e-10, output: str = "softmax",
                 reference: str = "estimate", tiles: int = 6, value_only_from: int = 0, value_only_epochs: int = 0,
                 test_every_epoch: bool = False, batch_size: int = 500, plot: bool = True):
        # the rules of callbacks.mi_lr's config keys (framework/validate.py), however the callback is made
        check_arguments(MI_LR, {name: value for name, value in locals().items() if name != "self"})
        if not 0 < lr_min <= lr_max:
            raise ConfigError(f"MutualInformationLR: lr_min={lr_min}, lr_max={lr_max}; need 0 < lr_min <= lr_max.")
        if k >= sample_size:
            raise ConfigError(f"MutualInformationLR: k={k}, but the estimator takes the k nearest neighbours among "
                              f"sample_size={sample_size} images; give callbacks.mi_lr.k below sample_size.")
        self.policy = LRPolicy(policy, lr_min, lr_max, gamma1, gamma2, gamma3, epsilon, mi_floor)
        self.scope, self.layers = scope, list(layers) if layers else None
        self.sample_size, self.seed, self.batch_size, self.plot = sample_size, seed, batch_size, plot
        self.estimator = estimator
        self.settings = dict(k=k, norm=norm, standardize=standardize, jitter=jitter, seed=seed)
        self.output, self.reference, self.tiles = output, reference, tiles
        self.value_only = range(value_only_from, value_only_from + value_only_epochs)
        self.test_every_epoch = test_every_epoch
        self.indices: list[int] | None = None
        self.ixy: float | None = None
        self.history: list[dict] = []  # one record per measurement: epoch, mi, ihyll, ixy, lr, val_acc, test_acc
        self.val_acc: float | None = None  # of the last validation: the next record's
        self.restored = False  # loaded from a checkpoint, before the first batch trained since

    # ---- checks before any training ------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Run before LearningRateMonitor, so that it logs the rates this callback sets.
        monitors = [i for i, c in enumerate(trainer.callbacks) if isinstance(c, LearningRateMonitor)]
        mine = trainer.callbacks.index(self)
        if monitors and monitors[0] < mine:
            trainer.callbacks.insert(monitors[0], trainer.callbacks.pop(mine))
        if stage == "fit" and trainer.datamodule is not None:  # datamodule.setup has run: the training set exists
            dataset = trainer.datamodule.train_dataloader().dataset
            if self.sample_size > len(dataset):
                raise ConfigError(f"MutualInformationLR: sample_size={self.sample_size}, but the training set has "
                                  f"only {len(dataset)} items; give callbacks.mi_lr.sample_size <= {len(dataset)}.")
            classes = len(torch.unique(torch.as_tensor(dataset.targets))) if hasattr(dataset, "targets") else 0
            if self.sample_size < 2 * classes:
                raise ConfigError(f"MutualInformationLR: sample_size={self.sample_size} gives some of the {classes} "
                                  f"classes fewer than two images, and I(H; Y) is estimated within each class; give "
                                  f"callbacks.mi_lr.sample_size >= {2 * classes}.")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.lr_scheduler_configs and self.policy.name != "none":
            raise ConfigError("MutualInformationLR sets the learning rates itself; remove the LR scheduler "
                               "(model.scheduler=null) or the callback, they would overwrite each other.")
        if len(trainer.optimizers) != 1:
            raise ConfigError(f"MutualInformationLR needs exactly one optimizer, got {len(trainer.optimizers)}.")
        if self.test_every_epoch and trainer.datamodule is None:
            raise ConfigError("MutualInformationLR test_every_epoch=true needs a datamodule with a test split.")
        groups = [group.get("name") for group in trainer.optimizers[0].param_groups]
        if None in groups:
            raise ConfigError("MutualInformationLR needs a 'name' on every optimizer parameter group (one group "
                               "per layer, e.g. ClassificationModule with param_groups=per_layer).")
        self.layers = self.layers or groups
        unknown = [layer for layer in self.layers if layer not in groups]
        if unknown:
            raise ConfigError(f"MutualInformationLR: layers {unknown} have no optimizer parameter group of that "
                               f"name; the module's groups are {groups}; use param_groups=per_layer or fix layers.")
        if groups == ["all"]:  # ClassificationModule with param_groups=single
            raise ConfigError("MutualInformationLR sets a learning rate per layer, but model.param_groups=single gives "
                              "the optimizer one group for the whole network; set model.param_groups=per_layer (with "
                              "model=szegedy also model/optimizer=sgd or adam: L-BFGS takes one group).")
        if self.scope == "layer" and set(groups) - set(self.layers):
            raise ConfigError(f"MutualInformationLR scope=layer: groups {sorted(set(groups) - set(self.layers))} "
                               f"have no configured layer to follow; add them to layers or use scope=network.")
        self.modules = {layer: self._find_module(pl_module, layer) for layer in self.layers}

    @staticmethod
    def _find_module(pl_module: L.LightningModule, layer: str) -> torch.nn.Module:
        """The submodule that the parameter group ``layer`` names: the shallowest one of that name (a group is a
        top-level child of the network, ``net.conv1``; a ResNet's blocks have a ``conv1`` of their own too)."""
        paths = [(path.count("."), module) for path, module in pl_module.named_modules()
                 if path == layer or path.endswith("." + layer)]
        matches = [module for depth, module in paths if depth == min(depth for depth, _ in paths)]
        if len(matches) != 1:
            raise ConfigError(f"MutualInformationLR: layer {layer!r} matches {len(matches)} submodules of "
                               f"{type(pl_module).__name__}; give a name that matches exactly one.")
        return matches[0]

    # ---- every epoch ---------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        record = None
        if trainer.is_global_zero:
            record = {**self.measure(trainer, pl_module), "epoch": epoch}
            self.val_acc = None  # an epoch without a validation after it (check_val_every_n_epoch) has none
            groups = trainer.optimizers[0].param_groups
            record["lr"] = ({group["name"]: group["lr"] for group in groups} if self.policy.name == "none"
                            else self.next_lrs(record, [group["name"] for group in groups]))
        record = trainer.strategy.broadcast(record, src=0)  # every replica applies rank 0's rates
        self.history.append(record)
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = record["lr"][group["name"]]
        self.log_record(pl_module, record)
        self.restored = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        """A run continued within an epoch starts no epoch (Lightning calls no on_train_epoch_start): the epoch's
        record, restored from the checkpoint, is logged at its first batch instead."""
        if self.restored and self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            self.log_record(pl_module, self.history[-1])
        self.restored = False

    @staticmethod
    def log_record(pl_module: L.LightningModule, record: dict) -> None:
        metrics = {f"mi/{layer}": value for layer, value in record["mi"].items()}
        metrics |= {"mi/ihyll": record["ihyll"], "mi/ixy": record["ixy"]}
        metrics |= {f"lr/{group}": lr for group, lr in record["lr"].items()}
        for name, value in metrics.items():  # batch_size=1: logged at a batch (a continued run), the epoch's mean of
            pl_module.log(name, value, on_step=False, on_epoch=True, batch_size=1)  # v * 10 / 10 was not v in float32

    def next_lrs(self, record: dict, groups: list[str]) -> dict[str, float]:
        """LR_t of every group from the previous rates and the I series ending with ``record``."""
        if not self.history:
            return {group: self.policy.lr_min for group in groups}
        lrs, value_only = {}, record["epoch"] in self.value_only
        for group in groups:
            series = [r["mi"][group] if self.scope == "layer" else r["ihyll"] for r in (*self.history, record)]
            lrs[group] = self.policy.next_lr(self.history[-1]["lr"][group], series, record["ixy"], value_only)
        return lrs

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        """I(H; Y) of every configured layer and of the output on the fixed subsample."""
        images, labels = self.subsample(trainer, pl_module)
        captured: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}

        def keep(layer):
            return lambda module, inputs, output: captured[layer].append(
                (output[0] if isinstance(output, tuple) else output).detach())

        handles = [module.register_forward_hook(keep(layer)) for layer, module in self.modules.items()]
        was_training = pl_module.training
        pl_module.eval()
        try:
            outputs = [pl_module(images[start:start + self.batch_size])
                       for start in range(0, len(images), self.batch_size)]
        finally:
            pl_module.train(was_training)
            for handle in handles:
                handle.remove()
        logits = torch.cat(outputs)
        output = logits.softmax(dim=1) if self.output == "softmax" else logits
        activate = hidden_activation(pl_module)
        activations = {layer: output if torch.equal(parts[0], outputs[0]) else activate(torch.cat(parts))
                       for layer, parts in captured.items()}
        mi = {layer: self.mi(values, labels) for layer, values in activations.items()}
        same_as_output = [layer for layer, values in activations.items() if values is output]
        ihyll = mi[same_as_output[0]] if same_as_output else self.mi(output, labels)
        if self.ixy is None:
            self.ixy = self.reference_mi(images, labels)
        return {"mi": mi, "ihyll": ihyll, "ixy": self.ixy, "val_acc": self.val_acc}

    def mi(self, values: torch.Tensor, labels: torch.Tensor) -> float:
        """I(values; labels) by the configured estimator."""
        if self.estimator == "ksg":
            onehot = torch.nn.functional.one_hot(labels.long()).to(values.device, torch.float64)
            return ksg_mi(values, onehot, **{**self.settings, "norm": "max"})  # KSG's own (Chebyshev) norm
        return ross_mi(values, labels, **self.settings)

    def reference_mi(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        if self.reference == "ceiling":
            return label_entropy_ceiling(labels)
        pixels = images.reshape(len(images), -1)
        if self.estimator == "ksg":
            # I(X; Y) does not depend on how the inputs are normalised, but KSG's max norm compares their distances
            # with the one-hot labels' 1: normalised MNIST images are about 3 apart, and KSG read about 0 nats.
            # The pixels' own scale, [0, 1], as the estimator comparison measures it (1.34 nats on MNIST).
            low, high = pixels.min(), pixels.max()
            pixels = (pixels - low) / (high - low).clamp_min(torch.finfo(pixels.dtype).tiny)
        if self.reference == "estimate":
            return self.mi(pixels, labels)
        tiled = pixels.repeat(self.tiles, 1)
        # The copies differ only by the jitter; ross_mi's Euclidean counts are exact, so it tells them apart.
        return self.mi(tiled, labels.repeat(self.tiles))

    def subsample(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed class-balanced subsample, as the model sees it (after the batch-transfer hooks)."""
        dataset = trainer.train_dataloader.dataset
        if self.indices is None:
            labels = getattr(dataset, "targets", None)
            if labels is None:
                labels = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])
            self.indices = balanced_subsample(torch.as_tensor(labels), self.sample_size, self.seed).tolist()
        if hasattr(dataset, "__getitems__"):
            images, labels = dataset.__getitems__(self.indices)[:2]  # a distorting set adds the index: undistorted
        else:
            items = [dataset[i] for i in self.indices]
            images, labels = torch.stack([item[0] for item in items]), torch.as_tensor([item[1] for item in items])
        return as_model_sees_it(trainer, pl_module, (images, labels))

    # ---- after every epoch: test accuracy --------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.test_every_epoch:
            return
        accuracy = self.test_accuracy(trainer, pl_module)
        self.history[-1]["test_acc"] = accuracy
        pl_module.log("test/epoch_acc", accuracy, on_step=False, on_epoch=True)

    @torch.no_grad()
    def test_accuracy(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        """Accuracy of the current weights on the datamodule's whole test split. Under DDP each rank counts its
        share where the test loader shares the split out (the framework's DataModules: ``evaluation_sampler``), else
        rank 0 counts it all; the counts are summed over the ranks."""
        trainer.datamodule.setup("test")
        loader = trainer.datamodule.test_dataloader()
        counts = torch.zeros(2, dtype=torch.float64, device=pl_module.device)  # correct, total
        was_training = pl_module.training
        pl_module.eval()
        try:
            if trainer.is_global_zero or isinstance(loader.sampler, DistributedSampler):
                for batch in loader:
                    images, labels = as_model_sees_it(trainer, pl_module, batch)
                    counts[0] += (pl_module(images).argmax(dim=1) == labels).sum()
                    counts[1] += len(labels)
        finally:
            pl_module.train(was_training)
        correct, total = trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        return correct / total

    # ---- end of training, checkpoints ----------------------------------------------------
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        final = self.measure(trainer, pl_module)  # after the last epoch: no learning rate any more
        history = [*self.history, {**final, "epoch": trainer.current_epoch, "lr": {}}]
        run_dir = Path(trainer.default_root_dir)
        write_json_atomic(run_dir / "mi_lr_history.json", {"history": history, "layers": self.layers})
        if self.plot:
            plot_history(history, run_dir / "mi_lr.png")  # callbacks.figures sends it to the loggers

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The accuracy the next epoch's record reports, kept in checkpoints: Lightning keeps no logged metric, so a
        resumed epoch found none."""
        accuracy = trainer.callback_metrics.get("val/acc")
        if not trainer.sanity_checking and accuracy is not None:
            self.val_acc = float(accuracy)

    def state_dict(self) -> dict:
        return {"indices": self.indices, "ixy": self.ixy, "history": self.history, "val_acc": self.val_acc}

    def load_state_dict(self, state_dict: dict) -> None:
        self.indices, self.ixy = state_dict["indices"], state_dict["ixy"]
        self.history, self.val_acc = state_dict["history"], state_dict.get("val_acc")
        self.restored = True

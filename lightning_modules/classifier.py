"""The classification LightningModule every supervised network trains through.

The network supplies ``forward`` (scores, higher = more likely) and optionally ``loss``
(cross-entropy otherwise). The optimizer is a ``_partial_`` Hydra config; parameters are
handed to it as one named group per top-level child module that has parameters
(``param_groups: per_layer``) so that per-layer learning rates (LR monitor, the mutual
information callback) address layers by name, or as one group (``param_groups: single``).

Usage::

    model = ClassificationModule(net=LeNet5(), optimizer=functools.partial(torch.optim.SGD, lr=0.1))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from framework.checkpoints import network_config
from framework.construction import instantiate_node
from framework.errors import ConfigError
from lightning_modules.stage_steps import StageSteps

STAGES = ("train", "val", "test")
LABEL_DTYPES = (torch.long, torch.uint8)  # the class-index types cross-entropy takes
log = logging.getLogger(__name__)

UNLABELLED = "unlabelled"  # the epoch's share of negative labels (checked, not logged)


def layer_param_groups(net: nn.Module) -> list[dict]:
    """One named parameter group per top-level child that owns trainable parameters, and one named "net" for those
    the network holds directly (no child's). A parameter that several children share (tied weights) belongs to the
    first of them, as ``net.parameters()`` lists it once (torch refuses a parameter in two groups)."""
    groups, seen = [], set()
    for name, child in [*net.named_children(), ("net", None)]:
        owned = child.parameters() if child is not None else net.parameters(recurse=False)
        params = [p for p in owned if p.requires_grad and id(p) not in seen]
        seen.update(map(id, params))
        if params:
            groups.append({"name": name, "params": params})
    return groups


def check_built(net, optimizer) -> None:
    """model.net must have been built into a network and model.optimizer into something to call with the parameters
    (None: a module that only evaluates, until it trains): a config node without _target_, or null, reached them as
    it was and failed later with a traceback."""
    as_given = lambda value: "null" if value is None else (
        f"a mapping without _target_ ({', '.join(map(str, value))})" if isinstance(value, Mapping) else
        f"a {type(value).__name__}")
    if not isinstance(net, nn.Module):
        raise ConfigError(f"Config key 'model.net' is {as_given(net)}, not a network (a torch.nn.Module); give "
                          f"model.net._target_ the class of your network and its arguments beside it.")
    if optimizer is not None and (not callable(optimizer) or isinstance(optimizer, nn.Module)):
        raise ConfigError(not_an_optimizer(as_given(optimizer)))


def not_an_optimizer(given: str) -> str:
    return (f"Config key 'model.optimizer' is {given}, not an optimizer to build from the parameters; give "
            f"model.optimizer._target_ (e.g. torch.optim.SGD) with _partial_: true, or choose model/optimizer=sgd "
            f"or adam.")


class ClassificationModule(StageSteps, L.LightningModule):
    task = "classification"
    progress_bar_names = ("loss",)  # of the training values, the ones the progress bar shows

    def __init__(
        self,
        net: nn.Module,
        optimizer,
        scheduler=None,
        num_classes: int = 10,
        param_groups: str = "per_layer",
        compile: bool = False,
    ):
        super().__init__()
        check_built(net, optimizer)
        # Only plain values go into the checkpoint's hyper_parameters (objects there would need
        # unsafe unpickling); the run's .hydra/config.yaml rebuilds net and optimizer.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        if compile:
            net.compile()  # in place: the network keeps its methods, attributes and state_dict names
        self.net = net
        self.register_load_state_dict_pre_hook(_without_compile_wrapper_names)
        self.input_shape = getattr(net, "input_shape", None)  # what the network takes, when it says so
        self.takes_vectors = getattr(net, "takes_vectors", False)  # and whether it takes that image flattened
        self.accuracy = nn.ModuleDict(
            # validate_args=False: the per-batch label checks cost a torch.unique per step; the loss
            # already rejects out-of-range labels.
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False) for stage in STAGES}
        )

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None,
                             weights_only=None, **kwargs):
        """Lightning's, with the network built again from the config saved in the checkpoint (as train.py built it)
        unless ``net`` is given; without ``optimizer`` the module evaluates and predicts, and trains only with one."""
        if "net" not in kwargs:
            kwargs["net"] = instantiate_node(network_config(checkpoint_path), "model.net")
        kwargs.setdefault("optimizer", None)
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, weights_only, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.net.loss(scores, targets) if hasattr(self.net, "loss") else F.cross_entropy(scores, targets)

    def _step(self, batch, stage: str) -> torch.Tensor:
        if not (isinstance(batch, list | tuple) and len(batch) == 2 and isinstance(batch[1], torch.Tensor)
                and batch[1].dtype in LABEL_DTYPES and batch[1].ndim == 1):
            raise self.batch_refusal(batch, stage)
        images, targets = batch
        scores = self(images)
        if not (isinstance(scores, torch.Tensor) and scores.shape == (len(targets), self.hparams.num_classes)):
            raise self.scores_refusal(scores, images)
        loss = self.compute_loss(scores, targets)
        self.accuracy[f"{stage}_acc"].update(scores.detach(), targets)
        # Negative labels counted without a device sync, checked once per epoch (log_epoch): cross-entropy leaves
        # -100 (its ignore_index) out of the loss, but the accuracy would count those images as wrong.
        self.add_to_epoch_means(stage, {"loss": loss, UNLABELLED: (targets < 0).double().mean()}, len(targets))
        return loss

    def scores_refusal(self, scores, images: torch.Tensor) -> ConfigError:
        """What the network returned instead of [batch, num_classes] scores, and the remedy."""
        batch, classes = len(images), self.hparams.num_classes
        if not isinstance(scores, torch.Tensor):
            given = f"a {type(scores).__name__}"
            remedy = "make its forward return the scores tensor alone"
        else:
            given = f"a tensor of shape {list(scores.shape)}"
            if scores.ndim == 2 and len(scores) == batch:
                remedy = (f"give the network as many outputs as the data has classes and set model.num_classes to that "
                          f"number (now {classes})")
            elif scores.ndim == 1 and len(scores) == batch:
                remedy = "return one score per class for each image (for two classes: two scores, not one logit)"
            elif scores.ndim == 0:
                remedy = "return one score per class for each image, not a single number (a sum or mean over them)"
            elif len(scores) != batch:
                remedy = (f"its forward changes the batch size from {batch} (a reshape such as x.view(-1, n) with the "
                          f"wrong n; x.flatten(1) keeps the batch)")
            else:
                remedy = "make its forward return one score per class for each image"
        return ConfigError(f"{type(self).__name__} takes scores of shape [batch, num_classes] = [{batch}, {classes}] "
                           f"from its network, but {type(self.net).__name__} returned {given} for images of shape "
                           f"{list(images.shape)}; {remedy}.")

    def batch_refusal(self, batch, stage: str) -> ConfigError:
        """What a user's DataModule gives instead of (images, labels) with class-index labels, and the remedy."""
        loader = f"{type(self.trainer.datamodule).__name__}'s {stage} loader gives"
        if not isinstance(batch, list | tuple) or len(batch) != 2:
            given = (f"a dict (keys {', '.join(map(str, batch))})" if isinstance(batch, Mapping) else
                     "one tensor" if isinstance(batch, torch.Tensor) else f"{len(batch)} items per batch"
                     if isinstance(batch, list | tuple) else type(batch).__name__)
            return ConfigError(f"{type(self).__name__} takes batches of (images, labels), but {loader} {given}; make "
                               f"its dataset return (image, label) pairs (in __getitem__, or with a collate_fn).")
        labels = batch[1]
        given = f"{str(labels.dtype).removeprefix('torch.')} labels of shape {list(labels.shape)}" \
            if isinstance(labels, torch.Tensor) else f"labels of type {type(labels).__name__}"
        return ConfigError(f"{type(self).__name__} takes labels as class indices, one integer per image (a torch.long "
                           f"tensor of shape [batch]), but {loader} {given}; make its dataset return the class index "
                           f"(torch.as_tensor(label, dtype=torch.long); label.argmax() of a one-hot label).")

    def log_epoch(self, stage: str) -> None:
        means = self.log_epoch_means(stage, prog_bar=self.progress_bar_names if stage == "train" else (),
                                     unlogged=(UNLABELLED,))
        if means is None or UNLABELLED not in means:  # no classifier steps this epoch (a pre-training epoch)
            return
        if means[UNLABELLED] > 0:
            loader = f"{type(self.trainer.datamodule).__name__}'s {stage} loader"
            raise ConfigError(
                f"{loader} gives negative labels ({means[UNLABELLED]:.2%} of its images in this epoch; -100, for "
                f"instance, is cross-entropy's ignore_index, which leaves them out of the loss while the accuracy "
                f"counts them as wrong); give only labelled images to a classifier.")
        self.log(f"{stage}/acc", self.accuracy[f"{stage}_acc"], prog_bar=True)

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).argmax(dim=1)

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ConfigError(not_an_optimizer("null"))
        if self.hparams.param_groups == "per_layer":
            params = layer_param_groups(self.net)
        else:
            params = [{"name": "all", "params": [p for p in self.net.parameters() if p.requires_grad]}]
        builds = getattr(self.optimizer_factory, "func", self.optimizer_factory)  # a _partial_ config's class
        if len(params) > 1 and isinstance(builds, type) and issubclass(builds, torch.optim.LBFGS):
            raise ConfigError(f"Config key 'model.param_groups' is 'per_layer', which gives the optimizer one group "
                              f"per layer ({len(params)}), but model.optimizer is torch.optim.LBFGS, which takes one "
                              f"group; set model.param_groups=single, or choose model/optimizer=sgd or adam.")
        optimizer = self.optimizer_factory(params=params)
        if isinstance(optimizer, torch.optim.LBFGS) and self._trainer is not None:
            if self.trainer.world_size > 1:
                raise ConfigError(f"Config key 'model.optimizer' is torch.optim.LBFGS, whose line search evaluates "
                                  f"the loss a data-dependent number of times per step, so the "
                                  f"{self.trainer.world_size} DDP processes would wait on each other forever; train "
                                  f"it in one process (trainer.devices=1, trainer.num_nodes=1) or choose "
                                  f"model/optimizer=sgd or adam.")
            warn_of_lbfgs_on_mini_batches(getattr(self.trainer, "datamodule", None))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _without_compile_wrapper_names(module, state_dict, prefix, *_) -> None:
    """Checkpoints of runs from before the network was compiled in place name its weights ``net._orig_mod.<name>``
    (``torch.compile``'s wrapper): the same weights."""
    for name in [name for name in state_dict if name.startswith(f"{prefix}net._orig_mod.")]:
        state_dict[name.replace("net._orig_mod.", "net.", 1)] = state_dict.pop(name)


def warn_of_lbfgs_on_mini_batches(datamodule) -> None:
    """L-BFGS is a full-batch method (the Szegedy zoo's): on mini-batches each step's line search and curvature pairs
    see another batch. Allowed, as a user may mean it, but said."""
    train = getattr(datamodule, "datasets", {}).get("train")
    batch_size = getattr(datamodule, "batch_size", None)
    if train is not None and batch_size and len(train) > batch_size:
        log.warning(f"model.optimizer is torch.optim.LBFGS, a full-batch method, but data.batch_size={batch_size} "
                    f"splits the {len(train)} training images into {-(-len(train) // batch_size)} batches, so each "
                    f"step sees another batch; give data.batch_size >= {len(train)} for full-batch L-BFGS.")

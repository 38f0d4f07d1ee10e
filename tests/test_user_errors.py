"""A battery of wrong inputs: each ends in one sentence naming the key or file, exit code 2, no traceback.

THE RULE: whenever a new option, config group, dataset format or entry point appears, add a row here
with a wrong value for it (and make it pass: raise a framework.errors.UserError subclass where the
mistake is found).

Each row is the command line of an entry point (plus, for a dataset format, a function that writes
the dataset into a fresh data directory and breaks one of its files) and the text the message must
name. Most rows run in this process through the same path as ``python train.py ...`` (the script run as
``__main__`` on ``sys.argv``: Hydra's command line, our handler, the exit code);
``SUBPROCESS_ROWS`` run in processes of their own (``run_cli``), where the process boundary matters.
Every row checks: exit code 2, the expected text, no "Traceback", no results.json.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from torch.multiprocessing import ProcessRaisedException

from datamodules.base import DatasetMissingError
from framework.command_line import checking_keys_of_overrides
from framework.compose import CONF, ROOT, compose_config
from framework.construction import _fits, _refused_keys, construction_error, worker_user_error
from framework.entry_point import run_entry_point
from framework.errors import ConfigError
from lightning_modules.classifier import ClassificationModule
from tests.conftest import imported_and_said, path_with_stand_in, run_cli
from tests.dataset_files import LUNARLANDER_SMALL, write_cifar10, write_mnist, write_stl10, write_svhn
from tests.own_modules import NoBatches

LUNARLANDER = ["data=lunarlander", *(f"data.{key}={value}" for key, value in LUNARLANDER_SMALL.items())]
MI = ["callbacks=mi_lr", "callbacks.mi_lr.sample_size=100", "callbacks.progress_bar.refresh_rate=0"]
STEP_LR = "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1}"


# ---- datasets written into a fresh data directory, one file broken ---------------------------------------
def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def mnist_wrong_magic(root: Path) -> None:
    write_mnist(root)
    images = root / "MNIST/raw/train-images-idx3-ubyte"
    images.write_bytes(b"\x00\x00\x08\x01" + images.read_bytes()[4:])


def mnist_truncated(root: Path) -> None:
    write_mnist(root)
    cut(root / "MNIST/raw/t10k-labels-idx1-ubyte", 12)


def mnist_label_count(root: Path) -> None:
    write_mnist(root)
    labels = root / "MNIST/raw/train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:4] + (59).to_bytes(4, "big") + labels.read_bytes()[8:-1])


def cifar10_truncated(root: Path) -> None:
    write_cifar10(root)
    cut(root / "cifar-10-batches-py/data_batch_3", 500)


def svhn_not_a_mat_file(root: Path) -> None:
    write_svhn(root)
    (root / "train_32x32.mat").write_bytes(b"not MATLAB at all")


def svhn_without_its_train_split(root: Path) -> None:
    write_svhn(root, {"extra": 40, "test": 20})  # what a perceptual_svhn run trains on, not what its probe does


def stl10_truncated(root: Path) -> None:
    write_stl10(root)
    cut(root / "stl10_binary/train_X.bin", 3 * 96 * 96 * 5 - 7)


def stl10_label_out_of_range(root: Path) -> None:
    write_stl10(root)
    (root / "stl10_binary/train_y.bin").write_bytes(np.full(20, 11, dtype=np.uint8).tobytes())


def nothing(root: Path) -> None:
    """An empty data directory: the dataset is missing."""


# ---- checkpoints given as ckpt_path, written beside the data --------------------------------------------
def reae_table1_results(root: Path) -> None:
    """A finished reae_table1-style run: its rho is a grid (a list), which the figure tasks cannot plot."""
    import json

    config = {"model": {"_target_": "lightning_modules.forward_autoencoder.ForwardAutoencoderModule",
                        "rho": [0.1, 0.5], "hidden_size": 100}}
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text(json.dumps({"metrics": {"test/acc": 0.9}, "config": config}))


def a_results_json_overwritten_by_a_table(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text("| model | test/acc |\n")


def a_results_json_without_metrics(root: Path) -> None:
    """JSON, but not what a run writes (one written by hand, or by another tool)."""
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text('{"config": {}}')


def a_results_json_with_a_metric_as_text(root: Path) -> None:
    """A hand-written results.json beside a run's: its text metric failed the table's sum with a traceback."""
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text('{"metrics": {"test/acc": "0.7"}}')


def one_classifier_run(root: Path, checkpoint: str = "best.ckpt") -> None:
    """A finished classifier run (one: the cross-model studies compare two or more)."""
    import json

    config = {"model": {"_target_": "lightning_modules.classifier.ClassificationModule"}, "experiment_name": "one"}
    (root / "run").mkdir()
    (root / "run" / "best.ckpt").write_bytes(b"weights")
    (root / "run" / "results.json").write_text(json.dumps({"metrics": {"test/acc": 0.9}, "config": config,
                                                           "best_checkpoint": str(root / "run" / checkpoint)}))


def a_classifier_run_without_its_checkpoint(root: Path) -> None:
    one_classifier_run(root, checkpoint="gone.ckpt")


def a_plain_file(root: Path) -> None:
    (root / "a_file").write_text("a file where a folder should be")


def a_copy_of_conf_with_a_model_of_its_own(root: Path) -> None:
    shutil.copytree(CONF, root / "myconf")
    (root / "myconf" / "model" / "mine.yaml").write_text((CONF / "model" / "lenet5.yaml").read_text())


def a_copy_of_conf_whose_searchpath_adds_a_model(root: Path) -> None:
    shutil.copytree(CONF, root / "myconf")
    with open(root / "myconf" / "train.yaml", "a") as train:
        train.write(f"\nhydra:\n  searchpath: [file://{root / 'mine'}]\n")
    (root / "mine" / "model").mkdir(parents=True)
    (root / "mine" / "model" / "mine.yaml").write_text((CONF / "model" / "lenet5.yaml").read_text())


def experiment_sweeping_data(root: Path) -> None:
    """experiment/sweeping.yaml, whose sweeper params sweep the data group."""
    (root / "experiment").mkdir()
    (root / "experiment" / "sweeping.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      data: digits,mnist\n")


def experiment_choosing_without_override(model: str):
    """What writes experiment/mine.yaml, whose defaults list chooses ``model`` without ``override``."""
    def write(root: Path) -> None:
        (root / "experiment").mkdir()
        (root / "experiment" / "mine.yaml").write_text(f"# @package _global_\ndefaults:\n  - /model: {model}\n")

    return write


def unreadable_checkpoint(root: Path) -> None:
    (root / "run.ckpt").write_bytes(b"not a checkpoint")


def lenet5_checkpoint(root: Path) -> None:
    """The weights of the modern LeNet-5, in a Lightning checkpoint."""
    import lightning

    from lightning_modules.classifier import ClassificationModule
    from lightning_modules.lenet5 import LeNet5

    torch.save({"state_dict": ClassificationModule(LeNet5(), optimizer=None).state_dict(),
                "pytorch-lightning_version": lightning.__version__}, root / "run.ckpt")


def lenet5_checkpoint_with_its_values(root: Path) -> None:
    """The same, with the values a resume keeps (modern LeNet-5's lr 0.02; the classic one's is 0.002)."""
    from framework.checkpoints import KEPT_VALUES, kept_values
    from framework.compose import compose_config

    lenet5_checkpoint(root)
    checkpoint = torch.load(root / "run.ckpt", weights_only=False)
    checkpoint[KEPT_VALUES] = kept_values(compose_config([], root / "composed"))
    torch.save(checkpoint, root / "run.ckpt")


def row(name: str, *args: str, expect: str | tuple[str, ...], data=None, script: str = "train.py"):
    return pytest.param(script, list(args), (expect,) if isinstance(expect, str) else expect, data, id=name)


ROWS = [
    # ---- top level: seed, ckpt_path, interpolations, Hydra's refusals of the command line
    row("seed", "seed=-3", expect="'seed' is -3"),
    row("ckpt_path", "ckpt_path=/no/such/file.ckpt", expect="'ckpt_path' is '/no/such/file.ckpt'"),
    row("ckpt-missing-file", "ckpt_path=nowhere.ckpt",
        expect="Config key 'ckpt_path' is 'nowhere.ckpt', but no such file exists; give an existing checkpoint file, "
               "'auto' or 'last' (this run's last.ckpt if present), or null."),
    row("ckpt-best", "ckpt_path=best",  # Lightning's trainer.test(ckpt_path="best"), not a starting point
        expect=("'ckpt_path' is 'best', Lightning's word for the weights to test after fitting", "'last'")),
    row("ckpt-directory", "ckpt_path={tmp}", expect=("'ckpt_path' is the directory", "checkpoints/last.ckpt")),
    row("ckpt-list", "ckpt_path=[a.ckpt,b.ckpt]", expect="Config key 'ckpt_path' is ['a.ckpt', 'b.ckpt'], but a run "
                                                         "continues or tests one checkpoint: give one file, auto or "
                                                         "null, or one job per checkpoint with -m ckpt_path=<file>,"
                                                         "<file>."),
    row("delete-interpolated-key", "~data.data_dir", expect="cannot be deleted with ~data.data_dir"),
    row("group-given-null", "logger=null", expect="Config group 'logger' is given null, but it takes one of its "
                                                  "options: csv, none, tensorboard, wandb (logger=none leaves it out); "
                                                  "choose one."),
    row("group-of-no-default-given-null", "debug=null",
        expect="Config group 'debug' is given null, which the command line cannot give a group; leave debug= out (it "
               "chooses no option by default), or choose one of fdr, limit, smoke."),
    row("nested-group-given-null", "model=szegedy", "model/optimizer=null",  # model=szegedy chooses lbfgs
        expect="Config group 'model/optimizer' is given null, but it takes one of its options: adam, lbfgs, sgd; "
               "choose one."),
    row("hydra-group-given-null", "hydra/launcher=null",
        expect="Config group 'hydra/launcher' is given null, but it takes one of its options: basic, local, slurm, "),
    row("group-given-null-in-capitals", "callbacks=NULL", expect="Config group 'callbacks' is given null, but it"),
    row("group-given-null-in-a-sweep", "-m", "model=lenet5,null",
        expect="Config group 'model' is given null, but it takes one of its options: forward_autoencoder, lenet5,"),
    row("group-given-null-in-a-config-path-of-ones-own", "-cp", "{tmp}/data/myconf", "model=null",
        data=a_copy_of_conf_with_a_model_of_its_own,  # its options, not the repository's conf/ (which lacks mine)
        expect="Config group 'model' is given null, but it takes one of its options: forward_autoencoder, lenet5, "
               "lenet5_classic, lenet5_classic_sdlm, mine, perceptual_autoencoder, szegedy; choose one."),
    row("group-given-null-with-a-searchpath-in-ones-own-train-yaml", "-cp", "{tmp}/data/myconf", "model=null",
        data=a_copy_of_conf_whose_searchpath_adds_a_model,
        expect="Config group 'model' is given null, but it takes one of its options: forward_autoencoder, lenet5, "
               "lenet5_classic, lenet5_classic_sdlm, mine, perceptual_autoencoder, szegedy; choose one."),
    row("multirun-and-cfg", "--cfg", "job", "-m", "seed=1,2", expect=("gives --cfg and -m", "drop -m")),
    row("help-with-a-mistake", "--help", "model=nope", expect="Config group 'model' has no option 'nope'; choose"),
    row("info-with-a-mistake", "--info", "defaults", "model=nope", expect="Config group 'model' has no option 'nope'"),
    row("sweep-values-with-help", "-m", "--help", "seed=1,2",
        expect="Config key 'seed' is given '1,2' with commas, but --help shows one job's config, not a sweep's; give "
               "one of the values there (seed=1), or leave --help out to run the sweep."),
    row("resolve-without-cfg", "--resolve", "debug=smoke", expect=("gives --resolve,", "add --cfg job")),
    row("cfg-resolve-with-a-dangling-reference", "--cfg", "job", "--resolve", "experiment_name=${nope}",
        expect="Config key 'experiment_name' cannot be resolved (Interpolation key 'nope' not found); give"),
    row("cfg-resolve-with-an-unset-environment-variable", "--cfg", "job", "--resolve", "+x=${oc.env:NOPE_VAR_X}",
        expect="Config key 'x' reads the environment variable NOPE_VAR_X, which is not set; set it, or give a default "
               "there: ${oc.env:NOPE_VAR_X,<default>}."),
    row("unset-environment-variable", "+x=${oc.env:NOPE_VAR_X}",
        expect="Config key 'x' reads the environment variable NOPE_VAR_X, which is not set; set it, or give a default "
               "there: ${oc.env:NOPE_VAR_X,<default>}."),
    row("argument-of-the-class-left-out", "trainer.max_time=00:00:00:05",  # "fix its spelling", of a Trainer argument
        expect="Config key 'trainer.max_time' is not in the config; it is an argument of Trainer that the config "
               "leaves at its default: add it with +trainer.max_time=00:00:00:05."),
    row("argument-of-a-callback-left-out-in-a-sweep", "-m", "seed=1,2",
        "callbacks.model_checkpoint.save_weights_only=true",
        expect="Config key 'callbacks.model_checkpoint.save_weights_only' is not in the config of every job of this "
               "sweep (the config it starts from, or a job's option of a swept group); it is an argument of "
               "RunModelCheckpoint that the config leaves at its default: give it as "
               "++callbacks.model_checkpoint.save_weights_only=true (added where"),
    row("argument-of-the-class-misspelt", "trainer.max_tme=1",
        expect="Config key 'trainer.max_tme' is not in the config, nor an argument of Trainer (the closest existing "
               "keys: trainer.max_epochs, trainer._target_; arguments of Trainer: max_time, max_steps); fix its "
               "spelling."),
    row("key-of-a-class-taking-keywords", "data.pin_memory=true",  # DigitsDataModule(**kwargs): its base takes more
        expect="Config key 'data.pin_memory' is not in the config, nor an argument of DigitsDataModule; fix its "
               "spelling."),
    row("misspelt-key-in-a-sweep-of-values", "-m", "seed=1,2", "data.bacth_size=3",  # ++ would be refused in each job
        expect="Config key 'data.bacth_size' is not in the config, nor an argument of DigitsDataModule (the closest "
               "existing keys: data.batch_size, data.image_size); fix its spelling."),
    row("misspelt-key-in-a-sweep-of-groups", "-m", "hydra.searchpath=[file://{tmp}/data]", "experiment=sweeping",
        "data.bacth_size=3", data=experiment_sweeping_data,  # a job's DataModule may take it: ++ is the remedy
        expect=("Config key 'data.bacth_size' is not in the config of every job of this sweep",
                "give it as ++data.bacth_size=3")),
    row("misspelt-key-below-a-node", "model.lrr=3",  # the node it is below (model) is no spelling of it
        expect="Config key 'model.lrr' is not in the config, nor an argument of ClassificationModule; fix its "
               "spelling."),
    row("argument-of-a-base-class-left-out", "data.pad_mode=wrap",  # the base class's, reached through **kwargs
        expect="Config key 'data.pad_mode' is not in the config; it is an argument of DigitsDataModule that the config "
               "leaves at its default: add it with +data.pad_mode=wrap."),
    row("misspelt-key-beside-a-group-chosen-in-a-sweep-of-values", "-m", "data=mnist", "seed=1,2",
        "data.bacth_size=3",  # data=mnist is chosen, not swept: every job's config is the one the sweep starts from
        expect="Config key 'data.bacth_size' is not in the config, nor an argument of MNISTDataModule (the closest "
               "existing keys: data.batch_size"),
    row("misspelt-key-in-a-sweep-of-values-after-a-flag-with-its-value", "-m", "--config-name=train", "seed=1,2",
        "data.bacth_size=3",  # --flag=value is no override of Hydra's grammar
        expect="Config key 'data.bacth_size' is not in the config, nor an argument of DigitsDataModule (the closest "
               "existing keys: data.batch_size"),
    row("misspelt-key-of-a-class-taking-keywords-in-a-sweep-of-values", "-m", "seed=1,2", "logger=tensorboard",
        "logger.tensorboard.nme=x",  # TensorBoardLogger(**kwargs) may take it: ++ is the remedy
        expect=("Config key 'logger.tensorboard.nme' is not in the config of every job of this sweep",
                "give it as ++logger.tensorboard.nme=x")),
    row("argument-of-a-base-class-that-its-subclass-does-not-pass-on", "model.optimizer.defaults=1",
        # torch.optim.Optimizer(params, defaults): SGD(...) takes no **kwargs, so never reaches it
        expect="Config key 'model.optimizer.defaults' is not in the config, nor an argument of SGD"),
    row("key-below-a-target-that-does-not-import", "model.optimizer._target_=torch.optim.Nope",
        "model.optimizer.foo=1",  # nothing is known of Nope's arguments: not "nor an argument of Nope"
        expect=("Config key 'model.optimizer.foo' is not in the config",
                "or add a new key with +model.optimizer.foo=1.")),
    row("list-item-past-the-end", "experiment=lenet5_classic_mnist", "model.scheduler.values.6=0.1",
        expect="Config key 'model.scheduler.values' is a list of 6 items, numbered 0 to 5, so it has no item '6' "
               "(model.scheduler.values.6); set an item with model.scheduler.values.<number>=<value>, or give the "
               "whole list: 'model.scheduler.values=[0.0005,0.002,0.0008,0.0004,0.0002,4e-05]'."),
    row("list-item-by-name-added-or-overridden", "experiment=lenet5_classic_mnist", "++model.scheduler.values.x=0.1",
        expect="Config key 'model.scheduler.values' is a list of 6 items, numbered 0 to 5, so it has no item 'x' "),
    row("list-item-deleted", "experiment=lenet5_classic_mnist", "~model.scheduler.values.0",  # a TypeError traceback
        expect="Config key 'model.scheduler.values' is a list of 6 items, numbered 0 to 5, and "
               "~model.scheduler.values.0 cannot delete an item of it (Hydra's ~ deletes keys of mappings); give the "
               "list without it: 'model.scheduler.values=[0.002,0.0008,0.0004,0.0002,4e-05]'."),
    row("deleted-key-not-in-the-config", "~model.optimizer.momentun",
        expect="Config key 'model.optimizer.momentun' is not in the config, so ~model.optimizer.momentun deletes "
               "nothing (the closest existing keys: model.optimizer.momentum"),
    row("null-key-deleted", "~ckpt_path",  # Hydra: "'ckpt_path' does not exist"
        expect="Config key 'ckpt_path' is null, and Hydra's ~ cannot delete a key whose value is null (it takes it for "
               "a missing key); leave it null, or set it with ckpt_path=<value>."),
    row("key-below-a-value", "+seed.x=1",  # Hydra would make seed the mapping {x: 1}
        expect="Config key 'seed' is 42, a single value with no keys below it, so seed.x names nothing; set the value "
               "itself with seed=<value>."),
    row("key-below-a-sweeps-value", "-m", "seed=1,2", "trainer.max_epochs.x=3",
        expect="Config key 'trainer.max_epochs' is 40, a single value with no keys below it, so "),
    row("mapping-adds-a-key", "model.optimizer={lr:0.1,foo:1}",
        expect="Config key 'model.optimizer.foo' is not in the config, nor an argument of SGD (the closest existing "
               "keys: "),  # +model.optimizer.foo=1, the remedy it was given, is refused as no argument of SGD
    row("hydra-help-with-overrides", "--hydra-help", "seed=1",
        expect=("gives --hydra-help with seed=1 ", "but --hydra-help shows Hydra's own help and takes Hydra's "
                                                   "overrides")),
    row("shell-completion-without-subcommand", "--shell-completion",
        expect="gives --shell-completion (-sc) without what to do; give install=bash"),
    row("flags-after-overrides", "debug=smoke", "-m", "seed=1,2",
        expect=("gives overrides after the flag -m, and Hydra reads overrides only after its flags; put the flags "
                "first: python train.py -m debug=smoke seed=1,2 ")),
    row("experimental-rerun", "--experimental-rerun", "{tmp}/run/.hydra/config.pickle",  # a traceback either way
        expect=("--experimental-rerun cannot rerun this framework's runs", ".hydra/overrides.yaml")),
    row("network-refuses-first-batch", "model.net._target_=torchvision.models.resnet18", "~model.net.in_channels",
        "debug=smoke", expect=("cannot take the first batch of DigitsDataModule (inputs of shape [64, 1, 32, 32]): its "
                               "layer net.conv1 (Conv2d(3, 64,", "to have 3 channels, but got 1 channels")),
    # the same in DDP workers, whose traceback the parent gets only as text (ddp_fork: see the ddp-worker row)
    row("network-refuses-first-batch-in-ddp-workers", "model.net._target_=torchvision.models.resnet18",
        "~model.net.in_channels", "debug=smoke", "trainer=ddp_sim", "trainer.strategy=ddp_fork",
        expect=("cannot take the first batch of DigitsDataModule (inputs of shape [64, 1, 32, 32]): its layer "
                "net.conv1 (Conv2d(3, 64,", "to have 3 channels, but got 1 channels")),
    row("ckpt-unreadable", "ckpt_path={tmp}/data/run.ckpt", data=unreadable_checkpoint,
        expect=("run.ckpt cannot be read by torch.load", "truncated or not a checkpoint")),
    row("ckpt-another-model", "model=lenet5_classic", "ckpt_path={tmp}/data/run.ckpt", data=lenet5_checkpoint,
        expect=("whose weights do not fit this model", "lacks net.s2.weight", "another shape for net.c3.weight")),
    row("ckpt-another-model-and-its-values", "model=lenet5_classic", "ckpt_path={tmp}/data/run.ckpt",
        data=lenet5_checkpoint_with_its_values, expect=("whose weights do not fit this model", "lacks net.s2.weight")),
    row("test-only-another-model", "train=false", "model=lenet5_classic", "ckpt_path={tmp}/data/run.ckpt",
        data=lenet5_checkpoint, expect="whose weights do not fit this model"),
    row("ckpt-hpc-absent", "ckpt_path=hpc", expect=("'ckpt_path' is 'hpc', but there is no HPC checkpoint",
                                                     "ckpt_path=auto")),
    row("test-only-without-checkpoint", "train=false", expect=("'train' is false (test only)", "ckpt_path is null")),
    row("test-only-last-without-checkpoint", "train=false", "ckpt_path=last",  # the sentence said auto
        expect="but ckpt_path is last, and this run directory has no checkpoint in checkpoints/: there are no trained"),
    row("optimized-metric-a-list", "optimized_metric=[val/acc]",
        expect="Config key 'optimized_metric' is ['val/acc'], but it must be the name of one metric (e.g. val/acc), "
               "or null."),
    row("two-models-merged", "model=[lenet5,lenet5_classic]",  # was: 'model.net.in_channels' is not an argument
        expect="Config group 'model' is given the options lenet5, lenet5_classic, which Hydra merges into one config, "
               "but a run has one model; choose one, or run one job each with -m model=lenet5,lenet5_classic."),
    row("optimized-mode", "optimized_mode=up", expect="'optimized_mode' is 'up', but it must be 'max' or 'min'"),
    # the resolver's own sentence, not "Config key 'optimized_mode' cannot be resolved (...)" around it
    row("optimized-metric-direction", "optimized_metric=val/margin",
        expect="Config error: Config key 'optimized_mode' follows optimized_metric 'val/margin', whose name does not "
               "say whether higher is better; set optimized_mode=max or optimized_mode=min."),
    row("optimized-metric-misspelt", "optimized_metric=val/los",  # was told to set optimized_mode, then not logged
        expect="Config error: Config key 'optimized_mode' follows optimized_metric 'val/los', whose name does not say "
               "whether higher is better ('los': did you mean loss?); fix its spelling, or set optimized_mode=max or "
               "optimized_mode=min."),
    row("optimized-metric-of-both-kinds", "optimized_metric=val/f1_loss",  # took max: the highest loss was the best
        expect="Config error: Config key 'optimized_mode' follows optimized_metric 'val/f1_loss', whose name has words "
               "of both kinds (f1: higher is better; loss: lower is better); set optimized_mode=max or "
               "optimized_mode=min."),
    row("callback-monitor-direction", "callbacks.model_checkpoint.monitor=val/margin",
        expect="Config error: Config key 'callbacks.model_checkpoint.mode' follows callbacks.model_checkpoint.monitor "
               "'val/margin', whose name does not say whether higher is better; set "
               "callbacks.model_checkpoint.mode=max or callbacks.model_checkpoint.mode=min."),
    row("early-stopping-without-a-metric", "optimized_metric=null",
        expect=("'optimized_metric' is null, but early stopping monitors it", "callbacks.early_stopping=null")),
    row("early-stopping-without-a-monitor", "callbacks.early_stopping.monitor=null",  # named optimized_metric
        expect="Config key 'callbacks.early_stopping.monitor' is null, but early stopping needs a metric to watch; "
               "leave early stopping out with callbacks.early_stopping=null, or name a metric (e.g. "
               "callbacks.early_stopping.monitor=val/loss)."),
    row("optimized-metric-not-logged", "debug=limit", "optimized_metric=val/top5_acc",
        expect=("'optimized_metric' is 'val/top5_acc'", "logs no such metric", "(val/acc, val/loss)")),
    row("optimized-metric-not-logged-under-fdr", "debug=fdr", "optimized_metric=val/top5_acc",  # a config's tryout
        expect=("'optimized_metric' is 'val/top5_acc'", "logs no such metric", "(val/acc, val/loss)")),
    row("early-stopping-metric-not-logged", "debug=limit", "callbacks.early_stopping.monitor=val/top5_acc",
        expect="Config key 'callbacks.early_stopping.monitor' is 'val/top5_acc', which RunEarlyStopping monitors, "
               "but this run logs no such metric; set callbacks.early_stopping.monitor to one it logs (val/acc, "
               "val/loss)."),
    row("early-stopping-on-train-metric", "debug=limit", "optimized_metric=train/acc",
        expect=("checks after each validation", "callbacks.early_stopping.check_on_train_epoch_end=true")),
    row("checkpoint-train-metric-not-logged", "debug=limit", "callbacks.model_checkpoint.monitor=train/los",
        "callbacks.model_checkpoint.mode=min",  # was Lightning's MisconfigurationException
        expect="Config key 'callbacks.model_checkpoint.monitor' is 'train/los' (optimized_metric's unless set), but "
               "the run has logged no such metric by the time the checkpoint is saved; set it to one the run logs "
               "(train/acc, train/loss, val/acc, val/loss)."),
    row("early-stopping-at-the-epochs-end-metric-not-logged", "debug=limit",  # was Lightning's RuntimeError
        "callbacks.early_stopping.check_on_train_epoch_end=true", "optimized_metric=train/los", "optimized_mode=min",
        expect="Config key 'callbacks.early_stopping.monitor' is 'train/los' (optimized_metric's unless set), but the "
               "run has logged no such metric by the training epoch's end, where early stopping checks it "
               "(check_on_train_epoch_end); set it to one the run logs (train/acc, train/loss, val/acc, val/loss)."),
    row("net-without-target", "~model.net._target_", expect="Config key 'model.net' is a mapping without _target_ "
        "(in_channels, num_classes), not a network (a torch.nn.Module); give model.net._target_ the class of your "
        "network and its arguments beside it."),
    row("optimizer-null", "model.optimizer=null", expect="Config key 'model.optimizer' is null, not an optimizer to "
        "build from the parameters; give model.optimizer._target_ (e.g. torch.optim.SGD) with _partial_: true, or "
        "choose model/optimizer=sgd or adam."),
    row("sweep-key-of-a-swept-group", "-m", "experiment=szegedy_softmax1,szegedy_fc100", "data.train_size=300",
        expect=("'data.train_size' is not in the config of every job of this sweep", "++data.train_size=300")),
    row("sweep-key-missing-in-one-job", "-m", "model=lenet5,szegedy", "model.optimizer.momentum=0.5,0.9",
        expect=("'model.optimizer.momentum' is not in the config of every job of this sweep (the config it starts "
                "from, or a job's option of a swept group)", "++model.optimizer.momentum=0.5,0.9 (added where")),
    row("group-added-twice", "experiment=mi_lr_digits", "+batch_schedule=grow",
        expect=("'batch_schedule' is chosen already", "batch_schedule=grow.")),
    row("group-not-chosen", "batch_schedule=grow", expect=("'batch_schedule' is not chosen", "+batch_schedule=grow")),
    row("number-key", "experiment=mi_lr_digits", "batch_schedule=grow", "callbacks.batch_size.milestones.3=200",
        expect=("'callbacks.batch_size.milestones' is a mapping with numbers as its keys",  # not "not in the config"
                "'callbacks.batch_size.milestones={3:200}'")),
    row("number-key-added", "experiment=mi_lr_digits", "batch_schedule=grow", "callbacks.batch_size.milestones.2=200",
        expect="'callbacks.batch_size.milestones={3:500,2:200}'"),
    row("interpolation", "data.batch_size=${nope}", expect="'data.batch_size' cannot be resolved"),
    row("commas-without-multirun", "experiment_name=a,b",
        expect="'experiment_name' is given 'a,b' with commas; add -m (--multirun) to run one job per value, or write "
               "experiment_name=[a,b] for a list, \"experiment_name='a,b'\" for a string (as typed in a shell)."),
    row("experiment-on-other-data", "experiment=perceptual_lunarlander", "data=digits",
        expect="'callbacks.probe.data.rollouts' reads ${data.rollouts}, which data=digits does not have: "
               "experiment=perceptual_lunarlander was written for another one; leave out data=digits, or give "
               "callbacks.probe.data.rollouts a value."),
    row("group-option", "model=lenet6",
        expect=("Config group 'model' has no option 'lenet6' (did you mean 'lenet5'?)", "lenet5_classic, ")),
    row("key-not-in-config", "trainer.max_epoch=3",
        expect="Config key 'trainer.max_epoch' is not in the config, nor an argument of Trainer (the closest existing "
               "keys: trainer.max_epochs, trainer.min_epochs; arguments of Trainer: max_steps); fix its spelling."),
    # the arguments the config gives are not named twice
    row("key-elsewhere", "experiment=szegedy_fc100", "model.weight_decay=[0.1,0.2]",
        expect=("'model.weight_decay' is not in the config", "model.net.weight_decay")),
    row("key-of-an-option-not-chosen", "logger.wandb.project=x",  # its remedy was +logger.wandb.project=x, refused
        expect="Config key 'logger.wandb.project' belongs to the logger option wandb, which this run does not choose; "
               "add it with 'logger=[csv,wandb]' (its file: conf/logger/wandb.yaml), then logger.wandb.project=x sets "
               "it."),
    row("key-of-an-option-not-chosen-beside-an-experiment-s", "experiment=mi_lr_digits", "callbacks.probe.max_epochs=5",
        expect="add it with 'callbacks=[mi_lr,probe]' (its file: conf/callbacks/probe.yaml), then"),
    row("key-of-an-option-not-chosen-beside-none", "callbacks=none", "callbacks.early_stopping.patience=3",
        expect="add it with callbacks=early_stopping (its file: conf/callbacks/early_stopping.yaml), then"),
    row("new-key-of-a-chosen-option", "callbacks.model_checkpoint.every_n_epochs=2",  # was: add it with
        expect=("'callbacks.model_checkpoint.every_n_epochs' is not in the config",  # 'callbacks=[default,...]'
                "add it with +callbacks.model_checkpoint.every_n_epochs=2.")),
    row("new-key-of-the-default-logger", "logger.csv.flush_logs_every_n_steps=5",  # was: 'logger=[csv,csv]'
        expect="add it with +logger.csv.flush_logs_every_n_steps=5."),
    row("values-split-by-a-space", "-m", "seed=1", "2", "3",  # Hydra's lexer error on '2'
        expect="The command-line words 'seed=1' '2' '3' are one override that a space split; write its values with "
               "commas and no spaces (seed=1,2,3), or quote the whole override."),
    row("values-split-after-commas", "model.optimizer.lr=0.1,", "0.01",  # not a sweep: its remedy says -m
        expect="words 'model.optimizer.lr=0.1,' '0.01' are one override that a space split; write its values with "
               "commas and no spaces (-m model.optimizer.lr=0.1,0.01)"),
    row("a-list-split-by-a-space", "seed=[1,", "2]", expect="(seed=[1,2]), or quote the whole override."),
    row("a-word-after-an-override", "trainer.max_epochs=1", "debug",  # not a value: was said to be one
        expect="The command-line override 'debug' cannot be parsed"),
    row("key-exists", "+seed=3", expect=("'seed' exists already", "override it with seed=3")),
    row("key-deleted", "~nosuch",
        expect="Config key 'nosuch' is not in the config, so ~nosuch deletes nothing; fix its spelling."),
    row("group-added-again", "+model=lenet5", expect="Config group 'model' is chosen already (by the defaults or an "
                                                    "experiment), so +model=... cannot add it again; choose it without "
                                                    "the +: model=<option>."),
    row("experiment-choosing-a-chosen-group", "hydra.searchpath=[file://{tmp}/data]", "experiment=mine",
        data=experiment_choosing_without_override("lenet5_classic"),  # said +model=lenet5_classic, which nobody typed
        expect=("Config group 'model' is chosen twice: by the defaults, and by the defaults list of ",
                "/data/experiment/mine.yaml ('- /model: lenet5_classic'); write '- override /model: lenet5_classic' "
                "there.")),
    row("experiment-choosing-the-default-option", "hydra.searchpath=[file://{tmp}/data]", "experiment=mine",
        data=experiment_choosing_without_override("lenet5"),  # Hydra words it otherwise
        expect=("Config group 'model' is chosen twice: by the defaults, and by the defaults list of ",
                "/data/experiment/mine.yaml; write '- override /model: <option>' there.")),
    row("searchpath-not-a-folder", "hydra.searchpath=[file://examples/conff]", "model=mlp",
        expect=("Config group 'model' has no option 'mlp' (hydra.searchpath names file://examples/conff, which is not "
                "a folder here)")),
    row("experiment", "experiment=nope", expect=("Config group 'experiment' has no option 'nope'", "szegedy_fc100")),
    row("override-syntax", "seed=[1,", expect=("'seed=[1,' cannot be parsed", "no viable alternative at input '[1,'")),
    row("commas", "seed=1,2", expect=("'seed' is given '1,2'", "add -m (--multirun) to run one job per value",
                                      "seed=[1,2] for a list")),
    row("commas-group", "+batch_schedule=grow,none",
        expect=("Config group 'batch_schedule' is given 'grow,none'", "one job per option",
                "+batch_schedule=[grow,none] to merge")),
    row("empty-sweep", "-m", "seed=range(1,1)",  # ran no job, and exited 0
        expect="Config key 'seed' is swept over range(1,1), which gives no value, so the sweep would run no job; give "
               "it values (range(a,b) stops before b: range(1,2) is 1)."),
    row("interval-sweep", "-m", "model.optimizer.lr=interval(0.01,0.1)",
        expect=("Config key 'model.optimizer.lr' is swept with interval(0.01,0.1), but Hydra's basic sweeper cannot "
                "run interval sweeps", "model.optimizer.lr=0.01,0.03,0.1")),
    # ---- model
    row("lr", "model.optimizer.lr=-0.1", expect="'model.optimizer.lr' is -0.1, but it must be a number > 0"),
    row("momentum", "model.optimizer.momentum=1.5", expect="'model.optimizer.momentum' is 1.5"),
    row("optimizer-by-name", "model.optimizer=adam",
        expect=("'model.optimizer' is 'adam'", "does not take it from the group model/optimizer", "_target_")),
    row("optimizer-group-by-name", "experiment=szegedy_fc100", "model.optimizer=adam",
        expect="choose one with model/optimizer=adam (one of: adam, lbfgs, sgd)"),
    row("optimizer-argument", "model.optimizer._target_=torch.optim.Adam",
        expect="'model.optimizer.momentum' is not an argument of Adam; remove it with ~model.optimizer.momentum"),
    row("optimizer-arguments", "model.optimizer._target_=torch.optim.LBFGS",  # all at once, not one per try
        expect=("'model.optimizer.momentum', 'model.optimizer.weight_decay' are not arguments of LBFGS",
                "~model.optimizer.momentum ~model.optimizer.weight_decay")),
    row("optimizer-group-not-chosen", "model/optimizer=adam",  # the + and what the option leaves, in one sentence
        expect=("'model/optimizer' is not chosen", "+model/optimizer=adam ~model.optimizer.momentum")),
    row("scheduler-argument", "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step:1}",
        expect="'model.scheduler.step' is not an argument of StepLR"),
    row("net-target", "model.net._target_=lightning_modules.lenet5.LeNet6", expect="'model.net._target_'"),
    row("net-argument", "+model.net.depth=3", expect="'model.net.depth' is not an argument of LeNet5"),
    row("datamodule-argument-misspelt", "+data.bacth_size=3",  # its base class's argument, through **kwargs
        expect="Config error: Config key 'data.bacth_size' is not an argument of DigitsDataModule (the closest: "
               "batch_size, image_size); remove it or fix its spelling."),
    row("criterion", "model=lenet5_classic", "model.net.criterion=hinge", expect="'model.net.criterion' is 'hinge'"),
    row("train-not-a-bool", "train=no",  # truthy: a run meant to only test trained on
        expect="'train' is 'no', but it must be true or false (false: the run only validates and tests ckpt_path)."),
    row("test-not-a-bool", "test=flase", expect="'test' is 'flase', but it must be true or false"),
    row("evaluate-task-unknown", "evaluate_tasks=[table,nope]",  # the sweep then printed a command that failed
        expect="'evaluate_tasks' is ['table', 'nope'], but it must be a list of evaluate.py's tasks (e.g. [table])"),
    row("auto-without-checkpoints", "callbacks=none", "ckpt_path=auto",  # it said a start was killed before any
        expect="but it has no checkpoint callback there (callbacks=none: Lightning's own saves into its logger's "
               "folder); keep callbacks.model_checkpoint and callbacks.last_checkpoint"),  # checkpoint, and began anew
    row("task-name-with-a-slash", "task_name=a/b",  # was "the output directory cannot be made or written"
        expect="'task_name' is 'a/b', but it must be a folder's name (logs/<task_name>/runs/...; its log is "
               "<task_name>.log), without '/'."),
    row("map-constant", "model=lenet5_classic", "model.net.map_constant=-5",  # e^5 swamped the competitive term
        expect="'model.net.map_constant' is -5, but it must be a number > 0: the MAP criterion's j"),
    row("num-classes", "model.num_classes=5", expect=("model has 5 classes, the data 10", "model.num_classes=10")),
    row("feature-map", "model=forward_autoencoder", "model.feature_map=pca", expect="'model.feature_map' is 'pca'"),
    row("activation", "model=forward_autoencoder", "model.activation=relu", expect="'model.activation' is 'relu'"),
    row("rho", "model=forward_autoencoder", "model.rho=1.5", expect="'model.rho' is 1.5"),
    row("szegedy-kind", "experiment=szegedy_fc100", "model.net.kind=rnn", expect="'model.net.kind' is 'rnn'"),
    row("szegedy-hidden", "experiment=szegedy_fc100", "model.net.hidden=[100,-5]",
        expect="'model.net.hidden' is [100, -5]"),
    row("szegedy-ae-hidden", "experiment=szegedy_ae400", "model.net.hidden=[400,100]",
        expect="'model.net.hidden' is [400, 100], but kind 'ae' has one layer"),
    row("szegedy-weight-decay", "experiment=szegedy_fc100", "model.net.weight_decay=[0.1,0.2]",
        expect="'model.net.weight_decay' has 2 values, but the network has 3 layers (fc1, fc2, output)"),
    row("szegedy-pretrain", "experiment=szegedy_fc100", "model.pretrain_epochs=2",
        expect="'model.pretrain_epochs' is 2"),
    row("szegedy-softmax-hidden", "experiment=szegedy_softmax1", "model.net.hidden=[100]",
        expect="'model.net.hidden' is [100], but kind 'softmax' has no hidden layer"),
    row("szegedy-dropout", "experiment=szegedy_conv", "model.net.dropout=1.5",
        expect="'model.net.dropout' is 1.5, but it must be a number in [0, 1)."),
    row("adversarial-refresh", "experiment=szegedy_fc100_adversarial", "callbacks.adversarial_training.refresh_every=0",
        expect="'callbacks.adversarial_training.refresh_every' is 0, but it must be an integer >= 1."),
    row("adversarial-lbfgs", "experiment=szegedy_fc100_adversarial", "model/optimizer=lbfgs", "data.train_size=100",
        "data.batch_size=100", "debug=smoke",
        expect="'model.optimizer' is torch.optim.LBFGS, but callbacks.adversarial_training adds its pools' loss to "
               "mini-batch steps, and with a full-batch line search the run trains nothing"),
    row("adversarial-layers", "experiment=szegedy_fc100_adversarial", "callbacks.adversarial_training.layers=[5]",
        "data.train_size=100", "debug=smoke",
        expect="'callbacks.adversarial_training.layers' is [5], but the network's layers are 0..2 (0: examples of "
               "the input, k: of the output of layer k, fc1, fc2)"),
    row("reae-kl-lr", "model=forward_autoencoder", "model.kl_lr=-0.02", expect="'model.kl_lr' is -0.02, but it must "
                                                                               "be a number > 0."),
    row("reae-no-validation", "experiment=reae_digits", "data.val_fraction=0", "optimized_metric=null",
        "callbacks.early_stopping=null", "model.lambdas=[0.01]", "model.taus=[0.001]", "debug=smoke",
        expect="DigitsDataModule has no validation images (data.val_fraction=0), but the forward autoencoder chooses "
               "rho, lambda and tau on them; give data.val_fraction > 0"),
    row("reae-max-iter", "model=forward_autoencoder", "model.max_iter=0", expect="'model.max_iter' is 0"),
    row("reae-softmax-tau-0", "model=forward_autoencoder", "model.taus=[0,0.01]",
        expect="'model.taus' is [0.0, 0.01], but the softmax classifier's fit does not start without an L2 weight"),
    row("perceptual-feature-width", "model=perceptual_autoencoder", "model.loss_network.weights=random",
        "model.feature_hidden_max=0", expect="'model.feature_hidden_max' is 0, but it must be an integer >= 1."),
    row("probe-grid", "model=perceptual_autoencoder", "model.loss_network.weights=random", "callbacks=probe",
        "callbacks.probe.grid=[[0]]", expect="'callbacks.probe.grid' is [[0]], but it must be a non-empty list of "
                                              "hidden-layer width lists"),
    row("sdlm-schedule", "model=lenet5_classic_sdlm", "callbacks=sdlm", "model.scheduler.epochs=[2,3]",
        expect="'model.scheduler.epochs' has 2 epoch counts and 'model.scheduler.values' 5 values"),
    row("sdlm-mu", "model=lenet5_classic_sdlm", "callbacks=sdlm", "model.optimizer.mu=-1", expect="mu=-1"),
    row("sdlm-lr-the-schedule-overrides", "model=lenet5_classic_sdlm", "callbacks=sdlm", "model.optimizer.lr=0.1",
        expect="Config key 'model.optimizer.lr' is 0.1, but PiecewiseConstantLR sets every epoch's rate from "
               "'model.scheduler.values', whose first is 0.0005, so it would have no effect; set the rates in "
               "model.scheduler.values instead (model.optimizer.lr must equal their first)."),
    row("sdlm-schedule-values", "model=lenet5_classic_sdlm", "callbacks=sdlm", "model.scheduler.values=[0.001,-0.1]",
        "model.scheduler.epochs=[2]", expect="'model.scheduler.values' is [0.001, -0.1], but it must be a list of one "
                                             "or more learning rates >= 0"),
    row("sdlm-schedule-epochs", "model=lenet5_classic_sdlm", "callbacks=sdlm", "model.scheduler.values=[0.001,0.1]",
        "model.scheduler.epochs=[0]",
        expect="'model.scheduler.epochs' is [0], but it must be a list of epoch counts >= 1"),
    row("sdlm-without-hessian", "model=lenet5_classic_sdlm", expect=("SDLM", "add callbacks=sdlm")),
    row("hessian-without-sdlm", "callbacks=sdlm",
        expect=("'callbacks.hessian_estimation' estimates the Hessian diagonal that the SDLM optimizer steps by, but "
                "model.optimizer._target_ is 'torch.optim.SGD', which does not use it")),
    row("sdlm-network-without-hessian", "model=lenet5_classic_sdlm", "callbacks=sdlm",
        "model.net._target_=lightning_modules.lenet5.LeNet5", "~model.net.criterion", "~model.net.map_constant",
        expect="The SDLM optimizer (model.optimizer) steps by the network's Hessian diagonal, but LeNet5 has no "
               "diagonal_hessian(images) method to estimate it; give the network that method (as "
               "lightning_modules.lenet5.LeNet5Classic has), or choose another model.optimizer."),
    row("sdlm-options-without-callback", "experiment=lenet5_classic_mnist", "callbacks=default",
        expect=("'callbacks.hessian_estimation' sets first_epoch_every_n_steps", "e.g. callbacks=sdlm")),
    row("szegedy-padded-mnist", "model=szegedy", "data=mnist",
        expect="the model expects 28x28 images, the data has 32x32 (set data.pad_to=null)"),
    row("szegedy-digits", "model=szegedy", expect="(set data.image_size=28)"),
    # ---- data values and data x model combinations
    row("batch-size", "data.batch_size=0", expect="'data.batch_size' is 0"),
    row("val-fraction", "data.val_fraction=1.0", expect="'data.val_fraction' is 1.0"),
    row("no-validation-batches", "+trainer.limit_val_batches=0",
        expect="Config key 'trainer.limit_val_batches' is 0 (no validation batches), but callbacks.model_checkpoint "
               "and callbacks.early_stopping monitor 'val/acc' (optimized_metric); set optimized_metric=null and "
               "callbacks.early_stopping=null, or allow validation batches."),
    row("no-validation-batches-early-stopping-left-out", "+trainer.limit_val_batches=0", "~callbacks.early_stopping",
        expect="but callbacks.model_checkpoint monitors 'val/acc' (optimized_metric); set optimized_metric=null, or"),
    row("no-validation-batches-checkpoint-monitoring-its-own", "+trainer.limit_val_batches=0",
        "callbacks.early_stopping=null", "callbacks.model_checkpoint.monitor=val/loss",
        expect="but callbacks.model_checkpoint monitors 'val/loss'; set callbacks.model_checkpoint.monitor=null, or"),
    row("on-device", "data.on_device=maybe", expect="'data.on_device' is 'maybe'"),
    row("split-seed", "data.split_seed=1.5", expect="Config key 'data.split_seed' is 1.5, but it must be an integer "
                                                    "in [0, 2^32)."),
    row("seed-out-of-bounds", "seed=4294967296", expect="'seed' is 4294967296, but it must be an integer in [0, 2^32)"),
    row("part-seed", "data=mnist", "data.part_seed=abc", expect="'data.part_seed' is 'abc', but it must be an integer"),
    row("stratify-not-a-bool", "data.stratify=yes", expect="'data.stratify' is 'yes', but it must be true or false"),
    row("random-num-train", "data=random", "data.num_train=-5", expect="'data.num_train' is -5, but it must be an "
                                                                       "integer >= 1"),
    row("no-training-images", "data=random", "data.num_train=1", "data.num_test=8",
        expect="RandomImagesDataModule: the train split holds 1 image(s) and data.val_fraction=0.1 holds out 1, which "
               "leaves none to train on; give it more images or a smaller data.val_fraction."),
    row("std-zero", "data.std=0", expect="Config key 'data.std' is 0, but it must be a number or one number per "
                                         "channel, each > 0 (inputs are divided by it)."),
    row("mean-not-a-number", "data.mean=abc",
        expect="Config key 'data.mean' is 'abc', but it must be a number or one number per channel."),
    row("distortion", "experiment=lenet5_classic_mnist_distorted", "data.distortion.scale=1.5",
        expect="'data.distortion' is {'translate': 2.0, 'scale': 1.5"),
    row("distortion-fraction", "experiment=lenet5_classic_mnist_distorted", "data.distortion.original_fraction=2",
        expect="'data.distortion.original_fraction' is 2"),
    row("distortion-not-a-number", "experiment=lenet5_classic_mnist_distorted", "data.distortion.shear=abc",
        expect="Config key 'data.distortion.shear' is 'abc', but it must be a number."),
    row("perceptual-on-digits", "model=perceptual_autoencoder", "model.loss_network.weights=random",
        expect="the model expects 64x64 images, the data has 32x32 (set data.image_size=64)"),
    row("perceptual-on-stl10", "model=perceptual_autoencoder", "model.loss_network.weights=random", "data=stl10",
        expect="the model expects 64x64 images, the data has 96x96 (set model.input_size=96)"),
    row("perceptual-without-its-metric", "model=perceptual_autoencoder", "model.loss_network.weights=random",
        "data.image_size=64", "debug=limit",
        expect=("'optimized_metric' is 'val/acc'", "val/loss, val/reconstruction")),
    row("loss-network-unreadable", "model=perceptual_autoencoder", "model.loss_network.weights={tmp}/data/run.ckpt",
        data=unreadable_checkpoint, expect="which torch.load cannot read as weights"),
    row("probe-task", "callbacks=probe", expect="set callbacks.probe.task=classification"),
    # the probe's data, before the autoencoder trains (it was read only at the end of fit, after all the training)
    row("probe-data-missing", "experiment=perceptual_svhn", "model.loss_network.weights=random",
        data=svhn_without_its_train_split,
        expect=("SVHNDataModule: expected", "train_32x32.mat but it does not exist")),
    row("probe-data-shape", "experiment=perceptual_lunarlander", "model.loss_network.weights=random",
        *(f"data.{key}={value}" for key, value in LUNARLANDER_SMALL.items() if "seed" not in key),
        "callbacks.probe.data.image_size=32",
        expect=("The embedding probe's data (LunarLanderDataModule, callbacks.probe.data) hands the encoder inputs of "
                "shape [3, 32, 32], the run's data [3, 64, 64]")),
    # the rule's sentence, before any work: the probe's own check in setup names 'class' too (probe-task)
    row("probe-task-value", "callbacks=probe", "callbacks.probe.task=class",
        expect="'callbacks.probe.task' is 'class', but it must be 'regression' or 'classification'"),
    row("lunarlander-lenet5", *LUNARLANDER,
        expect=("the model expects 1 channel(s), the data has 3", "data.grayscale=true", "regression targets")),
    row("label-observation", *LUNARLANDER, "data.label_observation=during", expect="'data.label_observation'"),
    row("rgb-classic", "data=cifar10", "model=lenet5_classic", expect=("1 channel(s), the data has 3", "grayscale")),
    row("random-channels", "data=random", "data.channels=3", expect="model.net.in_channels=3"),
    row("flatten", "data=cifar10", "data.grayscale=true", "data.flatten=true", expect="data.flatten=false"),
    # both remedies at once: the first alone led to the second refusal
    row("flatten-and-pad", "data=mnist", "+data.flatten=true", "model=szegedy",
        expect=("the data gives vectors of 1024 (set data.flatten=false); the model expects 28x28 images, the data has "
                "32x32 (set data.pad_to=null)")),
    row("pad-to-small", "data=svhn", "data.grayscale=true", "data.pad_to=16", expect="'data.pad_to' is 16"),
    row("pad-to-large", "data=svhn", "data.grayscale=true", "data.pad_to=64", expect="data.pad_to=null"),
    row("mean-channels", "data=mnist", "data.mean=[0.1,0.2,0.3]", expect="'data.mean' has 3 values"),
    row("split", "data=svhn", "data.train_split=unlabeled", expect="'data.train_split' is 'unlabeled'"),
    row("unlabeled-classifier", "data=stl10", "data.train_split=unlabeled", "model=forward_autoencoder",
        expect=("no labels", "data.train_split")),
    # ---- dataset files: missing, corrupt, truncated (each in a fresh data directory)
    row("mnist-missing", "data=mnist", data=nothing, expect=("train-images-idx3-ubyte", "data.download=true")),
    row("mnist-magic", "data=mnist", data=mnist_wrong_magic, expect="train-images-idx3-ubyte is not an IDX file"),
    row("mnist-truncated", "data=mnist", data=mnist_truncated, expect="t10k-labels-idx1-ubyte is truncated"),
    row("mnist-label-count", "data=mnist", data=mnist_label_count, expect="train-labels-idx1-ubyte"),
    row("cifar10-missing", "data=cifar10", "data.grayscale=true", data=nothing, expect="data_batch_1"),
    row("svhn-corrupt", "data=svhn", "data.grayscale=true", data=svhn_not_a_mat_file, expect="train_32x32.mat"),
    row("target-module-not-on-path", "model.net._target_=mynets.ConvNet",
        expect=("'model.net._target_' is 'mynets.ConvNet', but no module 'mynets' is on Python's path",
                "PYTHONPATH=<folder>")),
    row("early-stopping-patience", "callbacks.early_stopping.patience=-2",
        expect="'callbacks.early_stopping.patience' is -2, but it must be an integer >= 0"),
    row("param-groups", "model.param_groups=foo", expect="'model.param_groups' is 'foo', but it must be 'per_layer'"),
    row("lr-read-from-the-schedule", "experiment=lenet5_classic_mnist", "model.scheduler.values=[0,0.002]",
        "model.scheduler.epochs=[2]",  # the schedule's first value is the optimizer's lr: the key the user set is named
        expect="'model.optimizer.lr' is 0 (read from ${oc.select:model.scheduler.values.0,0.0005}: change the value "
               "there), but it must be a number > 0."),
    row("param-groups-lbfgs", "model=szegedy", "data.image_size=28", "model.param_groups=per_layer",
        expect="model.optimizer is torch.optim.LBFGS, which takes one group; set model.param_groups=single"),
    row("model-classes-differ-from-data", "model.num_classes=2",
        expect="DigitsDataModule does not fit LeNet5: the model has 2 classes, the data 10 (set model.num_classes=10 "
               "and model.net.num_classes=10)."),  # once: not also as the network's outputs against the module's
    row("net-classes-differ", "model.net.num_classes=5",
        expect=("the network has 5 outputs (model.net.num_classes), the module's metrics count 10", "set both to 10")),
    row("optimizer-not-partial", "~model.optimizer._partial_",
        expect=("'model.optimizer' (SGD) lacks _partial_: true", "+model.optimizer._partial_=true")),
    row("scheduler-not-partial", "model.scheduler={_target_: torch.optim.lr_scheduler.StepLR, step_size: 2}",
        expect=("'model.scheduler' (StepLR) lacks _partial_: true", "takes 'optimizer' from the module")),
    row("net-argument-mistyped", "model.net.in_channels=abc",
        expect="Config key 'model.net.in_channels' is 'abc', but LeNet5's argument in_channels takes int; give a value "
               "of that type."),
    # Lightning meets these only where it first uses them: after training (min_epochs, once early stopping fires), or
    # never (min_steps, deterministic)
    row("group-removed", "~data", expect=("Config group 'data' names no class (_target_; removed with ~data?)",
                                          "choose one of cifar10, digits,")),
    row("group-removed-but-debugs-keys", "~trainer", "debug=fdr",
        expect="Config group 'trainer' names no class (_target_; removed with ~trainer?)"),
    row("trainer-argument-mistyped", "trainer.min_epochs=abc",
        expect="Config key 'trainer.min_epochs' is 'abc', but Trainer's argument min_epochs takes int or None; give a "
               "value of that type."),
    row("trainer-argument-mistyped-unused", "+trainer.min_steps=abc",
        expect="'trainer.min_steps' is 'abc', but Trainer's argument min_steps takes int or None"),
    row("trainer-argument-of-a-union-mistyped", "+trainer.limit_val_batches=all",  # "'<=' not supported", no key named
        expect="Config key 'trainer.limit_val_batches' is 'all', but Trainer's argument limit_val_batches takes int, "
               "float or None; give a value of that type."),
    row("callback-argument-given-null", "callbacks.progress_bar.refresh_rate=null",  # a traceback at fit's start
        expect="Config key 'callbacks.progress_bar.refresh_rate' is null, but TQDMProgressBar's argument refresh_rate "
               "takes int; give a value of that type."),
    row("logger-argument-mistyped", "logger.csv.name=3",  # a traceback at fit's start
        expect="'logger.csv.name' is 3, but AppendingCSVLogger's argument name takes str or None"),
    row("net-argument-given-null", "model.net.num_classes=null",
        expect="'model.net.num_classes' is null, but LeNet5's"),
    row("trainer-deterministic", "trainer.deterministic=abc",
        expect="'trainer.deterministic' is 'abc', but it must be true, false, 'warn' or null"),
    row("net-size-negative", "model.net.in_channels=-1",
        expect="Config key 'model.net.in_channels' is -1, but LeNet5 makes a tensor of that size; give a positive "
               "integer."),
    row("linear-size-negative", "~model.net", "+model.net._target_=torch.nn.Linear", "+model.net.in_features=1024",
        "+model.net.out_features=-10",
        expect="Config key 'model.net.out_features' is -10, but Linear makes a tensor of that size"),
    # an argument only the config can give: _partial_ (the old advice) would not give it either
    row("net-lacks-argument", "~model.net", "+model.net._target_=torch.nn.Linear", "+model.net.in_features=1024",
        expect="Config key 'model.net' (Linear) lacks the required argument(s) 'out_features'; add them with "
               "+model.net.<name>=<value>."),
    # check_kinds through train.py (test_a_network_or_dataset_where_... calls it directly)
    row("model-is-a-network", "~model", "+model._target_=torch.nn.Flatten",
        expect=("Config key 'model._target_' is Flatten, which is not a LightningModule", "put it under model.net")),
    row("train-on-test", "data=mnist", "+data.train_split=test", data=nothing,
        expect=("'data.train_split' is 'test', and the test stage reads test too", "choose another of train")),
    row("train-overlaps-test", "data=svhn", "data.train_split=train+extra", "data.test_split=train", data=nothing,
        expect=("'data.train_split' is 'train+extra', and the test stage reads train too", "another of test, extra")),
    row("stl10-fold-range", "data=stl10", "data.folds=10", data=nothing, expect="'data.folds' is 10, but it must be"),
    row("stl10-fold-unlabeled", "data=stl10", "model=forward_autoencoder", "data.folds=2", "data.train_split=unlabeled",
        data=nothing, expect="'data.folds' is 2, but data.train_split is 'unlabeled', which has no folds"),
    row("stl10-test-unlabeled", "data=stl10", "model=szegedy", "data.test_split=unlabeled", data=nothing,
        expect="the model is tested on class labels, the data's test split has no labels (choose another "
               "data.test_split, or test=false)"),
    row("stl10-truncated", "data=stl10", "model=forward_autoencoder", data=stl10_truncated, expect="train_X.bin"),
    row("stl10-labels", "data=stl10", "model=forward_autoencoder", data=stl10_label_out_of_range,
        expect="train_y.bin holds labels in 11..11 (expected each 1..10, one per image of train_X.bin)"),
    # ---- trainer: our rules and Lightning's refusals while it builds the Trainer
    row("max-epochs", "trainer.max_epochs=0", expect="'trainer.max_epochs' is 0"),
    row("devices-zero", "trainer.devices=0", expect="'trainer.devices' is 0, which Lightning's Trainer refuses"),
    row("devices-negative", "trainer.devices=-2", expect="'trainer.devices' is -2"),
    row("precision", "trainer.precision=17", expect="'trainer.precision' is 17"),
    row("strategy", "+trainer.strategy=nope", expect="'trainer.strategy' is 'nope'"),
    row("limit-batches", "+trainer.limit_train_batches=-1", expect="'trainer.limit_train_batches' is -1"),
    row("trainer-argument", "+trainer.epochs=3", expect="'trainer.epochs' is not an argument of Trainer"),
    row("validation-interval-zero", "+trainer.val_check_interval=0",  # a ZeroDivisionError in the first epoch
        expect="Config error: Config key 'trainer.val_check_interval' is 0, but it must be an integer >= 1 (training "
               "batches between validations), a fraction of an epoch in (0, 1], a duration 'DD:HH:MM:SS' or a mapping "
               "such as '{minutes:30}' (time between validations), or null (at each epoch's end)."),
    row("max-time-in-hours", "+trainer.max_time=1h",  # Lightning's refusal named no key
        expect="Config error: Config key 'trainer.max_time' is '1h', but it must be a duration 'DD:HH:MM:SS' "
               "(00:12:00:00: 12 hours), a mapping of weeks, days, hours, minutes or seconds ('{hours:12}'), or null "
               "(no time limit)."),
    row("max-time-mapping-misspelt", "+trainer.max_time={hour:1}",  # timedelta's TypeError traceback
        expect="Config key 'trainer.max_time' is {'hour': 1}, but it must be a duration 'DD:HH:MM:SS'"),
    row("barebones", "+trainer.barebones=true",  # all it needs at once: Lightning refused them one at a time
        expect="'trainer.barebones' is true, and Lightning's barebones Trainer runs without loggers, callbacks "
               "(checkpoints included) and their settings; add logger=none callbacks=none "
               "trainer.log_every_n_steps=null."),
    row("barebones-progress-bar", "+trainer.barebones=true", "logger=none", "callbacks=none",
        "trainer.log_every_n_steps=null", "+trainer.enable_progress_bar=true",
        expect="add trainer.enable_progress_bar=false."),
    # ---- callbacks: Lightning's, the MI callback's constructor and hooks, the batch-size schedule
    row("early-stopping-mode", "callbacks.early_stopping.mode=up", expect="'callbacks.early_stopping.mode' is 'up'"),
    row("lr-monitor", "callbacks.lr_monitor.logging_interval=hour", expect="'callbacks.lr_monitor.logging_interval'"),
    # wandb.init refused these with a traceback (pydantic, UsageError) or took them misread (tags as letters)
    row("wandb-resume", "logger=wandb", "logger.wandb.resume=bogus",
        expect="'logger.wandb.resume' is 'bogus', but it must be one of allow, must, never, auto, or null"),
    row("wandb-id", "logger=wandb", "logger.wandb.id='a/b c'", expect="'logger.wandb.id' is 'a/b c', but it must be a "
                                                                   "run id without / \\ # ? % :"),
    row("wandb-project", "logger=wandb", "logger.wandb.project=a/b", expect="'logger.wandb.project' is 'a/b'"),
    row("tags-not-a-list", "tags=notalist", expect="'tags' is 'notalist', but it must be a list of words"),
    row("tag-too-long", f"tags=[{'x' * 65}]", expect="a list of words of 1-64 characters (wandb's limit)"),
    row("wandb-id-shared-by-a-sweep", "-m", "logger=wandb", "logger.wandb.id=fixedid", "seed=1,2",
        expect="'logger.wandb.id' is 'fixedid' for every job of this sweep, whose jobs would then all write into"),
    row("wandb-offline", "logger=wandb", "logger.wandb.offline=maybe", expect="'logger.wandb.offline' is 'maybe'"),
    row("wandb-log-model", "logger=wandb", "logger.wandb.log_model=bogus", expect="true, false or 'all'"),
    row("wandb-mode", "logger=wandb", "+logger.wandb.mode=ofline",  # a pydantic traceback of wandb.init's
        expect="'logger.wandb.mode' is 'ofline', but it must be one of online, offline, shared, disabled, dryrun, run "
               "(offline: no network), or null"),
    row("wandb-init-argument", "logger=wandb", "+logger.wandb.entitiy=lab",  # a TypeError of wandb.init's
        expect="Config error: Config key 'logger.wandb.entitiy' is an argument of neither WandbLogger nor wandb.init, "
               "to which WandbLogger passes the keys it does not take (the closest: entity, reinit); remove it with "
               "~logger.wandb.entitiy, or fix its spelling."),
    row("tensorboard-writer-argument", "logger=tensorboard", "+logger.tensorboard.flush_sec=5",  # SummaryWriter's
        expect="Config error: Config key 'logger.tensorboard.flush_sec' is an argument of neither TensorBoardLogger "
               "nor SummaryWriter, to which TensorBoardLogger passes the keys it does not take (the closest: "
               "flush_secs); remove it with ~logger.tensorboard.flush_sec, or fix its spelling."),
    row("wandb-save-dir-a-file", "logger=wandb", "logger.wandb.save_dir={tmp}/data/run.ckpt", data=lenet5_checkpoint,
        expect="must be a folder, not a file"),
    row("checkpoint-argument", "+callbacks.model_checkpoint.keep=2", expect="'callbacks.model_checkpoint.keep'"),
    row("mi-policy", *MI, "callbacks.mi_lr.policy=cosine", expect="'callbacks.mi_lr.policy' is 'cosine'"),
    row("mi-k", *MI, "callbacks.mi_lr.k=2000", expect=("k=2000, but the estimator takes", "sample_size=100 ")),
    row("mi-sample-small", *MI, "callbacks.mi_lr.sample_size=5",
        expect="sample_size=5 gives some of the 10 classes fewer than two images"),
    row("mi-lr-range", *MI, "callbacks.mi_lr.lr_min=0.5", "callbacks.mi_lr.lr_max=0.1", expect="lr_min=0.5"),
    row("mi-sample-size", *MI, "callbacks.mi_lr.sample_size=5000", expect="callbacks.mi_lr.sample_size <= 1150"),
    row("mi-layers", *MI, "model.param_groups=single", "callbacks.mi_lr.layers=[c1]", expect="layers ['c1']"),
    row("mi-scheduler", *MI, STEP_LR, expect="model.scheduler=null"),
    row("mi-one-group", *MI, "model=szegedy", "data.image_size=28", expect="set model.param_groups=per_layer"),
    row("lr-policy-scheduler", *MI, "+lr_policy=warmup", "callbacks.mi_lr.policy=reference",
        expect="model.scheduler=null"),
    # a check in a DDP worker's setup (ddp_fork: the launcher and error path of trainer=ddp_sim, without its
    # seconds of interpreter start-up per worker)
    row("ddp-worker", *MI, "trainer=ddp_sim", "trainer.strategy=ddp_fork", "callbacks.mi_lr.sample_size=5000",
        expect="callbacks.mi_lr.sample_size <= 1150"),
    row("lr-policy-without-callback", "+lr_policy=layerwise", expect=("'callbacks.mi_lr' sets", "callbacks=mi_lr")),
    row("callback-not-a-callback", "+callbacks.mine._target_=torch.nn.Identity",
        expect="Config key 'callbacks.mine._target_' is torch.nn.Identity, which is not a Lightning Callback "
               "(lightning.pytorch.Callback); give a subclass of it."),
    row("logger-not-a-logger", "+logger.mine._target_=torch.nn.Identity",
        expect="Config key 'logger.mine._target_' is torch.nn.Identity, which is not a Lightning Logger "
               "(lightning.pytorch.loggers.Logger); give a subclass of it."),
    row("callback-options-without-target", "+callbacks.mine.verbose=true",
        expect="'callbacks.mine' sets verbose but names no callbacks (_target_); add the callbacks (e.g. "
               "+callbacks.mine._target_=<its class, e.g. mymodule.MyCallback>) or remove these options."),
    row("batch-schedule", *MI, "+batch_schedule=grow", "trainer.reload_dataloaders_every_n_epochs=0",
        expect="trainer.reload_dataloaders_every_n_epochs=1"),
    # ---- logger, paths, hydra, debug
    row("accumulate-grad-batches", "+trainer.accumulate_grad_batches=0",
        expect="'trainer.accumulate_grad_batches' is 0, but it must be an integer >= 1"),
    row("check-val-every-n-epoch", "trainer.check_val_every_n_epoch=0",
        expect="'trainer.check_val_every_n_epoch' is 0, but it must be an integer >= 1, or null"),
    # Lightning's LR finder sets a model attribute lr that the framework's modules have not: a traceback
    row("wandb-project-length", "logger=wandb", f"logger.wandb.project={'p' * 129}",  # wandb's limit: a traceback
        expect="'logger.wandb.project' is 'ppp"),
    row("learning-rate-finder", "+callbacks.finder._target_=lightning.pytorch.callbacks.LearningRateFinder",
        expect=("'callbacks.finder._target_' is 'lightning.pytorch.callbacks.LearningRateFinder'",
                "model.optimizer.lr=0.01,0.03,0.1")),
    row("default-root-dir", "trainer.default_root_dir={tmp}/elsewhere",  # Lightning's place for a run's files
        expect=("'trainer.default_root_dir' is", "/elsewhere (a sweep: hydra.sweep.dir)")),
    row("no-validation-in-the-run", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=5",  # ran without a word
        expect=("'trainer.check_val_every_n_epoch' is 5, more than trainer.max_epochs (2), so no validation runs",
                "trainer.check_val_every_n_epoch=2")),
    row("val-check-interval-beyond-the-epoch", "+trainer.val_check_interval=100000",
        expect=("Config key 'trainer.val_check_interval' is 100000, which Lightning's Trainer refuses for this data",
                "must be less than or equal to the number of the training batches")),
    row("val-check-interval-with-limited-validation", "+trainer.val_check_interval=100000",  # its remedy names it
        "+trainer.limit_val_batches=1", expect="Config key 'trainer.val_check_interval' is 100000, which Lightning's"),
    row("logger-option", "logger=nope", expect=("Config group 'logger' has no option 'nope'", "tensorboard")),
    row("logger-option-in-a-list", "logger=[csv,tensorbaord]",
        expect="Config group 'logger' has no option 'tensorbaord' (did you mean 'tensorboard'?); choose one of csv, "
               "none, tensorboard, wandb."),
    row("download-into-a-file", "data=mnist", "data.download=true", "data.data_dir={tmp}/data/a_file",
        data=a_plain_file,
        expect=("MNISTDataModule: cannot download into", "a_file, as it is a file, not a folder", "DATA_DIR")),
    row("lunarlander-cache-in-a-file", "data=lunarlander", "model=perceptual_autoencoder",
        "data.data_dir={tmp}/data/a_file/x", data=a_plain_file,
        expect=("LunarLander frames cannot be cached in", "as it cannot be created: Not a directory")),
    row("sweep-dir-unmakeable", "-m", "seed=1", "hydra.sweep.dir={tmp}/data/a_file/sweep", data=a_plain_file,
        expect=("The output directory cannot be made or written:", "a_file/sweep (Not a directory)",
                "hydra.sweep.dir=")),
    row("paths", "data=mnist", "paths.data_dir=/no/such/dir", expect="/no/such/dir/MNIST/raw/train-images-idx3-ubyte"),
    row("launcher-option", "hydra/launcher=nope",
        expect=("Config group 'hydra/launcher' has no option 'nope'", "submitit_slurm")),
    # Hydra's own typed settings: "Error merging override ..." without its cause
    row("launcher-typed-int", "-m", "hydra/launcher=slurm", "hydra.launcher.timeout_min=abc",
        expect="'hydra.launcher.timeout_min' is 'abc', but Hydra's settings are typed and it must be a whole number; "
               "give one."),
    row("launcher-typed-list", "-m", "hydra/launcher=slurm", "hydra.launcher.setup=notalist",
        expect="it must be a list in brackets ([a,b])"),
    # a launcher's options are all it passes on to submitit, which refused any other with a NameError traceback
    row("launcher-option-misspelt", "-m", "hydra/launcher=local", "+hydra.launcher.timeout_mn=5", "seed=1,2",
        expect="Config error: Config key 'hydra.launcher.timeout_mn' is not an option of hydra/launcher=local, this "
               "command's launcher (the closest: timeout_min), and a launcher takes no others; fix its spelling."),
    row("slurm-launcher-option-misspelt", "-m", "hydra/launcher=slurm", "hydra.launcher.acount=lab",
        expect="Config error: Config key 'hydra.launcher.acount' is not an option of hydra/launcher=slurm, this "
               "command's launcher (the closest: account, comment), and a launcher takes no others; fix its spelling "
               "(an sbatch option it does not list goes in +hydra.launcher.additional_parameters.<name>=<value>)."),
    row("option-of-another-launcher", "-m", "hydra/launcher=local", "hydra.launcher.partition=debug",
        expect="Config error: Config key 'hydra.launcher.partition' is an option of hydra/launcher=slurm, not of "
               "hydra/launcher=local, this command's launcher; choose hydra/launcher=slurm with it (hydra/launcher="
               "slurm hydra.launcher.partition=...), or leave the key out."),
    row("option-of-the-basic-launcher", "-m", "++hydra.launcher.timeout_min=5", "seed=1",  # was told to add it so
        expect="Config error: Config key 'hydra.launcher.timeout_min' is an option of hydra/launcher=local and hydra/"
               "launcher=slurm, not of hydra/launcher=basic, this command's launcher; choose hydra/launcher=local with "
               "it (hydra/launcher=local hydra.launcher.timeout_min=...), or leave the key out."),
    row("joblib-launchers-option", "-m", "seed=1,2", "hydra.launcher.n_jobs=2",  # Hydra's docs' way to run jobs at once
        expect="Config error: Config key 'hydra.launcher.n_jobs' is the number of parallel jobs of Hydra's joblib "
               "launcher, which is not installed here; hydra/launcher=basic, this command's launcher, runs one job "
               "after another: choose hydra/launcher=local (each job a process of its own, all started at once) "
               "instead of n_jobs."),
    row("joblib-launchers-option-with-the-local-launcher", "-m", "hydra/launcher=local", "seed=1,2",
        "hydra.launcher.n_jobs=2",
        expect="Config error: Config key 'hydra.launcher.n_jobs' is the number of parallel jobs of Hydra's joblib "
               "launcher, which is not installed here; hydra/launcher=local, this command's launcher, starts every job "
               "at once already; leave n_jobs out."),
    row("joblib-launchers-option-with-the-slurm-launcher", "-m", "hydra/launcher=slurm", "seed=1,2",
        "hydra.launcher.n_jobs=2",
        expect="Config error: Config key 'hydra.launcher.n_jobs' is the number of parallel jobs of Hydra's joblib "
               "launcher, which is not installed here; hydra/launcher=slurm, this command's launcher, runs as many at "
               "once as SLURM allows; leave n_jobs out (hydra.launcher.array_parallelism=<n> limits them)."),
    # Hydra's config is not a job's: the sweep's sentence (and its ++) were for keys of jobs
    row("key-of-hydras-config-in-a-sweep", "-m", "hydra/launcher=slurm", "hydra.launcher.additional_parameters.qos=x",
        expect="Config error: Config key 'hydra.launcher.additional_parameters.qos' is not in the config (the closest "
               "existing keys: hydra.launcher.qos); fix its spelling, or add a new key with "
               "+hydra.launcher.additional_parameters.qos=x."),
    row("hydra-setting-swept", "-m", "hydra.verbose=true,false",
        expect="Config error: Config key 'hydra.verbose' is given the sweep true,false, but Hydra's own settings take "
               "one value for the whole sweep; give one value (hydra.verbose=true), and run a sweep for each."),
    row("sweeper-params-on-the-command-line", "-m", "hydra.sweeper.params.seed=1,2",
        expect="Config error: Config key 'hydra.sweeper.params.seed' is given the sweep 1,2, but Hydra's own settings "
               "take one value for the whole sweep; give the sweep as seed=1,2 (hydra.sweeper.params is where a config "
               "file lists its sweeps)."),
    row("logger-argument", "+logger.csv.flush_every=3", expect="'logger.csv.flush_every' is not an argument"),
    row("debug-option", "debug=nope", expect=("Config group 'debug' has no option 'nope'", "smoke")),
    # ---- evaluate.py
    row("evaluate-runs-unset", expect="Config key 'runs' is not set", script="evaluate.py"),
    row("evaluate-no-results", "runs={tmp}", expect="but there is no results.json under it", script="evaluate.py"),
    row("evaluate-metrics-empty", "runs={tmp}/data", "metrics=[]", data=reae_table1_results, script="evaluate.py",
        expect="Config key 'metrics' is [], which leaves the table no column; name some of the runs' metrics (test/"),
    row("evaluate-runs-missing", "runs={tmp}/nothing", expect="/nothing', but it does not exist; give the output",
        script="evaluate.py"),
    row("evaluate-task", "runs={tmp}", "task=attack", expect="'task' is 'attack'", script="evaluate.py"),
    row("evaluate-key-below-group-by", "runs={tmp}/data", "group_by.x=1", data=reae_table1_results,  # told to add
        script="evaluate.py",  # it with +, which made group_by the mapping {x: 1}, "which no run has"
        expect="Config error: Config key 'group_by' is null, and group_by.x names nothing below it; set the key itself "
               "(group_by=<value>), which must be a list of dotted config keys (group_by=[model.optimizer.lr,seed]) "
               "or one key, or null (every key the runs' command lines set, but seed and those that say how a run "
               "ran)."),
    row("evaluate-metrics-a-mapping", "runs={tmp}/data", "metrics={a: 1}", data=reae_table1_results,
        script="evaluate.py", expect="Config key 'metrics' is {'a': 1}, but it must be a list of metric names as "
                                     "results.json holds them (metrics=[test/acc,val/acc]) or one name, or null"),
    row("szegedy-examples", "runs={tmp}", "task=szegedy_table1", "szegedy.examples=0", script="evaluate.py",
        expect="'szegedy.examples' is 0, but it must be an integer >= 1"),
    row("mi-sample-size-sizes-small", "task=mi_sample_size", "mi_sample_size.sizes=[3]", script="evaluate.py",
        expect="each an integer >= 20"),
    row("evaluate-runs-list-entry-without-results", "runs=[{tmp}/data,{tmp}/nothing]", data=reae_table1_results,
        script="evaluate.py", expect="/nothing' does not exist; give the output directory of a finished run"),
    row("evaluate-output-unwritable", "runs={tmp}/data", "output={tmp}/data/run/results.json/table.md",
        data=reae_table1_results, script="evaluate.py",
        expect=("Config key 'output' leads to ", "results.json/table.md, which cannot be written", "give output=")),
    row("evaluate-output-not-markdown", "runs={tmp}/data", "output={tmp}/data/run/results.json",
        data=reae_table1_results, script="evaluate.py",
        expect=("run/results.json', which is not a markdown file; give a path ending in .md, or a folder")),
    row("evaluate-results-json-not-json", "runs={tmp}/data", data=a_results_json_overwritten_by_a_table,
        script="evaluate.py", expect=("run/results.json is not a results.json that a run wrote (JSONDecodeError",
                                      "train that run again")),
    row("evaluate-results-json-without-metrics", "runs={tmp}/data", data=a_results_json_without_metrics,
        script="evaluate.py", expect="run/results.json is not a results.json that a run wrote (it holds no metrics); "
                                     "train that run again, or move the file out of runs=."),
    row("evaluate-results-json-metric-as-text", "runs={tmp}/data", data=a_results_json_with_a_metric_as_text,
        script="evaluate.py", expect="run/results.json is not a results.json that a run wrote (its metric 'test/acc' "
                                     "is '0.7', not a number); train that run again, or move the file out of runs=."),
    row("reae-figure-on-table-runs", "task=reae_figure2", "runs={tmp}/data", data=reae_table1_results,
        script="evaluate.py", expect=("give model.rho as a list", "experiment=reae_figure2_* sweep")),
    row("szegedy-checkpoint-gone", "task=szegedy_table1", "runs={tmp}/data", script="evaluate.py",
        data=a_classifier_run_without_its_checkpoint, expect=("/run has no checkpoint", "gone.ckpt; train it again")),
    row("szegedy-too-few-runs", "task=szegedy_table2", "runs={tmp}/data", data=one_classifier_run,
        script="evaluate.py", expect=("which holds 1 run(s), but this study compares at least 2", "train the missing")),
    row("mi-sample-size-dataset", "task=mi_sample_size", "mi_sample_size.datasets=[svhn]", script="evaluate.py",
        expect="'mi_sample_size.datasets' has ['svhn']"),
    row("mi-sample-size-sizes", "task=mi_sample_size", "mi_sample_size.datasets=[mnist]", "mi_sample_size.sizes=[61]",
        script="evaluate.py", data=write_mnist, expect="mnist's training split has 60 images; give sizes up to 60"),
]


def check(code: int, output: str, expect: tuple[str, ...], run_dir: Path) -> None:
    assert code == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for text in expect:
        assert text in output, output[-3000:]
    assert not (run_dir / "results.json").exists()
    sentences = [line for line in output.splitlines() if line.startswith(("Config error: ", "Data error: "))]
    assert len(sentences) == 1, output[-3000:]  # on stderr, Hydra's own refusals of the command line included


@pytest.fixture
def run_in_process(monkeypatch, capsys, tmp_path_factory):
    """``python <script> <args>`` in this process: returns (exit code, stdout + stderr).

    The config is composed once and handed to the script's ``main`` (what Hydra does after composing);
    ``whole_script`` (and a command line that Hydra itself refuses) runs the script as ``__main__``
    instead, Hydra's reporting included, so that the test sees exactly what the user sees. It runs from a folder
    of its own, so that default output folders (a sweep's logs/train/multiruns/...) land there, not in the
    repository's logs/.
    """
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    def run(script: str, args: list[str], run_dir: Path, whole_script: bool = False) -> tuple[int, str]:
        try:
            with checking_keys_of_overrides():  # as run_entry_point composes
                cfg = None if whole_script else compose_config(args, run_dir, script.removesuffix(".py"))
        except (HydraException, ValueError):  # Hydra refuses logger=null with a ValueError
            cfg = None
        if cfg is None:
            return run_script(script, [*args, f"hydra.run.dir={run_dir}"])
        module = importlib.import_module(script.removesuffix(".py"))
        monkeypatch.setattr(sys, "argv", [script, *args])  # what the checks of the command line read, not pytest's
        with pytest.raises(SystemExit) as stop:
            run_entry_point(lambda: module.main(cfg))
        captured = capsys.readouterr()
        return stop.value.code, captured.out + captured.err

    def run_script(script: str, args: list[str]) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", [script, *args])
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # as in a fresh interpreter: no job has started yet
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            with pytest.raises(SystemExit) as stop:  # the script's `if __name__ == "__main__":` block
                runpy.run_path(str(ROOT / script), run_name="__main__")
        finally:  # Hydra configured logging for the job: give the next test its own
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:], root.level = handlers, level
        captured = capsys.readouterr()
        return stop.value.code, captured.out + captured.err

    return run


@pytest.mark.parametrize(("script", "args", "expect", "data"), ROWS)
def test_a_wrong_input_is_one_sentence_with_exit_code_2(run_in_process, data_root, tmp_path, script, args, expect,
                                                        data):
    data_dir = data_root
    if data is not None:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        data(data_dir)
    run_dir = tmp_path / "run"
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    paths = [] if any(arg.startswith("paths.data_dir=") for arg in args) else [f"paths.data_dir={data_dir}"]
    code, output = run_in_process(script, [*args, *paths], run_dir)
    check(code, output, expect, run_dir)


@pytest.mark.parametrize(("script", "args", "expect", "data"),
                         [param.values for param in ROWS if param.id.startswith("probe-data-")],
                         ids=[param.id for param in ROWS if param.id.startswith("probe-data-")])
def test_a_probe_data_refusal_comes_before_the_autoencoder_trains(run_in_process, data_root, tmp_path, script, args,
                                                                   expect, data):
    test_a_wrong_input_is_one_sentence_with_exit_code_2(run_in_process, data_root, tmp_path, script, args, expect,
                                                        data)
    assert not list((tmp_path / "run").rglob("*.ckpt"))


@pytest.mark.parametrize("module", ["callbacks.py", "datamodules/__init__.py"])
def test_a_module_of_yours_that_a_framework_package_hides_is_named(run_in_process, data_root, monkeypatch, tmp_path,
                                                                    module):
    """Your own callbacks.py on PYTHONPATH: the repository's package of that name is imported in its place, and the
    sentence was that callbacks.Hello cannot be imported."""
    own = tmp_path / "own"
    (own / module).parent.mkdir(parents=True)
    (own / module).write_text("class Hello:\n    pass\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(own)])  # PYTHONPATH's entries come after the script's folder
    package = module.split("/")[0].removesuffix(".py")
    code, output = run_in_process("train.py", [f"+callbacks.hello._target_={package}.Hello",
                                               f"paths.data_dir={data_root}"], tmp_path / "run")
    hidden = own / module.removesuffix("/__init__.py")
    check(code, output, (f"Config key 'callbacks.hello._target_' is '{package}.Hello', but the framework's package "
                         f"'{package}' ({ROOT / package}) comes first on Python's path and hides your {hidden}; rename "
                         f"your module (e.g. my_{package}) and its dotted paths.",), tmp_path / "run")


def test_the_check_of_overrides_keys_lets_a_list_item_a_new_key_and_a_deletion_through(tmp_path):
    with checking_keys_of_overrides():
        cfg = compose_config(["experiment=lenet5_classic_mnist", "model.scheduler.values.5=0.00001",
                              "+model.optimizer.foo=1", "~model.optimizer.mu", "+hydra.job.env_set.X=1"],
                             tmp_path)
    assert list(cfg.model.scheduler["values"]) == [0.0005, 0.002, 0.0008, 0.0004, 0.0002, 0.00001]
    assert cfg.model.optimizer.foo == 1 and "mu" not in cfg.model.optimizer


def test_the_check_of_launcher_options_lets_its_options_and_sbatchs_other_options_through():
    from framework.compose import compose_with_hydra

    with checking_keys_of_overrides():
        cfg = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=debug",
                                  "++hydra.launcher.timeout_min=5", "+hydra.launcher.additional_parameters.qos=x"])
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.timeout_min) == ("debug", 5)
    assert cfg.hydra.launcher.additional_parameters == {"qos": "x"}


def test_a_submitit_launcher_without_submitit_is_one_sentence(tmp_path):
    """hydra/launcher=local (or slurm) in an environment without submitit: the sweep said that a job failed, with
    the ImportError's traceback, before any job ran."""
    (tmp_path / "lacking").mkdir()
    (tmp_path / "lacking" / "submitit.py").write_text(  # what importing a package that is not installed raises
        "raise ModuleNotFoundError(\"No module named 'submitit'\", name='submitit')\n")
    done = run_cli(str(ROOT / "train.py"), "-m", "hydra/launcher=local", "debug=smoke",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"PYTHONPATH": str(tmp_path / "lacking")},
                   cwd=tmp_path, prefix=("env",))  # a fresh interpreter: the preloaded one has imported submitit
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "Config error: Config key 'hydra/launcher' runs its jobs through submitit, but this environment has no module "
        "'submitit'; install the project's environment again (make setup), or pip install hydra-submitit-launcher, "
        "which brings it.")


def test_a_run_folder_it_cannot_write_into_is_named_before_it_trains(run_in_process, data_root, tmp_path):
    """A checkpoints/ (or csv/) that could not be written: a traceback at the first save, after an epoch."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("a file where the run's folder belongs")
    code, output = run_in_process("train.py", [f"paths.data_dir={data_root}", "debug=smoke"], run_dir)
    check(code, output, (f"The output directory's folder {run_dir / 'checkpoints'} cannot be written into (it is a "
                         f"file, not a folder), and the run saves there; make it a writable folder, or give the run "
                         f"another hydra.run.dir.",), run_dir)
    assert "Epoch 0" not in output


def test_a_task_name_with_a_slash_is_named_before_hydra_makes_its_log_file(run_in_process, tmp_path):
    """Hydra names the job's log file after task_name before any job: a '/' in it was reported as an output directory
    that cannot be made or written, with paths.log_dir as the remedy."""
    code, output = run_in_process("train.py", ["task_name=a/b", f"paths.log_dir={tmp_path / 'logs'}"],
                                  tmp_path / "run", whole_script=True)
    assert code == 2 and output.strip().splitlines()[-1] == (
        "Config error: Config key 'task_name' is 'a/b', but it must be a folder's name (logs/<task_name>/runs/...; "
        "its log is <task_name>.log), without '/'.")


def test_the_battery_covers_every_config_group_and_dataset_format():
    arguments = " ".join(" ".join(param.values[1]) for param in ROWS)
    groups = [p.name for p in (ROOT / "conf").iterdir() if p.is_dir()]
    missing = [group for group in groups if not any(f"{group}{char}" in arguments for char in "=./")]
    assert not missing, f"add rows for the config groups {missing}"
    datasets = [p.stem for p in (ROOT / "conf" / "data").glob("*.yaml")]
    assert not [name for name in datasets if name != "digits" and f"data={name}" not in arguments]
    assert len(ROWS) >= 30


def test_a_sigterm_stays_the_exit_even_when_wandb_cannot_close(run_in_process, data_root, tmp_path, monkeypatch):
    """SLURM's requeue sends SIGTERM to every process of the job, wandb's service too: wandb.finish() then raised
    ConnectionResetError in train.py's clean-up, which replaced Lightning's SIGTERM exit, and the submitting command
    failed with a traceback although the requeued job went on."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    import framework.training

    def finish():
        raise ConnectionResetError("Connection lost")

    def sigterm(*args):
        raise SIGTERMException

    run = SimpleNamespace(mark_preempting=lambda: None)  # an open wandb run, which a SIGTERM marks as preempting
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=run, finish=lambda exit_code: finish()))
    monkeypatch.setattr(framework.training, "check_data_fits_model", sigterm)
    code, output = run_in_process("train.py", [f"paths.data_dir={data_root}"], tmp_path, whole_script=True)
    assert code == 143, output[-3000:]
    assert "Traceback" not in output
    assert output.rstrip().endswith("Stopped by SIGTERM (a run goes on from its last checkpoint when the same command "
                                    "is given again with ckpt_path=auto).")
    assert "wandb could not close its run while the job stopped (ConnectionResetError: Connection lost)." in \
        (tmp_path / "train.log").read_text()


def test_a_sigterm_before_any_job_imported_lightning_is_the_sentence_and_exit_code_143():
    """While Hydra composes the config no job has imported Lightning, whose SIGTERMException the handler raises once
    one has: the handler stops the process itself, with the same sentence and exit code (without them: exit code 0,
    SystemExit's for that exception). A fresh interpreter: this one has imported Lightning."""
    script = ("import os, signal\nfrom framework.stopping import sigterm_outside_lightning\n"
              "signal.signal(signal.SIGTERM, sigterm_outside_lightning)\nos.kill(os.getpid(), signal.SIGTERM)\n"
              "raise SystemExit('the signal did not stop the process')")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (143, "Stopped by SIGTERM.\n")


def test_a_sigterm_while_a_run_imports_torch_is_the_sentence_and_exit_code_143(tmp_path):
    """torch and Lightning take seconds to import. train.py imported them before it installed its SIGTERM handler,
    and a run stopped then (a scheduler's stop, a Ctrl+C's kill) died without a word; now they are imported in the
    job. The signal goes once the interpreter has begun importing torch (python -X importtime says so on stderr)."""
    run = subprocess.Popen([sys.executable, "-X", "importtime", str(ROOT / "train.py"), "debug=smoke", "logger=none",
                            f"hydra.run.dir={tmp_path}"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    lines = []
    for line in run.stderr:
        lines.append(line)
        if line.rsplit("|", 1)[-1].strip().startswith("torch"):
            run.send_signal(signal.SIGTERM)
            break
    lines += run.stderr.readlines()
    imported, said = imported_and_said("".join(lines))
    assert (run.wait(timeout=120), said.splitlines()[-1:]) == (143, ["Stopped by SIGTERM."]), said[-3000:]
    assert "torch" in imported and not (tmp_path / "results.json").exists()


def test_ctrl_c_in_evaluate_is_one_sentence_with_the_exit_code_of_sigint(run_in_process, tmp_path, monkeypatch):
    """Ctrl+C outside Lightning's loops printed Python's traceback; a study has no checkpoint to go on from, so the
    sentence names none."""
    import framework.compose

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(framework.compose, "paths_from_start_dir", interrupted)  # evaluate.py imports it when run
    code, output = run_in_process("evaluate.py", [f"runs={tmp_path}"], tmp_path, whole_script=True)
    assert code == 130, output[-3000:]
    assert "Traceback" not in output
    assert output.rstrip().endswith("Stopped by SIGINT.")


def test_a_bug_still_shows_its_traceback_and_exit_code_1(run_in_process, data_root, tmp_path, monkeypatch):
    import framework.training

    def broken(*args):
        raise RuntimeError("a bug in the framework, not the user's mistake")

    monkeypatch.setattr(framework.training, "check_data_fits_model", broken)
    code, output = run_in_process("train.py", [f"paths.data_dir={data_root}"], tmp_path, whole_script=True)
    assert code == 1
    assert "Traceback" in output and "RuntimeError: a bug in the framework" in output
    assert output.count("Traceback (most recent call last)") == 1, output  # Hydra's; it was also in a log line
    assert f"Run failed; its output directory is {tmp_path}.\n" in output
    log_file = (tmp_path / "train.log").read_text()
    assert "Run failed" in log_file and "RuntimeError: a bug in the framework" in log_file
    code, output = run_in_process("train.py", ["-m", "seed=1,2", f"paths.data_dir={data_root}",
                                               f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, whole_script=True)
    assert code == 1 and "RuntimeError: a bug in the framework" in output
    assert f"sweep directory: {tmp_path}/sweep (a job failed with the traceback below)" in output


def test_a_value_error_in_our_own_lightning_module_stays_a_bug():
    node = OmegaConf.create({"_target_": "lightning_modules.szegedy.SzegedyModule", "pretrain_epochs": 0})
    try:
        raise ValueError("a bug in our constructor, not Lightning refusing an argument")
    except ValueError as error:
        assert construction_error(error, node, "model") is None


def raise_in_worker(index: int, error: Exception, context: Exception | None) -> None:
    if context is None:
        raise error
    try:
        raise context
    except type(context) as cause:
        raise error from cause  # the worker's text holds both tracebacks


@pytest.mark.parametrize(("error", "context", "expected"), [
    (DatasetMissingError("MNIST train-images-idx3-ubyte is missing."), None, DatasetMissingError),
    (ConfigError("Config key 'x' is 1."), KeyError("x"), ConfigError),
    (RuntimeError("a bug: framework.errors.ConfigError: not a user error"), None, None),
    (ValueError("a bug"), ConfigError("Config key 'x' is 1."), None),
], ids=["data-error", "chained-config-error", "bug-naming-a-user-error", "bug-while-handling-a-user-error"])
def test_a_workers_user_error_is_raised_again_in_the_parent_and_a_workers_bug_is_not(error, context, expected):
    with pytest.raises(ProcessRaisedException) as raised:  # what the DDP launchers join on (fork: no start-up)
        torch.multiprocessing.start_processes(raise_in_worker, args=(error, context), nprocs=1, start_method="fork")
    found = worker_user_error(raised.value)
    if expected is None:
        assert found is None
    else:
        assert type(found) is expected and str(found) == str(error)


def test_a_label_out_of_range_in_a_spawned_ddp_worker_is_the_same_sentence(make_cfg):
    """Under trainer=ddp_sim the loss runs in spawned workers, whose IndexError reached the parent as a
    ProcessRaisedException traceback; any other error of a worker stays as it was. (The workers raise cross-entropy's
    errors themselves: torch's thread pool does not survive a fork.)"""
    from framework.combinations import FirstBatchWatch, data_the_network_takes

    module = ClassificationModule(torch.nn.Flatten(), optimizer=None, num_classes=10)
    for error, expected, match in ((IndexError("Target 12 is out of bounds."), ConfigError,
                                    r"^TensorDataset gives the label 12, out of range for the model's 10 classes "),
                                   (RuntimeError("expected target dtype to be Long or Byte, but got Float"),
                                    ProcessRaisedException, "RuntimeError: expected target dtype")):
        with pytest.raises(expected, match=match):
            with data_the_network_takes(make_cfg(), module, torch.utils.data.TensorDataset(), FirstBatchWatch()):
                torch.multiprocessing.start_processes(raise_in_worker, args=(error, None), nprocs=1,
                                                      start_method="fork")


def test_an_output_directory_that_cannot_be_made_is_one_sentence(run_in_process, data_root, tmp_path):
    """Hydra makes the run directory before the job starts (a sweep's: the sweep-dir-unmakeable row)."""
    (tmp_path / "a_file").write_text("a file where a folder should be")
    run_dir = tmp_path / "a_file" / "run"
    code, output = run_in_process("train.py", [f"paths.data_dir={data_root}"], run_dir, whole_script=True)
    check(code, output, (f"The output directory cannot be made or written: {run_dir} (Not a directory)",
                         "paths.log_dir="), run_dir)


def test_an_output_directory_whose_log_file_cannot_be_written_is_one_sentence(run_in_process, data_root, tmp_path):
    """An existing folder Hydra cannot write its log into (read-only, or here train.log a folder): logging's
    ValueError over the OSError was Hydra's traceback."""
    (tmp_path / "run" / "train.log").mkdir(parents=True)
    code, output = run_in_process("train.py", [f"paths.data_dir={data_root}"], tmp_path / "run", whole_script=True)
    check(code, output, (f"The output directory cannot be made or written: {tmp_path / 'run' / 'train.log'} (Is a "
                         f"directory)", "paths.log_dir="), tmp_path / "run")


def test_the_wandb_modes_the_config_takes_are_those_of_wandb():
    from typing import get_args

    from wandb import Settings

    from framework.validate import WANDB_MODES

    assert set(WANDB_MODES) == set(get_args(Settings.model_fields["mode"].annotation))


def test_a_wandb_mode_that_wandb_does_not_know_is_one_sentence(run_in_process, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "ofline")  # wandb's own refusal was a pydantic traceback
    run_dir = tmp_path / "run"
    code, output = run_in_process("train.py", ["logger=wandb", f"paths.data_dir={data_root}"], run_dir)
    check(code, output, ("WANDB_MODE is 'ofline', but wandb takes one of online, offline,",), run_dir)


@pytest.mark.parametrize("mode", ["online", "shared"])
def test_wandb_online_without_an_api_key_is_one_sentence(run_in_process, data_root, tmp_path, monkeypatch, mode):
    """wandb's own refusal was a 40-line traceback ending in "No API key configured"."""
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    run_dir = tmp_path / "run"
    code, output = run_in_process("train.py", ["logger=wandb", f"paths.data_dir={data_root}"], run_dir)
    check(code, output, (f"WANDB_MODE is '{mode}', but wandb has no API key here (WANDB_API_KEY or `wandb login`)",
                         f"set WANDB_MODE=offline and upload the run later with wandb sync {run_dir}/wandb/"), run_dir)


def test_a_user_error_in_one_job_of_a_sweep_lets_its_other_jobs_run(run_in_process, data_root, tmp_path):
    """As Hydra does for a job's exception: the job fails, the sweep goes on, and the sweep exits non-zero at the end
    (the sentence used to exit at once, so the jobs after it never ran)."""
    sweep = tmp_path / "sweep"
    code, output = run_in_process("train.py", ["-m", "model.optimizer.lr=-1,0.1", "debug=limit", "logger=none",
                                               "evaluate_tasks=[table,mi_lr_study]",
                                               f"hydra.sweep.dir={sweep}", f"paths.data_dir={data_root}"],
                                  tmp_path / "run", whole_script=True)
    assert code == 2, output[-3000:]
    assert "Config error: Config key 'model.optimizer.lr' is -1, but it must be a number > 0." in output.splitlines()
    evaluate_py = os.path.relpath(ROOT / "evaluate.py")  # from the folder the sweep started in
    assert output.rstrip().endswith(f"sweep directory: {sweep}\nsummarise its finished jobs with: python {evaluate_py} "
                                    f"runs={sweep}\nsummarise its finished jobs with: python {evaluate_py} "
                                    f"task=mi_lr_study runs={sweep}\nThe sweep ran every job; the first that stopped "
                                    f"({sweep}/0) said:\nConfig error: Config key 'model.optimizer.lr' is -1, but it "
                                    f"must be a number > 0.")
    assert not (sweep / "0" / "results.json").exists() and (sweep / "1" / "results.json").is_file()
    assert "Traceback" not in output


def test_an_output_folder_that_refers_to_a_removed_group_is_one_sentence(run_in_process, tmp_path):
    """``~paths`` removes the paths.log_dir that hydra.run.dir and hydra.sweep.dir are built from: the check of the
    earlier runs in them, before any job, met omegaconf's InterpolationKeyError, a traceback."""
    code, output = run_in_process("train.py", ["-m", "~paths", "seed=1,2"], tmp_path / "run", whole_script=True)
    assert code == 2, output[-3000:]
    assert output.rstrip().endswith("Config error: Config key 'hydra.sweep.dir' refers to 'paths.log_dir', which the "
                                    "config lacks (removed with ~paths?); keep it, or give hydra.sweep.dir=<folder>.")
    assert "Traceback" not in output


def test_a_sweep_whose_jobs_lack_their_dataset_ends_with_the_sentence(run_in_process, tmp_path):
    """DatasetMissingError is a FileNotFoundError too: the sweep's UserError branch comes before its OSError one,
    so the sweep ends with the data sentence, not a traceback."""
    sweep = tmp_path / "sweep"
    code, output = run_in_process("train.py", ["-m", "seed=1,2", "data=mnist", "logger=none",
                                               f"hydra.sweep.dir={sweep}", f"paths.data_dir={tmp_path / 'empty'}"],
                                  tmp_path / "run", whole_script=True)
    assert code == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert re.search(rf"the first that stopped \({re.escape(str(sweep))}/0\) said:\nData error: MNISTDataModule: "
                     rf"expected \S+/MNIST/raw/\S+ \(or \S+\.gz\) but it does not exist", output), output[-3000:]


def test_a_bug_in_a_sweeps_check_stops_it_before_any_job(run_in_process, data_root, tmp_path, monkeypatch):
    """Hydra turns an exception of a multirun callback into a warning and launches the jobs unchecked: the check runs
    inside checking_before_any_job (tests/test_train.py tests that context manager on its own)."""
    import framework.hydra_callbacks

    def broken(config):
        raise RuntimeError("a bug of the check")

    monkeypatch.setattr(framework.hydra_callbacks, "check_sweep", broken)
    sweep = tmp_path / "sweep"
    code, output = run_in_process("train.py", ["-m", "seed=1,2", "debug=smoke", "logger=none",
                                               f"hydra.sweep.dir={sweep}", f"paths.data_dir={data_root}"],
                                  tmp_path / "run", whole_script=True)
    assert code != 0 and "RuntimeError: a bug of the check" in output, output[-3000:]  # a bug: its traceback
    assert not (sweep / "0").exists()


def test_hydra_debugging_output_stays_available(run_in_process, monkeypatch, tmp_path):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Hydra re-raises its refusal: the traceback, exit code 1
    with pytest.raises(MissingConfigException):
        run_in_process("train.py", ["model=lenet6"], tmp_path, whole_script=True)


# ---- in processes of their own: Lightning's refusal, a file on disk, evaluate.py ---------------------------
# (Hydra's own refusal in a fresh interpreter: tests/test_validate.py::test_unknown_model_name_lists_the_available_ones)
SUBPROCESS_ROWS = {
    "lightning-devices": (["train.py", "trainer.devices=0"], None, ("'trainer.devices' is 0",)),
    "cifar10-truncated": (["train.py", "data=cifar10", "data.grayscale=true"], cifar10_truncated,
                          ("data_batch_3 is not a readable CIFAR-10 batch",)),
    "evaluate-no-results": (["evaluate.py", "runs={tmp}"], None, ("but there is no results.json under it",)),
    "target-not-importable": (["train.py", "+callbacks.foo._target_=nope.Nope"], None,
                              ("'callbacks.foo._target_' is 'nope.Nope', but no module 'nope' is on Python's path",)),
    # one DDP process: in this test process, after the other rows, its process group hung
    "forward-autoencoder-ddp": (["train.py", "model=forward_autoencoder", "trainer=ddp_sim", "trainer.devices=1"],
                                None, ("solves on the whole training set in one process without DDP",)),
}


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory, data_root):
    results = {}
    for name, (args, data, _) in SUBPROCESS_ROWS.items():
        folder = tmp_path_factory.mktemp(name)
        data_dir = data_root
        if data is not None:
            data_dir = folder / "data"
            data_dir.mkdir()
            data(data_dir)
        args = [arg.replace("{tmp}", str(folder)) for arg in args]
        done = run_cli(*args, f"paths.data_dir={data_dir}", f"hydra.run.dir={folder / 'run'}")
        results[name] = (done.stdout + done.stderr, done.returncode, folder / "run")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_ROWS)
def test_a_wrong_input_in_a_process_of_its_own_is_one_sentence_with_exit_code_2(subprocess_results, name):
    output, code, run_dir = subprocess_results[name]
    check(code, output, SUBPROCESS_ROWS[name][2], run_dir)
    assert "[ERROR]" not in output, output[-3000:]  # the sentence alone: not also as a log line, nor Hydra's lines


def test_a_network_or_dataset_where_a_lightning_module_or_datamodule_belongs_is_one_sentence(make_cfg):
    """A user's ``model/x.yaml`` with its network's class as ``_target_`` (not under ``model.net``), a torch Dataset
    as ``data``, or a DataModule without the test loader the run uses (found only after training, before)."""
    import lightning as L

    from framework.combinations import check_kinds
    from framework.construction import instantiate_node
    from lightning_modules.lenet5 import LeNet5

    class TrainOnly(L.LightningDataModule):
        def train_dataloader(self):
            return []

    cfg = make_cfg()
    with pytest.raises(ConfigError, match=r"^Config key 'model._target_' is LeNet5, which is not a LightningModule; "
                                          r"put it under model.net, .* as examples/conf/model/mlp.yaml does\.$"):
        check_kinds(cfg, TrainOnly(), LeNet5())
    module = instantiate_node(cfg.model, "model")
    with pytest.raises(ConfigError, match=r"^Config key 'data._target_' is TensorDataset, which is not a "):
        check_kinds(cfg, torch.utils.data.TensorDataset(torch.zeros(1)), module)
    with pytest.raises(ConfigError, match=r"^Config key 'test' is true, but TrainOnly has no test_dataloader method; "
                                          r"add one, or give test=false\.$"):
        check_kinds(cfg, TrainOnly(), module)
    check_kinds(make_cfg("test=false"), TrainOnly(), module)


def test_a_shape_refusal_on_the_first_batch_names_the_layer_and_after_a_batch_got_through_stays_a_bug(make_cfg):
    """A network of the user's that does not take the data's inputs (which check_data_fits_model cannot know) fails
    on the first batch: one sentence naming the layer and both shapes. The same refusal later is a bug."""
    from framework.combinations import FirstBatchWatch, data_the_network_takes

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    watch = FirstBatchWatch()
    watch.on_train_batch_start(None, None, (torch.zeros(5, 1, 4, 4), torch.zeros(5)), 0)
    expected = (r"^The network \(Sequential\) cannot take the first batch of TensorDataset \(inputs of shape "
                r"\[5, 1, 4, 4\]\): its layer 1 \(Linear\(in_features=12, out_features=2, bias=True\)\) got "
                r"inputs of shape \[5, 16\], and torch says: (addmm: )?mat1 and mat2 shapes cannot be multiplied "
                r"\(5x16 and 12x2\); make the network's inputs fit .* \(here: data.image_size\) \(or fix what "
                r"the network's forward does before that layer\)\.$")
    with pytest.raises(ConfigError, match=expected):
        with data_the_network_takes(make_cfg(), net, torch.utils.data.TensorDataset(), watch):
            net(torch.zeros(5, 1, 4, 4))
    watch.on_train_batch_end()
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes"):
        with data_the_network_takes(make_cfg(), net, torch.utils.data.TensorDataset(), watch):
            net(torch.zeros(5, 1, 4, 4))
    for layer, inputs in ((torch.nn.Linear(16, 2), torch.zeros(5, 16, dtype=torch.float64)),
                          (torch.nn.Conv2d(1, 2, 3), torch.zeros(5, 1, 4, 4, dtype=torch.uint8))):
        watch, given, model = FirstBatchWatch(), str(inputs.dtype).removeprefix("torch."), torch.nn.Sequential(layer)
        watch.on_train_batch_start(None, None, (inputs, torch.zeros(5)), 0)
        with pytest.raises(ConfigError, match=rf"^The network \(Sequential\) cannot take the first batch of "
                                              rf"TensorDataset \(inputs of dtype {given}\): its layer 0 "
                                              rf"\({type(layer).__name__}\(.*\)\) has float32 weights, and torch "
                                              rf"says: .*; make the dataset return float32 inputs "
                                              rf"\(tensor.to\(torch.float32\), in __getitem__ or a collate_fn\)\.$"):
            with data_the_network_takes(make_cfg(), model, torch.utils.data.TensorDataset(), watch):
                model(inputs)
    conv, watch = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), FirstBatchWatch()  # images without a channel axis
    watch.on_train_batch_start(None, None, (torch.zeros(5, 4, 4), torch.zeros(5)), 0)
    with pytest.raises(ConfigError, match=re.escape(
            "The network (Sequential) cannot take the first batch of TensorDataset (inputs of shape [5, 4, 4]): its "
            "images have no channel axis, so its layer 0 (Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))) reads the "
            "batch as one image of 5 channels; make the dataset return images of shape [channels, height, width] "
            "(image.unsqueeze(0) for a grayscale one).")):
        with data_the_network_takes(make_cfg(), conv, torch.utils.data.TensorDataset(), watch):
            conv(torch.zeros(5, 4, 4))
    with pytest.raises(RuntimeError, match="not a shape"):  # any other error, on the first batch too
        with data_the_network_takes(make_cfg(), net, None, FirstBatchWatch()):
            raise RuntimeError("not a shape")

    class WrongView(torch.nn.Module):  # a bug in a forward of the user's own: its traceback points at the line
        def forward(self, x):
            return x.view(x.shape[0], -1, 7)

    buggy, watch = torch.nn.Sequential(WrongView()), FirstBatchWatch()
    watch.on_train_batch_start(None, None, (torch.zeros(5, 1, 4, 4), torch.zeros(5)), 0)
    with pytest.raises(RuntimeError, match=r"shape '\[5, -1, 7\]' is invalid"):
        with data_the_network_takes(make_cfg(), buggy, torch.utils.data.TensorDataset(), watch):
            buggy(torch.zeros(5, 1, 4, 4))


def test_labels_out_of_range_and_batches_that_are_not_pairs_are_one_sentence(make_cfg):
    """A user's DataModule with more classes than model.num_classes (cross-entropy's IndexError), or one whose
    batches are dicts (the unpacking gave its keys, and conv2d a string)."""
    from framework.combinations import FirstBatchWatch, data_the_network_takes

    module = ClassificationModule(torch.nn.Flatten(), optimizer=None, num_classes=10)
    with pytest.raises(ConfigError, match=r"^TensorDataset gives the label 12, out of range for the model's 10 classes "
                                          r"\(model.num_classes=10; labels run from 0 to num_classes - 1\); set "):
        with data_the_network_takes(make_cfg(), module, torch.utils.data.TensorDataset(), FirstBatchWatch()):
            torch.nn.functional.cross_entropy(torch.zeros(2, 10), torch.tensor([1, 12]))
    with pytest.raises(ConfigError, match=r"gives the label -1, out of range .*; give only labelled images to a "
                                          r"classifier \(a negative label such as -1 marks an unlabelled one\)\.$"):
        with data_the_network_takes(make_cfg(), module, torch.utils.data.TensorDataset(), FirstBatchWatch()):
            torch.nn.functional.cross_entropy(torch.zeros(2, 10), torch.tensor([1, -1]))
    module.trainer = SimpleNamespace(datamodule=torch.utils.data.TensorDataset())
    with pytest.raises(ConfigError, match=r"^ClassificationModule takes batches of \(images, labels\), but "
                                          r"TensorDataset's train loader gives a dict \(keys image, label\); make "):
        module.training_step({"image": torch.zeros(2, 1, 4, 4), "label": torch.zeros(2)}, 0)
    images = torch.zeros(2, 10)
    with pytest.raises(ConfigError, match=r"loader gives 3 items per batch; make its dataset return \(image, label\)"):
        module.validation_step((images, torch.zeros(2, dtype=torch.long), torch.zeros(2)), 0)
    # one-hot labels trained silently at accuracy 0 (cross-entropy takes them as probabilities); int32 and [2, 1] ones
    # were torch's tracebacks
    for labels, given in ((torch.eye(10)[[3, 4]], "float32 labels of shape [2, 10]"),
                          (torch.tensor([3, 4], dtype=torch.int32), "int32 labels of shape [2]"),
                          (torch.tensor([[3], [4]]), "int64 labels of shape [2, 1]")):
        with pytest.raises(ConfigError, match=re.escape(
                f"ClassificationModule takes labels as class indices, one integer per image (a torch.long tensor of "
                f"shape [batch]), but TensorDataset's train loader gives {given}; make its dataset return the class "
                f"index (torch.as_tensor(label, dtype=torch.long); label.argmax() of a one-hot label).")):
            module.training_step((images, labels), 0)
    for labels in (torch.tensor([3, 4]), torch.tensor([3, 4], dtype=torch.uint8)):  # scores all 0: the loss is ln 10
        assert module.training_step((images, labels), 0).item() == pytest.approx(np.log(10))


def test_scores_other_than_batch_by_classes_and_negative_labels_are_one_sentence():
    """A network of the user's whose forward returns a tuple, one logit per image, too few classes, another batch
    size or one number: torch's tracebacks (for the number, our own: len() of a 0-d tensor), or worse, a silent
    accuracy (one logit per image was read as the predicted class: 0.0). Labels of -100, which cross-entropy
    ignores, were counted as wrong by the accuracy (0.72 instead of 0.97)."""
    import functools

    import lightning as L

    class Returns(torch.nn.Module):
        def __init__(self, make):
            super().__init__()
            self.make, self.layer = make, torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.make(self.layer(x))

    images, labels = torch.zeros(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for make, given, remedy in (
            (lambda s: (s, s), "a tuple", "make its forward return the scores tensor alone"),
            (lambda s: s[:, 0], "a tensor of shape [6]",
             "return one score per class for each image (for two classes: two scores, not one logit)"),
            (lambda s: s[:, :2], "a tensor of shape [6, 2]",
             "give the network as many outputs as the data has classes and set model.num_classes to that number "
             "(now 3)"),
            (lambda s: s[:3], "a tensor of shape [3, 3]", "its forward changes the batch size from 6 (a reshape such "
                                                          "as x.view(-1, n) with the wrong n; x.flatten(1) keeps the "
                                                          "batch)"),
            (lambda s: s.sum(), "a tensor of shape []",
             "return one score per class for each image, not a single number (a sum or mean over them)")):
        module = ClassificationModule(Returns(make), optimizer=None, num_classes=3)
        with pytest.raises(ConfigError, match=re.escape(
                f"ClassificationModule takes scores of shape [batch, num_classes] = [6, 3] from its network, but "
                f"Returns returned {given} for images of shape [6, 4]; {remedy}.")):
            module.training_step((images, labels), 0)

    for unlabelled, stage in ((torch.tensor([0, 1, 2, -100] * 2), "train"), (torch.tensor([0, 1, 2, 1] * 2), None)):
        data = torch.utils.data.TensorDataset(torch.randn(8, 4), unlabelled)
        module = ClassificationModule(torch.nn.Linear(4, 3), functools.partial(torch.optim.SGD, lr=0.1), num_classes=3)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu")
        datamodule = L.LightningDataModule.from_datasets(train_dataset=data, batch_size=4)
        if stage is None:  # the same data labelled: trains
            trainer.fit(module, datamodule)
            assert trainer.callback_metrics["train/acc"] >= 0 and trainer.current_epoch == 1
            continue
        with pytest.raises(ConfigError, match=re.escape(
                f"LightningDataModule's {stage} loader gives negative labels (25.00% of its images in this epoch; "
                f"-100, for instance, is cross-entropy's ignore_index, which leaves them out of the loss while the "
                f"accuracy counts them as wrong); give only labelled images to a classifier.")):
            trainer.fit(module, datamodule)


def test_an_empty_split_pil_images_and_a_frozen_network_are_one_sentence(make_cfg):
    """torch's own refusals of a user's data or network, each raised here as torch raises it inside fit."""
    from PIL import Image

    from framework.combinations import FirstBatchWatch, data_the_network_takes

    net, data = torch.nn.Sequential(torch.nn.Linear(2, 2).requires_grad_(False)), torch.utils.data.TensorDataset()
    module = ClassificationModule(net, optimizer=None, num_classes=2)
    for make_the_error, expected in (
            (lambda: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0)), shuffle=True),
             "TensorDataset's train loader has no images (its shuffling sampler got 0); give the data a training "
             "split with images."),
            (lambda: torch.utils.data.default_collate([Image.new("L", (4, 4))] * 2),
             "TensorDataset's dataset returns images of type PIL.Image.Image, which a DataLoader cannot stack into a "
             "batch; return tensors (e.g. torchvision.transforms.ToTensor() in its transform)."),
            (lambda: torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1),
             "The network (Sequential) has no trainable parameters (requires_grad is False for every one), so there "
             "is nothing to train; unfreeze some, or test only (train=false ckpt_path=<its .ckpt>).")):
        with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
            with data_the_network_takes(make_cfg(), module, data, FirstBatchWatch()):
                make_the_error()
    with pytest.raises(ValueError, match="^another$"):  # any other ValueError stays what it was
        with data_the_network_takes(make_cfg(), module, data, FirstBatchWatch()):
            raise ValueError("another")


def test_a_config_file_of_the_users_named_like_a_built_in_one_is_one_sentence(tmp_path):
    """Hydra's search path has conf/ first: a user's model/lenet5.yaml was passed over for ours, silently."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "lenet5.yaml").write_text((ROOT / "conf/model/lenet5.yaml").read_text())
    result = run_cli("train.py", f"hydra.searchpath=[file://{tmp_path}]", f"hydra.run.dir={tmp_path}/r")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"Config error: The config file {tmp_path}/model/lenet5.yaml "
                                          f"(conf/model/lenet5.yaml) has the name of a built-in one, which Hydra reads "
                                          f"instead (conf/ comes first on its search path); rename yours, e.g. "
                                          f"model/my_lenet5.yaml, and choose it with model=my_lenet5."]
    (tmp_path / "data").mkdir()  # every one at once
    (tmp_path / "data" / "digits.yaml").write_text((ROOT / "conf/data/digits.yaml").read_text())
    result = run_cli("train.py", f"hydra.searchpath=[file://{tmp_path}]", f"hydra.run.dir={tmp_path}/r")
    assert result.returncode == 2 and f"{tmp_path}/model/lenet5.yaml (conf/model/lenet5.yaml) and " in result.stderr
    assert f"{tmp_path}/data/digits.yaml (conf/data/digits.yaml) have the names of built-in ones" in result.stderr
    given = run_cli("train.py", "-cd", str(tmp_path), f"hydra.run.dir={tmp_path}/r")  # Hydra's --config-dir too
    assert given.returncode == 2 and f"{tmp_path}/model/lenet5.yaml (conf/model/lenet5.yaml) and " in given.stderr


def test_a_config_file_of_the_users_without_a_target_at_its_top_level_is_named(tmp_path):
    """The sentence said the group was removed (~model?) and listed the built-in options only; the file is the
    user's own, its keys nested one level too deep under 'model:'."""
    (tmp_path / "model").mkdir()
    nested = "model:\n  _target_: lightning_modules.classifier.ClassificationModule\n"
    (tmp_path / "model" / "mine.yaml").write_text(nested)
    result = run_cli("train.py", f"hydra.searchpath=[file://{tmp_path}]", "model=mine", f"hydra.run.dir={tmp_path}/r")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"Config error: Config group 'model' is mine, whose file {tmp_path}/model/mine.yaml names no class at its top "
        f"level (_target_), and every run needs one; give the file a _target_: line (keys under a 'model:' line sit "
        f"one level too deep: remove that level)."]


def test_a_config_file_of_the_users_that_is_not_yaml_is_one_sentence(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "bad.yaml").write_text("net:\n  _target_: nets.MLP\n   hidden: 3\n")  # one space too many
    result = run_cli("train.py", f"hydra.searchpath=[file://{tmp_path}]", "model=bad", f"hydra.run.dir={tmp_path}/r")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"Config error: The config file {tmp_path}/model/bad.yaml is not valid YAML: "
                                          f"mapping values are not allowed here (line 3, column 10); fix it, e.g. the "
                                          f"indentation there."]


def test_a_constructor_that_fails_on_a_value_of_the_wrong_type_names_the_key():
    """Judged only once construction failed, and only against plain-type annotations: as types (examples/nets.py) or
    as strings (``from __future__ import annotations``); other annotations and fitting values are not judged."""
    node = OmegaConf.create({"_target_": "lightning_modules.classifier.ClassificationModule", "num_classes": 10,
                             "net": {"_target_": "examples.nets.MLP", "in_features": 4, "hidden": "abc"}})
    error = construction_error(TypeError("empty(): argument 'size' failed to unpack"), node, "model")
    assert str(error) == ("Config key 'model.net.hidden' is 'abc', but MLP's argument hidden takes int; give a value "
                          "of that type.")
    node.net.hidden, node.net.in_features = 8, 4.0
    assert "'model.net.in_features' is 4.0, but MLP's argument in_features takes int" in \
        str(construction_error(TypeError("x"), node, "model"))
    node.net.in_features, node.net.hidden = 4, [1, 2]  # a list where Hydra's sweep (-m hidden=1,2) was meant
    assert "'model.net.hidden' is [1, 2], but MLP's argument hidden takes int" in \
        str(construction_error(TypeError("empty(): argument 'size' (position 1) must be tuple of ints"), node, "model"))
    node.net.hidden = 8
    assert construction_error(TypeError("x"), node, "model") is None  # every value fits: a bug, not the user's


@pytest.mark.parametrize(("value", "annotation", "fits"), [  # Lightning's Trainer annotates with typing.Optional
    (None, Optional[int], True), (3, Optional[int], True), ("abc", Optional[int], False),  # noqa: UP045
    (None, int, False),
    (None, "int | None", True), (2.5, "Optional[float]", True), ("x", "Optional[float]", False),
])
def test_an_optional_argument_takes_none(value, annotation, fits):
    assert _fits(value, annotation) is fits


@pytest.mark.parametrize(("value", "annotation", "fits"), [
    (1, float, True), (True, int, False), (True, bool, True), ({"_target_": "x.Y"}, int, True), ({"a": 1}, int, False),
    ((1, 2), int, False), (2.0, "int | float", True), ("3", "dict[str, int]", True),
], ids=["int-for-float", "bool-for-int", "bool", "node-for-int", "mapping-for-int", "tuple-for-int", "union",
        "generic-not-judged"])
def test_an_int_fits_a_float_a_bool_fits_no_int_and_a_node_of_its_own_is_not_judged(value, annotation, fits):
    assert _fits(value, annotation) is fits


def test_a_value_of_the_wrong_type_that_a_user_datamodule_only_uses_in_setup_names_the_key(tmp_path):
    """examples/blobs.py takes ``size: int`` and first uses it in ``setup``, once training has started."""
    result = run_cli("train.py", "hydra.searchpath=[file://examples/conf]", "model=mlp", "data=blobs",
                     "model.num_classes=2", "data.size=abc", "debug=smoke", f"hydra.run.dir={tmp_path}/r",
                     env={"PYTHONPATH": str(ROOT / "examples")})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == ("Config error: Config key 'data.size' is 'abc', but Blobs's argument "
                                              "size takes int; give a value of that type.")


@pytest.mark.slow
def test_a_refusal_in_a_spawned_ddp_worker_is_one_sentence_with_the_default_paths(tmp_path):
    """A ddp_spawn worker has no Hydra set up, so the default paths.data_dir (${hydra:runtime.cwd}) cannot be
    resolved there: the worker's own sentence used to end as omegaconf's traceback, while re-reading the config for
    a mistyped argument. ddp_fork (the other DDP rows) inherits Hydra's state and hid it."""
    result = run_cli("train.py", "experiment=mi_lr_digits", "trainer=ddp_sim", "debug=smoke", "logger=none",
                     "callbacks.mi_lr.sample_size=5000", f"hydra.run.dir={tmp_path}/r")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith("sample_size=5000, but the training set has only 1150 items; give "
                                           "callbacks.mi_lr.sample_size <= 1150.")
    assert "Terminating process" not in result.stderr  # torch's line on the other rank, when it had to stop one


@pytest.mark.parametrize(("worker_said", "kept"), [("framework.errors.ConfigError: give a smaller value.", False),
                                                   ("RuntimeError: a bug", True)])
def test_torchs_line_on_the_ranks_it_stopped_is_kept_for_a_bug_alone(worker_said, kept):
    """After a rank stopped, torch logs "Terminating process N via signal SIGTERM" for each other one: above the
    sentence of a user error it was noise (seen above trainer=ddp_sim's refusal of callbacks.mi_lr.sample_size)."""
    from framework.ddp_workers import rank_stops_said_for_bugs_alone

    spawn_log, said = logging.getLogger("torch.multiprocessing.spawn"), []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    spawn_log.addHandler(handler)
    try:
        with pytest.raises(ProcessRaisedException), rank_stops_said_for_bugs_alone():
            spawn_log.warning("Terminating process %s via signal SIGTERM", 123)
            raise ProcessRaisedException(f"Traceback (most recent call last):\n  File ...\n{worker_said}\n", 0, 1)
    finally:
        spawn_log.removeHandler(handler)
    assert said == (["Terminating process 123 via signal SIGTERM"] if kept else [])
    assert spawn_log.filters == []


def test_lightnings_srun_hint_does_not_come_before_the_sentence_outside_a_slurm_job(tmp_path):
    """On a machine with srun on PATH (a cluster's login node) Lightning's Trainer hints that the command be run under
    srun: outside a SLURM job that is no advice, and it came before the sentence of a user error found after it."""
    path = path_with_stand_in(tmp_path, "srun")
    done = run_cli("train.py", "data=mnist", f"data.data_dir={tmp_path / 'none'}", "debug=smoke",
                   f"hydra.run.dir={tmp_path / 'run'}", env={"PATH": path})
    assert done.returncode == 2, done.stderr[-3000:]
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"Data error: MNISTDataModule: expected {tmp_path / 'none'}/MNIST/raw/train-images-idx3-ubyte (or "
        f"train-images-idx3-ubyte.gz) but it does not exist; put the dataset under {tmp_path / 'none'} in its "
        f"official layout (or point data.data_dir= or DATA_DIR at it), or run with data.download=true when online."]


def test_a_key_below_a_target_that_takes_no_arguments_is_no_argument_of_it():
    """A closed signature without arguments (tempfile.gettempdir()) is all its target takes: nothing below it."""
    from omegaconf import OmegaConf

    from framework.command_line import _target_arguments

    config = OmegaConf.create({"folder": {"_target_": "tempfile.gettempdir"}})
    assert _target_arguments("folder.prefix", config) == ("gettempdir", [], True)


def test_a_network_whose_classes_follow_the_module_s_is_not_named_in_the_remedy(make_cfg):
    """model.net.num_classes=${model.num_classes}: setting model.num_classes sets both, so only that is the remedy."""
    from framework.combinations import check_data_fits_model
    from framework.construction import instantiate_node

    cfg = make_cfg("model.num_classes=2", "model.net.num_classes=${model.num_classes}")
    data, model = instantiate_node(cfg.data, "data"), instantiate_node(cfg.model, "model")
    with pytest.raises(ConfigError, match=r"^DigitsDataModule does not fit LeNet5: the model has 2 classes, the data "
                                          r"10 \(set model\.num_classes=10\)\.$"):
        check_data_fits_model(cfg, data, model)


def test_a_datamodule_of_ones_own_that_counts_classes_is_checked_as_classification_data():
    """A DataModule of the user's says num_classes but no task; a module of another class count is named, and a key
    the config lacks is offered with its +."""
    import lightning as L

    from framework.combinations import check_data_fits_model, shape_problems

    class Counted(NoBatches):
        num_classes = 10

    class TwoClasses(L.LightningModule):
        task = "classification"

        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"num_classes": 2})

    with pytest.raises(ConfigError, match=r"^Counted does not fit TwoClasses: the model has 2 classes, the data 10 "
                                          r"\(set \+model\.num_classes=10\)\.$"):
        check_data_fits_model(OmegaConf.create({}), Counted(), TwoClasses())
    assert shape_problems(OmegaConf.create({}), (3, 32, 32), (3, 32, 32), (1, 32, 32)) == [
        "the model expects 1 channel(s), the data has 3 (set +data.grayscale=true)"]


def test_a_classifier_on_an_unlabelled_training_split_is_told_that_once():
    import lightning as L

    from framework.combinations import check_data_fits_model

    class UnlabelledTraining(NoBatches):
        task, test_task = "unlabeled", "classification"

    class Classifier(L.LightningModule):
        task = "classification"

    with pytest.raises(ConfigError, match=r"^UnlabelledTraining does not fit Classifier: the model is trained on class "
                                          r"labels, the data has no labels \(choose another model, data or "
                                          r"data\.train_split\)\.$"):
        check_data_fits_model(OmegaConf.create({}), UnlabelledTraining(), Classifier())


def test_the_watch_keeps_the_first_batch_s_inputs():
    from framework.combinations import FirstBatchWatch

    watch = FirstBatchWatch()
    watch.on_train_batch_start(None, None, [torch.zeros(4, 1, 8, 8), torch.zeros(4)], 0)
    watch.on_validation_batch_start(None, None, [torch.zeros(2, 3, 5, 5, dtype=torch.float64), torch.zeros(2)], 0)
    assert (watch.first_inputs, watch.first_dtype, watch.a_batch_passed) == ((4, 1, 8, 8), torch.float32, False)


def test_a_channel_refusal_on_the_first_batch_names_the_channel_keys(make_cfg):
    from framework.combinations import FirstBatchWatch, data_the_network_takes

    net, watch = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)), FirstBatchWatch()
    watch.on_train_batch_start(None, None, (torch.zeros(5, 1, 4, 4), torch.zeros(5)), 0)
    with pytest.raises(ConfigError, match=r"to have 3 channels, but got 1 channels instead; make the network's inputs "
                                          r"fit .* \(here: model\.net\.in_channels\) \(or fix"):
        with data_the_network_takes(make_cfg(), net, torch.utils.data.TensorDataset(), watch):
            net(torch.zeros(5, 1, 4, 4))


def test_a_missing_file_outside_the_datamodule_s_code_stays_a_bug(make_cfg):
    """Only a file that the DataModule's own code failed to open is the data's; any other missing file is a bug."""
    from framework.combinations import FirstBatchWatch, data_the_network_takes

    with pytest.raises(FileNotFoundError):
        with data_the_network_takes(make_cfg(), None, torch.utils.data.TensorDataset(), FirstBatchWatch()):
            raise FileNotFoundError(2, "No such file or directory", "elsewhere.txt")


@pytest.mark.parametrize("stored", [(1, 28, 28), (1, 28, 32)], ids=["smaller", "one-side-as-long"])
def test_images_no_larger_than_the_models_are_offered_data_pad_to(stored):
    """A DataModule of one's own with 28x32 images fits a 32x32 network once padded: pad_to pads either side."""
    from framework.combinations import shape_problems

    assert shape_problems(OmegaConf.create({}), stored, stored, (1, 32, 32)) == [
        f"the model expects 32x32 images, the data has {stored[1]}x{stored[2]} (set +data.pad_to=32)"]


def test_the_arguments_of_a_class_follow_its_kwargs_up_to_its_bases_without_self_or_the_variadic_ones():
    from framework.construction import arguments_up_the_classes

    assert arguments_up_the_classes("examples.nets.MLP") == (["in_features", "hidden", "num_classes"], True)
    names, closed = arguments_up_the_classes("datamodules.digits.DigitsDataModule")  # batch_size: its base's
    assert closed and names[:2] == ["image_size", "test_fraction"] and "batch_size" in names
    assert not {"self", "args", "kwargs"} & set(names)
    assert arguments_up_the_classes("lightning.pytorch.loggers.WandbLogger")[1] is False  # **kwargs go to wandb.init
    assert arguments_up_the_classes("no.such.Thing") == ([], False)


def test_a_sweep_that_a_jobs_bug_stopped_names_its_directory_and_keeps_the_exit_code_of_a_bug(monkeypatch, capsys):
    """The job may have run in a process of its own (hydra/launcher=local): this one never set job.started, and
    run_entry_point would turn Hydra's exit code 1 into the command line's 2."""
    from framework.entry_point import _reporting_hydra_refusals
    from framework.stopping import job

    def a_jobs_bug():
        raise RuntimeError("a bug in the job")

    monkeypatch.setattr(job, "started", False)
    monkeypatch.setattr(job, "sweep_dir", "/runs/sweep")
    with pytest.raises(RuntimeError, match="a bug in the job"):
        _reporting_hydra_refusals(a_jobs_bug)
    assert job.started is True
    assert capsys.readouterr().err == "sweep directory: /runs/sweep (a job failed with the traceback below)\n"


def test_an_argument_judged_by_a_rule_of_its_own_is_left_to_that_rule():
    from framework.construction import mistyped_argument_error

    node = OmegaConf.create({"_target_": "examples.nets.MLP", "in_features": "abc", "hidden": "x"})
    assert str(mistyped_argument_error(node, "model.net")) == (
        "Config key 'model.net.in_features' is 'abc', but MLP's argument in_features takes int; give a value of that "
        "type.")
    judged = {"model.net.in_features"}
    assert "'model.net.hidden' is 'x'" in str(mistyped_argument_error(node, "model.net", judged=judged))
    assert mistyped_argument_error(node, "model.net", judged={"model.net.in_features", "model.net.hidden"}) is None


def test_a_module_missing_other_than_submitit_stays_a_bug(monkeypatch):
    from framework.entry_point import _refusals_as_sentences
    from framework.stopping import job

    def importing():
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(job, "started", False)
    with pytest.raises(ModuleNotFoundError, match="scipy"):
        _refusals_as_sentences(importing)


def test_a_refusal_names_the_key_whose_value_it_quotes_but_not_one_of_a_short_value_it_happens_to_contain():
    assert _refused_keys({"accelerator": "tpux", "devices": "1"},
                         "You passed tpux; the 1 available ones are cpu and cuda.") == ["accelerator"]
    assert _refused_keys({"devices": 0}, "Devices can not be 0. Set DEVICES to 1") == ["devices"]  # any case


def test_a_job_that_started_keeps_the_traceback_of_a_file_it_could_not_open(monkeypatch):
    """Not the sentence for an output directory Hydra could not make: the job's own bug."""
    from framework.entry_point import _refusals_as_sentences
    from framework.stopping import job

    def a_jobs_bug():
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/results.json")

    monkeypatch.setattr(job, "started", True)
    with pytest.raises(FileNotFoundError):
        _refusals_as_sentences(a_jobs_bug)


def test_a_log_file_hydra_cannot_open_is_the_sentence_also_when_logging_raised_while_handling_it(monkeypatch, capsys):
    """logging.config raises a ValueError while handling the OSError (its context, not its cause)."""
    from framework.entry_point import _refusals_as_sentences
    from framework.stopping import job

    def configuring_logging():
        try:
            raise PermissionError(13, "Permission denied", "/runs/locked/train.log")
        except OSError:
            raise ValueError("Unable to configure handler 'file'")  # noqa: B904

    monkeypatch.setattr(job, "started", False)
    with pytest.raises(SystemExit) as stop:
        _refusals_as_sentences(configuring_logging)
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("Config error: The output directory cannot be made or written: "
                                              "/runs/locked/train.log (Permission denied); point paths.log_dir=")


def test_an_os_error_that_names_no_file_before_any_job_stays_a_bug(monkeypatch):
    from framework.entry_point import _refusals_as_sentences
    from framework.stopping import job

    def reading():
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(job, "started", False)
    with pytest.raises(OSError, match="Input/output error"):
        _refusals_as_sentences(reading)


def test_a_negative_size_names_the_key_that_holds_that_size_not_another_negative_one():
    node = OmegaConf.create({"_target_": "examples.nets.MLP", "in_features": 4, "hidden": -3, "num_classes": -10})
    error = RuntimeError("Trying to create tensor with negative dimension -10: [-10, -3]")
    assert str(construction_error(error, node, "model.net")) == (
        "Config key 'model.net.num_classes' is -10, but MLP makes a tensor of that size; give a positive integer.")


def test_a_module_of_ones_own_without_configure_optimizers_is_one_sentence_and_other_refusals_stay_bugs():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from framework.construction import trainer_refusals

    trainer, model = OmegaConf.create({"max_epochs": 1}), OmegaConf.create({"_target_": "mine.Module"})
    with pytest.raises(ConfigError, match=r"^Config key 'model' is mine.Module, which defines no configure_optimizers"):
        with trainer_refusals(trainer, model):
            raise MisconfigurationException("No `configure_optimizers()` method defined. Lightning `Trainer` expects")
    with pytest.raises(MisconfigurationException), trainer_refusals(trainer, model):
        raise MisconfigurationException("something else")


def test_a_value_error_of_our_own_code_during_fit_that_names_a_trainer_key_stays_a_bug():
    from framework.construction import trainer_refusals

    with pytest.raises(ValueError) as raised, trainer_refusals(OmegaConf.create({"max_epochs": 3})):
        raise ValueError("a callback's bug that mentions max_epochs")
    assert type(raised.value) is ValueError  # not ConfigError, which is a ValueError too


def test_the_printed_line_is_the_prefix_and_one_line_with_an_object_s_default_repr_as_its_class_name():
    from framework.errors import report

    error = ConfigError("Config key 'logger' is <framework.loggers.CSVLogger object at 0x7f3A2b10>,\n   but it must "
                        "be a <Thing object at 0xdeadbeef> or null.")
    assert report(error) == "Config error: Config key 'logger' is CSVLogger, but it must be a Thing or null."

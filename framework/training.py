"""A training job, what ``python train.py`` runs once Hydra has composed its config: validate -> seed ->
instantiate -> fit -> test -> results.

``training_job(cfg)`` is train.py's whole job (a user's mistake as one sentence, wandb closed, the test accuracy
and output directory printed); ``train(cfg)`` is its work, which tests and benchmarks call with a composed config.
What a run writes: train.py's docstring.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, Checkpoint, LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from callbacks.figures import FiguresToLoggers
from datamodules.base import InMemoryDataModule
from framework.atomic import hold_folder, release_folder
from framework.checkpoints import (
    TRAINING_METRICS,
    WALL_SECONDS,
    CheckpointWrittenInPlace,
    KeptValuesInCheckpoints,
    RandomStatesInCheckpoints,
    changed_on_resume,
    check_checkpoint,
    checkpoint_to_test,
    continuation_without_checkpoints_refusal,
    earlier_run_refusal,
    loading_checkpoint,
    resolve_ckpt_path,
    saved_at_an_epochs_end,
    unwritable_run_folder_refusal,
)
from framework.combinations import (
    FirstBatchWatch,
    check_data_fits_model,
    data_the_network_takes,
)
from framework.compose import paths_from_start_dir
from framework.construction import instantiate_node, trainer_refusals
from framework.ddp_workers import choose_the_rendezvous_port, with_job_worker_launcher
from framework.entry_point import reporting_user_errors
from framework.errors import ConfigError, UserError, log_to_files
from framework.loggers import (
    finish_wandb,
    give_wandb_loggers_their_run_id,
    is_wandb_logger,
    name_and_group_wandb_runs,
    publish_results,
    reaching_wandb,
    run_log_on_rank_zero_only,
    send_lightning_logs_to_hydra,
    wandb_offline_without_credentials,
)
from framework.monitored_metrics import MonitoredMetricsLogged, monitor_keys
from framework.process_group import DestroyProcessGroupAtExit
from framework.profiler import UnrecordedProfiler, leave_out_hooks_not_implemented
from framework.results import library_versions, read_results, to_float_dict, write_json_atomic
from framework.resuming import (
    complete_an_interrupted_save,
    lightnings_requeue_checkpoints,
    log_again_the_epoch_end_row,
    lost_accumulation_warning,
    set_aside_a_killed_start,
    set_aside_checkpoints_saved_after,
    set_aside_rows_logged_after,
    with_fit_loop_resuming_at_epoch_ends,
    without_lightnings_hpc_resume,
)
from framework.sigterm_across_ranks import sigterm_agreed, with_sigterm_agreed_across_ranks
from framework.stopping import (
    in_a_sweep,
    no_notices_meant_for_others,
    stopped_by,
    stopping_quietly_when_stdout_closes,
)
from framework.validate import validate

log = logging.getLogger("train")


GROUP_KINDS = {"callbacks": (Callback, "lightning.pytorch.Callback"),
               "logger": (Logger, "lightning.pytorch.loggers.Logger")}


def instantiate_group(cfg: DictConfig, name: str) -> dict[str, object]:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_``, by its key; each must be a
    Lightning Callback (Logger), which Lightning would only find out from a missing attribute."""
    group, (kind, kind_path) = cfg.get(name) or {}, GROUP_KINDS[name]
    made = {key: instantiate_node(node, f"{name}.{key}") for key, node in group.items()
            if isinstance(node, DictConfig) and "_target_" in node}
    for key, made_object in made.items():
        if not isinstance(made_object, kind):
            raise ConfigError(f"Config key '{name}.{key}._target_' is {group[key]._target_}, which is not a Lightning "
                              f"{kind.__name__} ({kind_path}); give a subclass of it.")
    return made


def leave_out_idle_callbacks(callbacks: dict[str, object], loggers: list, trainer_cfg: DictConfig,
                             model: L.LightningModule) -> list:
    """Leave out, and say so, the callbacks that a setting gives nothing to do (Lightning refuses the first three):
    the learning-rate monitor without a logger, a progress bar or checkpointing that the trainer turns off, and the
    learning-rate monitor of a model whose optimizer is a placeholder (it would log the placeholder's 0.0)."""
    idle = [(LearningRateMonitor, "logger=none", not loggers),
            (ProgressBar, "trainer.enable_progress_bar=false", trainer_cfg.get("enable_progress_bar") is False),
            (Checkpoint, "trainer.enable_checkpointing=false", trainer_cfg.get("enable_checkpointing") is False),
            (LearningRateMonitor, f"model ({type(model).__name__}) steps a placeholder optimizer",
             getattr(model, "optimizer_is_placeholder", False))]
    kept, left_out = [], {}
    for key, callback in callbacks.items():
        setting = next((setting for kind, setting, applies in idle if applies and isinstance(callback, kind)), None)
        if setting:
            left_out.setdefault(setting, []).append(f"callbacks.{key} ({type(callback).__name__})")
        else:
            kept.append(callback)
    for setting, names in left_out.items():
        log.info(f"{setting}: {', '.join(names)} would have nothing to do and "
                 f"{'is' if len(names) == 1 else 'are'} left out.")
    return kept


def best_checkpoint(trainer: L.Trainer) -> tuple[str | None, str]:
    """The checkpoint that fitting chose (None: none saved) and how to name it in the log and results.json."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") or None
    if path is None:
        return None, "final weights"
    elsewhere = getattr(callback, "resumed_elsewhere", None)
    if not callback.monitor:
        return path, "last checkpoint" + (f" (resumed from another run's, in {elsewhere})" if elsewhere else "")
    since = f" among the epochs since the resume (the earlier ones are in {elsewhere})" if elsewhere else ""
    return path, f"best checkpoint by {callback.monitor} ({callback.mode}){since}"


def evaluate_checkpoint(trainer: L.Trainer, model, datamodule, ckpt_path: str) -> dict[str, float]:
    """Validation metrics of ``ckpt_path`` (so that val/ and test/ describe the same weights), kept out of
    the loggers: metrics.csv keeps the per-epoch curve."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    finally:
        trainer.loggers = loggers
    return to_float_dict(trainer.callback_metrics)


def finished_with_this_config(cfg: DictConfig) -> dict | None:
    """The results of this run directory when ``ckpt_path=auto`` finds that it finished with the same config (a sweep
    given more seeds continues its unfinished jobs; the finished ones keep their results.json, which a re-test
    would replace with fewer metrics)."""
    folder = Path(cfg.paths.output_dir)
    if not cfg.get("train", True) or cfg.get("ckpt_path") not in ("auto", "last") or \
            not (folder / "results.json").is_file() or not (folder / "checkpoints" / "last.ckpt").is_file():
        return None
    earlier = read_results(folder / "results.json")
    return earlier if compared(earlier.get("config", {})) == compared(OmegaConf.to_container(cfg, resolve=True)) \
        else None


def compared(config: dict) -> dict:
    """A run's config as a finished run's is compared with it: without ``ckpt_path`` (how it was started) and its
    wandb runs' names and groups (how it is shown: a sweep's runs got other names, and every finished job of a sweep
    continued after that trained again)."""
    shown = {name: {key: value for key, value in node.items() if key not in ("name", "group")}
             for name, node in (config.get("logger") or {}).items() if is_wandb_logger(node)}
    return {key: value for key, value in config.items() if key != "ckpt_path"} | \
        ({"logger": config["logger"] | shown} if shown else {})


def training_metrics_of_its_run(checkpoint: str, saved: dict) -> dict[str, float]:
    """The last epoch's metrics other than val/ and test/ of a checkpoint's run, for a run continued from it that
    trains no further batch (Lightning logs none then): those the checkpoint (``saved``) holds, else those of its
    run's results.json (a checkpoint saved before they were kept in it); {} without either."""
    if TRAINING_METRICS in saved:
        return saved[TRAINING_METRICS]
    results = Path(checkpoint).parent.parent / "results.json"
    earlier = read_results(results).get("metrics", {}) if results.is_file() else {}
    return {key: value for key, value in earlier.items() if not key.startswith(("val/", "test/"))}


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def group_choices() -> dict[str, str | None]:
    """The option of each config group (``model: lenet5``, ``model/optimizer: sgd``), typed or a default."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return {group: option for group, option in choices.items() if group.split("/")[0] != "hydra"}


def build(cfg: DictConfig, callbacks: Sequence[Callback]) -> tuple[L.LightningDataModule, L.LightningModule,
                                                                    L.Trainer, FirstBatchWatch]:
    """The run's data, model and Trainer (with the configured callbacks and loggers, ours, and ``callbacks``), its
    config sent to the loggers; and the callback that watches the first batch."""
    datamodule = instantiate_node(cfg.data, "data")
    model = instantiate_node(cfg.model, "model")
    check_data_fits_model(cfg, datamodule, model)
    loggers = list(instantiate_group(cfg, "logger").values())
    first_batch = FirstBatchWatch()
    all_callbacks = [MonitoredMetricsLogged(monitor_keys(cfg)), first_batch,
                     *leave_out_idle_callbacks(instantiate_group(cfg, "callbacks"), loggers, cfg.trainer, model),
                     KeptValuesInCheckpoints(cfg), RandomStatesInCheckpoints(), DestroyProcessGroupAtExit(), *callbacks]
    # Figures go to the loggers at an epoch's end after every other callback has drawn its own, so that the epoch's
    # last.ckpt (Lightning runs checkpoint callbacks last) records them as sent: a run continued from it sent them again
    all_callbacks.sort(key=lambda callback: isinstance(callback, FiguresToLoggers))
    # barebones mode refuses any profiler (it keeps Lightning's default)
    profiler = {} if cfg.trainer.get("profiler") or cfg.trainer.get("barebones") else {"profiler": UnrecordedProfiler()}
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [CheckpointWrittenInPlace()]}
    # data.val_fraction=0: no validation split, whose empty loader Lightning would warn of ("make sure this was your
    # intention"); the run is validated by nothing, as with trainer.limit_val_batches=0
    no_validation = {"limit_val_batches": 0} if getattr(datamodule, "val_fraction", None) == 0 else {}
    if no_validation:
        log.info("data.val_fraction=0: no validation split, so the run validates nothing (trainer.limit_val_batches=0)")
    # _convert_: plain dicts and lists, as Lightning's type checks expect (max_time={minutes: 30})
    trainer: L.Trainer = instantiate_node(cfg.trainer, "trainer", _convert_="all", callbacks=all_callbacks,
                                          logger=loggers or False, **profiler, **plugins, **no_validation)
    if no_validation:  # again: trainer.fast_dev_run sets every limit to its own number of batches
        trainer.limit_val_batches = 0
    with_sigterm_agreed_across_ranks(trainer)
    leave_out_hooks_not_implemented(trainer.callbacks)  # Lightning's own (progress bar, model summary) included
    with_fit_loop_resuming_at_epoch_ends(trainer)
    if cfg.get("ckpt_path") != "hpc":
        without_lightnings_hpc_resume(trainer)
    choose_the_rendezvous_port(getattr(trainer.strategy, "cluster_environment", None), trainer.world_size)
    with_job_worker_launcher(trainer, cfg)
    with reaching_wandb(cfg):  # log_hyperparams starts the wandb run
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, model, trainer, first_batch


@dataclass(frozen=True)
class Continuation:
    """What a training run continued from a checkpoint takes from it (the defaults: a fresh start)."""

    at_step: int | None = None  # the checkpoint's global step
    training_metrics: dict = field(default_factory=dict)  # its run's last training metrics (a run that trains no batch)
    changed: dict = field(default_factory=dict)  # {key: [the checkpoint run's value, this run's]}: changed_on_resume
    wall_seconds: float = 0.0  # its run's wall time up to the checkpoint, over the starts before this one


def continue_from(cfg: DictConfig, given: str, saved: dict, datamodule: L.LightningDataModule) -> Continuation:
    """A training run continues from the checkpoint ``saved`` (read from ``given``): the log says so; what this run's
    own directory logged and saved after it is set aside; gradients lost within an accumulation and values other than
    the checkpoint run's are warned of."""
    log.info(f"Resuming from {given}, saved in epoch {saved.get('epoch')} (counted from 0, as in the "
             f"metrics) at global step {saved.get('global_step')}")
    if rank_zero_only.rank == 0 and Path(cfg.paths.output_dir).resolve() in Path(given).resolve().parents:
        max_steps = cfg.trainer.get("max_steps")  # this run's own checkpoint
        set_aside_rows_logged_after(cfg.paths.output_dir, saved, max_steps)
        log_again_the_epoch_end_row(cfg.paths.output_dir, saved, max_steps)
        set_aside_checkpoints_saved_after(Path(given).parent, saved)
    if lost := lost_accumulation_warning(given, saved, cfg.trainer.get("accumulate_grad_batches") or 1):
        log.warning(lost)
    if not saved_at_an_epochs_end(saved) and not isinstance(datamodule, InMemoryDataModule):
        log.warning(f"{given} was saved within an epoch, and {type(datamodule).__name__} is not one of the "
                    f"framework's DataModules, whose training loaders continue an epoch with the batches an "
                    f"uninterrupted run has: this epoch goes on with the batches its loader gives now, so the run will "
                    f"not end exactly as an uninterrupted one (continuing from an epoch's end does).")
    if changed := changed_on_resume(saved, cfg):
        # the framework's modules build their optimizers from model.optimizer and model.scheduler, which a resume
        # keeps (check_checkpoint); a module of one's own may build them from any key
        own = not str((cfg.get("model") or {}).get("_target_", "")).startswith("lightning_modules.")
        kept = (" (but a value your module builds its optimizer or scheduler from stays the checkpoint's: a resumed "
                "run continues their state, as Lightning restores it)") if own else ""
        log.warning(f"Resumed with values other than those its checkpoint's run trained with: "
                    f"{', '.join(f'{key} {before} -> {now}' for key, (before, now) in changed.items())}; the epochs "
                    f"from here train with the new ones{kept} (results.json records both under changed_on_resume).")
    return Continuation(saved.get("global_step"), training_metrics_of_its_run(given, saved), changed,
                        float(saved.get(WALL_SECONDS, 0.0)))


def train(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> dict:
    """Run one training job described by ``cfg``; returns (and writes) its results. ``callbacks``: a program's own
    Lightning callbacks, added to the configured ones (benchmarks/overhead.py times epochs with one)."""
    validate(cfg)
    if cfg.get("train", True) and cfg.get("ckpt_path") is None and \
            (requeue := lightnings_requeue_checkpoints(cfg.paths.output_dir)):
        log.info(f"{requeue[-1]} is Lightning's SLURM requeue checkpoint, saved within a training step: this requeued "
                 f"run continues as ckpt_path=auto does, from checkpoints/, and so ends as an uninterrupted run")
        cfg.ckpt_path = "auto"
    # before anything is written (Hydra's run and sweep callbacks check it earlier still: framework/hydra_callbacks.py)
    if refusal := earlier_run_refusal(cfg.paths.output_dir, cfg.get("ckpt_path"), cfg.get("train", True),
                                      multirun=in_a_sweep()):
        raise refusal
    if refusal := unwritable_run_folder_refusal(cfg.paths.output_dir) or continuation_without_checkpoints_refusal(cfg):
        raise refusal
    if cfg.get("train", True) and cfg.get("ckpt_path") in ("auto", "last") and rank_zero_only.rank == 0:
        set_aside_a_killed_start(cfg.paths.output_dir)
        if (cfg.get("callbacks") or {}).get("last_checkpoint"):
            complete_an_interrupted_save(cfg.paths.output_dir)
    give_wandb_loggers_their_run_id(cfg)  # before the comparison: a finished run's config holds the id it was given
    name_and_group_wandb_runs(cfg)
    if finished := finished_with_this_config(cfg):
        log.info(f"{cfg.paths.output_dir} finished with this config already (its results.json): kept, not trained or "
                 f"tested again (delete its results.json to test it again)")
        return finished
    send_lightning_logs_to_hydra()
    wandb_offline_without_credentials(cfg)
    log.info(f"Output directory: {cfg.paths.output_dir}; overrides: {' '.join(task_overrides()) or 'none'}")
    started = time.perf_counter()
    if cfg.get("train", True) and cfg.trainer.get("limit_train_batches") == 0:
        log.warning("trainer.limit_train_batches=0: no training batch runs, so the metrics below are those of the "
                    "initial weights (to test a trained network without training: train=false ckpt_path=<its .ckpt>).")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    else:  # the loaders shuffle by split_seed then, not by the seed an earlier job of this sweep's process left here
        for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
            os.environ.pop(name, None)

    datamodule, model, trainer, first_batch = build(cfg, callbacks)

    # val/ and test/ metrics of one set of weights: after fitting, the best checkpoint when it saved one, else the
    # current weights (fast_dev_run, callbacks=none); in a test-only run (train=false), those of ckpt_path.
    trained = cfg.get("train", True)
    given = resolve_ckpt_path(cfg.get("ckpt_path"), trainer) if trained else checkpoint_to_test(cfg.ckpt_path, trainer)
    saved = check_checkpoint(given, resumed_with=cfg, model=model, test_only=not trained)
    continued = continue_from(cfg, given, saved, datamodule) if trained and saved is not None else Continuation()
    del saved  # memory-mapped: Lightning loads it again
    for callback in trainer.callbacks:  # before fit: DDP workers take its state as it is then
        if isinstance(callback, KeptValuesInCheckpoints):
            callback.started, callback.before = started, continued.wall_seconds
    metrics = {}
    with data_the_network_takes(cfg, model, datamodule, first_batch):
        if trained:
            with trainer_refusals(cfg.trainer, cfg.model), loading_checkpoint(given):
                trainer.fit(model, datamodule=datamodule, ckpt_path=given)
            if sigterm_agreed(trainer):  # in on_train_end (the MI callback's last measurement, say): Lightning
                raise SIGTERMException    # stops at an epoch's end only, and its next validate or test forgets it
            metrics = to_float_dict(trainer.callback_metrics)  # the last epoch's
            if trainer.global_step == continued.at_step:  # continued at its end (stopped early, or max_epochs reached)
                metrics = continued.training_metrics | metrics
            checkpoint, evaluated = best_checkpoint(trainer)
        else:
            checkpoint, evaluated = given, f"checkpoint {given}"
        with loading_checkpoint(None if trained else given):
            if checkpoint and trainer.limit_val_batches != 0:
                metrics |= evaluate_checkpoint(trainer, model, datamodule, checkpoint)
            if cfg.get("test", True):
                trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint)
                metrics |= to_float_dict(trainer.callback_metrics)
                # spawned DDP workers send the metrics back to this process, not the batch counts
                if not sum(trainer.num_test_batches) and not any(key.startswith("test/") for key in metrics):
                    log.warning(f"test=true, but {type(datamodule).__name__}'s test loader gave no batches, so there "
                                f"are no test/ metrics; give the data a test split, or test=false.")
    shown = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(metrics.items())
                      if k.startswith(("val/", "test/", "val_", "test_")))  # val_acc: a module of one's own
    if not shown:
        shown = "none were logged" + (" (trainer.barebones turns off self.log)" if cfg.trainer.get("barebones") else "")
    log.info(f"val/ and test/ metrics of the {evaluated}: {shown}")

    results = {
        "metrics": metrics,
        "optimized_metric": cfg.get("optimized_metric"),
        "seed": cfg.get("seed"),
        "overrides": task_overrides(),
        "choices": group_choices(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "output_dir": cfg.paths.output_dir,
        "best_checkpoint": checkpoint,  # the weights val/ and test/ describe (test-only: ckpt_path)
        "evaluated_checkpoint": evaluated,
        "epochs_completed": trainer.current_epoch,  # DDP workers send it back too (JobWorkerLauncher)
        "wall_seconds": continued.wall_seconds + time.perf_counter() - started,  # over every start of the run
        "versions": library_versions(),
        "compute": compute_used(trainer),
    }
    if continued.changed:
        results["changed_on_resume"] = continued.changed
    if trainer.is_global_zero:
        path = write_json_atomic(Path(cfg.paths.output_dir) / "results.json", results)
        log.info(f"Wrote {path}")
        publish_results(trainer.loggers, results)
    return results


def compute_used(trainer: L.Trainer) -> dict:
    """What the run computed on: its device, the processes, and, in the process that writes results.json, torch's
    CPU thread count and the vector instructions its CPU kernels use (AVX2, AVX512, ...): both order CPU sums, so
    the same command gives other figures at OMP_NUM_THREADS=1 and at 2, or on a CPU of another instruction set."""
    device = trainer.strategy.root_device
    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    return {"device": name, "processes": trainer.world_size, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def training_job(cfg: DictConfig) -> float | None:
    """train.py's job: ``train(cfg)``, its outcome printed; returns ``optimized_metric`` for Hydra sweepers."""
    run_log_on_rank_zero_only()
    no_notices_meant_for_others()  # also in a job that submitit runs in a process of its own
    try:
        # the user's mistake, whoever found it: one sentence, exit code 2
        with stopping_quietly_when_stdout_closes(), \
                reporting_user_errors(cfg.get("evaluate_tasks"), cfg.get("ckpt_path")):
            paths_from_start_dir(cfg, ("ckpt_path", "paths.data_dir", "data.data_dir", "model.loss_network.weights"),
                                 keywords=("auto", "last", "hpc", "imagenet", "random"))
            # A single run's folder is held from Hydra's run start on; a sweep's job holds its own: a job given again
            # while it still runs (on a cluster, after its launcher stopped) stops. Not a requeued SLURM job: SLURM
            # ended its earlier start, whose lock a network file system may keep a while after a node's failure.
            if in_a_sweep() and rank_zero_only.rank == 0 and int(os.environ.get("SLURM_RESTART_COUNT") or 0) == 0:
                hold_folder(Path(cfg.paths.output_dir), "give the sweep another hydra.sweep.dir")
            results = train(cfg)
    except BaseException as error:  # SystemExit too: Lightning's after a SIGTERM
        if isinstance(error, Exception) and not isinstance(error, UserError):  # a user error has said its sentence
            failed = f"Run failed; its output directory is {cfg.paths.output_dir}"
            log_to_files(failed, error, log)  # with the traceback, which Hydra prints on the console after this line
            print(f"{failed}.", file=sys.stderr)
        finish_wandb(stopping=error)
        if isinstance(error, SIGTERMException):  # said here: in a job that submitit runs, no run_entry_point is there
            stopped_by(signal.SIGTERM)  # to turn Lightning's exit (code 0, no word) into the sentence and exit code 143
        raise
    finally:
        release_folder(Path(cfg.paths.output_dir))
    finish_wandb()
    metrics = results["metrics"]
    if rank_zero_only.rank == 0:
        with stopping_quietly_when_stdout_closes():
            if "test/acc" in metrics:
                print(f"test/acc = {metrics['test/acc']:.4f}")
            print(f"output directory: {cfg.paths.output_dir}")
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


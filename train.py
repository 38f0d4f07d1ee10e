"""The one training entry point: compose -> validate -> seed -> instantiate -> fit -> test -> results.

    python train.py                                   # LeNet-5 on the bundled digits
    python train.py model=lenet5_classic data=mnist trainer.max_epochs=3 seed=1
    python train.py experiment=lenet5_classic_mnist logger=wandb
    python train.py -m model.optimizer.lr=0.01,0.1 seed=1,2,3     # one job directory each
    python train.py ckpt_path=auto hydra.run.dir=<old run>         # resume a killed run

Every run writes into its Hydra output directory: the composed config (.hydra/),
checkpoints/ (last.ckpt and the best), the logger's files and results.json. ``main``
returns ``optimized_metric`` for Hydra sweepers.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from omegaconf import DictConfig, OmegaConf

from datamodules.base import DatasetCorruptError, DatasetMissingError
from framework.pretrained import PretrainedWeightsError
from framework.results import library_versions, to_float_dict, write_json_atomic
from framework.validate import ConfigError, validate

log = logging.getLogger("train")

# Mistakes in what the user gave (a config value, a dataset's files): one sentence, no traceback.
USER_ERRORS = (ConfigError, DatasetMissingError, DatasetCorruptError, PretrainedWeightsError)


def instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_``."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def instantiate_model(node: DictConfig):
    """``instantiate``, with a user error raised while building the model (weights, sizes) left unwrapped."""
    try:
        return instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, USER_ERRORS):
            raise error.__cause__ from None
        raise


def resolve_ckpt_path(ckpt_path: str | None, trainer: L.Trainer) -> str | None:
    """``auto``: this run's last.ckpt when it exists (resume a killed run), otherwise a fresh start."""
    if ckpt_path != "auto":
        return ckpt_path
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            last = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            if last.is_file():
                log.info(f"Resuming from {last}")
                return str(last)
    log.info("ckpt_path=auto: no last.ckpt in this run's checkpoint directory, starting fresh")
    return None


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> dict:
    """Run one training job described by ``cfg``; returns (and writes) its results."""
    validate(cfg)
    started = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate_model(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), trainer))
    metrics = to_float_dict(trainer.callback_metrics)

    best_checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if cfg.get("test", True):
        # Without a checkpoint (fast_dev_run, test-only runs) the current weights are tested.
        trainer.test(model, datamodule=datamodule, ckpt_path=best_checkpoint if cfg.get("train", True) else None)
        metrics |= to_float_dict(trainer.callback_metrics)

    results = {
        "metrics": metrics,
        "optimized_metric": cfg.get("optimized_metric"),
        "seed": cfg.get("seed"),
        "overrides": task_overrides(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "output_dir": cfg.paths.output_dir,
        "best_checkpoint": best_checkpoint,
        # Spawned DDP workers (ddp_spawn) train in child processes whose epoch count does not come back.
        "epochs_completed": None if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher)
        else trainer.current_epoch,
        "wall_seconds": time.perf_counter() - started,
        "versions": library_versions(),
    }
    if trainer.is_global_zero:
        write_json_atomic(Path(cfg.paths.output_dir) / "results.json", results)
    return results


def finish_wandb() -> None:
    """Close the wandb run of this job, so that every multirun job gets its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    output_dir = cfg.paths.output_dir
    try:
        results = train(cfg)
    except USER_ERRORS as error:
        kind = {ConfigError: "Config error", PretrainedWeightsError: "Weights error"}.get(type(error), "Data error")
        log.error(f"{kind}: {error} (output directory: {output_dir})")
        print(f"{kind}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception:
        log.exception(f"Run failed; its output directory is {output_dir}")
        raise
    finally:
        finish_wandb()
    metrics = results["metrics"]
    if rank_zero_only.rank == 0:
        if "test/acc" in metrics:
            print(f"test/acc = {metrics['test/acc']:.4f}")
        print(f"output directory: {output_dir}")
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()

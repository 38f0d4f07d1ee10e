"""A CSV logger that appends to an existing metrics.csv instead of deleting it; results.json to wandb; the wandb
run id of a run directory, which a resumed run continues; wandb's server out of reach as one sentence.

Lightning's CSV writer deletes metrics.csv when a new process opens the same log directory.
That loses the epochs before a resume (``ckpt_path=auto``) and breaks ``ddp_spawn``, whose
fit and test phases write from different processes. This writer keeps the rows and merges the
file's header into its own keys before every save.
"""

from __future__ import annotations

import csv
import io
import logging
import netrc
import os
import secrets
import shlex
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from framework.atomic import write_atomically
from framework.continued_runs import sweep_overrides
from framework.errors import ConfigError, UserError, one_line
from framework.stopping import exit_code_of, in_a_sweep

log = logging.getLogger("train")  # the job's log lines, as framework/training.py's
WANDB_NAME_CHARACTERS = 128  # wandb's runs table shows fewer; the config columns hold the rest


class AppendingExperimentWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep the existing metrics.csv (the parent deletes it)."""

    def save(self) -> None:
        if self.metrics and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(set(self.metrics_keys) | set(header))
        super().save()

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """Lightning rewrites metrics.csv in place when a column appears (the first validation, the first epoch's
        end, the test): a run killed during that rewrite left an empty file, and its continuation lost every row
        before. Written beside it and renamed into place."""
        with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
            rows = [[row.get(name) or "" for name in fieldnames] for row in csv.DictReader(handle)]
        write_atomically(self.metrics_file_path, lambda file: write_csv(file, fieldnames, rows))

    def rows_logged(self) -> int:
        """How many rows this run's metrics.csv has been given so far: those in the file and those waiting for the
        next save."""
        written = 0
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                written = max(sum(1 for _ in csv.reader(handle)) - 1, 0)  # less the header
        return written + len(self.metrics)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A metrics.csv's header and rows (both empty for an empty file)."""
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle)) or [[]]
    return header, rows


def write_csv(file, header: list[str], rows: list[list[str]]) -> None:
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])  # "\r\n", as Lightning's CSV writer ends its rows
    file.write(text.getvalue().encode())


class AppendingCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Each row is written when it is logged. Lightning's CSVLogger writes every 100 rows and Lightning's loop
        flushes the rows it logs itself, but not those a callback logs (the learning rates at an epoch's start): a run
        killed within that epoch lost them for good when continued from a checkpoint saved after them."""
        super().log_metrics(metrics, step)
        self.save()


def send_lightning_logs_to_hydra() -> None:
    """Lightning's loggers stop at their own console handlers when imported before Hydra configures
    logging; let them propagate so that Hydra's handlers print them once and put them into train.log."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def run_log_on_rank_zero_only() -> None:
    """A DDP job's every rank that the cluster started (srun's tasks, ``SLURM_PROCID``; Lightning's own ranks,
    ``LOCAL_RANK``) is a Hydra job that opens the run's train.log: the other ranks leave it to rank 0, as the ranks of
    trainer=ddp_sim do. Each SLURM task's whole output is in its own submitit log; elsewhere (trainer=ddp on one
    machine) the ranks share rank 0's console, where the others' lines repeated rank 0's: there they say only
    warnings and errors, as Lightning's own lines are rank 0's alone."""
    if rank_zero_only.rank == 0:
        return
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if isinstance(handler, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
    if "SLURM_PROCID" not in os.environ:
        for handler in root.handlers:
            handler.setLevel(max(handler.level, logging.WARNING))


def publish_results(loggers, results: dict) -> None:
    """results.json as the wandb run's summary: the final metrics at the top level, the rest beside them
    (the config is left out: the run already holds it as its config); on TensorBoard, the config's values and the
    final metrics in its HPARAMS tab, which compares a sweep's runs by them."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            rest = {key: value for key, value in results.items() if key not in ("metrics", "config")}
            logger.experiment.summary.update({**results["metrics"], **rest})
        if isinstance(logger, TensorBoardLogger):
            tensorboard_hparams(logger, results["config"], results["metrics"])


def tensorboard_hparams(logger: TensorBoardLogger, config: dict, metrics: dict) -> None:
    """The HPARAMS tab's record of the run, in a run folder of its own, tensorboard/hparams/ (as torch's add_hparams
    writes one): every config value by its dotted key, and results.json's final metrics as that folder's scalars,
    which the tab shows (in the run's own folder it took the last epoch's val/, not the best checkpoint's). Each
    finished start replaces the folder: TensorBoard keeps the first record a folder holds, and a finished run
    continued with more epochs showed its first start's config beside the new metrics."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    from framework.checkpoints import flattened  # here: framework.checkpoints imports this module

    values = {key: value if isinstance(value, bool | int | float | str) else str(value)
              for key, value in flattened(config).items()}
    folder = Path(logger.log_dir) / "hparams"
    new, old = folder.with_name(".hparams.new"), folder.with_name(".hparams.old")
    for leftover in (new, old):  # of a start killed while it replaced the folder
        shutil.rmtree(leftover, ignore_errors=True)
    with SummaryWriter(new) as writer:
        for summary in hparams(values, metrics):
            writer.file_writer.add_summary(summary)
        for key, value in metrics.items():
            writer.add_scalar(key, value)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def wandb_run_id(output_dir: str | Path, resuming: bool) -> str | None:
    """The wandb run id of a run directory (``<output_dir>/wandb/run_id``). A start that resumes (``ckpt_path`` given:
    ``auto``, a requeued SLURM job) continues the wandb run of the directory's earlier start; a fresh start makes a new
    one (wandb would drop the steps of a restart from zero that it had already seen). Only rank 0 logs to wandb, so
    only rank 0 writes the id; the other ranks get ``None``."""
    path = Path(output_dir) / "wandb" / "run_id"
    if resuming and path.is_file():
        return path.read_text().strip()
    if rank_zero_only.rank != 0:
        return None
    run_id = secrets.token_hex(4)
    write_atomically(path, lambda stream: stream.write(run_id.encode()))
    return run_id


def is_wandb_logger(node) -> bool:
    """Whether a logger's config node (a DictConfig, or a dict as results.json holds it) is wandb's."""
    return isinstance(node, DictConfig | dict) and "WandbLogger" in str(node.get("_target_", ""))


def wandb_logger_nodes(cfg: DictConfig) -> list[DictConfig]:
    """The config nodes of the chosen loggers that are wandb's."""
    return [node for node in (cfg.get("logger") or {}).values() if is_wandb_logger(node)]


def give_wandb_loggers_their_run_id(cfg: DictConfig) -> None:
    """``logger.wandb.id: null``: the run directory's id (:func:`wandb_run_id`), that of its earlier start when this
    start continues from a checkpoint (ckpt_path=auto with no checkpoint in the folder starts again from zero)."""
    for node in wandb_logger_nodes(cfg):
        if node.get("id") is None:
            with open_dict(node):
                continues = cfg.get("ckpt_path") not in (None, "auto", "last") or \
                    any((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))  # a killed start's does not
                node.id = wandb_run_id(cfg.paths.output_dir, resuming=continues)


def swept_values() -> str:
    """This sweep job's values of the keys its sweep sweeps, joined as Hydra joins overrides for folder names
    (``model.optimizer.lr=0.1,seed=2``): the values of the command line's other keys are every job's, and Hydra's
    whole ``hydra.job.override_dirname`` hid the swept ones past the name's length. The sweep's keys come from its
    directory's multirun.yaml (Hydra's record of the command), which a job of any launcher can read; where it
    cannot, the whole override_dirname."""
    hydra = HydraConfig.get()
    try:
        swept = {override.key_or_group for override in
                 sweep_overrides(OmegaConf.load(Path(hydra.sweep.dir) / "multirun.yaml"))
                 if override.is_sweep_override()}
    except Exception:  # a record from another Hydra, a file being rewritten: the name says more, not less
        return hydra.job.override_dirname
    own = OverridesParser.create().parse_overrides(list(hydra.overrides.task))
    return ",".join(sorted(override.input_line for override in own if override.key_or_group in swept))


def name_and_group_wandb_runs(cfg: DictConfig) -> None:
    """``logger.wandb.name: null``: the run's ``experiment_name``, and in a sweep this job's values of the swept
    keys after it (``lenet5_mnist seed=2``), so that wandb's runs table tells a sweep's jobs apart; a job gets the
    same name in every start of its sweep.
    ``logger.wandb.group: null``: a multirun's jobs are grouped by their sweep directory's name (wandb's Group view
    then aggregates one sweep's runs); a single run has no group."""
    sweep = in_a_sweep()
    for node in wandb_logger_nodes(cfg):
        with open_dict(node):
            if node.get("name") is None:
                node.name = f"{cfg.experiment_name} {swept_values() if sweep else ''}".strip()[:WANDB_NAME_CHARACTERS]
            if sweep and node.get("group") is None:
                node.group = Path(HydraConfig.get().sweep.dir).name


def wandb_sync_command(cfg: DictConfig) -> str:
    """The command that uploads the run's offline wandb files: they are in ``<the logger's save_dir>/wandb``, a
    folder quoted for the shell where it needs to be, and the glob after it left for the shell to expand."""
    save_dir = next((node.get("save_dir") for node in wandb_logger_nodes(cfg)), None) or cfg.paths.output_dir
    return f"wandb sync {shlex.quote(str(Path(save_dir) / 'wandb'))}/offline-run-*"


@contextmanager
def reaching_wandb(cfg: DictConfig):
    """Around the first call that starts a wandb run (``wandb.init``). With credentials but no route to wandb's
    server (a cluster's compute node after ``wandb login``), wandb gives up after its retries with a CommError:
    one sentence instead of its traceback."""
    try:
        yield
    except Exception as error:
        errors = sys.modules.get("wandb.errors")
        if errors is None or not isinstance(error, errors.CommError):
            raise
        raise UserError(f"wandb could not reach its server ({one_line(error).rstrip('.')}); log offline with "
                        f"WANDB_MODE=offline (and upload later, where there is a network, with "
                        f"{wandb_sync_command(cfg)}), or choose logger=csv.") from None


def has_wandb_credentials() -> bool:
    """An API key in WANDB_API_KEY, an identity token file, or `wandb login`'s entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_offline_without_credentials(cfg: DictConfig) -> None:
    """``logger=wandb`` without credentials and without WANDB_MODE: log offline instead of failing. A WANDB_MODE
    that wandb does not know is one sentence (wandb's own refusal is a pydantic traceback)."""
    if not wandb_logger_nodes(cfg):
        return
    if mode := os.environ.get("WANDB_MODE"):
        from typing import get_args

        from wandb import Settings

        if mode not in (modes := get_args(Settings.model_fields["mode"].annotation)):
            raise ConfigError(f"The environment variable WANDB_MODE is {mode!r}, but wandb takes one of "
                              f"{', '.join(modes)}; set one of those (offline: no network), or unset it.")
        if mode in ("online", "shared") and not has_wandb_credentials():  # wandb's refusal: a 40-line traceback
            raise ConfigError(f"The environment variable WANDB_MODE is {mode!r}, but wandb has no API key here "
                              f"(WANDB_API_KEY or `wandb login`); log in, or set WANDB_MODE=offline and upload the "
                              f"run later with {wandb_sync_command(cfg)}.")
    elif not has_wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
        log.warning(f"wandb: no API key (WANDB_API_KEY or `wandb login`), so this run logs offline; upload it "
                    f"later with: {wandb_sync_command(cfg)}")


def finish_wandb(stopping: BaseException | None = None) -> None:
    """Close the wandb run of this job, so that every multirun job gets its own. ``stopping``: the exception the job
    is ending on. Its exit code goes to wandb (which otherwise shows a failed or stopped run as finished: its own
    hooks have not seen the exception yet), and wandb's own failure to close must not replace it (a SIGTERM from
    SLURM's requeue also ends wandb's service process, and wandb.finish() then raised ConnectionResetError: the
    submitting command failed)."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            try:
                if isinstance(stopping, SIGTERMException):
                    wandb.run.mark_preempting()  # wandb shows it as preempted: a requeued job continues it
                wandb.finish(exit_code=exit_code_of(stopping) if stopping is not None else 0)
            except Exception as error:
                if stopping is None:
                    raise
                log.warning(f"wandb could not close its run while the job stopped ({type(error).__name__}: {error}).")

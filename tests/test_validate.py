import pytest
import torch
from lightning.pytorch import Trainer
from omegaconf import OmegaConf

from framework.validate import ConfigError, validate
from lightning_modules.szegedy import SzegedyNet
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("model.optimizer.lr=-0.1", "model.optimizer.lr", "a number > 0"),
        ("trainer.max_epochs=0", "trainer.max_epochs", "an integer >= 1"),
        ("data.val_fraction=1.0", "data.val_fraction", "in [0, 1)"),
        ("data.val_fraction=-0.1", "data.val_fraction", "in [0, 1)"),
        ("data.val_fraction=0", "data.val_fraction", "optimized_metric=null"),
        ("data.batch_size=0", "data.batch_size", "an integer >= 1"),
        ("model.optimizer.momentum=1", "model.optimizer.momentum", "a number in [0, 1)"),  # the bound itself
        ("seed=-3", "seed", "an integer in [0, 2^32)"),
        ("model.net._target_=lightning_modules.lenet5.LeNet6", "model.net._target_", "cannot be imported"),
        ("ckpt_path=/no/such/file.ckpt", "ckpt_path", "no such file exists"),
    ],
)
def test_bad_values_get_one_sentence_naming_key_and_allowed_values(make_cfg, override, key, allowed):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    message = str(error.value)
    assert f"'{key}'" in message and allowed in message
    assert "\n" not in message


@pytest.mark.parametrize("key", ["data.val_fraction", "data.split_seed", "data.batch_size", "data.mean",
                                 "data.num_workers", "model.optimizer.lr", "train"])
def test_null_where_nothing_takes_its_place_gets_the_keys_sentence(make_cfg, key):
    """data.val_fraction=null was a TypeError traceback from deep in the DataModule."""
    with pytest.raises(ConfigError, match=rf"^Config key '{key}' is null, but it must be "):
        validate(make_cfg(f"{key}=null"))


def test_null_is_allowed_exactly_where_the_keys_sentence_offers_it(make_cfg):
    from framework.validate import RULES

    assert [rule.key for rule in RULES if rule.null != ("or null" in rule.allowed)] == []
    validate(make_cfg("seed=null", "trainer.max_epochs=null", "trainer.check_val_every_n_epoch=null", "tags=null",
                      "trainer.deterministic=null", "data=svhn", "data.pad_to=null", "evaluate_tasks=null"))
    validate(make_cfg("logger=wandb", *(f"logger.wandb.{key}=null" for key in ("project", "id", "resume", "offline",
                                                                                "log_model"))))


@pytest.mark.parametrize("given", ["run", "run/checkpoints"])
def test_a_run_directory_as_ckpt_path_names_its_last_checkpoint_and_the_resume(make_cfg, tmp_path, given):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    for name in ("epoch_003.ckpt", "last.ckpt"):
        (tmp_path / "run" / "checkpoints" / name).touch()
    expected = (rf"'ckpt_path' is the directory '{tmp_path / given}'; give a checkpoint file \(e.g. "
                rf"ckpt_path={tmp_path}/run/checkpoints/last.ckpt\), or ckpt_path=auto with "
                rf"hydra.run.dir={tmp_path}/run to resume that run\.")
    with pytest.raises(ConfigError, match=expected):
        validate(make_cfg(f"ckpt_path={tmp_path / given}"))


def test_ckpt_path_best_is_refused_unless_a_checkpoint_file_is_named_best(make_cfg, tmp_path, monkeypatch):
    """'best' is Lightning's word for trainer.test's weights, but a file of that name is a checkpoint file."""
    with pytest.raises(ConfigError, match=r"^Config key 'ckpt_path' is 'best', Lightning's word"):
        validate(make_cfg("ckpt_path=best"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "best").write_bytes(b"weights")
    validate(make_cfg("ckpt_path=best"))


def test_default_config_and_experiments_are_valid(make_cfg):
    validate(make_cfg())
    validate(make_cfg("ckpt_path=auto"))


@pytest.mark.parametrize("no_validation", ["+trainer.limit_val_batches=0", "data.val_fraction=0",
                                           "trainer.check_val_every_n_epoch=30"])
@pytest.mark.parametrize("callbacks", [("~callbacks.model_checkpoint", "~callbacks.early_stopping"),
                                       ("callbacks.model_checkpoint.monitor=null", "callbacks.early_stopping=null")])
def test_no_validation_passes_where_no_callback_monitors_a_val_metric(make_cfg, no_validation, callbacks):
    validate(make_cfg(no_validation, *callbacks))  # optimized_metric stays val/acc: sweepers get None


def test_cli_stops_before_any_work_with_the_sentence_and_exit_code_2(tmp_path):
    result = run_cli("train.py", "model.optimizer.lr=-1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "Config error: Config key 'model.optimizer.lr' is -1, but it must be a number > 0." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_unknown_model_name_lists_the_available_ones(tmp_path):
    result = run_cli("train.py", "model=lenet6", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2  # Hydra's refusal of the command line is a user error too: one sentence
    assert result.stderr.startswith("Config error: Config group 'model' has no option 'lenet6' (did you mean "
                                    "'lenet5'?); choose one of forward_autoencoder, lenet5, lenet5_classic, ")
    assert result.stderr.count("\n") == 1


def test_a_split_the_dataset_does_not_have_is_named_before_any_work(make_cfg):
    cfg = make_cfg("data=svhn", "data.train_split=unlabeled")
    with pytest.raises(ConfigError, match=r"'data.train_split' is 'unlabeled', but SVHNDataModule has the splits "
                                          r"train, test, extra, train\+extra; choose one of them\."):
        validate(cfg)


def test_missing_dataset_files_stop_the_cli_with_one_sentence_and_exit_code_2(tmp_path):
    empty, run = tmp_path / "empty", tmp_path / "run"
    result = run_cli("train.py", "data=mnist", f"paths.data_dir={empty}", f"hydra.run.dir={run}")
    assert result.returncode == 2
    expected = f"Data error: MNISTDataModule: expected {empty / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'}"
    assert expected in result.stderr and "data.download=true" in result.stderr
    assert "Traceback" not in result.stderr
    said = expected.removeprefix("Data error: ")
    assert (result.stdout + result.stderr).count(said) == 1  # once on the console (it was a log line too)
    assert said in (run / "train.log").read_text() and "output directory" in (run / "train.log").read_text()


@pytest.mark.parametrize(("devices", "available", "message"), [
    (1, 0, "'trainer.accelerator' is 'gpu', but this machine has no usable GPU; run with trainer=cpu"),
    (4, 1, "'trainer.devices' is 4, but this machine has 1 usable GPU; give trainer.devices=1 or fewer"),
    (3, 2, "'trainer.devices' is 3, but this machine has 2 usable GPUs; give trainer.devices=2 or fewer"),
])
def test_more_gpus_than_the_machine_has_is_one_sentence(make_cfg, pretend_gpus, devices, available, message):
    pretend_gpus(available)
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg("trainer=gpu", f"trainer.devices={devices}"))


@pytest.mark.parametrize("devices", ["2", "1", "-1", "auto"])
def test_as_many_gpus_as_the_machine_has_or_fewer_pass(make_cfg, pretend_gpus, devices):
    pretend_gpus(2)
    validate(make_cfg("trainer=gpu", f"trainer.devices={devices}"))


@pytest.mark.parametrize(("metric", "mode"), [("val/acc", "max"), ("test/epoch_acc", "max"), ("val/loss", "min"),
                                              ("probe/test_mean_distance", "min"), ("val/reconstruction", "min"),
                                              (None, "max")])
def test_the_mode_follows_the_metric_s_name(make_cfg, metric, mode):
    from framework.metric_mode import metric_mode

    assert metric_mode(metric) == mode
    cfg = make_cfg(f"optimized_metric={metric or 'null'}")
    assert cfg.callbacks.model_checkpoint.mode == cfg.callbacks.early_stopping.mode == mode
    given = make_cfg(f"optimized_metric={metric or 'null'}", "optimized_mode=min")
    assert given.callbacks.model_checkpoint.mode == given.callbacks.early_stopping.mode == "min"
    own = make_cfg("optimized_metric=train/loss", "optimized_mode=max",  # early stopping: a monitor of its own
                   f"callbacks.early_stopping.monitor={metric or 'null'}")
    assert (own.callbacks.model_checkpoint.mode, own.callbacks.early_stopping.mode) == ("max", mode)


def test_a_study_on_cuda_without_a_gpu_is_refused(monkeypatch):
    import torch
    from omegaconf import OmegaConf

    from framework.validate import check_study_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'szegedy.device' is 'cuda', but this machine has no usable GPU"):
        check_study_device(OmegaConf.create({"szegedy": {"device": "cuda"}}))
    check_study_device(OmegaConf.create({"szegedy": {"device": "auto"}}))


class WideSzegedyNet(SzegedyNet):
    """A user's subclass of SzegedyNet: the rules about SzegedyNet's arguments apply to it too."""


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # SzegedyNet's hidden is a list of widths: an int is refused there, and in a subclass of it
        (("model=szegedy", "model.net.hidden=32"), True),
        (("model=szegedy", "model.net._target_=tests.test_validate.WideSzegedyNet", "model.net.hidden=32"), True),
        # a network of the user's own may take an int named hidden (torch.nn.Identity takes any argument)
        (("model.net._target_=torch.nn.Identity", "+model.net.hidden=32"), False),
        # a scoped rule still applies to the classes it names: the digits' image side
        (("data.image_size=0",), True),
    ],
)
def test_rules_about_one_class_leave_other_classes_arguments_alone(make_cfg, overrides, refused):
    cfg = make_cfg(*overrides)
    if refused:
        with pytest.raises(ConfigError, match=r"Config key '(model\.net\.hidden|data\.image_size)' is"):
            validate(cfg)
    else:
        validate(cfg)


class WarmupLR(torch.optim.lr_scheduler.LambdaLR):
    """A user's scheduler that reads its options from ``**options``, as many do that pass them on."""

    def __init__(self, optimizer, **options):
        super().__init__(optimizer, lambda epoch: min(1.0, (epoch + 1) / options.get("warmup_epochs", 1)))


def test_a_partial_target_that_takes_any_keyword_argument_is_given_keys_its_signature_does_not_name(make_cfg):
    """A ``_partial_`` node's keys must be arguments of its target (Adam refuses SGD's momentum), but a target with
    ``**kwargs`` takes any key: refusing one before the call would refuse a scheduler that works."""
    validate(make_cfg("model.scheduler={_target_:tests.test_validate.WarmupLR,_partial_:true,warmup_epochs:3}"))
    with pytest.raises(ConfigError, match=r"^Config key 'model\.scheduler\.warmup_epochs' is not an argument of "
                                          r"StepLR;"):
        validate(make_cfg("model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,"
                          "warmup_epochs:3}"))


@pytest.mark.parametrize("durations", [("+trainer.max_time=00:12:00:00", "+trainer.val_check_interval=0:0:30:0"),
                                       ("+trainer.max_time={hours:12,minutes:30}", "+trainer.val_check_interval=0.25"),
                                       ("+trainer.max_time={days:1}", "+trainer.val_check_interval=3")])
def test_durations_and_validation_intervals_lightning_reads_pass(make_cfg, durations):
    cfg = make_cfg(*durations)
    validate(cfg)
    given = OmegaConf.to_container(cfg.trainer)
    Trainer(max_time=given["max_time"], val_check_interval=given["val_check_interval"], logger=False,
            enable_checkpointing=False)  # Lightning reads them too

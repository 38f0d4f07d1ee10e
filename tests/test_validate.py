import re

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateFinder
from omegaconf import OmegaConf

from callbacks.hessian_estimation import HessianEstimation
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
        ("model.net._target_=lightning_modules.lenet5.LeNet6", "model.net._target_",
         "lightning_modules.lenet5 has no LeNet6 (the closest: LeNet5); fix its spelling."),
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


DIGITS_DATA = "datamodules.digits.DigitsDataModule"
FORWARD_MODEL = "lightning_modules.forward_autoencoder.ForwardAutoencoderModule"
SZEGEDY_NET = "lightning_modules.szegedy.SzegedyNet"
PERCEPTUAL_MODEL = "lightning_modules.perceptual_autoencoder.PerceptualAutoencoderModule"


def node(key: str, value, target: str | None = None) -> dict:
    """The config {a: {b: value}} for key a.b, with ``target`` as _target_ beside the key."""
    *parents, name = key.split(".")
    tree = {name: value, **({"_target_": target} if target else {})}
    for parent in reversed(parents):
        tree = {parent: tree}
    return tree


@pytest.mark.parametrize(
    ("key", "value", "target", "refused"),
    [
        ("model.optimizer.lr", float("inf"), None, True),  # a number, but no finite one
        ("model.optimizer.lr", 0, None, True),
        ("model.optimizer.weight_decay", 0, None, False),
        ("seed", True, None, True),  # a bool is no integer
        ("seed", 2**32 - 1, None, False),
        ("seed", 2**32, None, True),
        ("data.batch_size", 1, None, False),
        ("trainer.max_epochs", -1, None, False),  # Lightning's no epoch limit
        ("trainer.max_time", "00:1:00:00", None, True),  # Lightning's Timer wants two digits after the days
        ("trainer.max_time", {}, None, True),
        ("trainer.max_time", {"hours": "x"}, None, True),
        ("trainer.val_check_interval", 1.0, None, False),  # a whole epoch
        ("trainer.deterministic", "warn", None, False),
        ("task_name", ".hidden", None, True),
        ("tags", ["x" * 64], None, False),
        ("logger.wandb.project", "p" * 128, "lightning.pytorch.loggers.wandb.WandbLogger", False),
        ("logger.wandb.id", " ", "lightning.pytorch.loggers.wandb.WandbLogger", True),
        ("szegedy.device", "cuda:1", None, False),
        ("mi_sample_size.sizes", [20], None, False),
        ("data.test_fraction", 0, DIGITS_DATA, True),
        ("data.mean", [], DIGITS_DATA, True),
        ("model.lambdas", [], FORWARD_MODEL, True),
        ("callbacks.adversarial_training.refresh_fraction", 1, "callbacks.adversarial_training.AdversarialTraining",
         False),
        ("callbacks.batch_size.milestones", {0: 8}, "callbacks.batch_size.BatchSizeSchedule", True),
        ("model.scheduler.values", [], "lightning_modules.sdlm.PiecewiseConstantLR", True),
        ("model.net.dropout", 1.0, SZEGEDY_NET, True),
        ("model.input_size", 72, PERCEPTUAL_MODEL, True),
    ],
)
def test_each_rule_s_bound_is_where_its_sentence_says(key, value, target, refused):
    from framework.validate import check_rules

    cfg = OmegaConf.create(node(key, value, target))
    if refused:
        with pytest.raises(ConfigError, match=rf"^Config key '{re.escape(key)}' is .*, but it must be "):
            check_rules(cfg)
    else:
        check_rules(cfg)


def test_a_key_under_no_class_is_judged_by_no_class_s_rule():
    """model.net.hidden is SzegedyNet's list of widths; where no _target_ says whose argument it is, no rule applies."""
    from framework.validate import check_rules

    check_rules(OmegaConf.create({"model": {"net": {"hidden": 32}}}))


def test_a_target_inside_a_list_must_import_too(make_cfg):
    """torch, installed in the .venv inside the repository (`make setup`), was taken for a package of the framework's
    that hid the user's torch: the sentence said to rename it."""
    from framework.validate import hidden_module

    assert hidden_module("torch") is None and hidden_module("callbacks") is None
    cfg = make_cfg("+extra=[{_target_:torch.nn.Identity},{_target_:torch.nn.Nope}]")
    with pytest.raises(ConfigError, match=r"^Config key 'extra\[1\]\._target_' is 'torch\.nn\.Nope', but torch\.nn has "
                                          r"no Nope"):
        validate(cfg)


def test_accelerator_cuda_without_a_gpu_and_a_study_on_a_numbered_gpu_are_refused(pretend_gpus):
    from framework.validate import check_accelerator, check_study_device

    pretend_gpus(0)
    with pytest.raises(ConfigError, match=r"^Config key 'trainer\.accelerator' is 'cuda', but this machine has no "):
        check_accelerator(OmegaConf.create({"trainer": {"accelerator": "cuda"}}))
    with pytest.raises(ConfigError, match=r"^Config key 'szegedy\.device' is 'cuda:1', but this machine has no "):
        check_study_device(OmegaConf.create({"szegedy": {"device": "cuda:1"}}))


def test_validating_in_the_last_epoch_is_validating_once():
    from framework.validate import check_validation_monitor

    cfg = {"callbacks": {"model_checkpoint": {"monitor": "val/acc"}}, "optimized_metric": "val/acc",
           "trainer": {"max_epochs": 5, "check_val_every_n_epoch": 5}}
    check_validation_monitor(OmegaConf.create(cfg))
    cfg["trainer"]["max_epochs"] = 4
    with pytest.raises(ConfigError, match=r"'trainer\.check_val_every_n_epoch' is 5, more than trainer\.max_epochs "
                                          r"\(4\)"):
        check_validation_monitor(OmegaConf.create(cfg))


def test_the_test_split_is_checked_and_a_null_split_is_the_dataset_s_default():
    from framework.validate import check_data_splits

    svhn = {"_target_": "datamodules.svhn.SVHNDataModule", "train_split": None}
    check_data_splits(OmegaConf.create({"data": svhn}))
    with pytest.raises(ConfigError, match=r"^Config key 'data\.test_split' is 'unlabeled', but SVHNDataModule has the "
                                          r"splits train, test, extra, train\+extra; choose one of them\.$"):
        check_data_splits(OmegaConf.create({"data": {**svhn, "test_split": "unlabeled"}}))


def test_keys_that_two_classes_do_not_take_are_named_for_the_first_class_only():
    from framework.validate import arguments_not_taken_sentence

    assert arguments_not_taken_sentence([("model.optimizer.momentum", "Adam"), ("model.scheduler.step", "StepLR")]) \
        == ("Config key 'model.optimizer.momentum' is not an argument of Adam; remove it with "
            "~model.optimizer.momentum or fix its spelling.")


def test_a_logger_of_ones_own_named_like_lightnings_has_no_keywords_receiver():
    from framework.validate import keywords_receiver

    assert keywords_receiver("mymodule.WandbLogger") is None
    assert keywords_receiver("lightning.pytorch.loggers.TensorBoardLogger")[0] == "SummaryWriter"


def test_the_rules_of_a_class_apply_to_its_arguments_only():
    """check_arguments judges one class's call: another class's rule about an argument of the same name stays out."""
    from framework.validate import MI_LR, check_arguments

    check_arguments(MI_LR, {"patience": -5, "k": 3})  # patience: EarlyStopping's rule (>= 0), not the MI callback's
    with pytest.raises(ConfigError, match=r"^MutualInformationLR: k=0, but it must be an integer >= 1\.$"):
        check_arguments(MI_LR, {"k": 0, "layers": None})


def test_a_group_added_with_a_plus_is_named_as_chosen_on_the_command_line(make_cfg):
    """The sentence about an interpolation that the chosen option lacks names the option, typed with + or not."""
    from framework.validate import group_chosen_on_command_line

    make_cfg("+lr_policy=layerwise")
    assert group_chosen_on_command_line("lr_policy") == "lr_policy=layerwise"
    assert group_chosen_on_command_line("batch_schedule") is None


def test_a_default_root_dir_that_is_the_output_directory_written_otherwise_passes(tmp_path, monkeypatch):
    from framework.validate import check_default_root_dir

    monkeypatch.chdir(tmp_path)
    check_default_root_dir(OmegaConf.create({"trainer": {"default_root_dir": "run/"},
                                             "paths": {"output_dir": str(tmp_path / "run")}}))
    with pytest.raises(ConfigError, match=r"^Config key 'trainer\.default_root_dir' is 'elsewhere', but a run writes "):
        check_default_root_dir(OmegaConf.create({"trainer": {"default_root_dir": "elsewhere"},
                                                 "paths": {"output_dir": str(tmp_path / "run")}}))


def test_barebones_names_each_setting_it_needs_off():
    from framework.validate import check_barebones

    with pytest.raises(ConfigError, match=r"; add trainer\.enable_model_summary=false\.$"):
        check_barebones(OmegaConf.create({"trainer": {"barebones": True, "enable_model_summary": True}}))
    check_barebones(OmegaConf.create({"trainer": {"barebones": True, "enable_model_summary": False}}))


class FinderEachEpoch(LearningRateFinder):
    """A user's subclass of Lightning's LearningRateFinder."""


class HessianOfOnesOwn(HessianEstimation):
    """A user's subclass of the callback that estimates SDLM's Hessian diagonal."""


def test_subclasses_of_the_learning_rate_finder_and_the_hessian_estimation_are_judged_as_they_are():
    from framework.validate import check_no_learning_rate_finder_on_the_frameworks_modules, check_sdlm_has_its_hessian

    finder = {"model": {"_target_": "lightning_modules.classifier.ClassificationModule"},
              "callbacks": {"finder": {"_target_": "tests.test_validate.FinderEachEpoch"}}}
    with pytest.raises(ConfigError, match=r"^Config key 'callbacks\.finder\._target_' is 'tests\.test_validate\."
                                          r"FinderEachEpoch', which sets the model's learning rate"):
        check_no_learning_rate_finder_on_the_frameworks_modules(OmegaConf.create(finder))
    check_sdlm_has_its_hessian(OmegaConf.create({
        "model": {"optimizer": {"_target_": "lightning_modules.sdlm.SDLM"}},
        "callbacks": {"hessian": {"_target_": "tests.test_validate.HessianOfOnesOwn"}}}))


def test_a_searchpath_naming_the_built_in_conf_folder_shadows_nothing(make_cfg):
    from framework.compose import CONF
    from framework.validate import check_no_chosen_config_is_shadowed

    make_cfg(f"hydra.searchpath=[file://{CONF}]")
    check_no_chosen_config_is_shadowed()


def test_two_trainers_are_refused_one_model_in_a_list_is_one_model(make_cfg):
    from framework.validate import check_required_groups

    with pytest.raises(ConfigError, match=r"^Config group 'trainer' is given the options default, cpu, which Hydra "
                                          r"merges into one config, but a run has one trainer; choose one, or run "):
        check_required_groups(make_cfg("trainer=[default,cpu]"))
    check_required_groups(make_cfg("model=[lenet5]"))


def test_a_target_removed_on_the_command_line_is_not_blamed_on_the_option_s_file(make_cfg, tmp_path):
    """The options offered include one's own (hydra.searchpath), and the chosen file is not said to lack _target_."""
    from framework.validate import check_required_groups

    (tmp_path / "mine" / "model").mkdir(parents=True)
    mine = "_target_: lightning_modules.classifier.ClassificationModule\n"
    (tmp_path / "mine" / "model" / "mynet.yaml").write_text(mine)
    with pytest.raises(ConfigError, match=r"^Config group 'model' names no class \(_target_; removed with ~model\?\), "
                                          r"and every run needs one; choose one of .*lenet5_classic_sdlm, mynet, "
                                          r".* with model=<option>\.$"):
        check_required_groups(make_cfg("~model._target_", f"hydra.searchpath=[file://{tmp_path / 'mine'}]"))


def test_a_logger_whose_receiver_takes_any_keyword_is_given_any_key(monkeypatch):
    import framework.validate
    from framework.validate import check_logger_keywords

    logger = OmegaConf.create({"logger": {"tb": {"_target_": "lightning.pytorch.loggers.TensorBoardLogger",
                                                 "any_key": 1}}})
    with pytest.raises(ConfigError, match=r"^Config key 'logger\.tb\.any_key' is an argument of neither "):
        check_logger_keywords(logger)
    monkeypatch.setattr(framework.validate, "keywords_receiver", lambda target: ("writer", lambda **options: None))
    check_logger_keywords(logger)


@pytest.mark.parametrize(("target", "sentence"), [
    ("torch.optim.Adamw", "torch.optim has no Adamw (the closest: AdamW, adamw); fix its spelling."),
    ("torch.optimm.SGD", "torch has no optimm (the closest: optim, spmm); fix its spelling."),
    ("torch.optim.SGD.stepp", "torch.optim.SGD has no stepp (the closest: step); fix its spelling."),
    ("lightning_modules.lenet.LeNet5", "lightning_modules has no lenet (the closest: lenet5); fix its spelling."),
    ("datamodules.svhm.SVHNDataModule", "datamodules has no svhm (the closest: svhn); fix its spelling."),
])
def test_a_mistyped_name_in_a_target_is_named_with_the_closest_there(make_cfg, target, sentence):
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(f"model.optimizer._target_={target}"))
    assert str(error.value) == f"Config key 'model.optimizer._target_' is {target!r}, but {sentence}"


def test_a_target_whose_module_fails_inside_is_not_said_to_lack_its_name(tmp_path, monkeypatch, make_cfg):
    (tmp_path / "broken_by_its_import.py").write_text("import nope_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"is 'broken_by_its_import\.X', which cannot be imported"):
        validate(make_cfg("model.optimizer._target_=broken_by_its_import.X"))

"""The Szegedy et al. MNIST model zoo (lightning_modules/szegedy.py) and its data option (P1/P2 halves)."""

import math
import re
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.mnist import MNISTDataModule
from framework.combinations import shape_problems
from lightning_modules.szegedy import SzegedyModule, SzegedyNet
from tests.dataset_files import write_mnist


def test_weight_decay_is_lambda_over_units_times_sum_of_squared_weights():
    net = SzegedyNet(kind="fc", hidden=[7, 5], weight_decay=[0.3, 0.02, 1.5])
    expected = (0.3 / 7 * net.fc1.weight.pow(2).sum() + 0.02 / 5 * net.fc2.weight.pow(2).sum()
                + 1.5 / 10 * net.output.weight.pow(2).sum())
    torch.testing.assert_close(net.weight_penalty(), expected)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    scores = net(x)
    torch.testing.assert_close(net.loss(scores, y), torch.nn.functional.cross_entropy(scores, y) + expected)


@pytest.mark.parametrize(("kind", "hidden", "layers", "representation_sizes"), [
    ("softmax", [], ["output"], []),
    ("fc", [123, 456], ["fc1", "fc2", "output"], [123, 456]),
    ("ae", [400], ["encoder", "output"], [400]),
    ("conv", [100], ["conv", "fc1", "output"], [32 * 12 * 12, 100]),
])
def test_every_kind_maps_mnist_images_to_ten_scores(kind, hidden, layers, representation_sizes):
    net = SzegedyNet(kind=kind, hidden=hidden).eval()
    x = torch.rand(3, 1, 28, 28)
    assert net(x).shape == (3, 10) and net.layer_names == layers
    hidden_outputs = net.hidden_representations(x)
    assert [h.shape[1] for h in hidden_outputs] == representation_sizes
    # Scores from any hidden representation equal the full forward pass (what adversarial training relies on).
    for start, h in enumerate(hidden_outputs, 1):
        torch.testing.assert_close(net.forward_from(h, start), net(x))
    # What it says it takes (framework/combinations.py): MNIST images; flattened too, unless it convolves.
    assert net.input_shape == (1, 28, 28) and net.takes_vectors == (kind != "conv")
    if net.takes_vectors:
        torch.testing.assert_close(net(x.flatten(1)), net(x))
    fits = shape_problems(OmegaConf.create({}), (1, 28, 28), (784,), net.input_shape, net.takes_vectors)
    assert fits == ([] if net.takes_vectors else ["the model expects 1x28x28 images, the data gives vectors of 784 "
                                                  "(set data.flatten=false)"])


def test_wrong_weight_decay_length_names_the_key():
    with pytest.raises(ValueError, match="model.net.weight_decay"):
        SzegedyNet(kind="fc", hidden=[10, 10], weight_decay=[1e-5, 1e-5])


def test_p1_and_p2_are_disjoint_halves_and_train_size_takes_a_prefix(tmp_path, caplog):
    write_mnist(tmp_path, num_train=40, num_test=4)
    images = {}
    for part in ("P1", "P2", "full"):
        dm = MNISTDataModule(data_dir=str(tmp_path), train_part=part, part_seed=3)
        images[part] = {bytes(image.numpy()) for image in dm.load_split("train")[0]}
    assert len(images["P1"]) == len(images["P2"]) == 20 and not images["P1"] & images["P2"]
    assert images["P1"] | images["P2"] == images["full"]
    other_seed = {bytes(image.numpy()) for image in MNISTDataModule(
        data_dir=str(tmp_path), train_part="P1", part_seed=4).load_split("train")[0]}
    assert len(other_seed) == 20 and other_seed != images["P1"]  # another seed, other halves
    small = MNISTDataModule(data_dir=str(tmp_path), train_part="P2", part_seed=3, train_size=5).load_split("train")
    assert {bytes(image.numpy()) for image in small[0]} <= images["P2"] and len(small[0]) == 5
    first = {part: [bytes(image.numpy()) for image in MNISTDataModule(
        data_dir=str(tmp_path), train_part=part, part_seed=3, train_size=10).load_split("train")[0]]
        for part in ("full", "P1")}
    assert first["full"] != first["P1"]  # they were the same images: a full and a P1 run of one size, one model
    assert set(first["full"]) - images["P1"] and set(first["full"]) - images["P2"]  # a draw from all of them
    assert len(MNISTDataModule(data_dir=str(tmp_path), train_part="P1").load_split("test")[0]) == 4
    with caplog.at_level("WARNING", logger="datamodules.mnist"):
        whole = MNISTDataModule(data_dir=str(tmp_path), train_part="P1", part_seed=3, train_size=30).load_split("train")
    assert len(whole[0]) == 20 and "data.train_size is 30, but the P1 training part holds 20 images: all 20 are " \
        "used." in caplog.text


class Snapshots(L.Callback):
    def __init__(self):
        self.encoder, self.output = [], []

    def on_train_epoch_end(self, trainer, module):
        self.encoder.append(module.net.encoder.weight.detach().clone())
        self.output.append(module.net.output.weight.detach().clone())


def test_autoencoder_is_pretrained_then_frozen_while_the_softmax_trains(tmp_path):
    write_mnist(tmp_path, num_train=64, num_test=8)
    torch.manual_seed(0)
    net = SzegedyNet(kind="ae", hidden=[16])
    module = SzegedyModule(net=net, optimizer=partial(torch.optim.LBFGS, max_iter=5), pretrain_epochs=2,
                           param_groups="single")
    data = MNISTDataModule(data_dir=str(tmp_path), batch_size=64, val_fraction=0.25)
    snapshots, start = Snapshots(), net.encoder.weight.detach().clone()
    L.Trainer(max_epochs=4, callbacks=[snapshots], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, num_sanity_val_steps=0).fit(module, data)
    encoder, output = snapshots.encoder, snapshots.output
    assert not torch.equal(encoder[0], start) and not torch.equal(encoder[1], encoder[0])  # pre-training
    assert torch.equal(output[1], output[0])  # the softmax waits for its code
    assert torch.equal(encoder[3], encoder[1]) and torch.equal(encoder[2], encoder[1])  # then frozen
    assert not torch.equal(output[3], output[1])  # while the softmax trains


class StepLosses(L.Callback):
    """Each training step's returned loss and batch size, by epoch; and an ``extra_loss`` of 1, 2, 4, 1, ..."""

    def __init__(self):
        self.steps, self.extras = {}, iter([1.0, 2.0, 4.0] * 10)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps.setdefault(trainer.current_epoch, []).append((float(outputs["loss"]), len(batch[0])))

    def extra_loss(self, net):
        return None if net.encoder.weight.requires_grad else torch.tensor(next(self.extras))  # after pre-training


class Logged(L.pytorch.loggers.Logger):
    name, version = "logged", 0

    def __init__(self):
        super().__init__()
        self.metrics = []

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.metrics.append(dict(metrics))


def test_pretraining_and_extra_losses_are_logged_as_the_epochs_sample_weighted_means(tmp_path):
    """train/ae_loss (epochs of pre-training) and train/extra_loss (a callback's term, here 1, 2, 4 over the three
    batches of the next epoch) as the epoch's means, like train/loss; train/acc only in epochs that classify."""
    write_mnist(tmp_path, num_train=56, num_test=8)
    torch.manual_seed(0)
    module = SzegedyModule(net=SzegedyNet(kind="ae", hidden=[16]), optimizer=partial(torch.optim.SGD, lr=0.1),
                           pretrain_epochs=1)
    data = MNISTDataModule(data_dir=str(tmp_path), batch_size=16, val_fraction=0.25)  # 42 images: 16, 16, 10
    steps, logged = StepLosses(), Logged()
    L.Trainer(max_epochs=2, callbacks=[steps], logger=logged, log_every_n_steps=1, enable_checkpointing=False,
              enable_progress_bar=False, num_sanity_val_steps=0).fit(module, data)
    pretraining, classifying = ({key: value for row in logged.metrics if row.get("epoch") == epoch
                                 for key, value in row.items()} for epoch in (0, 1))
    assert [size for _, size in steps.steps[0]] == [16, 16, 10]
    expected = sum(loss * size for loss, size in steps.steps[0]) / 42
    assert pretraining["train/ae_loss"] == pytest.approx(expected, rel=1e-6)
    assert not {"train/loss", "train/acc", "train/extra_loss"} & set(pretraining)
    assert classifying["train/extra_loss"] == pytest.approx((1 * 16 + 2 * 16 + 4 * 10) / 42, rel=1e-6)
    assert {"train/loss", "train/acc"} <= set(classifying) and "train/ae_loss" not in classifying


@pytest.mark.parametrize(("max_epochs", "warned"), [(2, True), (3, False)])
def test_a_run_that_ends_before_the_pretraining_does_says_that_the_softmax_never_trained(tmp_path, caplog,
                                                                                       max_epochs, warned):
    """`experiment=szegedy_ae400 debug=limit` (2 epochs of its 10 of pre-training) reported the test accuracy of a
    softmax layer that had never trained, without a word."""
    write_mnist(tmp_path, num_train=64, num_test=8)
    module = SzegedyModule(net=SzegedyNet(kind="ae", hidden=[16]), optimizer=partial(torch.optim.SGD, lr=0.01),
                           pretrain_epochs=2, param_groups="single")
    data = MNISTDataModule(data_dir=str(tmp_path), batch_size=64, val_fraction=0.25)
    with caplog.at_level("WARNING"):
        L.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  num_sanity_val_steps=0, limit_train_batches=1, limit_val_batches=1).fit(module, data)
    assert ("trainer.max_epochs is 2, but model.pretrain_epochs is 2: every epoch pre-trains the autoencoder and the "
            "softmax layer never trains" in caplog.text) == warned


# The paper's models (Szegedy et al. 2014, Table 1, Table 3 and section 4.2; summary in
# ../shared/reference/forward-autoencoders-and-attacks.md): experiment -> (kind, hidden units, lambda per layer,
# training part). None: the paper does not give it (the AE's encoder lambda; Table 3's lambdas are not in the summary).
FC100 = ("fc", [100, 100], [1e-5, 1e-5, 1e-6], "full")
PAPER_ZOO = {
    "szegedy_mnist": FC100,  # the base every szegedy_* builds on
    "szegedy_softmax1": ("softmax", [], [1e-4], "full"),  # FC10(1e-4)
    "szegedy_softmax2": ("softmax", [], [1e-2], "full"),  # FC10(1e-2)
    "szegedy_softmax3": ("softmax", [], [1.0], "full"),  # FC10(1)
    "szegedy_fc100": FC100,  # FC100-100-10, sigmoid, lambda 1e-5, 1e-5, 1e-6
    "szegedy_fc200": ("fc", [200, 200], [1e-5, 1e-5, 1e-6], "full"),  # FC200-200-10, same lambdas
    "szegedy_ae400": ("ae", [400], [None, 1e-6], "full"),  # AE400-10: sparse AE, softmax with lambda 1e-6
    "szegedy_fc123": ("fc", [123, 456], None, "P1"),  # Table 3: FC123-456-10 trained on P1
    "szegedy_fc100_adam": FC100,  # section 4.2: 100-100-10 with weight decay
    "szegedy_fc100_adversarial": FC100,  # ... and with adversarial training
}
NOT_IN_THE_PAPER = {"szegedy_conv"}  # the paper has no MNIST convolutional net
EXPERIMENTS = {path.stem for path in (Path(__file__).parents[1] / "conf" / "experiment").glob("szegedy_*.yaml")}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS - NOT_IN_THE_PAPER))
def test_every_zoo_member_names_its_paper_model(make_cfg, experiment):
    assert experiment in PAPER_ZOO, "a new zoo member: add its paper model to PAPER_ZOO"
    kind, hidden, lambdas, part = PAPER_ZOO[experiment]
    cfg = make_cfg(f"experiment={experiment}")
    net = instantiate(cfg.model.net)
    assert net.kind == kind and [getattr(net, name).out_features for name in net.layer_names[:-1]] == hidden
    for name, expected in zip(net.layer_names, lambdas or [None] * len(net.layer_names), strict=True):
        assert expected is None or net.lambdas[name] == pytest.approx(expected), name
    assert cfg.data.train_part == part and (cfg.model.pretrain_epochs > 0) == (kind == "ae")  # AE: pre-trained
    assert cfg.data.mean == 0.0 and cfg.data.std == 1.0 and cfg.data.pad_to is None  # the attack's [0, 1] box


def test_the_sparse_autoencoder_loss_is_reconstruction_plus_beta_kl_of_each_units_mean_plus_weight_decay():
    import math

    torch.manual_seed(0)
    net = SzegedyNet(kind="ae", hidden=[3], image_size=4, weight_decay=[0.2, 0.0], sparsity=0.1,
                     sparsity_weight=2.0).double()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    rows = x.flatten(1).tolist()
    We, be, Wd, bd = (p.tolist() for p in (net.encoder.weight, net.encoder.bias, net.decoder.weight, net.decoder.bias))

    def unit(weights: list[float], bias: float, inputs: list[float]) -> float:
        return 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, inputs, strict=True)) - bias))

    codes = [[unit(We[j], be[j], row) for j in range(3)] for row in rows]
    error = sum((unit(Wd[i], bd[i], code) - row[i]) ** 2 for code, row in zip(codes, rows, strict=True)
                for i in range(16)) / 2 / len(rows)
    kl = 0.0
    for j in range(3):  # each unit's mean activation over the batch against rho
        mean = sum(code[j] for code in codes) / len(codes)
        kl += 0.1 * math.log(0.1 / mean) + 0.9 * math.log(0.9 / (1 - mean))
    decay = 0.2 / 3 * sum(w * w for row in We for w in row) + 0.2 / 16 * sum(w * w for row in Wd for w in row)
    assert net.autoencoder_loss(x).item() == pytest.approx(error + 2.0 * kl + decay, rel=1e-12)


@pytest.mark.parametrize(("kind", "upper"), [("fc", 1.0), ("conv", float("inf"))])
def test_an_adversarial_pool_row_is_the_attacks_where_it_succeeded_and_boxed_where_the_layer_is(monkeypatch, kind,
                                                                                               upper):
    """Images (layer 0) and the fc nets' sigmoid layers lie in [0, 1], the conv net's ReLU layer above 0 only; a row
    whose attack failed stays the clean representation."""
    import callbacks.adversarial_training as adversarial_training

    torch.manual_seed(0)
    net = SzegedyNet(kind=kind, hidden=[6], conv_channels=2)
    images, labels = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    uppers, quantized = [], []

    def attack(head, rows, *args, upper, **options):
        uppers.append(upper)
        quantized.append(options["quantized"])  # to the 256 levels of an image: the input's alone
        return rows + 0.5, None, torch.tensor([True, False, True])

    monkeypatch.setattr(adversarial_training, "attack_rows", attack)
    callback = adversarial_training.AdversarialTraining()
    callback.generator = torch.Generator().manual_seed(0)
    for layer in (0, 1):
        clean = callback.representation(net, images, layer)
        pool = callback.adversarial(net, images, labels, layer)
        torch.testing.assert_close(pool[[0, 2]], clean[[0, 2]] + 0.5, rtol=0, atol=0)
        torch.testing.assert_close(pool[1], clean[1], rtol=0, atol=0)
    assert uppers == [1.0, upper] and quantized == [True, False]


def test_adversarial_training_pools_fill_refresh_and_train_only_the_layers_above(tmp_path):
    from callbacks.adversarial_training import AdversarialTraining

    write_mnist(tmp_path, num_train=96, num_test=8)
    torch.manual_seed(0)
    net = SzegedyNet(kind="fc", hidden=[12, 12])
    module = SzegedyModule(net=net, optimizer=partial(torch.optim.Adam, lr=1e-2), param_groups="single")
    data = MNISTDataModule(data_dir=str(tmp_path), batch_size=16, val_fraction=0.25)
    refreshes = []  # (pools before, pools after) of every refresh that found its pools full

    class Recorded(AdversarialTraining):
        def snapshot(self):
            return {layer: (h.clone(), y.clone()) for layer, (h, y) in self.pools.items()}

        def on_train_batch_start(self, *args):
            before = self.snapshot()
            super().on_train_batch_start(*args)
            refresh = (self.steps - 1) % self.refresh_every == 0
            if refresh and before and all(len(h) == self.pool_size for h, _ in before.values()):
                refreshes.append((before, self.snapshot()))

    callback = Recorded(pool_size=20, refresh_every=2, mix=8, c_steps=3, max_iter=10)
    L.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, num_sanity_val_steps=0).fit(module, data)
    assert sorted(callback.pools) == [0, 1, 2]
    images, labels = callback.pools[0]
    assert images.shape == (20, 1, 28, 28) and labels.shape == (20,)
    assert images.min() >= 0 and images.max() <= 1
    assert callback.pools[2][0].shape == (20, 12)
    # Every refresh of a full pool replaces round(refresh_fraction * pool_size) = 2 rows and keeps the other 18.
    assert len(refreshes) == 3
    for before, after in refreshes:
        for layer, (h, y) in before.items():
            changed = (after[layer][0] != h).flatten(1).any(1)
            assert int(changed.sum()) == 2 and torch.equal(after[layer][1][~changed], y[~changed])
    # A hidden-layer pool example trains the layers above it and leaves the ones below untouched.
    net.zero_grad()
    callback.pools = {2: callback.pools[2]}
    callback.extra_loss(net).backward()
    assert net.fc1.weight.grad is None and net.fc2.weight.grad is None and net.output.weight.grad.abs().sum() > 0
    smaller = AdversarialTraining(pool_size=10, refresh_every=1, mix=4, c_steps=3, max_iter=10)  # than a batch
    L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[smaller], logger=False,
              enable_checkpointing=False, enable_progress_bar=False).fit(module, data)
    assert [(len(h), len(y)) for h, y in smaller.pools.values()] == [(10, 10)] * 3
    # each a copy of its rows alone, not a view of the batch (which checkpoints would save whole)
    assert all(h.untyped_storage().nbytes() == h.nbytes for h, _ in smaller.pools.values())


@pytest.mark.parametrize(("override", "key"), [("data.train_part=P3", "data.train_part"),
                                               ("model.net.kind=rnn", "model.net.kind"),
                                               ("data.train_size=0", "data.train_size")])
def test_bad_zoo_values_are_one_sentence_naming_the_key(make_cfg, override, key):
    from framework.validate import ConfigError, validate

    with pytest.raises(ConfigError, match=f"Config key '{key}'"):
        validate(make_cfg("experiment=szegedy_fc100", override))


def test_an_unknown_kind_is_one_sentence_from_the_constructor_too():
    """The model.net.kind rule (framework/validate.py) sees only a SzegedyNet at model.net; the constructor's own
    check names the key wherever the network is configured (a ConfigError, not a ValueError that is a bug)."""
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match="Config key 'model.net.kind' is 'rnn', but it must be one of softmax"):
        SzegedyNet(kind="rnn")


def test_adversarial_training_resumed_after_one_epoch_ends_with_the_uninterrupted_weights(make_cfg, tmp_path):
    """The callback's pools, refresh count and random draws are in the checkpoint."""
    from framework.training import train

    common = ["experiment=szegedy_fc100_adversarial", "debug=limit", "model.net.hidden=[16,16]", "data.batch_size=16",
              "callbacks.adversarial_training.pool_size=24", "callbacks.adversarial_training.refresh_every=2",
              "callbacks.adversarial_training.c_steps=2", "callbacks.adversarial_training.max_iter=5",
              "trainer.max_epochs=3", "logger=none", "callbacks.progress_bar.refresh_rate=0"]
    straight = train(make_cfg(*common, f"paths.output_dir={tmp_path / 'straight'}"))
    # one epoch is 3 steps, not a multiple of refresh_every: a refresh count lost on resume would shift the refreshes
    train(make_cfg(*common, "trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'resumed'}"))
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg(*common, f"ckpt_path={last}", f"paths.output_dir={tmp_path / 'resumed'}"))
    assert resumed["epochs_completed"] == straight["epochs_completed"] == 3

    def weights(run_dir):
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    expected, actual = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


@pytest.mark.parametrize(("world_size", "refused"), [(1, False), (2, True)])
def test_lbfgs_under_ddp_is_one_sentence_instead_of_a_hang(world_size, refused):
    """Each rank's L-BFGS line search evaluates the loss as often as its own data asks, so the ranks' gradient
    all-reduces stop matching and DDP waits forever (trainer=ddp_sim model=szegedy hung in its first step)."""
    from types import SimpleNamespace

    from framework.errors import ConfigError

    module = SzegedyModule(net=SzegedyNet("softmax", []), optimizer=partial(torch.optim.LBFGS, max_iter=5))
    module._trainer = SimpleNamespace(world_size=world_size)
    if refused:
        with pytest.raises(ConfigError, match=r"LBFGS, whose line search .* the 2 DDP processes would wait"):
            module.configure_optimizers()
    else:
        assert isinstance(module.configure_optimizers(), torch.optim.LBFGS)


def test_lbfgs_on_mini_batches_is_said_and_on_the_whole_set_is_not(make_cfg, tmp_path, caplog):
    """The zoo's L-BFGS is a full-batch method (docs/attacks.md); on mini-batches it runs, with a warning."""
    from framework.training import train

    common = ["experiment=szegedy_softmax1", "trainer.max_epochs=1", "model.optimizer.max_iter=2", "logger=none",
              "callbacks.progress_bar.refresh_rate=0"]
    with caplog.at_level("WARNING", logger="lightning_modules.classifier"):
        train(make_cfg(*common, f"paths.output_dir={tmp_path / 'whole'}"))
        assert "full-batch method" not in caplog.text
        train(make_cfg(*common, "data.batch_size=16", f"paths.output_dir={tmp_path / 'mini'}"))
    assert re.search(r"model.optimizer is torch.optim.LBFGS, a full-batch method, but data.batch_size=16 splits the "
                     r"\d+ training images into \d+ batches, so each step sees another batch; give data.batch_size >= "
                     r"\d+ for full-batch L-BFGS.", caplog.text)


def test_adversarial_training_states_loaded_before_setup_go_on_with_the_checkpoint_s_draws():
    """A DDP launcher (ddp_sim) gives its workers' states to the callbacks of its own process, where no setup ran:
    the generator made in setup takes the checkpoint's state."""
    from callbacks.adversarial_training import AdversarialTraining

    trained = AdversarialTraining(seed=1)
    trained.setup(None, None, "fit")
    torch.rand(5, generator=trained.generator)
    state = trained.state_dict()
    for loaded_before_setup in (True, False):
        continued = AdversarialTraining(seed=1)
        if not loaded_before_setup:
            continued.setup(None, None, "fit")
        continued.load_state_dict(state)
        if loaded_before_setup:
            continued.setup(None, None, "fit")
        assert torch.equal(torch.rand(3, generator=continued.generator), torch.rand(3, generator=trained.generator))
        trained.generator.set_state(state["generator"])


@pytest.mark.parametrize(("layers", "refused"), [([0, 2], False), ([3], True), ([-1], True), ([1.0], True)])
def test_adversarial_training_layers_are_the_input_and_the_layer_outputs(layers, refused):
    from callbacks.adversarial_training import AdversarialTraining
    from framework.errors import ConfigError

    trainer = SimpleNamespace(optimizers=[torch.optim.SGD([torch.zeros(1)], lr=0.1)])
    module = SimpleNamespace(net=SzegedyNet(kind="fc", hidden=[4, 4]))  # fc1, fc2, output: layers 0..2
    if not refused:
        AdversarialTraining(layers=layers).on_fit_start(trainer, module)
        return
    with pytest.raises(ConfigError, match=re.escape(
            f"'callbacks.adversarial_training.layers' is {layers}, but the network's layers are 0..2 (0: examples of "
            f"the input, k: of the output of layer k, fc1, fc2)")):
        AdversarialTraining(layers=layers).on_fit_start(trainer, module)


def test_a_full_pools_refresh_replaces_random_rows_by_new_examples_with_their_labels(monkeypatch):
    from callbacks.adversarial_training import AdversarialTraining

    callback = AdversarialTraining(pool_size=6, refresh_every=1, refresh_fraction=0.5, layers=[0], seed=0)
    callback.setup(None, None, "fit")
    monkeypatch.setattr(callback, "adversarial", lambda net, images, labels, layer: images)  # labels: the values
    module = SimpleNamespace(net=torch.nn.Identity())

    def step(*values):
        before = callback.pools[0][0].clone() if callback.pools else None
        callback.on_train_batch_start(None, module, (torch.tensor(values, dtype=torch.float), torch.tensor(values)),
                                      0)
        pool, labels = callback.pools[0]
        assert torch.equal(pool.long(), labels)
        return before, pool

    step(0, 1, 2, 3)
    assert step(10, 11, 12, 13)[1].tolist() == [0, 1, 2, 3, 10, 11]  # filled up to its size
    draws = torch.Generator().manual_seed(0)
    before, after = step(20, 21, 22, 23)  # round(0.5 * 6) = 3 rows
    slots = torch.randperm(6, generator=draws)[:3]
    assert (after != before).nonzero().flatten().tolist() == sorted(slots.tolist())
    assert after[slots].tolist() == [20, 21, 22]
    before, after = step(30, 31)  # a batch smaller than the rows to replace: all of it
    assert sorted(after[after != before].tolist()) == [30, 31]
    callback.refresh_fraction = 0.01  # rounds to no row: at least one
    before, after = step(40, 41)
    assert after[after != before].tolist() == [40]


def test_the_pools_loss_is_weighted_mean_cross_entropy_of_at_most_mix_examples_per_layer():
    from callbacks.adversarial_training import AdversarialTraining

    picked = []

    class Uniform:  # equal scores: a cross-entropy of log(10) whatever the examples
        def forward_from(self, points, layer):
            picked.append((layer, len(points)))
            return torch.zeros(len(points), 10, requires_grad=True)

    callback = AdversarialTraining(mix=4, weight=0.5)
    callback.generator = torch.Generator().manual_seed(0)
    assert callback.extra_loss(Uniform()) is None  # no pools yet: no term
    callback.pools = {0: (torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])),
                      2: (torch.rand(9, 12), torch.arange(9))}
    assert callback.extra_loss(Uniform()).item() == pytest.approx(0.5 * math.log(10))
    assert picked == [(0, 3), (2, 4)]

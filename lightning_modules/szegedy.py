"""The MNIST model zoo of Szegedy et al. (2014), "Intriguing properties of neural networks", as one family.

``SzegedyNet(kind=...)`` builds every architecture of the paper's Table 1 from its config:

* ``softmax``: one linear layer on the 784 pixels (softmax1..3 differ only in ``weight_decay``);
* ``fc``: sigmoid hidden layers (``hidden: [100, 100]`` -> FC100-100-10) and a linear output;
* ``ae``: a sigmoid sparse autoencoder's encoder (``hidden: [400]``), pre-trained for
  ``SzegedyModule.pretrain_epochs`` epochs, then frozen, with a linear output on its code (AE400-10);
* ``conv``: convolution -> ReLU -> max-pool -> fully connected -> ReLU -> dropout -> linear output.

Inputs are MNIST pixels in [0, 1] (``data.mean=0 data.std=1``: the attack's box). The loss is cross-entropy
plus the paper's quadratic weight decay, ``lambda_l / k_l * sum W_l^2`` per layer l with k_l its number of
units (output features / channels); ``weight_decay`` is one lambda or one per layer of ``layer_names``.

Usage::

    net = SzegedyNet(kind="fc", hidden=[100, 100], weight_decay=[1e-5, 1e-5, 1e-6])
    module = SzegedyModule(net=net, optimizer=functools.partial(torch.optim.LBFGS, max_iter=50))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from framework.errors import ConfigError
from lightning_modules.classifier import ClassificationModule

log = logging.getLogger(__name__)

KINDS = ("softmax", "fc", "ae", "conv")


class SzegedyNet(nn.Module):
    def __init__(
        self,
        kind: str = "fc",
        hidden: Sequence[int] = (100, 100),
        weight_decay: float | Sequence[float] = 1e-5,
        dropout: float = 0.0,
        conv_channels: int = 32,
        conv_kernel: int = 5,
        pool: int = 2,
        image_size: int = 28,
        num_classes: int = 10,
        sparsity: float = 0.05,  # the sparse autoencoder's target mean activation rho
        sparsity_weight: float = 3.0,  # beta, the weight of KL(rho || mean activation)
    ):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"Config key 'model.net.kind' is {kind!r}, but it must be one of {', '.join(KINDS)}.")
        hidden = list(hidden)
        if kind == "softmax" and hidden:
            raise ConfigError(f"Config key 'model.net.hidden' is {hidden}, but kind 'softmax' has no hidden layer; "
                              f"give model.net.hidden=[] (or kind fc for hidden layers).")
        if kind == "ae" and len(hidden) != 1:
            raise ConfigError(f"Config key 'model.net.hidden' is {hidden}, but kind 'ae' has one layer, e.g. [400].")
        self.kind, self.dropout = kind, dropout
        self.input_shape = (1, image_size, image_size)  # one image [C, H, W] (framework/combinations.py)
        self.takes_vectors = kind != "conv"  # its first layer flattens: vectors of H x W values work too
        self.sparsity, self.sparsity_weight = sparsity, sparsity_weight
        width = image_size * image_size
        names = []
        if kind == "conv":
            self.conv = nn.Conv2d(1, conv_channels, conv_kernel)
            self.pool = nn.MaxPool2d(pool)
            names.append("conv")
            width = conv_channels * ((image_size - conv_kernel + 1) // pool) ** 2
        for index, units in enumerate(hidden):
            name = "encoder" if kind == "ae" else f"fc{index + 1}"
            setattr(self, name, nn.Linear(width, units))
            names.append(name)
            width = units
        self.output = nn.Linear(width, num_classes)
        names.append("output")
        if kind == "ae":
            self.decoder = nn.Linear(hidden[0], image_size * image_size)  # used only while pre-training
        self.layer_names: list[str] = names
        lambdas = [float(weight_decay)] * len(names) if isinstance(weight_decay, int | float) else list(weight_decay)
        if len(lambdas) != len(names):
            raise ConfigError(f"Config key 'model.net.weight_decay' has {len(lambdas)} values, but the network has "
                              f"{len(names)} layers ({', '.join(names)}); give one value or one per layer.")
        self.lambdas = dict(zip(names, lambdas, strict=True))

    def block(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """Layer ``name`` and its non-linearity: the representation after it."""
        layer = getattr(self, name)
        if name == "conv":
            return self.pool(F.relu(layer(h))).flatten(1)
        if name == "output":
            return layer(h.flatten(1))
        h = layer(h.flatten(1))
        h = F.relu(h) if self.kind == "conv" else torch.sigmoid(h)
        return F.dropout(h, self.dropout, self.training) if self.dropout > 0 else h

    def forward_from(self, h: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Scores from the representation entering layer ``layer_names[start]`` (0: the image)."""
        for name in self.layer_names[start:]:
            h = self.block(name, h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x)

    def hidden_representations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every layer before ``output`` (what Figures 1-2 and adversarial training look at)."""
        h, outputs = x, []
        for name in self.layer_names[:-1]:
            h = self.block(name, h)
            outputs.append(h)
        return outputs

    def weight_penalty(self, names: Sequence[str] | None = None) -> torch.Tensor:
        """The paper's quadratic weight decay: sum over layers of lambda / k * sum W^2, k = the layer's units."""
        total = self.output.weight.new_zeros(())
        for name in names if names is not None else self.layer_names:
            weight = getattr(self, name).weight
            lam = self.lambdas.get(name, self.lambdas.get("encoder", 0.0))  # the decoder shares the encoder's
            total = total + lam / weight.shape[0] * weight.pow(2).sum()
        return total

    def loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores, targets) + self.weight_penalty()

    def autoencoder_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse autoencoder: squared reconstruction error + beta KL(rho || mean code) + weight decay."""
        x = x.flatten(1)
        code = torch.sigmoid(self.encoder(x))
        reconstruction = torch.sigmoid(self.decoder(code))
        rho, rho_hat = self.sparsity, code.mean(0).clamp(1e-6, 1 - 1e-6)
        kl = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
        error = 0.5 * (reconstruction - x).pow(2).sum(1).mean()
        return error + self.sparsity_weight * kl + self.weight_penalty(["encoder", "decoder"])


class SzegedyModule(ClassificationModule):
    """ClassificationModule plus the AE400-10 schedule: ``pretrain_epochs`` epochs of sparse-autoencoder
    training, then the encoder (and decoder) frozen and only the softmax layer trained (not fine-tuned).

    With L-BFGS (``model/optimizer=lbfgs``) and ``data.batch_size`` >= the training set, one epoch is one
    full-batch ``LBFGS.step`` of up to ``max_iter`` iterations (Lightning passes the closure)."""

    progress_bar_names = ("loss", "ae_loss")

    def __init__(self, net: SzegedyNet, optimizer, pretrain_epochs: int = 0, **kwargs):
        super().__init__(net=net, optimizer=optimizer, **kwargs)
        if pretrain_epochs and net.kind != "ae":
            raise ConfigError(f"Config key 'model.pretrain_epochs' is {pretrain_epochs}, but only kind 'ae' has an "
                             f"autoencoder to pre-train; set it to 0.")
        self.pretrain_epochs = pretrain_epochs

    def pretraining(self) -> bool:
        return self.current_epoch < self.pretrain_epochs

    def on_fit_start(self) -> None:
        epochs = self.trainer.max_epochs
        if self.pretrain_epochs and epochs is not None and 0 <= epochs <= self.pretrain_epochs:
            log.warning(f"trainer.max_epochs is {epochs}, but model.pretrain_epochs is {self.pretrain_epochs}: every "
                        f"epoch pre-trains the autoencoder and the softmax layer never trains, so the val/ and test/ "
                        f"metrics are those of its initial weights; give trainer.max_epochs above "
                        f"{self.pretrain_epochs}, or a smaller model.pretrain_epochs.")

    def on_train_epoch_start(self) -> None:
        if self.pretrain_epochs and not self.pretraining():
            self.net.encoder.requires_grad_(False)
            self.net.decoder.requires_grad_(False)
            if self.current_epoch == self.pretrain_epochs:  # a new problem: drop L-BFGS history / Adam moments
                for optimizer in self.trainer.optimizers:
                    optimizer.state.clear()

    def training_step(self, batch, batch_idx):
        if self.pretraining():
            loss = self.net.autoencoder_loss(batch[0])
            self.add_to_epoch_means("train", {"ae_loss": loss}, len(batch[0]))  # logged as train/ae_loss
            return loss
        loss = super().training_step(batch, batch_idx)
        for callback in self.trainer.callbacks:  # e.g. callbacks/adversarial_training.py: its pool's loss
            extra = callback.extra_loss(self.net) if hasattr(callback, "extra_loss") else None
            if extra is not None:
                self.add_to_epoch_means("train", {"extra_loss": extra}, len(batch[0]))
                loss = loss + extra
        return loss

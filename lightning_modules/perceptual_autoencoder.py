"""Feature-prediction autoencoders (seed 003): six procedures, one LightningModule.

A procedure is three choices: what the encoder reads (the image, or the loss network's features of it),
what the decoder produces (an image, or features) and the loss:

    I-I-PW  image -> image,    pixel-wise          mse(D(z), x)
    I-I-PS  image -> image,    perceptual sim.     mse(L(D(z)), L(x))
    F-I-PW  features -> image, pixel-wise
    F-I-PS  features -> image, perceptual sim.
    I-F-FP  image -> features, feature prediction  mse(D(z), L(x))
    F-F-FP  features -> features, feature prediction

L is AlexNet's ``features[:5]`` (conv, ReLU, max-pool, conv, ReLU) + sigmoid, flattened, frozen, in eval mode,
on raw [0, 1] RGB. The image encoder/decoder are the authors' four-layer convolutional (V)AE for sides 64 + 16N;
the feature encoder/decoder their one-hidden-layer MLPs. Variational iff ``gamma != 0`` (loss + gamma * KLD);
the training and validation losses then decode a sample of z, as the authors'; the test loss and the
embedding use mu.

    model = PerceptualAutoencoderModule("I-F-FP", latent_dim=128, optimizer=functools.partial(torch.optim.Adam))

The default optimizer is the authors' Adam (lr 1e-3) in torch's fused implementation: the same update
(equal to the for-loop Adam to float rounding, tested), but one kernel over all parameters instead of a
dozen tensor operations per parameter, which matters here: the feature MLPs hold 20-40M parameters, and
the for-loop Adam's step took 40-60% of an FP procedure's epoch at batch 64 on a CPU
(benchmarks/feature_prediction.py; fused: 11-20%).
"""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from framework.errors import ConfigError
from framework.pretrained import alexnet_features
from lightning_modules.perceptual_procedures import PROCEDURES, needs_loss_network
from lightning_modules.stage_steps import StageSteps

LOSS_NETWORK_LAYERS = 5  # alexnet().features[:5]
FEATURE_HIDDEN_MAX = 2048  # hidden = min(F // 2, 2048)


def side_allowed(side) -> bool:
    return isinstance(side, int) and side >= 64 and (side - 64) % 16 == 0


def check_config(procedure: str, latent_dim, gamma, input_size) -> None:
    """One sentence per bad value (before any work)."""
    if procedure not in PROCEDURES:
        raise ConfigError(f"Config key 'model.procedure' is {procedure!r}, but it must be one of "
                          f"{', '.join(PROCEDURES)}.")
    if not (isinstance(latent_dim, int) and latent_dim >= 1):
        raise ConfigError(f"Config key 'model.latent_dim' is {latent_dim!r}, but it must be an integer >= 1.")
    if not (isinstance(gamma, int | float) and gamma >= 0):
        raise ConfigError(f"Config key 'model.gamma' is {gamma!r}, but it must be a number >= 0 (0: not variational).")
    if not side_allowed(input_size):
        raise ConfigError(f"Config key 'model.input_size' is {input_size!r}, but the four-layer (V)AE takes square "
                          f"images of side 64 + 16N (64, 80, 96, ...); pad or resize the data (SVHN: data.pad_to=64).")


def features_from_checkpoint(path: Path) -> nn.Sequential:
    """AlexNet's ``features[:5]`` (its convolutions 0 and 3) from a torch file: torchvision's AlexNet state dict
    (``features.<i>.*``), its ``features`` alone (``<i>.*``: framework/pretrained.py's converted file), or a checkpoint
    of this framework (a perceptual run's ``loss_network.features.<i>.*``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not torch's format, or objects weights_only refuses
        raise ConfigError(f"Config key 'model.loss_network.weights' is {str(path)!r}, which torch.load cannot read "
                          f"as weights ({type(error).__name__}); give 'imagenet', 'random' or a checkpoint file that "
                          f"torch.save wrote.") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    found = {key.split("features.", 1)[1]: value for key, value in state.items() if "features." in key} or state
    features = alexnet_features("random")[:LOSS_NETWORK_LAYERS]
    try:
        features.load_state_dict({key: found[key] for key in features.state_dict()})
    except (KeyError, RuntimeError):
        raise ConfigError(f"Config key 'model.loss_network.weights' is {str(path)!r}, but that file holds no "
                          f"AlexNet convolutions 0 and 3 (features.0: conv 3->64 k11, features.3: 64->192 k5); give "
                          f"'imagenet', 'random' or a file that holds them (torchvision's AlexNet state dict, its "
                          f"features, or a perceptual run's checkpoint).") from None
    return features


class LossNetwork(nn.Module):
    """AlexNet ``features[:5]`` + sigmoid, flattened; frozen and always in eval mode."""

    def __init__(self, weights: str = "imagenet"):
        super().__init__()
        features = alexnet_features(weights) if weights in ("imagenet", "random") else features_from_checkpoint(
            Path(weights))
        self.features = features[:LOSS_NETWORK_LAYERS].requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.features(images)).flatten(1)


def conv_side(side: int) -> int:
    for _ in range(4):
        side = (side - 4) // 2 + 1  # Conv2d k4 s2 p0
    return side


def image_encoder(side: int) -> tuple[nn.Module, int]:
    layers, channels = [], (3, 32, 64, 128, 256)
    for c_in, c_out in zip(channels, channels[1:], strict=False):
        layers += [nn.Conv2d(c_in, c_out, 4, 2), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten()), 256 * conv_side(side) ** 2


def image_decoder(latent_dim: int, side: int) -> nn.Module:
    grid = (side - 64) // 16 + 1  # 1 -> 5 -> 13 -> 30 -> 64 for 64; 3 -> 9 -> 21 -> 46 -> 96 for 96
    layers = [nn.Linear(latent_dim, 1024 * grid * grid), nn.ReLU(), nn.Unflatten(1, (1024, grid, grid))]
    for c_in, c_out, kernel in ((1024, 128, 5), (128, 64, 5), (64, 32, 6)):
        layers += [nn.ConvTranspose2d(c_in, c_out, kernel, 2), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.ConvTranspose2d(32, 3, 6, 2), nn.Sigmoid())


def feature_encoder(feature_size: int, hidden: int) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Linear(feature_size, hidden), nn.ReLU()), hidden


def feature_decoder(latent_dim: int, feature_size: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_size))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The authors' KLD: -mean(1 + logvar - mu^2 - exp(logvar))."""
    return -torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


class PerceptualAutoencoderModule(StageSteps, L.LightningModule):
    """One (V)AE of the six procedures; ``forward`` returns the embedding mu."""

    takes_gray = True  # a one-channel image is repeated into the three RGB channels (``rgb``)

    def __init__(self, procedure: str = "I-F-FP", latent_dim: int = 128, gamma: float = 0.0, input_size: int = 64,
                 loss_network: dict | None = None, feature_hidden_max: int = FEATURE_HIDDEN_MAX, optimizer=None):
        super().__init__()
        check_config(procedure, latent_dim, gamma, input_size)
        self.input_shape = (3, input_size, input_size)  # one image [C, H, W] (framework/combinations.py)
        loss_network = dict(loss_network or {})  # plain values in the checkpoint (safe to load)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.optimizer_factory = optimizer or functools.partial(torch.optim.Adam, lr=1e-3, fused=True)
        self.encoder_input, self.decoder_output, self.loss_kind = PROCEDURES[procedure]
        self.gamma, self.variational = float(gamma), gamma != 0
        weights = loss_network.get("weights", "imagenet")
        uses_loss_network = needs_loss_network(procedure)
        self.loss_network_weights = str(weights) if uses_loss_network else None  # marks results
        self.loss_network = LossNetwork(weights) if uses_loss_network else None
        self.feature_size = self.loss_network_feature_size(input_size, loss_network.get("feature_size"))

        hidden = min(self.feature_size // 2, feature_hidden_max) if self.feature_size else None  # the authors' MLPs
        if self.encoder_input == "image":
            self.encoder, flat = image_encoder(input_size)
        else:
            self.encoder, flat = feature_encoder(self.feature_size, hidden)
        self.mu = nn.Linear(flat, latent_dim)
        # Built for gamma = 0 too, as the authors' (their sizes count it); frozen then, so DDP sees no unused grads.
        self.logvar = nn.Linear(flat, latent_dim).requires_grad_(self.variational)
        self.decoder = (image_decoder(latent_dim, input_size) if self.decoder_output == "image"
                        else feature_decoder(latent_dim, self.feature_size, hidden))
        self.epoch_seconds: list[float] = []  # each training epoch's seconds, in this process

    def loss_network_feature_size(self, side: int, configured: int | None) -> int | None:
        """The loss network's feature count at this side; a configured ``feature_size`` must match it."""
        if self.loss_network is None:
            return None
        with torch.no_grad():
            device = next(self.loss_network.parameters()).device
            size = self.loss_network(torch.zeros(1, 3, side, side, device=device)).shape[1]
        if configured is not None and configured != size:
            raise ConfigError(f"Config key 'model.loss_network.feature_size' is {configured!r}, but the loss network "
                              f"gives {size} features for {side}x{side} inputs; set it to {size} or null.")
        return size

    def autoencoder_parameters(self) -> int:
        """What the authors count: everything but the loss network."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.startswith("loss_network."))

    @staticmethod
    def rgb(images: torch.Tensor) -> torch.Tensor:
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def encode(self, images: torch.Tensor, features: torch.Tensor | None = None):
        source = images if self.encoder_input == "image" else features
        hidden = self.encoder(source)
        return self.mu(hidden), (self.logvar(hidden) if self.variational else None)

    def input_features(self, images: torch.Tensor) -> torch.Tensor | None:
        """L(x) once per batch, when the encoder reads it or the loss compares with it."""
        if self.loss_network is None:
            return None
        with torch.no_grad():
            return self.loss_network(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = self.rgb(images)
        features = self.input_features(images) if self.encoder_input == "features" else None
        return self.encode(images, features)[0]

    def losses(self, images: torch.Tensor, sample: bool = False) -> dict[str, torch.Tensor]:
        """The loss of a batch; ``sample``: decode z ~ N(mu, exp(logvar)) (variational only), else mu."""
        images = self.rgb(images)
        features = self.input_features(images)
        mu, logvar = self.encode(images, features)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.variational and sample else mu
        output = self.decoder(z)
        if self.loss_kind == "pixel":
            reconstruction = F.mse_loss(output, images)
        elif self.loss_kind == "perceptual":
            reconstruction = F.mse_loss(self.loss_network(output), features)
        else:
            reconstruction = F.mse_loss(output, features)
        kld = kl_divergence(mu, logvar) if self.variational else torch.zeros((), device=mu.device)
        return {"loss": reconstruction + self.gamma * kld, "reconstruction": reconstruction, "kld": kld}

    def _step(self, batch, stage: str) -> torch.Tensor:
        # The authors' VAE samples z in training and validation alike (val/loss picks the checkpoint); the test
        # loss, like the embeddings (forward), uses mu.
        losses = self.losses(batch[0], sample=stage in ("train", "val"))
        self.add_to_epoch_means(stage, losses, len(batch[0]))
        return losses["loss"]

    def on_fit_start(self) -> None:
        """Lightning warns, as training starts, of modules in eval mode. The loss network's are, on purpose (its
        layers compute alike in either mode): only a count beyond theirs is warned of."""
        if self.loss_network is not None:
            frozen = len(list(self.loss_network.modules()))
            warnings.filterwarnings("ignore", message=rf"Found {frozen} module\(s\) in eval mode at the start")

    def on_train_epoch_start(self) -> None:
        self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        """The paper's x axis, training time per epoch: this epoch's and the mean over the epochs this process
        trained (results.json keeps the last epoch's values, so ``train/epoch_seconds_mean`` is the run's mean;
        a resumed run's covers the epochs since resuming). Lightning calls this after the epoch's validation and
        checkpoints, so they are in it."""
        super().on_train_epoch_end()
        seconds = time.perf_counter() - self.epoch_started
        self.epoch_seconds.append(seconds)
        self.log("train/epoch_seconds", seconds)
        self.log("train/epoch_seconds_mean", sum(self.epoch_seconds) / len(self.epoch_seconds))

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])

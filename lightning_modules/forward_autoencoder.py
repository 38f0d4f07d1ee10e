"""One forward-trained autoencoder + softmax classifier (REAN, PIAN, RAN, ROAN), run through the framework.

    python train.py experiment=reae_digits                      # REAE on the bundled digits, 8x8
    python train.py experiment=reae_mnist model.feature_map=pian
    python train.py experiment=reae_digits model.rho=[0.1,0.2,0.4] model.hidden_size=350

There is no gradient training of the network: in the single training epoch the module collects the
training batches (Lightning has already turned them into float images), and after the last one it
solves everything in closed form or full-batch (analysis/forward_autoencoder.py):

    for rho in rhos (REAE only):          feature map Wp, bp  ->  H  ->  one eigendecomposition
        for lambda in lambdas:            tied encoder We = Wd^T  ->  features g(X We^T)
            for tau in taus (descending): classifier (warm-started)  ->  accuracy on the validation split

and keeps the candidate with the best validation accuracy. The solved encoder and classifier are
buffers, so checkpoints hold them and `trainer.test(ckpt_path=best)` reproduces the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics

from analysis.forward_autoencoder import (
    ACTIVATIONS,
    CLASSIFIERS,
    LAMBDA_GRID,
    DecoderPath,
    accuracy,
    encode,
    feature_map,
    hidden,
)
from framework.errors import ConfigError

SOLVED_BUFFERS = ("feature_map_weight", "feature_map_bias", "encoder_weight", "classifier_weight", "classifier_bias")


def as_list(value) -> list[float]:
    return [float(v) for v in value] if isinstance(value, Sequence) and not isinstance(value, str) else [float(value)]


class ForwardAutoencoderModule(L.LightningModule):
    """Args:
        feature_map: reae | pian | ran | roan.
        hidden_size: J, hidden nodes of the autoencoder.
        rho: REAE's target mean activation, or a list chosen on the validation split (ignored by the others).
        lambdas, taus: decoder ridge and classifier L2 grids, chosen jointly on the validation split.
        activation: encoder nonlinearity, sigmoid (default) or linear.
        classifier: softmax (multinomial logistic regression, L-BFGS) or ridge.
        kl_steps, kl_lr, kl_batch_size: REAE's gradient descent on the KL constraint.
        max_iter: L-BFGS iterations of the softmax classifier.
    """

    task = "classification"  # takes images of any shape: they are flattened

    def __init__(self, feature_map: str = "reae", hidden_size: int = 750, rho: float | Sequence[float] = 0.2,
                 lambdas: Sequence[float] = LAMBDA_GRID, taus: Sequence[float] = LAMBDA_GRID,
                 activation: str = "sigmoid", classifier: str = "softmax", kl_steps: int = 100,
                 kl_lr: float = 0.05, kl_batch_size: int = 512, max_iter: int = 200, num_classes: int = 10):
        super().__init__()
        for key, value, allowed in (("activation", activation, ACTIVATIONS), ("classifier", classifier, CLASSIFIERS)):
            if value not in allowed:
                raise ConfigError(f"Config key 'model.{key}' is {value!r}, but it must be one of {', '.join(allowed)}.")
        rho, lambdas, taus = as_list(rho), as_list(lambdas), as_list(taus)  # plain lists: checkpoints load safely
        self.save_hyperparameters()
        self.automatic_optimization = False
        for name in SOLVED_BUFFERS:
            self.register_buffer(name, torch.empty(0, dtype=torch.float64))
        # chosen (rho, lambda, tau); NaN until solved
        self.register_buffer("chosen", torch.full((3,), float("nan"), dtype=torch.float64))
        self.train_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.metrics = torch.nn.ModuleDict(
            {stage: torchmetrics.Accuracy(task="multiclass", num_classes=num_classes) for stage in ("val", "test")}
        )

    @property
    def solved(self) -> bool:
        return self.encoder_weight.numel() > 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = encode(images.flatten(1), self.encoder_weight, self.hparams.activation)
        return features @ self.classifier_weight.T + self.classifier_bias

    # ---- the solve ------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.world_size > 1:
            raise ConfigError(
                f"The forward autoencoder solves on the whole training set in one process, but the trainer runs "
                f"{self.trainer.world_size}; set trainer.devices=1 and trainer.num_nodes=1."
            )

    def configure_optimizers(self):
        # No gradient training here. The one step() of this no-op optimizer after the solve makes the solve
        # the run's global step 1: ModelCheckpoint never saves at global step 0.
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)

    def training_step(self, batch, batch_idx: int):
        images, targets = batch
        self.train_batches.append((images.flatten(1).detach().cpu().double(), targets.detach().cpu()))
        if batch_idx == self.trainer.num_training_batches - 1:
            X = torch.cat([b[0] for b in self.train_batches])
            y = torch.cat([b[1] for b in self.train_batches])
            self.train_batches.clear()
            self.solve(X, y, *self.validation_set())
            self.optimizers().step()

    def validation_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole validation split, through the datamodule's per-batch transform like Lightning's batches."""
        datamodule = self.trainer.datamodule
        images, targets = [], []
        for batch in datamodule.val_dataloader():
            batch_images, batch_targets = datamodule.on_after_batch_transfer(batch, 0)
            images.append(batch_images.flatten(1).double())
            targets.append(batch_targets)
        return torch.cat(images), torch.cat(targets)

    def candidate_grid(self) -> tuple[list[float], list[float], list[float]]:
        """(rhos, lambdas, taus); fast_dev_run checks the plumbing with the first value of each."""
        hp = self.hparams
        rhos = as_list(hp.rho) if hp.feature_map == "reae" else [float("nan")]
        lambdas, taus = as_list(hp.lambdas), sorted(as_list(hp.taus), reverse=True)  # warm start: large tau first
        if self._trainer is not None and self._trainer.fast_dev_run:
            return rhos[:1], lambdas[:1], taus[:1]
        return rhos, lambdas, taus

    def solve(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor, y_val: torch.Tensor) -> dict:
        """Fit every candidate, keep the one with the best validation accuracy; returns it."""
        hp = self.hparams
        fit_classifier = CLASSIFIERS[hp.classifier]
        rhos, lambdas, taus = self.candidate_grid()
        best = {"val_acc": -1.0}
        for rho in rhos:
            weight, bias = feature_map(hp.feature_map, X, hp.hidden_size, rho=rho, steps=hp.kl_steps,
                                       lr=hp.kl_lr, batch_size=hp.kl_batch_size)  # only reae uses rho and kl_*
            path = DecoderPath(hidden(X, weight, bias), X)
            for lam in lambdas:
                encoder = path.encoder(lam)
                train_features = encode(X, encoder, hp.activation)
                val_features = encode(X_val, encoder, hp.activation)
                warm = None
                for tau in taus:
                    warm = fit_classifier(train_features, y, tau, hp.num_classes, max_iter=hp.max_iter,
                                          init=warm[:2] if warm else None)
                    val_acc = accuracy(val_features, y_val, warm[0], warm[1])
                    if val_acc > best["val_acc"]:
                        best = {"val_acc": val_acc, "rho": rho, "lambda": lam, "tau": tau, "encoder": encoder,
                                "classifier": warm[:2], "feature_map": (weight, bias)}
        self.store(best)
        return best

    def store(self, best: dict) -> None:
        weight, bias = best["feature_map"]
        solved = {
            "feature_map_weight": weight,
            "feature_map_bias": torch.zeros(0) if bias is None else bias,
            "encoder_weight": best["encoder"],
            "classifier_weight": best["classifier"][0],
            "classifier_bias": best["classifier"][1],
        }
        for name, value in solved.items():
            setattr(self, name, value.detach().to(self.device, torch.float64).contiguous())
        self.chosen = torch.tensor([best["rho"], best["lambda"], best["tau"]], dtype=torch.float64, device=self.device)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """The buffers' shapes are known only after the solve: take them from the checkpoint."""
        for name in SOLVED_BUFFERS:
            saved = checkpoint["state_dict"].get(name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=self.device))

    # ---- evaluation ------------------------------------------------------------------------------------------
    def _evaluate(self, batch, stage: str):
        if not self.solved:  # Lightning's sanity check runs before the solve
            return None
        images, targets = batch
        logits = self(images.double())
        loss = F.cross_entropy(logits, targets)
        self.metrics[stage](logits, targets)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val")
        self.log(f"{stage}/acc", self.metrics[stage], prog_bar=True)
        for index, name in enumerate(("rho", "lambda", "tau")):
            if not torch.isnan(self.chosen[index]):
                self.log(f"chosen/{name}", self.chosen[index].float())
        return loss

    def validation_step(self, batch, batch_idx: int):
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int):
        return self._evaluate(batch, "test")

"""One forward-trained autoencoder + softmax classifier (REAE, PIAN, RAN, ROAN), run through the framework.

    python train.py experiment=reae_digits                      # REAE on the bundled digits, 8x8
    python train.py experiment=reae_digits model.feature_map=pian model.hidden_size=64
    python train.py experiment=reae_digits model.rho=[0.1,0.2,0.4] model.hidden_size=350

There is no gradient training of the network: in a single training epoch (the module stops the trainer after it)
the module collects the training batches on the trainer's device, and after the last one it solves everything
there (analysis/forward_autoencoder.py):

    draw = one U[-1, 1] draw from the run's seed (shared by every rho and by RAN / ROAN)
    for rho in rhos (REAE only):   feature map Wp, bp  ->  H  ->  one float64 eigendecomposition
        for lambda in lambdas:     tied encoder We = Wd^T  ->  features g(X We^T)  ->  the classifiers of
                                   ALL taus as one batched problem (warm-started from the previous lambda)
                                   ->  accuracy on the validation split
    refit (default): the chosen (rho, lambda, tau) once more on train + validation

and keeps the candidate with the best validation accuracy. The solved encoder and classifier are
buffers, so checkpoints hold them and `trainer.test(ckpt_path=best)` reproduces the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from analysis.forward_autoencoder import (
    ACTIVATIONS,
    CLASSIFIER_PATHS,
    LAMBDA_GRID,
    DecoderPath,
    accuracy,
    decoder_transpose,
    encode,
    feature_map,
    hidden,
    random_map,
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
        classifier: softmax (multinomial logistic regression, batched L-BFGS) or ridge.
        classifier_dtype: float32 (default: as accurate here, and 2x faster) or float64 for the encoder
            features and the classifier; the decoder is always float64.
        init_scale: REAE's KL descent starts from init_scale * the RAN draw (see conf/model/forward_autoencoder.yaml).
        kl_steps, kl_lr, kl_batch_size: REAE's gradient descent on the KL constraint; kl_retries: how many times it
            starts again with twice the steps while a unit's mean activation is more than 10% off rho.
        max_iter: L-BFGS iterations of the softmax classifier.
        refit: after the choice on the validation split, fit the chosen (rho, lambda, tau) on train + validation.
    """

    task = "classification"  # takes images of any shape: they are flattened
    optimizer_is_placeholder = True  # see configure_optimizers; train.py leaves out the learning-rate monitor

    def __init__(self, feature_map: str = "reae", hidden_size: int = 750, rho: float | Sequence[float] = 0.2,
                 lambdas: Sequence[float] = LAMBDA_GRID, taus: Sequence[float] = LAMBDA_GRID,
                 activation: str = "sigmoid", classifier: str = "softmax", kl_steps: int = 300,
                 kl_lr: float = 0.02, kl_batch_size: int = 512, max_iter: int = 200, num_classes: int = 10,
                 init_scale: float = 0.1, refit: bool = True, classifier_dtype: str = "float32", kl_retries: int = 3):
        super().__init__()
        for key, value, allowed in (("activation", activation, ACTIVATIONS),
                                    ("classifier", classifier, CLASSIFIER_PATHS),
                                    ("classifier_dtype", classifier_dtype, ("float32", "float64"))):
            if value not in allowed:
                raise ConfigError(f"Config key 'model.{key}' is {value!r}, but it must be one of {', '.join(allowed)}.")
        rho, lambdas, taus = as_list(rho), as_list(lambdas), as_list(taus)  # plain lists: checkpoints load safely
        if classifier == "softmax" and 0 in taus:  # its L-BFGS starts from (S / C + tau I)^-1: singular at tau 0
            raise ConfigError(f"Config key 'model.taus' is {taus}, but the softmax classifier's fit does not start "
                              f"without an L2 weight (it kept all-zero weights, chance accuracy); give taus > 0, or "
                              f"model.classifier=ridge, which fits at tau 0.")
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
        # DDP refuses a module without trained parameters even in one process (trainer=ddp_sim debug=limit).
        if stage == "fit" and (self.trainer.world_size > 1 or isinstance(self.trainer.strategy, DDPStrategy)):
            raise ConfigError(
                f"The forward autoencoder solves on the whole training set in one process without DDP, but the "
                f"trainer runs {self.trainer.world_size} process(es) with {type(self.trainer.strategy).__name__}; set "
                f"trainer.devices=1 and trainer.num_nodes=1 and no DDP strategy (e.g. trainer=cpu)."
            )

    def configure_optimizers(self):
        # No gradient training here. The one step() of this no-op optimizer after the solve makes the solve
        # the run's global step 1: ModelCheckpoint never saves at global step 0.
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)

    def training_step(self, batch, batch_idx: int):
        images, targets = batch
        self.train_batches.append((images.flatten(1).detach(), targets.detach()))  # stays on the trainer's device
        if batch_idx == self.trainer.num_training_batches - 1:
            X = torch.cat([b[0] for b in self.train_batches]).double()
            y = torch.cat([b[1] for b in self.train_batches])
            self.train_batches.clear()
            # trainer=gpu runs training_step under bf16 autocast; the solve chooses its own precisions
            with torch.autocast(self.device.type, enabled=False):
                self.solve(X, y, *self.validation_set())
            self.optimizers().step()
            if self.trainer.max_epochs != self.current_epoch + 1:  # another epoch would solve again on the same images
                rank_zero_info(f"The solve is done: training stops after epoch {self.current_epoch} "
                               f"(trainer.max_epochs={self.trainer.max_epochs} asks for more; one is all it takes).")
                self.trainer.should_stop = True

    def on_train_start(self) -> None:
        if self.global_step > 0:  # continued after its solve (killed while testing): a stopped run stays stopped
            self.trainer.should_stop = True

    def validation_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole validation split on the module's device, through the datamodule's per-batch transform."""
        datamodule = self.trainer.datamodule
        images, targets = [], []
        for batch in datamodule.val_dataloader():
            batch_images, batch_targets = datamodule.on_after_batch_transfer([t.to(self.device) for t in batch], 0)
            images.append(batch_images.flatten(1).double())
            targets.append(batch_targets)
        if not images:
            raise ConfigError(f"{type(datamodule).__name__} has no validation images (data.val_fraction="
                              f"{getattr(datamodule, 'val_fraction', '?')}), but the forward autoencoder chooses rho, "
                              f"lambda and tau on them; give data.val_fraction > 0 (the data configs' 0.2; the paper "
                              f"does not say how it split).")
        return torch.cat(images), torch.cat(targets)

    def candidate_grid(self) -> tuple[list[float], list[float], list[float]]:
        """(rhos, lambdas, taus); fast_dev_run checks the plumbing with the first value of each."""
        hp = self.hparams
        rhos = as_list(hp.rho) if hp.feature_map == "reae" else [float("nan")]
        lambdas, taus = as_list(hp.lambdas), as_list(hp.taus)
        if self._trainer is not None and self._trainer.fast_dev_run:
            return rhos[:1], lambdas[:1], taus[:1]
        return rhos, lambdas, taus

    def fit_feature_map(self, X: torch.Tensor, rho: float, draw_seed: int):
        hp = self.hparams
        draw = random_map(X.shape[1], hp.hidden_size, torch.Generator().manual_seed(draw_seed))
        # rho, init_scale and the kl_* settings shape only reae's map; the others ignore them
        return feature_map(hp.feature_map, X, draw, rho=rho, init_scale=hp.init_scale, steps=hp.kl_steps,
                           lr=hp.kl_lr, batch_size=hp.kl_batch_size, retries=hp.kl_retries, seed=draw_seed)

    def solve(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor, y_val: torch.Tensor,
              draw_seed: int | None = None) -> dict:
        """Fit every candidate on (X, y), keep the best on the validation split, refit it if asked; returns it,
        with ``scores``: the validation accuracy of every (rho, lambda, tau).

        ``draw_seed`` (default: the run's seed, torch.initial_seed()) fixes the ONE random draw that every rho
        candidate (and RAN / ROAN with the same seed) starts from, and REAE's minibatches.
        """
        hp = self.hparams
        draw_seed = torch.initial_seed() if draw_seed is None else draw_seed
        dtype = getattr(torch, hp.classifier_dtype)
        fit_path = CLASSIFIER_PATHS[hp.classifier]
        rhos, lambdas, taus = self.candidate_grid()
        best, scores = {"val_acc": -1.0}, {}
        for rho in rhos:
            weight, bias = self.fit_feature_map(X, rho, draw_seed)
            path = DecoderPath(hidden(X, weight, bias), X)
            warm = None
            for lam in lambdas:
                encoder = path.encoder(lam)
                fits = fit_path(encode(X, encoder, hp.activation, dtype), y, taus, hp.num_classes,
                                max_iter=hp.max_iter, init=warm)
                warm = torch.cat([fits.weight, fits.bias.unsqueeze(2)], dim=2)
                val_features = encode(X_val, encoder, hp.activation, dtype)
                for index, tau in enumerate(taus):
                    val_acc = scores[rho, lam, tau] = accuracy(val_features, y_val, fits.weight[index],
                                                               fits.bias[index])
                    if val_acc > best["val_acc"]:
                        best = {"val_acc": val_acc, "rho": rho, "lambda": lam, "tau": tau, "encoder": encoder,
                                "classifier": (fits.weight[index], fits.bias[index]), "feature_map": (weight, bias)}
        if hp.refit:
            best = self.refit(torch.cat([X, X_val]), torch.cat([y, y_val]), best, draw_seed, dtype)
        self.store(best)
        return {**best, "scores": scores}

    def refit(self, X: torch.Tensor, y: torch.Tensor, best: dict, draw_seed: int, dtype: torch.dtype) -> dict:
        """The chosen (rho, lambda, tau) fitted on all of (X, y), the classifier warm-started from the choice."""
        hp = self.hparams
        weight, bias = self.fit_feature_map(X, best["rho"], draw_seed)
        encoder = decoder_transpose(hidden(X, weight, bias), X, best["lambda"])
        init = torch.cat([best["classifier"][0], best["classifier"][1].unsqueeze(1)], dim=1).unsqueeze(0)
        if init.shape[-1] != encoder.shape[0] + 1:  # PIAN's rank may differ on more data: start from zeros
            init = None
        fits = CLASSIFIER_PATHS[hp.classifier](encode(X, encoder, hp.activation, dtype), y, [best["tau"]],
                                               hp.num_classes, max_iter=hp.max_iter, init=init)
        return {**best, "encoder": encoder, "classifier": (fits.weight[0], fits.bias[0]),
                "feature_map": (weight, bias)}

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

"""Adversarial training (Szegedy et al. 2014, section 4.2): a pool of adversarial examples mixed into every batch.

One pool per representation: the input image (layer 0) and the output of every hidden layer of a
``SzegedyNet``. Every ``refresh_every`` training batches a random ``refresh_fraction`` of each pool is replaced
by new adversarial examples of the current network, made from the current batch with the batched L-BFGS attack
(random wrong targets; hidden representations are attacked inside the box of their activation, [0, 1] for
sigmoid units, [0, inf) for ReLU). Every batch, ``mix`` examples of each pool join the loss: an input example
runs through the whole network, a hidden one through the layers above it only (the paper: adversarial examples
"for each layer output ... used to train all the layers above").

The module asks for the extra term: ``SzegedyModule.training_step`` adds ``callback.extra_loss(net)`` of every
callback that has one. Use it with a mini-batch optimizer (Adam, SGD): the pool sample changes every call, which
full-batch L-BFGS (several closure calls per step) cannot absorb.

    callbacks:
      adversarial_training:
        _target_: callbacks.adversarial_training.AdversarialTraining
        pool_size: 1000
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from analysis.lbfgs_attack import attack_rows, choose_targets
from framework.errors import ConfigError


class AdversarialTraining(L.Callback):
    def __init__(self, pool_size: int = 1000, refresh_every: int = 10, refresh_fraction: float = 0.1,
                 mix: int = 32, weight: float = 1.0, layers: list[int] | None = None, c_steps: int = 4,
                 max_iter: int = 30, seed: int = 0):
        self.pool_size, self.refresh_every, self.refresh_fraction = pool_size, refresh_every, refresh_fraction
        self.mix, self.weight, self.layers, self.c_steps, self.max_iter = mix, weight, layers, c_steps, max_iter
        self.seed, self.generator = seed, None  # the generator is made in setup (see there)
        self.restored_draws: torch.Tensor | None = None  # a checkpoint's generator state, for a generator to come
        self.pools: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> (representations, labels)
        self.steps = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Made here, in the process that trains: ddp_spawn pickles the callbacks into its processes, and torch
        # cannot send a torch.Generator there ("unable to resize file").
        self.generator = torch.Generator().manual_seed(self.seed)
        if self.restored_draws is not None:
            self.generator.set_state(self.restored_draws)

    def on_fit_start(self, trainer, pl_module) -> None:
        if any(isinstance(optimizer, torch.optim.LBFGS) for optimizer in trainer.optimizers):
            raise ConfigError("Config key 'model.optimizer' is torch.optim.LBFGS, but callbacks.adversarial_training "
                              "adds its pools' loss to mini-batch steps, and with a full-batch line search the run "
                              "trains nothing; choose model/optimizer=sgd or adam, or leave the callback out.")
        names = pl_module.net.layer_names
        if self.layers is not None and not all(isinstance(layer, int) and 0 <= layer < len(names)
                                               for layer in self.layers):
            raise ConfigError(f"Config key 'callbacks.adversarial_training.layers' is {list(self.layers)}, but the "
                              f"network's layers are 0..{len(names) - 1} (0: examples of the input, k: of the output "
                              f"of layer k, {', '.join(names[:-1])}); give indices in that range, or null for all.")

    def state_dict(self) -> dict:
        # A resumed run goes on with the same pools, refresh count and random draws.
        return {"pools": self.pools, "steps": self.steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        # Lightning restores a checkpoint's callbacks after setup; a DDP launcher (ddp_sim) gives its workers' states
        # to the callbacks of its own process, where no setup ran, before the test's workers start
        self.pools, self.steps, self.restored_draws = state_dict["pools"], state_dict["steps"], state_dict["generator"]
        if self.generator is not None:
            self.generator.set_state(self.restored_draws)

    def on_train_start(self, trainer, pl_module) -> None:
        # Pools restored from a checkpoint arrive on the CPU; once, before the first batch, onto the module's device.
        self.pools = {layer: (h.to(pl_module.device), y.to(pl_module.device)) for layer, (h, y) in self.pools.items()}

    def representation(self, net, images: torch.Tensor, layer: int) -> torch.Tensor:
        return images if layer == 0 else net.hidden_representations(images)[layer - 1]

    @torch.no_grad()
    def adversarial(self, net, images, labels, layer: int) -> torch.Tensor:
        """Adversarial versions of the representations entering layer ``layer``, random wrong targets."""
        h = self.representation(net, images, layer)
        shape = h.shape[1:]
        upper = 1.0 if layer == 0 or net.kind != "conv" else float("inf")

        def head(points):
            return net.forward_from(points.view(-1, *shape), layer)

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        targets = choose_targets(head, h, labels, "random", seed=seed)
        found, _, success = attack_rows(head, h.flatten(1), targets, shape, 0.01, self.c_steps, quantized=layer == 0,
                                        max_iter=self.max_iter, upper=upper)
        return torch.where(success[:, None], found, h.flatten(1)).view_as(h)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        images, labels = batch  # already on the device and converted (on_after_batch_transfer)
        net = module.net
        layers = self.layers if self.layers is not None else list(range(len(net.layer_names)))
        refresh = self.steps % self.refresh_every == 0
        self.steps += 1
        if not refresh:
            return
        was_training = net.training
        net.eval()
        for layer in layers:
            new = self.adversarial(net, images, labels, layer)
            pool, pool_labels = self.pools.get(layer, (new[:0], labels[:0]))
            if (room := self.pool_size - len(pool)) > 0:  # filling up: copies of new examples join it, up to its size
                self.pools[layer] = (torch.cat([pool, new[:room]]), torch.cat([pool_labels, labels[:room]]))
                continue
            count = min(len(new), max(1, round(self.refresh_fraction * len(pool))))
            slots = torch.randperm(len(pool), generator=self.generator)[:count].to(pool.device)
            pool[slots], pool_labels[slots] = new[:count], labels[:count]
        net.train(was_training)

    def extra_loss(self, net) -> torch.Tensor | None:
        """Mean cross-entropy of ``mix`` pool examples per layer, each through the layers above its own."""
        if not self.pools:
            return None
        losses = []
        for layer, (pool, labels) in self.pools.items():
            pick = torch.randint(0, len(pool), (min(self.mix, len(pool)),), generator=self.generator).to(pool.device)
            losses.append(F.cross_entropy(net.forward_from(pool[pick], layer), labels[pick]))
        return self.weight * torch.stack(losses).mean()

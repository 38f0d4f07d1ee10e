"""The studies of Szegedy et al. 2014 on trained runs: Tables 1-5, Figures 1-2 and 5 (evaluate.py tasks).

Every task takes ``runs`` (a run or multirun directory of classifier runs, e.g. ``experiment=szegedy_*``) and
the ``szegedy`` block of conf/evaluate.yaml (how many examples, c search rounds, seed). Adversarial examples
are cached per run in ``<run>/attacks/<split>_<examples>_<c_steps>_<seed>.pt`` (an AttackResult's fields and the
sha256 of the checkpoint attacked, so that a retrained run is attacked again), so Tables 1 and 2 share one attack per
model.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from analysis.lbfgs_attack import AttackInputError, AttackResult, distortion, lbfgs_attack
from analysis.results_table import check_one_run_per_seed
from analysis.spectral import alexnet_conv_bounds, network_bounds
from datamodules.base import DatasetMissingError, InMemoryDataModule
from datamodules.mnist import MNISTDataModule
from framework.errors import ConfigError, DataError
from framework.results import load_results, run_checkpoint
from lightning_modules.classifier import ClassificationModule
from lightning_modules.szegedy import SzegedyNet

# The paper's Table 1 (train error %, test error %, average minimum distortion), Table 3 (error % on P1, P2 and the
# test set, average minimum distortion on the test set; the paper's P0 and P1 are our P1 and P2) and Table 5.
PAPER_TABLE1 = {"softmax1": (6.7, 7.4, 0.062), "softmax2": (10, 9.4, 0.1), "softmax3": (21.2, 20, 0.14),
                "fc100": (0, 1.64, 0.058), "fc200": (0, 1.54, 0.065), "ae400": (0.57, 1.9, 0.086)}
PAPER_TABLE3 = {"fc100@P1": (0, 2.4, 2, 0.062), "fc123@P1": (0, 2.5, 2.1, 0.059), "fc100@P2": (2.3, 0, 2.1, 0.058)}
PAPER_ALEXNET = (2.75, 10, 7, 7.5, 11)

log = logging.getLogger(__name__)


class PixelModel(nn.Module):
    """A trained classifier as a function of [0, 1] pixels: the run's own DataModule turns them into what the network
    took in training (padding, its mode, normalisation, flattening: ``network_input``), so the attack's box is the
    pixel box."""

    def __init__(self, module: nn.Module, data: InMemoryDataModule):
        super().__init__()
        self.module, self.data = module, data

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(self.data.network_input(x))


@dataclass
class Run:
    name: str
    path: Path
    config: DictConfig
    checkpoint: Path

    def model(self, device: torch.device) -> PixelModel:
        module = _import(self.config.model._target_).load_from_checkpoint(self.checkpoint, map_location="cpu")
        return PixelModel(module, self.datamodule()).to(device).eval().requires_grad_(False)

    def datamodule(self, data_dir: str | None = None, part: str | None = None):
        data = OmegaConf.to_container(self.config.data, resolve=True)
        data |= {"data_dir": data_dir or data["data_dir"]} | ({"train_part": part} if part else {})
        return instantiate(data)

    def images(self, split: str, limit: int | None = None, data_dir: str | None = None, part: str | None = None):
        """[0, 1] float images and labels of this run's training part (``train``; or of ``part``, with the run's
        train_size and validation split) or the test set."""
        datamodule = self.datamodule(data_dir, part)
        try:
            datamodule.setup("fit" if split == "train" else "test")
        except DatasetMissingError as error:  # its remedy names train.py's keys; evaluate.py takes data_dir=
            raise DatasetMissingError(f"{str(error).removesuffix('.')}; to evaluate.py, give data_dir=<the folder "
                                      f"that holds MNIST/raw>.") from None
        dataset = datamodule.datasets[split]
        images, labels = dataset.images[:limit], dataset.targets[:limit]
        return images.float() / 255, labels


def run_name(config: DictConfig) -> str:
    name = str(config.get("experiment_name", "run")).removeprefix("szegedy_")
    part = OmegaConf.select(config, "data.train_part", default="full")
    return name if part in (None, "full") else f"{name}@{part}"


def distinct_names(runs: list[Run]) -> list[Run]:
    """Runs of one experiment (seeds of a sweep) share a name: add the seed, else the directory, so that rows and
    figure files stay apart."""
    for suffix in (lambda run: f"seed{run.config.get('seed')}", lambda run: run.path.name):
        names = Counter(run.name for run in runs)
        runs = [replace(run, name=f"{run.name}-{suffix(run)}") if names[run.name] > 1 else run for run in runs]
    return runs


def load_runs(runs: str, at_least: int = 1) -> list[Run]:
    """Every classifier run under ``runs``, checked before any work (one sentence per problem)."""
    results = load_results(runs)
    by_name = defaultdict(list)
    for result in results:
        by_name[run_name(OmegaConf.create(result["config"]))].append(result)
    check_one_run_per_seed(by_name.values(), shown=[], table="the study")
    found = []
    for result in results:
        config = OmegaConf.create(result["config"])
        target = str(OmegaConf.select(config, "model._target_", default=""))
        module_class = _import(target)
        if not (isinstance(module_class, type) and issubclass(module_class, ClassificationModule)):
            raise AttackInputError(f"The run {result['path']} trained {target}, which has no differentiable "
                                   f"classification loss to attack; give runs of classifier models.")
        checkpoint = run_checkpoint(result)
        if not checkpoint.is_file():
            raise DataError(f"The run {result['path']} has no checkpoint {checkpoint}; train it again.")
        found.append(Run(run_name(config), Path(result["path"]), config, checkpoint))
    found = distinct_names(found)
    if len(found) < at_least:
        raise ConfigError(f"Config key 'runs' is {runs!r}, which holds {len(found)} run(s), but this study compares "
                          f"at least {at_least}; train the missing runs first (see docs/attacks.md).")
    return sorted(found, key=lambda run: run.name)


def inputs_of(run: Run) -> str:
    """The images a run's model takes: its dataset and the shape of one stored image, e.g. MNISTDataModule 1x28x28."""
    datamodule = run.datamodule()
    shape = "x".join(str(size) for size in datamodule.image_shape) if datamodule.image_shape else "of any size"
    return f"{type(datamodule).__name__} images {shape}"


def check_same_inputs(runs: list[Run]) -> None:
    """A cross-model table feeds each model's adversarial images to every other model: one dataset, one shape."""
    expected = inputs_of(runs[0])
    for run in runs[1:]:
        if (found := inputs_of(run)) != expected:
            raise ConfigError(f"The run {run.path} was trained on {found}, but the run {runs[0].path} on {expected}, "
                              f"and a cross-model table feeds each model's images to every other model; give runs of "
                              f"one dataset and image size.")


def check_training_halves(runs: list[Run]) -> None:
    """Tables 3-4 compare models trained on MNIST's disjoint halves P1 and P2."""
    for run in runs:
        part = OmegaConf.select(run.config, "data.train_part", default=None)
        if not isinstance(run.datamodule(), MNISTDataModule) or part not in ("P1", "P2"):
            given = f"data.train_part={part}" if part else "no data.train_part"
            raise ConfigError(f"The run {run.path} was trained on {inputs_of(run)} with {given}, but "
                              f"Tables 3-4 compare models trained on one of MNIST's halves (data.train_part=P1 or "
                              f"P2); give runs such as those docs/attacks.md trains under 'Results' (e.g. "
                              f"experiment=szegedy_fc100 data.train_part=P1).")


def _import(target: str):
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception:  # an unknown class is reported by the caller as "not a classifier"
        return None


def device_of(cfg: DictConfig) -> torch.device:
    choice = cfg.szegedy.get("device", "auto")
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice)


def checkpoint_sha256(checkpoint: Path) -> str:
    with open(checkpoint, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cached_attack(cache: Path, checkpoint: str) -> AttackResult | None:
    """The attack stored in ``cache`` if it was made from the checkpoint of sha256 ``checkpoint``; else None (also
    for a cache written before caches held the checkpoint's sha256, and for one that cannot be read: written
    atomically, it was changed by something else since)."""
    if not cache.is_file():
        return None
    try:
        result, metadata = AttackResult.load_with_metadata(cache)
    except (RuntimeError, EOFError, pickle.UnpicklingError, TypeError) as error:
        log.warning(f"The attack cache {cache} cannot be read ({type(error).__name__}); the attack is made again.")
        return None
    return result if metadata.get("checkpoint_sha256") == checkpoint else None


def attack(run: Run, split: str, cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor, AttackResult]:
    """Untargeted (best of all targets) attack on the first ``examples`` images of ``split``, cached per checkpoint."""
    options = cfg.szegedy
    images, labels = run.images(split, options.examples, cfg.get("data_dir"))
    cache = run.path / "attacks" / f"{split}_{options.examples}_{options.c_steps}_{options.seed}.pt"
    checkpoint = checkpoint_sha256(run.checkpoint)
    if (result := cached_attack(cache, checkpoint)) is None:
        device = device_of(cfg)
        result = lbfgs_attack(run.model(device), images.to(device), labels.to(device), targets="all",
                              seed=options.seed, c_steps=options.c_steps, batch_size=options.batch_size, progress=True)
        result = cached_attack(result.save(cache, checkpoint_sha256=checkpoint), checkpoint)
    return images, labels, result


@torch.no_grad()
def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = 5000) -> float:
    device = next(model.parameters()).device
    wrong = sum(int((model(images[i : i + chunk].to(device)).argmax(1).cpu() != labels[i : i + chunk]).sum())
                for i in range(0, len(images), chunk))
    return 100.0 * wrong / len(images)


def table1(cfg: DictConfig) -> str:
    """Per model: training error, test error, average minimum distortion to reach 0% accuracy."""
    runs = load_runs(cfg.runs)
    rows = ["| model | train error % | test error % | av. min. distortion | success | paper (train / test / dist.) |",
            "|---|---|---|---|---|---|"]
    for run in runs:
        model = run.model(device_of(cfg))
        train_error = error_rate(model, *run.images("train", data_dir=cfg.get("data_dir")))
        test_error = error_rate(model, *run.images("test", data_dir=cfg.get("data_dir")))
        _, _, result = attack(run, "train", cfg)
        paper = PAPER_TABLE1.get(run_name(run.config))  # run.name may carry a -seedN suffix
        paper_text = f"{paper[0]} / {paper[1]} / {paper[2]}" if paper else "-"
        rows.append(f"| {run.name} | {train_error:.2f} | {test_error:.2f} | {mean_distortion(result):.4f} | "
                    f"{int(result.success.sum())}/{len(result.success)} | {paper_text} |")
    return "\n".join(rows)


def mean_distortion(result: AttackResult) -> float:
    """Average minimum distortion over the examples made adversarial (0 for the ones already misclassified);
    failed attacks are left out (the tables give the success count)."""
    return float(result.distortion[result.success].mean())


def gaussian(images: torch.Tensor, stddev: float, seed: int) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + stddev * noise).clamp(0, 1)


def magnified(images: torch.Tensor, adversarial: torch.Tensor, stddev: float = 0.1) -> torch.Tensor:
    """x + stddev sqrt(n) r / ||r||, clipped: the perturbation's direction at a per-pixel stddev of ``stddev``.
    Examples with r = 0 (already misclassified, or a failed attack) have no direction and stay as they are."""
    r = (adversarial - images).flatten(1)
    scale = stddev * math.sqrt(r.shape[1]) / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (images + (r * scale).view_as(images)).clamp(0, 1)


def cross_table(cfg: DictConfig, runs: list[Run], split: str, noise: tuple[float, ...], magnify: bool) -> str:
    """Rows: the inputs, columns: error % of every model. The inputs: each model's adversarial examples and
    Gaussian noise of each stddev in ``noise``; with ``magnify`` then (Table 4's lower half) each model's
    perturbation magnified to stddev 0.1 and Gaussian noise of stddev 0.1. A row's distortion is the paper's:
    the mean over its examples of sqrt(sum r^2 / n)."""
    device = device_of(cfg)
    models = {run.name: run.model(device) for run in runs}
    attacks = {run.name: attack(run, split, cfg) for run in runs}  # each model's own first images of the split
    # A row: what each column's model is shown, and the distortion. A model's examples go to every model; noise
    # is added to each model's own images (runs trained on different sizes have different first training images).
    rows = {name: (dict.fromkeys(models, (result.adversarial, y)), mean_distortion(result))
            for name, (_, y, result) in attacks.items()}

    def noise_row(stddev: float) -> dict:
        noisy = {name: (x, gaussian(x, stddev, cfg.szegedy.seed), y) for name, (x, y, _) in attacks.items()}
        changes = torch.cat([distortion(changed, x) for x, changed, _ in noisy.values()])
        shown = {name: (changed, y) for name, (_, changed, y) in noisy.items()}
        return {f"Gaussian noise, stddev {stddev}": (shown, float(changes.mean()))}

    for stddev in noise:
        rows |= noise_row(stddev)
    if magnify:
        for name, (x, y, result) in attacks.items():
            big = magnified(x, result.adversarial)
            rows[f"{name}, magnified to stddev 0.1"] = (dict.fromkeys(models, (big, y)),
                                                        float(distortion(big, x).mean()))
        rows |= noise_row(0.1)
    table = ["| input | " + " | ".join(models) + " | distortion |", "|---" * (len(models) + 2) + "|"]
    for label, (shown, change) in rows.items():
        errors = [f"{error_rate(model, shown[name][0].to(device), shown[name][1]):.1f}%"
                  for name, model in models.items()]
        table.append(f"| {label} | " + " | ".join(errors) + f" | {change:.4f} |")
    return "\n".join(table)


def table2(cfg: DictConfig) -> str:
    """Cross-model generalisation: adversarial training-set examples of each model, error % of every model."""
    runs = load_runs(cfg.runs, at_least=2)
    check_same_inputs(runs)
    return cross_table(cfg, runs, "train", (0.1, 0.3), magnify=False)


def table3(cfg: DictConfig, runs: list[Run]) -> str:
    """Per model: error % on P1, on P2 (each with the run's train_size and validation split, so a run's own part
    gives its training error) and on the test set; average minimum distortion on the test set (Table 4's attack)."""
    rows = ["| model | error on P1 % | error on P2 % | test error % | av. min. distortion | success | "
            "paper (P1 / P2 / test / dist.) |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        model, data_dir = run.model(device_of(cfg)), cfg.get("data_dir")
        errors = [error_rate(model, *run.images("train", data_dir=data_dir, part=part)) for part in ("P1", "P2")]
        errors.append(error_rate(model, *run.images("test", data_dir=data_dir)))
        _, _, result = attack(run, "test", cfg)
        paper = PAPER_TABLE3.get(run_name(run.config))
        rows.append(f"| {run.name} | " + " | ".join(f"{error:.2f}" for error in errors) +
                    f" | {mean_distortion(result):.4f} | {int(result.success.sum())}/{len(result.success)} | "
                    f"{' / '.join(str(value) for value in paper) if paper else '-'} |")
    return "\n".join(rows)


def table34(cfg: DictConfig) -> str:
    """Cross-training-set generalisation (P1 / P2 runs): Table 3 (the models' errors), then Table 4: adversarial
    test-set examples and Gaussian noise of stddev 0.06, then the same examples magnified and noise of 0.1."""
    runs = load_runs(cfg.runs, at_least=2)
    check_training_halves(runs)
    check_same_inputs(runs)
    return table3(cfg, runs) + "\n\n" + cross_table(cfg, runs, "test", (0.06,), magnify=True)


def table5(cfg: DictConfig) -> str:
    """Per-layer upper Lipschitz bounds of every zoo model, and of the ImageNet AlexNet's convolutions."""
    runs = load_runs(cfg.runs)
    zoo = [run for run in runs if is_zoo_net(net_target(run))]
    left_out = [f"{run.name} ({net_target(run)})" for run in runs if not is_zoo_net(net_target(run))]
    if not zoo:
        raise ConfigError(f"Config key 'runs' is {cfg.runs!r}, whose runs ({', '.join(left_out)}) have no network of "
                          f"the Szegedy zoo (model.net._target_=lightning_modules.szegedy.SzegedyNet), the only one "
                          f"whose layers task=szegedy_table5 bounds; give runs of the szegedy_* experiments.")
    alexnet = imagenet_alexnet() if cfg.szegedy.get("alexnet", True) else None  # a refusal before any work
    lines = ["| model | layer | size | operator norm | activation | upper bound |", "|---|---|---|---|---|---|"]
    for run in zoo:
        for row in network_bounds(run.model(torch.device("cpu")).module.net):
            lines.append(f"| {run.name} | {row['layer']} | {row['size']} | {row['sigma']:.3f} | {row['activation']} "
                         f"| {row['bound']:.3f} |")
    if left_out:
        lines.append(f"\nLeft out, as their networks are not of the Szegedy zoo (SzegedyNet), whose layers this "
                     f"table bounds: {', '.join(left_out)}.")
    return "\n".join(lines) + "\n\n" + alexnet_table(alexnet)


def net_target(run: Run) -> str:
    return str(OmegaConf.select(run.config, "model.net._target_", default=None))


def is_zoo_net(target: str) -> bool:
    net_class = _import(target)
    return isinstance(net_class, type) and issubclass(net_class, SzegedyNet)


def imagenet_alexnet() -> nn.Module:
    """The ImageNet AlexNet convolutions; where they cannot be had, the loader's sentence with Table 5's own remedy."""
    from framework.pretrained import PretrainedWeightsError, alexnet_features  # torchvision: imported when asked

    try:
        return alexnet_features("imagenet")
    except PretrainedWeightsError as error:
        raise PretrainedWeightsError(f"{str(error).removesuffix('.')}; or leave AlexNet out of Table 5 with "
                                     f"szegedy.alexnet=false.") from None


def alexnet_table(features: nn.Module | None) -> str:
    if features is None:
        return "AlexNet: skipped (szegedy.alexnet=false)."
    rows = alexnet_conv_bounds(features.eval())
    lines = ["| AlexNet (torchvision, ImageNet) | size | upper bound | method | paper (96/256/384/384/256 channels) |",
             "|---|---|---|---|---|"]
    for row, paper in zip(rows, PAPER_ALEXNET, strict=False):
        lines.append(f"| {row['layer']} | {row['size']} | {row['sigma']:.2f} | {row['method']} | {paper} |")
    return "\n".join(lines)


def save_grid(tiles: torch.Tensor, columns: int, path: Path, title: str) -> Path:
    """Tiles [N, 1, H, W] in [0, 1] as one grayscale PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid = make_grid(tiles.clamp(0, 1), nrow=columns, padding=2, pad_value=1.0)[0]
    fig, ax = plt.subplots(figsize=(columns * 0.6 + 0.5, grid.shape[0] / grid.shape[1] * columns * 0.6 + 0.7))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figure5(cfg: DictConfig, output_dir: Path) -> str:
    """Per model: rows of (original, difference magnified 10x around grey, adversarial) for 8 examples."""
    lines = []
    for run in load_runs(cfg.runs):
        images, _, result = attack(run, "train", cfg)
        keep = result.success & (result.distortion > 0)
        if not keep.any():  # every example was misclassified before the attack (or none was fooled)
            lines.append(f"{run.name}: no figure, as none of its {len(keep)} examples was made adversarial by a "
                         f"perturbation ({int((result.success & (result.distortion == 0)).sum())} were misclassified "
                         f"already)")
            continue
        x, adv = images[keep][:8], result.adversarial[keep][:8]
        tiles = torch.stack([x, (0.5 + 10 * (adv - x)), adv], 1).flatten(0, 1)
        png = save_grid(tiles, 6, output_dir / f"szegedy_figure5_{run.name}.png",
                        f"{run.name}: original | difference x10 | adversarial")
        targets = ", ".join(str(int(t)) for t in result.target[keep][:8])
        lines.append(f"{run.name}: targets {targets}, mean distortion {float(result.distortion[keep][:8].mean()):.4f}"
                     f"\n\n![{run.name}]({png.name})")
    return "\n\n".join(lines)


@torch.no_grad()
def figure_units(cfg: DictConfig, output_dir: Path) -> str:
    """Figures 1-2: the test images that most activate natural-basis units e_i and random directions v."""
    options, lines, skipped = cfg.szegedy, [], []
    layer = options.get("layer", 0)
    for run in load_runs(cfg.runs):
        model = run.model(torch.device("cpu"))
        net = model.module.net
        if not hasattr(net, "hidden_representations") or len(net.layer_names) - 1 <= layer:  # the last: the output
            skipped.append(run.name)
            continue
        images, _ = run.images("test", data_dir=cfg.get("data_dir"))
        h = torch.cat([net.hidden_representations(model.data.network_input(images[i : i + 2000]))[layer]
                       for i in range(0, len(images), 2000)])
        generator = torch.Generator().manual_seed(options.seed)
        units = torch.randperm(h.shape[1], generator=generator)[:4]
        directions = torch.randn(h.shape[1], 4, generator=generator)
        for kind, scores in (("natural basis e_i", h[:, units]), ("random direction v", h @ directions)):
            top = scores.topk(8, dim=0).indices.T.flatten()  # 4 rows of 8 images
            tag = "natural" if kind.startswith("natural") else "random"
            png = save_grid(images[top], 8, output_dir / f"szegedy_units_{run.name}_{tag}.png",
                            f"{run.name}, layer {net.layer_names[layer]}: {kind}")
            lines.append(f"{run.name} ({net.layer_names[layer]}), {kind}: ![{tag}]({png.name})")
    which = f"hidden layer {layer} (szegedy.layer; 0: the first)"
    if not lines:
        raise AttackInputError(f"None of the runs under {cfg.runs} ({', '.join(skipped)}) has a {which} whose units "
                               f"task=szegedy_units can show; give runs of the FC or AE models (e.g. "
                               f"experiment=szegedy_fc100), or a smaller szegedy.layer.")
    return "\n\n".join(lines + ([f"Skipped (no {which}): {', '.join(skipped)}."] if skipped else []))

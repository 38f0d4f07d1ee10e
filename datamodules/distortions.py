"""Random planar affine distortions of training images, drawn per (seed, epoch, image index).

LeCun et al. 1998 (Section III.C) trained their best LeNet-5 on the 60,000 MNIST images plus
540,000 distorted copies: "combinations of the following planar affine transformations:
horizontal and vertical translations, scaling, squeezing (simultaneous horizontal compression
and vertical elongation, or the reverse), and horizontal shearing". Here every epoch shows each
training image once, distorted afresh with probability ``1 - original_fraction`` (0.1 by default:
the paper's 60,000 originals among 600,000 images), so 20 epochs show each image with about 18
distinct distortions. The paper gives no ranges; the defaults below are small, digit-preserving ones.

The parameters of an epoch are one table ``[num_images, 6]`` drawn from a generator seeded with
(seed, epoch), so a batch's distortions depend only on (seed, epoch, index): a resumed run and a
run with another batch size distort every image exactly alike. The warp itself runs on the
images' device (``affine_grid`` + bilinear ``grid_sample``), on [0, 1] images with 0 outside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from framework.errors import ConfigError


@dataclass(frozen=True)
class AffineDistortion:
    """Maximum magnitudes, each drawn uniformly in [-max, max]; all zero is the identity.

    translate: pixels, horizontally and vertically (independently);
    scale: relative size change (1 + u);
    squeeze: relative horizontal compression with the inverse vertical elongation (width x (1 + u), height / (1 + u));
    shear: horizontal shear, the content's (x, y) going to (x - u * y, y) for u drawn in [-shear, shear];
    original_fraction: share of images left undistorted in each epoch.
    """

    translate: float = 2.0
    scale: float = 0.1
    squeeze: float = 0.1
    shear: float = 0.2
    original_fraction: float = 0.1

    def __post_init__(self):
        if min(self.translate, self.scale, self.squeeze, self.shear) < 0 or self.scale >= 1 or self.squeeze >= 1:
            raise ConfigError(f"Config key 'data.distortion' is {asdict(self)}, but its magnitudes must be >= 0, and "
                              f"scale and squeeze < 1.")
        if not 0 <= self.original_fraction <= 1:
            raise ConfigError(f"Config key 'data.distortion.original_fraction' is {self.original_fraction}, but it "
                              f"must be a number in [0, 1].")

    def __str__(self) -> str:
        """What a run's log says, every magnitude spelled out: a config that names one key gets the others' defaults."""
        return (f"translate ±{self.translate:g} px, scale ±{self.scale:.0%}, squeeze ±{self.squeeze:.0%}, shear "
                f"±{self.shear:g}, {self.original_fraction:.0%} of the images left original each epoch")

    def epoch_table(self, num_images: int, seed: int, epoch: int) -> torch.Tensor:
        """Uniform draws in [-1, 1] for (tx, ty, scale, squeeze, shear) and one in [0, 1] for keep-original."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 900_001)
        draws = torch.rand(num_images, 6, generator=generator)
        draws[:, :5].mul_(2).sub_(1)
        return draws

    def matrices(self, draws: torch.Tensor, size: int) -> torch.Tensor:
        """``[N, 2, 3]`` matrices for ``affine_grid`` (output -> input coordinates, normalised to [-1, 1])."""
        tx, ty, scale, squeeze, shear, keep = draws.unbind(1)
        active = (keep >= self.original_fraction).to(draws.dtype)
        scale = 1 + active * self.scale * scale
        squeeze = 1 + active * self.squeeze * squeeze
        theta = torch.zeros(len(draws), 2, 3, dtype=draws.dtype, device=draws.device)
        theta[:, 0, 0] = 1 / (scale * squeeze)
        theta[:, 0, 1] = active * self.shear * shear
        theta[:, 1, 1] = squeeze / scale
        theta[:, 0, 2] = active * self.translate * tx * 2 / size
        theta[:, 1, 2] = active * self.translate * ty * 2 / size
        return theta

    def __call__(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Warp float images ``[N, C, H, W]`` (background 0) with the rows ``draws`` of an epoch table."""
        theta = self.matrices(draws.to(images.device, images.dtype), images.shape[-1])
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

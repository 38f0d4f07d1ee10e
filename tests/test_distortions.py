"""Random affine distortions (datamodules/distortions.py) and how the DataModule applies them."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from datamodules.distortions import AffineDistortion
from datamodules.mnist import MNISTDataModule
from tests.dataset_files import write_mnist

NONE = {"translate": 0.0, "scale": 0.0, "squeeze": 0.0, "shear": 0.0}


def draws(count: int, tx=0.0, ty=0.0, scale=0.0, squeeze=0.0, shear=0.0, keep=1.0) -> torch.Tensor:
    return torch.tensor([[tx, ty, scale, squeeze, shear, keep]]).repeat(count, 1)


def test_zero_strength_is_the_identity_and_shapes_are_kept():
    images = torch.rand(5, 1, 32, 32)
    table = AffineDistortion(**NONE).epoch_table(5, seed=0, epoch=0)
    out = AffineDistortion(**NONE)(images, table)
    assert out.shape == images.shape and out.dtype == images.dtype
    torch.testing.assert_close(out, images, atol=1e-6, rtol=0)


def test_translation_moves_the_content_by_whole_pixels_and_fills_with_background():
    images = torch.rand(2, 1, 32, 32)
    out = AffineDistortion(**{**NONE, "translate": 2.0})(images, draws(2, tx=1.0))
    torch.testing.assert_close(out[..., :-2], images[..., 2:], atol=1e-6, rtol=0)
    assert torch.all(out[..., -2:] == 0)


def test_images_drawn_as_originals_are_untouched():
    images = torch.rand(2, 1, 32, 32)
    out = AffineDistortion(original_fraction=0.5)(images, draws(2, tx=1.0, scale=1.0, shear=1.0, keep=0.3))
    torch.testing.assert_close(out, images, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("draw", "sampled_from"), [
    # Where output point (x, y) (normalised, centre 0) reads the input, for one parameter drawn at its maximum:
    ({"scale": 1.0}, lambda x, y: (x / 1.1, y / 1.1)),  # the content grows by 1 + 0.1 both ways
    ({"squeeze": 1.0}, lambda x, y: (x / 1.1, y * 1.1)),  # width x 1.1, height / 1.1
    ({"shear": 1.0}, lambda x, y: (x + 0.2 * y, y)),  # horizontal only: content x' = x - 0.2 y
    ({"tx": 1.0}, lambda x, y: (x + 4 / 32, y)),  # 2 pixels of 32 (the span is 2)
    ({"ty": 1.0}, lambda x, y: (x, y + 4 / 32)),
])
def test_each_parameter_is_the_documented_planar_map(draw, sampled_from):
    distortion = AffineDistortion(translate=2.0, scale=0.1, squeeze=0.1, shear=0.2, original_fraction=0.0)
    grid = F.affine_grid(distortion.matrices(draws(1, **draw), 32), [1, 1, 32, 32], align_corners=False)
    identity = F.affine_grid(torch.eye(2, 3)[None], [1, 1, 32, 32], align_corners=False)
    x, y = identity[..., 0], identity[..., 1]
    torch.testing.assert_close(grid, torch.stack(sampled_from(x, y), dim=-1), atol=1e-6, rtol=0)


def test_full_distortions_change_images_and_stay_in_the_unit_range():
    torch.manual_seed(0)
    images = torch.rand(64, 1, 32, 32)
    distortion = AffineDistortion(original_fraction=0.0)
    out = distortion(images, distortion.epoch_table(64, seed=1, epoch=0))
    assert out.min() >= 0 and out.max() <= 1
    assert ((out - images).abs().flatten(1).max(1).values > 0.05).all()


def test_the_epoch_table_depends_only_on_seed_and_epoch():
    distortion = AffineDistortion()
    table = distortion.epoch_table(100, seed=1, epoch=2)
    assert torch.equal(table, distortion.epoch_table(100, seed=1, epoch=2))
    assert not torch.equal(table, distortion.epoch_table(100, seed=1, epoch=3))
    assert not torch.equal(table, distortion.epoch_table(100, seed=2, epoch=2))
    assert table[:, :5].abs().max() <= 1 and table[:, 5].min() >= 0
    many = distortion.epoch_table(10_000, seed=1, epoch=2)  # each magnitude both ways, uniform: mean 0, std 1/sqrt(3)
    torch.testing.assert_close(many[:, :5].mean(0), torch.zeros(5), atol=0.03, rtol=0)
    torch.testing.assert_close(many[:, :5].std(0), torch.full((5,), 3 ** -0.5), atol=0.02, rtol=0)
    torch.testing.assert_close(many[:, 5].mean(), torch.tensor(0.5), atol=0.02, rtol=0)  # keep-original: [0, 1]
    with pytest.raises(ValueError, match="original_fraction"):
        AffineDistortion(original_fraction=1.5)


def distorted_epoch(data_dir, batch_size: int, epoch: int) -> dict[int, torch.Tensor]:
    """Index -> distorted training image of one epoch, through the DataModule's loader and batch hook."""
    dm = MNISTDataModule(data_dir=str(data_dir), batch_size=batch_size, val_fraction=0, pad_to=32,
                         distortion={"original_fraction": 0.0})
    dm.trainer = SimpleNamespace(current_epoch=epoch, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(epoch)  # as Lightning does before each epoch
    seen = {}
    for batch in loader:
        images, targets = dm.on_after_batch_transfer(batch, 0)
        seen |= {int(i): image for i, image in zip(batch[2], images, strict=True)}
    return seen


def test_datamodule_distorts_by_seed_epoch_and_index_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")
    write_mnist(tmp_path, num_train=24, num_test=4)
    small, large = distorted_epoch(tmp_path, 4, epoch=1), distorted_epoch(tmp_path, 8, epoch=1)
    assert sorted(small) == list(range(24))
    for index in small:  # another batch size (so other batch neighbours and positions): the same image
        torch.testing.assert_close(small[index], large[index])
    other_epoch = distorted_epoch(tmp_path, 4, epoch=2)
    assert all(not torch.equal(small[i], other_epoch[i]) for i in small)
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=4, pad_to=32, distortion={"shear": 0.1})
    dm.setup("test")
    assert len(next(iter(dm.test_dataloader()))) == 2  # evaluation batches carry no index and are not distorted


def test_the_log_spells_out_every_magnitude_a_partial_config_leaves_at_its_default(tmp_path, caplog):
    """``+data.distortion.translate=2`` alone also turns on the paper-family defaults of the others: the run says so."""
    with caplog.at_level("INFO", logger="datamodules.base"):
        MNISTDataModule(data_dir=str(tmp_path), distortion={"translate": 2, "shear": 0})
    assert ("Training images distorted afresh every epoch (data.distortion): translate ±2 px, scale ±10%, squeeze "
            "±10%, shear ±0, 10% of the images left original each epoch") in caplog.text

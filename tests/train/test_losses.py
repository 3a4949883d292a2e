import pytest
import torch

from emseg.train.losses import segmentation_loss


def test_perfect_prediction_has_low_loss_and_mask_ignores():
    target = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])
    good = (target * 2 - 1) * 20
    assert float(segmentation_loss(good, target, loss="bce_dice")) < 1e-3
    bad = -good
    mask = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]])
    full = float(segmentation_loss(bad, target, loss="bce"))
    masked = float(segmentation_loss(bad, target, loss="bce", mask=mask))
    assert masked == pytest.approx(full)  # every voxel equally wrong: the mean is the same
    half = torch.tensor([[[20.0, 20.0, 20.0, 20.0]]])  # wrong only where target is 0
    assert float(segmentation_loss(half, target, loss="bce", mask=torch.tensor([[[0.0, 1.0, 1.0, 0.0]]]))) < 1e-6


def test_channel_losses_and_weights():
    logits = torch.zeros(1, 3, 4)
    target = torch.tensor([[[1.0, 0, 1, 0], [0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]]])
    mixed = segmentation_loss(logits, target, channels={"bce": [0, 1], "mse": [2]})
    assert float(mixed) == pytest.approx(float(torch.log(torch.tensor(2.0))) + 0.25, rel=1e-5)
    w = segmentation_loss(logits[:, :2], target[:, :2], loss="bce", channel_weights=[1.0, 0.0])
    assert float(w) == pytest.approx(float(torch.log(torch.tensor(2.0))), rel=1e-5)
    with pytest.raises(ValueError, match="loss must be one of"):
        segmentation_loss(logits, target, loss="focal")
    with pytest.raises(ValueError, match="same shape"):
        segmentation_loss(logits, target[:, :2])

"""Losses for every target: BCE (class-weighted, masked), soft Dice, BCE + Dice, MSE and L1
for distances — with per-channel weights and ignore masks — and the loss a training config
trains with (:func:`task_loss`). Torch tensors, channels first."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "segmentation_loss", "task_loss"]

LOSSES = ("bce", "dice", "bce_dice", "mse", "l1")


def _reduce(per_voxel, mask, channel_weights):
    """Mean over counted voxels per channel, then a weighted mean over channels."""
    dims = [0] + list(range(2, per_voxel.ndim))
    if mask is None:
        per_channel = per_voxel.mean(dim=dims)
    else:
        per_channel = (per_voxel * mask).sum(dim=dims) / mask.sum(dim=dims).clamp_min(1.0)
    if channel_weights is None:
        return per_channel.mean()
    w = torch.as_tensor(channel_weights, dtype=per_channel.dtype, device=per_channel.device)
    return (per_channel * w).sum() / w.sum()


def _soft_dice(prob, target, mask, channel_weights, eps=1.0):
    dims = [0] + list(range(2, prob.ndim))
    if mask is not None:
        prob, target = prob * mask, target * mask
    inter = (prob * target).sum(dim=dims)
    dice = (2 * inter + eps) / (prob.sum(dim=dims) + target.sum(dim=dims) + eps)
    loss = 1.0 - dice
    if channel_weights is None:
        return loss.mean()
    w = torch.as_tensor(channel_weights, dtype=loss.dtype, device=loss.device)
    return (loss * w).sum() / w.sum()


def segmentation_loss(logits, target, *, loss="bce_dice", mask=None, channel_weights=None, pos_weight=None,
                      channels=None):
    """Loss between network output ``logits`` (N, C, ...) and ``target`` (N, C, ...).

    Parameters
    ----------
    loss : {"bce", "dice", "bce_dice", "mse", "l1"}
        ``bce``/``dice`` act on sigmoid(logits); ``mse``/``l1`` on the raw output (for distances).
    mask : tensor, optional
        1 where a voxel counts, 0 where it is ignored (same shape as target or broadcastable).
    channel_weights : sequence of float, optional
        Relative weight of each channel.
    pos_weight : float or sequence, optional
        BCE weight of the positive class per channel (class balancing, e.g. sparse mitochondria).
    channels : dict, optional
        Mixed targets: ``{"bce_dice": [0, 1], "mse": [2]}`` applies each loss to its channels
        (the BCD target: mask and contour by BCE+Dice, distance by MSE); results are summed.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[[10.0, -10.0]]]); target = torch.tensor([[[1.0, 0.0]]])
    >>> float(segmentation_loss(logits, target, loss="bce")) < 1e-4
    True
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    if channels:
        total = 0.0
        for name, idx in channels.items():
            idx = list(idx)
            sub_w = None if channel_weights is None else [channel_weights[i] for i in idx]
            sub_m = None if mask is None else (mask[:, idx] if mask.shape[1] == logits.shape[1] else mask)
            total = total + segmentation_loss(logits[:, idx], target[:, idx], loss=name, mask=sub_m,
                                              channel_weights=sub_w, pos_weight=pos_weight)
        return total
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    if loss in ("mse", "l1"):
        per_voxel = (logits - target) ** 2 if loss == "mse" else (logits - target).abs()
        return _reduce(per_voxel, mask, channel_weights)
    pw = None
    if pos_weight is not None:
        pw = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device).reshape(
            [1, -1] + [1] * (logits.ndim - 2))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pw)
    bce_term = _reduce(bce, mask, channel_weights)
    if loss == "bce":
        return bce_term
    dice_term = _soft_dice(torch.sigmoid(logits), target, mask, channel_weights)
    return dice_term if loss == "dice" else bce_term + dice_term


def task_loss(config, out, target, mask, pos_weight=None):
    """The loss of a training ``config``: its task's own (:mod:`emseg.tasks`), or ``config.loss``
    (per channel group when the task splits it). Validation leaves out the class weighting
    (``pos_weight``) of training."""
    from ..tasks import get_task

    task = get_task(config.target)
    if task.loss is not None:
        return task.loss(out, target, mask)
    return segmentation_loss(out, target, loss=config.loss, mask=mask, pos_weight=pos_weight,
                             channels=task.channel_losses(config.task_params, config.loss))

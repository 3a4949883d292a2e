"""Validation during training: the loss and the foreground IoU (channel 0, :mod:`emseg.metrics`) of
the fixed validation patches, and the score the best checkpoint is kept by."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..runtime import memory_format
from ..tasks import get_task
from .batches import channels_first, make_target

__all__ = ["Validation", "validate", "validation_score"]


class Validation(NamedTuple):
    """Mean loss over the validation patches and IoU of channel 0 (sigmoid > 0.5) over their voxels."""

    loss: float
    iou: float


def validate(model, data, config, device) -> Validation:
    """Score ``model`` on the validation patches of ``data`` (:class:`~emseg.train.batches.TrainingData`).

    The model runs in eval mode without gradients and is back in training mode afterwards; the loss
    leaves out the class weighting of training (``pos_weight``).
    """
    import torch

    from ..metrics import semantic_scores
    from .losses import task_loss

    model.eval()
    losses, tp_fp_fn = [], np.zeros(3)
    with torch.no_grad():
        for raw, lab in data.validation:
            target, mask = make_target(np.asarray(lab), config, data.voxel_size, data.from_mask)
            x = torch.from_numpy(channels_first(data.normalization(raw), config)[None]).to(device)
            out = model(x.contiguous(memory_format=memory_format(x.ndim - 2)))
            t, m = torch.from_numpy(target[None]).to(device), torch.from_numpy(mask[None]).to(device)
            losses.append(float(task_loss(config, out, t, m)))
            pred = (torch.sigmoid(out[0, 0]) > 0.5).cpu().numpy()
            s = semantic_scores(target[0] > 0.5, pred, mask=mask[0] > 0) if mask[0].any() else None
            if s is not None:
                tp_fp_fn += [s.tp[0], s.fp[0], s.fn[0]]
    from .finetune import set_train_mode

    set_train_mode(model, config.freeze)
    iou = tp_fp_fn[0] / max(1.0, tp_fp_fn.sum())
    return Validation(float(np.mean(losses)), float(iou))


def validation_score(config, validation: Validation) -> float:
    """What the best checkpoint is kept by (higher is better): the IoU for tasks scored by it, else -loss.

    Examples
    --------
    >>> from emseg.train import TrainConfig
    >>> validation_score(TrainConfig(target="binary"), Validation(loss=0.3, iou=0.8))
    0.8
    >>> validation_score(TrainConfig(target="bc"), Validation(loss=0.3, iou=0.8))
    -0.3
    """
    return validation.iou if get_task(config.target).score == "iou" else -validation.loss

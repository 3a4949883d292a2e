"""Self-supervised pretraining on unlabelled volumes: masked-image modelling for the U-Net.

``pretrain: masked`` (``emseg pretrain RAW... OUT``): every step draws ``batch_size`` patches from the
``unlabelled`` volumes (each normalised on its own, flipped and rotated as the config allows),
hides random blocks covering :data:`MASK_RATIO` of each patch (replaced by noise around the mean),
and trains the network to restore the hidden intensities: the mean squared error on the hidden
voxels only, as a masked autoencoder does (He et al. 2022; for EM, e.g. the CEM500K / MAE
pretraining studies). It needs no labels and no second network, so it fits a CPU budget.

The result is a plain checkpoint marked ``pretrain: masked``; used as another run's ``init``, every
tensor but its head (which restores intensities) is loaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PRETRAIN", "MASK_RATIO", "block_mask", "pretrain_loss"]

PRETRAIN = ("none", "masked")
MASK_RATIO = 0.5


def block_mask(shape, rng, ratio=MASK_RATIO, blocks=8):
    """A boolean mask of ``shape`` (spatial) made of random blocks (``shape // blocks`` per axis, at least
    1; z of a 3D patch in blocks of a quarter of its depth) covering about ``ratio`` of it.

    Examples
    --------
    >>> m = block_mask((64, 64), np.random.default_rng(0))
    >>> m.shape, bool(0.4 < m.mean() < 0.6)
    ((64, 64), True)
    """
    size = [max(1, s // blocks) for s in shape]
    if len(shape) == 3:
        size[0] = max(1, shape[0] // 4)
    grid = [-(-s // b) for s, b in zip(shape, size)]
    coarse = rng.random(grid) < ratio
    for axis, b in enumerate(size):
        coarse = np.repeat(coarse, b, axis=axis)
    return coarse[tuple(slice(0, s) for s in shape)]


def pretrain_loss(run, progress):
    """The masked-restoration loss of the step ``progress.step`` (its batch seeded by ``(seed, step)``)."""
    import torch

    from .semi import draw_unlabelled

    config, opt = run.config, run.optimization
    rng = np.random.default_rng([config.seed, progress.step, 2])
    clean = draw_unlabelled(run.data.unlabelled, config, rng, strong=False)[0]
    mask = np.stack([block_mask(clean.shape[2:], rng)[None] for _ in range(len(clean))])
    noise = (rng.standard_normal(clean.shape) * clean.std() * 0.1 + clean.mean()).astype(np.float32)
    masked = np.where(mask, noise, clean).astype(np.float32)
    x, target, m = (torch.from_numpy(a).to(run.device) for a in (masked, clean, mask.astype(np.float32)))
    with torch.autocast(run.device.type, dtype=opt.amp_dtype, enabled=opt.use_amp):
        out = run.model(x.contiguous(memory_format=run.memory_format))
    return (((out.float() - target) ** 2) * m).sum() / m.sum().clamp_min(1.0)

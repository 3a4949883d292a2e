"""The signed distance transform (SDT) target and its post-processing, as one task of the registry.

The network regresses, for every voxel, ``tanh(d / scale)`` where ``d`` is the Euclidean distance
(in the units of the voxel size) to the nearest voxel of another label, positive inside objects and
negative on background — the signed distance target PyTorch Connectomics trains with a tanh output
and an MSE loss (its ``DT`` target with ``signed`` mode; Lin et al. 2021 use the same map as the
"D" of BCD). emseg stores predictions as probabilities in [0, 1], so the target is encoded as
``(1 + tanh(d / scale)) / 2``: 0.5 on object borders, towards 1 at object centres, towards 0 far
from objects. Training applies a sigmoid and an MSE (``sigmoid(x) = (1 + tanh(x / 2)) / 2``:
the same model as PyTorch Connectomics' tanh up to a factor in the last layer).

Instances: seeds are the connected regions above ``seed_threshold`` (object cores, at least
``min_seed_size`` voxels), flooded over ``-sdt`` within ``sdt > mask_threshold``; touching objects
separate along the valley the distance has between their cores.
"""

from __future__ import annotations

import numpy as np

from .task import Task

__all__ = ["sdt_target", "sdt_watershed", "sdt_loss", "TASK"]


def sdt_target(labels, *, scale=None, voxel_size=None, ignore_label=None):
    """The SDT target of ``labels``: ``(1 + tanh(d / scale)) / 2``, ``d`` signed (> 0 inside objects).

    Parameters
    ----------
    labels : ndarray of int, 2D (y, x) or 3D (z, y, x)
        Instance labels, 0 = background.
    scale : float, optional
        Distance scale in the units of ``voxel_size``; default 8 voxels of the finest axis.
    voxel_size : sequence of float, optional
        Voxel size (zyx) used as distance sampling; default isotropic 1.
    ignore_label : int, optional
        Voxels of this label get ``mask`` 0.

    Returns
    -------
    emseg.train.targets.Target
        float32 ``target`` and ``mask`` of shape ``(1, *labels.shape)``; target in (0, 1).

    Examples
    --------
    >>> t = sdt_target(np.array([[0, 0, 1, 1, 1, 0]]), scale=1.0)
    >>> np.round(t.target[0], 2)
    array([[0.02, 0.12, 0.88, 0.98, 0.88, 0.12]], dtype=float32)
    """
    from ..train.targets import Target, bcd_target

    t = bcd_target(labels, mode="signed", scale=scale, voxel_size=voxel_size, ignore_label=ignore_label)
    signed, valid = t.target[2:3], t.mask[2:3]
    return Target(((1 + signed) / 2 * valid).astype(np.float32), valid.copy())


def sdt_watershed(sdt, *, seed_threshold=0.75, mask_threshold=0.5, min_seed_size=8, min_size=0):
    """Instances from an SDT prediction (in [0, 1], 0.5 on object borders).

    Examples
    --------
    >>> sdt = np.array([[0.1, 0.6, 0.9, 0.6, 0.55, 0.6, 0.9, 0.6, 0.1]])
    >>> sdt_watershed(sdt, min_seed_size=1)
    array([[0, 1, 1, 1, 1, 2, 2, 2, 0]], dtype=uint8)
    """
    from ..instances.components import check_probability, connected_components, remove_small_objects
    from ..instances.watershed import seeded_watershed

    p = check_probability(sdt, "sdt")
    seeds = connected_components(p, seed_threshold)
    if min_seed_size > 1:
        seeds = remove_small_objects(seeds, min_seed_size)
    return seeded_watershed(-p, seeds, p > mask_threshold, min_size=min_size)


def sdt_loss(logits, target, mask):
    """Masked mean squared error between ``sigmoid(logits)`` and the encoded SDT target (torch tensors)."""
    import torch

    err = (torch.sigmoid(logits) - target) ** 2 * mask
    return err.sum() / mask.sum().clamp_min(1.0)


def _method(pred, offsets=None, **params):
    return sdt_watershed(pred[0], **params)


_PROBABILITY = ("real", 0, 1, False, True)
METHOD = dict(
    channels=1, halo=(16, 32, 32), params=dict(seed_threshold=0.75, mask_threshold=0.5, min_seed_size=8),
    ranges={"seed_threshold": _PROBABILITY + ("seeds are the regions with sdt > seed_threshold",),
            "mask_threshold": _PROBABILITY + ("objects cover sdt > mask_threshold; 0.5 is the predicted border",),
            "min_seed_size": ("int", 0, None, False, False, "voxels")},
    fn=_method, doc="signed distance (SDT) -> seeded watershed on the distance")
"""The post-processing method ``sdt`` (an entry of :data:`emseg.instances.METHODS`)."""


def _check_scale(params):
    scale = params.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        raise ValueError(f"sdt parameter scale={scale!r} must be a positive distance (in the units of the voxel size) "
                         "or null for 8 voxels")
    return scale


def _make_target(labels, params, voxel_size, ignore_label):
    return sdt_target(labels, scale=_check_scale(params), voxel_size=voxel_size, ignore_label=ignore_label)


TASK = Task("sdt", "signed distance to the object border, tanh-scaled (PyTorch Connectomics' DT target)",
            channels=lambda p: 1, params={"scale": None}, target=_make_target, loss=sdt_loss, check=_check_scale,
            method=lambda p: ("sdt", {}), metrics="instance", score="iou", instances=True, methods={"sdt": METHOD})
"""The registry entry (:data:`emseg.tasks.TASKS`)."""

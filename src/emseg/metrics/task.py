"""Which comparison two volumes call for: semantic masks, object instances or dense neuron labels.

A few chunks of each volume are read (the regions :func:`emseg.probabilities.sample_stats` reads,
more when they show only two values), so a multi-gigavoxel volume costs a few small reads.

==============  ================================================================================
kind            seen as
==============  ================================================================================
probabilities   float data (a float 0/1 mask too), emseg's uint8 prediction, a smooth uint8 map
mask            bool, or integers holding 0 and one of 1 or 255
instance        integer ids, mostly background, objects mostly not touching another id
neurons         integer ids covering most voxels, neighbouring ids touching
==============  ================================================================================

A label volume is measured on the sample: ``coverage``, the fraction of nonzero voxels, and
``contact``, of the neighbouring voxel pairs whose labels differ, the fraction between two ids
(not an id and background). Measured on ``../shared/data``: UroCell mitochondria instances
1-7% coverage and no contact, the empanada panoptic tile 43% and 2%; FlyEM medulla neurons 100%
and 100%; all far from the lines at 50%. Between them a volume is ambiguous: ids that touch among
much background, or ids covering most voxels yet separated by background, like the gala neuron
labels (93% coverage, no contact: 0 marks the membranes between them). Those lean to neurons when
most of their background lies next to an id (thin membranes: 94-99% for gala) or their ids
touch, and to instances otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["TaskChoice", "infer_task"]

_DENSE = 0.5        # coverage and contact at or above: dense neuron labels; both below: instances
_THIN = 0.5         # fraction of background voxels next to an id: thin membranes between cells
_MANY = 50          # more distinct values than this, and not flat: an image or a probability map
_NOUN = {"instance": "object instances", "neurons": "dense neuron labels"}


class TaskChoice(NamedTuple):
    """The task :func:`infer_task` chose and why, as a short phrase for the user."""

    task: str
    reason: str


class VolumeKind(NamedTuple):
    """What one volume holds (:func:`describe`): ``kind`` (probabilities, mask, instance, neurons,
    image, other), whether it settles the task alone (``clear``), a phrase saying why, and the
    number of nonzero ids seen in the sampled chunks."""

    kind: str
    clear: bool
    phrase: str
    ids: int = 0


def infer_task(gt, pred) -> TaskChoice:
    """The task to evaluate ``pred`` against ``gt`` with, from a few sampled chunks of each.

    Parameters
    ----------
    gt, pred : array-like
        numpy arrays or lazy volumes (anything with ``shape``, ``dtype`` and ``__getitem__``;
        ``chunks`` when present places the samples inside storage chunks).

    Returns
    -------
    TaskChoice
        ``task``: "semantic", "instance" or "neurons" (never "membranes": ISBI-style 0/255 cell
        maps read as masks); ``reason``: what was found, e.g. "gt holds 412 touching ids covering
        97% of sampled voxels: dense neuron labels".

    Notes
    -----
    gt decides first: a probability map or a mask is "semantic"; label ids are "instance" or
    "neurons" (see the module notes). A pred that is a probability map makes the task
    "semantic" whatever gt holds, since ids cannot be compared with probabilities. Only when gt
    is ambiguous (an image, a label volume between instances and neurons) does pred's kind
    decide; when both are, gt's leaning does. Two label volumes are never "semantic".

    Examples
    --------
    >>> infer_task(np.array([0, 255, 255, 0], np.uint8), np.array([0.1, 0.9, 0.8, 0.2]))
    TaskChoice(task='semantic', reason='gt is a mask (values 0 and 255)')
    >>> gt = np.zeros((32, 32), np.uint32); gt[2:6, 2:6], gt[20:26, 10:14] = 1, 2
    >>> infer_task(gt, gt)
    TaskChoice(task='instance', reason='gt holds 2 separate ids covering 4% of sampled voxels: object instances')
    """
    g = describe(gt, "gt")
    if g.kind in ("probabilities", "mask"):
        return TaskChoice("semantic", g.phrase)
    p = describe(pred, "pred")
    # a map holds no objects to match; nor, against separate organelles, does a 0/1 mask (against dense
    # neuron ids a single-valued pred is one segment that merges everything: VOI says how bad that is)
    if p.kind == "probabilities" or (p.kind == "mask" and g.kind == "instance"):
        if g.kind not in _NOUN:
            return TaskChoice("semantic", f"{g.phrase}; {p.phrase}")
        return TaskChoice("semantic", f"{p.phrase}: foreground scores (gt holds {g.ids} ids; segment pred, e.g. "
                          f"emseg postprocess, to score {_NOUN[g.kind]})")
    if g.clear:
        return TaskChoice(g.kind, g.phrase)
    if p.clear or p.kind == "mask" or g.kind not in _NOUN:  # gt is ambiguous: pred decides
        return TaskChoice(p.kind if p.kind in _NOUN else "semantic", f"{g.phrase}; {p.phrase}")
    return TaskChoice(g.kind, f"{g.phrase}; {p.phrase}: read as {_NOUN[g.kind]}")


def describe(vol, role="volume") -> VolumeKind:
    """What ``vol`` holds (its :class:`VolumeKind`), from its dtype and a few sampled chunks."""
    from ..probabilities import is_prediction

    dtype = np.dtype(vol.dtype)
    if dtype == bool:
        return VolumeKind("mask", True, f"{role} is a mask (bool)")
    if dtype.kind not in "uif":
        return VolumeKind("other", False, f"{role} has dtype {dtype}, neither labels nor probabilities")
    if dtype.kind == "f":
        return VolumeKind("probabilities", True, f"{role} holds probabilities ({dtype})")
    if dtype == np.uint8 and is_prediction(vol):
        return VolumeKind("probabilities", True, f"{role} holds probabilities (emseg's prediction, uint8)")
    blocks = _sample(vol)
    values = np.unique(np.concatenate([b.ravel() for b in blocks]))
    if values.size <= 2 and set(values.tolist()) <= ({0, 1} if 1 in values else {0, 255}):
        shown = " and ".join(str(v) for v in values.tolist()) or "none"
        return VolumeKind("mask", True, f"{role} is a mask (value{'s' if values.size > 1 else ''} {shown})")
    if values.size > _MANY:
        kind = _textured(vol, role)
        if kind is not None:
            return kind
    return _labels(blocks, values, role)


def _sample(vol) -> list[np.ndarray]:
    """A few regions of ``vol``, each inside one storage chunk; more when they show only two values."""
    from ..sampling import MORE_REGIONS as _MORE
    from ..sampling import REGIONS as _REGIONS
    from ..sampling import sample_regions as _regions

    chunks = getattr(vol, "chunks", None)
    boxes = _regions(vol.shape, chunks, _REGIONS)
    blocks = [np.asarray(vol[b]) for b in boxes]
    if np.unique(np.concatenate([b.ravel() for b in blocks])).size <= 2:  # sparse objects: look further
        blocks += [np.asarray(vol[b]) for b in _regions(vol.shape, chunks, _MORE, first=_REGIONS) if b not in boxes]
    return blocks


def _textured(vol, role) -> VolumeKind | None:
    """An image (raw EM) or a uint8 probability map: many values that are not flat like labels."""
    from ..probabilities import sample_stats

    s = sample_stats(vol, role)
    if raw_like_labels(s):
        return VolumeKind("image", False, f"{role} looks like an image, not labels ({s.distinct} distinct values)")
    if smooth_map(s):
        return VolumeKind("probabilities", True, f"{role} is a probability map (uint8, {s.distinct} values, smooth)")
    return None


def raw_like_labels(s) -> bool:
    """An integer sample (:class:`emseg.probabilities.SampleStats`) textured like an image, not flat."""
    if s.dtype == np.uint8:
        return s.distinct > _MANY and s.looks_like_raw_em
    return s.distinct > _MANY and s.equal < 0.5


def smooth_map(s) -> bool:
    """A uint8 sample that is a probability map ``round(255 p)``: many values, not flat like labels."""
    return s.dtype == np.uint8 and s.flat is not None and s.flat < 0.8 and s.distinct > _MANY


def _labels(blocks, values, role) -> VolumeKind:
    """Coverage, contact and membrane thinness of a label sample (see the module notes)."""
    n = fg = borders = id_pairs = background = near = 0
    for b in blocks:
        on = b != 0
        n, fg = n + b.size, fg + int(np.count_nonzero(on))
        touches = np.zeros(b.shape, bool)
        for axis in range(b.ndim):
            if b.shape[axis] < 2:
                continue
            lo = (slice(None),) * axis + (slice(None, -1),)
            hi = (slice(None),) * axis + (slice(1, None),)
            differ = b[lo] != b[hi]
            borders += int(np.count_nonzero(differ))
            id_pairs += int(np.count_nonzero(differ & on[lo] & on[hi]))
            if axis >= b.ndim - 2:  # in-plane neighbours: is the background a thin membrane?
                touches[lo] |= on[hi]
                touches[hi] |= on[lo]
        background += b.size - int(np.count_nonzero(on))
        near += int(np.count_nonzero(touches & ~on))
    ids = int(np.count_nonzero(values))
    coverage, contact = fg / max(n, 1), id_pairs / borders if borders else 0.0
    thin = near / background if background else 1.0
    found = f"{ids} {'touching' if contact >= _DENSE else 'separate'} id{'s' if ids != 1 else ''}"
    phrase = f"{role} holds {found} covering {coverage:.0%} of sampled voxels"
    if coverage >= _DENSE and contact >= _DENSE:
        return VolumeKind("neurons", True, f"{phrase}: dense neuron labels", ids)
    if coverage < _DENSE and contact < _DENSE:
        return VolumeKind("instance", True, f"{phrase}: object instances", ids)
    if contact < _DENSE:
        phrase += f", {thin:.0%} of the background next to an id"
    kind = "neurons" if contact >= _DENSE or thin >= _THIN else "instance"
    return VolumeKind(kind, False, phrase, ids)

"""Affinities → neurons: a watershed oversegmentation merged by mean affinity (waterz).

waterz (Funke et al. 2019, the agglomeration behind the FlyEM/FAFB segmentations) builds the
fragments with its own affinity watershed (or takes ours), then merges regions greedily in order
of the mean affinity of the voxel pairs along their common boundary, updating the means as
regions grow, until the best remaining boundary is below ``threshold``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

from .components import check_probability
from .relabel import relabel_sequential

__all__ = ["agglomerate", "nearest_affinities"]

_NEAREST = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


def nearest_affinities(affinities, offsets) -> np.ndarray:
    """The three nearest-neighbour channels (z, y, x) of ``affinities``, as a float32 (3, z, y, x) array.

    2D affinities (2, y, x) with offsets ``[[-1, 0], [0, -1]]`` become (3, 1, y, x) with zero z-affinity;
    so do the z channel of section affinities on a volume (every offset ``[0, dy, dx]``, as a 2D model on
    sections predicts): the sections are not linked.
    """
    affinities = np.asarray(affinities)
    offsets = [tuple(int(v) for v in o) for o in offsets]
    check_affinities(affinities, offsets)
    ndim = affinities.ndim - 1
    wanted = _NEAREST if ndim == 3 else ((-1, 0), (0, -1))
    sections = ndim == 3 and all(o[0] == 0 for o in offsets)
    missing = [o for o in wanted if o not in offsets and not (sections and o == _NEAREST[0])]
    if missing:
        raise ValueError(f"agglomeration needs the nearest-neighbour offsets {list(wanted)}; missing {missing} "
                         f"in offsets {offsets}")
    if sections:
        nn = check_probability(np.stack([affinities[offsets.index(o)] for o in wanted[1:]]), "affinities")
        return np.ascontiguousarray(np.concatenate([np.zeros((1,) + nn.shape[1:], np.float32), nn]))
    nn = check_probability(np.stack([affinities[offsets.index(o)] for o in wanted]), "affinities")
    if ndim == 2:
        nn = np.concatenate([np.zeros((1,) + nn.shape[1:], np.float32), nn])[:, None]
    return np.ascontiguousarray(nn)


def check_affinities(affinities, offsets):
    """Raise ValueError unless ``affinities`` is (C, *spatial) with one channel per offset (the values are
    read by the one rule of :mod:`emseg.probabilities` where they are used)."""
    if affinities.ndim not in (3, 4):
        raise ValueError(f"affinities must be (channels, y, x) or (channels, z, y, x); got shape {affinities.shape}")
    if affinities.shape[0] != len(offsets):
        raise ValueError(f"affinities have {affinities.shape[0]} channels but {len(offsets)} offsets were given; "
                         "pass one offset per channel")
    bad = [o for o in offsets if len(o) != affinities.ndim - 1]
    if bad:
        raise ValueError(f"offsets must have {affinities.ndim - 1} entries each; got {bad[0]}")


def agglomerate(affinities, offsets=_NEAREST, *, threshold=0.5, fragments=None,
                scoring="OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>", fragment_low=1e-4,
                fragment_high=0.9999) -> np.ndarray:
    """Merge a watershed oversegmentation of ``affinities`` by mean affinity until ``threshold``.

    Parameters
    ----------
    affinities : ndarray (C, z, y, x) or (C, y, x), float in [0, 1] or uint8 (255 = 1)
        ``affinities[c, u]``: probability that ``u`` and ``u + offsets[c]`` are one object.
        Only the nearest-neighbour channels are used; long-range ones are ignored.
    offsets : list of offsets, one per channel
    threshold : float in [0, 1]
        Regions are merged while the mean affinity of their boundary is at least ``threshold``.
    fragments : ndarray of int, optional
        Your own oversegmentation (e.g. :func:`~emseg.instances.boundary_watershed`); by default
        waterz's affinity watershed with ``fragment_low``/``fragment_high``.
    scoring : str
        waterz's merge function (its precompiled default is the mean affinity).

    Returns
    -------
    labels : ndarray of the spatial shape, 1..n in the smallest unsigned dtype

    Examples
    --------
    >>> affs = np.ones((3, 1, 4, 6), np.float32)
    >>> affs[2, :, :, 3] = 0.05          # a weak x-boundary between columns 2 and 3
    >>> agglomerate(affs, threshold=0.5)[0, 0]
    array([1, 1, 1, 2, 2, 2], dtype=uint8)
    """
    import waterz

    affinities = np.asarray(affinities)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold!r} must be an affinity in [0, 1] (regions merge while the mean "
                         "affinity of their boundary is at least threshold)")
    nn = nearest_affinities(affinities, offsets)
    frag = None
    if fragments is not None:
        frag = np.ascontiguousarray(np.asarray(fragments).reshape(nn.shape[1:]), dtype=np.uint64)
    with _quiet_stdout():  # waterz's C++ core reports every step on stdout
        seg = next(iter(waterz.agglomerate(nn, [1.0 - float(threshold)], fragments=frag,
                                           aff_threshold_low=fragment_low, aff_threshold_high=fragment_high,
                                           scoring_function=scoring)))
        seg = np.array(seg, copy=True)  # waterz yields one buffer that it keeps modifying
    seg = seg.reshape(affinities.shape[1:])
    return relabel_sequential(seg)


_QUIET = {"lock": threading.Lock(), "depth": 0, "saved": None}


@contextlib.contextmanager
def _quiet_stdout():
    """Silence stdout (descriptor 1 and ``sys.stdout``) while any thread is inside (counted, so threads nest)."""

    with _QUIET["lock"]:
        if _QUIET["depth"] == 0:
            sys.stdout.flush()
            _QUIET["saved"] = os.dup(1)
            _QUIET["py"], sys.stdout = sys.stdout, open(os.devnull, "w")
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET["lock"]:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                os.dup2(_QUIET["saved"], 1)
                os.close(_QUIET["saved"])
                sys.stdout.close()
                sys.stdout = _QUIET["py"]

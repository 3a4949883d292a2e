"""One rule for reading probabilities, shared by every module that takes them.

=========================  ==================================================================
dtype                      read as
=========================  ==================================================================
float (16, 32, 64 bit)     probabilities; every value must lie in [0, 1] (NaN, ±inf refused)
uint8                      emseg's quantised probabilities ``round(255 p)``: ``value / 255``
bool                       a mask: 0 or 1
any other integer dtype    refused: label ids are not probabilities
=========================  ==================================================================

:func:`as_probabilities` applies the rule to an array (a block). :func:`check_probability_source`
looks once, at entry, at a few chunks of a whole volume for what the rule cannot see block by
block: a 0/1 mask stored as uint8 (it would read as p <= 1/255), raw EM or a label volume given
where probabilities are expected. :func:`check_finite` refuses NaN/inf network outputs.

How raw EM, probability maps and label volumes differ (measured with :func:`sample_stats` on the
real data in ``../shared/data`` and on emseg's synthetic EM; ``tests/reliability/test_values.py``
keeps checking it):

* raw EM (Lucchi, ISBI 2012 train and test, FlyEM medulla, gala train and test, CDeep3M training
  and validation, synthetic; as uint8, as float / 255 and min-max scaled): 92-100% of the sampled
  voxels are mid-grey (``0.1 <= p <= 0.9``), spread over 9-13 of 16 grey-level bins (each holding
  at least 2% of them), and only 2-5% of mid-grey voxels equal their x neighbour (noise).
* probability maps: the four shipped models' outputs on held-out data, every channel, are
  0.3-25% mid-grey; the ground-truth masks and boundaries of those datasets blurred with sigma
  1-8 (and their complements, and uint8 round(255 p)) at most 77% (ISBI membranes, sigma 8).
* label volumes: mid-grey too when their ids fall in 26..229, but flat: 95-96% of mid-grey voxels
  equal their neighbour (FlyEM, gala neuron ids modulo 256), against at most 29% for a blurred map.

So "raw EM" is more than 85% mid-grey, spread over at least 4 bins, and not flat (below 80% equal
neighbours): the greyest probability map (77%) and the least grey raw EM (92%) lie 8 and 7 points
from that line. "labels" (uint8 only) is at least 20% mid-grey and at least 80% flat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .sampling import MORE_REGIONS as _MORE
from .sampling import REGIONS as _REGIONS
from .sampling import sample_regions as _regions

__all__ = ["as_probabilities", "check_probability_source", "check_raw_source", "check_finite", "is_prediction",
           "sample_stats", "SampleStats"]

_MID = (26, 229)            # 0.1 <= p <= 0.9 in round(255 p)
_RAW_MID = 0.85             # raw EM: more than this fraction of sampled voxels mid-grey ...
_RAW_BINS = 4               # ... spread over at least this many of 16 grey-level bins (>= 2% each) ...
_FLAT = 0.8                 # ... and less than this fraction of mid-grey neighbours equal (labels: more)
_LABEL_MID = 0.2            # a uint8 label volume: at least this much mid-range, and flat
_FIX = ("expected a probability map: the output of emseg predict (run emseg predict, or emseg segment "
        "from the raw volume)")


def as_probabilities(data, name="probabilities") -> np.ndarray:
    """``data`` read as probabilities by the one rule; float32 (no copy for float32 input).

    Parameters
    ----------
    data : array-like
        float in [0, 1], uint8 = ``round(255 p)``, or bool.
    name : str
        What ``data`` is, for the error message (an argument, a file, a block).

    Raises
    ------
    ValueError
        Float values outside [0, 1], NaN or infinite (the message gives the range and counts);
        an integer dtype other than uint8 (label ids).
    TypeError
        A dtype that is not a number.

    Examples
    --------
    >>> as_probabilities(np.array([0, 128, 255], np.uint8))
    array([0.       , 0.5019608, 1.       ], dtype=float32)
    >>> as_probabilities(np.array([True, False]))
    array([1., 0.], dtype=float32)
    >>> as_probabilities(np.array([0.5, 2.0]), "pred")
    Traceback (most recent call last):
    ...
    ValueError: pred must hold probabilities in [0, 1]; found values in [0.5, 2] (1 of 2 values outside [0, 1]): values above 1 are not probabilities (raw intensities, or a 0/255 mask stored as float?); pass a probability map
    >>> as_probabilities(np.array([1, 2], np.uint32), "seg.zarr")
    Traceback (most recent call last):
    ...
    ValueError: seg.zarr holds integer values (dtype uint32, e.g. a label volume), not probabilities: pass a probability map (float in [0, 1], or uint8 = round(255 p)) or a bool mask
    """
    a = np.asarray(data)
    if a.dtype == np.uint8:
        return np.true_divide(a, np.float32(255), dtype=np.float32)
    if a.dtype == bool:
        return a.astype(np.float32)
    _check_dtype(a.dtype, name)
    f = a.astype(np.float32, copy=False)
    if f.size:
        lo, hi = f.min(), f.max()
        if not (lo >= 0 and hi <= 1):  # False for NaN too
            raise ValueError(_range_message(f, name))
    return f


def _check_dtype(dtype, name):
    dtype = np.dtype(dtype)
    if dtype in (np.uint8, bool):
        return
    if dtype.kind in "ui":
        raise ValueError(f"{name} holds integer values (dtype {dtype}, e.g. a label volume), not probabilities: "
                         "pass a probability map (float in [0, 1], or uint8 = round(255 p)) or a bool mask")
    if dtype.kind != "f":
        raise TypeError(f"{name} has dtype {dtype}; probabilities are float in [0, 1], uint8 = round(255 p) or bool")


def _range_message(f, name):
    finite = np.isfinite(f)
    n_nan = int(np.count_nonzero(np.isnan(f)))
    n_inf = int(f.size - np.count_nonzero(finite)) - n_nan
    vals = f[finite]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (float("nan"), float("nan"))
    outside = int(np.count_nonzero((vals < 0) | (vals > 1)))
    counts = [f"{outside} of {f.size} values outside [0, 1]"] if outside else []
    counts += [f"{n_nan} NaN"] if n_nan else []
    counts += [f"{n_inf} infinite"] if n_inf else []
    if n_nan or n_inf:
        hint = "non-finite values come from a broken input or network; check the raw volume and the checkpoint"
    elif lo < 0:
        hint = "negative values are not probabilities (logits? apply a sigmoid); pass a probability map"
    else:
        hint = ("values above 1 are not probabilities (raw intensities, or a 0/255 mask stored as float?); "
                "pass a probability map")
    return f"{name} must hold probabilities in [0, 1]; found values in [{lo:g}, {hi:g}] ({', '.join(counts)}): {hint}"


def check_finite(array, what, hint=None):
    """Raise ValueError when the float ``array`` holds NaN or infinite values; return it unchanged.

    ``what`` names the array in the message ("the network output of block 3"). Costs a min and a
    max over the array when everything is finite.

    Examples
    --------
    >>> check_finite(np.array([0.5, np.nan, np.nan]), "the network output of block 3")
    Traceback (most recent call last):
    ...
    ValueError: the network output of block 3 holds 2 NaN values (of 3): the checkpoint's weights or the input are broken (look for NaN in the raw volume and the checkpoint)
    """
    a = np.asarray(array)
    if a.dtype.kind not in "fc" or a.size == 0:
        return array
    lo, hi = np.min(a), np.max(a)
    if np.isfinite(lo) and np.isfinite(hi):
        return array
    n_nan = int(np.count_nonzero(np.isnan(a)))
    n_inf = int(np.count_nonzero(np.isinf(a)))
    kinds = " and ".join(s for s in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else "") if s)
    hint = hint or ("the checkpoint's weights or the input are broken (look for NaN in the raw volume and the "
                    "checkpoint)")
    raise ValueError(f"{what} holds {kinds} values (of {a.size}): {hint}")


def is_prediction(vol) -> bool:
    """True when ``vol`` carries emseg's marker of a prediction: the attribute ``emseg`` =
    ``{"kind": "prediction", ...}`` (a dict or its JSON) on the volume or on its storage array."""
    for owner in (vol, getattr(vol, "_array", None)):
        try:
            marker = owner.attrs.get("emseg") if owner is not None and hasattr(owner, "attrs") else None
        except Exception:  # noqa: BLE001 - unreadable attributes are no marker
            marker = None
        if isinstance(marker, (str, bytes)):
            try:
                marker = json.loads(marker)
            except ValueError:
                marker = None
        if isinstance(marker, dict) and marker.get("kind") == "prediction":
            return True
    return False


@dataclass(frozen=True)
class SampleStats:
    """What a few sampled chunks of a volume look like; values as ``round(255 p)`` grey levels.

    ``mid``: fraction of voxels with ``0.1 <= p <= 0.9``; ``bins``: how many of 16 grey-level bins
    hold at least 2% of the voxels; ``flat``: fraction of mid-grey voxels equal to their x neighbour
    (None without mid-grey voxels); ``equal``: fraction of all x-neighbour pairs that are equal,
    ``equal_nonzero`` the same among pairs whose first voxel is not 0 (None without any);
    ``distinct``: number of distinct values; ``only_01``: a uint8 sample of 0s and 1s (at least one 1).
    """

    dtype: np.dtype
    n: int
    regions: int
    mid: float
    bins: int
    flat: float | None
    equal: float
    equal_nonzero: float | None
    distinct: int
    only_01: bool

    @property
    def looks_like_raw_em(self) -> bool:
        return self.mid > _RAW_MID and self.bins >= _RAW_BINS and (self.flat is None or self.flat < _FLAT)

    @property
    def looks_like_labels(self) -> bool:
        return self.mid >= _LABEL_MID and self.flat is not None and self.flat >= _FLAT

    def raw_em_reason(self) -> str:
        return (f"{self.mid:.0%} of sampled voxels are mid-grey, spread over {self.bins} of 16 grey levels, "
                f"and {1 - (self.flat or 0):.0%} differ from their neighbour")


def _grey(block):
    """A sampled block as uint8 grey levels round(255 p) (floats already checked to lie in [0, 1])."""
    if block.dtype == np.uint8:
        return block
    if block.dtype == bool:
        return block.view(np.uint8) * np.uint8(255)
    if block.dtype.kind == "f":
        return np.rint(block.astype(np.float32) * 255).astype(np.uint8)
    return block  # other integers: kept as they are (labels)


def sample_stats(vol, name="volume", *, regions=_REGIONS) -> SampleStats:
    """Read a few chunks of ``vol`` (any array-like with ``shape``, ``dtype``, ``__getitem__``) and
    describe them (:class:`SampleStats`). Float samples must lie in [0, 1] (ValueError naming ``name``).
    A uint8 sample of only 0s and 1s is read again over more regions before it is called so."""
    dtype = np.dtype(vol.dtype)
    chunks = getattr(vol, "chunks", None)
    boxes = _regions(vol.shape, chunks, regions)
    blocks = [np.asarray(vol[b]) for b in boxes]
    if dtype == np.uint8 and max((int(b.max(initial=0)) for b in blocks), default=0) <= 1:
        more = _regions(vol.shape, chunks, _MORE, first=regions)
        blocks += [np.asarray(vol[b]) for b in more if b not in boxes]
    if dtype.kind == "f":
        for b in blocks:
            if b.size and not (b.min() >= 0 and b.max() <= 1):
                raise ValueError(_range_message(b.astype(np.float32, copy=False), f"{name} (in sampled chunks)"))
    grey = [_grey(b) for b in blocks]
    n = sum(g.size for g in grey)
    lo, hi = _MID
    mid = sum(int(np.count_nonzero((g >= lo) & (g <= hi))) for g in grey)
    pairs = mid_pairs = flat = equal = nz_pairs = nz_equal = 0
    for g in grey:
        if g.ndim and g.shape[-1] > 1:
            left, right = g[..., :-1], g[..., 1:]
            same = left == right
            inside = (left >= lo) & (left <= hi)
            pairs += same.size
            equal += int(np.count_nonzero(same))
            mid_pairs += int(np.count_nonzero(inside))
            flat += int(np.count_nonzero(same & inside))
            nonzero = left != 0
            nz_pairs += int(np.count_nonzero(nonzero))
            nz_equal += int(np.count_nonzero(same & nonzero))
    if grey and grey[0].dtype == np.uint8:
        counts = sum(np.bincount(g.ravel(), minlength=256) for g in grey)
        bins = int(np.count_nonzero(counts.reshape(16, 16).sum(1) >= 0.02 * max(n, 1)))
        distinct = int(np.count_nonzero(counts))
        only_01 = dtype == np.uint8 and counts[1] > 0 and counts[2:].sum() == 0
    else:
        values = np.unique(np.concatenate([g.ravel() for g in grey])) if grey else np.zeros(0)
        bins, distinct, only_01 = 0, int(values.size), False
    return SampleStats(dtype, n, len(grey), mid / max(n, 1), bins, flat / mid_pairs if mid_pairs else None,
                       equal / pairs if pairs else 1.0, nz_equal / nz_pairs if nz_pairs else None, distinct,
                       bool(only_01))


def check_probability_source(vol, name="probabilities", *, trusted=False, fix=None) -> None:
    """Refuse, once at entry, a volume that the one rule would read wrongly; reads a few chunks.

    Refused: an integer dtype other than uint8 and bool; float values outside [0, 1] in the sample;
    (a) a uint8 volume holding only 0 and 1 (a mask that would read as p <= 1/255: store it as bool
    or 0/255); unless ``trusted``, (b) a volume that looks like raw EM and (c) a uint8 volume that
    looks like labels (see the module notes for the thresholds). A volume marked as emseg's own
    prediction (:func:`is_prediction`) is accepted without looking.

    Parameters
    ----------
    vol : array-like (numpy, h5py, zarr, :class:`emseg.io.Volume`)
    name : str
        The argument or file, for the message.
    trusted : bool
        The caller knows ``vol`` holds probabilities: skip (b) and (c).
    fix : str, optional
        What to do instead, for the raw-EM message (default: run emseg predict or emseg segment).

    Examples
    --------
    >>> check_probability_source(np.array([[0, 1], [1, 0]], np.uint8), "mask.tif")
    Traceback (most recent call last):
    ...
    ValueError: mask.tif is a uint8 volume holding only 0 and 1: uint8 is read as round(255 p), so this 0/1 mask would read as probabilities of at most 1/255 (no foreground); store the mask as bool or as 0/255
    """
    dtype = np.dtype(vol.dtype)
    if dtype == bool:
        return
    _check_dtype(dtype, name)
    if is_prediction(vol):
        return
    stats = sample_stats(vol, name)
    if stats.only_01:
        raise ValueError(f"{name} is a uint8 volume holding only 0 and 1: uint8 is read as round(255 p), so this "
                         "0/1 mask would read as probabilities of at most 1/255 (no foreground); store the mask as "
                         "bool or as 0/255")
    if dtype == np.uint8 and 1 < stats.distinct <= 26 and _sample_max(vol) <= 25:
        raise ValueError(f"{name} is a uint8 volume whose sampled values are all small integers (at most 25, "
                         f"{stats.distinct} distinct): a label volume, not probabilities (uint8 is read as "
                         "round(255 p), so these would all be p <= 0.1 and give no objects); postprocess takes the "
                         "output of emseg predict")
    if trusted:
        return
    if stats.looks_like_raw_em:
        raise ValueError(f"{name} looks like raw EM, not probabilities ({stats.raw_em_reason()}); {fix or _FIX}")
    if dtype == np.uint8 and stats.looks_like_labels:
        raise ValueError(f"{name} looks like a label volume, not probabilities ({stats.mid:.0%} of sampled voxels "
                         f"are mid-range values in flat regions, {stats.distinct} distinct values); {fix or _FIX}")


def sample_percentiles(vol, q=(1.0, 99.0)):
    """Percentiles of a few sampled chunks of ``vol`` (cheap on any size)."""
    data = np.concatenate([np.asarray(vol[r], np.float64).ravel()
                           for r in _regions(vol.shape, getattr(vol, "chunks", None), _REGIONS)])
    return tuple(float(v) for v in np.percentile(data, q))


def check_intensity_range(vol, normalization, name="raw", model="the model"):
    """Refuse raw whose intensities are far from what the model was trained on (its stored normalization).

    The training data's 1st-99th percentiles map to [0, 1]; a volume whose sampled 1st-99th
    percentiles map to a span under 0.1 or over 10, or lie wholly below -2 or above 3, would be seen
    as flat or saturated by the network (e.g. a float [0, 1] volume for a model trained on uint8).
    """
    if not normalization or normalization.get("mode") == "none":
        return
    low, high = float(normalization["low"]), float(normalization["high"])
    width = max(high - low, 1e-6)
    p1, p99 = sample_percentiles(vol)
    q1, q99 = (p1 - low) / width, (p99 - low) / width
    if q99 - q1 < 0.1 or q99 - q1 > 10 or q99 < -2 or q1 > 3:
        raise ValueError(f"{name} intensities lie in [{p1:.4g}, {p99:.4g}] (1st-99th percentile of a sample), but "
                         f"{model} was trained on data normalized from [{low:.4g}, {high:.4g}]: it would see this "
                         "volume as flat or saturated; rescale the volume to the training range, or pass "
                         "--normalize data to fit the normalization to this volume")


def _sample_max(vol):
    return max(int(np.max(np.asarray(vol[r]))) for r in _regions(vol.shape, getattr(vol, "chunks", None), 8))


def check_raw_source(vol, name="raw") -> None:
    """Refuse, at entry, a volume given as raw EM that is not an image; reads a few chunks.

    Refused: emseg's own prediction (its marker), and an integer volume that is flat like a mask or
    labels (at least 80% of its nonzero voxels equal their x neighbour; raw EM: 2-5%, noise makes
    neighbours differ). Float and textured volumes pass: telling a probability map from raw EM with
    dark background by content alone would refuse real data.

    Examples
    --------
    >>> labels = np.repeat(np.arange(1, 5, dtype=np.uint8), 16).reshape(8, 8)
    >>> check_raw_source(labels, "cells.tif")
    Traceback (most recent call last):
    ...
    ValueError: cells.tif looks like a mask or label volume, not raw EM (100% of its nonzero voxels equal their neighbour, 4 distinct values); predict takes the EM image
    """
    dt = np.dtype(vol.dtype)
    if dt.kind == "b":
        raise ValueError(f"{name} is a boolean mask, not raw EM; predict takes the EM image volume")
    if dt.kind not in "uif":
        raise ValueError(f"{name} has dtype {dt}; raw EM is an integer or float image (uint8, uint16, float32)")
    if is_prediction(vol):
        raise ValueError(f"{name} is the output of emseg predict (a probability map), not raw EM; predict takes the "
                         "EM image (postprocess takes this)")
    if np.dtype(vol.dtype).kind not in "ui":
        return
    s = sample_stats(vol, name)
    if s.equal_nonzero is not None and s.equal_nonzero >= _FLAT:
        raise ValueError(f"{name} looks like a mask or label volume, not raw EM ({s.equal_nonzero:.0%} of its nonzero "
                         f"voxels equal their neighbour, {s.distinct} distinct values); predict takes the EM image")

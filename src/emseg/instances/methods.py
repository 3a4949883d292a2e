"""The post-processing methods by name: what each takes, its defaults, and one call on an in-memory block.

Every method maps a channels-first prediction ``(C, *spatial)`` (float in [0, 1]) to labels of the
spatial shape. :func:`segment` runs one in memory; :func:`~emseg.instances.segment_blockwise` runs
the same function on overlapping blocks and stitches the results.
"""

from __future__ import annotations

import numpy as np

from .relabel import relabel_sequential

__all__ = ["METHODS", "segment", "method_params"]


def _cc(pred, offsets=None, *, channel=0, **p):
    from .components import connected_components

    return connected_components(pred[channel], **p)


def _watershed(pred, offsets=None, *, channel=0, **p):
    from .watershed import boundary_watershed

    return boundary_watershed(pred[channel], **p)


def _bc(pred, offsets=None, **p):
    from .watershed import bc_watershed

    return bc_watershed(pred[0], pred[1], **p)


def _bcd(pred, offsets=None, **p):
    from .watershed import bcd_watershed

    return bcd_watershed(pred[0], pred[1], pred[2], **p)


def _agglomerate(pred, offsets, **p):
    from .agglomeration import agglomerate

    return agglomerate(pred[:len(offsets)], offsets, **p)


def _mws(pred, offsets, **p):
    from .mws import mutex_watershed

    return mutex_watershed(pred[:len(offsets)], offsets, **p)


_P = ("real", 0, 1)  # a probability threshold; then: open at 0, open at 1, what it means
# channels: how many the method reads (None: one per offset); halo: default context per axis (zyx);
# params: defaults; ranges: name -> (kind, low, high, low_open, high_open, meaning), kind "real?" also takes None;
# fn(pred, offsets, **params): labels of one in-memory block
METHODS = {
    "cc": dict(channels=1, halo=(0, 0, 0), params=dict(threshold=0.5, connectivity=None, channel=0),
               ranges={"threshold": _P + (False, True, "foreground is p > threshold; 1 would select nothing")},
               fn=_cc, doc="threshold + connected components of one channel (exact across blocks)"),
    "watershed": dict(channels=1, halo=(16, 32, 32),
                      params=dict(threshold=0.5, sigma=1.0, seeds="threshold", min_seed_size=8, min_seed_distance=2.0,
                                  max_distance=None, per_section=False, channel=0),
                      ranges={"threshold": _P + (True, False, "cell interior is the smoothed boundary map below it; "
                                                 "0 would leave no interior"),
                              "sigma": ("real", 0, None, False, False, "Gaussian smoothing in voxels; 0 = none"),
                              "min_seed_size": ("int", 0, None, False, False, "voxels"),
                              "min_seed_distance": ("real", 0, None, False, False, "voxels from the nearest membrane"),
                              "max_distance": ("real?", 0, None, True, False, "voxels, or None for no cap")},
                      fn=_watershed, doc="boundary/membrane map -> cells (seeded watershed)"),
    "bc": dict(channels=2, halo=(16, 32, 32), params=dict(seed_threshold=0.9, contour_threshold=0.2,
                                                         mask_threshold=0.5, min_seed_size=16),
               ranges={"seed_threshold": _P + (False, True, "seeds need foreground > seed_threshold"),
                       "contour_threshold": _P + (True, False, "seeds need contour < contour_threshold"),
                       "mask_threshold": _P + (False, True, "objects cover foreground > mask_threshold"),
                       "min_seed_size": ("int", 0, None, False, False, "voxels")},
               fn=_bc, doc="foreground + contour -> marker watershed (U3D-BC)"),
    "bcd": dict(channels=3, halo=(16, 32, 32), params=dict(seed_threshold=0.8, contour_threshold=0.3,
                                                          distance_threshold=0.5, mask_threshold=0.5,
                                                          min_seed_size=16),
                ranges={"seed_threshold": _P + (False, True, "seeds need foreground > seed_threshold"),
                        "contour_threshold": _P + (True, False, "seeds need contour < contour_threshold"),
                        "distance_threshold": ("real", -1, 1, False, True, "seeds need distance > distance_threshold "
                                               "(normalised distance in [0, 1], or signed in (-1, 1))"),
                        "mask_threshold": _P + (False, True, "objects cover foreground > mask_threshold"),
                        "min_seed_size": ("int", 0, None, False, False, "voxels")},
                fn=_bcd, doc="foreground + contour + distance -> marker watershed (U3D-BCD)"),
    "agglomerate": dict(channels=None, halo=(16, 32, 32), params=dict(threshold=0.5),
                        ranges={"threshold": _P + (False, False, "regions merge while their mean affinity is at "
                                                   "least threshold")},
                        fn=_agglomerate, doc="affinities -> fragments merged by mean affinity (waterz)"),
    "mws": dict(channels=None, halo=(16, 32, 32), params=dict(strides=None), ranges={}, fn=_mws,
                doc="affinities with long-range offsets -> mutex watershed (Wolf et al. 2018)"),
}


def _add_task_methods():
    """The methods that tasks of the registry bring with them (e.g. ``sdt``)."""
    from ..tasks import TASKS

    for task in TASKS.values():
        METHODS.update(task.methods)


_add_task_methods()


def method_params(method, params=None, offsets=None):
    """The full parameters of ``method`` (defaults updated by ``params``), each range-checked; errors
    name the parameter, its value and what is allowed."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    defaults = dict(METHODS[method]["params"])
    unknown = set(params or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for method {method!r}; valid: {sorted(defaults)}")
    defaults.update(params or {})
    if METHODS[method]["channels"] is None and not offsets:
        raise ValueError(f"method {method!r} reads affinities: pass their offsets (one per channel)")
    return {k: _check_param(method, k, v) for k, v in defaults.items()}


def _interval(lo, hi, lo_open, hi_open):
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _check_param(method, name, value):
    """``value`` if it is allowed for parameter ``name`` of ``method`` (ints given as 16.0 become 16)."""
    where = f"{method} parameter {name}={value!r}"
    if name == "channel":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{where}: must be a channel index, an integer >= 0")
        return int(value)
    if name == "connectivity":
        if value is not None and (isinstance(value, bool) or value not in (4, 8, 6, 18, 26)):
            raise ValueError(f"{where}: must be None (face neighbours), 4 or 8 in 2D, or 6, 18 or 26 in 3D")
        return value if value is None else int(value)
    if name == "seeds":
        if value not in ("threshold", "distance"):
            raise ValueError(f"{where}: must be 'threshold' or 'distance'")
        return value
    if name == "per_section":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{where}: must be true or false")
        return bool(value)
    if name == "strides":
        ok = value is None or (isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value))
        if not ok:
            raise ValueError(f"{where}: must be None or a list of positive integers, one per spatial axis")
        return value if value is None else [int(v) for v in value]
    spec = METHODS[method].get("ranges", {}).get(name)
    if spec is None:
        return value
    if name == "sigma" and isinstance(value, (list, tuple)):  # one sigma per axis
        return [_check_param(method, name, v) for v in value]
    kind, lo, hi, lo_open, hi_open, meaning = spec
    if value is None and kind.endswith("?"):
        return None
    noun = "an integer" if kind == "int" else "a probability" if (lo, hi) == (0, 1) else "a number"
    allowed = f"{noun} {_interval(lo, hi, lo_open, hi_open)}"
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not number or not np.isfinite(value) or (kind == "int" and float(value) != int(value)):
        raise ValueError(f"{where}: must be {allowed} ({meaning})")
    v = float(value)
    if v < lo or (lo_open and v == lo) or (hi is not None and (v > hi or (hi_open and v == hi))):
        raise ValueError(f"{where} is out of range: must be {allowed} ({meaning})")
    return int(value) if kind == "int" else float(value)


def section_offsets(offsets, nd):
    """The offsets of ``nd``-dimensional affinities: those of a 2D model (``[dy, dx]``) on a volume become
    ``[0, dy, dx]``, since a 2D model predicts each section on its own; others are returned as they are.

    Examples
    --------
    >>> section_offsets([[-1, 0], [0, -3]], 3), section_offsets([[-1, 0, 0]], 3)
    ([[0, -1, 0], [0, 0, -3]], [[-1, 0, 0]])
    """
    if offsets and nd == 3 and all(len(o) == 2 for o in offsets):
        return [[0, int(o[0]), int(o[1])] for o in offsets]
    return offsets


def segment(pred, method, params=None, *, offsets=None, z_filter=0, min_size=0) -> np.ndarray:
    """Instances from a channels-first prediction ``pred`` with one of :data:`METHODS`, in memory.

    ``z_filter`` > 1 median-filters ``pred`` along z over that many sections first (3D only);
    objects under ``min_size`` voxels are removed. Returns labels 1..n in the smallest dtype.

    Examples
    --------
    >>> p = np.zeros((1, 1, 4, 5), np.float32); p[0, 0, :, :2] = p[0, 0, :, 3:] = 0.9
    >>> segment(p, "cc")[0]
    array([[1, 1, 0, 2, 2],
           [1, 1, 0, 2, 2],
           [1, 1, 0, 2, 2],
           [1, 1, 0, 2, 2]], dtype=uint8)
    """
    from .components import check_probability, remove_small_objects

    offsets = section_offsets(offsets, np.ndim(pred) - 1) if METHODS.get(method, {}).get("channels", 1) is None \
        else offsets
    params = method_params(method, params, offsets)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size={min_size!r} must be an integer >= 0 (objects with fewer voxels are removed)")
    if isinstance(z_filter, bool) or not isinstance(z_filter, (int, np.integer)) or z_filter < 0 or \
            (z_filter > 1 and z_filter % 2 == 0):
        raise ValueError(f"z_filter={z_filter!r} must be 0 (off) or an odd number of sections (3, 5, ...)")
    labels = segment_block(check_probability(pred, "pred"), method, params, offsets, z_filter)
    return remove_small_objects(labels, min_size) if min_size > 0 else relabel_sequential(labels)


def segment_block(pred, method, params, offsets=None, z_filter=0) -> np.ndarray:
    """Run ``method`` on one float32 block ``(C, *spatial)`` (already checked); labels of the spatial shape."""
    from . import zfilter

    need = METHODS[method]["channels"] or len(offsets)
    if pred.ndim < 3 or pred.shape[0] < need:
        raise ValueError(f"method {method!r} needs a channels-first prediction with at least {need} channel(s); "
                         f"got shape {pred.shape}")
    if z_filter and z_filter > 1 and pred.ndim == 4:
        pred = zfilter.z_filter(pred, z_filter)
    p = dict(params)
    if "channel" in p and p["channel"] >= pred.shape[0]:
        raise ValueError(f"{method} parameter channel={p['channel']} is out of range: the prediction has "
                         f"{pred.shape[0]} channel(s) (shape {pred.shape}); use 0..{pred.shape[0] - 1}")
    return METHODS[method]["fn"](pred, offsets, **p)

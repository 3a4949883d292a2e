"""The post-processing methods by name: what each takes, its defaults, and one call on an in-memory block.

Every method maps a channels-first prediction ``(C, *spatial)`` (float in [0, 1]) to labels of the
spatial shape. :func:`segment` runs one in memory; :func:`~emseg.instances.segment_blockwise` runs
the same function on overlapping blocks and stitches the results.
"""

from __future__ import annotations

import numpy as np

from .relabel import relabel_sequential

__all__ = ["METHODS", "TASKS", "segment", "method_params"]

# channels: how many the method reads (None: one per offset); halo: default context per axis (zyx)
METHODS = {
    "cc": dict(channels=1, halo=(0, 0, 0), params=dict(threshold=0.5, connectivity=None, channel=0),
               doc="threshold + connected components of one channel (exact across blocks)"),
    "watershed": dict(channels=1, halo=(16, 32, 32),
                      params=dict(threshold=0.5, sigma=1.0, seeds="threshold", min_seed_size=8, min_seed_distance=2.0,
                                  max_distance=None, per_section=False, channel=0),
                      doc="boundary/membrane map -> cells (seeded watershed)"),
    "bc": dict(channels=2, halo=(16, 32, 32), params=dict(seed_threshold=0.9, contour_threshold=0.2,
                                                         mask_threshold=0.5, min_seed_size=16),
               doc="foreground + contour -> marker watershed (U3D-BC)"),
    "bcd": dict(channels=3, halo=(16, 32, 32), params=dict(seed_threshold=0.8, contour_threshold=0.3,
                                                          distance_threshold=0.5, mask_threshold=0.5,
                                                          min_seed_size=16),
                doc="foreground + contour + distance -> marker watershed (U3D-BCD)"),
    "agglomerate": dict(channels=None, halo=(16, 32, 32), params=dict(threshold=0.5),
                        doc="affinities -> fragments merged by mean affinity (waterz)"),
    "mws": dict(channels=None, halo=(16, 32, 32), params=dict(strides=None),
                doc="affinities with long-range offsets -> mutex watershed (Wolf et al. 2018)"),
}

# `emseg segment --task`: settings for a kind of object; the method itself follows the model's target
# (binary -> cc, bc, bcd, boundary -> watershed, affinities -> mws/agglomerate), or "method" when it does not say
TASKS = {
    "mito": dict(method="cc", min_size=200),
    "nuclei": dict(method="bcd", min_size=1000),
    "neurons": dict(method="agglomerate", min_size=50),
    "membranes": dict(method="watershed", params=dict(per_section=True), min_size=20),
}


def method_params(method, params=None, offsets=None):
    """The full parameters of ``method`` (defaults updated by ``params``); errors list what is valid."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    defaults = dict(METHODS[method]["params"])
    unknown = set(params or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for method {method!r}; valid: {sorted(defaults)}")
    defaults.update(params or {})
    if METHODS[method]["channels"] is None and not offsets:
        raise ValueError(f"method {method!r} reads affinities: pass their offsets (one per channel)")
    return defaults


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
    from .components import remove_small_objects

    labels = segment_block(_as_float(pred, "pred"), method, method_params(method, params, offsets), offsets,
                           z_filter)
    return remove_small_objects(labels, min_size) if min_size > 0 else relabel_sequential(labels)


def _as_float(pred, name):
    from .components import check_unit_range

    pred = np.asarray(pred)
    if pred.dtype == np.uint8:  # emseg's quantised probabilities, round(255 p)
        return pred.astype(np.float32) / np.float32(255)
    pred = pred.astype(np.float32, copy=False)
    check_unit_range(pred, name, "probabilities")
    return pred


def segment_block(pred, method, params, offsets=None, z_filter=0) -> np.ndarray:
    """Run ``method`` on one float32 block ``(C, *spatial)`` (already checked); labels of the spatial shape."""
    from . import components, watershed, zfilter
    from .agglomeration import agglomerate

    need = METHODS[method]["channels"] or len(offsets)
    if pred.ndim < 3 or pred.shape[0] < need:
        raise ValueError(f"method {method!r} needs a channels-first prediction with at least {need} channel(s); "
                         f"got shape {pred.shape}")
    if z_filter and z_filter > 1 and pred.ndim == 4:
        pred = zfilter.z_filter(pred, z_filter)
    p = dict(params)
    if method == "cc":
        return components.connected_components(pred[p.pop("channel")], **p)
    if method == "watershed":
        return watershed.boundary_watershed(pred[p.pop("channel")], **p)
    if method == "bc":
        return watershed.bc_watershed(pred[0], pred[1], **p)
    if method == "bcd":
        return watershed.bcd_watershed(pred[0], pred[1], pred[2], **p)
    if method == "agglomerate":
        return agglomerate(pred[:len(offsets)], offsets, **p)
    from .mws import mutex_watershed

    return mutex_watershed(pred[:len(offsets)], offsets, **p)

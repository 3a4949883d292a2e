"""From network outputs to instances: components, z-filtering, watershed, agglomeration, mutex watershed,
and their blockwise versions with global ids.

In memory (numpy in, labels 1..n in the smallest unsigned dtype out): :func:`connected_components`,
:func:`z_filter`, :func:`bc_watershed`, :func:`bcd_watershed`, :func:`boundary_watershed`,
:func:`agglomerate`, :func:`mutex_watershed`, and :func:`segment` (any of them by name, see
:data:`METHODS`). Over volumes of any size, stitched without seams: :func:`segment_blockwise`;
from raw EM with a model: :func:`emseg.workflows.segment_volume`.

Names are imported on first use, so ``emseg --help`` does not load numba, scikit-image or waterz.
"""

import importlib

_WHERE = {
    "agglomerate": "agglomeration", "SegmentResult": "stitch", "segment_blockwise": "stitch", "PostprocessConfig": "config",
    "check_probability": "components", "connected_components": "components", "fill_holes": "components",
    "remove_small_objects": "components", "METHODS": "methods", "segment": "methods",
    "mutex_watershed": "mws", "mutex_watershed_graph": "mws",
    "relabel_sequential": "relabel", "smallest_uint": "relabel",
    "bc_watershed": "watershed", "bcd_watershed": "watershed", "boundary_watershed": "watershed",
    "seeded_watershed": "watershed", "z_filter": "zfilter",
}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)

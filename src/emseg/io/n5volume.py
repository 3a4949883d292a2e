"""N5 datasets as emseg volumes: the voxel-size conventions of the N5 tools.

BigDataViewer/N5-viewer write ``pixelResolution`` ({"dimensions": [x, y, z], "unit": "nm"}),
funkelab tools (daisy, gunpowder) write ``resolution`` and ``offset`` in N5 (x-first) order. Both
are read (pixelResolution first) and both are written, so either family of tools sees the size.
"""

from __future__ import annotations

import numpy as np

from .meta import VolumeMeta, plausible_voxel_size, to_nm
from .n5 import create_n5, list_n5_datasets, open_n5
from .paths import KeyNotFoundError
from .volume import Volume

__all__ = ["open_n5_volume", "create_n5_volume"]

_DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx"}


def _meta(attrs, ndim, where) -> VolumeMeta:
    axes = attrs.get("axes")
    if isinstance(axes, list) and len(axes) == ndim:  # N5 order, e.g. ["x", "y", "z"]
        axes = "".join(str(a).lower() for a in reversed(axes))
    if not isinstance(axes, str) or len(axes) != ndim or set(axes) - set("czyx"):
        axes = _DEFAULT_AXES.get(ndim)
    if axes is None:
        raise ValueError(f"{where} is {ndim}D; emseg reads 2D (yx), 3D (zyx) or 4D (czyx) arrays")
    n = sum(a in "zyx" for a in axes)
    vs = None
    pr = attrs.get("pixelResolution")
    if isinstance(pr, dict) and len(pr.get("dimensions", [])) >= n:
        nm = [to_nm(v, pr.get("unit", "nm")) for v in pr["dimensions"][:n]]
        vs = plausible_voxel_size(nm[::-1]) if None not in nm else None
    elif "resolution" in attrs and np.size(attrs["resolution"]) == n:
        vs = plausible_voxel_size(list(attrs["resolution"])[::-1])
    off = attrs.get("offset")
    offset = tuple(float(v) for v in list(off)[::-1]) if off is not None and np.size(off) == n else None
    return VolumeMeta(axes, vs, offset)


def open_n5_volume(path, key=None, mode="r") -> Volume:
    if key is None:
        keys = list_n5_datasets(path)
        if len(keys) != 1:
            raise ValueError(f"{path} holds {len(keys)} datasets; name one as {path}:KEY. "
                             f"Datasets: {', '.join(keys) or '(none)'}")
        key = keys[0]
    try:
        arr = open_n5(path, key, mode=mode)
    except KeyError as e:
        raise KeyNotFoundError(str(e.args[0]) if e.args else str(e)) from None
    meta = _meta(arr.attrs, arr.ndim, f"{path}:{key}")
    return Volume(arr, meta, path=path, key=key, format="n5", mode=mode)


def create_n5_volume(path, key, shape, dtype, chunks, meta: VolumeMeta, compression="gzip") -> Volume:
    if key is None:
        raise ValueError(f"{path}: name the N5 dataset to write, e.g. {path}:raw")
    attrs = {}
    if meta.voxel_size is not None:
        attrs["resolution"] = list(meta.voxel_size[::-1])
        attrs["pixelResolution"] = {"dimensions": list(meta.voxel_size[::-1]), "unit": "nm"}
    if meta.offset is not None:
        attrs["offset"] = list(meta.offset[::-1])
    attrs["axes"] = list(meta.axes[::-1])
    comp = {"type": "raw"} if compression is None else (
        {"type": compression} if isinstance(compression, str) else compression)
    arr = create_n5(path, key, shape, dtype, chunks, compression=comp, attrs=attrs)
    return Volume(arr, meta, path=path, key=key, format="n5", mode="r+")

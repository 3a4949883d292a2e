"""Multiscale pyramids of OME-Zarr images: anisotropy-aware factors, downsampled block by block.

Level ``k`` of an image ``IMG.zarr`` is the array ``IMG.zarr/k`` (``0`` is the full resolution), each
listed in ``multiscales`` with its own ``scale`` and ``translation`` (the centre of its first voxel),
so viewers (napari-ome-zarr, neuroglancer, BigDataViewer) load the level that fits the screen.

- Factors (:func:`pyramid_factors`): each level halves the axes whose voxel is at most half the
  coarsest (so 50 x 4 x 4 nm goes 50 x 8 x 8, 50 x 16 x 16, 50 x 32 x 32, then all axes halve together),
  until every axis fits in ``min_size`` voxels.
- Downsampling (:func:`downsample`): ``mean`` for raw and probabilities (integers rounded), ``mode``
  for labels (the most frequent id of each window, ties to the first in z, y, x order) or ``stride``
  (the window's first voxel). Both label rules only ever take ids of the window: a level never holds an
  id that the full resolution does not.
- The levels are written block by block from the level above (:func:`add_pyramid`), memory bounded by
  the block; ``multiscales`` is rewritten once, after the last level, so a pyramid cut short by a kill is
  not listed (its arrays are simply made again).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np

__all__ = ["DOWNSAMPLING", "AUTO_PYRAMID_BYTES", "pyramid_factors", "downsample", "add_pyramid", "pyramid_method",
           "volume_bytes", "check_pyramid", "pyramid_for_output"]

DOWNSAMPLING = ("mean", "mode", "stride")
AUTO_PYRAMID_BYTES = 256 * 2**20
"""Outputs larger than this (uncompressed) get a pyramid unless told otherwise (``--no-pyramid``)."""


def pyramid_factors(shape, voxel_size=None, min_size=64, max_levels=12) -> list[tuple[int, ...]]:
    """The downsampling factor of each level from the one above it, for a spatial ``shape`` (zyx or yx).

    Examples
    --------
    >>> pyramid_factors((100, 2048, 2048), (50, 4, 4), min_size=256)
    [(1, 2, 2), (1, 2, 2), (1, 2, 2)]
    >>> pyramid_factors((512, 512, 512), (8, 8, 8), min_size=128)
    [(2, 2, 2), (2, 2, 2)]
    >>> pyramid_factors((40, 300, 300), (50, 4, 4), min_size=64)
    [(1, 2, 2), (1, 2, 2), (1, 2, 2)]
    """
    vs = [float(v) for v in (voxel_size or (1.0,) * len(shape))]
    cur = [int(s) for s in shape]
    out = []
    while len(out) < max_levels and max(cur) > min_size:
        coarse = max(vs)
        f = [2 if v * 2 <= coarse * (1 + 1e-6) and n > 1 else 1 for v, n in zip(vs, cur)]
        if max(f) == 1:  # about isotropic: every axis halves
            f = [2 if n > 1 else 1 for n in cur]
        out.append(tuple(f))
        cur = [math.ceil(n / k) for n, k in zip(cur, f)]
        vs = [v * k for v, k in zip(vs, f)]
    return out


@numba.njit(cache=True, nogil=True)
def _mode(src, fz, fy, fx, out):  # pragma: no cover - compiled by numba
    vals = np.empty(fz * fy * fx, src.dtype)
    counts = np.empty(fz * fy * fx, np.int64)
    nz, ny, nx = src.shape
    for z in range(out.shape[0]):
        for y in range(out.shape[1]):
            for x in range(out.shape[2]):
                k = 0
                for dz in range(fz):
                    for dy in range(fy):
                        for dx in range(fx):
                            a, b, c = z * fz + dz, y * fy + dy, x * fx + dx
                            if a < nz and b < ny and c < nx:
                                v = src[a, b, c]
                                found = False
                                for i in range(k):
                                    if vals[i] == v:
                                        counts[i] += 1
                                        found = True
                                        break
                                if not found:
                                    vals[k] = v
                                    counts[k] = 1
                                    k += 1
                best = 0
                for i in range(1, k):
                    if counts[i] > counts[best]:
                        best = i
                out[z, y, x] = vals[best]
    return out


def downsample(block, factors, method="mean") -> np.ndarray:
    """``block`` (zyx, yx, or with leading channels) downsampled by ``factors`` (one per trailing axis).

    Windows cut by the block's end use the voxels they have.

    Examples
    --------
    >>> a = np.array([[1, 1, 2], [3, 1, 2]], np.uint8)
    >>> downsample(a, (2, 2), "mean").tolist(), downsample(a, (2, 2), "mode").tolist()
    ([[2, 2]], [[1, 2]])
    >>> downsample(a, (2, 2), "stride").tolist()
    [[1, 2]]
    """
    if method not in DOWNSAMPLING:
        raise ValueError(f"downsampling method must be one of {', '.join(DOWNSAMPLING)}; got {method!r}")
    a = np.asarray(block)
    lead = a.ndim - len(factors)
    f = (1,) * lead + tuple(int(k) for k in factors)
    if method == "stride":
        return np.ascontiguousarray(a[tuple(slice(None, None, k) for k in f)])
    if method == "mode":
        flat = a.reshape((-1,) + a.shape[lead:]) if lead else a[None]
        f3 = (1,) * (3 - len(factors)) + tuple(int(k) for k in factors)
        outs = []
        for plane in flat:
            src = plane.reshape((1,) * (3 - plane.ndim) + plane.shape)
            out = np.empty(tuple(math.ceil(n / k) for n, k in zip(src.shape, f3)), a.dtype)
            outs.append(_mode(np.ascontiguousarray(src), *f3, out).reshape(
                tuple(math.ceil(n / k) for n, k in zip(plane.shape, factors))))
        res = np.stack(outs)
        return res.reshape(a.shape[:lead] + res.shape[1:]) if lead else res[0]
    acc = a.astype(np.float64)
    for axis, k in enumerate(f):
        if k > 1:
            starts = np.arange(0, a.shape[axis], k)
            sizes = np.minimum(k, a.shape[axis] - starts).reshape([-1 if i == axis else 1 for i in range(a.ndim)])
            acc = np.add.reduceat(acc, starts, axis=axis) / sizes
    if a.dtype.kind in "ui":
        info = np.iinfo(a.dtype)
        acc = np.clip(np.rint(acc), info.min, info.max)
    return acc.astype(a.dtype)


def pyramid_method(attrs, dtype) -> str | None:
    """The downsampling a volume's kind calls for: the method of its earlier pyramid; ``mode`` for labels
    (emseg's ``kind``, an OME ``image-label``); ``mean`` for predictions and floats; None for other integer
    volumes, which may hold intensities or ids (say ``--pyramid mean`` or ``--pyramid mode``)."""
    from .omezarr import ome_multiscales

    ms = ome_multiscales(attrs) or [{}]
    if ms[0].get("type") in DOWNSAMPLING:  # the method an earlier pyramid was made with
        return ms[0]["type"]
    kind = (attrs.get("emseg") or {}).get("kind") if isinstance(attrs.get("emseg"), dict) else None
    if kind == "labels" or "image-label" in attrs or "image-label" in (attrs.get("ome") or {}):
        return "mode"
    if kind in ("prediction", "probabilities") or np.dtype(dtype).kind == "f":
        return "mean"
    return None  # integers: raw intensities or ids (a uint8 mask too); averaging ids would invent new ones


def add_pyramid(path, key=None, *, method, min_size=64, workers=2, progress=False) -> list[tuple[int, ...]]:
    """Write levels 1, 2, ... of the OME-Zarr image at ``path`` (``key``: an image group inside it) and
    list them in its ``multiscales``; levels written before are replaced. Returns the levels' shapes."""
    import zarr

    from ..blockwise.execute import run_blocks
    from ..blockwise.geometry import block_slices
    from ..config import ExecutionConfig
    from .omezarr import ome_multiscales

    if method not in DOWNSAMPLING:
        raise ValueError(f"downsampling method must be one of {', '.join(DOWNSAMPLING)}; got {method!r}")
    group = zarr.open_group(str(path), mode="r+", path=key or "")
    attrs = group.attrs.asdict()
    ms_list = ome_multiscales(attrs)
    if not ms_list:
        raise ValueError(f"{path}{':' + key if key else ''} is not an OME-Zarr image (no multiscales); emseg pyramid "
                         "adds levels to the images emseg writes (.zarr outputs, or emseg convert IN OUT.zarr)")
    ms = ms_list[0]
    base_ds = ms["datasets"][0]
    base = group[base_ds["path"]]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])] or list("zyx"[-base.ndim:])
    spatial = [i for i, a in enumerate(axes) if a in "zyx"]
    scale0, trans0 = _transforms(base_ds)
    scale0 = scale0 if scale0 is not None else [1.0] * base.ndim
    trans0 = trans0 if trans0 is not None else [0.0] * base.ndim
    factors = pyramid_factors([base.shape[i] for i in spatial], [scale0[i] for i in spatial], min_size)
    _list_levels(group, attrs, {**ms, "datasets": [base_ds]})  # first unlist the old levels: a kill leaves level 0
    for name in [str(k) for k in range(1, 64)]:  # an earlier pyramid is replaced, not mixed in
        if name in group and name != base_ds["path"]:
            del group[name]
    datasets, shapes, src, cum = [base_ds], [tuple(base.shape)], base, [1] * base.ndim
    e = ExecutionConfig(workers=workers, progress=progress)
    for level, f in enumerate(factors, 1):
        full = [1] * base.ndim
        for i, k in zip(spatial, f):
            full[i] = k
        shape = tuple(math.ceil(n / k) for n, k in zip(src.shape, full))
        chunks = tuple(min(c, n) for c, n in zip(base.chunks, shape))
        dst = group.create_array(str(level), shape=shape, chunks=chunks, dtype=base.dtype, fill_value=0,
                                 compressors=base.compressors, **_encoding(base))
        blocks = block_slices(shape, tuple(c * 2 for c in chunks))
        run_blocks(_level_block, None, list(range(len(blocks))),
                   local=dict(src=src, dst=dst, blocks=blocks, factors=full, method=method,
                              lead=base.ndim - len(spatial)),
                   execution=e)
        cum = [c * k for c, k in zip(cum, full)]
        scale = [s * c for s, c in zip(scale0, cum)]
        # the centre of the level's first voxel: of its window (mean, mode), or the window's first voxel (stride)
        trans = list(trans0) if method == "stride" else [t + (c - 1) / 2 * s for t, c, s in zip(trans0, cum, scale0)]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale},
                                                                            {"type": "translation", "translation": trans}]})
        shapes.append(shape)
        src = dst
    _list_levels(group, attrs, {**ms, "datasets": datasets, "type": method})  # OME-NGFF's field for the method
    return shapes


def _list_levels(group, attrs, ms):
    """Rewrite the image's first ``multiscales`` entry as ``ms`` (OME-NGFF 0.4 at the top, 0.5 under ``ome``)."""
    if "ome" in attrs and isinstance(attrs["ome"], dict) and "multiscales" in attrs["ome"]:
        group.attrs["ome"] = {**attrs["ome"], "multiscales": [ms] + list(attrs["ome"]["multiscales"][1:])}
    else:
        group.attrs["multiscales"] = [ms] + list(attrs["multiscales"][1:])


def _level_block(spec, index, src=None, dst=None, blocks=None, factors=None, method=None, lead=0):
    roi = blocks[index]
    read = tuple(slice(s.start * k, min(s.stop * k, n)) for s, k, n in zip(roi, factors, src.shape))
    dst[roi] = downsample(src[read], factors[lead:], method)
    return index


def _transforms(dataset):
    scale = trans = None
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            trans = [float(v) for v in t["translation"]]
    return scale, trans


def _encoding(arr):
    if arr.metadata.zarr_format == 2:
        return {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    names = getattr(arr.metadata, "dimension_names", None)
    return {"dimension_names": list(names)} if names else {}


def volume_bytes(shape, dtype) -> int:
    """Uncompressed bytes of an array (for the automatic pyramid threshold)."""
    return int(np.prod(shape)) * np.dtype(dtype).itemsize



def check_pyramid(path, pyramid, fmt=None, dtype=None):
    """Refuse at once a pyramid asked for (``--pyramid``) on an output that is not Zarr, or (``dtype`` given:
    a conversion) on a volume whose kind cannot be told without a method."""
    if pyramid in (None, False):
        return
    from .paths import detect_format, split_key

    fmt = fmt or detect_format(split_key(os.fspath(path))[0], None, for_writing=True)
    if fmt != "zarr":
        raise ValueError(f"{path}: --pyramid writes OME-Zarr multiscale levels; this output is {fmt}: write a .zarr "
                         "(or drop --pyramid)")
    if pyramid is True and dtype is not None and pyramid_method({}, dtype) is None:
        raise ValueError(f"{path}: cannot tell whether this {np.dtype(dtype)} volume holds labels or intensities; "
                         "say --pyramid mode (labels) or --pyramid mean (raw)")


def pyramid_for_output(o, method, execution):
    """Before ``o.commit()``: add the levels to the partial Zarr output of ``o`` (an :class:`emseg.io.output.Output`)
    when ``execution.pyramid`` asks for them, or (None) when the output is over :data:`AUTO_PYRAMID_BYTES`.
    ``method`` is what the output's kind calls for (None: unknown, then only an explicit method makes levels).
    Returns the levels' shapes, or None."""
    choice = getattr(execution, "pyramid", None)
    if choice is False or o.fmt != "zarr":
        return None
    import zarr

    from .omezarr import ome_multiscales

    group = zarr.open_group(str(o.tmp_path), mode="r", path=o.tmp_key or "")
    base = group[ome_multiscales(group.attrs.asdict())[0]["datasets"][0]["path"]]
    if choice is None and volume_bytes(base.shape, base.dtype) < AUTO_PYRAMID_BYTES:
        return None
    method = choice if isinstance(choice, str) else method
    if method is None:
        if choice is True:
            raise ValueError(f"{o.name}: cannot tell whether this {base.dtype} volume holds labels or intensities; "
                             "say --pyramid mode (labels) or --pyramid mean (raw)")
        return None
    return add_pyramid(o.tmp_path, o.tmp_key, method=method, workers=execution.workers)

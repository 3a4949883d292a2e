"""Zarr v2 and v3 arrays and OME-Zarr (OME-NGFF 0.4 on Zarr v2, 0.5 on Zarr v3) images.

Reading: a plain array, or an OME-Zarr image group (its first, full-resolution dataset, with
the voxel size and offset from ``multiscales``). Writing always makes an OME-Zarr image group
(one scale, ``0``), so napari-ome-zarr, Fiji/BigDataViewer and neuroglancer show it with its voxel
size; arrays read by emseg are the same either way.
"""

from __future__ import annotations

import numpy as np

from .meta import VolumeMeta, plausible_voxel_size, to_nm
from .paths import KeyNotFoundError
from .volume import Volume

__all__ = ["open_zarr", "create_zarr", "list_zarr_arrays", "ome_multiscales"]

BLOSC_CODECS = ("zstd", "lz4", "lz4hc", "zlib", "blosclz")
_AXIS_TYPES = {"c": "channel", "t": "time", "z": "space", "y": "space", "x": "space"}


def list_zarr_arrays(node) -> list[str]:
    """Paths of every array below a Zarr group (or a path to one), sorted."""
    import zarr

    if not isinstance(node, (zarr.Group, zarr.Array)):
        node = zarr.open(str(node), mode="r")
    if isinstance(node, zarr.Array):
        return [""]
    return sorted(name for name, m in node.members(max_depth=None) if isinstance(m, zarr.Array))


def ome_multiscales(attrs) -> list | None:
    """The ``multiscales`` list of OME-NGFF 0.4 (top level) or 0.5 (under ``ome``), or None."""
    if "ome" in attrs and isinstance(attrs["ome"], dict) and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"]
    return attrs.get("multiscales")


def _ome_meta(ms: dict, dataset: dict, path) -> VolumeMeta:
    axes_md = ms.get("axes") or [{"name": a} for a in "zyx"]  # 0.3 and older: implied tczyx subset
    axes_md = [{"name": a} if isinstance(a, str) else a for a in axes_md]
    names = "".join(str(a["name"]).lower() for a in axes_md)
    if set(names) - set("tczyx"):
        raise ValueError(f"{path}: OME-Zarr axes {names!r} are not a subset of t, c, z, y, x")
    scale = np.ones(len(names))
    translation = np.zeros(len(names))
    for transforms in (dataset.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale":
                scale = scale * np.asarray(t["scale"], float)
            elif t.get("type") == "translation":
                translation = translation + np.asarray(t["translation"], float)
    vs, off = [], []
    for i, a in enumerate(axes_md):
        if a["name"] in "zyx":
            unit = a.get("unit")
            vs.append(to_nm(scale[i], unit) if unit else None)
            off.append(to_nm(translation[i], unit) if unit else None)
    known = all(v is not None for v in vs)
    return VolumeMeta(names, plausible_voxel_size(vs) if known else None, tuple(off) if known else None)


def _plain_meta(arr, path) -> VolumeMeta:
    attrs = arr.attrs.asdict()
    axes = attrs.get("axes") if isinstance(attrs.get("axes"), str) else None
    axes = axes or {2: "yx", 3: "zyx", 4: "czyx"}.get(arr.ndim)
    if axes is None:
        raise ValueError(f"{path} is {arr.ndim}D; emseg reads 2D (yx), 3D (zyx) or 4D (czyx) arrays")
    n = sum(a in "zyx" for a in axes)
    vs = attrs.get("resolution", attrs.get("voxel_size"))
    vs = plausible_voxel_size(vs) if vs is not None and np.size(vs) == n else None
    off = attrs.get("offset")
    return VolumeMeta(axes, vs, tuple(off) if off is not None and np.size(off) == n else None)


def open_zarr(path, key=None, mode="r") -> Volume:
    """Open a Zarr array (v2 or v3) or OME-Zarr image lazily."""
    import zarr

    try:
        root = zarr.open(str(path), mode="r" if mode == "r" else "r+")
    except Exception as e:
        raise ValueError(f"{path}: not a readable Zarr store ({e})") from None
    node, where = root, str(path)
    if key is not None:
        try:
            node = root[key]
        except KeyError:
            raise KeyNotFoundError(f"{path} has no array or group {key!r}; arrays: "
                                   f"{', '.join(list_zarr_arrays(root)) or '(none)'}") from None
        where = f"{path}:{key}"
    if isinstance(node, zarr.Group):
        ms = ome_multiscales(node.attrs.asdict())
        if ms:
            dataset = ms[0]["datasets"][0]
            arr = node[dataset["path"]]
            meta = _ome_meta(ms[0], dataset, where)
            key = "/".join(p for p in (key, dataset["path"]) if p)
        else:
            arrays = list_zarr_arrays(node)
            if len(arrays) != 1:
                raise ValueError(f"{where} is a group of {len(arrays)} arrays; name one as PATH:KEY. "
                                 f"Arrays: {', '.join(arrays) or '(none)'}")
            arr = node[arrays[0]]
            key = "/".join(p for p in (key, arrays[0]) if p)
            meta = _plain_meta(arr, where)
    else:
        arr, meta = node, _plain_meta(node, where)
    return Volume(arr, meta, path=path, key=key, format="zarr", mode=mode, chunks=arr.chunks)


def ome_attrs(meta: VolumeMeta, zarr_format: int) -> dict:
    """OME-NGFF ``multiscales`` attributes for a one-scale image with ``meta``'s voxel size."""
    vs = iter(meta.voxel_size or (1.0,) * len(meta.spatial_axes))
    off = iter(meta.offset or (0.0,) * len(meta.spatial_axes))
    axes, scale, translation = [], [], []
    for a in meta.axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if a in "zyx":
            if meta.voxel_size is not None:
                entry["unit"] = "nanometer"
            scale.append(float(next(vs)))
            translation.append(float(next(off)))
        else:
            scale.append(1.0)
            translation.append(0.0)
        axes.append(entry)
    transforms = [{"type": "scale", "scale": scale}]
    if any(translation):
        transforms.append({"type": "translation", "translation": translation})
    ms = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": transforms}]}
    if zarr_format == 2:
        return {"multiscales": [{"version": "0.4", **ms}]}
    return {"ome": {"version": "0.5", "multiscales": [ms]}}


def create_zarr(path, key, shape, dtype, chunks, meta: VolumeMeta, *, zarr_format=2, compression="zstd",
                level=3) -> Volume:
    """Create an OME-Zarr image group (at ``key`` inside the store, or at its root) for blockwise writes.

    Chunks are stored nested (``0/1/2``), as OME-NGFF requires; compression is Blosc with
    ``compression`` as its codec (``zstd``, ``lz4``, ``zlib``…) or ``None``.
    """
    import zarr
    from zarr.codecs import BloscCodec

    if compression is not None and compression not in BLOSC_CODECS:
        raise ValueError(f"Zarr compression must be one of {BLOSC_CODECS} (Blosc codecs) or None; "
                         f"got {compression!r}")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3; got {zarr_format!r}")
    root = zarr.open_group(str(path), mode="a", zarr_format=zarr_format)
    if key:
        if key in root:
            raise FileExistsError(f"{path} already holds {key!r}; pass overwrite=True or use another key")
        group = root.create_group(key)
    else:
        if len(list(root.members())):
            raise FileExistsError(f"{path} is not empty; pass overwrite=True or write to another path")
        group = root
    group.attrs.update(ome_attrs(meta, zarr_format))
    kwargs = {}
    if compression is None:
        kwargs["compressors"] = None
    elif zarr_format == 2:
        from numcodecs import Blosc

        kwargs["compressors"] = Blosc(cname=compression, clevel=level, shuffle=Blosc.SHUFFLE)
    else:
        kwargs["compressors"] = BloscCodec(cname=compression, clevel=level, shuffle="shuffle")
    if zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = list(meta.axes)
    arr = group.create_array("0", shape=tuple(shape), chunks=tuple(chunks), dtype=np.dtype(dtype),
                             fill_value=0, **kwargs)
    return Volume(arr, meta, path=path, key="/".join(p for p in (key, "0") if p), format="zarr", mode="r+",
                  chunks=arr.chunks)

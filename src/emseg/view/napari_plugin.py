"""The napari plugin (``emseg[napari]``, manifest ``napari.yaml``): read and write every format emseg
knows, segment the open volume with a model, fit a model to labels painted in napari.

- Reader: lazy (dask arrays over emseg's volumes), multiscale when an OME-Zarr image has levels
  (:mod:`emseg.io.pyramid`), with the voxel size as the layers' scale (nm) and the offset as their
  translation; labels (what emseg wrote as labels, an OME-NGFF label image, 32/64-bit ids) as a Labels
  layer, a channels-first prediction as one image layer per channel, anything else as an Image layer.
  A raw OME-Zarr image opens with its label images (``labels/``) over it.
- Writers: a Labels or Image layer to any format emseg writes, with the layer's scale as voxel size.
- Widgets: ``segment_widget`` (``emseg segment`` on an Image layer, the labels added as a layer) and
  ``fit_widget`` (``emseg fit`` on an Image layer and a Labels layer in which whole sections are painted:
  the painted sections are the labelled ones, the others unknown).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = ["get_reader", "read_layers", "write_labels", "write_image", "segment_widget", "fit_widget"]

SUFFIXES = (".zarr", ".n5", ".h5", ".hdf5", ".hdf", ".tif", ".tiff", ".mrc", ".rec", ".map", ".nii", ".nii.gz")


def get_reader(path):
    """napari's reader hook: :func:`read_layers` when emseg opens ``path``, else None (another reader may)."""
    if isinstance(path, (list, tuple)):
        if not path:
            return None
        path = path[0]
    from ..io.paths import split_key

    path = os.fspath(path)
    file = path if os.path.exists(path) else split_key(path)[0]
    if not (file.rstrip("/").lower().endswith(SUFFIXES) or os.path.isdir(file)):
        return None
    from ..io import open_volume

    try:
        open_volume(path).close()
    except (OSError, ValueError):
        return None
    return read_layers


def read_layers(path) -> list:
    """napari layer data ``(data, metadata, layer_type)`` for the volume(s) at ``path``."""
    if isinstance(path, (list, tuple)):
        return [layer for p in path for layer in read_layers(p)]
    from ..io import open_volume
    from ..io.paths import split_key
    from .web import _name, group_key, layer_kind

    path = os.fspath(path)
    file = split_key(path)[0]
    with open_volume(path) as vol:
        kind, meta, fmt, key = layer_kind(vol), vol.meta, vol.format, vol.key
        shape = tuple(vol.shape)
    spatial = meta.spatial_axes
    scale = list(meta.voxel_size or (1.0,) * len(spatial))
    translate = list(meta.offset or (0.0,) * len(spatial))
    image_key = group_key(fmt, key)
    levels = _levels(file, image_key) if fmt == "zarr" else None
    data = levels or [_lazy(path, shape)]
    md = {"name": _name(path), "scale": scale, "translate": translate, "metadata": {"emseg_path": path}}
    if len(data) > 1:
        md["multiscale"] = True
    data = data if len(data) > 1 else data[0]
    if kind == "segmentation":
        return [(data, md, "labels")]
    if kind == "probabilities":
        return [(data, {**md, "channel_axis": 0, "colormap": "turbo", "blending": "additive"}, "image")]
    return [(data, md, "image")] + (_label_images(file, image_key) if fmt == "zarr" else [])


def _levels(path, image_key):
    """Dask arrays of every level of the OME-Zarr image at ``path`` (``image_key``), or None."""
    import dask.array as da
    import zarr

    from ..io.omezarr import ome_multiscales

    try:
        group = zarr.open_group(path, mode="r", path=image_key or "")
    except Exception:  # noqa: BLE001 - a plain array: one level
        return None
    ms = ome_multiscales(group.attrs.asdict())
    if not ms:
        return None
    return [da.from_zarr(group[d["path"]]) for d in ms[0]["datasets"]]


def _lazy(path, shape):
    """A dask array that reads ``path`` through emseg, chunk by chunk (HDF5, N5, TIFF, MRC, NIfTI...)."""
    import dask.array as da

    from ..io import open_volume

    vol = open_volume(path)
    chunks = vol.chunks or tuple(min(n, 64) if i < len(shape) - 2 else n for i, n in enumerate(shape))
    return da.from_array(vol, chunks=chunks, asarray=True, fancy=False)


def _label_images(path, key):
    """The label images (``labels/NAME``) of the raw OME-Zarr image at ``path``, as Labels layers."""
    import zarr

    try:
        root = zarr.open_group(path, mode="r", path=key or "")
        group = root["labels"]
    except Exception:  # noqa: BLE001 - no label images
        return []
    attrs = group.attrs.asdict()
    names = attrs.get("labels") or (attrs.get("ome") or {}).get("labels") or []
    prefix = f"{key}/" if key else ""
    out = []
    for name in names:
        for data, md, _ in read_layers(f"{path}:{prefix}labels/{name}"):
            out.append((data, md, "labels"))
    return out


def _write(path, data, meta):
    """``data`` (a layer's, the full resolution of a multiscale one) to ``path`` with the layer's scale as voxel size."""
    from ..io import write_volume

    multi = meta.get("multiscale") or isinstance(data, (list, tuple)) or type(data).__name__ == "MultiScaleData"
    arr = np.asarray(data[0] if multi else data)
    scale = meta.get("scale")
    scale = () if scale is None else tuple(float(s) for s in scale)[-arr.ndim:]
    write_volume(path, arr, voxel_size=scale if scale and any(v != 1.0 for v in scale) else None)
    return [path]


def write_labels(path, data, meta):
    """napari's writer hook for a Labels layer: any format emseg writes (ids keep their dtype)."""
    return _write(path, data, meta)


def write_image(path, data, meta):
    """napari's writer hook for an Image layer."""
    return _write(path, data, meta)


def _layer_to_zarr(layer, folder, name):
    path = os.path.join(folder, f"{name}.zarr")
    return _write(path, layer.data, {"scale": layer.scale, "multiscale": getattr(layer, "multiscale", False)})[0]


def segment_widget(image: "napari.layers.Image", model: str = "mito-fibsem", params: str = "",  # noqa: F821
                   out_dir: str = "") -> "napari.types.LayerDataTuple":  # noqa: F821
    """Segment ``image`` with ``model`` (a shipped name, a checkpoint or an ``emseg fit`` folder); the labels
    come back as a layer (kept in ``out_dir`` when given). ``params``: post-processing parameters as
    ``key=value, key=value`` (``emseg segment --param``), e.g. ``seed_threshold=0.6``."""
    from ..cli.args import params as parse_params
    from ..instances import PostprocessConfig
    from ..io import read_volume
    from ..workflows import segment_volume

    given = parse_params([p for p in params.split(",") if p.strip()])

    folder = out_dir or tempfile.mkdtemp(prefix="emseg-napari-")
    os.makedirs(folder, exist_ok=True)
    raw = _layer_to_zarr(image, folder, f"{image.name}-raw")
    out = os.path.join(folder, f"{image.name}-labels.zarr")
    segment_volume(raw, out, model, postprocess=PostprocessConfig(params=given or None))
    return (read_volume(out), {"name": f"{image.name} labels", "scale": tuple(image.scale),
                               "translate": tuple(image.translate)}, "labels")


def fit_widget(image: "napari.layers.Image", labels: "napari.layers.Labels",  # noqa: F821
               out_dir: str = "", minutes: float = 5.0) -> str:
    """``emseg fit`` on ``image`` and the sections painted in ``labels`` (the unpainted sections are unknown,
    not background); returns the fitted model's folder, which ``segment_widget`` takes as ``model``."""
    from ..fit.run import FitConfig, fit

    lab = np.asarray(labels.data)
    if lab.shape != tuple(image.data.shape):
        raise ValueError(f"labels layer {labels.name!r} has shape {lab.shape}; the image {image.name!r} has "
                         f"{tuple(image.data.shape)}")
    painted = tuple(int(z) for z in np.nonzero(lab.reshape(lab.shape[0], -1).any(axis=1))[0]) if lab.ndim == 3 else None
    if lab.ndim == 3 and not painted:
        raise ValueError(f"labels layer {labels.name!r} is empty: paint the objects of a few whole sections first")
    folder = out_dir or tempfile.mkdtemp(prefix="emseg-napari-fit-")
    data = tempfile.mkdtemp(prefix="emseg-napari-data-")
    raw_path = _layer_to_zarr(image, data, "raw")
    lab_path = _layer_to_zarr(labels, data, "labels")
    fit(FitConfig(raw=raw_path, labels=lab_path, out_dir=folder, minutes=float(minutes),
                  sections=painted if painted and len(painted) < lab.shape[0] else None))
    return folder

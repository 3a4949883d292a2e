"""OME-NGFF label images: a segmentation stored inside the raw image it was made from.

``IMAGE.zarr:labels/NAME`` is the label image ``NAME`` of the OME-Zarr image ``IMAGE.zarr``::

    IMAGE.zarr/                 the raw image (multiscales: 0, 1, ...)
    IMAGE.zarr/labels/          {"labels": ["NAME", ...]}
    IMAGE.zarr/labels/NAME/     multiscales of its own + {"image-label": {"source": {"image": "../../"}}}

Viewers that read OME-NGFF (napari-ome-zarr, ome-zarr-py, neuroglancer) then show it as a label
layer over the raw, with the raw's voxel size. emseg writes the label image like any keyed output
(complete or absent) and lists it in ``labels/`` once it is in place (:func:`register_label_image`).
"""

from __future__ import annotations

import os

__all__ = ["label_image_key", "register_label_image"]


def label_image_key(path) -> tuple[str, str] | None:
    """``(container, name)`` when ``path`` is ``IMAGE.zarr:labels/NAME`` of an OME-Zarr image, else None.

    Examples
    --------
    >>> label_image_key("raw.zarr:seg") is None, label_image_key("raw.h5:labels/cells") is None
    (True, True)
    """
    from .paths import split_key

    container, key = split_key(os.fspath(path))
    if key is None or not container.rstrip("/").endswith(".zarr"):
        return None
    parent, _, name = key.strip("/").rpartition("/")
    if parent != "labels" or not name or not os.path.isdir(container):
        return None
    from .omezarr import ome_multiscales

    import zarr

    try:
        root = zarr.open_group(container, mode="r")
    except Exception:  # noqa: BLE001 - not a group: not an image
        return None
    return (container, name) if ome_multiscales(root.attrs.asdict()) else None


def register_label_image(path, colors=None) -> bool:
    """Make ``IMAGE.zarr:labels/NAME`` a label image of its image: ``image-label`` on it, ``NAME`` in the
    ``labels`` list. Returns False (and does nothing) when ``path`` is not such a key."""
    found = label_image_key(path)
    if found is None:
        return False
    import zarr

    container, name = found
    root = zarr.open_group(container, mode="r+")
    v3 = root.metadata.zarr_format == 3
    group = root["labels"]
    label = group[name]
    meta = {"version": "0.5" if v3 else "0.4", "source": {"image": "../../"}}
    if colors:
        meta["colors"] = colors
    if v3:
        label.attrs["ome"] = {**dict(label.attrs.get("ome", {})), "image-label": {"source": meta["source"]}}
        names = list(dict(group.attrs.get("ome", {})).get("labels", []))
        group.attrs["ome"] = {"version": "0.5", "labels": names + ([name] if name not in names else [])}
    else:
        label.attrs["image-label"] = meta
        names = list(group.attrs.get("labels", []))
        group.attrs["labels"] = names + ([name] if name not in names else [])
    return True

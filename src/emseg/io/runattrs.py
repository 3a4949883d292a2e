"""The ``emseg`` attribute of a finished output: its run's signature and ``complete``, kept with the data.

HDF5, Zarr and N5 datasets carry it (other formats keep none), so rerunning a finished command
finds its result and does nothing.
"""

from __future__ import annotations

import json
import os

from .paths import detect_format, split_key

__all__ = ["read_run_attrs", "write_run_attrs"]


def write_run_attrs(path, key, fmt, attrs) -> None:
    """Store ``attrs`` as the ``emseg`` attribute of the dataset (HDF5, Zarr, N5); other formats keep none."""
    if fmt == "zarr":
        import zarr

        root = zarr.open(str(path), mode="r+")
        node = root[key] if key else root
        node.attrs["emseg"] = attrs
        if isinstance(node, zarr.Group) and "0" in node:  # an OME-Zarr image: its array says it too
            node["0"].attrs["emseg"] = attrs
    elif fmt == "n5":
        from .n5attrs import write_n5_attrs

        write_n5_attrs(path, key or "", {"emseg": attrs})
    elif fmt == "hdf5":
        import h5py

        with h5py.File(path, "a") as f:
            f[key].attrs["emseg"] = json.dumps(attrs)


def read_run_attrs(path, key=None, fmt=None) -> dict | None:
    """The ``emseg`` attribute of a dataset written by emseg, or None (no such attribute, or unreadable)."""
    path, key = split_key(os.fspath(path), key)
    try:
        fmt = fmt or detect_format(path)
        if fmt == "zarr":
            import zarr

            root = zarr.open(str(path), mode="r")
            node = root[key] if key else root
            value = node.attrs.get("emseg")
        elif fmt == "n5":
            from .n5attrs import read_n5_attrs

            value = read_n5_attrs(path, key or "").get("emseg")
        elif fmt == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                value = f[key].attrs.get("emseg") if key in f else None
            value = json.loads(value) if isinstance(value, (str, bytes)) else None
        else:
            return None
    except Exception:  # noqa: BLE001 - an unreadable attribute is no attribute
        return None
    return value if isinstance(value, dict) else None

"""Which format a path holds, and the ``file.h5:key`` syntax."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["FORMATS", "split_key", "detect_format", "natural_key", "IMAGE_SUFFIXES", "KeyNotFoundError"]

# format name -> file suffixes. Containers (hdf5, zarr, n5) hold named datasets ("keys").
FORMATS = {
    "tiff": (".tif", ".tiff"),
    "hdf5": (".h5", ".hdf5", ".hdf", ".he5"),
    "zarr": (".zarr",),
    "n5": (".n5",),
    "mrc": (".mrc", ".mrcs", ".rec", ".map", ".st", ".ali"),
    "nifti": (".nii", ".nii.gz"),
    "image": (".png", ".jpg", ".jpeg"),
    "image-folder": (),
}
CONTAINERS = ("hdf5", "zarr", "n5")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

_CONTAINER_SUFFIX = "|".join(re.escape(s) for f in CONTAINERS for s in FORMATS[f])
_KEYED = re.compile(rf"^(?P<path>.+?(?:{_CONTAINER_SUFFIX}))[:/](?P<key>[^:]+)$", re.IGNORECASE)


def split_key(path, key=None) -> tuple[str, str | None]:
    """Split ``"file.h5:volumes/raw"`` into ``("file.h5", "volumes/raw")``.

    An explicit ``key`` wins over one in the path. ``"a.zarr/raw"`` also splits when the path
    does not exist as written (a key inside a Zarr/N5 directory).

    Examples
    --------
    >>> split_key("sample_A.h5:volumes/raw")
    ('sample_A.h5', 'volumes/raw')
    >>> split_key("cells.zarr", key="labels")
    ('cells.zarr', 'labels')
    """
    path = os.fspath(path)
    m = _KEYED.match(path)
    if m and (":" in path[len(m["path"]):len(m["path"]) + 1] or not os.path.exists(path)):
        path, inline = m["path"], m["key"].strip("/")
        key = key if key is not None else inline
    return path, (key.strip("/") or None) if key else None


def _suffix(path: str) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def detect_format(path, format=None, *, for_writing=False) -> str:
    """Name the format of ``path`` from its suffix (or, for directories, its contents).

    Raises ``ValueError`` listing the supported suffixes when nothing matches.

    Examples
    --------
    >>> detect_format("train-volume.tif"), detect_format("x.nii.gz"), detect_format("s.n5")
    ('tiff', 'nifti', 'n5')
    """
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}; got {format!r}")
        return format
    path = os.fspath(path)
    suffix = _suffix(path)
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    if os.path.isdir(path):
        entries = set(os.listdir(path))
        if "attributes.json" in entries:
            return "n5"
        if entries & {".zarray", ".zgroup", "zarr.json"}:
            return "zarr"
        return "image-folder"
    if for_writing and suffix == "":
        return "image-folder"
    supported = ", ".join(s for f in FORMATS.values() for s in f)
    raise ValueError(f"{path}: unsupported file type {suffix or '(no suffix)'!r}; supported: {supported}, "
                     "or a folder of .tif/.png/.jpg slices")


def natural_key(name: str):
    """Sort key that puts ``2.png`` before ``10.png``.

    Examples
    --------
    >>> sorted(["s10.png", "s2.png", "s1.png"], key=natural_key)
    ['s1.png', 's2.png', 's10.png']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


class KeyNotFoundError(KeyError, ValueError):
    """A container (HDF5/Zarr/N5) has no dataset under the key asked for; the message lists those it has."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""

"""Which format a path holds, and the ``file.h5:key`` syntax."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["FORMATS", "split_key", "check_key", "inside_container", "check_format", "detect_format", "sniff_format",
           "suffix_hint", "natural_key", "IMAGE_SUFFIXES", "KeyNotFoundError"]

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
    """Split ``"file.h5:volumes/raw"`` into ``("file.h5", "volumes/raw")``, checking the key.

    An explicit ``key`` wins over one in the path. ``"a.zarr/raw"`` also splits when the path
    does not exist as written (a key inside a Zarr/N5 directory). The key goes through
    :func:`check_key`, so a key that could leave the container never gets further, for reading
    and writing alike.

    Examples
    --------
    >>> split_key("sample_A.h5:volumes/raw")
    ('sample_A.h5', 'volumes/raw')
    >>> split_key("cells.zarr", key="labels/")
    ('cells.zarr', 'labels')
    >>> split_key("out.zarr:../victim")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: out.zarr: dataset key '../victim' is not allowed: keys are relative names inside the container ...
    """
    path = os.fspath(path)
    m = _KEYED.match(path)
    if m and (":" in path[len(m["path"]):len(m["path"]) + 1] or not os.path.exists(path)):
        path, inline = m["path"], m["key"]
        key = key if key is not None else inline
    return path, check_key(path, key)


_KEY_RULE = "keys are relative names inside the container without '.' or '..' parts"


def check_key(container, key) -> str | None:
    """Return ``key`` without trailing ``/``, or raise ``ValueError`` if it could leave ``container``.

    Refused: ``.`` and ``..`` parts, empty parts (``a//b``), backslashes, NUL characters and
    absolute keys (a leading ``/``). In an HDF5 file, where ``/`` is the file's own root group
    (``f["/volumes/raw"]`` in h5py), one leading ``/`` is accepted and dropped. ``None`` and
    ``""`` mean "no key".

    Examples
    --------
    >>> check_key("a.zarr", "volumes/raw/"), check_key("a.h5", "/volumes/raw"), check_key("a.zarr", "")
    ('volumes/raw', 'volumes/raw', None)
    >>> check_key("a.zarr", "a//b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: a.zarr: dataset key 'a//b' is not allowed: ... (found an empty part)
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"{container}: dataset key must be a str such as 'volumes/raw'; got {type(key).__name__}")
    if not key:
        return None
    name = key.rstrip("/")
    if _suffix(os.fspath(container)) in FORMATS["hdf5"] and key.startswith("/"):
        if not name:
            return None  # the root group
        name = name[1:]
    reason = None
    if "\\" in name:
        reason = "found a backslash"
    elif "\0" in name:
        reason = "found a NUL character"
    elif name.startswith("/") or not name:
        reason = "found an absolute key"
    else:
        parts = name.split("/")
        if any(p in (".", "..") for p in parts):
            reason = ""
        elif "" in parts:
            reason = "found an empty part"
    if reason is not None:
        raise ValueError(f"{container}: dataset key {key!r} is not allowed: {_KEY_RULE}"
                         + (f" ({reason})" if reason else ""))
    return name


def inside_container(container, key) -> str:
    """The real on-disk path of ``key`` in the directory store ``container`` (Zarr, N5), checked.

    Resolves symbolic links (``os.path.realpath``) and raises ``ValueError`` unless the result
    lies strictly inside the container's own real path, so a key, or a link inside the
    container, can never point a deletion at something outside. Call it before removing a key.

    Examples
    --------
    >>> import os, tempfile
    >>> root = os.path.join(tempfile.mkdtemp(), "out.zarr")
    >>> os.makedirs(os.path.join(root, "raw"))
    >>> inside_container(root, "raw") == os.path.join(os.path.realpath(root), "raw")
    True
    >>> os.symlink(tempfile.gettempdir(), os.path.join(root, "link"))
    >>> inside_container(root, "link/x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...out.zarr: dataset key 'link/x' resolves to ..., which is outside the container ...
    """
    name = check_key(container, key)
    if name is None:
        raise ValueError(f"{container}: name a dataset key inside the container; got {key!r}")
    root = os.path.realpath(container)
    real = os.path.realpath(os.path.join(root, *name.split("/")))
    if real == root or os.path.commonpath([root, real]) != root:
        raise ValueError(f"{container}: dataset key {key!r} resolves to {real}, which is outside the container "
                         f"{root}; refusing to touch it")
    return real


def _suffix(path: str) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def check_format(format) -> str:
    """``format`` if it names a format of :data:`FORMATS`, else ``ValueError`` listing them.

    Examples
    --------
    >>> check_format("zarr")
    'zarr'
    >>> check_format("hdf6")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: format must be one of ['hdf5', 'image', ...]; got 'hdf6'
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}; got {format!r}")
    return format


def detect_format(path, format=None, *, for_writing=False) -> str:
    """Name the format of ``path`` from its suffix (or, for directories, its contents).

    Raises ``ValueError`` listing the supported suffixes when nothing matches.

    Examples
    --------
    >>> detect_format("train-volume.tif"), detect_format("x.nii.gz"), detect_format("s.n5")
    ('tiff', 'nifti', 'n5')
    """
    if format is not None:
        return check_format(format)
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


# what the first bytes of a file say it is: (name, what it is, the suffix it should have)
_KINDS = {"tiff": ("a TIFF file", ".tif"), "png": ("a PNG image", ".png"), "jpeg": ("a JPEG image", ".jpg"),
          "hdf5": ("an HDF5 file", ".h5"), "mrc": ("an MRC file", ".mrc"), "nifti": ("a NIfTI file", ".nii"),
          "gzip": ("gzip-compressed data", ".gz"), "zip": ("a ZIP archive", ".zip")}
_FORMAT_KINDS = {"tiff": ("tiff",), "image": ("png", "jpeg", "tiff"), "hdf5": ("hdf5",), "mrc": ("mrc",),
                 "nifti": ("nifti", "gzip"), "image-folder": ("png", "jpeg", "tiff")}


def sniff_format(path) -> str | None:
    """What a file's first bytes say it holds: one of ``tiff, png, jpeg, hdf5, mrc, nifti, gzip,
    zip``, or None (unknown, unreadable or a folder).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
    >>> _ = open(path, "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(100))
    >>> sniff_format(path)
    'png'
    """
    try:
        with open(path, "rb") as f:
            head = f.read(1032)
    except OSError:
        return None
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if b"\x89HDF\r\n\x1a\n" in (head[:8], head[512:520], head[1024:1032]):
        return "hdf5"
    if head[208:212] == b"MAP ":
        return "mrc"
    if head[344:348] in (b"n+1\0", b"ni1\0") or head[4:8] in (b"n+2\0", b"ni2\0"):
        return "nifti"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return None


def suffix_hint(path, format) -> str:
    """A clause for "not a readable FORMAT file" errors: the file is empty, or holds another format.

    Returns ``""`` when the content could be ``format`` (or is not recognised).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.h5")
    >>> _ = open(path, "wb").write(b"II*\\0" + bytes(100))
    >>> suffix_hint(path, "hdf5")
    '; its content is a TIFF file, not hdf5: rename it to end in .tif'
    """
    try:
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            return "; the file is empty (0 bytes)"
    except OSError:
        return ""
    kind = sniff_format(path)
    if kind is None or kind in _FORMAT_KINDS.get(format, (format,)):
        return ""
    what, suffix = _KINDS[kind]
    return f"; its content is {what}, not {format}: rename it to end in {suffix}"


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

"""N5 containers read and written with numpy, the standard library and numcodecs.

Why our own: zarr-python 3 dropped N5 support, and the remaining pip options (``zarr-n5``,
``pyn5``) are unmaintained or pin an old zarr. N5 is a small format (the "file-system
specification" in the README of https://github.com/saalfeldlab/n5), so it is implemented here
with numpy + the standard library (gzip/zlib, bz2, lzma) + numcodecs (Blosc, Zstd).

On disk (N5 lists axes x first; everything in this module is numpy order, z y x)::

    vol.n5/
      attributes.json        {"n5": "4.0.0"}
      raw/                   a dataset: {"dimensions": [X, Y, Z], "blockSize": [bx, by, bz],
        attributes.json                  "dataType": "uint8", "compression": {"type": "gzip", ...}}
        <ix>/<iy>/<iz>       one block: big-endian header (uint16 mode, uint16 ndim, ndim x uint32
                             size, x first), then the compressed payload, big-endian, x fastest

Edge blocks are written truncated to the dataset bounds; blocks of any size are read (tensorstore
writes full-size edge blocks). Missing blocks read as 0. Each block and attributes.json is
written to a temporary file and renamed into place, so a crashed writer never leaves half a
block, and threads may write different blocks at once.

This module is the array; :mod:`emseg.io.n5blocks` reads and writes the block files and
:mod:`emseg.io.n5attrs` the attributes.json files (groups, datasets, their attributes).

Examples
--------
>>> import shutil, tempfile
>>> root = tempfile.mkdtemp(suffix=".n5")
>>> arr = create_n5(root, "raw", shape=(5, 6, 7), dtype="uint8", chunks=(2, 4, 4))
>>> arr[1:3] = 7
>>> vol = open_n5(root, "raw")
>>> vol.shape, int(vol[:, 0, 0].sum()), list_n5_datasets(root)
((5, 6, 7), 14, ['raw'])
>>> shutil.rmtree(root)
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import shutil

import numpy as np

from .n5attrs import (N5_VERSION, RESERVED_KEYS, check_reserved, is_dataset, json_default, list_n5_datasets, locate,
                      read_json, read_n5_attrs, update_json, write_n5_attrs)
from .n5blocks import normalize_compression, read_block, write_block
from .paths import KeyNotFoundError

# list_n5_datasets, read_n5_attrs and write_n5_attrs live in n5attrs and are importable from here.
__all__ = ["N5Array", "open_n5", "create_n5", "list_n5_datasets", "read_n5_attrs", "write_n5_attrs"]

DATA_TYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64")
MODES = ("r", "r+")


def _normalize_index(key, shape):
    """Bounding box ``(lo, hi)`` of a basic numpy index, and the index into that box."""
    key = key if isinstance(key, tuple) else (key,)
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        i = ellipses[0]
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for an N5 array of shape {shape}")
    key = key + (slice(None),) * (len(shape) - len(key))
    lo, hi, local = [], [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, slice):
            r = range(*k.indices(n))
            a, b = (min(r[0], r[-1]), max(r[0], r[-1]) + 1) if r else (0, 0)
            stop = r[-1] - a + r.step if r else 0
            local.append(slice(r[0] - a if r else 0, stop if stop >= 0 else None, r.step))
        else:
            try:
                i = operator.index(k)
            except TypeError:
                raise TypeError(f"N5 arrays take ints, slices and ... as indices; got {type(k).__name__}. "
                                "Read a region first (arr[...]) for fancy indexing") from None
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            a, b = i % n, i % n + 1
            local.append(0)
        lo.append(a)
        hi.append(b)
    return tuple(lo), tuple(hi), tuple(local)


class N5Array:
    """A lazy numpy-style view of one N5 dataset; reads and writes only the blocks an index touches.

    Made by :func:`open_n5` and :func:`create_n5`. Axes are in numpy order (z, y, x).

    Attributes
    ----------
    path : str
        The dataset folder.
    shape, chunks : tuple of int
        Dataset and block shape, numpy order.
    dtype : numpy.dtype
    compression : dict
        The N5 compression, with every parameter filled in.
    attrs : dict
        The dataset's attributes.json without the layout keys (dimensions, blockSize, ...).
    mode : {"r", "r+"}
    """

    def __init__(self, path, mode="r"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        self.path, self.mode = os.fspath(path), mode
        where = os.path.join(self.path, "attributes.json")
        meta = read_json(where)
        if not is_dataset(meta):
            below = list_n5_datasets(self.path)
            raise ValueError(f"{self.path} is an N5 group, not a dataset (its attributes.json has no dimensions, "
                             f"blockSize and dataType); datasets below it: {', '.join(below) or '(none)'}")
        if meta["dataType"] not in DATA_TYPES:
            raise ValueError(f"{where}: unsupported dataType {meta['dataType']!r}; supported: {', '.join(DATA_TYPES)}")
        self.dtype = np.dtype(meta["dataType"])
        self.shape = tuple(int(n) for n in meta["dimensions"][::-1])
        self.chunks = tuple(int(n) for n in meta["blockSize"][::-1])
        if len(self.chunks) != len(self.shape) or min(self.chunks, default=1) < 1:
            raise ValueError(f"{where}: blockSize {meta['blockSize']} does not fit dimensions {meta['dimensions']}")
        self.compression = normalize_compression(meta.get("compression", meta.get("compressionType", "raw")), where)
        self.attrs = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        return (f"N5Array({self.path!r}, shape={self.shape}, dtype={self.dtype}, chunks={self.chunks}, "
                f"compression={self.compression['type']!r}, mode={self.mode!r})")

    def _block_path(self, index) -> str:
        return os.path.join(self.path, *(str(i) for i in index[::-1]))

    def _blocks(self, lo, hi):
        """Grid indices (numpy order) of the blocks that overlap the box [lo, hi)."""
        if any(b <= a for a, b in zip(lo, hi)):
            return []
        return itertools.product(*(range(a // c, (b - 1) // c + 1) for a, b, c in zip(lo, hi, self.chunks)))

    def _read(self, lo, hi) -> np.ndarray:
        out = np.zeros([b - a for a, b in zip(lo, hi)], self.dtype)
        for index in self._blocks(lo, hi):
            block = read_block(self._block_path(index), self.dtype, self.ndim, self.compression["type"])
            if block is None:
                continue
            start = [i * c for i, c in zip(index, self.chunks)]
            box = [(max(s, a), min(s + n, b)) for s, n, a, b in zip(start, block.shape, lo, hi)]
            if all(x1 > x0 for x0, x1 in box):
                out[tuple(slice(x0 - a, x1 - a) for (x0, x1), a in zip(box, lo))] = \
                    block[tuple(slice(x0 - s, x1 - s) for (x0, x1), s in zip(box, start))]
        return out

    def _write(self, lo, hi, region: np.ndarray) -> None:
        for index in self._blocks(lo, hi):
            start = [i * c for i, c in zip(index, self.chunks)]
            stop = [min(s + c, n) for s, c, n in zip(start, self.chunks, self.shape)]  # truncated at edges
            box = [(max(s, a), min(e, b)) for s, e, a, b in zip(start, stop, lo, hi)]
            part = region[tuple(slice(x0 - a, x1 - a) for (x0, x1), a in zip(box, lo))]
            path = self._block_path(index)
            if box != list(zip(start, stop)):  # partly covered: read, modify, write
                block = np.zeros([e - s for s, e in zip(start, stop)], self.dtype)
                old = read_block(path, self.dtype, self.ndim, self.compression["type"])
                if old is not None:
                    overlap = tuple(slice(0, min(m, n)) for m, n in zip(old.shape, block.shape))
                    block[overlap] = old[overlap]
                block[tuple(slice(x0 - s, x1 - s) for (x0, x1), s in zip(box, start))] = part
                part = block
            write_block(path, part, self.compression)

    def __getitem__(self, key) -> np.ndarray:
        lo, hi, local = _normalize_index(key, self.shape)
        return self._read(lo, hi)[local]

    def __setitem__(self, key, value) -> None:
        self._check_writable()
        lo, hi, local = _normalize_index(key, self.shape)
        if all(s == 0 or s.step == 1 for s in local):
            region = np.empty([b - a for a, b in zip(lo, hi)], self.dtype)
        else:  # strided: the voxels between the steps keep their values
            region = self._read(lo, hi)
        region[local] = value
        self._write(lo, hi, region)

    def update_attrs(self, **attrs) -> None:
        """Merge ``attrs`` into the dataset's attributes.json (rewritten atomically)."""
        self._check_writable()
        check_reserved(attrs)
        update_json(os.path.join(self.path, "attributes.json"), attrs)
        self.attrs.update(json.loads(json.dumps(attrs, default=json_default)))

    def _check_writable(self):
        if self.mode == "r":
            raise ValueError(f"N5 dataset {self.path} was opened with mode='r'; open it with mode='r+' to write")


def open_n5(path, key=None, mode="r") -> N5Array:
    """Open one dataset of an N5 container lazily.

    Parameters
    ----------
    path : str or os.PathLike
        The container folder (``vol.n5``), or a dataset folder inside it when ``key`` is None.
    key : str, optional
        The dataset inside the container, e.g. ``"volumes/raw"``. None: ``path`` itself, or the
        only dataset below it.
    mode : {"r", "r+"}
        ``"r+"`` allows writing.

    Returns
    -------
    N5Array

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    KeyNotFoundError
        (a ``KeyError`` and ``ValueError``) ``key`` does not exist; the message lists the datasets.
    ValueError
        ``key`` is a group, or the dataset uses an unsupported dataType or compression.
    """
    root, node = locate(path, key or "")
    if key is None and not is_dataset(read_json(os.path.join(root, "attributes.json"))):
        datasets = list_n5_datasets(root)
        node = os.path.join(root, datasets[0]) if len(datasets) == 1 else node
    elif not os.path.isdir(node):
        raise KeyNotFoundError(f"N5 container {root} has no dataset {key!r}; datasets: "
                               f"{', '.join(list_n5_datasets(root)) or '(none)'}")
    return N5Array(node, mode)


def create_n5(path, key, shape, dtype, chunks, compression=None, attrs=None, overwrite=False) -> N5Array:
    """Create a dataset (and the container and groups it needs) and return it open for writing.

    Parameters
    ----------
    path : str or os.PathLike
        The container folder; created with ``{"n5": "4.0.0"}`` in its attributes.json if missing.
    key : str
        The dataset inside the container, e.g. ``"volumes/raw"``.
    shape, chunks : tuple of int
        Dataset and block shape, numpy order (z, y, x); stored x first.
    dtype : str or numpy.dtype
        One of uint8/16/32/64, int8/16/32/64, float32, float64.
    compression : str or dict, optional
        An N5 compression: a type (``"raw"``, ``"gzip"``, ``"bzip2"``, ``"xz"``, ``"blosc"``,
        ``"zstd"``) or a dict such as ``{"type": "blosc", "cname": "zstd"}``; missing parameters
        take the N5 defaults. Default gzip.
    attrs : dict, optional
        Extra attributes for the dataset's attributes.json.
    overwrite : bool
        Replace an existing dataset (or group) at ``key``; otherwise that raises FileExistsError.

    Returns
    -------
    N5Array
        Open with mode ``"r+"``; every block reads 0 until written.
    """
    if not isinstance(key, str) or not key.strip("/"):
        raise ValueError(f"key must name a dataset inside {os.fspath(path)}, e.g. 'raw'; got {key!r}")
    shape, chunks = tuple(int(n) for n in shape), tuple(int(n) for n in chunks)
    if len(chunks) != len(shape) or min(shape, default=0) < 0 or min(chunks, default=1) < 1:
        raise ValueError(f"chunks must be one positive int per axis of shape {shape}; got {chunks}")
    if np.dtype(dtype).name not in DATA_TYPES:
        raise ValueError(f"N5 has no dataType for {np.dtype(dtype)}; supported: {', '.join(DATA_TYPES)}")
    compression = normalize_compression(compression, "compression")
    check_reserved(attrs or {})
    os.makedirs(path, exist_ok=True)
    root, node = locate(path, key)
    parent = os.path.dirname(node)
    while parent != root:
        if is_dataset(read_json(os.path.join(parent, "attributes.json"))):
            raise ValueError(f"{parent} is a dataset; N5 datasets cannot hold {key!r}")
        parent = os.path.dirname(parent)
    if os.path.exists(node):
        if not overwrite:
            raise FileExistsError(f"{node} already exists; pass overwrite=True to replace it")
        shutil.rmtree(node)
    if "n5" not in read_json(os.path.join(root, "attributes.json")):
        update_json(os.path.join(root, "attributes.json"), {"n5": N5_VERSION})
    os.makedirs(node)
    update_json(os.path.join(node, "attributes.json"), {
        "dimensions": list(shape[::-1]), "blockSize": list(chunks[::-1]), "dataType": np.dtype(dtype).name,
        "compression": compression, **(attrs or {})})
    return N5Array(node, "r+")

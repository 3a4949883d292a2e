"""The lazy volume: one array on disk, its metadata, numpy-style slicing that reads only what is asked."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

from .meta import VolumeMeta

__all__ = ["Volume", "VolumeReadError", "normalize_index", "describe_error", "unreadable_file"]


class VolumeReadError(OSError, ValueError):
    """A file, or part of a volume, could not be read: the message names the file, the dataset, the
    chunk (or region) and what was wrong, on one line.

    Both an ``OSError`` (it is an I/O failure) and a ``ValueError`` (the content is bad), like
    ``io.UnsupportedOperation``, so either ``except`` catches it.
    """


def describe_error(error: BaseException) -> str:
    """``error`` as one line: its message, after its type when the type says something.

    Examples
    --------
    >>> describe_error(EOFError("Compressed file ended\\n - before the end"))
    'EOFError: Compressed file ended - before the end'
    >>> describe_error(ValueError("bad header"))
    'bad header'
    """
    text = " ".join(str(error).split())
    if type(error) in (ValueError, OSError, RuntimeError, VolumeReadError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def unreadable_file(path, what, error, hint="") -> OSError:
    """The one-line error for a file that does not open as ``what`` (e.g. "TIFF file").

    A permission problem stays a ``PermissionError`` and a folder gets its own message; anything
    else becomes a :class:`VolumeReadError` with the cause and ``hint`` (the fix, when known).

    Examples
    --------
    >>> str(unreadable_file("a.tif", "TIFF file", PermissionError(13, "Permission denied")))
    "a.tif: permission denied: cannot read this TIFF file; check the file's permissions"
    """
    if isinstance(error, PermissionError) or "errno = 13" in str(error):
        return PermissionError(f"{path}: permission denied: cannot read this {what}; check the file's permissions")
    article = "an" if what.split()[0] in ("HDF5", "MRC", "image") else "a"
    if os.path.isdir(path):
        return VolumeReadError(f"{path}: is a folder, not {article} {what}")
    return VolumeReadError(f"{path}: not a readable {what} ({describe_error(error)}){hint}")


def _advice(error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return "; check the file's permissions"
    if isinstance(error, FileNotFoundError):
        return "; a file of the volume was removed while it was read"
    return "; the data on disk is damaged (truncated or corrupt): restore it from a copy or write it again"


def normalize_index(key, shape) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """Turn a numpy basic index into one step-1 slice per axis, plus the axes indexed by an int.

    Steps other than 1 are not pushed to the backend; the caller applies them after reading
    (``Volume.__getitem__`` does). Returns ``(slices, int_axes, steps)``.

    Examples
    --------
    >>> normalize_index((1, slice(2, None)), (4, 5, 6))[:2]
    ((slice(1, 2, None), slice(2, 5, None), slice(0, 6, None)), (0,))
    """
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = (slice(None),) * (len(shape) - len(key) + 1)
        key = key[:i] + fill + key[i + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for a {len(shape)}D volume of shape {shape}")
    key = key + (slice(None),) * (len(shape) - len(key))
    slices, int_axes, steps = [], [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, (int, np.integer)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
            slices.append(slice(i, i + 1))
            int_axes.append(axis)
            steps.append(1)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step < 0:
                raise IndexError("negative slice steps are not supported by lazy volumes; read, then flip")
            slices.append(slice(start, max(start, stop)))
            steps.append(step)
        else:
            raise TypeError(f"lazy volumes take ints, slices and ... as indices, got {type(k).__name__}; "
                            "read a region first (vol[...]) for fancy indexing")
    return tuple(slices), tuple(int_axes), tuple(steps)


def _chunk_shape(array) -> tuple[int, ...] | None:
    """The storage chunk shape ``array`` declares (h5py, zarr and our readers say ``chunks``), or None."""
    chunks = getattr(array, "chunks", None)
    if chunks is None or len(chunks) != len(array.shape) or \
            not all(isinstance(c, (int, np.integer)) for c in chunks):  # e.g. dask's tuples of tuples
        return None
    return tuple(int(c) for c in chunks)


class Volume:
    """A lazily read (and, when opened for writing, written) array with EM metadata.

    Made by :func:`emseg.io.open_volume` and :func:`emseg.io.create_volume`; not usually built
    directly. ``array`` is any object with ``shape``, ``dtype`` and numpy-style ``__getitem__``
    (h5py and zarr arrays, memory maps, the TIFF/N5 readers of this package).

    Attributes
    ----------
    shape, dtype, ndim, chunks : array geometry; ``chunks`` is the storage chunk shape (the
        ``array``'s own ``chunks``, one int per axis) or None (contiguous storage).
    meta : VolumeMeta (axes, voxel_size in nm, offset in nm); also exposed as ``axes``,
        ``voxel_size`` and ``offset``.
    path, key, format : where the data lives.

    A read that fails raises :class:`VolumeReadError` naming the file, the key, the first chunk
    that cannot be read (and where it is: ``chunk_location(index)`` says, e.g. "in file
    raw.zarr/0/1/0/3") and the cause.
    """

    def __init__(self, array, meta: VolumeMeta, *, path, key=None, format, mode="r", closer=None,
                 chunk_location=None):
        if len(meta.axes) != len(array.shape):
            raise ValueError(f"{path}: axes {meta.axes!r} do not match the array's {len(array.shape)}D "
                             f"shape {tuple(array.shape)}")
        self._array = array
        self.meta = meta
        self.path, self.key, self.format, self.mode = str(path), key, format, mode
        self.chunks = _chunk_shape(array)
        self._closer = closer
        self._closed = False
        self._chunk_location = chunk_location

    # geometry -----------------------------------------------------------------------------------
    shape = property(lambda self: tuple(int(s) for s in self._array.shape))
    dtype = property(lambda self: np.dtype(self._array.dtype))
    ndim = property(lambda self: len(self._array.shape))
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    axes = property(lambda self: self.meta.axes)
    voxel_size = property(lambda self: self.meta.voxel_size)
    offset = property(lambda self: self.meta.offset)

    def __len__(self):
        return self.shape[0]

    # data ---------------------------------------------------------------------------------------
    def __getitem__(self, key) -> np.ndarray:
        slices, int_axes, steps = normalize_index(key, self.shape)
        if any(s.stop <= s.start for s in slices):
            out = np.zeros([s.stop - s.start for s in slices], self.dtype)
        elif self._closed:
            where = self.path if self.key is None else f"{self.path}:{self.key}"
            raise ValueError(f"{where}: the volume was closed; open it again (open_volume) to read it")
        else:
            try:
                out = np.asarray(self._array[slices])
            except (VolumeReadError, MemoryError):
                raise
            except Exception as e:  # codec, I/O and format errors of every backend: name the chunk
                raise self._read_error(slices, e) from e
        if any(st != 1 for st in steps):
            out = out[tuple(slice(None, None, st) for st in steps)]
        return out.reshape([n for a, n in enumerate(out.shape) if a not in int_axes]) if int_axes else out

    def _read_error(self, slices, error) -> VolumeReadError:
        index, error = self._failing_chunk(slices, error)
        where = self.path if self.key is None else f"{self.path}:{self.key}"
        if index is None:
            what = "region [" + ", ".join(f"{s.start}:{s.stop}" for s in slices) + "]"
        else:
            box = ", ".join(f"{i * c}:{min((i + 1) * c, n)}" for i, c, n in zip(index, self.chunks, self.shape))
            try:
                location = self._chunk_location(index) if self._chunk_location else None
            except Exception:  # naming the place must not hide the read error
                location = None
            what = f"chunk {index} at voxels [{box}]" + (f" {location}" if location else "")
        return VolumeReadError(f"{where}: cannot read {what}: {describe_error(error)}{_advice(error)}")

    def _failing_chunk(self, slices, error):
        """The grid index of the first chunk of ``slices`` whose read fails, and its error.

        Reads the chunks one by one, only after a read has failed; ``(None, error)`` when the
        volume has no chunk grid or no single chunk fails again.
        """
        if self.chunks is None:
            return None, error
        ranges = [range(s.start // c, (s.stop - 1) // c + 1) for s, c in zip(slices, self.chunks)]
        if math.prod(len(r) for r in ranges) == 1:
            return tuple(r[0] for r in ranges), error
        for index in itertools.product(*ranges):
            part = tuple(slice(max(s.start, i * c), min(s.stop, (i + 1) * c))
                         for s, i, c in zip(slices, index, self.chunks))
            try:
                self._array[part]
            except (VolumeReadError, MemoryError):
                raise
            except Exception as e:
                return index, e
        return None, error

    def __setitem__(self, key, value):
        if self.mode == "r":
            raise PermissionError(f"{self.path}: opened read-only; open with mode='r+' or create_volume() to write")
        slices, int_axes, steps = normalize_index(key, self.shape)
        if any(st != 1 for st in steps):
            raise IndexError("writes take step-1 slices only")
        value = np.asarray(value)
        target = tuple(s.stop - s.start for s in slices)
        if value.ndim and value.dtype != self.dtype and not np.can_cast(value.dtype, self.dtype, "same_kind"):
            raise TypeError(f"{self.path}: cannot write {value.dtype} data into a {self.dtype} volume")
        self._array[slices] = np.broadcast_to(value.astype(self.dtype, copy=False), target)

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    # lifetime -----------------------------------------------------------------------------------
    def flush(self):
        """Make what was written durable in the file (HDF5 keeps it in memory until flushed; the
        directory stores write each chunk as it comes). Call before recording a block as done."""
        file = getattr(self._array, "file", None)  # an h5py dataset
        if self.mode != "r" and hasattr(file, "flush"):
            file.flush()

    def close(self):
        if self._closer is not None:
            self._closed = True
            self._closer()
            self._closer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        where = self.path if self.key is None else f"{self.path}:{self.key}"
        vs = "unknown" if self.voxel_size is None else "x".join(f"{v:g}" for v in self.voxel_size) + " nm"
        return (f"<Volume {self.format} {where} shape={self.shape} dtype={self.dtype} axes={self.axes!r} "
                f"voxel_size={vs} chunks={self.chunks}>")

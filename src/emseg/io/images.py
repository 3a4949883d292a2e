"""Folders of 2D slices (TIFF, PNG, JPEG) as one lazy stack, and single 2D images.

Slices are sorted naturally (``2.png`` before ``10.png``); hidden files (``.DS_Store``, the
``._0001.png`` files macOS leaves on shared drives) and files of other types are not slices.
Their headers are checked at open so a stack with one odd, unreadable or empty slice fails at
once, naming it; a slice whose pixel data is cut short fails when it is read, naming it. Only the
slices a read touches are decoded. Image files carry no voxel size.
"""

from __future__ import annotations

import functools
import logging
import os
import re

import numpy as np

from ..blockwise.geometry import iter_planes
from .meta import VolumeMeta
from .paths import IMAGE_SUFFIXES, natural_key, suffix_hint
from .volume import Volume, VolumeReadError, describe_error, unreadable_file

__all__ = ["open_image_folder", "open_image", "write_image_folder"]
log = logging.getLogger(__name__)

_PIL_DTYPES = {"1": "bool", "L": "uint8", "P": "uint8", "I;16": "uint16", "I;16B": "uint16", "I": "int32",
               "F": "float32", "RGB": "uint8", "RGBA": "uint8", "LA": "uint8"}


def _header(path) -> tuple[tuple[int, ...], np.dtype]:
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = page.shape if page.samplesperpixel == 1 else page.shape[:2]
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
            size = os.path.getsize(path)
            if ends and max(ends) > size:
                raise ValueError(f"cut short: its image data ends at byte {max(ends)} but the file has {size} bytes")
            return tuple(shape), np.dtype(page.dtype)
    from PIL import Image

    with Image.open(path) as im:
        return (im.size[1], im.size[0]), np.dtype(_PIL_DTYPES.get(im.mode, "uint8"))


def _read(path) -> np.ndarray:
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        data = tifffile.imread(path, key=0)
    else:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA", "LA", "P"):
                im = im.convert("L")  # EM is grey-valued; colour PNGs are greys saved as RGB
            data = np.asarray(im)
    return data[..., 0] if data.ndim == 3 else data


def _slice_header(folder, file):
    """The shape and dtype of one slice, or an error naming it."""
    try:
        return _header(file)
    except PermissionError as e:
        raise unreadable_file(file, "slice", e) from None
    except Exception as e:  # PIL.UnidentifiedImageError, TiffFileError, OSError, ...
        kind = "tiff" if file.lower().endswith((".tif", ".tiff")) else "image"
        hint = suffix_hint(file, kind)
        raise VolumeReadError(f"{folder}: slice {os.path.basename(file)!r} is not a readable image "
                              f"({hint[2:] if hint else describe_error(e)}); replace it or move it out of the folder"
                              ) from None


def _warn_about_gaps(folder, names):
    """Log when numbered slices skip a number (``0001.png``, ``0003.png``): a section may be missing."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\.\w+)", n) for n in names]
    if len(names) < 2 or None in parts or len({(m[1], m[3]) for m in parts}) != 1:
        return
    numbers = [int(m[2]) for m in parts]
    for a, b, name in zip(numbers, numbers[1:], names[1:]):
        if b - a > 1:
            log.warning("%s: slice numbers jump from %d to %d at %r: %d section(s) may be missing from the stack",
                        folder, a, b, name, b - a - 1)
            return


def _slice_file(files, index):
    return f"in slice file {files[index[0]]}"


class _Stack:
    def __init__(self, files, shape, dtype):
        self.files, self.shape, self.dtype = files, (len(files),) + shape, dtype
        self.chunks = (1,) + shape

    def __getitem__(self, key):
        zs, rest = key[0], key[1:]
        out = np.empty([s.stop - s.start for s in key], self.dtype)
        for i, z in enumerate(range(zs.start, zs.stop)):
            out[i] = _read(self.files[z])[rest]
        return out


def open_image_folder(path, mode="r") -> Volume:
    if mode != "r":
        raise ValueError(f"{path}: image folders open read-only; write a new one with write_volume()")
    entries = sorted(os.listdir(path), key=natural_key)
    names = [n for n in entries if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith(".")
             and not os.path.isdir(os.path.join(path, n))]  # a broken link stays: it fails, naming itself
    if not names:
        others = [n for n in entries if not n.startswith(".")]
        found = (f"it holds {len(others)} other entr{'y' if len(others) == 1 else 'ies'} such as {others[0]!r}"
                 if others else "it is empty" if not entries else "it holds only hidden files")
        raise ValueError(f"{path}: folder holds no image slices (expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)}); {found}")
    suffixes = {os.path.splitext(n)[1].lower() for n in names}
    if len(suffixes) > 1:
        raise ValueError(f"{path}: folder mixes slice types {sorted(suffixes)}; keep one type per stack")
    _warn_about_gaps(path, names)
    files = [os.path.join(path, n) for n in names]
    shape, dtype = _slice_header(path, files[0])
    for f in files[1:]:
        s, d = _slice_header(path, f)
        if s != shape or d != dtype:
            raise ValueError(f"{path}: slice {os.path.basename(f)!r} is {s} {d} but {names[0]!r} is "
                             f"{shape} {dtype}; every slice of a stack must share shape and dtype")
    if len(shape) != 2:
        raise ValueError(f"{path}: slices must be 2D grey-value images; {names[0]!r} has shape {shape}")
    return Volume(_Stack(files, shape, dtype), VolumeMeta("zyx"), path=path, format="image-folder",
                  chunk_location=functools.partial(_slice_file, files))


def open_image(path, mode="r") -> Volume:
    if mode != "r":
        raise ValueError(f"{path}: images open read-only; write a new one with write_volume()")
    try:
        data = _read(str(path))
    except Exception as e:
        raise unreadable_file(path, "image", e, suffix_hint(path, "image")) from None
    return Volume(data, VolumeMeta("yx"), path=path, format="image")


def write_image_folder(path, data, meta: VolumeMeta, *, suffix=None, progress=None,
                       max_block_bytes=64 * 2**20):
    """Write a zyx array-like as one file per z-slice: ``0000.png``, ``0001.png``, …

    PNG for 8/16-bit unsigned data, TIFF for anything else (or when ``suffix='.tif'``).
    """
    import tifffile
    from PIL import Image

    if meta.axes != "zyx":
        raise ValueError(f"{path}: image folders hold zyx stacks; got axes {meta.axes!r}")
    dtype = np.dtype(data.dtype)
    suffix = suffix or (".png" if dtype in (np.uint8, np.uint16) else ".tif")
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"suffix must be one of {IMAGE_SUFFIXES}; got {suffix!r}")
    os.makedirs(path, exist_ok=False)
    width = max(4, len(str(data.shape[0] - 1)))
    for z, plane in enumerate(iter_planes(data, max_block_bytes)):
        name = os.path.join(path, f"{z:0{width}d}{suffix}")
        if suffix in (".tif", ".tiff"):
            tifffile.imwrite(name, plane, compression="zlib")
        else:
            Image.fromarray(plane).save(name)
        if progress is not None:
            progress(plane.size)

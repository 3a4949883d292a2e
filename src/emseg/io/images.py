"""Folders of 2D slices (TIFF, PNG, JPEG) as one lazy stack, and single 2D images.

Slices are sorted naturally (``2.png`` before ``10.png``); their headers are checked at open
so a stack with one odd slice fails at once, naming it. Only the slices a read touches are
decoded. Image files carry no voxel size.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..blockwise import iter_planes
from .meta import VolumeMeta
from .paths import IMAGE_SUFFIXES, natural_key
from .volume import Volume

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
    names = sorted((n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES)), key=natural_key)
    if not names:
        raise ValueError(f"{path}: folder holds no image slices (expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    suffixes = {os.path.splitext(n)[1].lower() for n in names}
    if len(suffixes) > 1:
        raise ValueError(f"{path}: folder mixes slice types {sorted(suffixes)}; keep one type per stack")
    files = [os.path.join(path, n) for n in names]
    shape, dtype = _header(files[0])
    for f in files[1:]:
        s, d = _header(f)
        if s != shape or d != dtype:
            raise ValueError(f"{path}: slice {os.path.basename(f)!r} is {s} {d} but {names[0]!r} is "
                             f"{shape} {dtype}; every slice of a stack must share shape and dtype")
    if len(shape) != 2:
        raise ValueError(f"{path}: slices must be 2D grey-value images; {names[0]!r} has shape {shape}")
    return Volume(_Stack(files, shape, dtype), VolumeMeta("zyx"), path=path, format="image-folder",
                  chunks=(1,) + shape)


def open_image(path, mode="r") -> Volume:
    if mode != "r":
        raise ValueError(f"{path}: images open read-only; write a new one with write_volume()")
    try:
        data = _read(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    return Volume(data, VolumeMeta("yx"), path=path, format="image")


def write_image_folder(path, data, meta: VolumeMeta, *, suffix=None, progress=None, max_bytes=64 * 2**20):
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
    for z, plane in enumerate(iter_planes(data, max_bytes)):
        name = os.path.join(path, f"{z:0{width}d}{suffix}")
        if suffix in (".tif", ".tiff"):
            tifffile.imwrite(name, plane, compression="zlib")
        else:
            Image.fromarray(plane).save(name)
        if progress is not None:
            progress(plane.size)

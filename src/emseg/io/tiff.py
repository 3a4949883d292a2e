"""TIFF stacks: multi-page, BigTIFF, ImageJ hyperstacks and OME-TIFF, compressed or not.

Reading goes through tifffile's Zarr view of the file, so a slice reads only the strips or tiles
it touches (a 128-row band of one page, not the page). Writing streams one page at a time from
any array-like, so a stack larger than memory converts with bounded memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re

import numpy as np

from ..blockwise.geometry import iter_planes
from .meta import VolumeMeta, plausible_voxel_size, to_nm
from .paths import suffix_hint
from .volume import Volume, VolumeReadError, unreadable_file

__all__ = ["open_tiff", "write_tiff"]
log = logging.getLogger(__name__)

_IMAGEJ_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "float32")}
_FOUR_GB = 2**32 - 2**25  # leave room for the IFDs


def _corrupt(path, error):
    return unreadable_file(path, "TIFF file", error, suffix_hint(path, "tiff") or "; it may be truncated or corrupt")


def _cut_short(path, why):
    return VolumeReadError(f"{path}: TIFF file is cut short: {why}; it was truncated (an interrupted copy or "
                           "write?): copy or write it again")


@contextlib.contextmanager
def _tifffile_warnings():
    """Collect what tifffile logs while a file is parsed (its only sign of a cut-off page chain)."""
    messages = []

    def keep(record):
        messages.append(record.getMessage())
        return False

    logger = logging.getLogger("tifffile")
    logger.addFilter(keep)
    try:
        yield messages
    finally:
        logger.removeFilter(keep)


def open_tiff(path, mode="r") -> Volume:
    """Open a (multi-page) TIFF lazily; voxel size from ImageJ, OME or emseg metadata.

    A file cut short (pages missing from its page chain, or image data past its end) is refused
    at open; a page whose data does not decode is named when it is read.
    """
    import tifffile
    import zarr

    if mode != "r":
        raise ValueError(f"{path}: TIFF files open read-only (mode='r'); got mode={mode!r}. "
                         "Write a new file with write_volume() instead")
    with _tifffile_warnings() as warned:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as e:  # tifffile raises several types for damaged files
            raise _corrupt(path, e) from None
        try:
            series = tif.series[0]
            _check_extent(tif, series, path, warned)
            array = zarr.open(series.aszarr(), mode="r")
        except VolumeReadError:
            tif.close()
            raise
        except Exception as e:
            tif.close()
            raise _corrupt(path, e) from None
    for message in warned:
        log.warning("%s: %s", path, message)
    try:
        axes = _axes(series.axes, path)
        meta = VolumeMeta(axes, *_voxel_size_offset(tif, axes))
    except Exception:
        tif.close()
        raise
    return Volume(array, meta, path=path, format="tiff", closer=tif.close,
                  chunk_location=_chunk_location(series, axes, array.chunks))


def _chunk_location(series, axes, chunks):
    page = series.keyframe
    per_page = math.prod(-(-n // c) for n, c in zip(page.shape[:2], chunks[-2:]))
    kind = "tile" if page.is_tiled else "strip"

    def location(index):
        if axes not in ("zyx", "yx"):
            return None
        z = index[0] if axes == "zyx" else 0
        return f"in page {z}" + (f", {kind} {tuple(index[-2:])}" if per_page > 1 else "")

    return location


def _check_extent(tif, series, path, warned):
    """Fail at open, not halfway through a conversion, when the file ends before its last page."""
    size = os.path.getsize(path)
    page = series.keyframe
    count = series.size // max(1, page.size)
    declared = f"its {count}" if series.kind != "generic" else f"the {count} remaining"  # generic: none stored
    if series.dataoffset is not None:  # contiguous ImageJ/shaped data: one extent for all pages
        end = series.dataoffset + series.size * series.dtype.itemsize
        if end > size:
            complete = max(0, size - series.dataoffset) // max(1, page.size * series.dtype.itemsize)
            raise _cut_short(path, f"its image data ends at byte {end} but the file has {size} bytes: "
                                   f"{complete} of {declared} pages are complete")
    else:
        for i, page in enumerate(series.pages):
            if page is None:
                raise _cut_short(path, f"page {i} of {declared} pages is missing")
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
            if ends and max(ends) > size:
                raise _cut_short(path, f"page {i}'s image data ends at byte {max(ends)} but the file has {size} "
                                       f"bytes: {i} of {declared} pages are complete")
    for message in warned:  # the page chain points past the end: pages were cut off without a trace
        m = re.search(r"invalid page offset (\d+)", message)
        if m and int(m[1]) >= size:
            raise _cut_short(path, f"the next page would start at byte {m[1]} but the file has {size} bytes; "
                                   f"only {len(tif.pages)} pages are left")


def _axes(tiff_axes: str, path) -> str:
    """Map tifffile's axis codes to ours; EM stacks are Z (or I, Q: generic image index)."""
    mapped = tiff_axes.upper().replace("I", "Z").replace("Q", "Z").replace("S", "C")
    axes = mapped.lower()
    if set(axes) - set("czyx") or len(set(axes)) != len(axes):
        if len(axes) == 3 and axes.endswith("yx"):  # e.g. TYX time series: treat frames as sections
            return "zyx"
        raise ValueError(f"{path}: TIFF axes {tiff_axes!r} are not a 2D/3D grey-value stack "
                         "(supported: YX, ZYX, CZYX)")
    return axes


def _voxel_size_offset(tif, axes):
    spatial = "".join(a for a in axes if a in "zyx")
    page = tif.pages[0]
    size = {}
    if tif.shaped_metadata and "voxel_size_nm" in (tif.shaped_metadata[0] or {}):
        vs = tif.shaped_metadata[0]["voxel_size_nm"]
        return plausible_voxel_size(vs) if len(vs) == len(spatial) else None, None
    if tif.is_ome:
        size = _ome_physical_sizes(tif.ome_metadata)
    elif tif.is_imagej:
        ij = tif.imagej_metadata or {}
        unit = ij.get("unit", "").replace("\\u00B5", "µ")
        xres, yres = (page.tags.get(t) for t in ("XResolution", "YResolution"))
        if unit and xres and yres:
            size["x"] = to_nm(xres.value[1] / xres.value[0], unit)
            size["y"] = to_nm(yres.value[1] / yres.value[0], unit)
            if "spacing" in ij:
                size["z"] = to_nm(ij["spacing"], unit)
    else:  # plain resolution tags in pixels per cm / inch: accept only micron-scale pixels
        unit = {2: "inch", 3: "cm"}.get(int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 0)
        if unit:
            per = 2.54e7 if unit == "inch" else 1e7
            for ax, tag in (("x", "XResolution"), ("y", "YResolution")):
                if tag in page.tags:
                    num, den = page.tags[tag].value
                    if num:
                        size[ax] = per * den / num if per * den / num < 1e4 else None
    if any(size.get(a) is None for a in spatial):
        return None, None
    return plausible_voxel_size([size[a] for a in spatial]), None


def _ome_physical_sizes(xml: str) -> dict:
    pixels = re.search(r"<Pixels\b[^>]*>", xml or "")
    sizes = {}
    if pixels:
        for ax in "xyz":
            v = re.search(rf'PhysicalSize{ax.upper()}="([^"]+)"', pixels[0])
            u = re.search(rf'PhysicalSize{ax.upper()}Unit="([^"]+)"', pixels[0])
            if v:
                sizes[ax] = to_nm(float(v[1]), u[1] if u else "µm")
    return sizes


def write_tiff(path, data, meta: VolumeMeta, *, compression="zlib", progress=None,
               max_block_bytes=64 * 2**20):
    """Write ``data`` (any array-like, ``yx``/``zyx``/``czyx``) as one TIFF, a page at a time.

    uint8/uint16/float32 data under 4 GB becomes an ImageJ hyperstack (Fiji shows the voxel
    size); anything else a BigTIFF whose JSON description carries ``voxel_size_nm``.
    """
    import tifffile

    shape, dtype = tuple(data.shape), np.dtype(data.dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    imagej = dtype in _IMAGEJ_DTYPES and nbytes < _FOUR_GB and meta.axes in ("yx", "zyx")
    vs = meta.voxel_size
    kwargs = {}
    if imagej:
        md = {"axes": meta.axes.upper()}
        if vs is not None:
            md.update(unit="nm", spacing=vs[0] if len(vs) == 3 else 1.0)
            kwargs["resolution"] = (1.0 / vs[-1], 1.0 / vs[-2])
        kwargs["metadata"] = md
    else:
        kwargs["metadata"] = {"axes": meta.axes.upper(),
                              **({"voxel_size_nm": list(vs)} if vs is not None else {})}

    def pages():
        for plane in iter_planes(data, max_block_bytes):
            yield plane
            if progress is not None:
                progress(plane.size)

    tifffile.imwrite(path, pages(), shape=shape, dtype=dtype,
                     imagej=imagej, bigtiff=not imagej and nbytes >= _FOUR_GB,
                     compression=compression, photometric="minisblack", **kwargs)

"""TIFF stacks: multi-page, BigTIFF, ImageJ hyperstacks and OME-TIFF, compressed or not.

Reading goes through tifffile's Zarr view of the file, so a slice reads only the strips or tiles
it touches (a 128-row band of one page, not the page). Writing streams one page at a time from
any array-like, so a stack larger than memory converts with bounded memory.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..blockwise import iter_planes
from .meta import VolumeMeta, plausible_voxel_size, to_nm
from .volume import Volume

__all__ = ["open_tiff", "write_tiff"]

_IMAGEJ_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "float32")}
_FOUR_GB = 2**32 - 2**25  # leave room for the IFDs


def _corrupt(path, why):
    return ValueError(f"{path}: not a readable TIFF file ({why}); it may be truncated or corrupt")


def open_tiff(path, mode="r") -> Volume:
    """Open a (multi-page) TIFF lazily; voxel size from ImageJ, OME or emseg metadata."""
    import tifffile
    import zarr

    if mode != "r":
        raise ValueError(f"{path}: TIFF files open read-only (mode='r'); got mode={mode!r}. "
                         "Write a new file with write_volume() instead")
    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:  # tifffile raises several types for damaged files
        raise _corrupt(path, e) from None
    try:
        series = tif.series[0]
        _check_extent(tif, series, path)
        array = zarr.open(series.aszarr(), mode="r")
    except ValueError:
        tif.close()
        raise
    except Exception as e:
        tif.close()
        raise _corrupt(path, e) from None
    axes = _axes(series.axes, path)
    meta = VolumeMeta(axes, *_voxel_size_offset(tif, axes))
    return Volume(array, meta, path=path, format="tiff", chunks=array.chunks, closer=tif.close)


def _check_extent(tif, series, path):
    """Fail at open, not halfway through a conversion, when strips point past the end of the file."""
    size = os.path.getsize(path)
    for page in series.pages:
        if page is None:
            raise _corrupt(path, "a page of the series is missing")
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
        if ends and max(ends) > size:
            raise _corrupt(path, f"image data ends at byte {max(ends)} but the file has {size} bytes")
        if series.dataoffset is not None:  # contiguous ImageJ/shaped data: one extent for all pages
            end = series.dataoffset + series.size * series.dtype.itemsize
            if end > size:
                raise _corrupt(path, f"image data ends at byte {end} but the file has {size} bytes")
            return


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
               max_bytes=64 * 2**20):
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
        for plane in iter_planes(data, max_bytes):
            yield plane
            if progress is not None:
                progress(plane.size)

    tifffile.imwrite(path, pages(), shape=shape, dtype=dtype,
                     imagej=imagej, bigtiff=not imagej and nbytes >= _FOUR_GB,
                     compression=compression, photometric="minisblack", **kwargs)

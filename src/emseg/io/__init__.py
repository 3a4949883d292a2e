"""Read and write EM volumes of any size, lazily and chunked, keeping voxel size and axis order.

Formats: TIFF (multi-page, BigTIFF, ImageJ, OME), folders of TIFF/PNG/JPEG slices, HDF5
(``file.h5:volumes/raw``), Zarr v2/v3 and OME-Zarr, N5, MRC, NIfTI.
"""

from .access import create_volume, default_chunks, list_datasets, open_volume, read_volume, write_volume
from .convert import convert_volume
from .info import volume_info
from .meta import VolumeMeta, parse_voxel_size
from .paths import KeyNotFoundError
from .volume import Volume, VolumeReadError

__all__ = [
    "open_volume", "read_volume", "write_volume", "create_volume", "convert_volume", "volume_info",
    "list_datasets", "default_chunks", "Volume", "VolumeReadError", "VolumeMeta", "parse_voxel_size", "KeyNotFoundError",
]

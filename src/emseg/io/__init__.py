"""Read and write EM volumes of any size, lazily and chunked, keeping voxel size and axis order.

Formats: TIFF (multi-page, BigTIFF, ImageJ, OME), folders of TIFF/PNG/JPEG slices, HDF5
(``file.h5:volumes/raw``), Zarr v2/v3 and OME-Zarr, N5, MRC, NIfTI.

What a volume holds travels as :class:`VolumeMeta` (axes, voxel size, offset), how a new one is
stored as :class:`StorageConfig` (format, compression, Zarr version), and how a write runs
(overwrite, progress, memory per block) as :class:`emseg.config.ExecutionConfig`.
"""

from .access import create_volume, default_chunks, list_datasets, open_volume, read_volume
from .convert import convert_volume
from .info import volume_info
from .meta import VolumeMeta, parse_voxel_size
from .paths import KeyNotFoundError
from .storage import StorageConfig
from .volume import Volume, VolumeReadError
from .write import write_volume

__all__ = [
    "open_volume", "read_volume", "write_volume", "create_volume", "convert_volume", "volume_info",
    "list_datasets", "default_chunks", "Volume", "VolumeReadError", "VolumeMeta", "StorageConfig",
    "parse_voxel_size", "KeyNotFoundError",
]

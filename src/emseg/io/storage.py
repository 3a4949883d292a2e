"""How a new volume is stored: its format, its compression and, for Zarr, the format version.

Every function that makes a volume (:func:`~emseg.io.write_volume`, :func:`~emseg.io.convert_volume`,
:func:`~emseg.io.create_volume`, ``Output.create``) takes one :class:`StorageConfig` for these
choices, instead of passing the same three keywords down through each layer. The chunk shape is
not part of it: blockwise code aligns its blocks to the chunks, so each of those functions takes
``chunks`` of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError, check_choice
from .paths import check_format

__all__ = ["StorageConfig"]


@dataclass(frozen=True)
class StorageConfig:
    """How a new volume is written to disk; none of it changes the voxels read back.

    Parameters
    ----------
    format : str, optional
        Force one of ``tiff, image-folder, hdf5, zarr, n5, mrc, nifti`` instead of taking the
        format from the path's suffix.
    compression : str or None
        ``"default"`` (gzip for HDF5 and N5, Blosc-zstd for Zarr, zlib for TIFF), a codec the
        format knows (HDF5: gzip, lzf; Zarr: a Blosc codec such as lz4; N5: gzip, bzip2, xz,
        blosc, zstd, raw; TIFF: a tifffile codec), or None for no compression.
    zarr_format : {2, 3}
        Zarr v2 (OME-NGFF 0.4) or v3 (OME-NGFF 0.5). A dataset added to an existing Zarr
        container takes the container's version.

    Raises
    ------
    emseg.config.ConfigError
        (a ``ValueError``) for an unknown format, a compression that is not a str or None, or a
        zarr_format other than 2 or 3.

    Examples
    --------
    >>> StorageConfig(compression=None, zarr_format=3)
    StorageConfig(format=None, compression=None, zarr_format=3)
    >>> StorageConfig(zarr_format=4)
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: zarr_format must be one of 2, 3; got 4
    """

    format: str | None = None
    compression: str | None = "default"
    zarr_format: int = 2

    def __post_init__(self):
        if self.format is not None:
            try:
                check_format(self.format)
            except ValueError as e:
                raise ConfigError("format", str(e)) from None
        if self.compression is not None and not isinstance(self.compression, str):
            raise ConfigError("compression", f"compression must be 'default', a codec name or None; "
                                             f"got {self.compression!r}")
        if isinstance(self.zarr_format, bool):
            raise ConfigError("zarr_format", f"zarr_format must be one of 2, 3; got {self.zarr_format!r}")
        check_choice("zarr_format", self.zarr_format, (2, 3))

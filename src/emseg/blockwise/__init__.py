"""Out-of-core loops that know nothing about what the voxels mean: block geometry (``geometry``:
write and read regions), the executor on threads or Dask (``execute``) and the resumable block record."""

from .geometry import aligned_block_shape, block_at, block_slices, grow_roi, iter_planes

__all__ = ["block_slices", "block_at", "grow_roi", "aligned_block_shape", "iter_planes"]

"""Out-of-core loops that know nothing about what the voxels mean: block geometry (``geometry``:
the grid of blocks, their write and read regions), the executor on threads or Dask (``execute``; Dask
workers, a shared client and the blocks of dead workers: ``dask_workers``; batch-system jobs through
dask-jobqueue: ``cluster``) and the resumable record of finished blocks (``record``)."""

from .geometry import (BlockGrid, BlockRegions, aligned_block_shape, as_halo, block_at, block_regions, block_slices,
                       grow_roi, iter_planes, plan_grid)
from .record import BlockRecord

__all__ = ["BlockGrid", "BlockRegions", "plan_grid", "block_regions", "as_halo", "block_slices", "block_at",
           "grow_roi", "aligned_block_shape", "iter_planes", "BlockRecord"]

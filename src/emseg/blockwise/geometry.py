"""Blocks over a grid: the geometry every out-of-core loop in emseg shares.

Knows nothing about what the voxels mean. A block is a tuple of slices::

    shape (10, 7), block_shape (4, 4)        blocks in C order
    +----+----+--+                            (0:4, 0:4) (0:4, 4:7)
    | b0 | b1 |  |  <- edge blocks are cut    (4:8, 0:4) (4:8, 4:7)
    +----+----+--+     to the volume          (8:10, 0:4) (8:10, 4:7)

A blockwise stage plans its blocks once with :func:`plan_grid` (block shape and halo, checked) and
finds each block's regions with :func:`block_regions`: it writes ``write`` and reads ``read``, the
write region grown by the halo and clipped to the volume (one axis)::

    volume  |--------------------------------------|
    write   |  block 0  |  block 1  |  block 2  | 3|
    read         |<halo>|  block 1  |<halo>|
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

__all__ = ["BlockGrid", "BlockRegions", "plan_grid", "block_regions", "as_halo", "block_slices", "block_at",
           "grow_roi", "aligned_block_shape", "iter_planes"]


class BlockGrid(NamedTuple):
    """A volume of ``shape`` cut into write blocks of ``block_shape``, each read with ``halo`` voxels around it."""

    shape: tuple
    block_shape: tuple
    halo: tuple


class BlockRegions(NamedTuple):
    """One block: the region it writes, and the region it reads (``write`` grown by the halo, clipped)."""

    write: tuple
    read: tuple


def ceil_to(v, d):
    return -(-int(v) // int(d)) * int(d)


def as_halo(halo, shape) -> tuple[int, ...]:
    """``halo`` (one int, or one per axis) as one int >= 0 per axis of ``shape``.

    Examples
    --------
    >>> as_halo(2, (4, 5, 6)), as_halo((0, 3), (4, 5))
    ((2, 2, 2), (0, 3))
    >>> as_halo((1, 2), (4, 5, 6))
    Traceback (most recent call last):
    ...
    ValueError: halo must be 3 non-negative ints (one per axis of (4, 5, 6)); got (1, 2)
    """
    nd = len(shape)
    halo = tuple(int(h) for h in (halo if np.ndim(halo) else (halo,) * nd))
    if len(halo) != nd or min(halo) < 0:
        raise ValueError(f"halo must be {nd} non-negative ints (one per axis of {shape}); got {halo}")
    return halo


def plan_grid(shape, block_shape=None, halo=0, *, divisor=None, chunks=None, default=None,
              halo_factor=4) -> BlockGrid:
    """The checked blocks of a volume of ``shape``: block shape and halo, one int per axis each.

    Parameters
    ----------
    shape : sequence of int
        The volume's spatial shape.
    block_shape : sequence of int, optional
        The write blocks. None: ``default``, grown to at least ``halo_factor`` × the halo (so the
        halo is a small part of what is computed), rounded up to ``divisor`` and ``chunks`` and
        cut to the shape (rounded up to them too).
    halo : int or sequence of int
        Context read around each block; rounded up to a multiple of ``divisor``.
    divisor : sequence of int, optional
        Blocks must be multiples of it (a network's input divisor), so that every read region
        sits on the grid of a whole-volume pass.
    chunks : sequence of int, optional
        The output's storage chunks: blocks that end inside the volume must be multiples of them
        (no chunk is written by two blocks).
    default : sequence of int, optional
        The block shape to start from when ``block_shape`` is None; by default (64, 256, 256)
        in 3D, (2048, 2048) in 2D.
    halo_factor : int
        See ``block_shape``.

    Returns
    -------
    BlockGrid

    Raises
    ------
    ValueError
        A halo or block shape with the wrong number of entries or negative ones, blocks that are
        not multiples of ``divisor`` or ``chunks``, or smaller than the halo; the message gives
        a shape that works.

    Examples
    --------
    >>> plan_grid((100, 1000, 900), halo=(4, 40, 40), halo_factor=2)
    BlockGrid(shape=(100, 1000, 900), block_shape=(64, 256, 256), halo=(4, 40, 40))
    >>> plan_grid((100, 1000, 900), halo=(3, 23, 23), divisor=(4, 4, 4), chunks=(32, 96, 96)).block_shape
    (64, 288, 288)
    >>> plan_grid((40, 40), (24, 20), divisor=(8, 8))
    Traceback (most recent call last):
    ...
    ValueError: block_shape (24, 20) is not a multiple of the network's input divisor (8, 8); use (24, 24)
    """
    shape = tuple(int(n) for n in shape)
    nd = len(shape)
    halo = as_halo(halo, shape)
    divisor = (1,) * nd if divisor is None else tuple(int(d) for d in divisor)
    chunks = tuple(int(c) for c in chunks) if chunks else None
    halo = tuple(ceil_to(h, d) for h, d in zip(halo, divisor))
    align = [int(np.lcm(d, c)) for d, c in zip(divisor, chunks or divisor)]
    if block_shape is None:
        base = tuple(default) if default is not None else (64, 256, 256) if nd == 3 else (2048, 2048)
        block_shape = tuple(min(ceil_to(max(b, halo_factor * h), a), ceil_to(n, a))
                            for b, h, a, n in zip(base[-nd:], halo, align, shape))
    block_shape = tuple(int(b) for b in block_shape)
    if len(block_shape) != nd or min(block_shape) < 1:
        raise ValueError(f"block_shape must be {nd} positive ints for a volume of shape {shape}; got {block_shape}")
    if any(b % d for b, d in zip(block_shape, divisor)):
        fix = tuple(ceil_to(b, d) for b, d in zip(block_shape, divisor))
        raise ValueError(f"block_shape {block_shape} is not a multiple of the network's input divisor {divisor}; "
                         f"use {fix}")
    if chunks and any(b % c and b < n for b, c, n in zip(block_shape, chunks, shape)):
        fix = tuple(ceil_to(b, a) for b, a in zip(block_shape, align))
        raise ValueError(f"block_shape {block_shape} is not aligned to the output's storage chunks {chunks}; "
                         f"blocks would share chunks. Use block_shape {fix}")
    small = [a for a, (b, h, n) in enumerate(zip(block_shape, halo, shape)) if b < h and b < n]
    if small:
        fix = tuple(max(b, ceil_to(h, a)) for b, h, a in zip(block_shape, halo, align))
        raise ValueError(f"block_shape {block_shape} is smaller than the halo {halo} along axis {small[0]}; "
                         f"use blocks of at least the halo, e.g. {fix}")
    return BlockGrid(shape, block_shape, halo)


def block_regions(grid, index) -> BlockRegions:
    """The write and read regions of block number ``index`` of ``grid`` (a :class:`BlockGrid`), in C order.

    Examples
    --------
    >>> block_regions(BlockGrid((10, 7), (4, 4), (1, 1)), 1)
    BlockRegions(write=(slice(0, 4, None), slice(4, 7, None)), read=(slice(0, 5, None), slice(3, 7, None)))
    """
    write = block_at(grid.shape, grid.block_shape, index)
    return BlockRegions(write, grow_roi(write, grid.halo, grid.shape))


def block_slices(shape, block_shape) -> list[tuple[slice, ...]]:
    """All blocks of ``block_shape`` tiling ``shape``, in C order, edge blocks cut to the shape.

    Examples
    --------
    >>> block_slices((5, 4), (2, 4))
    [(slice(0, 2, None), slice(0, 4, None)), (slice(2, 4, None), slice(0, 4, None)), (slice(4, 5, None), slice(0, 4, None))]
    """
    if len(shape) != len(block_shape):
        raise ValueError(f"block_shape {tuple(block_shape)} must have one entry per axis of shape {tuple(shape)}")
    if any(int(b) < 1 for b in block_shape):
        raise ValueError(f"block_shape must be positive; got {tuple(block_shape)}")
    ranges = [range(0, int(n), int(b)) for n, b in zip(shape, block_shape)]
    return [tuple(slice(s, min(s + int(b), int(n))) for s, b, n in zip(starts, block_shape, shape))
            for starts in itertools.product(*ranges)]


def block_at(shape, block_shape, index) -> tuple[slice, ...]:
    """Block number ``index`` of :func:`block_slices`, without listing the others.

    Examples
    --------
    >>> block_at((5, 4), (2, 4), 2) == block_slices((5, 4), (2, 4))[2]
    True
    """
    grid = [-(-int(n) // int(b)) for n, b in zip(shape, block_shape)]
    pos = np.unravel_index(int(index), grid)
    return tuple(slice(int(p) * int(b), min((int(p) + 1) * int(b), int(n))) for p, b, n in zip(pos, block_shape, shape))


def grow_roi(roi, halo, shape) -> tuple[slice, ...]:
    """``roi`` grown by ``halo`` voxels on each side, clipped to a volume of ``shape``.

    Examples
    --------
    >>> grow_roi((slice(0, 4), slice(6, 8)), (2, 2), (10, 9))
    (slice(0, 6, None), slice(4, 9, None))
    """
    return tuple(slice(max(0, r.start - h), min(int(n), r.stop + h)) for r, h, n in zip(roi, halo, shape))


def aligned_block_shape(shape, chunks, itemsize, max_block_bytes=64 * 2**20) -> tuple[int, ...]:
    """The largest block of whole ``chunks`` within ``max_block_bytes``, grown from the last axis first.

    Blocks that are multiples of the storage chunks never write one chunk twice, so writes
    need no locks and no read-modify-write. At least one chunk is always returned.

    Examples
    --------
    >>> aligned_block_shape((100, 1000, 1000), (64, 64, 64), 1, max_block_bytes=64 * 1024 * 1000)
    (64, 1000, 1000)
    >>> aligned_block_shape((100, 1000, 1000), (64, 64, 64), 1, max_block_bytes=2**20)
    (64, 64, 256)
    """
    shape = tuple(int(s) for s in shape)
    chunks = tuple(min(int(c), s) for c, s in zip(chunks, shape))
    block = list(chunks)
    for axis in reversed(range(len(shape))):
        others = itemsize * math.prod(block[:axis] + block[axis + 1:])
        n_chunks = max(1, max_block_bytes // max(1, others * chunks[axis]))
        block[axis] = min(shape[axis], n_chunks * chunks[axis])
        if block[axis] < shape[axis]:
            break
    return tuple(block)


def iter_planes(data, max_block_bytes=64 * 2**20):
    """Yield the 2D planes of ``data`` (any array-like) in C order, reading slabs of whole planes.

    A slab spans as many planes as fit ``max_block_bytes`` (at least the storage chunk depth when
    ``data`` has ``chunks``), so chunked sources are not read once per plane.
    """
    shape = tuple(data.shape)
    if len(shape) < 2:
        raise ValueError(f"need at least 2D data, got shape {shape}")
    lead = shape[:-2]
    if not lead:
        yield np.asarray(data[...])
        return
    plane_bytes = max(1, shape[-2] * shape[-1] * np.dtype(data.dtype).itemsize)
    depth = max(1, int(max_block_bytes // plane_bytes))
    chunks = getattr(data, "chunks", None)
    if chunks and chunks[len(lead) - 1] and depth < chunks[len(lead) - 1]:
        depth = chunks[len(lead) - 1]
    for outer in itertools.product(*(range(n) for n in lead[:-1])):
        for start in range(0, lead[-1], depth):
            rest = (slice(0, shape[-2]), slice(0, shape[-1]))
            slab = np.asarray(data[outer + (slice(start, min(start + depth, lead[-1])),) + rest])
            yield from slab

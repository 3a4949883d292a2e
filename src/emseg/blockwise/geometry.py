"""Blocks over a grid: the geometry every out-of-core loop in emseg shares.

Knows nothing about what the voxels mean. A block is a tuple of slices::

    shape (10, 7), block_shape (4, 4)        blocks in C order
    +----+----+--+                            (0:4, 0:4) (0:4, 4:7)
    | b0 | b1 |  |  <- edge blocks are cut    (4:8, 0:4) (4:8, 4:7)
    +----+----+--+     to the volume          (8:10, 0:4) (8:10, 4:7)
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["block_slices", "block_at", "grow_roi", "aligned_block_shape", "iter_planes"]


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


def aligned_block_shape(shape, chunks, itemsize, max_bytes=64 * 2**20) -> tuple[int, ...]:
    """The largest block of whole ``chunks`` within ``max_bytes``, grown from the last axis first.

    Blocks that are multiples of the storage chunks never write one chunk twice, so writes
    need no locks and no read-modify-write. At least one chunk is always returned.

    Examples
    --------
    >>> aligned_block_shape((100, 1000, 1000), (64, 64, 64), 1, max_bytes=64 * 1024 * 1000)
    (64, 1000, 1000)
    >>> aligned_block_shape((100, 1000, 1000), (64, 64, 64), 1, max_bytes=2**20)
    (64, 64, 256)
    """
    shape = tuple(int(s) for s in shape)
    chunks = tuple(min(int(c), s) for c, s in zip(chunks, shape))
    block = list(chunks)
    for axis in reversed(range(len(shape))):
        others = itemsize * math.prod(block[:axis] + block[axis + 1:])
        n_chunks = max(1, max_bytes // max(1, others * chunks[axis]))
        block[axis] = min(shape[axis], n_chunks * chunks[axis])
        if block[axis] < shape[axis]:
            break
    return tuple(block)


def iter_planes(data, max_bytes=64 * 2**20):
    """Yield the 2D planes of ``data`` (any array-like) in C order, reading slabs of whole planes.

    A slab spans as many planes as fit ``max_bytes`` (at least the storage chunk depth when
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
    depth = max(1, int(max_bytes // plane_bytes))
    chunks = getattr(data, "chunks", None)
    if chunks and chunks[len(lead) - 1] and depth < chunks[len(lead) - 1]:
        depth = chunks[len(lead) - 1]
    for outer in itertools.product(*(range(n) for n in lead[:-1])):
        for start in range(0, lead[-1], depth):
            rest = (slice(0, shape[-2]), slice(0, shape[-1]))
            slab = np.asarray(data[outer + (slice(start, min(start + depth, lead[-1])),) + rest])
            yield from slab

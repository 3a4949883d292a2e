import numpy as np
import pytest

from emseg.blockwise import aligned_block_shape, block_slices, iter_planes


@pytest.mark.parametrize("shape,block", [((10, 7), (4, 4)), ((5, 33, 17), (2, 8, 16)), ((3, 3, 3), (5, 5, 5))])
def test_blocks_tile_the_volume_exactly_once(shape, block):
    count = np.zeros(shape, int)
    for roi in block_slices(shape, block):
        assert all(s.stop - s.start <= b for s, b in zip(roi, block))
        count[roi] += 1
    assert (count == 1).all()


def test_block_slices_errors():
    with pytest.raises(ValueError, match="one entry per axis"):
        block_slices((4, 4), (2,))
    with pytest.raises(ValueError, match="positive"):
        block_slices((4, 4), (0, 2))


@pytest.mark.parametrize("max_bytes", [1, 4096, 10**5, 10**9])
def test_aligned_block_shape_is_whole_chunks_within_budget(max_bytes):
    shape, chunks = (100, 300, 500), (16, 64, 64)
    block = aligned_block_shape(shape, chunks, 2, max_bytes)
    for b, c, s in zip(block, chunks, shape):
        assert b == s or b % c == 0
    assert np.prod(block) * 2 <= max(max_bytes, np.prod(chunks) * 2) or block == chunks


def test_iter_planes_reads_slabs():
    reads = []

    class Source:
        shape, dtype, chunks = (2, 10, 6, 7), np.dtype(np.uint16), (1, 4, 6, 7)

        def __getitem__(self, key):
            reads.append(key)
            return data[key]

    data = np.arange(np.prod(Source.shape), dtype=np.uint16).reshape(Source.shape)
    planes = list(iter_planes(Source(), max_block_bytes=1))
    assert len(planes) == 20
    np.testing.assert_array_equal(np.stack(planes).reshape(data.shape), data)
    assert len(reads) == 2 * 3  # depth 4 (the chunk depth) even with a tiny byte budget

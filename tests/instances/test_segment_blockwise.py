"""Blockwise instances equal the in-memory ones: exactly for components, within VOI 0.05 and without
cut objects for the watershed family on real volumes; resumable; clear errors."""

import os

import cc3d
import numpy as np
import pytest
from conftest import kill_when_recorded, same_partition
from scipy import ndimage as ndi

from emseg.instances import segment, segment_blockwise
from emseg.io import read_volume, write_volume
from emseg.metrics import variation_of_information
from emseg.train.targets import affinities, bc_target, bcd_target


OFFSETS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-2, 0, 0], [0, -6, 0], [0, 0, -6]]


def smooth_random(rng, shape, sigma=1.2):
    p = ndi.gaussian_filter(rng.random(shape), sigma)
    return ((p - p.min()) / np.ptp(p)).astype(np.float32)


@pytest.mark.parametrize("conn", [6, 18, 26])
def test_blockwise_cc_equals_cc3d_3d(rng, conn):
    prob = smooth_random(rng, (37, 53, 61))
    ref = cc3d.connected_components(prob > 0.5, connectivity=conn)
    r = segment_blockwise(prob[None], "cc.zarr", "cc", block_shape=(16, 16, 24), connectivity=conn)
    got = read_volume("cc.zarr")
    assert r.n_objects == ref.max() > 5 and same_partition(ref, got)
    assert got.dtype == np.uint8 and not os.path.exists(".emseg-scratch-cc.zarr.d")


@pytest.mark.parametrize("conn", [4, 8])
def test_blockwise_cc_equals_cc3d_2d(rng, conn):
    prob = smooth_random(rng, (101, 77))
    ref = cc3d.connected_components(prob > 0.5, connectivity=conn)
    got = np.zeros(prob.shape, np.uint32)  # any writable array works as out
    segment_blockwise(prob, got, "cc", block_shape=(16, 20), connectivity=conn, workers=1)
    assert ref.max() > 5 and same_partition(ref, got)


def test_blockwise_cc_min_size_counts_whole_objects(rng):
    prob = np.zeros((8, 40, 40), np.float32)
    prob[:, 10:14, 5:35] = 0.9  # 960 voxels, cut by three blocks
    prob[2:4, 30:33, 30:33] = 0.9  # 18 voxels
    got = segment_blockwise(prob[None], "s.zarr", "cc", block_shape=(8, 16, 16), min_size=100).out
    got = np.asarray(got[...])
    assert got.max() == 1 and (got > 0).sum() == 960


def test_blockwise_z_filter_reads_the_extra_sections(rng):
    prob = smooth_random(rng, (30, 40, 40), sigma=(0.3, 1.5, 1.5))
    ref = segment(prob[None], "cc", z_filter=5)
    got = segment_blockwise(prob[None], "zf.zarr", "cc", block_shape=(8, 16, 16), z_filter=5).out
    assert ref.max() > 3 and same_partition(ref, np.asarray(got[...]))
    assert not same_partition(segment(prob[None], "cc"), ref)  # the filter did change the result


def test_blockwise_cc_dask_local_cluster_equals_threads(rng):
    pytest.importorskip("distributed")
    prob = smooth_random(rng, (30, 40, 50))
    write_volume("p.zarr", prob[None])
    segment_blockwise("p.zarr", "threads.zarr", "cc", block_shape=(16, 16, 16))
    segment_blockwise("p.zarr", "dask.zarr", "cc", block_shape=(16, 16, 16), scheduler="local", workers=2)
    np.testing.assert_array_equal(read_volume("dask.zarr"), read_volume("threads.zarr"))
    ref = cc3d.connected_components(prob > 0.5, connectivity=6)
    assert same_partition(ref, read_volume("dask.zarr"))


def cut_objects(ref, got, block_shape):
    """In-memory objects that continue across a block face where the blockwise labels never do."""
    cut = 0
    for axis, b in enumerate(block_shape):
        for c in range(b, ref.shape[axis], b):
            lo = [slice(None)] * ref.ndim
            hi = [slice(None)] * ref.ndim
            lo[axis], hi[axis] = c - 1, c
            r0, r1, g0, g1 = ref[tuple(lo)], ref[tuple(hi)], got[tuple(lo)], got[tuple(hi)]
            cross = (r0 == r1) & (r0 != 0)
            for m in np.unique(r0[cross]):
                sel = cross & (r0 == m)
                if sel.sum() >= 10 and not (g0[sel] == g1[sel]).any():
                    cut += 1
    return cut


def _noisy(rng, x, noise=0.15):
    return np.clip(x + rng.normal(0, noise, x.shape), 0, 1).astype(np.float32)


def _boundary(rng, gt):
    """A membrane "prediction" of the real neurons: their contours, blurred, with noise."""
    contour = bc_target(gt).target[1]
    return _noisy(rng, ndi.gaussian_filter(contour, 1.0) * 3, 0.1)[None]


def _real_cases(shared_data, rng):
    f = str(shared_data / "flyem_medulla" / "sample2_z000-149.h5")
    crop = (slice(0, 48), slice(0, 144), slice(0, 144))
    gt = read_volume(f + ":volumes/labels/neuron_ids")[crop].astype(np.uint32)
    return {
        "watershed": (_boundary(rng, gt), None),
        "bc": (_noisy(rng, bc_target(gt).target), None),
        "agglomerate": (_noisy(rng, affinities(gt, OFFSETS[:3]).target, 0.2), OFFSETS[:3]),
        "mws": (_noisy(rng, affinities(gt, OFFSETS).target, 0.2), OFFSETS),
    }


@pytest.mark.parametrize("method", ["watershed", "bc", "agglomerate", "mws"])
def test_blockwise_equals_in_memory_on_flyem_medulla(shared_data, method):
    """Predictions derived from the real medulla neurons (noisy, blurred targets of its labels, as a network
    would predict them); blocks of 24×64×64 do not divide the 48×144×144 crop."""
    pred, offsets = _real_cases(shared_data, np.random.default_rng(7))[method]
    ref = segment(pred, method, offsets=offsets)
    block = (24, 64, 64)
    got = np.asarray(segment_blockwise(pred, f"{method}.zarr", method, offsets=offsets, block_shape=block).out[...])
    voi = variation_of_information(ref, got)
    assert ref.max() > 20, ref.max()
    assert voi.split + voi.merge < 0.05, voi
    assert cut_objects(ref, got, block) == 0


@pytest.mark.parametrize("method", ["bc", "bcd"])
def test_blockwise_bc_bcd_on_real_mitochondria(shared_data, method):
    """BC/BCD are for compact objects (mitochondria, nuclei): the real UroCell mitochondria instances.

    (On neurons BCD is not blockwise-stable: the seed of a long neurite, where its normalised
    distance peaks, can lie farther away than any halo.)"""
    f = shared_data / "urocell_labels" / "mito" / "instance" / "fib1-0-0-0.nii.gz"
    gt = read_volume(str(f))[:128, :192, :192].astype(np.uint32)
    target = (bc_target if method == "bc" else bcd_target)(gt).target
    pred = _noisy(np.random.default_rng(11), target, 0.15)
    ref = segment(pred, method)
    block = (48, 64, 80)
    got = np.asarray(segment_blockwise(pred, f"{method}.zarr", method, block_shape=block).out[...])
    voi = variation_of_information(ref, got)
    assert ref.max() >= 10, ref.max()
    assert voi.split + voi.merge < 0.05, voi
    assert cut_objects(ref, got, block) == 0


def test_blockwise_watershed_on_gala(shared_data):
    gt = read_volume(str(shared_data / "gala_flyem" / "train-gt.lzf.h5") + ":stack").astype(np.uint32)
    boundary = _boundary(np.random.default_rng(3), gt)
    ref = segment(boundary, "watershed")
    block = (32, 48, 64)
    got = np.asarray(segment_blockwise(boundary, "g.zarr", "watershed", block_shape=block).out[...])
    voi = variation_of_information(ref, got)
    assert voi.split + voi.merge < 0.05, voi
    assert cut_objects(ref, got, block) == 0


def test_killed_segment_resumes():
    rng = np.random.default_rng(5)
    write_volume("p.zarr", smooth_random(rng, (32, 64, 64))[None])
    segment_blockwise("p.zarr", "ref.zarr", "watershed", block_shape=(16, 32, 32), halo=(4, 8, 8))
    code = ("import time, emseg.instances.stitch as b\n"
            "orig = b._segment_block\n"
            "def slow(*a, **k):\n    time.sleep(0.3)\n    return orig(*a, **k)\n"
            "b._segment_block = slow\n"
            "b.segment_blockwise('p.zarr', 'out.zarr', 'watershed', block_shape=(16, 32, 32), halo=(4, 8, 8), workers=1)\n")
    done = kill_when_recorded(code, ".emseg-scratch-out.zarr.d/segment.jsonl", 4)
    assert 0 < done < 8, done
    segment_blockwise("p.zarr", "out.zarr", "watershed", block_shape=(16, 32, 32), halo=(4, 8, 8))
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("ref.zarr"))


def test_bad_input(rng):
    affs = rng.random((3, 8, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="3 affinity channels but 2 offsets"):
        segment_blockwise(affs, "a.zarr", "mws", offsets=OFFSETS[:2])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]; found values in \[-1, 2\]"):
        segment_blockwise(np.array([[[-1.0, 2.0]]], np.float32)[None], "b.zarr", "cc")
    with pytest.raises(ValueError, match="smaller than the halo"):
        segment_blockwise(affs, "c.zarr", "agglomerate", offsets=OFFSETS[:3], block_shape=(4, 8, 8),
                          halo=(8, 16, 16))
    write_volume("other.zarr", np.zeros((5, 5), np.uint8))
    with pytest.raises(FileExistsError, match=r"other.zarr already exists; pass --overwrite"):
        segment_blockwise(affs[:1], "other.zarr", "cc")
    segment_blockwise(affs[:1], "other.zarr", "cc", overwrite=True)
    assert read_volume("other.zarr").shape == (8, 16, 16)

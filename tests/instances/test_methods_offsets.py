"""Affinities of a 2D model on a volume: its 2D offsets are per-section offsets [0, dy, dx]."""

import numpy as np

from emseg.instances.methods import section_offsets, segment


def test_2d_offsets_on_a_volume_segment_each_section():
    rng = np.random.default_rng(0)
    offsets2d = [[-1, 0], [0, -1], [-3, 0], [0, -3]]
    affs = rng.random((4, 3, 24, 20)).astype(np.float32)
    got = segment(affs, "mws", offsets=offsets2d)
    ref = segment(affs, "mws", offsets=section_offsets(offsets2d, 3))
    np.testing.assert_array_equal(got, ref)
    assert section_offsets(offsets2d, 3)[2] == [0, -3, 0]
    for z in range(3):  # no offset crosses sections: every object lies in one section
        ids = set(np.unique(got[z])) - {0}
        assert not ids & set(np.unique(np.delete(got, z, axis=0)))


def test_agglomeration_of_section_affinities_keeps_sections_apart():
    """The FlyEM few-label plan (2D affinities on sections) is tuned with agglomeration too: the missing
    z channel reads as 0, so each object lies in one section, and every section equals its 2D agglomeration."""
    from emseg.instances.agglomeration import agglomerate

    rng = np.random.default_rng(1)
    affs = rng.random((2, 3, 24, 20)).astype(np.float32)
    offsets = section_offsets([[-1, 0], [0, -1]], 3)
    got = agglomerate(affs, offsets, threshold=0.5)
    for z in range(3):
        ids = set(np.unique(got[z])) - {0}
        assert not ids & set(np.unique(np.delete(got, z, axis=0)))
        from conftest import same_partition

        assert same_partition(got[z], agglomerate(affs[:, z], [[-1, 0], [0, -1]], threshold=0.5))

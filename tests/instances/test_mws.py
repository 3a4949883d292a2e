import numpy as np
import pytest

from emseg.instances.mws import mutex_watershed, mutex_watershed_graph
from emseg.train.targets import affinities as affinity_target


def canonical(labels):
    """Relabel to 0, 1, 2, ... in order of first appearance, so equal partitions compare equal."""
    _, first, inverse = np.unique(np.ravel(labels), return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse].reshape(np.shape(labels))


def brute_force_mws(n_nodes, edges, weights, is_mutex):
    """The mutex watershed as stated in Wolf et al. 2018, with no union-find and no bookkeeping.

    For every edge, in order of decreasing weight (Python's sort is stable, so ties keep their
    input order), the clusters are recomputed from scratch as the connected components of the
    attractive edges accepted so far, and a constraint between two clusters is found by scanning
    all accepted mutex edges.
    """

    def components(accepted):
        neighbours = [[] for _ in range(n_nodes)]
        for u, v in accepted:
            neighbours[u].append(v)
            neighbours[v].append(u)
        comp = [-1] * n_nodes
        for start in range(n_nodes):
            if comp[start] >= 0:
                continue
            comp[start] = start
            queue = [start]
            while queue:
                x = queue.pop()
                for y in neighbours[x]:
                    if comp[y] < 0:
                        comp[y] = start
                        queue.append(y)
        return comp

    merged, mutexes = [], []
    for e in sorted(range(len(edges)), key=lambda e: -weights[e]):
        u, v = int(edges[e][0]), int(edges[e][1])
        comp = components(merged)
        if comp[u] == comp[v]:
            continue
        if is_mutex[e]:
            mutexes.append((u, v))
        elif not any({comp[a], comp[b]} == {comp[u], comp[v]} for a, b in mutexes):
            merged.append((u, v))
    return np.array(components(merged))


def explicit_edges(affs, offsets, n_attractive, mask=None, keep_repulsive=None):
    """The grid graph of ``mutex_watershed`` as an explicit edge list, in flat-index order of ``affs``.

    Weights are computed in the dtype of ``affs`` (float32 or float64), as the grid version does.
    """
    spatial = affs.shape[1:]
    index = np.arange(np.prod(spatial)).reshape(spatial)
    edges, weights, is_mutex = [], [], []
    for c, off in enumerate(offsets):
        for x in np.ndindex(*spatial):
            y = tuple(np.add(x, off))
            if not all(0 <= t < n for t, n in zip(y, spatial)):
                continue
            if mask is not None and not (mask[x] and mask[y]):
                continue
            if c >= n_attractive and keep_repulsive is not None and not keep_repulsive[x]:
                continue
            a = affs[(c, *x)]
            edges.append((index[x], index[y]))
            weights.append(a if c < n_attractive else affs.dtype.type(1) - a)
            is_mutex.append(c >= n_attractive)
    return np.array(edges).reshape(-1, 2), np.array(weights, np.float64), np.array(is_mutex, bool)


@pytest.mark.parametrize("ties", [False, True])
def test_graph_matches_brute_force_on_random_graphs(ties):
    for seed in range(200 if not ties else 100):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(5, 31))
        n_edges = int(rng.integers(n, 4 * n))
        edges = rng.integers(0, n, (n_edges, 2))  # self-loops and repeated pairs included
        weights = rng.integers(0, 4, n_edges) / 4 if ties else rng.random(n_edges)
        is_mutex = rng.random(n_edges) < rng.uniform(0.2, 0.7)
        labels = mutex_watershed_graph(n, edges, weights, is_mutex)
        expected = brute_force_mws(n, edges, weights, is_mutex)
        np.testing.assert_array_equal(canonical(labels), canonical(expected), err_msg=f"seed {seed}")
        assert labels.min() == 1 and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, canonical(labels) + 1)  # 1..k in order of first appearance


def test_graph_edge_cases():
    assert mutex_watershed_graph(0, np.zeros((0, 2), int), [], np.zeros(0, bool)).shape == (0,)
    np.testing.assert_array_equal(mutex_watershed_graph(3, np.zeros((0, 2), int), [], np.zeros(0, bool)), [1, 2, 3])
    # 300 singletons need uint16
    labels = mutex_watershed_graph(300, [[0, 1]], [0.5], [True])
    assert labels.dtype == np.uint16 and labels.max() == 300


def test_graph_validation():
    with pytest.raises(ValueError, match="node ids in 0 .. 2"):
        mutex_watershed_graph(3, [[0, 3]], [1.0], [False])
    with pytest.raises(ValueError, match="shape \\(E, 2\\)"):
        mutex_watershed_graph(3, [[0, 1, 2]], [1.0], [False])
    with pytest.raises(ValueError, match="weights must have shape \\(1,\\)"):
        mutex_watershed_graph(3, [[0, 1]], [1.0, 2.0], [False])
    with pytest.raises(ValueError, match="finite"):
        mutex_watershed_graph(3, [[0, 1]], [np.nan], [False])
    with pytest.raises(ValueError, match="boolean"):
        mutex_watershed_graph(3, [[0, 1]], [1.0], [0])
    with pytest.raises(ValueError, match="n_nodes"):
        mutex_watershed_graph(-1, [[0, 1]], [1.0], [False])


OFFSETS_2D = [[-1, 0], [0, -1], [-2, 0], [0, -3], [-3, -3], [2, -2]]
OFFSETS_3D = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-2, 0, 0], [0, -3, 0], [0, 2, -3]]


@pytest.mark.parametrize("shape, offsets", [((7, 9), OFFSETS_2D), ((4, 5, 6), OFFSETS_3D)])
def test_grid_equals_graph_on_explicit_edges(shape, offsets):
    rng = np.random.default_rng(7)
    affs = rng.random((len(offsets), *shape)).astype(np.float32)
    labels = mutex_watershed(affs, offsets)
    assert labels.shape == shape and labels.min() == 1
    n_attractive = len(shape)  # the direct neighbours come first
    edges, weights, is_mutex = explicit_edges(affs, offsets, n_attractive)
    expected = mutex_watershed_graph(affs[0].size, edges, weights, is_mutex).reshape(shape)
    np.testing.assert_array_equal(labels, expected)  # both number ids by first appearance


@pytest.mark.parametrize("shape, offsets", [((7, 9), OFFSETS_2D), ((4, 5, 6), OFFSETS_3D)])
def test_grid_equals_graph_with_mask_strides_and_float64(shape, offsets):
    rng = np.random.default_rng(8)
    affs = rng.random((len(offsets), *shape))  # float64 stays float64 for the weights
    mask = rng.random(shape) < 0.8
    strides = (2,) * len(shape)
    labels = mutex_watershed(affs, offsets, n_attractive=len(shape) + 1, strides=strides, mask=mask, seed=3)
    # the documented stride grid: every 2nd voxel per axis from an origin drawn with the seed
    phase = np.random.default_rng(3).integers(0, strides)
    grid = np.zeros(shape, bool)
    grid[tuple(slice(p, None, s) for p, s in zip(phase, strides))] = True
    edges, weights, is_mutex = explicit_edges(affs, offsets, len(shape) + 1, mask=mask, keep_repulsive=grid)
    expected = mutex_watershed_graph(affs[0].size, edges, weights, is_mutex).reshape(shape)
    expected = np.where(mask, expected, 0)
    np.testing.assert_array_equal(canonical(labels), canonical(expected))
    assert (labels == 0).sum() == (~mask).sum()
    assert set(np.unique(labels[mask])) == set(range(1, labels.max() + 1))


def test_two_objects_separated_by_a_low_affinity_boundary():
    # two cubes stacked along z (3D) and two squares side by side (2D), affinities from the
    # ground truth with emseg's own target function: 0.9 inside an object, 0.1 across
    for gt in (np.repeat([1, 2], 4)[:, None, None] * np.ones((1, 4, 4), int), np.repeat([[1, 2]], 6, 0).repeat(3, 1)):
        offsets = [list(o) for o in -np.eye(gt.ndim, dtype=int)] + [[-3] + [0] * (gt.ndim - 1), [0] * (gt.ndim - 1) + [-3]]
        affs = 0.1 + 0.8 * affinity_target(gt, offsets).target
        labels = mutex_watershed(affs, offsets)
        np.testing.assert_array_equal(labels, gt)


def test_repulsive_edges_split_a_uniform_volume_along_a_line():
    # 5 x 8 pixels, every attractive affinity 0.9 (no boundary evidence at all); the repulsive
    # edges of offset (0, -4) are certain (affinity 0, weight 1) and all cross the line between
    # columns 3 and 4. They come first, so each pixel of columns 4..7 is forbidden to join its
    # partner 4 columns left; the vertical edges then build one cluster per column, and the
    # horizontal edges join columns 0..3 and columns 4..7 but never the two halves.
    offsets = [[-1, 0], [0, -1], [0, -4]]
    affs = np.full((3, 5, 8), 0.9)
    affs[2] = 0.0
    expected = np.repeat([[1, 2]], 5, 0).repeat(4, 1)
    np.testing.assert_array_equal(mutex_watershed(affs, offsets), expected)
    # uncertain repulsive edges (weight 0.1 < 0.9) come too late: one object
    affs[2] = 0.9
    np.testing.assert_array_equal(mutex_watershed(affs, offsets), np.ones((5, 8)))
    # equal weights: ties go to the lower channel, so attractive affinity 1 merges before the
    # repulsive weight 1 is seen
    affs[:2], affs[2] = 1.0, 0.0
    np.testing.assert_array_equal(mutex_watershed(affs, offsets), np.ones((5, 8)))
    # n_attractive=0: every channel repulsive, every pixel alone; 40 ids numbered in C order
    np.testing.assert_array_equal(mutex_watershed(affs, offsets, n_attractive=0), np.arange(1, 41).reshape(5, 8))


def test_mask():
    offsets = [[-1, 0], [0, -1], [0, -4]]
    affs = np.ones((3, 4, 9), np.float32)
    mask = np.ones((4, 9), bool)
    mask[:, 4] = False  # a masked column cuts the image in two: no edge may cross it
    labels = mutex_watershed(affs, offsets, mask=mask)
    expected = np.repeat([[1, 1, 1, 1, 0, 2, 2, 2, 2]], 4, 0)
    np.testing.assert_array_equal(labels, expected)
    assert np.all(mutex_watershed(affs, offsets, mask=np.zeros((4, 9), bool)) == 0)


def test_strides():
    rng = np.random.default_rng(3)
    affs = rng.random((len(OFFSETS_2D), 9, 11)).astype(np.float32)
    plain = mutex_watershed(affs, OFFSETS_2D)
    np.testing.assert_array_equal(mutex_watershed(affs, OFFSETS_2D, strides=(1, 1)), plain)
    # fewer repulsive edges, fewer constraints: here fewer objects (the exact result is checked
    # against the graph version in test_grid_equals_graph_with_mask_strides_and_float64)
    strided = mutex_watershed(affs, OFFSETS_2D, strides=(3, 3))
    assert strided.max() < plain.max()
    # all channels attractive: strides touch repulsive edges only
    all_attractive = mutex_watershed(affs, OFFSETS_2D, n_attractive=len(OFFSETS_2D))
    np.testing.assert_array_equal(
        mutex_watershed(affs, OFFSETS_2D, n_attractive=len(OFFSETS_2D), strides=(3, 3)), all_attractive
    )
    with pytest.raises(ValueError, match="strides must be 2 positive integers"):
        mutex_watershed(affs, OFFSETS_2D, strides=(2, 0))
    with pytest.raises(ValueError, match="strides must be 2 positive integers"):
        mutex_watershed(affs, OFFSETS_2D, strides=(2, 2, 2))


def test_grid_validation():
    affs = np.full((3, 4, 5), 0.5)
    offsets = [[-1, 0], [0, -1], [0, -3]]
    with pytest.raises(ValueError, match="affinities has 3 channels but 2 offsets"):
        mutex_watershed(affs, offsets[:2])
    with pytest.raises(ValueError, match="each offset needs 2 entries"):
        mutex_watershed(affs, [[-1, 0, 0]] * 3)
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        mutex_watershed(affs[0], offsets)
    for bad in (1.5, -0.1, np.nan):
        wrong = affs.copy()
        wrong[1, 2, 3] = bad
        with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
            mutex_watershed(wrong, offsets)
    with pytest.raises(ValueError, match="mask must have the spatial shape \\(4, 5\\)"):
        mutex_watershed(affs, offsets, mask=np.ones((5, 4), bool))
    with pytest.raises(ValueError, match="no channel is attractive"):
        mutex_watershed(affs, [[0, -3], [-1, 0], [0, -1]])
    with pytest.raises(ValueError, match="n_attractive must be an integer in 0 .. 3"):
        mutex_watershed(affs, offsets, n_attractive=4)

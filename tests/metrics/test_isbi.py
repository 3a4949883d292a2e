"""Tests for the ISBI 2012 metrics (emseg.metrics.isbi and emseg.metrics.warping).

References used here: brute-force pair counting (V_rand), entropies from np.unique counts
(V_info), and plain-Python transcriptions of Fiji's WarpingError.simplePointWarp2d /
classifyMismatches2d with Bertrand & Malandain's 3D simple-point test on the 3x3 patch embedded
in a 3x3x3 cube (what Fiji's simple2DBertrand(patch, 4) does).
"""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from emseg.metrics.contingency import contingency_table
from emseg.metrics.isbi import ISBI_THRESHOLDS, best_scores_from_probability, label_cells, pixel_error, v_info, v_rand
from emseg.metrics.warping import _RING, _SIMPLE_LUT, warping_error

FOUR = ndimage.generate_binary_structure(2, 1)


# ----------------------------------------------------------------------------- references
def brute_force_rand(gt, pred):
    """(split, merge) by counting ordered pixel pairs (self-pairs included) over gt > 0; every
    pixel predicted 0 is its own segment."""
    g, p = gt.ravel(), pred.ravel()
    keep = g > 0
    g, p = g[keep], p[keep]
    ids = np.where(p > 0, p, -(np.arange(p.size) + 1))  # singletons get unique negative ids
    same_gt = g[:, None] == g[None, :]
    same_pred = ids[:, None] == ids[None, :]
    tp = np.sum(same_gt & same_pred)
    return tp / same_gt.sum(), tp / same_pred.sum()


def entropy(*columns):
    _, counts = np.unique(np.stack(columns), axis=1, return_counts=True)
    q = counts / counts.sum()
    return -np.sum(q * np.log(q))


def entropy_info(gt, pred):
    """(split, merge) = (I / H(pred), I / H(gt)) over gt > 0, pred 0 = singletons."""
    g, p = gt.ravel(), pred.ravel()
    keep = g > 0
    g, p = g[keep], p[keep]
    p = np.where(p > 0, p, -(np.arange(p.size) + 1))
    h_g, h_p, h_gp = entropy(g), entropy(p), entropy(g, p)
    info = h_g + h_p - h_gp
    return info / h_p, info / h_g


def bertrand_simple(patch):
    """Fiji's simple2DBertrand(patch, 4): the 3x3 patch as the middle layer of a 3x3x3 cube,
    simple for (6, 26) iff T6(x, X) == 1 and T26(x, X̄) == 1 (Bertrand & Malandain 1994)."""
    cube = np.zeros((3, 3, 3), bool)
    cube[1] = patch
    cube[1, 1, 1] = False
    off = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    cheb, manh = np.abs(off).max(1), np.abs(off).sum(1)
    n6 = {tuple(o) for o in off[(manh == 1)]}
    n18 = {tuple(o) for o in off[(cheb == 1) & (manh <= 2)]}
    geo = np.zeros_like(cube)  # N6^2(x, X): X ∩ N18* points 6-adjacent to an X point of N6*
    for y in n6:
        if cube[tuple(np.add(y, 1))]:
            for d in n6 | {(0, 0, 0)}:
                z = tuple(np.add(y, d))
                if z in n18 and cube[tuple(np.add(z, 1))]:
                    geo[tuple(np.add(z, 1))] = True
    t6 = ndimage.label(geo, ndimage.generate_binary_structure(3, 1))[1]
    bg = ~cube
    bg[1, 1, 1] = False
    t26 = ndimage.label(bg, np.ones((3, 3, 3)))[1]
    return t6 == 1 and t26 == 1


def fiji_warp(gt, pred, th):
    """Line-by-line transcription of Fiji's simplePointWarp2d (pure Python)."""
    h, w = gt.shape
    src = np.zeros((h + 2, w + 2))
    src[1:-1, 1:-1] = gt > 0
    real = np.zeros((h + 2, w + 2))
    real[1:-1, 1:-1] = pred
    tbin = np.where(real <= th, 0.0, 1.0)
    diff = None
    while True:
        mism = src != tbin
        diff_before, diff = diff, int(mism.sum())
        if diff == 0 or diff == diff_before:
            break
        pts = [(x, y, abs(real[y, x] - th)) for x in range(1, w + 1) for y in range(1, h + 1) if mism[y, x]]
        pts.sort(key=lambda p: -p[2])  # Java's Collections.sort is stable
        for x, y, _ in pts:
            if bertrand_simple(src[y - 1:y + 2, x - 1:x + 2] > 0):
                src[y, x] = 0.0 if src[y, x] > 0 else 1.0
    return src[1:-1, 1:-1] > 0, diff


def fiji_split_merge(warped, mismatch):
    """Transcription of Fiji's classifyMismatches2d (radius -1): (n_splits, n_mergers)."""
    comps = ndimage.label(warped, FOUR)[0]
    h, w = warped.shape

    def ids(c, y, x):
        return {c[j, i] for j in range(y - 1, y + 2) for i in range(x - 1, x + 2)
                if (j, i) != (y, x) and 0 <= j < h and 0 <= i < w}
    splits = mergers = 0
    for y, x in zip(*np.nonzero(mismatch)):
        u, centre = ids(comps, y, x), comps[y, x] != 0
        if len(u) == 2 and centre:
            w2 = warped.copy()
            w2[y, x] = False
            splits += len(ids(ndimage.label(w2, FOUR)[0], y, x)) > 2
        elif len(u) >= 3:
            splits += centre
            mergers += not centre
    return splits, mergers


def ring_code(patch):
    return sum(int(patch[1 + dy, 1 + dx]) << k for k, (dy, dx) in enumerate(_RING))


def two_cells(h=8, w=9, col=4):
    """Cells left and right of a 1-px vertical membrane at ``col`` (True = cell)."""
    img = np.ones((h, w), bool)
    img[:, col] = False
    return img


# ----------------------------------------------------------------------------- V_rand, V_info
def test_golden_v_rand():
    # one merge: n = 4 gt pixels, gt sizes (2, 2) -> Σa² = 8, one pred segment of 4 -> Σb² = 16,
    # Σn_ij² = 2² + 2² = 8: split = 8/8 = 1, merge = 8/16 = 0.5, F = 2·0.5/1.5 = 2/3
    s = v_rand(np.array([[1, 1, 0, 2, 2]]), np.array([[1, 1, 0, 1, 1]]))
    assert (s.split, s.merge) == (1.0, 0.5) and s.score == pytest.approx(2 / 3, abs=1e-15)
    # pred-0 pixels are singletons: gt one cell of 4; pred {1: 2 px} + 2 singletons
    # Σa² = 16, Σb² = 2² + 1 + 1 = 6, Σn_ij² = 2² + 1 + 1 = 6 -> split = 6/16, merge = 1, F = 6/11
    s = v_rand(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 0, 0]]))
    assert (s.split, s.merge) == (0.375, 1.0) and s.score == pytest.approx(6 / 11, abs=1e-15)
    # gt membrane pixels (0) are ignored whatever is predicted there
    assert v_rand(np.array([[1, 0, 2]]), np.array([[1, 1, 2]])).score == 1.0


def test_golden_v_info():
    # gt (1,1,2,2), pred (1,1,0,0): H(gt) = log 2; pred = one pair + 2 singletons:
    # H(pred) = H(joint) = log 4 - (2 log 2)/4 = 1.5 log 2; I = log 2 + 1.5 log 2 - 1.5 log 2 = log 2
    # split = I/H(pred) = 2/3, merge = I/H(gt) = 1, F = 2I/(H(pred)+H(gt)) = 2/2.5 = 0.8
    s = v_info(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 0, 0]]))
    assert s.split == pytest.approx(2 / 3, abs=1e-12) and s.merge == pytest.approx(1.0, abs=1e-12)
    assert s.score == pytest.approx(0.8, abs=1e-12)
    # a single gt segment (an entropy of 0) scores 0, as Fiji's foregroundRestrictedFscore
    assert v_info(np.array([[1, 1, 1]]), np.array([[1, 2, 2]])).score == 0.0


def test_perfect_and_relabelled_prediction_scores_one(rng):
    gt = label_cells(rng.random((20, 20)) > 0.4)
    perm = rng.permutation(int(gt.max()) + 1) + 100
    pred = np.where(gt > 0, perm[gt], 0)  # other ids, same partition
    for metric in (v_rand, v_info):
        s = metric(gt, pred)
        assert s.score == pytest.approx(1.0, abs=1e-12)
        assert s.split == pytest.approx(1.0, abs=1e-12) and s.merge == pytest.approx(1.0, abs=1e-12)


def test_pure_split_lowers_only_split_and_pure_merge_only_merge():
    gt = np.zeros((6, 9), np.int32)
    gt[:, :4], gt[:, 5:] = 1, 2
    split = gt.copy()
    split[3:, :4] = 3  # cell 1 cut in two
    merge = np.where(gt > 0, 7, 0)  # both cells one segment
    for metric in (v_rand, v_info):
        s, m = metric(gt, split), metric(gt, merge)
        assert s.merge == pytest.approx(1.0, abs=1e-12) and s.split < 0.95
        assert m.split == pytest.approx(1.0, abs=1e-12) and m.merge < 0.95


@pytest.mark.parametrize("seed", range(10))
def test_v_rand_and_v_info_match_references_on_random_images(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, (5, 7))
    pred = rng.integers(0, 5, (5, 7))
    if (gt > 0).sum() < 2:
        gt[0, :2] = [1, 2]
    split, merge = brute_force_rand(gt, pred)
    s = v_rand(gt, pred)
    assert s.split == pytest.approx(split, abs=1e-12) and s.merge == pytest.approx(merge, abs=1e-12)
    assert s.score == pytest.approx(2 * split * merge / (split + merge), abs=1e-12)
    if len(np.unique(gt[gt > 0])) > 1:
        split, merge = entropy_info(gt, pred)
        s = v_info(gt, pred)
        assert s.split == pytest.approx(min(split, 1), abs=1e-12)
        assert s.merge == pytest.approx(min(merge, 1), abs=1e-12)


def test_stack_is_scored_per_slice(rng):
    # the same gt id in both slices, different pred ids: perfect per slice (a split in 3D)
    gt = np.ones((2, 4, 4), np.int32)
    gt[:, :, 2], gt[:, :, 3] = 0, 2
    pred = gt * np.array([1, 5])[:, None, None]
    assert v_rand(gt, pred).score == 1.0 and v_info(gt, pred).score == pytest.approx(1.0)
    # V_rand pools pair counts: equal to the slices side by side with slice-unique ids
    gt = rng.integers(0, 4, (3, 6, 6))
    pred = rng.integers(0, 4, (3, 6, 6))
    offs = np.arange(3)[:, None, None] * 10
    side = (np.hstack(list(np.where(gt > 0, gt + offs, 0))), np.hstack(list(np.where(pred > 0, pred + offs, 0))))
    assert v_rand(gt, pred).score == pytest.approx(v_rand(*side).score, abs=1e-12)
    # V_info averages the per-slice scores
    per = [v_info(g, p) for g, p in zip(gt, pred)]
    assert v_info(gt, pred).score == pytest.approx(np.mean([s.score for s in per]), abs=1e-12)


def test_precomputed_table_gives_same_result(rng):
    gt, pred = rng.integers(0, 5, (8, 8)), rng.integers(0, 5, (8, 8))
    table = contingency_table(gt, pred)
    assert v_rand(None, None, table=table) == v_rand(gt, pred)
    assert v_info(None, None, table=table) == v_info(gt, pred)


def test_best_scores_from_probability(rng):
    assert len(ISBI_THRESHOLDS) == 11 and ISBI_THRESHOLDS[-1] < 1.0  # Fiji's 0.0, 0.1, ..., 0.99999
    gt = label_cells(ndimage.gaussian_filter(rng.random((2, 24, 24)), (0, 1.5, 1.5)) > 0.5)
    cell_prob = np.clip(np.round((ndimage.gaussian_filter((gt > 0).astype(float), (0, 1, 1))
                                  + rng.normal(0, 0.2, gt.shape)) * 16) / 16, 0, 1)  # exact in float32
    best = best_scores_from_probability(gt, cell_prob, membrane_is_high=False)
    # reference: binarise, label 4-connected per slice, score; keep the first maximum
    rand = [v_rand(gt, label_cells(cell_prob > th)) for th in ISBI_THRESHOLDS]
    info = [v_info(gt, label_cells(cell_prob > th)) for th in ISBI_THRESHOLDS]
    i, j = int(np.argmax([s.score for s in rand])), int(np.argmax([s.score for s in info]))
    assert best.v_rand == rand[i] and best.v_rand_threshold == ISBI_THRESHOLDS[i]
    assert best.v_info == info[j] and best.v_info_threshold == ISBI_THRESHOLDS[j]
    assert best_scores_from_probability(gt, 1 - cell_prob, membrane_is_high=True) == best


# ----------------------------------------------------------------------------- pixel error
def test_pixel_error():
    assert pixel_error(np.array([[1, 0, 1, 1]]), np.array([[1, 1, 0, 1]])) == 0.5
    assert pixel_error(np.array([[255, 0]]), np.array([[True, False]])) == 0.0  # 0/255 and bool agree
    gt = np.zeros((2, 2, 5), bool)
    pred = gt.copy()
    pred[1, 0, 0] = True
    assert pixel_error(gt, pred) == 0.05  # 1 of 20 pixels


# ----------------------------------------------------------------------------- simple points
def test_simple_point_lut_cases():
    def simple(rows):
        return bool(_SIMPLE_LUT[ring_code(np.array(rows, bool))])
    assert not simple([[0, 0, 0], [0, 1, 0], [0, 0, 0]])  # isolated pixel: removing it deletes a cell
    assert simple([[0, 0, 0], [1, 1, 0], [0, 0, 0]])  # end of a line
    assert not simple([[0, 0, 0], [1, 1, 1], [0, 0, 0]])  # middle of a 1-px line: removal splits
    assert not simple([[1, 1, 1], [1, 0, 1], [1, 1, 1]])  # one-pixel hole: filling it changes topology
    assert not simple([[1, 0, 0], [0, 1, 0], [0, 0, 0]])  # diagonal neighbour only: cells are 4-connected
    assert not simple([[0, 0, 0], [1, 0, 1], [0, 0, 0]])  # membrane pixel between two cells: a merge
    assert simple([[1, 1, 1], [1, 1, 1], [0, 0, 0]])  # on a straight cell border


def test_simple_point_lut_matches_fiji_3d_test():
    for code in range(256):
        patch = np.zeros((3, 3), bool)
        for k, (dy, dx) in enumerate(_RING):
            patch[1 + dy, 1 + dx] = (code >> k) & 1
        assert bool(_SIMPLE_LUT[code]) == bertrand_simple(patch), code


def test_flipping_simple_points_preserves_topology(rng):
    img = rng.random((20, 20)) > 0.5

    def topology(a):  # 4-connected cells, 8-connected membranes with the outside as membrane
        return ndimage.label(a, FOUR)[1], ndimage.label(~np.pad(a, 1), np.ones((3, 3)))[1]
    before, flips = topology(img), 0
    for _ in range(400):
        y, x = rng.integers(0, 20, 2)
        patch = np.pad(img, 1)[y:y + 3, x:x + 3]
        if _SIMPLE_LUT[ring_code(patch)]:
            img[y, x] = ~img[y, x]
            flips += 1
            assert topology(img) == before
    assert flips > 50


# ----------------------------------------------------------------------------- warping error
def test_one_pixel_shift_changes_pixel_error_not_warping_error():
    gt, pred = two_cells(col=4), two_cells(col=5)
    assert pixel_error(gt, pred) == pytest.approx(2 / 9)  # two of nine columns differ
    r = warping_error(gt, pred)
    assert (r.error, r.n_errors, r.n_splits, r.n_mergers) == (0.0, 0, 0, 0)
    assert np.array_equal(r.warped, pred)


def test_merge_and_split_change_warping_error():
    gt = two_cells()
    gap = gt.copy()
    gap[3, 4] = True  # membrane broken by one pixel: the two cells merge
    r = warping_error(gt, gap)
    assert (r.n_errors, r.n_mergers, r.n_splits) == (1, 1, 0) and r.error == 1 / gt.size
    assert r.split_merge_error == 1 / gt.size
    cut = gt.copy()
    cut[:, 7] = False  # an extra membrane line cuts the right cell in two
    r = warping_error(gt, cut)
    assert (r.n_errors, r.n_splits, r.n_mergers) == (1, 1, 0)
    # the non-simple pixel left is the last of the line in Fiji's (column-major) order
    assert np.array_equal(np.argwhere(r.warped != cut), [[7, 7]])


@pytest.mark.parametrize("kind", ["blobs", "thin membranes"])
@pytest.mark.parametrize("seed", range(8))
def test_warping_matches_fiji_transcription(seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "blobs":  # wide membranes: mostly splits
        gt = ndimage.gaussian_filter(rng.random((12, 13)), 1.2) > 0.5
    else:  # 4x4 blocks of random ids, 1-2 px membranes where ids change: many mergers
        ids = np.kron(rng.integers(0, 50, (3, 4)), np.ones((4, 4), int))[:, :13]
        gt = ids == ndimage.maximum_filter(ids, footprint=FOUR)
    prob = np.clip(gt + rng.normal(0, 0.45, gt.shape), 0, 1)
    prob = np.round(prob * 8) / 8  # ties exercise the column-major tie order
    ref_warped, ref_n = fiji_warp(gt, prob, 0.5)
    r = warping_error(gt, prob, threshold=0.5)
    assert np.array_equal(r.warped, ref_warped) and r.n_errors == ref_n
    assert (r.n_splits, r.n_mergers) == fiji_split_merge(ref_warped, ref_warped != (prob > 0.5))


def test_stack_warping_is_per_slice():
    gt = np.stack([two_cells(), two_cells()])
    pred = gt.copy()
    pred[1, 3, 4] = True  # a merge in slice 1 only; slice 0 identical
    r = warping_error(gt, pred.astype(np.uint8) * 255)  # 0/255 accepted
    assert (r.n_errors, r.n_mergers, r.error) == (1, 1, 1 / gt.size)
    assert r.warped.shape == gt.shape


def test_timing_512_slice_is_reasonable(rng):
    gt = ndimage.gaussian_filter(rng.random((512, 512)), 4) > 0.5
    pred = ndimage.binary_dilation(gt)  # borders moved by one pixel everywhere
    warping_error(gt[:16, :16], pred[:16, :16])  # compile
    import time
    t = time.perf_counter()
    r = warping_error(gt, pred)
    assert time.perf_counter() - t < 2.0
    assert r.error < 0.1 * pixel_error(gt, pred)


# ----------------------------------------------------------------------------- bad input
def test_bad_input():
    a, b = np.ones((4, 4), np.int32), np.ones((4, 5), np.int32)
    for fn in (v_rand, v_info, pixel_error, warping_error):
        with pytest.raises(ValueError, match="same shape"):
            fn(a, b)
    with pytest.raises(ValueError, match=r"2D image .* or a stack"):
        v_rand(np.ones((1, 2, 2, 2), int), np.ones((1, 2, 2, 2), int))
    with pytest.raises(TypeError, match="integer label"):
        v_rand(a.astype(float), a)
    with pytest.raises(ValueError, match="no foreground"):
        v_rand(np.zeros((3, 3), int), np.ones((3, 3), int))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]; got values in \[2, 2\]"):
        best_scores_from_probability(a, a * 2.0)
    with pytest.raises(ValueError, match="NaN"):
        best_scores_from_probability(a, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="thresholds"):
        best_scores_from_probability(a, a * 0.5, thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="must be a binary image"):
        pixel_error(np.arange(16).reshape(4, 4), a)
    with pytest.raises(ValueError, match="must be a binary image"):
        warping_error(a * 3, a)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        warping_error(a, a * 1.5)
    with pytest.raises(ValueError, match="threshold must be in"):
        warping_error(a, a, threshold=2)
    with pytest.raises(ValueError, match="connectivity"):
        label_cells(a, connectivity=6)


def test_label_cells_per_slice():
    cells = np.array([[[1, 0, 1]], [[1, 1, 0]]], np.uint8) * 255
    assert label_cells(cells).tolist() == [[[1, 0, 2]], [[3, 3, 0]]]  # slices never connect
    diag = np.eye(3, dtype=bool)
    assert label_cells(diag).max() == 3 and label_cells(diag, connectivity=8).max() == 1


# ----------------------------------------------------------------------------- real data
@pytest.fixture
def isbi_labels(shared_data):
    path = shared_data / "isbi2012" / "train-labels.tif"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    from emseg.io import read_volume

    return np.asarray(read_volume(path))[:3] > 0  # 255 = cell interior, 0 = membrane


def test_real_gt_against_itself(isbi_labels):
    gt = label_cells(isbi_labels)
    for metric in (v_rand, v_info):
        assert metric(gt, gt).score == pytest.approx(1.0, abs=1e-12)
    assert warping_error(isbi_labels, isbi_labels).error == 0.0


def test_real_dilated_membranes_cost_pixels_not_topology(isbi_labels):
    thick = ~np.stack([ndimage.binary_dilation(~s, FOUR) for s in isbi_labels])
    pix = pixel_error(isbi_labels, thick)
    r = warping_error(isbi_labels, thick)
    assert pix > 0.02 and r.error < pix / 20  # about 0.06 vs 0.0002


def test_real_erased_membranes_are_merges(isbi_labels, rng):
    gt = label_cells(isbi_labels)
    # membrane pixels whose 3x3 neighbourhood touches two different cells
    hi = ndimage.maximum_filter(gt, (1, 3, 3))
    lo = ndimage.minimum_filter(np.where(gt > 0, gt, np.iinfo(gt.dtype).max), (1, 3, 3))
    z, y, x = np.nonzero((gt == 0) & (hi != lo) & (hi > 0))
    erased = isbi_labels.copy()
    for k in rng.choice(z.size, 15, replace=False):
        erased[z[k], max(y[k] - 3, 0):y[k] + 4, max(x[k] - 3, 0):x[k] + 4] = True
    s = v_rand(gt, label_cells(erased))
    assert s.split == 1.0 and s.merge < 0.995  # about 0.99
    r = warping_error(isbi_labels, erased)
    assert r.n_mergers > 0 and r.error > 0

import contextlib
import io

import numpy as np
import pytest

from emseg.metrics import (aggregated_jaccard_index, average_precision, match_instances, match_instances_thresholds,
                           panoptic_quality)
from emseg.metrics.contingency import contingency_table

nan = float("nan")

# Two 2x2 objects (4 px each) separated by a background column; used by the golden cases.
GT2 = np.array([[1, 1, 0, 2, 2],
                [1, 1, 0, 2, 2]])


def _counts(m):
    return m.tp, m.fp, m.fn


# ----------------------------------------------------------------------------- golden cases
def test_perfect_match_with_other_ids():
    pred = GT2 * 10  # same objects, ids 10 and 20
    m = match_instances(GT2, pred)
    assert _counts(m) == (2, 0, 0)
    assert (m.precision, m.recall, m.f1, m.accuracy, m.mean_matched_iou) == (1, 1, 1, 1, 1)
    assert m.pairs.gt.tolist() == [1, 2] and m.pairs.pred.tolist() == [10, 20]
    assert average_precision(GT2, pred).map == 1.0
    assert aggregated_jaccard_index(GT2, pred) == 1.0
    assert panoptic_quality(GT2, pred) == panoptic_quality(GT2, GT2)
    assert panoptic_quality(GT2, pred).pq == 1.0


def test_one_missing_object_is_a_false_negative():
    pred = np.where(GT2 == 2, 0, GT2)
    m = match_instances(GT2, pred)
    # TP 1, FN 1: P = 1, R = 1/2, F1 = 2/(2+1) = 2/3, accuracy = 1/2
    assert _counts(m) == (1, 0, 1)
    assert (m.precision, m.recall, m.accuracy) == (1.0, 0.5, 0.5)
    assert m.f1 == pytest.approx(2 / 3)
    # AJI: C = 4, U = 4 + 4 (the missed gt adds its size) = 8
    assert aggregated_jaccard_index(GT2, pred) == 0.5
    # PQ: SQ = 1, RQ = 1 / (1 + 0.5) = 2/3
    r = panoptic_quality(GT2, pred)
    assert (r.tp, r.fp, r.fn, r.sq) == (1, 0, 1, 1.0) and r.pq == pytest.approx(2 / 3)
    # AP: one TP at recall 1/2, precision 1 -> 51 of the 101 recall points (0, .., 0.50) reach 1
    assert average_precision(GT2, pred).ap50 == pytest.approx(51 / 101)


def test_one_extra_object_is_a_false_positive():
    pred = GT2.copy()
    pred[:, 2] = 3  # a 2 px object in the background column
    m = match_instances(GT2, pred)
    # TP 2, FP 1: P = 2/3, R = 1, F1 = 4/5, accuracy = 2/3
    assert _counts(m) == (2, 1, 0)
    assert m.precision == pytest.approx(2 / 3) and m.recall == 1 and m.f1 == pytest.approx(0.8)
    # AJI: C = 8, U = 8 + 2 (the unused pred adds its size) = 10
    assert aggregated_jaccard_index(GT2, pred) == pytest.approx(0.8)
    # PQ: SQ = 1, RQ = 2 / (2 + 0.5) = 0.8
    assert panoptic_quality(GT2, pred).pq == pytest.approx(0.8)
    # AP depends on the rank of the FP: last -> precision 1 up to recall 1; first -> the curve
    # (R, P) = (0, 0), (1/2, 1/2), (1, 2/3) interpolates to 2/3 everywhere.
    assert average_precision(GT2, pred, scores={1: 0.9, 2: 0.8, 3: 0.1}).map == 1.0
    assert average_precision(GT2, pred, scores={1: 0.9, 2: 0.8, 3: 0.95}).map == pytest.approx(2 / 3)
    # No scores: one operating point (R, P) = (1, 2/3), whatever the ids' order.
    assert average_precision(GT2, pred).map == pytest.approx(2 / 3)
    swapped = np.select([pred == 3, pred == 1], [1, 3], pred)
    assert average_precision(GT2, swapped).map == pytest.approx(2 / 3)


def test_split():
    gt = np.array([[1, 1, 1, 1],
                   [1, 1, 1, 1]])      # one object, 8 px
    pred = np.array([[1, 1, 1, 2],
                     [1, 1, 1, 2]])    # split 6 + 2: IoUs 6/8 = 0.75 and 2/8 = 0.25
    m = match_instances(gt, pred)
    assert _counts(m) == (1, 1, 0) and m.mean_matched_iou == 0.75
    # AJI: C = 6, U = 8 + 2 (unused pred 2) = 10
    assert aggregated_jaccard_index(gt, pred) == pytest.approx(0.6)
    # PQ: SQ = 0.75, RQ = 1 / (1 + 0.5) = 2/3 -> PQ = 0.5
    r = panoptic_quality(gt, pred)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0) and r.pq == pytest.approx(0.5)


def test_merge():
    gt = np.array([[1, 1, 1, 2],
                   [1, 1, 1, 2]])      # 6 + 2 px
    pred = np.ones_like(gt)             # one 8 px object: IoUs 0.75 and 0.25
    m = match_instances(gt, pred)
    assert _counts(m) == (1, 0, 1)
    # AJI: both gt pick pred 1: C = 6 + 2, U = 8 + 8 -> 0.5; AJI+: gt 2 unpaired: 6 / (8 + 2)
    assert aggregated_jaccard_index(gt, pred) == 0.5
    assert aggregated_jaccard_index(gt, pred, aji_plus=True) == pytest.approx(0.6)
    r = panoptic_quality(gt, pred)
    assert (r.tp, r.fp, r.fn) == (1, 0, 1) and r.pq == pytest.approx(0.75 * 2 / 3)


def test_empty_pred():
    m = match_instances(GT2, np.zeros_like(GT2))
    assert _counts(m) == (0, 0, 2)
    assert np.isnan(m.precision) and (m.recall, m.f1, m.accuracy) == (0, 0, 0) and np.isnan(m.mean_matched_iou)
    assert average_precision(GT2, np.zeros_like(GT2)).map == 0.0
    assert aggregated_jaccard_index(GT2, np.zeros_like(GT2)) == 0.0   # C = 0, U = 8
    r = panoptic_quality(GT2, np.zeros_like(GT2))
    assert (r.pq, r.sq, r.rq, r.fn) == (0, 0, 0, 2)


def test_empty_gt():
    m = match_instances(np.zeros_like(GT2), GT2)
    assert _counts(m) == (0, 2, 0) and m.precision == 0 and np.isnan(m.recall)
    ap = average_precision(np.zeros_like(GT2), GT2)   # no gt: COCO marks the category absent
    assert np.isnan(ap.map) and np.isnan(ap.ap50) and all(np.isnan(v) for v in ap.ap.values())
    assert aggregated_jaccard_index(np.zeros_like(GT2), GT2) == 0.0
    assert panoptic_quality(np.zeros_like(GT2), GT2).pq == 0.0


def test_both_empty_is_nan():
    z = np.zeros((3, 3), np.uint8)
    assert np.isnan(match_instances(z, z).f1)
    assert np.isnan(aggregated_jaccard_index(z, z))
    r = panoptic_quality(z, z)
    assert np.isnan(r.pq) and (r.tp, r.fp, r.fn) == (0, 0, 0)


def test_review_fig5_gt_matched_only_to_larger_overlap():
    # One 10 px gt object covered by two preds: 7 px (IoU 0.7) and 3 px (IoU 0.3).
    gt = np.ones((1, 10), int)
    pred = np.array([[1] * 7 + [2] * 3])
    for tau in (0.5, 0.25):  # 0.25: both preds are candidates; the assignment keeps the larger
        m = match_instances(gt, pred, iou_threshold=tau)
        assert _counts(m) == (1, 1, 0)
        assert m.pairs.pred.tolist() == [1] and m.pairs.iou.tolist() == [0.7]
    r = panoptic_quality(gt, pred)
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)


def test_aji_penalises_a_merge_more_than_pq():
    # Two well segmented 100 px objects plus gt objects of 90 and 10 px merged into one 100 px pred.
    gt = np.zeros((10, 40), int)
    gt[:, :10], gt[:, 10:20], gt[:, 20:29], gt[:, 29:30] = 1, 2, 3, 4
    perfect = gt.copy()
    merged = gt.copy()
    merged[:, 20:30] = 3
    # AJI: gt 3 and gt 4 both pick the merged pred, so its 100 px enter the union twice:
    # C = 100 + 100 + 90 + 10 = 300, U = 100 + 100 + 100 + 100 = 400 -> 0.75 (drop 0.25).
    # PQ: the merged pred matches gt 3 (IoU 0.9) and gt 4 is one FN (IoU 0.1):
    # SQ = 2.9/3, RQ = 3/3.5 -> PQ = 2.9/3.5 = 0.8286 (drop 0.171). The merge costs AJI the whole
    # merged area in a second union, while PQ only counts one missed object.
    aji_drop = aggregated_jaccard_index(gt, perfect) - aggregated_jaccard_index(gt, merged)
    pq_drop = panoptic_quality(gt, perfect).pq - panoptic_quality(gt, merged).pq
    assert aji_drop == pytest.approx(0.25) and pq_drop == pytest.approx(1 - 2.9 / 3.5)
    assert aji_drop > pq_drop


def test_iou_threshold_boundary():
    gt = np.ones((1, 10), int)
    pred = np.array([[1] * 7 + [0] * 3])  # IoU 7/10 == 0.7 exactly in floating point
    assert match_instances(gt, pred, iou_threshold=0.7).tp == 1              # IoU >= τ matches
    assert match_instances(gt, pred, iou_threshold=np.nextafter(0.7, 1)).tp == 0
    assert average_precision(gt, pred, iou_thresholds=[0.7]).map == 1.0
    assert average_precision(gt, pred, iou_thresholds=[np.nextafter(0.7, 1)]).map == 0.0
    half = np.array([[1] * 5 + [0] * 5])  # IoU exactly 0.5
    assert match_instances(gt, half, iou_threshold=0.5).tp == 1
    assert panoptic_quality(gt, half).tp == 0                                # PQ needs IoU > 0.5
    # A split in two halves: both IoU 0.5, one gt -> one TP and one FP at τ = 0.5. For AP the
    # higher-ranked half takes the gt, the other is a FP below it: (R, P) = (1, 1), (1, 1/2) -> 1.
    halves = np.array([[1] * 5 + [2] * 5])
    assert _counts(match_instances(gt, halves)) == (1, 1, 0)
    assert average_precision(gt, halves, scores={1: 0.9, 2: 0.1}).ap50 == 1.0
    assert average_precision(gt, halves, scores={1: 0.1, 2: 0.9}).ap50 == 1.0
    # With no scores both halves form one operating point (R, P) = (1, 1/2): AP = 1/2.
    assert average_precision(gt, halves).ap50 == 0.5


def test_thresholds_and_table_reuse_agree(rng):
    gt, pred = _random_pair(rng)
    table = contingency_table(gt, pred)
    taus = [0.3, 0.5, 0.75]
    many = match_instances_thresholds(gt, pred, taus)
    for tau, m in zip(taus, many):
        one = match_instances(table=table, iou_threshold=tau)
        assert _counts(one) == _counts(m) and one.iou_threshold == tau
    assert aggregated_jaccard_index(table=table) == aggregated_jaccard_index(gt, pred)
    assert panoptic_quality(table=table) == panoptic_quality(gt, pred)
    assert average_precision(table=table).ap == average_precision(gt, pred).ap


def test_scores_as_dict_array_and_size(rng):
    gt, pred = _random_pair(rng)
    ids = np.unique(pred)[1:]
    s = rng.random(len(ids))
    arr = np.zeros(ids.max() + 1)
    arr[ids] = s
    a = average_precision(gt, pred, scores=dict(zip(ids.tolist(), s)))
    assert a.ap == average_precision(gt, pred, scores=arr).ap
    sizes = np.bincount(pred.ravel())
    assert average_precision(gt, pred, scores="size").ap == average_precision(gt, pred, scores=sizes).ap
    with pytest.raises(ValueError, match="no entry for pred ids"):
        average_precision(gt, pred, scores={int(ids[0]): 1.0})
    with pytest.raises(ValueError, match="indexed by pred id"):
        average_precision(gt, pred, scores=np.ones(3))


# ----------------------------------------------------------------------------- references
def _random_pair(rng, shape=(64, 64), n=18):
    """Overlapping rectangles as gt; pred jitters them (half exactly), misses or doubles some, random ids."""
    gt = np.zeros(shape, np.int32)
    pred = np.zeros(shape, np.int32)
    pred_ids = rng.permutation(np.arange(1, 500))
    k = 0
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        h, w = rng.integers(3, 16, size=2)
        gt[y:y + h, x:x + w] = i
        for _ in range(rng.choice([0, 1, 1, 1, 2])):   # missed, found, or split/duplicated
            dy, dx, dh, dw = rng.integers(-2, 3, size=4) * rng.integers(0, 2)
            y0, x0 = max(y + dy, 0), max(x + dx, 0)
            pred[y0:y0 + max(h + dh, 1), x0:x0 + max(w + dw, 1)] = pred_ids[k]
            k += 1
    return gt, pred


def _dense_iou(gt, pred):
    g, p = np.unique(gt)[1:], np.unique(pred)[1:]
    iou = np.array([[np.sum((gt == i) & (pred == j)) / np.sum((gt == i) | (pred == j)) for j in p] for i in g])
    return g, p, iou.reshape(len(g), len(p))


def test_matching_against_brute_force(rng):
    from scipy.optimize import linear_sum_assignment

    for _ in range(6):
        gt, pred = _random_pair(rng)
        g, p, iou = _dense_iou(gt, pred)
        for tau in (0.3, 0.5, 0.7):
            # StarDist's dense formulation: most pairs >= τ, then the largest IoU
            n = min(iou.shape)
            rows, cols = linear_sum_assignment(-(iou >= tau).astype(float) - iou / (2 * n))
            tp = int(np.sum(iou[rows, cols] >= tau))
            m = match_instances(gt, pred, iou_threshold=tau)
            assert _counts(m) == (tp, len(p) - tp, len(g) - tp)
            ok = iou[rows, cols] >= tau
            assert m.mean_matched_iou == pytest.approx(iou[rows, cols][ok].mean() if tp else nan, nan_ok=True)
            if tau > 0.5:  # the unique matching
                assert sorted(zip(m.pairs.gt.tolist(), m.pairs.pred.tolist())) == \
                    sorted(zip(g[rows[ok]].tolist(), p[cols[ok]].tolist()))


def test_aji_against_brute_force(rng):
    from scipy.optimize import linear_sum_assignment

    for _ in range(6):
        gt, pred = _random_pair(rng)
        g, p, iou = _dense_iou(gt, pred)
        gs, ps = np.array([np.sum(gt == i) for i in g]), np.array([np.sum(pred == j) for j in p])
        inter = np.array([[np.sum((gt == i) & (pred == j)) for j in p] for i in g])
        # Kumar et al.'s loop over gt objects
        c = u = 0
        used = set()
        for i in range(len(g)):
            if iou[i].max() == 0:
                u += gs[i]
                continue
            j = int(np.argmax(iou[i]))
            c, u = c + inter[i, j], u + gs[i] + ps[j] - inter[i, j]
            used.add(j)
        u += sum(ps[j] for j in range(len(p)) if j not in used)
        assert aggregated_jaccard_index(gt, pred) == pytest.approx(c / u, rel=1e-12)
        # HoVer-Net's get_fast_aji_plus: Munkres on -IoU, keep pairs with IoU > 0
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] > 0
        rows, cols = rows[keep], cols[keep]
        c = inter[rows, cols].sum()
        u = (gs[rows] + ps[cols] - inter[rows, cols]).sum() + np.delete(gs, rows).sum() + np.delete(ps, cols).sum()
        assert aggregated_jaccard_index(gt, pred, aji_plus=True) == pytest.approx(c / u, rel=1e-12)


def _coco_precision(gt, pred, scores, iou_thrs, area_rng=(0, 1e10)):
    """pycocotools' COCOeval precision[T, R] for one image, one category, maxDets 1000."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        r["counts"] = r["counts"].decode("ascii")
        return r

    h, w = gt.shape
    anns = []
    for k, i in enumerate(np.unique(gt)[1:], 1):
        r = rle(gt == i)
        anns.append({"id": k, "image_id": 1, "category_id": 1, "segmentation": r, "iscrowd": 0,
                     "area": float(np.sum(gt == i)), "bbox": mask_utils.toBbox(r).tolist()})
    with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": [{"id": 1, "height": h, "width": w}],
                           "categories": [{"id": 1, "name": "object"}], "annotations": anns}
        coco_gt.createIndex()
        dets = [{"image_id": 1, "category_id": 1, "segmentation": rle(pred == j), "score": float(scores[j])}
                for j in np.unique(pred)[1:]]  # ascending id: COCO's tie order, as ours
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.params.iouThrs = np.asarray(iou_thrs, float)
        ev.params.maxDets = [1, 10, 1000]
        ev.params.areaRng = [list(area_rng)]
        ev.params.areaRngLbl = ["range"]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, 0, 0, 2]


@pytest.mark.parametrize("iou_thrs", [np.linspace(0.5, 0.95, 10), [0.1, 0.3, 0.5]])
def test_average_precision_equals_pycocotools(rng, iou_thrs):
    pytest.importorskip("pycocotools")
    for _ in range(4):
        gt, pred = _random_pair(rng)
        ids = np.unique(pred)[1:]
        scores = dict(zip(ids.tolist(), rng.random(len(ids)).tolist()))
        ours = average_precision(gt, pred, scores=scores, iou_thresholds=iou_thrs)
        prec = _coco_precision(gt, pred, scores, iou_thrs)
        coco_ap = prec.mean(axis=1)
        assert np.allclose(list(ours.ap.values()), coco_ap, rtol=0, atol=1e-9)
        assert abs(ours.map - coco_ap.mean()) <= 1e-9
        # with COCO's "small" range (in pixels here): ignored gt and preds are handled alike
        small = average_precision(gt, pred, scores=scores, iou_thresholds=iou_thrs, area_range=(0, 40))
        assert np.allclose(list(small.ap.values()), _coco_precision(gt, pred, scores, iou_thrs, (0, 40)).mean(1),
                           rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- real data
def test_urocell_mito_perturbed(shared_data):
    from scipy import ndimage

    from emseg.io import read_volume

    path = sorted((shared_data / "urocell_labels" / "mito" / "instance").glob("*.nii.gz"))[0]
    gt = read_volume(path)
    ids, sizes = np.unique(gt, return_counts=True)
    ids, sizes = ids[1:], sizes[1:]
    n = len(ids)
    order = np.argsort(sizes)
    gone, split, eroded = ids[order[0]], ids[order[-1]], ids[order[-2]]

    pred = gt.astype(np.int32)
    pred[pred == gone] = 0                                   # deleted -> one FN
    z = np.nonzero(gt == split)[0]
    cut = np.percentile(z, 30)
    piece = (gt == split) & (np.arange(gt.shape[0])[:, None, None] < cut)
    pred[piece] = ids.max() + 1                              # ~30 % piece -> one FP
    obj = gt == eroded
    thin = ndimage.binary_erosion(obj)
    pred[obj & ~thin] = 0                                    # eroded, still IoU > 0.5 -> TP
    big_iou = 1 - piece.sum() / (gt == split).sum()
    thin_iou = thin.sum() / obj.sum()
    assert 0.5 < big_iou < 0.9 and 0.5 < thin_iou < 1 and piece.sum() / (gt == split).sum() < 0.5

    table = contingency_table(gt, pred)
    m = match_instances(table=table)
    assert _counts(m) == (n - 1, 1, 1)
    iou_of = dict(zip(m.pairs.gt.tolist(), m.pairs.iou.tolist()))
    assert gone not in iou_of
    assert iou_of[split] == pytest.approx(big_iou) and iou_of[eroded] == pytest.approx(thin_iou)
    r = panoptic_quality(table=table)
    assert (r.tp, r.fp, r.fn) == (n - 1, 1, 1)
    assert r.sq == pytest.approx((n - 3 + big_iou + thin_iou) / (n - 1))
    # AJI, with S the gt foreground: untouched objects add |G| to C and U; the deleted one |G| to
    # U only; the split one picks its big piece (C += big, U += |G|) and the small piece is unused
    # (U += small); the eroded one gives C += |thin|, U += |G|. So C = S - |gone| - small - (|E| - |thin|)
    # and U = S + small.
    fg, small = int(np.sum(gt > 0)), int(piece.sum())
    c = fg - sizes[order[0]] - small - (obj.sum() - thin.sum())
    assert aggregated_jaccard_index(table=table) == pytest.approx(c / (fg + small), rel=1e-12)
    perfect = match_instances(gt, gt)
    assert _counts(perfect) == (n, 0, 0) and average_precision(gt, gt).map == 1.0


# ----------------------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 5\) and \(5, 2\)"):
        match_instances(GT2, GT2.T)
    with pytest.raises(TypeError, match="integer"):
        match_instances(GT2, GT2.astype(float))
    with pytest.raises(ValueError, match="negative"):
        aggregated_jaccard_index(GT2, -GT2)
    for bad in (0, 1.5, -0.1, nan, "x"):
        with pytest.raises(ValueError, match=r"iou_threshold must be IoU thresholds in \(0, 1\]"):
            match_instances(GT2, GT2, iou_threshold=bad)
    with pytest.raises(ValueError, match="iou_thresholds"):
        average_precision(GT2, GT2, iou_thresholds=[0.5, 1.2])
    with pytest.raises(ValueError, match="thresholds"):
        match_instances_thresholds(GT2, GT2, [])
    with pytest.raises(ValueError, match="area_range"):
        average_precision(GT2, GT2, area_range=(10, 1))
    with pytest.raises(TypeError, match="table must be a Contingency"):
        panoptic_quality(table=np.zeros(3))
    with pytest.raises(TypeError, match="pass gt and pred"):
        panoptic_quality()

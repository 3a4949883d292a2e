"""Which training target a fit plans, from the kind of labels (:mod:`emseg.fit.fingerprint`) and
how often objects touch: the rules of :func:`emseg.fit.planner.plan_training` for the target."""

from __future__ import annotations

__all__ = ["choose_target"]

_TOUCHING = 0.1  # instances this often touching another: the distance target (BCD) too


def choose_target(fp, dims, why, init_task=None):
    """The training target for data with fingerprint ``fp`` planned as ``dims`` ("2d", "3d-aniso",
    "3d"): ``(task name, extra TrainConfig fields)``, its reason in ``why["target"]``.

    ``init_task``: the --init model's ``(task, task parameters)``. A membrane model (``boundary``)
    fine-tuned on dense neuron ids keeps its output: it learns the boundaries between the ids
    (``convention: instances``), which a watershed cuts into neurons again; its last layer is kept
    instead of a new affinity head. Other --init models get the target the labels call for (a new
    output layer where that differs).
    """
    kind = fp.labels_kind
    if init_task is not None and init_task[0] == "boundary" and kind == "neurons":
        why["target"] = ("boundary (the boundaries between the neuron ids): as the --init membrane model, so its "
                         "output layer is kept; a watershed cuts the membrane map into neurons")
        return "boundary", {"target_params": {"convention": "instances"}}
    if kind == "membranes":
        why["target"] = "boundary: ISBI-style labels (0 = membrane); the membrane map is cut by a watershed"
        return "boundary", {}
    if kind == "neurons":
        ndim = 2 if dims == "2d" else 3
        a = fp.anisotropy
        zs = sorted({max(1, round(r / a)) for r in (1, 3, 9)}) if ndim == 3 else []
        offsets = [[-z, 0, 0] for z in zs] + [o for r in (1, 3, 9) for o in ([0, -r, 0], [0, 0, -r])]
        offsets = sorted(offsets, key=lambda o: (max(abs(v) for v in o), o))
        if ndim == 2:
            offsets = [o[1:] for o in offsets]
        why["target"] = ("affinities with long-range offsets (nearest, 3 and 9 voxels in-plane" +
                         (f", {' and '.join(map(str, zs))} section(s) in z" if zs else "") +
                         "): dense neuron ids, cut by the mutex watershed")
        return "affinities", {"offsets": offsets}
    if kind == "instances" and fp.touching is not None and fp.touching >= _TOUCHING:
        why["target"] = (f"bcd (foreground, contour, distance): {fp.touching:.0%} of the objects touch another, "
                         "so seeds from the distance map split them")
        return "bcd", {}
    if kind == "instances":
        why["target"] = (f"bc (foreground + contour): separate object instances ({fp.touching:.0%} touch another); "
                         "the contour separates the few that meet")
        return "bc", {}
    if fp.objects >= 2 and fp.foreground_fraction < 0.5:
        why["target"] = (f"bc (foreground + contour): a mask of {fp.objects} separate objects; the contour "
                         "splits objects that come close, for instances by a seeded watershed")
        return "bc", {}
    why["target"] = "binary: a mask without separate objects (semantic segmentation)"
    return "binary", {}

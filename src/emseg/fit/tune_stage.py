"""The tuning stage of ``emseg fit``: what is predicted (the held-out part, or the labelled sections
when nothing is held out), what is scored (only labelled sections, kept apart), and the search
itself (:func:`emseg.fit.tune.tune_postprocess`); ``tuning.json``. Without labels, the init
model's post-processing is kept."""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["stage_tune", "read_sections", "predict_sections"]

_TUNE_VOXELS = 2**24  # the validation part tuned on is cropped in-plane to this many voxels


def _open_pair(config):
    from ..io import open_volume

    return open_volume(config.raw), open_volume(config.labels)


def labels_seen(config, labels):
    """The labels as fingerprint and tuning see them: with ``sections``, only those (the others read as 0)."""
    from .split import labelled_only

    return labelled_only(labels, config.sections, config.labels)


def _stage_keep_postprocess(config):
    """No labels to tune on: the init model's post-processing, kept."""
    from dataclasses import asdict

    from ..io.atomic import write_text_atomic
    from ..models.reader import read_checkpoint

    p = asdict(read_checkpoint(config.init).postprocess())
    post = {k: p[k] for k in ("method", "params", "min_size", "z_filter", "tta")}
    result = {"objective": None, "default": None, "tuned": None, "postprocess": post, "scores": {}, "tried": 0,
              "note": f"no labels: the post-processing of {config.init} is kept"}
    write_text_atomic(os.path.join(config.out_dir, "tuning.json"), json.dumps(result, indent=1))
    return result


def stage_tune(config, state, say, progress):
    if config.labels is None:
        say("[3/4] tune: no labels to tune on: the init model's post-processing is kept")
        return _stage_keep_postprocess(config)
    from ..io.atomic import write_text_atomic
    from ..models.reader import read_checkpoint
    from ..train import load_config
    from .tune import tune_postprocess

    c = load_config(os.path.join(config.out_dir, "plan.yaml"))
    checkpoint = state["stages"]["train"]["checkpoint"]
    info = read_checkpoint(checkpoint)
    raw, labels = _open_pair(config)
    with raw, labels:
        scored = None  # the indices of the predicted sections that are scored (None: all)
        if c.val_roi is None:  # nothing held out (few labelled sections): tuned on the labelled ones
            zs = [z for a, b in state["stages"]["plan"]["fingerprint"]["labelled_sections"] for z in range(a, b)]
            z0, z1 = zs[0], zs[-1] + 1
            roi = _tune_roi(raw.shape, z0, z1)
            seen = labels_seen(config, labels)
            if len(c.patch_shape) == 3:  # a 3D network needs the sections between them as context
                raw_v, gt = np.asarray(raw[roi]), np.asarray(seen[roi])
                scored = [z - z0 for z in zs]
            else:  # a 2D network predicts each section alone (2.5D: with its neighbours' raw): only those are read
                raw_v = [read_sections(raw, z, z + 1, roi, c.context) for z in zs]
                gt = np.stack([np.asarray(seen[(z,) + roi[1:]]) for z in zs])
        else:
            z0, z1 = (int(v) for v in c.val_roi.split(":"))
            zs = None
            roi = _tune_roi(raw.shape, z0, z1) if len(raw.shape) == 3 else (slice(z0, z1), slice(0, raw.shape[1]))
            raw_v = [read_sections(raw, z0, z1, roi, c.context)] if len(roi) == 3 else [(np.asarray(raw[roi]), 0)]
            gt = np.asarray(labels_seen(config, labels)[roi])
    tta = "flips" if len(c.patch_shape) == 2 else None  # 2D: 4 flips cost little; 3D: 8x the prediction
    part = (f"the labelled sections {', '.join(map(str, zs))} (nothing held out)" if zs is not None else
            f"the held-out part ({'sections' if len(roi) == 3 else 'rows'} {z0}-{z1 - 1})")
    say(f"[3/4] tune: predicting {part}, {'x'.join(map(str, gt.shape))}, TTA {tta or 'none'} ...")
    pred = predict_sections(raw_v, checkpoint, len(info.activations), gt.shape[0], dict(tta=tta, device=config.device,
                                                                                 progress=progress))
    if config.sections is not None and zs is None:  # only the labelled sections of the held-out part are scored
        scored = [i for i in range(z1 - z0) if z0 + i in set(config.sections)]
    if scored is not None:
        pred, gt = pred[:, scored], gt[scored]
    if config.sections is not None:
        absolute = zs if zs is not None else [z0 + i for i in scored]
        pred, gt = _apart(pred, gt, absolute)
    z_filters = (0, 3, 5) if (len(c.patch_shape) == 2 and gt.ndim == 3 and gt.shape[0] >= 5
                              and config.sections is None) else (0,)  # sparse sections: no z neighbours to filter
    t = tune_postprocess(pred, gt, info.task, info.task_params, z_filters=z_filters,
                         budget_seconds=60 * config.tune_minutes, progress=progress)
    result = {"objective": t.objective, "default": round(t.default_score, 4), "tuned": round(t.score, 4),
              "postprocess": t.postprocess(tta), "scores": t.scores, "default_scores": t.default_scores,
              "tried": t.tried, "roi": [[s.start, s.stop] for s in roi], "search_seconds": round(t.seconds, 1)}
    if zs is not None:
        result["sections"] = zs
        result["note"] = "nothing was held out: tuned on the labelled sections training saw (optimistic)"
    write_text_atomic(os.path.join(config.out_dir, "tuning.json"), json.dumps(result, indent=1))
    say(f"      {t.method} {t.params or ''} min_size {t.min_size}, z-filter {t.z_filter or 'none'}: {t.objective} "
        f"{t.default_score:.3f} with the defaults -> {t.score:.3f} tuned ({t.tried} settings, {t.seconds:.0f} s)")
    return result


def read_sections(raw, z0, z1, roi, context):
    """The raw of sections ``z0:z1`` (in-plane ``roi[1:]``) with ``context`` sections more on each side where
    the volume has them (a 2.5D network's neighbours; raw only), and where ``z0`` lies in what was read."""
    a, b = max(0, z0 - context), min(raw.shape[0], z1 + context)
    return np.asarray(raw[(slice(a, b),) + tuple(roi[1:])]), z0 - a


def predict_sections(parts, checkpoint, channels, n, options):
    """The prediction of ``n`` sections from ``parts`` ((raw, offset) pairs: a volume or one section each,
    read with context by :func:`read_sections`; a 3D network's array as it is): (channels, n, ...)."""
    from ..predict import predict_blockwise

    if isinstance(parts, np.ndarray):
        parts = [(parts, 0)]
    out = []
    for block, offset in parts:
        count = n if len(parts) == 1 else 1
        roi = None  # only the sections wanted are computed (their neighbours are read as the network's context)
        if block.ndim == 3 and (offset or count < block.shape[0]):
            roi = (slice(offset, offset + count),) + tuple(slice(0, s) for s in block.shape[1:])
        pred = np.zeros((channels,) + block.shape, np.float32)
        predict_blockwise(block, checkpoint, pred, roi=roi, **options)
        out.append(pred[:, offset:offset + count])
    return np.concatenate(out, axis=1)


def _apart(pred, gt, zs):
    """``pred`` and ``gt`` of the sections ``zs`` with an empty section between any two that are not
    neighbours in the volume, so that no 3D post-processing or score joins objects across the gap."""
    gaps = [i for i in range(1, len(zs)) if zs[i] != zs[i - 1] + 1]
    if not gaps:
        return pred, gt
    p_parts, g_parts, start = [], [], 0
    for i in gaps + [len(zs)]:
        p_parts += [pred[:, start:i], np.zeros_like(pred[:, :1])]
        g_parts += [gt[start:i], np.zeros_like(gt[:1])]
        start = i
    return np.concatenate(p_parts[:-1], axis=1), np.concatenate(g_parts[:-1])


def _tune_roi(shape, z0, z1):
    """The validation sections, cropped in-plane (centred) to at most ``_TUNE_VOXELS`` voxels."""
    ny, nx = shape[1], shape[2]
    while (z1 - z0) * ny * nx > _TUNE_VOXELS and max(ny, nx) > 64:
        ny, nx = (int(ny * 0.9), nx) if ny >= nx else (ny, int(nx * 0.9))
    y0, x0 = (shape[1] - ny) // 2, (shape[2] - nx) // 2
    return (slice(z0, z1), slice(y0, y0 + ny), slice(x0, x0 + nx))

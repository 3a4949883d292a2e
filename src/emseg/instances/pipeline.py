"""Raw EM → instances in one call: blockwise prediction, then blockwise post-processing (``emseg segment``)."""

from __future__ import annotations

import logging
import os
from functools import partial

from .methods import METHODS, TASKS

__all__ = ["method_for_model", "segment_volume"]

log = logging.getLogger(__name__)


def method_for_model(info, task=None):
    """The post-processing a checkpoint's training target calls for, and its task defaults.

    Returns ``(method, params, offsets, min_size)``: binary masks → "cc", BC → "bc", BCD → "bcd",
    boundary maps → "watershed", affinities → "mws" when they include long-range offsets, else
    "agglomerate". ``task`` (one of :data:`TASKS`) adds its size filter and settings. A shipped
    model (``info["card"]``) brings its card's post-processing when no ``task`` is given.
    """
    info = info or {}
    target = info.get("target")
    offsets = info.get("offsets") if target == "affinities" else None
    post = (info.get("card") or {}).get("postprocess")
    if post and task is None:
        return post["method"], dict(post.get("params", {})), offsets, int(post.get("min_size", 0))
    if target == "affinities":
        method = "mws" if any(max(abs(v) for v in o) > 1 for o in offsets) else "agglomerate"
    else:
        method = {"binary": "cc", "bc": "bc", "bcd": "bcd", "boundary": "watershed"}.get(target)
    if task and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    t = TASKS.get(task, {})
    if method is None:
        method = t.get("method")
    if method is None:
        raise ValueError(f"the model's target {target!r} does not say how to make instances; pass a method "
                         f"({', '.join(METHODS)}) or a task ({', '.join(TASKS)})")
    params = {k: v for k, v in t.get("params", {}).items() if k in METHODS[method]["params"]}
    return method, params, offsets, int(t.get("min_size", 0))


def _finished(out, pipeline, prob_path):
    """``(volume, n_objects)`` when ``out`` holds the finished labels of this very pipeline, else None.

    Under the output's lock: what a run killed after its commit left (record, scratch, prediction) is removed.
    """
    from ..io import open_volume
    from ..io.lock import output_lock
    from ..io.output import Output, read_run_attrs, remove_ours, sibling

    o = Output(out, signature={})
    key = o.key if o.keyed else None
    with output_lock(o.path, key, what=o.name):
        recorded = read_run_attrs(o.path, o.key, o.fmt)
        before = ((recorded or {}).get("signature") or {}).get("inputs", {}).get("pred")
        if not (recorded and recorded.get("complete") and before == {"pipeline": pipeline}):
            if o.exists():  # refuse before predicting anything
                from ..runs import differences

                diff = differences(before.get("pipeline"), pipeline) if isinstance(before, dict) and \
                    "pipeline" in before else []
                what = f"the output of another run ({'; '.join(diff[:3])})" if diff else "data"
                raise FileExistsError(f"{o.name} already holds {what}; pass --overwrite to replace it, or write "
                                      "to another output")
            return None
        for stale in (prob_path, sibling(o.path, key, ".emseg-scratch-", ".d"), o.record_file):
            if stale and os.path.exists(stale):
                remove_ours(stale)
    return open_volume(o.path, o.key), int(recorded.get("n_objects", 0))


def _check_voxel_size(raw, p):
    """Warn when a shipped model meets data at another pixel size than it was trained on (it then sees
    objects at another scale; resample first, e.g. with ``emseg convert``)."""
    want = (p.info.get("card") or {}).get("input_voxel_size_nm")
    if not want or not isinstance(raw, str):
        return
    from ..io import open_volume

    with open_volume(raw) as vol:
        have = vol.voxel_size
    if have is None:
        return
    axes = slice(-p.ndim, None)  # a 2D model only cares about the in-plane size
    if any(abs(h / w - 1) > 0.3 for h, w in zip(have[axes], want[axes])):
        log.warning("%s has voxel size %s nm; model %s was trained at %s nm: expect worse results unless "
                    "the data is resampled", raw, "x".join(f"{v:g}" for v in have), p.info["card"]["name"],
                    "x".join(f"{v:g}" for v in want))


def segment_volume(raw, out, model, *, task=None, method=None, params=None, min_size=None, z_filter=None,
                   probabilities=None, block_shape=None, tta=None, device="auto", workers=2, scheduler=None,
                   resume=True, overwrite=False, progress=None, normalization=None):
    """Predict ``raw`` with ``model`` and turn the prediction into instances, both blockwise and resumable.

    Parameters
    ----------
    raw, model :
        As in :func:`emseg.predict.predict_blockwise`.
    out : str
        The label volume to write (e.g. ``cells.zarr``; any chunked format emseg writes).
    task : "mito", "nuclei", "neurons" or "membranes", optional
        Size filter and settings for that kind of object (see :data:`TASKS`).
    method, params, min_size, z_filter, tta :
        Override the post-processing (default: a shipped model's card, else from the model's
        training target and ``task``).
    probabilities : str, optional
        Keep the prediction here; by default it goes to a hidden ``.emseg-prob-NAME.zarr`` beside
        the output and is removed when done.

    Returns
    -------
    (PredictResult, SegmentResult)
    """
    from ..predict import predict_blockwise
    from ..predict.model import as_predictor
    from .blockwise import segment_blockwise

    p = as_predictor(model if not isinstance(model, (list, tuple)) else model[0], device=device)
    auto_method, auto_params, offsets, auto_min = method_for_model(p.info, task)
    if method is not None and method != auto_method:
        auto_params = {}
    method = method or auto_method
    params = {**auto_params, **(params or {})}
    from .methods import method_params

    method_params(method, params, offsets)  # bad parameters are refused before anything is predicted
    if METHODS[method]["channels"] is None and not offsets:
        raise ValueError(f"method {method!r} needs the affinity offsets, which the model does not record")
    _check_voxel_size(raw, p)
    post = (p.info.get("card") or {}).get("postprocess") or {} if task is None else {}
    tta = post.get("tta") if tta is None else (None if tta in (False, "none") else tta)
    z_filter = post.get("z_filter") if z_filter is None else z_filter
    from ..io.output import Output, remove_ours, sibling
    from ..io.paths import split_key

    from ..io.lock import OutputBusyError
    from ..runtime import torch_device
    from ..predict.blockwise import PredictResult, _model_identity
    from ..runs import input_identity, run_signature
    from .blockwise import SegmentResult

    keep = probabilities is not None
    path, key = split_key(str(out))
    Output(out, signature={}, overwrite=overwrite)  # refuses a bad output path or key before any work
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    # what the labels depend on: the raw volume, the models and every option (not the temporary prediction file)
    pipeline = run_signature("segment", {"raw": input_identity(raw) if isinstance(raw, (str, os.PathLike)) else None},
                             [_model_identity(m, as_predictor(m, device=device)) for m in models],
                             {"method": method, "params": params, "offsets": offsets, "tta": tta, "z_filter": z_filter,
                              "min_size": auto_min if min_size is None else min_size, "task": task,
                              "block_shape": block_shape, "prediction_dtype": "float16", "normalization": normalization,
                              "device": str(torch_device(device).type)})
    if resume and not overwrite:
        done = _finished(out, pipeline, None if keep else sibling(path, key, ".emseg-prob-", ".zarr"))
        if done is not None:
            return (PredictResult(None, 0, 0, 0, 0.0, 0.0, complete_before=True),
                    SegmentResult(done[0], done[1], 0, 0.0, 0.0, complete_before=True))
    prob_path = probabilities or sibling(path, key, ".emseg-prob-", ".zarr")
    predict = partial(predict_blockwise, raw, model, prob_path, block_shape=block_shape, tta=tta, device=device,
                      workers=workers, scheduler=scheduler, resume=resume, progress=progress, dtype="float16",
                      normalization=normalization)
    try:
        pr = predict(overwrite=overwrite)
    except FileExistsError as e:  # our own hidden prediction, left by an earlier run with other inputs
        if keep or isinstance(e, OutputBusyError):
            raise
        pr = predict(overwrite=True)
    t = TASKS.get(task, {})
    sr = segment_blockwise(prob_path, out, method, params, offsets=offsets,
                           z_filter=t.get("z_filter", 0) if z_filter is None else z_filter,
                           min_size=auto_min if min_size is None else min_size, workers=workers,
                           scheduler=scheduler, resume=resume, overwrite=overwrite, progress=progress,
                           pred_identity={"pipeline": pipeline})
    if not keep and os.path.exists(prob_path):
        remove_ours(prob_path)
    return pr, sr

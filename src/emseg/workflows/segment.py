"""Raw EM → instances in one call: blockwise prediction, then blockwise post-processing (``emseg segment``).

The model is read once (:func:`emseg.models.reader.read_checkpoint`): its task gives the
post-processing method, its card (for a shipped model) the tuned settings; the user's options win.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

from ..instances.methods import METHODS

__all__ = ["segment_volume", "SegmentVolumeResult", "segment_memory"]

log = logging.getLogger(__name__)


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


class SegmentVolumeResult(NamedTuple):
    """What :func:`segment_volume` did: the prediction stage and the instance stage."""

    predict: object
    segment: object


def _check_voxel_size(raw_name, have, checkpoint, ndim):
    """Warn when a shipped model meets data at another pixel size than it was trained on (it then sees
    objects at another scale; resample first, e.g. with ``emseg convert``)."""
    want = ((checkpoint.card if checkpoint else None) or {}).get("input_voxel_size_nm")
    if not want or have is None:
        return
    axes = slice(-ndim, None)  # a 2D model only cares about the in-plane size
    if any(abs(h / w - 1) > 0.3 for h, w in zip(have[axes], want[axes])):
        log.warning("%s has voxel size %s nm; model %s was trained at %s nm: expect worse results unless "
                    "the data is resampled", raw_name, "x".join(f"{v:g}" for v in have), checkpoint.name,
                    "x".join(f"{v:g}" for v in want))


def _postprocess(p, objects, c):
    """The post-processing config: the user's choices over the model's defaults (card, task, kind of objects)."""
    import dataclasses

    from ..instances.methods import method_params
    from ..models.reader import postprocess_defaults

    says = p.checkpoint is not None and (p.checkpoint.task is not None or p.checkpoint.card)
    if says:
        d = p.checkpoint.postprocess(objects)
    elif c.method is None or objects is not None:  # the model does not say what it predicts
        d = postprocess_defaults(None, {}, None, objects)
    else:  # nor is it asked: the user's method as it is
        d = None
    method = c.method or d.method
    params = {**(d.params if d is not None and method == d.method else {}), **c.params}
    offsets = c.offsets or (d.offsets if d is not None else None)
    method_params(method, params, offsets)  # bad parameters are refused before anything is predicted
    if METHODS[method]["channels"] is None and not offsets:
        raise ValueError(f"method {method!r} needs the affinity offsets, which the model does not record")
    return dataclasses.replace(c, method=method, params=params, offsets=offsets,
                               min_size=c.min_size if c.min_size is not None else (d.min_size if d else 0),
                               z_filter=c.z_filter if c.z_filter is not None else (d.z_filter if d else 0)), d


def _options(config, leave_out=()):
    """A configuration's fields as the JSON-able options of a run signature (every field counts, but where
    the intermediate files go); a roi as its bounds, a mask by its content, a device by its kind."""
    import dataclasses

    from ..runs import content_fingerprint
    from ..runtime import torch_device

    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.name in leave_out or (f.name == "runtime" and v == "torch"):  # runs of before the option
            continue
        if f.name == "roi" and v is not None:
            v = [[s.start, s.stop] for s in v]
        elif f.name == "mask" and v is not None:
            v = content_fingerprint(v)
        elif f.name == "device":
            v = str(torch_device(v).type)
        elif hasattr(v, "as_dict"):
            v = v.as_dict()
        out[f.name] = v
    return out


def segment_volume(raw, out, model, *, probabilities=None, predict=None, postprocess=None, execution=None,
                   **options) -> SegmentVolumeResult:
    """Predict ``raw`` with ``model`` and turn the prediction into instances, both blockwise and resumable.

    Parameters
    ----------
    raw, model :
        As in :func:`emseg.predict.predict_blockwise`.
    out : str
        The label volume to write (e.g. ``cells.zarr``; any chunked format emseg writes).
    probabilities : str, optional
        Keep the prediction here; by default it goes to a hidden ``.emseg-prob-NAME.zarr`` beside
        the output and is removed when done.
    predict, postprocess, execution : PredictConfig, PostprocessConfig, ExecutionConfig, optional
        The stages' options; unset post-processing fields (method, params, min_size, z_filter, and
        tta of the prediction) come from the model: a shipped model's card, else its task and
        ``postprocess.objects`` ("mito", "nuclei", "neurons" or "membranes": that kind's size filter
        and settings, :data:`emseg.tasks.OBJECTS`; a shipped model's card is then not applied).
    **options
        Any field of the three configs; ``block_shape`` is the prediction's (the post-processing's
        blocks are ``postprocess.block_shape``, by default its own); a field both stages have
        (``halo``) goes inside ``predict=`` or ``postprocess=``.

    Returns
    -------
    SegmentVolumeResult
        ``predict`` (a PredictResult) and ``segment`` (a SegmentResult).
    """
    import dataclasses

    from ..config import ExecutionConfig, resolve
    from ..instances.config import PostprocessConfig
    from ..predict.config import PredictConfig

    blocks = {k: options.pop(k) for k in ("block_shape",) if k in options}  # the prediction's blocks
    tta_given = "tta" in options or (predict is not None and predict.tta is not None)
    predict, postprocess, execution = resolve(options, (PredictConfig, predict), (PostprocessConfig, postprocess),
                                              (ExecutionConfig, execution))
    if blocks:
        predict = dataclasses.replace(predict, **blocks)
    from ..blockwise.execute import shared_dask

    with shared_dask():  # on Dask, the prediction and both passes share one cluster (one set of batch jobs)
        return _segment_volume(raw, out, model, probabilities, predict, postprocess, execution, tta_given)


def segment_memory(raw, model, predict=None, postprocess=None) -> int:
    """Peak bytes of one block of ``segment_volume(raw, out, model, predict=..., postprocess=...)``: the larger
    of its prediction's and its post-processing's, with the model's defaults filled in as there (its card's
    test-time augmentation unless ``predict.tta`` is set: an estimate never below the run's)."""
    import dataclasses
    from types import SimpleNamespace

    from ..instances.config import PostprocessConfig
    from ..instances.memory import postprocess_memory
    from ..io import open_volume
    from ..predict.config import PredictConfig
    from ..predict.memory import prediction_memory
    from ..predict.model import as_predictor

    pc, post = predict or PredictConfig(), postprocess or PostprocessConfig()
    p = as_predictor(model[0] if isinstance(model, (list, tuple)) else model, device=pc.device)
    post, defaults = _postprocess(p, post.objects, post)
    if pc.tta is None and defaults is not None and defaults.tta:
        pc = dataclasses.replace(pc, tta=defaults.tta)
    with open_volume(raw) as vol:
        shape = tuple(vol.shape)
    pred = SimpleNamespace(shape=(p.out_channels,) + shape, dtype=pc.dtype)  # the prediction it makes
    return max(prediction_memory(raw, model, pc), postprocess_memory(pred, post))


def _segment_volume(raw, out, model, probabilities, pc, post, e, tta_given):
    import dataclasses

    from ..instances.stitch import SegmentResult, segment_blockwise
    from ..io import open_volume
    from ..io.lock import OutputBusyError
    from ..io.output import Output, remove_ours, sibling
    from ..io.paths import split_key
    from ..predict import predict_blockwise
    from ..predict.blocks import PredictResult
    from ..predict.model import as_predictor
    from ..runs import content_fingerprint, input_identity, model_identity, run_signature

    models = list(model) if isinstance(model, (list, tuple)) else [model]
    predictors = [as_predictor(m, device=pc.device, runtime=pc.runtime) for m in models]  # read once, cached
    p = predictors[0]
    objects = post.objects
    post, defaults = _postprocess(p, objects, post)
    if not tta_given and defaults is not None and defaults.tta:
        pc = dataclasses.replace(pc, tta=defaults.tta)
    if isinstance(raw, (str, os.PathLike)):
        with open_volume(raw) as vol:  # the raw is opened here once for its identity and voxel size
            _check_voxel_size(raw, vol.voxel_size, p.checkpoint, p.ndim)
            raw_id = input_identity(raw, vol)
    else:  # an array: its content decides whether an output holds its labels
        raw_id = {"array": content_fingerprint(raw)}
    keep = probabilities is not None
    path, key = split_key(str(out))
    Output(out, signature={}, execution=e)  # refuses a bad output path or key before any work
    # what the labels depend on: the raw volume, the models and every option (not the temporary prediction file)
    pipeline = run_signature("segment", {"raw": raw_id},
                             [model_identity(m, q.weights)
                              for m, q in zip(models, predictors)],
                             {"predict": _options(pc), "postprocess": _options(post, ("scratch", "keep_scratch"))})
    if e.resume and not e.overwrite:
        done = _finished(out, pipeline, None if keep else sibling(path, key, ".emseg-prob-", ".zarr"))
        if done is not None:
            return SegmentVolumeResult(PredictResult(None, 0, 0, 0, 0.0, 0.0, complete_before=True),
                                       SegmentResult(done[0], done[1], 0, 0.0, 0.0, complete_before=True))
    prob_path = probabilities or sibling(path, key, ".emseg-prob-", ".zarr")
    try:
        pr = predict_blockwise(raw, model, prob_path, config=pc, execution=e)
    except FileExistsError as err:  # our own hidden prediction, left by an earlier run with other inputs
        if keep or isinstance(err, OutputBusyError):
            raise
        pr = predict_blockwise(raw, model, prob_path, config=pc, execution=dataclasses.replace(e, overwrite=True))
    sr = segment_blockwise(prob_path, out, config=post, execution=e, pred_identity={"pipeline": pipeline})
    if not keep and os.path.exists(prob_path):
        remove_ours(prob_path)
    return SegmentVolumeResult(pr, sr)

"""``emseg fit``: plan, train, tune the post-processing, write the model card — one folder, resumable by stage.

::

    OUT_DIR/fit.json        the run's signature and the stages finished (with what each found)
    OUT_DIR/plan.yaml       the training plan (emseg.fit.planner), every choice with its reason
    OUT_DIR/train/          the trainer's run folder (exact resume of its own)
    OUT_DIR/tuning.json     the tuned post-processing and its scores against the defaults'
    OUT_DIR/model.safetensors, OUT_DIR/model.json   the checkpoint and its card:
                            ``emseg segment IN OUT --model OUT_DIR`` uses both

A rerun with the same inputs and options skips the stages ``fit.json`` records as finished and
resumes the one it stopped in (training resumes at its last checkpoint, also after SIGKILL). A
folder holding another run, or files that are not a fit's, is refused unless ``overwrite``, which
deletes the fit's own files and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import NamedTuple

import numpy as np

from .options import FitConfig

__all__ = ["FitConfig", "FitResult", "fit", "FIT_FILES", "STAGES"]

STAGES = ("plan", "train", "tune", "card")
FIT_FILES = ("fit.json", "plan.yaml", "train", "propagate", "tuning.json", "model.safetensors", "model.json", ".timing")
_FORMAT = "emseg-fit-1"


class FitResult(NamedTuple):
    out_dir: str
    checkpoint: str
    card: dict
    resumed: tuple
    """The stages that were finished before this call and kept."""


def fit(config: FitConfig, *, echo=None, progress=False) -> FitResult:
    """Run ``emseg fit``: plan, train, tune, card (see the module notes); ``echo`` gets one line per stage.

    Raises
    ------
    emseg.runs.RunMismatchError
        ``out_dir`` holds another fit (the message names what differs), unless ``overwrite``.
    ValueError, FileNotFoundError
        Bad input: labels of another shape, no foreground, a validation part without labels, a budget
        too short for one step, an unknown ``init`` — each naming the argument.
    """
    say = echo or (lambda line: None)
    out = config.out_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"OUT_DIR {out} is a file; give a folder")
    _check_init(config.init)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    try:
        return _fit(config, say, progress)
    finally:
        if created and not os.listdir(out):  # bad input before anything was made: leave no folder behind
            os.rmdir(out)


def _fit(config, say, progress):
    from ..io.lock import output_lock

    out = config.out_dir
    with output_lock(out, what=f"OUT_DIR {out!r}"):
        signature = _signature(config)
        had_state = os.path.exists(os.path.join(out, "fit.json"))
        state = _open_state(config, signature)
        done = tuple(s for s in STAGES if s in state["stages"])
        try:
            for i, stage in enumerate(STAGES):
                if stage in state["stages"]:
                    say(f"[{i + 1}/4] {stage}: finished before, kept ({_summary(stage, state['stages'][stage])})")
                    continue
                t0 = time.perf_counter()
                found = _STAGE_FNS[stage](config, state, say, progress)
                state["stages"][stage] = {**found, "seconds": round(time.perf_counter() - t0, 1)}
                _write_state(out, state)
        except Exception:
            if not state["stages"] and not had_state:  # bad input: nothing was made, leave no record
                _remove_fit_files(out)
            raise
    with open(os.path.join(out, "model.json")) as f:
        card = json.load(f)
    return FitResult(out, os.path.join(out, "model.safetensors"), card, done)


def _check_init(init):
    if init is None:
        return
    from ..zoo import model_names, resolve_model

    try:
        path, _ = resolve_model(init)
    except FileNotFoundError as err:  # a folder that is not a finished fit
        raise FileNotFoundError(f"--init {init}: {str(err).split(': ', 1)[-1]}") from None
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"--init {init}: no such checkpoint, nor a shipped model (shipped: "
                                f"{', '.join(model_names())})")


def _signature(config):
    from ..runs import run_signature

    models = []
    if config.init is not None:
        from ..zoo import resolve_model

        models = [os.fspath(resolve_model(config.init)[0])]
    options = {k: getattr(config, k) for k in ("minutes", "val_roi", "init", "device", "seed", "voxel_size",
                                               "tune_minutes")}
    options.update({k: getattr(config, k) for k, default in _TRAIN_OPTIONS.items() if getattr(config, k) != default})
    inputs = {"raw": config.raw} if config.labels is None else {"raw": config.raw, "labels": config.labels}
    if config.adapt_to is not None:
        inputs["adapt_to"] = config.adapt_to
    if config.unlabelled:
        inputs.update({f"unlabelled_{i}": path for i, path in enumerate(config.unlabelled)})
    return run_signature("fit", inputs=inputs, models=models, options=options)


def _open_state(config, signature):
    """The recorded state of this run (resume), or a new one; another run or foreign files are refused.

    A ``fit.json`` that records no finished stage (bad input, or a kill while planning) holds
    nothing to keep: the fit's leftover files are removed and the run starts afresh. ``overwrite``
    deletes the fit's own files (:data:`FIT_FILES`) only where a ``fit.json`` says it is a fit folder.
    """
    from ..runs import check_same_run

    out = config.out_dir
    path = os.path.join(out, "fit.json")
    recorded = _read_state(path) if os.path.exists(path) else None
    if recorded is not None and recorded["stages"] and not config.overwrite:
        check_same_run(recorded["signature"], signature, f"OUT_DIR {out}",
                       fix="pass --overwrite to start over, or give another OUT_DIR")
        return recorded
    if recorded is not None:  # overwrite, or a record of a run that finished nothing: the fit's files go
        _remove_fit_files(out)
    else:  # no fit.json: files of the fit's names here are not provably a fit's, so nothing is deleted
        present = [f for f in os.listdir(out) if not f.startswith(".emseg-lock")]
        if present:
            raise ValueError(f"OUT_DIR {out} holds {', '.join(sorted(present)[:5])} but no fit.json: not an emseg "
                             "fit folder, so nothing there is deleted (not even with --overwrite); give an empty "
                             "or new folder")
    state = {"format": _FORMAT, "signature": signature, "stages": {}}
    _write_state(out, state)
    return state


def _read_state(path):
    try:
        with open(path) as f:
            state = json.load(f)
        if state.get("format") != _FORMAT or not isinstance(state.get("stages"), dict):
            raise ValueError
        return state
    except (OSError, ValueError, AttributeError):
        raise ValueError(f"{path} is not an emseg fit record (damaged, or another program's); pass "
                         "--overwrite to start over") from None


def _remove_fit_files(out):
    """Delete the fit's own files in ``out`` (:data:`FIT_FILES`) and nothing else."""
    for name in FIT_FILES:
        p = os.path.join(out, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def _write_state(out, state):
    from ..io.atomic import write_text_atomic

    write_text_atomic(os.path.join(out, "fit.json"), json.dumps(state, indent=1, default=str))


def _summary(stage, found):
    if stage == "plan":
        return f"{found['target']}, {found['dims']}, {found['steps']} steps"
    if stage == "train":
        return f"{found['steps']} steps"
    if stage == "tune":
        if found.get("objective") is None:
            return found.get("note", "")
        return f"{found['objective']} {found['default']:.3f} -> {found['tuned']:.3f}"
    return found.get("checkpoint", "")


_TRAIN_OPTIONS = {"sections": None, "freeze": "none", "init_lr_scale": 1.0, "adabn_batches": 0, "semi": "none",
                  "context": None}
"""Options of fit passed to the plan's TrainConfig, with their defaults (a run at the defaults keeps
the signature and the plan it had before they existed)."""


def _open_pair(config):
    from .tune_stage import _open_pair as open_pair

    return open_pair(config)


def _labels_seen(config, labels):
    from .tune_stage import labels_seen

    return labels_seen(config, labels)


def _stage_plan(config, state, say, progress):
    if config.labels is None:
        return _stage_adaptation_plan(config, say)
    from ..runtime import torch_device
    from .fingerprint import fingerprint
    from .plan_file import write_plan
    from .timing import measured_plan

    raw, labels = _open_pair(config)
    with raw, labels:
        fp = fingerprint(raw, _labels_seen(config, labels), voxel_size=config.voxel_size, raw_name=config.raw,
                         labels_name=config.labels)
        if config.val_roi is not None and fp.ndim == 2:
            _check_val_rows(labels, config.val_roi, config.labels)
    say(f"[1/4] plan: {fp.labels_kind} labels ({fp.kind_reason}); measuring a training step here ...")
    device = torch_device(config.device).type
    fixed = {"seed": config.seed, "out_dir": os.path.join(config.out_dir, "train")}
    if config.init is not None:
        fixed.update(_init_model(config.init))
    fixed.update({k: getattr(config, k) for k, default in _TRAIN_OPTIONS.items() if getattr(config, k) != default})
    if fixed.get("semi") == "propagate":  # a procedure of rounds (emseg.fit.propagate), not a training loss
        fixed.pop("semi")
    if config.adapt_to is not None:  # --source: the mean teacher learns from the target volume
        from ..io import open_volume

        with open_volume(config.adapt_to) as target:  # a missing or unreadable target: said before any training
            if len(target.shape) != fp.ndim:
                raise ValueError(f"RAW {config.adapt_to} has shape {tuple(target.shape)} but the --source raw "
                                 f"{config.raw} has {tuple(fp.shape)}: both must be volumes, or both images")
        fixed.update(unlabelled=(config.adapt_to,), semi="mean_teacher")
    if config.unlabelled:  # the mean teacher on RAW whole and the other volumes (emseg.train.semi.load_unlabelled)
        _check_unlabelled(config, fp.ndim)
        fixed.update(unlabelled=(config.raw, *config.unlabelled))
    options = dict(raw=config.raw, labels=config.labels, minutes=config.minutes, device=device, val_roi=config.val_roi,
                   **fixed)
    if config.semi == "propagate":  # refused before any step is measured
        from .planner import plan_training
        from .propagate import check_plan

        check_plan(plan_training(fp, **options).config)
    plan = measured_plan(fp, os.path.join(config.out_dir, ".timing"), echo=lambda s: say("      " + s), **options)
    for note in plan.notes:
        say(f"      note: {note}")
    write_plan(plan, os.path.join(config.out_dir, "plan.yaml"))
    c = plan.config
    say(f"      {c.target}, {plan.reasons['dims'].split(':')[0]}, patch {'x'.join(map(str, c.patch_shape))} x "
        f"{c.batch_size}, {c.steps} steps -> {os.path.join(config.out_dir, 'plan.yaml')}")
    return {"fingerprint": fp.as_dict(), "target": c.target, "dims": plan.reasons["dims"].split(":")[0],
            "steps": c.steps, "seconds_per_step": plan.seconds_per_step}


def _check_unlabelled(config, ndim):
    """Each ``--unlabelled`` volume opens and has RAW's dimensionality, said before any training."""
    from ..io import open_volume

    for path in config.unlabelled:
        with open_volume(path) as vol:
            if len(vol.shape) != ndim:
                raise ValueError(f"--unlabelled {path} has shape {tuple(vol.shape)} but RAW {config.raw} has "
                                 f"{ndim} dimensions: give raw of the same kind")


def _stage_adaptation_plan(config, say):
    from ..io.atomic import write_text_atomic
    from .adapt import adaptation_plan, plan_text

    say(f"[1/4] plan: no labels: adapting {config.init} to {config.raw}; measuring a step here ...")
    c, why, sps = adaptation_plan(config, echo=lambda s: say("      " + s))
    write_text_atomic(os.path.join(config.out_dir, "plan.yaml"), plan_text(c, why, config.raw))
    dims = f"{len(c.patch_shape)}d"
    say(f"      {c.target}, {dims}, mean teacher + AdaBN, {c.steps} steps -> {os.path.join(config.out_dir, 'plan.yaml')}")
    return {"fingerprint": None, "target": c.target, "dims": dims, "steps": c.steps, "seconds_per_step": sps}


def _init_model(init):
    """The model arguments of an ``init`` checkpoint, so that its weights fit the planned network, and its task."""
    from ..models.reader import read_checkpoint

    info = read_checkpoint(init)
    args = dict(info.init_args)
    for k in ("in_channels", "out_channels"):  # the channels follow the data and the task (2.5D: its context)
        args.pop(k, None)
    return {"init": init, "model": args, "init_task": (info.task, dict(info.task_params)),
            **({"context": info.context} if info.context else {})}


def _check_val_rows(labels, val_roi, name):
    """For a 2D image: ``--val`` rows inside it that hold labels (the planner checks a volume's sections)."""
    y0, y1 = (int(v) for v in val_roi.split(":"))
    if not 0 <= y0 < y1 <= labels.shape[0]:
        raise ValueError(f"--val {val_roi} is outside the image's {labels.shape[0]} rows (0:{labels.shape[0]})")
    if not np.any(np.asarray(labels[y0:y1])):
        raise ValueError(f"--val {val_roi}: labels {name} hold no foreground in rows {y0}-{y1 - 1}, so nothing can "
                         "be tuned there; choose rows that hold labels")


def _stage_train(config, state, say, progress):
    from .train_stage import stage_train

    return stage_train(config, say, progress)


def _stage_card(config, state, say, progress):
    from .adapt import write_adaptation_card
    from .card import write_card

    card = write_card(config, state) if config.labels is not None else write_adaptation_card(config, state)
    say(f"[4/4] card: {os.path.join(config.out_dir, 'model.json')}; use it with "
        f"`emseg segment IN OUT --model {config.out_dir}`")
    return {"checkpoint": os.path.join(config.out_dir, "model.safetensors"), "headline": card.get("headline")}


def _stage_tune(config, state, say, progress):
    from .tune_stage import stage_tune

    return stage_tune(config, state, say, progress)


_STAGE_FNS = {"plan": _stage_plan, "train": _stage_train, "tune": _stage_tune, "card": _stage_card}

"""The trainer's run folder (``out_dir``): its identity ``run.json``, its own files, and who may write it.

::

    run.json                   the run's signature: inputs' identity and every option that shapes the result
    latest.state.safetensors   everything a resume needs (emseg.train.state)
    latest.safetensors         the model at that step, a plain model checkpoint
    best.safetensors           the model at the best validation
    log.csv, tensorboard/      the losses

A rerun resumes only the same run (:func:`emseg.runs.check_same_run` on the signatures;
:data:`~emseg.train.config.RESUMABLE_FIELDS` may change). A folder holding another run, or the
trainer's files without ``run.json``, is refused touching nothing; ``overwrite`` deletes the
trainer's files (:data:`RUN_FILES`) and nothing else. One trainer at a time holds a folder
(:func:`emseg.io.lock.output_lock`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

from .. import faults
from ..config import plain
from ..runs import signature_hash
from .config import RESUMABLE_FIELDS

__all__ = ["RUN_FILES", "train_signature", "signature_hash", "run_files", "check_out_dir", "clear_run",
           "claim_run_dir"]

RUN_FILES = ("run.json", "latest.state.safetensors", "latest.safetensors", "best.safetensors", "log.csv",
             "teacher.safetensors", "tensorboard", "latest.safetensors.state")
"""What the trainer writes in ``out_dir`` (the last: the pickled state of emseg before issue 12)."""
_RUN_FORMAT = "emseg-train-run"
_LATER_FIELDS = ("sections", "background_label", "freeze", "init_lr_scale", "adabn_batches", "semi", "pretrain",
                 "ema_decay", "consistency_weight", "consistency_rampup", "confidence", "context", "confidence_start")
"""Fields added with few-label training (issue 15) and 2.5D, left out of the signature at their defaults."""


def train_signature(config) -> dict:
    """The signature of the run ``config`` describes (:func:`emseg.runs.run_signature`).

    Parameters
    ----------
    config : emseg.train.TrainConfig
        Its ``raw`` and ``labels`` are the inputs; every other field but
        :data:`~emseg.train.config.RESUMABLE_FIELDS` is an option.

    Returns
    -------
    dict
        JSON-ready; inputs named ``raw[i]`` and ``labels[i]``.
    """
    from ..runs import run_signature

    inputs = {}
    for i, (r, lab) in enumerate(zip(config.raw, config.labels)):
        inputs[f"raw[{i}]"], inputs[f"labels[{i}]"] = r, lab
    for name in ("label_mask", "unlabelled"):
        for i, path in enumerate(getattr(config, name)):
            inputs[f"{name}[{i}]"] = path
    options = {k: v for k, v in config.as_dict().items()
               if k not in RESUMABLE_FIELDS + ("raw", "labels", "label_mask", "unlabelled")}
    for name in ("target_params", "init"):  # fields added later, left out while empty: older runs still resume
        if not options.get(name):
            options.pop(name, None)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name in _LATER_FIELDS:  # the same for the fields of few-label training
        if options.get(name) == plain(defaults[name]):
            options.pop(name, None)
    models = []
    if config.init is not None:  # the weights it starts from: their content is part of the run
        from ..zoo import resolve_model

        path = os.fspath(resolve_model(config.init)[0])
        models = [path] if os.path.isfile(path) else []
    return run_signature("train", inputs=inputs, models=models, options=options)


def run_files(out_dir) -> list[str]:
    """The trainer's files present in ``out_dir`` (tensorboard/ only when it holds event files).

    Examples
    --------
    >>> import os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> for name in ("log.csv", "notes.txt"):
    ...     open(os.path.join(out, name), "w").close()
    >>> run_files(out), run_files(os.path.join(out, "missing"))
    (['log.csv'], [])
    """
    if not os.path.isdir(out_dir):
        return []
    found = []
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if name == "tensorboard":
            if os.path.isdir(path) and any(n.startswith("events.out.tfevents.") for n in os.listdir(path)):
                found.append(name)
        elif os.path.lexists(path):
            found.append(name)
    return found


def check_out_dir(config, signature) -> str:
    """What to do with ``config.out_dir``: ``"new"``, ``"overwrite"`` or ``"resume"``.

    Parameters
    ----------
    config : emseg.train.TrainConfig
        Its ``out_dir``, ``overwrite`` and ``resume``.
    signature : dict
        This run's :func:`train_signature`.

    Raises
    ------
    emseg.runs.RunMismatchError
        The folder holds another run; the message names the field that differs.
    ValueError
        ``out_dir`` is a file, holds the trainer's files without (or with a damaged) ``run.json``,
        or holds this run while ``resume`` is false. Nothing is touched.
    """
    from ..runs import check_same_run

    out = config.out_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out_dir {out!r} is a file; give a folder for the run")
    found = run_files(out)
    if not found:
        return "new"
    if config.overwrite:
        return "overwrite"
    run = os.path.join(out, "run.json")
    if "run.json" not in found:
        raise ValueError(f"out_dir {out!r} holds {', '.join(found)} but no run.json: a run of an older emseg or "
                         "another program's files, which cannot be resumed safely; pass --overwrite to delete "
                         f"those files and start over, or use another out_dir")
    try:
        with open(run, encoding="utf-8") as f:
            recorded = json.load(f)
        recorded = recorded["signature"] if recorded.get("format") == _RUN_FORMAT else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise ValueError(f"{run!r} is not an emseg training run record (corrupt, or another program's file); "
                         "move it away, or pass --overwrite to delete it with the trainer's other files and start over")
    check_same_run(recorded, signature, f"out_dir {out!r}",
                   fix="pass --overwrite to start over, or use another out_dir")
    if not config.resume:
        raise ValueError(f"out_dir {out!r} holds this run already and resume is false; set resume: true to "
                         "continue it, or pass --overwrite to start over")
    return "resume"


def clear_run(out_dir, everything) -> None:
    """Delete the trainer's files (``everything``) or only the temporaries of killed writes; nothing else.

    Parameters
    ----------
    out_dir : str
        An existing run folder.
    everything : bool
        Also delete :data:`RUN_FILES` (of ``tensorboard/`` only its event files, and the folder
        when that leaves it empty); else only partial files that killed atomic writes left.
    """
    for name in os.listdir(out_dir):
        if name.startswith(".emseg-partial-") and any(name.startswith(f".emseg-partial-{f}.") for f in RUN_FILES):
            os.unlink(os.path.join(out_dir, name))
        elif name.endswith(".partial") and name[:-8] in RUN_FILES:
            os.unlink(os.path.join(out_dir, name))
    if not everything:
        return
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if name == "tensorboard" and os.path.isdir(path) and not os.path.islink(path):
            for event in os.listdir(path):
                if event.startswith("events.out.tfevents."):
                    os.unlink(os.path.join(path, event))
            if not os.listdir(path):
                os.rmdir(path)
        elif os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)


@contextlib.contextmanager
def claim_run_dir(config, signature):
    """Hold ``config.out_dir`` for this run while the block trains; yields the :func:`check_out_dir` mode.

    Creates the folder, takes its lock, checks it again under the lock, deletes the trainer's
    files on overwrite (else only partial files of killed writes) and, unless resuming, writes
    ``run.json`` (fault point ``train.run_json``).

    Parameters
    ----------
    config : emseg.train.TrainConfig
        The run.
    signature : dict
        Its :func:`train_signature`.

    Raises
    ------
    emseg.io.lock.OutputBusyError
        Another trainer is writing ``out_dir``.
    emseg.runs.RunMismatchError, ValueError
        As :func:`check_out_dir`.
    """
    from ..io.atomic import write_text_atomic
    from ..io.lock import output_lock

    os.makedirs(config.out_dir, exist_ok=True)
    with output_lock(config.out_dir, what=f"out_dir {config.out_dir!r}"):  # one trainer per folder
        mode = check_out_dir(config, signature)  # again: under the lock
        clear_run(config.out_dir, everything=mode == "overwrite")
        if mode != "resume":
            write_text_atomic(os.path.join(config.out_dir, "run.json"), json.dumps(
                {"format": _RUN_FORMAT, "version": 1, "signature": signature}, indent=1) + "\n")
            faults.point("train.run_json")
        yield mode

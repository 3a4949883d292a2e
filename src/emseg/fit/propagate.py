"""``emseg fit --sections ... --semi propagate``: labels spread from a few labelled sections to their
unlabelled neighbours in rounds, as Takaya et al.'s 4S (2021) does for one volume (transductive).

Round 0 trains on the labelled sections alone. After each round but the last, the round's network
predicts the unlabelled sections of the training part within a growing distance of a labelled one
(``max_gap * (r + 1) / (ROUNDS - 1)`` after round ``r``, so the last round sees them all) and
keeps its confident decisions as pseudo-labels: foreground where the probability passes
:data:`CONFIDENCE` (and, for the bc/bcd targets, the contour channel says inside), background where
it is below ``1 - CONFIDENCE``; every other voxel is unknown (no loss, :mod:`emseg.train.sparse`).
The next round starts from the last one's weights and trains on the real sections plus these.

The rounds share the plan's steps and minutes equally (predicting the pseudo-labels comes on top).
Round ``r < ROUNDS - 1`` trains in ``OUT_DIR/propagate/round-r``; when it ends, its weights are kept
as ``init-r.safetensors`` (the next round's start) and ``round-r.json`` records it finished; its
pseudo-labels (``labels-r.zarr``, ``known-r.zarr``, then ``pseudo-r.json`` when both are complete)
lie beside it. The last round trains in ``OUT_DIR/train`` like any fit. A killed fit resumes in the
round it reached: finished rounds and complete pseudo-labels are kept, the round it was in resumes
at its last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np

__all__ = ["ROUNDS", "CONFIDENCE", "FOREGROUND_TASKS", "check_plan", "propagate_train", "round_sections",
           "pseudo_labels"]

ROUNDS = 3
"""Training rounds: the labelled sections alone, then twice with pseudo-labels reaching further."""
CONFIDENCE = 0.9
"""A pseudo-label is kept where the network's foreground probability is above this or below 1 - this."""
FOREGROUND_TASKS = ("binary", "bc", "bcd")
"""Targets whose first channel is the foreground probability, so confident decisions are labels."""


def round_sections(labelled, train_z, r, rounds=ROUNDS) -> list:
    """The unlabelled sections of the training range ``train_z`` (z0, z1) pseudo-labelled after round
    ``r``: those within ``ceil(max_gap * (r + 1) / (rounds - 1))`` of a labelled section, where
    ``max_gap`` is the largest distance of any of them to a labelled one (the last round: all).

    Examples
    --------
    >>> round_sections([10], (0, 20), 0)
    [5, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    >>> len(round_sections([10], (0, 20), 1))
    19
    >>> round_sections([10], (0, 20), 0, rounds=4)
    [6, 7, 8, 9, 11, 12, 13, 14]
    """
    z0, z1 = train_z
    labelled = sorted(labelled)
    dist = {z: min(abs(z - s) for s in labelled) for z in range(z0, z1) if z not in set(labelled)}
    if not dist:
        return []
    reach = math.ceil(max(dist.values()) * (r + 1) / max(1, rounds - 1))
    return [z for z, d in sorted(dist.items()) if d <= reach]


def pseudo_labels(prob, target, first_id=1, confidence=CONFIDENCE):
    """(labels, known) of one section from its prediction ``prob`` (channels, y, x; probabilities):
    connected components of the confident interior as ids from ``first_id``, known where the
    network is confident either way.

    Examples
    --------
    >>> p = np.array([[[0.95, 0.95, 0.5, 0.02]]])
    >>> labels, known = pseudo_labels(p, "binary", first_id=7)
    >>> labels.tolist(), known.tolist()
    ([[7, 7, 0, 0]], [[True, True, False, True]])
    """
    from scipy import ndimage

    fg = prob[0] > confidence
    if target in ("bc", "bcd"):  # the contour channel: touching objects come apart, the rim is unknown
        fg &= prob[1] < 0.5
    ids, n = ndimage.label(fg)
    labels = np.where(ids > 0, ids.astype(np.int64) + (first_id - 1), 0)
    return labels.astype(np.uint64 if labels.max(initial=0) >= 2**32 else np.uint32), fg | (prob[0] < 1 - confidence)


def check_plan(c):
    """ValueError unless the plan ``c`` can propagate: labelled ``sections``, a 2D network, a foreground target."""
    if c.target not in FOREGROUND_TASKS or c.sections is None or len(c.patch_shape) != 2:
        raise ValueError(f"--semi propagate spreads foreground labels between sections: it needs --sections, a 2D plan "
                         f"and a target of {', '.join(FOREGROUND_TASKS)}; the plan has target {c.target}, patch "
                         f"{list(c.patch_shape)}, sections {c.sections}")


def propagate_train(c, raw_path, labels_path, say, progress=False):
    """The rounds of propagation for the plan ``c`` (a :class:`~emseg.train.TrainConfig` with
    ``sections``, its ``out_dir`` the fit's ``train`` folder); the last round's
    :class:`~emseg.train.trainer.TrainResult` and one record per round."""
    from ..io import open_volume
    from ..train import train
    from ..train.patches import split_region

    check_plan(c)

    with open_volume(raw_path) as raw:
        shape = tuple(raw.shape)
    region = split_region(shape, c.val_fraction, c.val_roi).train
    train_z = (region[0].start, region[0].stop)
    work = os.path.join(os.path.dirname(c.out_dir), "propagate")
    os.makedirs(work, exist_ok=True)
    steps, minutes = max(1, c.steps // ROUNDS), (c.max_minutes / ROUNDS if c.max_minutes else None)
    base = replace(c, steps=steps, max_minutes=minutes, warmup_steps=min(c.warmup_steps, max(0, steps // 10)),
                   val_every=max(1, min(c.val_every, steps)))
    rounds, current, result = [], base, None
    for r in range(ROUNDS):
        last = r == ROUNDS - 1
        current = replace(current, out_dir=c.out_dir if last else os.path.join(work, f"round-{r}"))
        record = os.path.join(work, f"round-{r}.json")
        pseudo = len(current.sections) - len(c.sections)
        if not last and os.path.exists(record):  # finished before: its frozen weights start the next round
            with open(record) as f:
                rounds.append(json.load(f))
            say(f"      round {r + 1}/{ROUNDS}: finished before, kept")
        else:
            say(f"      round {r + 1}/{ROUNDS}: {len(current.sections)} sections ({pseudo} pseudo-labelled), {steps} "
                f"steps -> {current.out_dir}")
            result = train(current, progress=progress)
            rounds.append({"round": r, "sections": len(current.sections), "pseudo": pseudo, "steps": result.steps,
                           "seconds": round(result.seconds, 1)})
            if not last:
                _freeze_round(work, r, result.latest, rounds[-1])
        if last:
            break
        frozen = os.path.join(work, f"init-{r}.safetensors")
        zs = round_sections(c.sections, train_z, r)
        labels, known, kept = _write_pseudo(work, r, frozen, raw_path, labels_path, c, zs, say)
        current = replace(current, labels=(labels,), label_mask=(known,), sections=tuple(sorted(set(c.sections) | set(kept))),
                          init=frozen, init_lr_scale=1.0, adabn_batches=0)  # the weights are this data's now
        rounds[-1]["known_fraction"] = _known_fraction(work, r)
    return result, rounds


def _freeze_round(work, r, checkpoint, record):
    """Keep round ``r``'s weights as ``init-r.safetensors`` (what the next round starts from, unchanged by
    a rerun, so that the next round's signature stays the same) and record the round as finished."""
    from ..io.atomic import write_bytes_atomic, write_text_atomic

    with open(checkpoint, "rb") as f:
        write_bytes_atomic(os.path.join(work, f"init-{r}.safetensors"), f.read())
    write_text_atomic(os.path.join(work, f"round-{r}.json"), json.dumps(record))


def _known_fraction(work, r):
    with open(os.path.join(work, f"pseudo-{r}.json")) as f:
        return json.load(f)["known_fraction"]


def _write_pseudo(work, r, checkpoint, raw_path, labels_path, c, zs, say):
    """Round ``r``'s pseudo-label and known volumes (the real labelled sections copied in); kept when complete."""
    from ..io import VolumeMeta, create_volume, open_volume
    from ..io.atomic import write_text_atomic
    from ..models.reader import read_checkpoint
    from .tune_stage import predict_sections, read_sections

    labels_out, known_out = os.path.join(work, f"labels-{r}.zarr"), os.path.join(work, f"known-{r}.zarr")
    marker = os.path.join(work, f"pseudo-{r}.json")
    if os.path.exists(marker):
        with open(marker) as f:
            return labels_out, known_out, json.load(f)["kept"]
    say(f"      pseudo-labelling {len(zs)} section(s) with round {r + 1}'s network (confidence {CONFIDENCE}) ...")
    context = read_checkpoint(checkpoint).context
    with open_volume(raw_path) as raw, open_volume(labels_path) as labels:
        shape, chunks = tuple(raw.shape), (1,) + tuple(min(512, s) for s in raw.shape[1:])  # patches read little
        meta = VolumeMeta("zyx", tuple(c.voxel_size) if c.voxel_size else None)
        dtype = "uint64" if np.dtype(labels.dtype).itemsize > 4 else "uint32"
        lab_v = create_volume(labels_out, shape, dtype, chunks, meta=meta, overwrite=True)
        known_v = create_volume(known_out, shape, "uint8", chunks, meta=meta, overwrite=True)
        next_id, known_voxels, kept = 1, 0, []
        for z in c.sections:  # the real labels, known everywhere
            section = np.asarray(labels[z])
            lab_v[z] = section
            known_v[z] = np.ones(section.shape, np.uint8)
            next_id = max(next_id, int(section.max()) + 1)
        full = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
        for z in zs:
            prob = predict_sections([read_sections(raw, z, z + 1, full, context)], checkpoint, _channels(checkpoint), 1,
                            dict(device=c.device))[:, 0]
            section, known = pseudo_labels(prob, c.target, next_id, CONFIDENCE)
            next_id = max(next_id, int(section.max()) + 1)
            lab_v[z], known_v[z] = section, known.astype(np.uint8)
            known_voxels += int(known.sum())
            if known.any():  # a section where the network is sure of nothing teaches nothing
                kept.append(z)
        lab_v.close()
        known_v.close()  # a kill before the marker below: the next call writes both anew
    fraction = known_voxels / max(1, len(zs) * shape[1] * shape[2])
    write_text_atomic(marker, json.dumps({"round": r, "sections": zs, "kept": kept, "checkpoint": checkpoint,
                                          "confidence": CONFIDENCE, "known_fraction": round(fraction, 4)}))
    say(f"      {fraction:.0%} of their voxels confident enough to learn from ({len(kept)} section(s) with any)")
    return labels_out, known_out, kept


def _channels(checkpoint):
    from ..models.reader import read_checkpoint

    return len(read_checkpoint(checkpoint).activations)

"""A training plan from a :class:`~emseg.fit.fingerprint.Fingerprint`: a complete
:class:`~emseg.train.TrainConfig` and, for every choice, the reason.

The rules, in the order they are applied (each reason says which fired):

- **dimensionality**: 2D on sections when few sections are labelled or z is much coarser than y/x
  (ssTEM, 50×4×4 nm); dense neuron labels need 3D context (anisotropic 3D when z is coarser);
  isotropic voxels get 3D on a GPU or with a long budget, else 2D, which on a CPU gets many more
  steps into the budget;
- **network**: per-axis kernels and pooling from the voxel size (an axis is pooled only while its
  spacing is below twice the finest one, as nnU-Net plans it: :func:`emseg.models.anisotropic_plan`),
  the depth whose receptive field covers the typical object (90th percentile of the extents), the
  width and the patch from a per-step voxel budget that shrinks until enough steps fit the minutes;
- **target** from the kind of labels and how often objects touch; the loss, foreground
  oversampling, normalisation, augmentation that never mixes z with y/x on anisotropic voxels;
- **schedule**: the steps that fit the minutes at the measured (or estimated) seconds per step, a
  warm-up of 2% and the cosine decay ending with the last step.

Pure: nothing is read or timed here (:mod:`emseg.fit.timing` measures a step; :mod:`emseg.fit.run`
puts the two together), so the rules are unit-tested on fingerprints alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

__all__ = ["Plan", "plan_training", "with_steps", "receptive_field", "estimate_step_seconds", "MIN_STEPS"]

MIN_STEPS = 1000        # fewer steps than this in the budget: a smaller network and patch
_ANISO_2D = 2.5         # z this much coarser than y/x: 2D on sections (or anisotropic 3D for neurons)
_FEW_SECTIONS = 24      # fewer consecutive labelled sections: 2D (a 3D patch and its held-out part need depth)
_LONG_CPU = 120         # minutes from which a CPU plan trains isotropic data in 3D
_SPARSE = 0.25          # foreground below this share of voxels: oversample patches centred on objects
# seconds per voxel of one training step (forward + backward, batch norm, AdamW) of an 8-wide U-Net:
# measured on the 2-core CPU of this project for the shipped models (2D 8x256x256 in 0.39 s, 3D
# 2x32x96x96 in 0.45 s); a GPU about 50 times faster. Only a first guess: emseg.fit.timing measures.
_SECONDS_PER_VOXEL = {"cpu": 7.6e-7, "cuda": 1.5e-8}
_LADDER = ((8, 2**19), (8, 2**18), (4, 2**17), (4, 2**16), (4, 2**15))  # (features, voxels per step), CPU
_LADDER_GPU = ((32, 2**22), (16, 2**21), (16, 2**20), (8, 2**19), (8, 2**18))


@dataclass(frozen=True)
class Plan:
    """A planned training run: its config, the reason of each choice (field name → sentence), the
    fingerprint it came from and the estimated seconds per step and steps."""

    config: object
    reasons: dict
    fingerprint: object
    seconds_per_step: float
    measured: bool = False
    notes: tuple = field(default_factory=tuple)
    """Warnings for the user (e.g. unlabelled sections that count as background)."""


def receptive_field(kernel_sizes, pool_sizes) -> tuple:
    """Per-axis receptive field (voxels) of a U-Net, the usual estimate: two convolutions per level
    and in the bottleneck, the pooling windows between levels, two convolutions per level on the way
    up (the upsampling's own reach is left out: a transposed convolution or bilinear interpolation
    adds a few voxels).

    Examples
    --------
    >>> receptive_field([(3, 3)] * 5, [(2, 2)] * 4)
    (200, 200)
    """
    ndim = len(kernel_sizes[0])
    out = []
    for a in range(ndim):
        rf, jump = 1, 1
        for k, p in zip(kernel_sizes[:-1], pool_sizes):
            rf += 2 * (k[a] - 1) * jump + (p[a] - 1) * jump
            jump *= p[a]
        rf += 2 * (kernel_sizes[-1][a] - 1) * jump
        for k, p in zip(reversed(kernel_sizes[:-1]), reversed(pool_sizes)):
            jump //= p[a]
            rf += 2 * (k[a] - 1) * jump
        out.append(rf)
    return tuple(out)


def estimate_step_seconds(batch_size, patch_shape, features, device="cpu") -> float:
    """A first guess of one training step's seconds (see ``_SECONDS_PER_VOXEL``); width costs ~ features^1.5."""
    voxels = batch_size * math.prod(patch_shape)
    features = _first(features)
    return voxels * _SECONDS_PER_VOXEL["cuda" if device == "cuda" else "cpu"] * (features / 8) ** 1.5


def plan_training(fp, *, minutes=30.0, device="cpu", seconds_per_step=None, val_roi=None, slowdown=1.0,
                  init_task=None, **fixed) -> Plan:  # noqa: C901 - the rules in order, each a few lines
    """The :class:`Plan` for data with fingerprint ``fp`` and ``minutes`` of training on ``device``.

    Parameters
    ----------
    fp : Fingerprint
    minutes : float
        Training time; the schedule's steps are the ones that fit it.
    device : {"cpu", "cuda"}
    seconds_per_step : float, optional
        Measured on this machine for this plan (:func:`emseg.fit.timing.measure_step_seconds`); the
        network and patch are then kept and only the steps follow it. Without it, an estimate.
    val_roi : str, optional
        The labelled z range held out for validation and tuning ("z0:z1"); chosen when not given.
    slowdown : float
        This machine's measured step time over the estimate (:mod:`emseg.fit.timing`): the network
        is chosen as if every step took that much longer.
    init_task : tuple, optional
        The --init model's (task, task parameters): a membrane model keeps its output on neuron ids
        (:func:`emseg.fit.target_choice.choose_target`).
    **fixed
        TrainConfig fields to set as given: ``raw`` and ``labels`` (the paths it trains on; a plan
        without them only describes), ``seed``, ``out_dir``, ``init``, ``model``, ``amp``, ...

    Raises
    ------
    ValueError
        ``minutes`` not positive, or ``val_roi`` leaves no labelled section to train on.
    """
    from ..train import TrainConfig
    from .split import held_out_part, patches_fit, training_part_notes
    from .target_choice import choose_target

    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not 0 < minutes < math.inf:
        raise ValueError(f"--minutes must be a positive number of minutes; got {minutes!r}")
    device = "cuda" if device == "cuda" else "cpu"
    why, notes = {}, []
    vs = tuple(fp.voxel_size) if fp.voxel_size else (1.0, 1.0, 1.0)
    if not fp.voxel_size:
        notes.append("the files do not say the voxel size: it is taken as isotropic (pass --voxel-size)")
    given_model = fixed.pop("model", None)
    dims = _dimensionality(fp, minutes, device, why)
    if given_model is not None:  # the architecture of an --init model: its dimensionality too
        ndim = int(given_model.get("ndim", 3 if "kernel_sizes" in given_model and
                                   len(_first(given_model["kernel_sizes"])) == 3 else 2))
        if (ndim == 2) != (dims == "2d"):
            dims = "2d" if ndim == 2 else ("3d-aniso" if fp.anisotropy >= 1.5 else "3d")
            why["dims"] = f"{'2D on sections' if ndim == 2 else 'anisotropic 3D' if dims == '3d-aniso' else '3D'}: " \
                          f"as the --init model ({ndim}D)"
    dims = _context(fp, dims, fixed, why, given_model is not None)
    target, extra = choose_target(fp, dims, why, init_task)
    ladder = _LADDER_GPU if device == "cuda" else _LADDER
    for rung, (features, voxels) in enumerate(ladder):
        net = _network(fp, dims, vs, features, voxels, device)
        if given_model is not None:
            net = _with_model(net, given_model, dims, fixed.get("init"))
            features = int(_first(given_model.get("features", 8)))
        sps = seconds_per_step or slowdown * estimate_step_seconds(net["batch"], net["patch"], features, device)
        steps = int(60 * minutes / sps)
        if rung == 0:
            first_steps = steps
        if seconds_per_step is not None or steps >= MIN_STEPS:
            break
    if rung and given_model is None:
        why["model"] = (f"a smaller network than this data's first choice: {minutes:g} minutes hold only about "
                        f"{first_steps} steps of that one here (under {MIN_STEPS}); ") + net["why"]
    else:
        why["model"] = net["why"]
    why["patch_shape"] = net["why_patch"]
    why["batch_size"] = (f"{net['batch']} patches: {net['batch'] * math.prod(net['patch']) // 1024}k voxels per step "
                         f"(the budget here: about {voxels // 1024}k on the {device.upper()})")
    named = fixed.get("labels")
    named = f"labels {named if isinstance(named, str) else named[0]}" if named else "the labels"
    val_roi = held_out_part(fp, val_roi, net["patch"], dims, why, named)
    fg_share = fp.foreground_fraction
    oversample = 0.0 if target in ("boundary", "affinities") or fg_share >= _SPARSE else 0.33
    why["foreground_fraction"] = (
        f"{'dense labels' if target in ('boundary', 'affinities') else f'{fg_share:.0%} foreground'}: "
        + ("every random patch holds structure, no oversampling" if oversample == 0 else
           "a third of the patches centred on a foreground voxel (as nnU-Net oversamples), the rest uniform"))
    why["normalization"] = (f"robust percentiles: 1-99% of the raw intensities are {fp.intensity['p1']:g}-"
                            f"{fp.intensity['p99']:g}, fitted on the training part and stored in the checkpoint")
    augment = _augment(fp, dims, vs, why)
    steps = max(1, steps)
    warmup = min(100, max(1, steps // 50))
    why["steps"] = (f"{minutes:g} minutes at {sps:.3g} s per step ({'measured here' if seconds_per_step else 'estimated'}"
                    f"): the cosine decay ends with the budget")
    why["warmup_steps"] = "2% of the steps, at most 100"
    why["lr"] = "AdamW at 2e-3 with cosine decay: what trained every shipped model"
    why["loss"] = "BCE + Dice on the probability channels (the task regresses its distance channel with MSE)" \
        if target == "bcd" else "BCE + Dice: robust to the foreground/background imbalance"
    for name in ("raw", "labels"):
        if isinstance(fixed.get(name), str):
            fixed[name] = (fixed[name],)
    config = TrainConfig(**{**dict(
        val_roi=val_roi, val_fraction=0.0, target=target, patch_shape=net["patch"], batch_size=net["batch"],
        foreground_fraction=oversample, normalization="percentile", voxel_size=fp.voxel_size, augment=augment,
        model=net["model"], loss="bce_dice", lr=2e-3, steps=steps, warmup_steps=warmup, val_every=_every(steps),
        val_patches=8 if patches_fit(val_roi, net["patch"], dims, fp.ndim == 2) else 0, max_minutes=float(minutes), device=device),
        **extra, **fixed})
    why["amp"] = "mixed precision where the device computes it natively (bfloat16 CPUs, float16 GPUs), else float32"
    why["val_every"] = ("a checkpoint (and a validation on the held-out part) about every tenth of the run: a killed "
                        "fit resumes there")
    why["max_minutes"] = "the budget; also stops the run if this machine is slower than measured"
    if fixed.get("sections") is not None:
        why["sections"] = ("only these sections are labelled: every other voxel is unknown (no loss there, and "
                           "never read), and patches are drawn on the labelled ones")
    else:
        notes += training_part_notes(fp, target, val_roi)
    for name, text in (("freeze", "given: these parts of the --init model keep their weights"),
                       ("init_lr_scale", "given: the --init weights learn at this fraction of lr"),
                       ("adabn_batches", "given: BatchNorm statistics re-estimated on this data before training"),
                       ("semi", "given: a mean teacher also learns from unlabelled data (the rest of the training "
                                "part, or the unlabelled volume below)"),
                       ("unlabelled", "the mean teacher learns from these (--source: the volume the model is "
                                      "for, no labels there; --unlabelled: RAW whole and the volumes given)")):
        if name in fixed:
            why[name] = text
    return Plan(config, why, fp, float(sps), seconds_per_step is not None, tuple(notes))


def _context(fp, dims, fixed, why, init_model=False):
    """The dimensionality left by a given ``context`` (``--context`` or the --init model's): 2.5D is 2D."""
    k = fixed.get("context")
    if not k:
        fixed.pop("context", None)
        if dims == "2d" and fp.ndim == 3:  # measured: benchmarks/fit.md, "2.5D"
            why["dims"] += ("; not 2.5D: --context 1 scored no better in the same minutes on Lucchi, ISBI 2012 "
                            "and CDeep3M and predicts slower (give --context K to choose it)")
        return dims
    if fp.ndim == 2 or (dims != "2d" and init_model):  # a 3D --init model keeps its dimensionality
        where = "the raw is an image" if fp.ndim == 2 else f"the plan is {why['dims']}"
        raise ValueError(f"--context {k} (or the --init model's): neighbouring sections as input channels need a 2D "
                         f"network on a volume, but {where}")
    if dims != "2d":
        why["dims"] = f"2D on sections: --context {k} asks for a 2.5D network (the planner's choice: {why['dims']})"
    why["context"] = (f"the {k} section(s) above and below as input channels (2.5D, {2 * k + 1} channels), the "
                      "labels of the middle one (given, or the --init model's)")
    return "2d"


def _dimensionality(fp, minutes, device, why):
    """"2d", "3d-aniso" or "3d", and the reason."""
    a, nz = fp.anisotropy, max(b - a0 for a0, b in fp.labelled_sections)
    neurons = fp.labels_kind == "neurons"
    if fp.ndim == 2:
        why["dims"] = "2D: the raw is an image"
        return "2d"
    if nz < _FEW_SECTIONS:
        why["dims"] = f"2D on sections: only {nz} consecutive labelled section(s), too few for 3D context"
        return "2d"
    unknown = "" if fp.voxel_size else " (the voxel size is unknown and taken as isotropic: pass --voxel-size)"
    if neurons:
        if a >= 1.5:
            why["dims"] = (f"anisotropic 3D: dense neuron labels need context across sections, and z is {a:.1f}x "
                           "coarser than y/x, so z is pooled only once in-plane has caught up")
            return "3d-aniso"
        why["dims"] = "3D: dense neuron labels need context across sections; the voxels are isotropic" + unknown
        return "3d"
    if a >= _ANISO_2D:
        why["dims"] = (f"2D on sections: z is {a:.1f}x coarser than y/x ({_vs_text(fp.voxel_size)} nm), objects "
                       "change between sections, so 3D context adds little and costs steps")
        return "2d"
    if a >= 1.5:
        why["dims"] = f"anisotropic 3D: z is {a:.1f}x coarser than y/x ({_vs_text(fp.voxel_size)} nm)"
        return "3d-aniso"
    if device == "cuda" or minutes >= _LONG_CPU:
        why["dims"] = ("3D: isotropic voxels" + (" and a GPU" if device == "cuda" else f" and {minutes:g} minutes") +
                       unknown)
        return "3d"
    why["dims"] = (f"2D on sections although the voxels are isotropic: on a CPU a 2D network gets several times "
                   f"more training steps into {minutes:g} minutes than a 3D one (3D from --device cuda or "
                   f"--minutes {_LONG_CPU})" + unknown)
    return "2d"


def _round_to(n, d):
    return max(d, int(n) // d * d)


def _network(fp, dims, vs, features, voxels, device):
    """The model arguments, patch, batch and their reasons for one rung of the ladder."""
    from ..models import anisotropic_plan

    ndim = 2 if dims == "2d" else 3
    spacing = vs[1:] if ndim == 2 else vs
    size = fp.shape[1:] if ndim == 2 else fp.shape
    nz = max(b - a for a, b in fp.labelled_sections)
    want = max(fp.object_extent_p90[1:])  # in-plane voxels the field of view should cover
    for depth in range(2, 6):
        kernels, pools = anisotropic_plan(spacing, depth)
        rf = receptive_field(kernels, pools)
        sees_z = ndim == 2 or rf[0] >= 3  # an anisotropic 3D network must see across sections
        if (min(rf[-2:]) >= want and sees_z) or depth == 5:
            break
    divisor = tuple(math.prod(p[a] for p in pools) for a in range(ndim))
    cap = (512 if device == "cuda" else 256) if ndim == 2 else (160 if device == "cuda" else 128)
    side = min(cap, max(192 if ndim == 2 else 64, int(1.5 * want)))
    while True:  # the in-plane side; z follows the spacing (an isotropic field of view in nm)
        yx = [min(_round_to(side, divisor[i - 2]), _round_to(size[i - 2], divisor[i - 2])) for i in range(2)]
        patch = yx if ndim == 2 else [min(_round_to(max(divisor[0] * 2, side * vs[1] / vs[0]), divisor[0]),
                                          _round_to(0.4 * nz, divisor[0]))] + yx
        batch = voxels // math.prod(patch)
        if batch >= 2 or side <= 2 * max(divisor[-2:]):
            break
        side = int(side * 0.8)
    while depth > 1 and (min(p // d for p, d in zip(patch, divisor)) < 2 or  # a tiny patch: a shallower net
                         (ndim == 3 and divisor[0] > 0.4 * nz)):         # z pooled deeper than the stack allows
        depth -= 1
        kernels, pools = anisotropic_plan(spacing, depth)
        divisor = tuple(math.prod(p[a] for p in pools) for a in range(ndim))
        patch = [_round_to(p, d) for p, d in zip(patch, divisor)]
    if ndim == 3:
        patch[0] = min(patch[0], max(divisor[0], int(0.4 * nz) // divisor[0] * divisor[0]))
    rf = receptive_field(kernels, pools)
    batch = max(1, min(32, voxels // math.prod(patch)))
    model = {"depth": depth, "features": features, "upsample": "bilinear" if ndim == 2 else "transposed",
             "norm": "batch"}
    text = (f"depth {depth}: a receptive field of {'x'.join(map(str, rf))} voxels covers the typical object "
            f"(90% of objects span at most {want} voxels in-plane)" if min(rf[-2:]) >= want else
            f"depth {depth}: a receptive field of {'x'.join(map(str, rf))} voxels (objects span up to {want} "
            "voxels in-plane; deeper costs more than it sees)")
    if ndim == 3:
        model["kernel_sizes"] = [list(k) for k in kernels]
        model["pool_sizes"] = [list(p) for p in pools]
        first_z = next((i + 1 for i, p in enumerate(pools) if p[0] > 1), None)
        text += ("; z pooled only from stage " + str(first_z) if first_z and first_z > 1 else
                 "; every axis pooled from the first stage" if first_z else "; z never pooled") + \
                f": voxel size {_vs_text(vs)} nm"
    text += f"; {features} features at the first level, bilinear upsampling" if ndim == 2 else \
        f"; {features} features at the first level"
    limits = []
    if any(p < _round_to(side, d) for p, d in zip(patch[-2:], divisor[-2:])):
        limits.append(f"the image's {size[-2]}x{size[-1]} pixels")
    elif side == cap and side < 1.5 * want:
        limits.append(f"{cap} on the {device.upper()}")
    elif side < 1.5 * want:
        limits.append("the per-step voxel budget")
    if ndim == 3 and patch[0] < _round_to(max(divisor[0] * 2, side * vs[1] / vs[0]), divisor[0]):
        limits.append(f"z at 40% of the {nz} labelled sections")
    aim = f"1.5x the typical object's extent ({want} voxels in-plane)"
    why_patch = (f"{'x'.join(map(str, patch))}: " + (f"aimed at {aim}, limited by {' and '.join(limits)}" if limits
                                                     else f"at least {aim}") +
                 f"; a multiple of the network's divisor {'x'.join(map(str, divisor))}")
    return {"model": model, "patch": tuple(patch), "batch": batch, "why": text, "why_patch": why_patch}


def _first(v):
    return v[0] if isinstance(v, (list, tuple)) else v


def _with_model(net, model, dims, init):
    """``net`` with the architecture ``model`` (an --init model's arguments): the patch rounded to its divisor."""
    from ..models import UNetConfig

    ndim = 2 if dims == "2d" else 3
    model = {k: v for k, v in model.items() if k != "ndim"}
    pools = UNetConfig(ndim=ndim, **model).levels().pool_sizes
    divisor = tuple(math.prod(p[a] for p in pools) for a in range(ndim))
    patch = tuple(max(d, p // d * d) for p, d in zip(net["patch"], divisor))
    return {**net, "model": model, "patch": patch,
            "why": f"the architecture of --init {init}, so that its weights load",
            "why_patch": f"{'x'.join(map(str, patch))}: the planned patch, a multiple of the --init model's divisor "
                         f"{'x'.join(map(str, divisor))}"}


def _augment(fp, dims, vs, why):
    a = fp.anisotropy
    if dims == "2d":
        why["augment"] = "flips and 90° rotations in-plane (a 2D network), elastic and intensity transforms"
        return {"flip": True, "rotate90": "yx"}
    if a >= 1.5:
        why["augment"] = (f"flips, 90° rotations in-plane only (z is {a:.1f}x coarser: no rotation mixes z with "
                          "y/x), missing and misaligned sections as in serial sectioning")
        return {"flip": True, "rotate90": "yx", "missing_section": 0.1, "misalignment": 0.1}
    if not fp.voxel_size:
        why["augment"] = "flips and 90° rotations in-plane only: the voxel size is unknown, z may be coarser"
        return {"flip": True, "rotate90": "yx"}
    if len(set(fp.voxel_size)) == 1:
        why["augment"] = "flips and 90° rotations of every axis (isotropic voxels)"
        return {"flip": True, "rotate90": "zyx"}
    why["augment"] = (f"flips and 90° rotations among the axes of equal spacing ({_vs_text(fp.voxel_size)} nm: "
                      "nearly, not exactly, isotropic)")
    return {"flip": True, "rotate90": True}


def _vs_text(vs):
    return "x".join(f"{v:g}" for v in vs) if vs else "unknown"


def _every(steps):
    return max(20, steps // 10)


def with_steps(plan: Plan, seconds_per_step: float, minutes: float) -> Plan:
    """``plan`` with its steps from a measured ``seconds_per_step`` (the network and patch kept)."""
    steps = max(1, int(60 * minutes / seconds_per_step))
    config = replace(plan.config, steps=steps, warmup_steps=min(100, max(1, steps // 50)), val_every=_every(steps))
    why = dict(plan.reasons, steps=f"{minutes:g} minutes at {seconds_per_step:.3g} s per step (measured here): "
                                   "the cosine decay ends with the budget")
    return replace(plan, config=config, reasons=why, seconds_per_step=float(seconds_per_step), measured=True)

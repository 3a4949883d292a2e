"""A plan as YAML: the fingerprint as a header, then every TrainConfig field the plan sets with a comment
that says why. ``emseg train plan.yaml`` (and :func:`emseg.train.load_config`) read it back as is."""

from __future__ import annotations

import yaml

__all__ = ["plan_yaml", "write_plan"]

# config fields in the order they are written, and the reason (Plan.reasons key) each carries
_FIELDS = (("raw", None), ("labels", None), ("voxel_size", "voxel_size"), ("val_roi", "val_roi"),
           ("sections", "sections"), ("val_fraction", None), ("target", "target"), ("target_params", None),
           ("offsets", None), ("model", "model"),
           ("patch_shape", "patch_shape"), ("context", "context"), ("batch_size", "batch_size"),
           ("foreground_fraction", "foreground_fraction"), ("normalization", "normalization"),
           ("augment", "augment"), ("loss", "loss"), ("lr", "lr"), ("steps", "steps"),
           ("warmup_steps", "warmup_steps"), ("max_minutes", "max_minutes"), ("val_every", "val_every"),
           ("val_patches", None), ("init", "init"), ("freeze", "freeze"),
           ("init_lr_scale", "init_lr_scale"), ("adabn_batches", "adabn_batches"),
           ("semi", "semi"), ("unlabelled", "unlabelled"), ("seed", None), ("device", None), ("amp", "amp"),
           ("out_dir", None))


_ONLY_SET = {"sections": None, "freeze": "none", "init_lr_scale": 1.0, "adabn_batches": 0, "semi": "none", "context": 0,
             "unlabelled": [], "target_params": {}}
"""Fields written only when the plan sets them (few labels, fine-tuning, 2.5D)."""


def _flow(value):
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def plan_yaml(plan) -> str:
    """The YAML text of ``plan`` (:class:`~emseg.fit.planner.Plan`)."""
    fp, c = plan.fingerprint, plan.config.as_dict()
    vs = "x".join(f"{v:g}" for v in fp.voxel_size) + " nm" if fp.voxel_size else "unknown (taken as isotropic)"
    diam = ", ".join(f"{v:g}" for v in fp.object_diameter_nm)
    unit = "nm" if fp.voxel_size else "voxels"
    lines = ["# emseg training plan, made from the data by `emseg plan` (edit freely: `emseg train` reads it).",
             f"# raw {(c['raw'] or ['(none)'])[0]}: shape {'x'.join(map(str, fp.shape))} (zyx), {fp.dtype}, voxel size {vs}, "
             f"anisotropy {fp.anisotropy:.2f}",
             f"# intensities: 0.5/1/50/99/99.5% = {', '.join(f'{v:g}' for v in fp.intensity.values())}",
             f"# labels {(c['labels'] or ['(none)'])[0]}: {fp.labels_kind} ({fp.kind_reason})",
             f"# foreground {fp.foreground_fraction:.1%} of the labelled voxels; {fp.objects} objects in the measured "
             f"crop, diameters 10/50/90% = {diam} {unit}, median extent {'x'.join(map(str, fp.object_extent))} "
             f"voxels (zyx)" + ("" if fp.touching is None else f", {fp.touching:.0%} touching another"),
             f"# labelled sections: {', '.join(f'{a}-{b - 1}' for a, b in fp.labelled_sections)} of {fp.shape[0]}",
             f"# dimensionality: {plan.reasons.get('dims', '')}",
             f"# one step: {plan.seconds_per_step:.3g} s ({'measured on this machine' if plan.measured else 'estimated'})"]
    lines += [f"# NOTE: {n}" for n in plan.notes]
    for name, reason in _FIELDS:
        value = c[name]
        if name == "offsets" and c["target"] != "affinities":
            continue
        if name in ("init", "voxel_size") and value is None:
            continue
        if name in _ONLY_SET and value == _ONLY_SET[name]:
            continue
        if name in ("raw", "labels"):
            value = list(value)
        line = f"{name}: {_flow(value)}"
        why = plan.reasons.get(reason) if reason else None
        lines.append(f"{line}  # {why}" if why else line)
    return "\n".join(lines) + "\n"


def write_plan(plan, path) -> str:
    """Write :func:`plan_yaml` to ``path`` atomically; returns ``path``."""
    from ..io.atomic import write_text_atomic

    write_text_atomic(path, plan_yaml(plan))
    return path

"""Which labelled part a fit holds out for validation and tuning, and what the trainer then learns from.

The trainer's region is one z range (:func:`emseg.train.patches.split_region`): the sections before
the held-out part, or after it when it starts at 0. So the held-out part is taken at the end of the
last labelled range deep enough for it, and unlabelled sections left inside the training part are
said (they count as background), or refused where they would teach the wrong thing.
"""

from __future__ import annotations

__all__ = ["held_out_part", "training_part", "training_part_notes", "check_val_option", "labelled_only", "patches_fit"]


def check_val_option(val):
    """Refuse a ``--val`` that is not "z0:z1" with 0 <= z0 < z1 (a ConfigError naming ``--val``)."""
    from ..config import ConfigError
    from ..train.config import check_val_roi

    try:
        check_val_roi(val)
    except ConfigError as err:
        raise ConfigError("val", str(err).replace("val_roi", "--val")) from None


def labelled_only(labels, sections, name="labels"):
    """The labels as the fingerprint and the tuning see them: with ``sections`` (``--sections``), only
    those, the others read as 0 and never read (:class:`emseg.train.sparse.SectionsView`).

    Raises
    ------
    ValueError
        ``sections`` on a 2D image, outside the volume, or on sections that hold no labels (named).
    """
    if sections is None:
        return labels
    import numpy as np

    from ..train.sparse import SectionsView

    if len(labels.shape) != 3:
        raise ValueError(f"--sections applies to a volume (zyx); labels {name} have shape {tuple(labels.shape)}")
    bad = [z for z in sections if not 0 <= z < labels.shape[0]]
    if bad:
        raise ValueError(f"--sections {', '.join(map(str, bad))}: outside labels {name} ({labels.shape[0]} "
                         f"sections, z 0-{labels.shape[0] - 1})")
    view = SectionsView(labels, sections)
    empty = [z for z in sections if not np.any(view[z])]
    if empty:
        raise ValueError(f"--sections {', '.join(map(str, empty))}: labels {name} hold nothing there (all 0); list "
                         "only annotated sections")
    return view


FEW_SECTIONS = 3
"""A volume with fewer labelled sections holds none out: training needs them all (with 2 labelled
sections, holding one out would halve the labels); the post-processing is then tuned on them."""


def held_out_part(fp, val_roi, patch, dims, why, labels="the labels") -> str | None:
    """The part held out for validation and tuning, "a:b": sections (z) of a volume, rows (y) of an image.

    Given, it is checked against the labelled sections; chosen, it is the last ~15% of the last
    labelled z range deep enough for it (or of the image's rows), so that training keeps every
    labelled section before it. None: a volume with fewer than :data:`FEW_SECTIONS` labelled
    sections, which holds nothing out.
    """
    image = fp.ndim == 2
    axis, n_axis = ("rows", fp.shape[1]) if image else ("sections", fp.shape[0])
    if val_roi is not None:
        z0, z1 = (int(v) for v in str(val_roi).split(":"))
        if not 0 <= z0 < z1 <= n_axis:
            raise ValueError(f"--val {val_roi} is outside the {'image' if image else 'volume'}'s {n_axis} {axis} "
                             f"(0:{n_axis})")
        if not image and not any(a < z1 and z0 < b for a, b in fp.labelled_sections):
            have = ", ".join(f"{a}:{b}" for a, b in fp.labelled_sections)
            raise ValueError(f"--val {val_roi}: {labels} hold no foreground in sections {z0}-{z1 - 1}, so nothing "
                             f"can be tuned there; choose a labelled z range (labelled: {have})")
        why["val_roi"] = f"given: {axis} {z0}-{z1 - 1} are held out for validation and tuning"
        return f"{z0}:{z1}"
    if image:
        k = max(1, int(round(0.15 * n_axis)))
        if n_axis - k < patch[0]:
            raise ValueError(f"the image has {n_axis} rows: too few to hold out {k} for tuning and train on "
                             f"{patch[0]}-row patches")
        why["val_roi"] = (f"rows {n_axis - k}-{n_axis - 1} (the last 15%) are held out: the post-processing is tuned "
                          "there, on data training never saw")
        return f"{n_axis - k}:{n_axis}"
    if fp.n_labelled < FEW_SECTIONS:
        why["val_roi"] = (f"nothing held out: only {fp.n_labelled} labelled section(s), and training needs them all; "
                          "the post-processing is tuned on them (optimistic: the network saw them)")
        return None
    train_depth = patch[0] if dims != "2d" else 1
    for a, b in reversed(fp.labelled_sections):
        n = b - a
        k = max(min(patch[0], 8) if dims != "2d" else 1, int(round(0.15 * n)))
        before = sum(max(0, min(bb, b - k) - aa) for aa, bb in fp.labelled_sections if aa < b - k)
        if before >= train_depth:  # the training part (everything before) keeps enough labelled sections
            why["val_roi"] = (f"sections {b - k}-{b - 1} (the last {k} of the labelled {a}-{b - 1}) are held out: "
                              "the post-processing is tuned there, on data training never saw")
            return f"{b - k}:{b}"
    have = ", ".join(f"{a}:{b}" for a, b in fp.labelled_sections)
    raise ValueError(f"the labels hold too few labelled sections ({have}) to hold out a part for tuning and train on "
                     "the rest: label at least two sections")


def training_part(fp, val_roi) -> tuple:
    """The (z0, z1) range the trainer learns from: before the held-out part, or after it when it starts at 0
    (everything when nothing is held out)."""
    n = fp.shape[1] if fp.ndim == 2 else fp.shape[0]
    if val_roi is None:
        return 0, n
    z0, z1 = (int(v) for v in val_roi.split(":"))
    return (0, z0) if z0 > 0 else (z1, n)


def training_part_notes(fp, target, val_roi) -> list:
    """Notes on unlabelled sections inside the training part; refused where they would teach the wrong thing."""
    if fp.ndim == 2:
        return []
    t0, t1 = training_part(fp, val_roi)
    labelled = sum(max(0, min(b, t1) - max(a, t0)) for a, b in fp.labelled_sections)
    unlabelled = (t1 - t0) - labelled
    if unlabelled <= 0 or fp.labels_kind == "neurons":
        return []
    if target == "boundary":
        raise ValueError(f"{unlabelled} of the {t1 - t0} sections the network would train on (z {t0}-{t1 - 1}) hold "
                         "no labels; with membrane labels (0 = membrane) they would teach 'all membrane': give a "
                         "volume of the labelled sections only")
    return [f"{unlabelled} of the {t1 - t0} training sections (z {t0}-{t1 - 1}) hold no labels and count as "
            "background; crop the volume to the labelled sections if they are not background"]


def patches_fit(val_roi, patch, dims, image=False):
    """Whether the validation part is deep enough for validation patches of the training patch shape."""
    if val_roi is None:
        return False
    z0, z1 = (int(v) for v in val_roi.split(":"))
    return (dims == "2d" and not image) or z1 - z0 >= patch[0]

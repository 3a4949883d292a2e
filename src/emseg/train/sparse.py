"""Sparse and partial labels: which voxels of a labels volume are known.

An expert labels a few sections, or paints strokes and a few objects per section; every other
voxel is *unknown*, not background. A training config says so in three ways, which combine:

- ``sections``: the z indices of the labelled sections (every other section is unknown, and its
  labels are never read by the trainer);
- ``label_mask``: a volume per labels volume, nonzero where the labels are known (strokes);
- ``ignore_label`` with ``background_label``: a value that means unknown and a painted value that
  means background (napari painting: ``ignore_label: 0, background_label: 1``, objects 2, 3, ...).

Before augmentation, a patch's unknown voxels get the value :data:`UNKNOWN`; the targets
(:mod:`emseg.train.targets`) give them no loss, nor to the contours and affinities that touch them.
Patches are drawn around known voxels (:func:`sample_known`), so the loss always has voxels to use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["UNKNOWN", "Known", "is_sparse", "known_labels", "scan_known", "SectionsView"]

UNKNOWN = -1
"""The value of an unknown voxel in a training patch's labels (its ``ignore_label``)."""


@dataclass(frozen=True, eq=False)
class Known:
    """Which voxels of one labels volume are known, and what its painted values mean."""

    sections: tuple | None = None
    """The labelled z indices (sorted), or None: every section."""
    mask: object = None
    """A volume of the labels' shape, nonzero where they are known (or its path, before it is opened), or None."""
    ignore_label: int | None = None
    background_label: int | None = None

    @property
    def sections_set(self):
        return None if self.sections is None else frozenset(self.sections)


def is_sparse(config) -> bool:
    """Whether a training config has unknown voxels beyond ``ignore_label`` alone (sections, a mask, painting)."""
    return config.sections is not None or bool(config.label_mask) or config.background_label is not None


def known_labels(labels, roi, known: Known) -> np.ndarray:
    """The labels of ``roi`` (read from ``labels``) as int64, with :data:`UNKNOWN` where they are not known.

    Sections outside ``known.sections`` are not read at all: their voxels are UNKNOWN.

    Examples
    --------
    >>> lab = np.array([[[1, 2]], [[3, 4]], [[5, 6]]])
    >>> known_labels(lab, (slice(0, 3), slice(0, 1), slice(0, 2)), Known(sections=(1,)))[:, 0].tolist()
    [[-1, -1], [3, 4], [-1, -1]]
    >>> known_labels(np.array([[0, 1, 2]]), (slice(0, 1), slice(0, 3)), Known(ignore_label=0, background_label=1))
    array([[-1,  0,  2]])
    """
    shape = tuple(s.stop - s.start for s in roi)
    out = np.full(shape, UNKNOWN, np.int64)
    zs = range(roi[0].start, roi[0].stop)
    keep = [i for i, z in enumerate(zs) if known.sections is None or z in known.sections_set]
    if not keep:
        return out
    if len(keep) == len(zs):
        lab = np.asarray(labels[roi])
        where = (slice(None),)
    else:  # only the labelled sections are read
        lab = np.stack([np.asarray(labels[(slice(zs[i], zs[i] + 1),) + tuple(roi[1:])])[0] for i in keep])
        where = (np.asarray(keep),)
    unknown = np.zeros(lab.shape, bool)
    if known.mask is not None:
        m = np.asarray(known.mask[roi]) if len(keep) == len(zs) else np.stack(
            [np.asarray(known.mask[(slice(zs[i], zs[i] + 1),) + tuple(roi[1:])])[0] for i in keep])
        unknown |= m == 0
    if known.ignore_label is not None:
        unknown |= lab == known.ignore_label
    part = lab.astype(np.int64)
    if known.background_label is not None:
        part[lab == known.background_label] = 0
    part[unknown] = UNKNOWN
    out[where] = part
    return out


def scan_known(labels, roi, known: Known, max_sample, rng, slab_voxels=2**24):
    """One pass over the known voxels of ``roi``: uniform samples of the coordinates of foreground
    and of known voxels (at most ``max_sample`` each, bottom-k in bounded memory), the label values
    seen (at most 3 are kept: enough to tell a 0/1 mask from ids), and the labelled sections that
    hold no label at all.

    Returns
    -------
    foreground, known_coords : (n, ndim) int64 arrays
        ``known_coords`` is None when every voxel of ``roi`` is known.
    values : set of int
    empty_sections : list of int
    """
    z0, z1 = roi[0].start, roi[0].stop
    zs = [z for z in range(z0, z1) if known.sections is None or z in known.sections_set]
    per = max(1, int(np.prod([s.stop - s.start for s in roi[1:]])))
    slab = max(1, slab_voxels // per)
    offset = np.array([0] + [s.start for s in roi[1:]])
    samples = {"fg": _BottomK(max_sample, len(roi)), "known": _BottomK(max_sample, len(roi))}
    values, empty = set(), []
    everything = known.mask is None and known.ignore_label is None and known.sections is None
    for i in range(0, len(zs), slab):
        group = zs[i:i + slab]
        for a, b in _runs(group):  # consecutive sections read together
            sub = (slice(a, b),) + tuple(roi[1:])
            lab = known_labels(labels, sub, known)
            base = offset + np.array([a] + [0] * (len(roi) - 1))
            samples["fg"].add(np.argwhere(lab > 0) + base, rng)
            if not everything:
                samples["known"].add(np.argwhere(lab != UNKNOWN) + base, rng)
            if len(values) < 3:
                import fastremap

                values.update(int(v) for v in fastremap.unique(lab[lab != UNKNOWN]))
            if known.sections is not None:  # painted (a mask, a background value): annotated if anything is known
                painted = known.mask is not None or known.background_label is not None
                empty += [a + k for k in range(b - a) if not ((lab[k] != UNKNOWN) if painted else (lab[k] > 0)).any()]
    return samples["fg"].coords, None if everything else samples["known"].coords, values, empty


def _runs(zs):
    """Consecutive runs of sorted ints as (start, stop) pairs."""
    runs = []
    for z in zs:
        if runs and runs[-1][1] == z:
            runs[-1][1] = z + 1
        else:
            runs.append([z, z + 1])
    return [tuple(r) for r in runs]


class _BottomK:
    """A uniform sample of at most ``k`` rows: each row gets a random key, the smallest keys are kept."""

    def __init__(self, k, ndim):
        self.k, self.coords, self.keys = k, np.zeros((0, ndim), np.int64), np.zeros(0)

    def add(self, rows, rng):
        self.coords = np.concatenate([self.coords, rows])
        self.keys = np.concatenate([self.keys, rng.random(len(rows))])
        if len(self.keys) > self.k:
            keep = np.argpartition(self.keys, self.k)[:self.k]
            self.coords, self.keys = self.coords[keep], self.keys[keep]


class SectionsView:
    """A labels volume seen with every section but ``sections`` all 0 (and never read): what the fit's
    fingerprint and tuning look at when only those sections are labelled.

    Examples
    --------
    >>> view = SectionsView(np.arange(12).reshape(3, 2, 2), [1])
    >>> view[:, 0].tolist()
    [[0, 0], [4, 5], [0, 0]]
    """

    def __init__(self, labels, sections):
        self.labels, self.sections = labels, frozenset(int(z) for z in sections)
        self.shape, self.dtype = tuple(labels.shape), labels.dtype
        self.chunks = getattr(labels, "chunks", None)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (len(self.shape) - len(key) + 1) + key[1:]
        key = key + (slice(None),) * (len(self.shape) - len(key))
        if isinstance(key[0], (int, np.integer)):
            z = int(key[0]) % self.shape[0]
            part = np.asarray(self.labels[key])
            return part if z in self.sections else np.zeros_like(part)
        zs = range(*key[0].indices(self.shape[0]))
        rest = np.broadcast_to(np.zeros((), np.uint8), self.shape[1:])[key[1:]].shape  # no read
        out = np.zeros((len(zs),) + rest, self.dtype)
        for i, z in enumerate(zs):
            if z in self.sections:
                out[i] = np.asarray(self.labels[(slice(z, z + 1),) + key[1:]])[0]
        return out

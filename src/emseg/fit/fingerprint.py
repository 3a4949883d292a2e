"""A data fingerprint: what a raw/labels pair holds, measured on bounded reads of lazy volumes.

The planner (:mod:`emseg.fit.planner`) derives every training choice from it, and nothing else: the
shape, voxel size and anisotropy; intensity percentiles; the kind of labels (a binary mask,
instances of separate objects, dense neuron ids, ISBI-style membrane labels); the foreground
fraction; object sizes in nm and how often objects touch; and which sections hold labels.

Bounded memory: intensities come from the boxes :mod:`emseg.sampling` places (at most a few
million voxels); which sections are labelled is read in z-slabs of at most ``SLAB`` voxels (every
section is read, so a labelled sub-stack of a large volume is never missed); object statistics are
measured on one crop of at most ``MAX_CROP`` voxels inside the labelled part, so objects cut by
the crop's faces count with their visible part.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Fingerprint", "fingerprint", "LABEL_KINDS"]

LABEL_KINDS = ("mask", "instances", "neurons", "membranes")
SLAB = 2**24       # voxels of labels read at a time to find the labelled sections
MAX_CROP = 2**27   # voxels of the crop the object statistics are measured on
_THIN = 0.5        # a sparse mask whose foreground is mostly next to background: membranes drawn as 1
_CELLS = 10        # a dense mask cut into at least this many pieces per section: cells between membranes


@dataclass(frozen=True)
class Fingerprint:
    """What :func:`fingerprint` measured; plain values, so a plan can print and store it."""

    shape: tuple
    """zyx (a 2D image is one section: ``(1, y, x)``)."""
    voxel_size: tuple | None
    """nm per axis (zyx); None when the files do not say and none was given."""
    dtype: str
    intensity: dict
    """Percentiles of the raw intensities: ``p0.5``, ``p1``, ``p50``, ``p99``, ``p99.5``."""
    labels_kind: str
    """One of :data:`LABEL_KINDS`."""
    kind_reason: str
    foreground_fraction: float
    """Nonzero labels among the voxels of the labelled sections (for membranes: the membrane share)."""
    objects: int
    """Objects in the measured crop (components of a mask, ids of instance labels)."""
    object_extent: tuple
    """Median bounding-box extent of the objects per axis, in voxels (zyx)."""
    object_extent_p90: tuple
    """90th percentile of the extents per axis, in voxels (zyx)."""
    object_diameter_nm: tuple
    """10th, 50th and 90th percentile of the objects' equivalent-sphere diameters, in nm (in voxel
    units when the voxel size is unknown)."""
    touching: float | None
    """Fraction of objects that touch another object (a face neighbour with another id); None for a
    mask, whose touching objects cannot be told apart."""
    labelled_sections: tuple
    """The z ranges ``(z0, z1)`` whose sections hold any nonzero label."""
    crop: tuple
    """The region the object statistics were measured on, as ``(start, stop)`` per axis."""
    ndim: int = 3
    """The raw's own dimensions: 2 for an image (seen here as one section), else 3."""

    @property
    def anisotropy(self) -> float:
        """z spacing over the finest in-plane spacing (1.0 when unknown)."""
        if not self.voxel_size:
            return 1.0
        return float(self.voxel_size[0]) / min(float(v) for v in self.voxel_size[1:])

    @property
    def n_labelled(self) -> int:
        return sum(b - a for a, b in self.labelled_sections)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["anisotropy"] = round(self.anisotropy, 3)
        return d


def fingerprint(raw, labels, *, voxel_size=None, raw_name="raw", labels_name="labels") -> Fingerprint:
    """The :class:`Fingerprint` of ``raw`` and ``labels`` (arrays or lazy volumes of the same shape).

    Parameters
    ----------
    raw, labels : array-like
        zyx or yx; anything with ``shape``, ``dtype`` and ``__getitem__``.
    voxel_size : sequence of float, optional
        nm per axis; taken from ``raw.voxel_size`` (an emseg volume) when not given.
    raw_name, labels_name : str
        What error messages call the two inputs (file names).

    Raises
    ------
    ValueError
        The shapes differ (both are named), or the labels hold no foreground.
    """
    if tuple(raw.shape) != tuple(labels.shape):
        raise ValueError(f"labels {labels_name} have shape {tuple(labels.shape)} but raw {raw_name} has "
                         f"{tuple(raw.shape)}; they must match voxel for voxel")
    if len(raw.shape) not in (2, 3):
        raise ValueError(f"raw {raw_name} has shape {tuple(raw.shape)}; expected a 2D image or a 3D volume (zyx)")
    ndim = len(raw.shape)
    vs = voxel_size if voxel_size is not None else getattr(raw, "voxel_size", None)
    if voxel_size is not None and len(tuple(voxel_size)) != len(raw.shape):
        raise ValueError(f"--voxel-size {','.join(f'{v:g}' for v in voxel_size)}: {len(tuple(voxel_size))} "
                         f"numbers for the {len(raw.shape)}D raw {raw_name}; give one per axis (zyx)")
    vs = _voxel_size_3d(vs, raw_name)
    raw, labels = _as_3d(raw), _as_3d(labels)
    sections, fg_fraction = _labelled_sections(labels)
    if not sections:
        raise ValueError(f"labels {labels_name} hold no foreground: every voxel is 0; check the file and its key")
    crop = _crop(labels.shape, sections)
    lab = np.asarray(labels[tuple(slice(a, b) for a, b in crop)])
    zs = [z for a, b in sections for z in range(a, b)]
    kind, reason = _kind(lab, labels if len(zs) == labels.shape[0] else _Sections(labels, zs), labels_name)
    if kind == "membranes":
        fg_fraction = _membrane_share(lab)
    ids, touching = _objects(lab, kind)
    extent, p90, diam = _object_sizes(ids, vs)
    qs = (0.5, 1.0, 50.0, 99.0, 99.5)
    pct = {f"p{q:g}": round(float(v), 3) for q, v in zip(qs, np.percentile(_intensity_sample(raw), qs))}
    return Fingerprint(tuple(int(s) for s in raw.shape), vs, str(np.dtype(raw.dtype)),
                       {k: pct[k] for k in ("p0.5", "p1", "p50", "p99", "p99.5")}, kind, reason,
                       round(fg_fraction, 4), int(ids.max() if ids.size else 0), extent, p90, diam,
                       None if touching is None else round(touching, 4), tuple(sections), crop, ndim)


class _Lazy3d:
    """A 2D volume seen as one section (``(1, y, x)``), read lazily."""

    def __init__(self, vol):
        self.vol, self.shape, self.dtype = vol, (1,) + tuple(vol.shape), vol.dtype
        self.chunks = None

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if not key or key[0] is Ellipsis:
            return np.asarray(self.vol[...])[None]
        data = np.asarray(self.vol[key[1:] if len(key) > 1 else ...])
        return data if isinstance(key[0], (int, np.integer)) else data[None]


class _Sections:
    """The sections ``zs`` of a volume stacked (``(len(zs), y, x)``), read lazily: what the kind of labels
    is judged on when only some sections hold labels (the empty ones would read as background)."""

    def __init__(self, vol, zs):
        self.vol, self.zs, self.dtype, self.chunks = vol, list(zs), vol.dtype, None
        self.shape = (len(self.zs),) + tuple(vol.shape[1:])

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if not key or key[0] is Ellipsis:
            key = (slice(None),)
        rest = tuple(key[1:])
        if isinstance(key[0], (int, np.integer)):
            return np.asarray(self.vol[(self.zs[int(key[0])],) + rest])
        return np.stack([np.asarray(self.vol[(z,) + rest]) for z in self.zs[key[0]]])


def _intensity_sample(raw):
    """The voxels of the boxes :func:`emseg.sampling.sample_regions` places (all of a small volume)."""
    from ..sampling import MORE_REGIONS, REGIONS, sample_regions

    if np.prod(raw.shape) <= 2**22:
        return np.asarray(raw[...]).ravel()
    boxes = sample_regions(raw.shape, getattr(raw, "chunks", None), REGIONS + MORE_REGIONS)
    return np.concatenate([np.asarray(raw[b]).ravel() for b in boxes])


def _as_3d(vol):
    return _Lazy3d(vol) if len(vol.shape) == 2 else vol


def _voxel_size_3d(vs, raw_name):
    if vs is None:
        return None
    vs = tuple(float(v) for v in vs)
    if len(vs) == 2:
        vs = (max(vs),) + vs  # a 2D image: its one section as thick as a pixel is wide
    if len(vs) != 3 or not all(math.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size of {raw_name} must be 3 positive numbers (nm, zyx); got {vs}")
    return vs


def _labelled_sections(labels):
    """The z ranges holding nonzero labels and the foreground fraction over those sections."""
    nz, per = labels.shape[0], max(1, int(np.prod(labels.shape[1:])))
    has, fg = np.zeros(nz, bool), 0
    rows = max(1, SLAB // max(1, int(labels.shape[2])))  # a section larger than a slab: read in row bands
    for z in range(0, nz, max(1, SLAB // per)):
        zs = slice(z, min(nz, z + max(1, SLAB // per)))
        for y in range(0, labels.shape[1], rows if per > SLAB else labels.shape[1]):
            part = np.asarray(labels[zs, y:y + (rows if per > SLAB else labels.shape[1])]) != 0
            counts = part.reshape(part.shape[0], -1).sum(axis=1)
            has[zs] |= counts > 0
            fg += int(counts.sum())
    seen = int(has.sum()) * per
    ranges, z = [], 0
    while z < nz:
        if has[z]:
            z1 = z
            while z1 < nz and has[z1]:
                z1 += 1
            ranges.append((z, z1))
            z = z1
        else:
            z += 1
    return ranges, fg / max(seen, 1)


def _crop(shape, sections):
    """At most ``MAX_CROP`` voxels, centred in the largest labelled z range (y/x shrink before z)."""
    z0, z1 = max(sections, key=lambda r: r[1] - r[0])
    size = [z1 - z0, shape[1], shape[2]]
    while np.prod(size) > MAX_CROP:
        axis = 0 if size[0] > max(size[1:]) else (1 if size[1] >= size[2] else 2)
        size[axis] = max(1, int(size[axis] * 0.8))
    centre = [(z0 + z1) // 2, shape[1] // 2, shape[2] // 2]
    lo = [z0, 0, 0]
    hi = [z1, shape[1], shape[2]]
    start = [min(max(lo[a], centre[a] - size[a] // 2), hi[a] - size[a]) for a in range(3)]
    return tuple((int(s), int(s + n)) for s, n in zip(start, size))


def _kind(lab, labels, labels_name):
    """(kind, reason): the task inference of :mod:`emseg.metrics.task`, and masks of thin structures as membranes."""
    from ..metrics.task import describe

    if np.dtype(labels.dtype).kind == "f":
        raise ValueError(f"labels {labels_name} hold floating-point values ({labels.dtype}); expected integer "
                         "labels (a 0/1 or 0/255 mask, or object ids)")
    vk = describe(labels, "labels" if labels_name == "labels" else f"labels {labels_name}")
    if vk.kind not in ("mask", "instance", "neurons"):
        raise ValueError(f"{vk.phrase}; expected a mask or object ids (are raw and labels swapped?)")
    if vk.kind != "mask":
        return ("instances" if vk.kind == "instance" else "neurons"), vk.phrase
    on = lab != 0
    coverage = float(on.mean())
    if coverage >= 0.5:
        cells = _cells_per_section(on)
        if cells >= _CELLS:
            return "membranes", (f"a mask covering {coverage:.0%} that membranes cut into {cells:.0f} pieces per "
                                 "section: cells with 0 on the membranes (the ISBI 2012 convention)")
    elif _edge_share(on) >= _THIN and _spans_sections(on):
        raise ValueError(f"labels {labels_name} look like a membrane mask with 1 on the membranes (most of the "
                         "foreground is next to background); emseg's boundary target reads the ISBI 2012 "
                         "convention (0 = membrane): invert the labels (255 - labels)")
    return "mask", f"a mask ({coverage:.1%} foreground in the measured crop)"


def _spans_sections(on):
    """Whether the foreground forms a network across the sections (its largest 8-connected piece spans
    most of a section both ways), as membranes drawn as 1 do and small objects do not."""
    import cc3d

    for z in np.unique(np.linspace(0, on.shape[0] - 1, min(8, on.shape[0])).astype(int)):
        pieces = cc3d.connected_components(on[z], connectivity=8)
        if not pieces.any():
            continue
        biggest = np.argmax(np.bincount(pieces.ravel())[1:]) + 1
        ys, xs = np.nonzero(pieces == biggest)
        if np.ptp(ys) + 1 >= 0.8 * on.shape[1] and np.ptp(xs) + 1 >= 0.8 * on.shape[2]:
            return True
    return False


def _cells_per_section(on):
    """The median number of 4-connected foreground pieces per section (at most 16 sections looked at)."""
    import cc3d

    zs = np.unique(np.linspace(0, on.shape[0] - 1, min(16, on.shape[0])).astype(int))
    return float(np.median([cc3d.connected_components(on[z], connectivity=4).max() for z in zs]))


def _edge_share(on):
    """Of the voxels in ``on``, the fraction with an in-plane neighbour outside it."""
    if not on.any():
        return 0.0
    edge = np.zeros_like(on)
    for axis in (1, 2):
        if on.shape[axis] < 2:
            continue
        lo = (slice(None),) * axis + (slice(None, -1),)
        hi = (slice(None),) * axis + (slice(1, None),)
        edge[lo] |= on[lo] & ~on[hi]
        edge[hi] |= on[hi] & ~on[lo]
    return float(edge.sum()) / float(on.sum())


def _membrane_share(lab):
    return float((lab == 0).mean())


def _objects(lab, kind):
    """(ids, touching): the objects of the crop as ids, and the fraction of ids touching another id."""
    import cc3d

    if kind == "mask":
        return cc3d.connected_components(lab != 0, connectivity=26), None
    if kind == "membranes":  # cells: the components of each section (membranes separate them in-plane)
        ids = np.zeros(lab.shape, np.uint32)
        offset = 0
        for z in range(lab.shape[0]):
            cells = cc3d.connected_components(lab[z] != 0, connectivity=4).astype(np.uint32)
            ids[z] = np.where(cells > 0, cells + offset, 0)
            offset += int(cells.max())
        return ids, None
    import fastremap

    ids, _ = fastremap.renumber(np.ascontiguousarray(lab), in_place=False)
    n = int(ids.max())
    touching = np.zeros(n + 1, bool)
    for axis in range(3):
        if ids.shape[axis] < 2:
            continue
        a = ids[(slice(None),) * axis + (slice(None, -1),)]
        b = ids[(slice(None),) * axis + (slice(1, None),)]
        pairs = (a != b) & (a > 0) & (b > 0)
        touching[a[pairs]] = True
        touching[b[pairs]] = True
    return ids, float(touching[1:].sum()) / max(n, 1)


def _object_sizes(ids, vs):
    """Median and 90th-percentile bounding-box extents (voxels, zyx) and equivalent diameters (nm)."""
    import cc3d

    if not ids.any():
        return (0, 0, 0), (0, 0, 0), (0.0, 0.0, 0.0)
    stats = cc3d.statistics(np.ascontiguousarray(ids))
    counts = np.asarray(stats["voxel_counts"])[1:]
    boxes = [b for b, c in zip(stats["bounding_boxes"][1:], counts) if c > 0]
    counts = counts[counts > 0]
    ext = np.array([[s.stop - s.start for s in box] for box in boxes])
    voxel = float(np.prod(vs)) if vs else 1.0
    diam = (6.0 * counts * voxel / math.pi) ** (1.0 / 3.0)
    med = tuple(int(round(v)) for v in np.median(ext, axis=0))
    p90 = tuple(int(round(v)) for v in np.percentile(ext, 90, axis=0))
    return med, p90, tuple(round(float(v), 1) for v in np.percentile(diam, (10, 50, 90)))

"""Where a check looks in a volume it does not read whole: a few small boxes, each inside one storage
chunk, spread over the volume by a low-discrepancy sequence (the centre first). The value checks of
:mod:`emseg.probabilities` and the task inference of :mod:`emseg.metrics` read the same boxes."""

from __future__ import annotations

__all__ = ["sample_regions", "BOX", "REGIONS", "MORE_REGIONS"]

BOX = (4, 128, 128)           # one sampled region (zyx), at most one storage chunk
REGIONS, MORE_REGIONS = 8, 24  # regions a check reads; more when a uint8 sample holds only 0 and 1


def _vdc(k, base):
    """k-th element of the van der Corput sequence in ``base`` (low-discrepancy positions in [0, 1))."""
    f, denom = 0.0, 1.0
    while k:
        k, r = divmod(k, base)
        denom *= base
        f += r / denom
    return f


def sample_regions(shape, chunks, count, first=0):
    """Up to ``count`` boxes of at most ``BOX`` voxels (all of up to 16 leading channels), each inside
    one storage chunk, spread over the volume (the centre first)."""
    shape = tuple(int(n) for n in shape)
    lead = max(0, len(shape) - 3)
    chunks = tuple(int(c) for c in chunks) if chunks and len(chunks) == len(shape) else None
    out, seen = [], set()
    for k in range(first, first + count):
        box = [slice(0, min(n, 16)) for n in shape[:lead]]
        for a in range(lead, len(shape)):
            n, want = shape[a], BOX[a - len(shape)]
            f = (0.5 + _vdc(k, (2, 3, 5)[(a - lead) % 3])) % 1.0
            if chunks:
                c = chunks[a]
                n_chunks = -(-n // c)
                ci = min(int(f * n_chunks), n_chunks - 1)
                lo, hi = ci * c, min(n, (ci + 1) * c)
                b = min(want, hi - lo)
                start = lo + int((f * n_chunks - ci) * (hi - lo - b))
            else:
                b = min(want, n)
                start = int(f * (n - b))
            box.append(slice(start, start + b))
        key = tuple((s.start, s.stop) for s in box)
        if key not in seen:
            seen.add(key)
            out.append(tuple(box))
    return out

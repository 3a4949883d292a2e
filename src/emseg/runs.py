"""Run identity: a signature of everything that determines a long run's output, and its comparison.

Every long-running command (``convert``, ``predict``, ``segment``, ``postprocess``, ``train``)
records a signature with its output: the identity of each input (path, size, modification time
and a content fingerprint that reads only a few chunks, so it is cheap on a TB volume), every
option, and the checksum of each model. A rerun resumes only when its signature is the same;
otherwise :func:`check_same_run` raises :class:`RunMismatchError` naming the fields that differ::

    pred.zarr was started by another run: inputs.raw.fingerprint differs (was 3f2a…, now 9c01…);
    pass --overwrite to start over, or write to another output
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

__all__ = ["input_identity", "file_checksum", "model_identity", "run_signature", "signature_hash", "differences", "check_same_run",
           "RunMismatchError"]

_SAMPLES = 9          # regions read for the content fingerprint
_SAMPLE_VOXELS = 32768  # voxels per region at most (32×32×32)
_MAX_STATS = 20000     # chunk files whose size and time are taken (beyond it only the content samples tell)


class RunMismatchError(ValueError):
    """A rerun whose signature differs from the one recorded with the output."""


_CHECKSUMS: dict = {}


def file_checksum(path, chunk=1 << 22) -> str:
    """sha256 of a file's bytes (model checkpoints: a few MB); read once per process while the file's
    size and time stay the same (segment computes the model's identity for itself and for predict)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _CHECKSUMS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _CHECKSUMS[key] = h.hexdigest()
    return _CHECKSUMS[key]


def _stat_identity(path):
    """Size and modification time of a file; of a folder, its metadata files (Zarr/N5) or its slices."""
    if os.path.isfile(path):
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    names = sorted(os.listdir(path))
    meta = [n for n in names if n in (".zarray", ".zgroup", ".zattrs", "zarr.json", "attributes.json")]
    if meta:  # a chunked store: every chunk file's size and time while they are few, else the first _MAX_STATS
        size, newest, seen = 0, 0, 0
        for root, folders, files in os.walk(path):
            folders.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                size, newest, seen = size + st.st_size, max(newest, st.st_mtime_ns), seen + 1
            if seen >= _MAX_STATS:
                break
        return {"size": size, "mtime_ns": newest, "files": seen if seen < _MAX_STATS else f">={_MAX_STATS}"}
    stats = [os.stat(os.path.join(path, n)) for n in names if not n.startswith(".")]
    return {"files": len(stats), "size": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def _hdf5_identity(file, key):
    """A dataset of an HDF5 file: its storage size and where its chunks lie (the file's own size and time
    change whenever any dataset of it is written, e.g. an output added beside the input)."""
    import h5py

    with h5py.File(file, "r") as f:
        ds = f[key]
        h = hashlib.sha256()
        if ds.chunks is not None:
            for i in range(min(ds.id.get_num_chunks(), _MAX_STATS)):
                info = ds.id.get_chunk_info(i)
                h.update(f"{info.chunk_offset}{info.byte_offset}:{info.size};".encode())
        else:
            h.update(str(ds.id.get_offset()).encode())
        return {"size": int(ds.id.get_storage_size()), "layout": h.hexdigest()}


def _sample_regions(shape, chunks):
    """Up to ``_SAMPLES`` small regions spread over the volume (corners, centre, a diagonal), chunk-aligned."""
    shape = tuple(int(n) for n in shape)
    side = max(1, int(round(_SAMPLE_VOXELS ** (1 / max(1, len(shape))))))
    box = [min(n, side) for n in shape]
    fractions = [0.0, 1.0, 0.5, 0.25, 0.75, 0.125, 0.875, 0.375, 0.625]
    regions = []
    for k, f in enumerate(fractions[:_SAMPLES]):
        start = []
        for a, (n, b) in enumerate(zip(shape, box)):
            g = f if a % 2 == 0 or k < 2 else 1 - f  # not all on one diagonal
            s = int(round(g * (n - b)))
            c = int(chunks[a]) if chunks else 1
            start.append(min(n - b, (s // c) * c))
        regions.append(tuple(start))
    return [tuple(slice(s, s + b) for s, b in zip(start, box)) for start in dict.fromkeys(regions)]


def content_fingerprint(vol) -> str:
    """sha256 over shape, dtype and a few sampled regions of an array-like (reads ``_SAMPLES`` small boxes)."""
    h = hashlib.sha256(json.dumps([list(map(int, vol.shape)), str(np.dtype(vol.dtype))]).encode())
    for roi in _sample_regions(vol.shape, getattr(vol, "chunks", None)):
        h.update(np.ascontiguousarray(np.asarray(vol[roi])).tobytes())
    return h.hexdigest()


def input_identity(path, vol=None) -> dict:
    """The identity of an input volume: absolute path (and key), size, modification time, content fingerprint.

    ``path`` may carry a key (``file.h5:volumes/raw``); ``vol`` is the volume when already open.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from emseg.io import write_volume
    >>> p = os.path.join(tempfile.mkdtemp(), "raw.tif")
    >>> write_volume(p, np.zeros((2, 8, 8), np.uint8))
    >>> ident = input_identity(p)
    >>> sorted(ident), ident["shape"]
    (['dtype', 'fingerprint', 'key', 'mtime_ns', 'path', 'shape', 'size'], [2, 8, 8])
    """
    from .io import open_volume
    from .io.paths import split_key

    file, key = split_key(os.fspath(path))
    close = vol is None
    vol = open_volume(path) if vol is None else vol
    try:
        node = key
        if key is None and getattr(vol, "format", None) in ("zarr", "n5") and getattr(vol, "key", None):
            node = vol.key  # an image's array ("0"): label images and levels added beside it are not the input
        stats = _hdf5_identity(file, key) if key is not None and getattr(vol, "format", None) == "hdf5" \
            else _stat_identity(file if node is None else _node(file, node))
        if node is not None and key is None:
            stats["group"] = _metadata_identity(file)
        ident = {"path": os.path.abspath(file), "key": key, "shape": [int(n) for n in vol.shape],
                 "dtype": str(np.dtype(vol.dtype)), **stats, "fingerprint": content_fingerprint(vol)}
    finally:
        if close:
            vol.close()
    return ident


def _metadata_identity(folder):
    """Sizes and times of a store's own metadata files (an image's voxel size lives there)."""
    out = {}
    for name in (".zgroup", ".zattrs", "zarr.json", "attributes.json"):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            st = os.stat(p)
            out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _node(file, key):
    """The on-disk folder of a key inside a directory store (Zarr/N5), else the file itself."""
    node = os.path.join(file, key)
    return node if os.path.isdir(node) else file


def run_signature(command, inputs=None, models=None, options=None) -> dict:
    """The JSON-able signature of a run: ``{"command", "inputs": {name: identity}, "models": [sha256], "options"}``.

    ``inputs`` maps a name to a path (its :func:`input_identity` is taken) or to an identity dict;
    ``models`` are checkpoint paths (their sha256 is taken) or identities already computed (strings).
    """
    ins = {}
    for name, value in (inputs or {}).items():
        ins[name] = value if isinstance(value, dict) or value is None else input_identity(value)
    sums = [file_checksum(m) if isinstance(m, (str, os.PathLike)) and os.path.isfile(m) else str(m)
            for m in (models or [])]
    return json.loads(json.dumps({"command": command, "inputs": ins, "models": sums, "options": options or {}},
                                 default=_jsonable))


def signature_hash(signature) -> str:
    """sha256 of ``signature`` as JSON with sorted keys (a value JSON cannot hold counts as its ``str``).

    The one short name of a run or plan: the trainer's state records it of its run
    (:mod:`emseg.train.state`), the stitching table of :func:`~emseg.instances.segment_blockwise`
    of the plan it was computed for.

    Examples
    --------
    >>> signature_hash({"b": 1, "a": [2]}) == signature_hash({"a": [2], "b": 1})
    True
    >>> signature_hash({"a": 1})[:12]
    'f9d86028c6e0'
    """
    return hashlib.sha256(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()


def _jsonable(v):
    if isinstance(v, slice):
        return [v.start, v.stop]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (tuple, set)):
        return list(v)
    if hasattr(v, "as_dict"):
        return v.as_dict()
    return str(v)


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def differences(old, new) -> list[str]:
    """Fields that differ between two signatures, as ``"inputs.raw.fingerprint (was …, now …)"``.

    Examples
    --------
    >>> differences({"options": {"tta": None, "halo": [1, 2]}}, {"options": {"tta": "flips", "halo": [1, 2]}})
    ["options.tta (was None, now 'flips')"]
    """
    a, b = _flatten(old or {}), _flatten(new or {})
    out = []
    for k in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0] != "inputs", k)):
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            out.append(f"{k} (was {_short(a.get(k, '<absent>'))}, now {_short(b.get(k, '<absent>'))})")
    return out


def _short(v):
    text = repr(v)
    if isinstance(v, str) and len(v) == 64:  # a hash
        text = repr(v[:12] + "…")
    return text if len(text) <= 80 else text[:77] + "..."


def check_same_run(recorded, signature, what, *, fix="pass --overwrite to start over, or write to another output"):
    """Raise :class:`RunMismatchError` unless ``signature`` equals the ``recorded`` one; name what differs."""
    diff = differences(recorded, signature)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise RunMismatchError(f"{what} was started by another run: {shown}; {fix}")


def model_identity(m, path=None) -> str:
    """What identifies model ``m`` in a run's signature: the sha256 of its checkpoint file ``path``, of a
    module's weights, or of a callable's code, constants, captured values and attributes."""
    if path:
        return file_checksum(path)
    if hasattr(m, "state_dict"):
        h = hashlib.sha256()
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()
    # a plain callable: its code, constants, captured values and attributes (two lambdas made with other
    # arguments differ); what it reads from elsewhere cannot be seen, so such a model is only as safe as that
    h = hashlib.sha256(f"{getattr(m, '__module__', '')}.{getattr(m, '__qualname__', type(m).__qualname__)}".encode())
    fn = getattr(m, "__call__", m) if not hasattr(m, "__code__") else m
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is not None:
        h.update(code.co_code)
        h.update(repr(code.co_consts).encode())
    for cell in getattr(fn, "__closure__", None) or ():
        h.update(repr(cell.cell_contents).encode())
    if hasattr(m, "__dict__"):
        h.update(json.dumps(vars(m), sort_keys=True, default=repr).encode())
    return f"callable:{h.hexdigest()}"

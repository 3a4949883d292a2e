"""Model checkpoints as one safetensors file: the weights, plus a JSON header in its metadata.

The header names the model class, its init arguments and any ``extra`` (normalisation, voxel
size, training config), so a model loads without the script that built it and without pickle::

    metadata = {"format": "emseg-model", "version": "1", "model_class": "UNet",
                "init_args": "{...json...}", "extra": "{...json...}"}

A file is checked before safetensors or torch see it (:func:`read_safetensors_header`): the
header length, the header JSON and every tensor's byte range are bounded by the file's size, and
the model that ``init_args`` describe is first built on torch's ``meta`` device (no memory) and
compared tensor by tensor with the file, so a truncated or crafted checkpoint ends in one
``ValueError`` naming it rather than in a huge allocation.
"""

from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

from .unet import UNet

__all__ = ["MODEL_CLASSES", "ModelHeader", "SafetensorsHeader", "SafetensorsData", "save_model", "load_model",
           "read_model_header", "read_safetensors_header", "read_safetensors"]

MODEL_CLASSES = {"UNet": UNet}
"""The classes a checkpoint may name; a new model class is added here."""

_FORMAT, _VERSION = "emseg-model", "1"
_MAX_HEADER = 100_000_000  # bytes; safetensors' own limit
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_DAMAGED = "the file is damaged: copy it again or save the model again"
_MAX_DEPTH = 16   # U-Net levels a checkpoint may ask for
_MAX_LIST = 64    # entries of any list in init_args


class ModelHeader(NamedTuple):
    """What a checkpoint says about its model."""

    model_class: str
    init_args: dict
    extra: dict


class SafetensorsHeader(NamedTuple):
    """The header of a safetensors file: its ``metadata`` (str to str) and each tensor's entry
    (``{"dtype", "shape", "data_offsets"}`` by name)."""

    metadata: dict
    entries: dict


class SafetensorsData(NamedTuple):
    """A safetensors file read whole: its ``metadata`` (str to str) and its ``tensors`` (CPU torch tensors by name)."""

    metadata: dict
    tensors: dict


def save_model(model, path, *, extra=None):
    """Write ``model``'s weights and header to ``path`` (a ``.safetensors`` file), atomically.

    Parameters
    ----------
    model : torch.nn.Module
        An instance of a class in :data:`MODEL_CLASSES`, with an ``init_args`` dict.
    path : str or os.PathLike
        Output file; written whole or not at all.
    extra : dict, optional
        JSON-able information kept with the weights (e.g. ``{"normalization": {...}}``).

    Raises
    ------
    TypeError
        If the model class is not registered, or ``init_args``/``extra`` are not JSON-able.

    Examples
    --------
    >>> import tempfile, torch
    >>> model = UNet(1, 1, ndim=2, depth=1, features=4)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_model(model, f"{folder}/unet.safetensors", extra={"mean": 0.5})
    ...     header = read_model_header(f"{folder}/unet.safetensors")
    ...     loaded = load_model(f"{folder}/unet.safetensors")
    >>> header.model_class, header.extra
    ('UNet', {'mean': 0.5})
    >>> x = torch.rand(1, 1, 16, 16)
    >>> _ = model.eval()
    >>> torch.equal(model(x), loaded(x))
    True
    """
    from safetensors.torch import save

    from ..io.atomic import write_bytes_atomic

    name = type(model).__name__
    if MODEL_CLASSES.get(name) is not type(model):
        raise TypeError(f"cannot save a {name}: the model class must be one of {sorted(MODEL_CLASSES)}")
    try:
        metadata = {"format": _FORMAT, "version": _VERSION, "model_class": name,
                    "init_args": json.dumps(model.init_args), "extra": json.dumps({} if extra is None else extra)}
    except TypeError as err:
        raise TypeError(f"init_args and extra must be JSON-able (dicts of str, numbers, lists): {err}") from None
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(tensors, metadata=metadata))


def read_safetensors_header(path, *, what="model checkpoint", fix=_DAMAGED):
    """The checked :class:`SafetensorsHeader` (``metadata``, ``entries``) of a file; reads only the header.

    ``entries`` maps each tensor's name to ``{"dtype", "shape", "data_offsets"}``. The 8-byte header length
    must fit the file and 100 MB, the header must be a JSON object, and the tensors' byte ranges
    must match dtype × shape and tile the data section exactly (as safetensors requires), so a
    truncated file (cut at any byte) or a crafted header fails here, before any allocation.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file is, for messages ("model checkpoint", "training state").
    fix : str
        What to do about a damaged file, appended to the message.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is a folder, not a safetensors file, truncated or corrupt; the message names it.

    Examples
    --------
    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> p = tempfile.mkdtemp() + "/t.safetensors"
    >>> save_file({"w": torch.zeros(2, 3)}, p, metadata={"k": "v"})
    >>> read_safetensors_header(p)
    SafetensorsHeader(metadata={'k': 'v'}, entries={'w': {'dtype': 'F32', 'shape': [2, 3], 'data_offsets': [0, 24]}})
    >>> with open(p, "r+b") as f:
    ...     _ = f.truncate(110)
    >>> read_safetensors_header(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: model checkpoint ...t.safetensors' is truncated or corrupt: tensor 'w' lies at bytes 0:24 of ... 14 bytes; ...
    """
    with _open_checked(path, what) as f:
        return SafetensorsHeader(*_parse_header(f, os.fstat(f.fileno()).st_size, path, what, fix)[:2])


def read_safetensors(path, *, what="model checkpoint", fix=_DAMAGED):
    """The :class:`SafetensorsData` (``metadata``, ``tensors``) of a file, checked as :func:`read_safetensors_header`.

    The file is read once and checked before safetensors decodes the same bytes, so what is
    checked is what is loaded. ``tensors`` maps names to CPU torch tensors.
    """
    from safetensors.torch import load

    with _open_checked(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        metadata = _parse_header(f, size, path, what, fix)[0]
        f.seek(0)
        data = f.read(size)
    if len(data) != size:
        raise _error(path, what, f"changed while it was read ({size} bytes expected, {len(data)} read)", fix)
    try:
        tensors = load(data)
    except Exception as err:  # safetensors' own error types; the checks above should leave none
        raise _error(path, what, f"is not a valid safetensors file: {err}", fix) from None
    return SafetensorsData(metadata, tensors)


def _open_checked(path, what):
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a folder, not a .safetensors file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    return open(path, "rb")


def _error(path, what, problem, fix):
    return ValueError(f"{what} {os.fspath(path)!r} {problem}; {fix}")


def _parse_header(f, size, path, what, fix):
    """(metadata, tensor entries, header length) after checking every bound against ``size``."""
    not_st = "is not a safetensors file (or is truncated)"
    if size < 8:
        raise _error(path, what, f"{not_st}: it holds {size} bytes, fewer than the 8 of a header length", fix)
    n = int.from_bytes(f.read(8), "little")
    if n > min(_MAX_HEADER, size - 8):
        limit = (f"the file holds {size - 8} bytes after it" if n <= _MAX_HEADER
                 else f"more than the {_MAX_HEADER} bytes a safetensors header may have")
        raise _error(path, what, f"{not_st}: its first 8 bytes give a header length of {n} bytes, {limit}", fix)
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise _error(path, what, f"{not_st}: its header is not JSON ({err})", fix) from None
    if not isinstance(header, dict):
        raise _error(path, what, f"{not_st}: its header is a JSON {type(header).__name__}, not an object", fix)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _error(path, what, "is corrupt: its __metadata__ is not a mapping of strings", fix)
    data_bytes, spans = size - 8 - n, []
    for name, e in header.items():
        ok = (isinstance(e, dict) and e.get("dtype") in _DTYPE_BYTES and isinstance(e.get("shape"), list)
              and all(type(s) is int and s >= 0 for s in e["shape"]) and isinstance(e.get("data_offsets"), list)
              and len(e["data_offsets"]) == 2 and all(type(o) is int for o in e["data_offsets"]))
        if not ok:
            raise _error(path, what, f"is corrupt: tensor {name!r} has the entry {_short(e)}, expected "
                         f"{{'dtype': one of {sorted(_DTYPE_BYTES)}, 'shape': [ints], 'data_offsets': [begin, end]}}",
                         fix)
        begin, end = e["data_offsets"]
        need = math.prod(e["shape"]) * _DTYPE_BYTES[e["dtype"]]
        if not 0 <= begin <= end <= data_bytes:
            raise _error(path, what, f"is truncated or corrupt: tensor {name!r} lies at bytes {begin}:{end} of a data "
                         f"section of {data_bytes} bytes", fix)
        if end - begin != need:
            raise _error(path, what, f"is corrupt: tensor {name!r} ({e['dtype']} {e['shape']}) needs {need} bytes but "
                         f"its data_offsets span {end - begin}", fix)
        spans.append((begin, end, name))
    edge = 0
    for begin, end, name in sorted(spans):
        if begin != edge:
            raise _error(path, what, f"is corrupt: tensor {name!r} starts at byte {begin} of the data, expected {edge} "
                         "(tensors must tile the data section)", fix)
        edge = end
    if edge != data_bytes:
        raise _error(path, what, f"is truncated or corrupt: its header describes {edge} bytes of tensor data but the "
                     f"file holds {data_bytes}", fix)
    return metadata, header, n


def _short(v, n=80):
    text = repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def read_model_header(path):
    """The :class:`ModelHeader` of a checkpoint written by :func:`save_model`, without its weights.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an emseg model checkpoint, is truncated or corrupt, or its header is.
    """
    return _read_header(path)[0]


def _read_header(path):
    """(ModelHeader, tensor entries, raw metadata) of a checkpoint, every field checked."""
    p = os.fspath(path)
    metadata, entries = read_safetensors_header(p)
    if metadata.get("format") != _FORMAT:
        raise ValueError(f"{p!r} is a safetensors file but not an emseg model checkpoint "
                         f"(metadata format {metadata.get('format')!r}, expected {_FORMAT!r})")
    if metadata.get("version") != _VERSION:
        raise ValueError(f"{p!r} has checkpoint version {metadata.get('version')!r}; "
                         f"this emseg reads version {_VERSION!r}")
    fields = {}
    for key in ("init_args", "extra"):
        try:
            fields[key] = json.loads(metadata.get(key, "{}"))
        except ValueError as err:
            raise ValueError(f"model checkpoint {p!r} is corrupt: its {key} are not JSON ({err})") from None
        if not isinstance(fields[key], dict):
            raise ValueError(f"model checkpoint {p!r} is corrupt: its {key} are a JSON "
                             f"{type(fields[key]).__name__}, expected an object")
    model_class = metadata.get("model_class")
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"{p!r} holds a {model_class!r}; known model classes: {sorted(MODEL_CLASSES)}")
    return ModelHeader(model_class, fields["init_args"], fields["extra"]), entries, metadata


def _check_init_args(args, path):
    """Plain JSON values, short lists and a bounded depth: building the model on ``meta`` stays quick."""
    def bad(why):
        return ValueError(f"model checkpoint {os.fspath(path)!r} has invalid init_args: {why}")

    def walk(key, v, level=0):
        if isinstance(v, list):
            if len(v) > _MAX_LIST or level > 3:
                raise bad(f"{key} is a list of {len(v)} entries nested {level} deep (at most {_MAX_LIST}, 3 deep)")
            for x in v:
                walk(key, x, level + 1)
        elif not (v is None or isinstance(v, (bool, int, float, str))):
            raise bad(f"{key} is a {type(v).__name__}")
        elif isinstance(v, (int, float)) and not abs(v) < 2**31:
            raise bad(f"{key} holds {_short(v)}, beyond the +-2**31 a model argument may take")
    for key, value in args.items():
        walk(key, value)
    depth = args.get("depth", 0)
    if type(depth) is not int or not 0 <= depth <= _MAX_DEPTH:
        raise bad(f"depth is {_short(depth)}, expected an int in 0..{_MAX_DEPTH}")


def load_model(path, device="cpu"):
    """Rebuild the model saved at ``path`` and load its weights; no pickle is read.

    The model ``init_args`` describe is first built on the ``meta`` device and its tensor names
    and shapes compared with the file's, so only a consistent checkpoint allocates memory; the
    weights must all be finite.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint written by :func:`save_model`.
    device : str or torch.device
        Where the weights go.

    Returns
    -------
    torch.nn.Module
        The model, in eval mode (call ``.train()`` to continue training). The header's ``extra``
        is available from :func:`read_model_header`.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_model_header`; ValueError also when the weights do not match the init
        arguments or hold NaN/Inf values. Every message names the checkpoint.
    """
    import torch

    p = os.fspath(path)
    header, entries, metadata = _read_header(p)
    _check_init_args(header.init_args, p)
    cls = MODEL_CLASSES[header.model_class]
    try:
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in cls(**header.init_args).state_dict().items()}
    except Exception as err:  # any constructor error is a property of this file
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"model checkpoint {p!r} has invalid init_args for {header.model_class}: {first}") from None
    found = {k: e["shape"] for k, e in entries.items()}
    if found != expected:
        missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = [k for k in expected if k in found and found[k] != expected[k]]
        why = (f"tensor {wrong[0]!r} has shape {found[wrong[0]]} in the file but {expected[wrong[0]]} in the model"
               if wrong else f"tensors missing: {missing[:3]}, unexpected: {unexpected[:3]}")
        raise ValueError(f"model checkpoint {p!r} is corrupt: its weights do not match its init_args ({why})")
    again, tensors = read_safetensors(p)
    if again != metadata or {k: list(v.shape) for k, v in tensors.items()} != expected:
        raise ValueError(f"model checkpoint {p!r} changed while it was read; load it again")
    _check_finite(tensors, p)
    model = cls(**header.init_args)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def _check_finite(tensors, path, what="model checkpoint", fix="it comes from a diverged training run: use an "
                 "earlier checkpoint or train again"):
    """Raise ValueError naming the first floating-point tensor of ``tensors`` with a NaN or Inf value."""
    import torch

    for name, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{what} {os.fspath(path)!r}: tensor {name!r} holds {bad} NaN/Inf value(s) of "
                             f"{t.numel()}; {fix}")

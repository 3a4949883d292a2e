"""Model checkpoints as one safetensors file: the weights, plus a JSON header in its metadata.

The header names the model class, its init arguments and any ``extra`` (normalisation, voxel
size, training config), so a model loads without the script that built it and without pickle::

    metadata = {"format": "emseg-model", "version": "1", "model_class": "UNet",
                "init_args": "{...json...}", "extra": "{...json...}"}
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from .unet import UNet

__all__ = ["MODEL_CLASSES", "ModelHeader", "save_model", "load_model", "read_model_header"]

MODEL_CLASSES = {"UNet": UNet}
"""The classes a checkpoint may name; a new model class is added here."""

_FORMAT, _VERSION = "emseg-model", "1"


class ModelHeader(NamedTuple):
    """What a checkpoint says about its model."""

    model_class: str
    init_args: dict
    extra: dict


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


def read_model_header(path):
    """The :class:`ModelHeader` of a checkpoint written by :func:`save_model`, without its weights.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an emseg model checkpoint.
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model checkpoint {os.fspath(path)!r} does not exist")
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for a broken header
        raise ValueError(f"{os.fspath(path)!r} is not a safetensors file: {err}") from None
    if metadata.get("format") != _FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is a safetensors file but not an emseg model checkpoint "
                         f"(metadata format {metadata.get('format')!r}, expected {_FORMAT!r})")
    if metadata.get("version") != _VERSION:
        raise ValueError(f"{os.fspath(path)!r} has checkpoint version {metadata.get('version')!r}; "
                         f"this emseg reads version {_VERSION!r}")
    return ModelHeader(metadata["model_class"], json.loads(metadata["init_args"]), json.loads(metadata["extra"]))


def load_model(path, device="cpu"):
    """Rebuild the model saved at ``path`` and load its weights; no pickle is read.

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
        As :func:`read_model_header`; ValueError also for an unknown model class.
    """
    from safetensors.torch import load_file

    header = read_model_header(path)
    if header.model_class not in MODEL_CLASSES:
        raise ValueError(f"{os.fspath(path)!r} holds a {header.model_class!r}; known model classes: "
                         f"{sorted(MODEL_CLASSES)}")
    model = MODEL_CLASSES[header.model_class](**header.init_args)
    model.load_state_dict(load_file(os.fspath(path), device="cpu"), strict=True)
    return model.to(device).eval()

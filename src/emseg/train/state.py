"""The trainer's state file ``latest.state.safetensors``: everything an exact resume needs, without pickle.

The state (model, optimizer, scheduler, step, RNG states, best score, …) is a tree of dicts,
lists, tuples, scalars and tensors. The tensors are stored as safetensors; the tree around them
as tagged JSON in the file's metadata, each tensor replaced by ``{"tensor": NAME}``::

    {"format": "emseg-train-state", "version": "1",
     "state": '{"dict": [["step", 12], ["model", {"dict": [["conv.weight", {"tensor": "0"}], ...]}], ...]}'}

``{"dict": [[key, value], ...]}`` keeps non-string keys (the optimizer's parameter ids) and
``{"tuple": [...]}`` keeps tuples; a plain JSON list is a list. Reading checks the file's bounds
before decoding (:func:`emseg.models.checkpoint.read_safetensors`), then its format, version and fields;
every failure is a ValueError that says how to start over.
"""

from __future__ import annotations

import json

__all__ = ["STATE_FILE", "save_state", "load_state", "restore_state"]

STATE_FILE = "latest.state.safetensors"
"""The state's file name in the run folder."""
_FORMAT = "emseg-train-state"
_FIELDS = {"model", "optimizer", "scheduler", "step", "torch_rng"}
_START_OVER = "delete the run folder or pass --overwrite to start over"


def _encode(obj, tensors):
    """A JSON tree of ``obj`` with each tensor replaced by ``{"tensor": name}`` (tensors go to ``tensors``)."""
    import torch

    if isinstance(obj, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = obj.detach().cpu().contiguous()
        return {"tensor": name}
    if isinstance(obj, dict):  # keys may be ints (optimizer state): kept as they are
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in the trainer state")


def _decode(tree, tensors):
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if isinstance(tree, dict):
        (kind, value), = tree.items()
        if kind == "tensor":
            return tensors[value]
        if kind == "tuple":
            return tuple(_decode(v, tensors) for v in value)
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
    return tree


def save_state(path, state) -> None:
    """Write the trainer state ``state`` to ``path`` atomically (tensors + tagged JSON).

    Parameters
    ----------
    path : str
        The file to write, replaced atomically (:func:`emseg.io.atomic.write_bytes_atomic`).
    state : dict
        Dicts (any scalar keys), lists, tuples, None, bool, int, float, str and torch tensors;
        tensors are stored detached, on the CPU and contiguous.

    Raises
    ------
    TypeError
        ``state`` holds an object of another type.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), STATE_FILE)
    >>> save_state(path, {"model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {}}}, "scheduler": {},
    ...                   "step": 3, "torch_rng": torch.get_rng_state(), "best": (0.5, 2)})
    >>> state = load_state(path)
    >>> state["step"], state["optimizer"], state["best"], state["model"]["w"].tolist()
    (3, {'state': {0: {}}}, (0.5, 2), [1.0, 1.0])
    """
    from safetensors.torch import save

    from ..io.atomic import write_bytes_atomic

    tensors = {}
    tree = json.dumps(_encode(state, tensors))
    write_bytes_atomic(path, save(tensors, metadata={"format": _FORMAT, "version": "1", "state": tree}))


def load_state(path, signature=None) -> dict:
    """The state written by :func:`save_state`; read without pickle, every bound checked first.

    Parameters
    ----------
    path : str
        A ``latest.state.safetensors`` file.
    signature : str, optional
        The run's signature hash (:func:`emseg.train.rundir.signature_hash`): the state's
        ``"signature"`` must equal it.

    Returns
    -------
    dict
        The state, with at least ``model``, ``optimizer``, ``scheduler``, ``step`` and ``torch_rng``.

    Raises
    ------
    ValueError
        The file is damaged, not an emseg trainer state version 1, lacks a field, or belongs to
        another run than ``signature``; the message says how to start over.
    """
    from ..models.checkpoint import read_safetensors

    metadata, tensors = read_safetensors(path, what="training state", fix=_START_OVER)
    if metadata.get("format") != _FORMAT or metadata.get("version") != "1":
        raise ValueError(f"training state {path!r} is not an emseg {_FORMAT} version 1 file (format "
                         f"{metadata.get('format')!r}, version {metadata.get('version')!r}); {_START_OVER}")
    try:
        state = _decode(json.loads(metadata["state"]), tensors)
        if not isinstance(state, dict) or not _FIELDS <= set(state):
            raise ValueError("fields are missing")
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"training state {path!r} is corrupt ({err}); {_START_OVER}") from None
    if signature is not None and state.get("signature") != signature:
        raise ValueError(f"training state {path!r} belongs to another run than run.json describes; {_START_OVER}")
    return state


def restore_state(state, path, model, opt, sched, scaler, device) -> None:
    """Load ``state`` into the training objects; the optimizer's moments take their parameters' memory layout.

    Parameters
    ----------
    state : dict
        As :func:`load_state` returns it.
    path : str
        The file it was read from (for the message).
    model, opt, sched, scaler
        The torch module, optimizer, LR scheduler and ``GradScaler`` (its state is loaded only
        when the state holds one and the scaler is enabled).
    device : torch.device
        The CUDA RNG states are restored only on a CUDA device.

    Raises
    ------
    ValueError
        The state does not fit these objects (another architecture or optimizer).
    """
    import torch

    try:
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"training state {path!r} does not fit this run's model and optimizer ({first}); "
                         f"{_START_OVER}") from None
    with torch.no_grad():  # saved contiguous; the uninterrupted run keeps them channels-last like the weights
        for group in opt.param_groups:
            for p in group["params"]:
                for k, v in opt.state.get(p, {}).items():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        opt.state[p][k] = torch.empty_like(p).copy_(v)

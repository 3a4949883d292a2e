"""Shipped models: trained weights with their model cards, loadable by name and offline.

Each model is two files in this folder: ``NAME.safetensors`` (an emseg checkpoint: the network,
its init arguments, normalisation and training config) and ``NAME.json``, its model card: what it
is for, the data it was trained on and that data's license, the input voxel size, the
post-processing defaults ``emseg segment`` uses, and the metrics measured on held-out data by
``benchmarks/accuracy.py``. Nothing here imports torch.

Examples
--------
>>> "mito-fibsem" in model_names()
True
>>> model_card("mito-fibsem")["objects"]
'mito'
"""

from __future__ import annotations

import json
import os

__all__ = ["model_names", "model_card", "model_path", "resolve_model", "ZOO_DIR"]

ZOO_DIR = os.path.dirname(os.path.abspath(__file__))


def model_names() -> list[str]:
    """Names of the shipped models (those with both a card and weights), sorted."""
    return sorted(f[:-5] for f in os.listdir(ZOO_DIR)
                  if f.endswith(".json") and os.path.exists(os.path.join(ZOO_DIR, f[:-5] + ".safetensors")))


def _check(name):
    if name not in model_names():
        raise ValueError(f"unknown model {name!r}; shipped models: {', '.join(model_names())} "
                         f"(or pass the path of a .safetensors checkpoint)")


def model_card(name: str) -> dict:
    """The model card of shipped model ``name`` (a dict read from ``NAME.json``)."""
    _check(name)
    with open(os.path.join(ZOO_DIR, name + ".json")) as f:
        return json.load(f)


def model_path(name: str) -> str:
    """The checkpoint file of shipped model ``name``."""
    _check(name)
    return os.path.join(ZOO_DIR, name + ".safetensors")


def resolve_model(model):
    """``(path_or_model, card)``: a shipped model's name becomes its checkpoint path and card, an
    ``emseg fit`` folder its ``model.safetensors`` and ``model.json``; a path or an object is returned
    as is with ``card=None``. An existing file wins over a name.

    Raises
    ------
    FileNotFoundError
        A folder that is not a finished ``emseg fit`` folder.
    """
    if isinstance(model, str) and not os.path.exists(model) and model in model_names():
        return model_path(model), model_card(model)
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
        ckpt, card = os.path.join(model, "model.safetensors"), os.path.join(model, "model.json")
        if not (os.path.isfile(ckpt) and os.path.isfile(card)):
            unfinished = " (an unfinished fit: run the same `emseg fit` again to finish it)" \
                if os.path.exists(os.path.join(model, "fit.json")) else ""
            raise FileNotFoundError(f"model {os.fspath(model)}: a folder without model.safetensors and model.json, "
                                    f"not a finished `emseg fit` folder{unfinished}")
        with open(card) as f:
            return ckpt, json.load(f)
    return model, None

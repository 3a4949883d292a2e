"""N5 attributes.json files: which folders are datasets, and the attributes of groups and datasets.

A container is a folder whose attributes.json holds ``{"n5": "4.0.0"}``; a dataset is a folder
whose attributes.json has ``dimensions``, ``blockSize`` and ``dataType`` (the layout keys, which
only :func:`~emseg.io.n5.create_n5` sets); any other folder below the container is a group.
Every attributes.json is merged and rewritten atomically, under one lock per process.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np

from .atomic import write_bytes_atomic
from .paths import KeyNotFoundError, check_key, suffix_hint
from .volume import VolumeReadError

__all__ = ["N5_VERSION", "RESERVED_KEYS", "list_n5_datasets", "read_n5_attrs", "write_n5_attrs", "read_json",
           "update_json", "is_dataset", "locate", "check_reserved", "json_default"]

N5_VERSION = "4.0.0"
RESERVED_KEYS = ("dimensions", "blockSize", "dataType", "compression", "compressionType")
_ATTRS_LOCK = threading.Lock()


def json_default(obj):
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"N5 attribute value {obj!r} ({type(obj).__name__}) cannot be stored as JSON")


def read_json(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            attrs = json.load(f)
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = "is empty" if os.path.getsize(path) == 0 else f"is not valid JSON ({e})"
        raise VolumeReadError(f"{path} {why}; the N5 container is damaged: restore the file or write the "
                              "volume again") from e
    if not isinstance(attrs, dict):
        raise ValueError(f"{path} holds a JSON {type(attrs).__name__}; expected an object")
    return attrs


def update_json(path, attrs: dict) -> None:
    with _ATTRS_LOCK:
        merged = {**read_json(path), **attrs}
        write_bytes_atomic(path, json.dumps(merged, indent=2, default=json_default).encode())


def is_dataset(attrs: dict) -> bool:
    return all(k in attrs for k in ("dimensions", "blockSize", "dataType"))


def locate(path, key) -> tuple[str, str]:
    """(container, node folder) for ``key`` inside the container at ``path``; checks both."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise VolumeReadError(f"{root}: not an N5 container: an N5 container is a folder, this is a file"
                                  f"{suffix_hint(root, 'n5')}")
        raise FileNotFoundError(f"N5 container {root} does not exist")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str such as 'volumes/raw'; got {type(key).__name__}")
    name = check_key(root, key)
    return root, os.path.join(root, *(name.split("/") if name else []))


def check_reserved(attrs: dict) -> None:
    reserved = sorted(set(attrs) & set(RESERVED_KEYS))
    if reserved:
        raise ValueError(f"attributes {reserved} describe the dataset layout and cannot be set; "
                         "use create_n5(..., overwrite=True) to change them")


def list_n5_datasets(path) -> list[str]:
    """Keys of every dataset below the N5 container or group ``path``, sorted (``""``: ``path`` itself)."""
    root, _ = locate(path, "")
    found = []
    for folder, subfolders, _ in os.walk(root):
        if is_dataset(read_json(os.path.join(folder, "attributes.json"))):
            key = os.path.relpath(folder, root).replace(os.sep, "/")
            found.append("" if key == "." else key)
            subfolders.clear()  # block folders hold no datasets
        subfolders.sort()
    return sorted(found)


def read_n5_attrs(path, key="") -> dict:
    """The attributes.json of the group or dataset ``key`` (all of it), or {} when it has none."""
    root, node = locate(path, key)
    if not os.path.isdir(node):
        raise KeyNotFoundError(f"N5 container {root} has no group or dataset {key!r}; datasets: "
                               f"{', '.join(list_n5_datasets(root)) or '(none)'}")
    return read_json(os.path.join(node, "attributes.json"))


def write_n5_attrs(path, key, attrs) -> None:
    """Merge ``attrs`` into the attributes.json of group or dataset ``key`` (a missing group is made).

    The layout keys (dimensions, blockSize, dataType, compression) cannot be set this way.
    """
    root, node = locate(path, key)
    check_reserved(attrs)
    os.makedirs(node, exist_ok=True)
    update_json(os.path.join(node, "attributes.json"), attrs)

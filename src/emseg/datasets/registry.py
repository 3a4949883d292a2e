"""The registry of public EM datasets (``registry.json`` beside this module): read, check, look up.

Each entry names its files (URL, file name, size in bytes and checksum where a source publishes
them, else null), what in them is raw and what is labels (``volumes``: file or folder inside the
download, HDF5/N5 key, kind), the voxel size (nm, z,y,x), modality, organism, tissue, labels,
licence, citation, reference (DOI or paper URL), homepage, and ``source``: where those facts came
from. An entry without files says in ``access`` how its data are reached instead.
"""

from __future__ import annotations

import difflib
import json
import os
import re

__all__ = ["REGISTRY_FILE", "FIELDS", "UnknownDatasetError", "load_registry", "dataset_names", "dataset_info",
           "total_size"]

REGISTRY_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry.json")
FIELDS = ("name", "family", "title", "files", "volumes", "voxel_size", "modality", "organism", "tissue", "labels",
          "licence", "citation", "reference", "homepage", "source")
FILE_FIELDS = ("url", "filename", "size", "checksum")
KINDS = ("raw", "labels")
_CHECKSUM = re.compile(r"^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class UnknownDatasetError(ValueError):
    """A dataset name the registry does not hold (the message suggests the nearest)."""


def load_registry(path=None) -> dict[str, dict]:
    """The datasets of a registry file (default: the shipped one) by name, in file order, checked.

    Raises
    ------
    ValueError
        The file is not a registry: it names the entry and the field that is wrong.

    Examples
    --------
    >>> reg = load_registry()
    >>> reg["lucchi"]["voxel_size"], reg["lucchi"]["modality"]
    ([5, 5, 5], 'FIB-SEM')
    """
    path = os.fspath(path or REGISTRY_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    entries = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: a registry is a JSON object with a list 'datasets'")
    registry = {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{path}: dataset {name!r}" if isinstance(name, str) else f"{path}: dataset #{i}"
        _check_entry(entry, where)
        if name in registry:
            raise ValueError(f"{where} appears twice")
        registry[name] = entry
    return registry


def _check_entry(entry, where):
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a JSON object")
    missing = [k for k in FIELDS if k not in entry]
    if missing:
        raise ValueError(f"{where} lacks the field(s) {', '.join(missing)} (every entry has: {', '.join(FIELDS)})")
    if not isinstance(entry["name"], str) or not _NAME.match(entry["name"]):
        raise ValueError(f"{where}: name must be lower-case letters, digits, '-', '_' or '.'")
    if not isinstance(entry["files"], list):
        raise ValueError(f"{where}: files must be a list")
    if not entry["files"] and not entry.get("access"):
        raise ValueError(f"{where} has no files and no 'access' saying how its data are reached")
    names = set()
    for f in entry["files"]:
        if not isinstance(f, dict) or any(k not in f for k in FILE_FIELDS):
            raise ValueError(f"{where}: each file needs {', '.join(FILE_FIELDS)}; got {f!r}")
        name = f["filename"]
        if not isinstance(name, str) or not name or os.path.basename(name) != name or name.startswith("."):
            raise ValueError(f"{where}: filename {name!r} must be a plain file name")
        if name in names:
            raise ValueError(f"{where}: two files are named {name!r}")
        names.add(name)
        if not isinstance(f["url"], str) or not re.match(r"^https?://", f["url"]):
            raise ValueError(f"{where}: {name}: url must be http(s)://...; got {f['url']!r}")
        if f["checksum"] is not None and not (isinstance(f["checksum"], str) and _CHECKSUM.match(f["checksum"])):
            raise ValueError(f"{where}: {name}: checksum must be 'sha256:<64 hex>', 'md5:<32 hex>' or null; "
                             f"got {f['checksum']!r}")
        if f["size"] is not None and not (isinstance(f["size"], int) and f["size"] > 0):
            raise ValueError(f"{where}: {name}: size must be a number of bytes or null; got {f['size']!r}")
    vs = entry["voxel_size"]
    if vs is not None and not (isinstance(vs, list) and len(vs) == 3 and
                               all(isinstance(v, (int, float)) and v > 0 for v in vs)):
        raise ValueError(f"{where}: voxel_size must be [z, y, x] in nm (positive numbers) or null; got {vs!r}")
    if not isinstance(entry["volumes"], dict):
        raise ValueError(f"{where}: volumes must be an object of name: {{path, key, kind}}")
    for vname, spec in entry["volumes"].items():
        if not _NAME.match(vname) or not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise ValueError(f"{where}: volume {vname!r} needs a plain name and a 'path' inside the download")
        if spec.get("kind") not in KINDS:
            raise ValueError(f"{where}: volume {vname!r}: kind must be one of {', '.join(KINDS)}; "
                             f"got {spec.get('kind')!r}")
        if spec.get("relabel") not in (None, "transforms"):
            raise ValueError(f"{where}: volume {vname!r}: relabel must be 'transforms' or absent")


def _registry(registry):
    if registry is None or isinstance(registry, (str, os.PathLike)):
        return load_registry(registry)
    return registry


def dataset_names(registry=None) -> list[str]:
    """The registry's dataset names, in its order (``registry``: a loaded registry, a file, or None)."""
    return list(_registry(registry))


def dataset_info(name, registry=None) -> dict:
    """The registry entry of dataset ``name``.

    Raises
    ------
    UnknownDatasetError
        ``name`` is not in the registry; the message names the nearest dataset.

    Examples
    --------
    >>> dataset_info("lucci")
    Traceback (most recent call last):
    ...
    emseg.datasets.registry.UnknownDatasetError: unknown dataset 'lucci'; did you mean 'lucchi'?
    """
    registry = _registry(registry)
    if name in registry:
        return registry[name]
    lowered = {k.lower(): k for k in registry}
    if isinstance(name, str) and name.lower() in lowered:
        return registry[lowered[name.lower()]]
    family = [k for k, e in registry.items() if e["family"] == str(name).lower()]
    if len(family) > 1:
        raise UnknownDatasetError(f"unknown dataset {name!r}; the {name} family has {', '.join(family)}")
    close = difflib.get_close_matches(str(name).lower(), list(registry), n=1, cutoff=0.5)
    if close:
        raise UnknownDatasetError(f"unknown dataset {name!r}; did you mean {close[0]!r}?")
    raise UnknownDatasetError(f"unknown dataset {name!r}; emseg datasets list shows the {len(registry)} known ones")


def total_size(entry) -> int | None:
    """Bytes to download for ``entry``: the sum of its files' sizes, None when one is not recorded.

    Examples
    --------
    >>> total_size({"files": [{"size": 10}, {"size": 5}]}), total_size({"files": [{"size": None}]})
    (15, None)
    """
    sizes = [f["size"] for f in entry["files"]]
    return None if not sizes or any(s is None for s in sizes) else sum(sizes)

"""emseg's reader of its exported models: bioimage.io packages (``.zip``) and bare ONNX files, and
ONNX networks run through onnxruntime.

A package that ``emseg export`` wrote carries the checkpoint itself (``emseg.safetensors``, its sha256
in ``rdf.yaml``) and the model card; they are checked and unpacked once per process into a temporary
folder that is removed at exit, and read as any checkpoint (:func:`emseg.models.reader.read_checkpoint`).
A bare ONNX export carries the checkpoint's header in its metadata (:data:`emseg.share.export.METADATA_KEY`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from typing import NamedTuple

__all__ = ["PackageFiles", "package_files", "onnx_header", "onnx_function", "is_package"]

_UNPACKED: dict = {}
_ROOT: list = []


class PackageFiles(NamedTuple):
    """The files of an emseg bioimage.io package, unpacked: its checkpoint, card (a dict) and ONNX weights."""

    checkpoint: str
    card: dict | None
    onnx: str | None


def is_package(path) -> bool:
    """Whether ``path`` names a ``.zip`` file (a bioimage.io package)."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).lower().endswith(".zip")


def _root():
    if not _ROOT:
        _ROOT.append(tempfile.mkdtemp(prefix="emseg-packages-"))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]


def package_files(path) -> PackageFiles:
    """Check and unpack the emseg files of the bioimage.io package ``path`` (once per process while it is unchanged).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a zip, no ``rdf.yaml``, a package emseg did not export (no ``config.emseg``), or a file whose
        sha256 is not the one ``rdf.yaml`` lists (the message names it).
    """
    import yaml

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"model {p}: no such bioimage.io package")
    st = os.stat(p)
    key = (os.path.abspath(p), st.st_mtime_ns, st.st_size)
    if key in _UNPACKED:
        return _UNPACKED[key]
    try:
        z = zipfile.ZipFile(p)
    except zipfile.BadZipFile:
        raise ValueError(f"model {p}: not a zip file (a bioimage.io package is a .zip)") from None
    with z:
        names = set(z.namelist())
        rdf_name = next((n for n in ("rdf.yaml", "bioimageio.yaml") if n in names), None)
        if rdf_name is None:
            raise ValueError(f"model {p}: a zip without rdf.yaml, not a bioimage.io package")
        rdf = yaml.safe_load(z.read(rdf_name)) or {}
        emseg = ((rdf.get("config") or {}).get("emseg") or {})
        if not emseg.get("checkpoint"):
            raise ValueError(f"model {p}: a bioimage.io package that emseg did not export (no config.emseg in "
                             f"{rdf_name}); emseg runs the packages `emseg export` writes")
        listed = {f.get("source"): f.get("sha256") for f in rdf.get("attachments") or []}
        listed[((rdf.get("weights") or {}).get("onnx") or {}).get("source")] = \
            ((rdf.get("weights") or {}).get("onnx") or {}).get("sha256")
        folder = tempfile.mkdtemp(dir=_root())

        def unpack(name):
            if name is None:
                return None
            if name not in names or os.path.basename(name) != name:
                raise ValueError(f"model {p}: {rdf_name} names {name!r}, which the package does not hold")
            data = z.read(name)
            want = listed.get(name)
            if want and hashlib.sha256(data).hexdigest() != want:
                raise ValueError(f"model {p}: {name} has sha256 {hashlib.sha256(data).hexdigest()}, but {rdf_name} "
                                 f"lists {want}: the package is damaged; export it again")
            out = os.path.join(folder, name)
            with open(out, "wb") as f:
                f.write(data)
            return out

        ckpt = unpack(emseg["checkpoint"])
        card_path = unpack(emseg.get("card"))
        onnx = unpack(((rdf.get("weights") or {}).get("onnx") or {}).get("source"))
    card = None
    if card_path:
        with open(card_path) as f:
            card = json.load(f) or None
    _UNPACKED[key] = PackageFiles(ckpt, card, onnx)
    return _UNPACKED[key]


def onnx_header(path) -> dict:
    """The emseg checkpoint header an exported ONNX file carries (ValueError naming the file if it has none)."""
    import onnxruntime as ort

    from .export import METADATA_KEY

    p = os.fspath(path)
    try:
        meta = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    except Exception as e:  # onnxruntime's own errors (not a model, damaged protobuf)
        raise ValueError(f"model {p}: onnxruntime cannot read it ({str(e).splitlines()[0][:200]})") from None
    if METADATA_KEY not in meta:
        raise ValueError(f"model {p}: an ONNX file without emseg's header (metadata {METADATA_KEY!r}); emseg runs the "
                         "ONNX files `emseg export --format onnx` writes")
    try:
        header = json.loads(meta[METADATA_KEY])
    except ValueError as err:
        raise ValueError(f"model {p}: its emseg header is not JSON ({err})") from None
    if not isinstance(header, dict) or not isinstance(header.get("init_args"), dict):
        raise ValueError(f"model {p}: its emseg header has no init_args")
    return header


def onnx_function(source, threads=None):
    """An onnxruntime session on CPU for ``source`` (a path or bytes) as a numpy function (N, C, ...) → (N, C', ...)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(os.fspath(source) if not isinstance(source, bytes) else source, options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def fn(x):
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return fn

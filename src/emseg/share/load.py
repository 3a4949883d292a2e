"""emseg's reader of its exported models: bioimage.io packages (``.zip``) and bare ONNX files, and
ONNX networks run through onnxruntime.

A package that ``emseg export`` wrote carries the checkpoint itself (``emseg.safetensors``, its sha256
in ``rdf.yaml``) and the model card; they are checked and unpacked into a temporary folder named by the
checkpoint's content (:func:`package_files`), and read as any checkpoint
(:func:`emseg.models.reader.read_checkpoint`).
A bare ONNX export carries the checkpoint's header in its metadata (:data:`emseg.share.export.METADATA_KEY`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from typing import NamedTuple

__all__ = ["PackageFiles", "package_files", "onnx_header", "onnx_function"]

_UNPACKED: dict = {}


class PackageFiles(NamedTuple):
    """The files of an emseg bioimage.io package, unpacked: its checkpoint, card (a dict) and ONNX weights."""

    checkpoint: str
    card: dict | None
    onnx: str | None


def _folder(sha256):
    """The folder a package's files are unpacked to: one per checkpoint content, shared by the processes of a
    machine (Dask workers, batch jobs) and reused, so a killed process leaves nothing new behind."""
    folder = os.path.join(tempfile.gettempdir(), f"emseg-packages-{os.getuid() if hasattr(os, 'getuid') else 0}",
                          sha256[:32])
    os.makedirs(folder, exist_ok=True)
    return folder


def package_files(path) -> PackageFiles:
    """Check and unpack the emseg files of the bioimage.io package ``path`` (once per process while it is unchanged).

    Every file used must have the sha256 that ``rdf.yaml`` lists for it; they are unpacked (atomically) into a
    folder named by the checkpoint's sha256 under the temporary directory, shared and reused.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a zip, no ``rdf.yaml``, a package emseg did not export (no ``config.emseg``), a file without a listed
        sha256 or whose sha256 is not the one listed (the message names the package).
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
        try:
            rdf = yaml.safe_load(z.read(rdf_name))
        except yaml.YAMLError as e:
            raise ValueError(f"model {p}: its {rdf_name} is not YAML ({str(e).splitlines()[0]})") from None
        config = rdf.get("config") if isinstance(rdf, dict) else None
        emseg = config.get("emseg") if isinstance(config, dict) else None
        if not isinstance(emseg, dict) or not isinstance(emseg.get("checkpoint"), str):
            raise ValueError(f"model {p}: a bioimage.io package that emseg did not export (no config.emseg in "
                             f"{rdf_name}); emseg runs the packages `emseg export` writes")
        listed = {}
        weights = rdf.get("weights") if isinstance(rdf.get("weights"), dict) else {}
        onnx = weights.get("onnx") if isinstance(weights.get("onnx"), dict) else {}
        for entry in [*(rdf.get("attachments") or []), onnx]:
            if isinstance(entry, dict) and isinstance(entry.get("source"), str):
                listed[entry["source"]] = entry.get("sha256")

        def read(name):
            if name not in names or os.path.basename(name) != name:
                raise ValueError(f"model {p}: {rdf_name} names {name!r}, which the package does not hold")
            data, want = z.read(name), listed.get(name)
            found = hashlib.sha256(data).hexdigest()
            if not want:
                raise ValueError(f"model {p}: {rdf_name} lists no sha256 for {name}; export it again")
            if found != want:
                raise ValueError(f"model {p}: {name} has sha256 {found}, but {rdf_name} lists {want}: the package is "
                                 "damaged; export it again")
            return data, found

        def unpack(folder, name, data):
            out = os.path.join(folder, name)
            if not os.path.isfile(out):
                part = f"{out}.{os.getpid()}.part"
                with open(part, "wb") as f:
                    f.write(data)
                os.replace(part, out)  # whole or not at all; the same bytes from every process
            return out

        data, sha = read(emseg["checkpoint"])
        folder = _folder(sha)
        ckpt = unpack(folder, "emseg.safetensors", data)
        card = None
        if isinstance(emseg.get("card"), str):
            card = json.loads(read(emseg["card"])[0] or b"null")
            card = card if isinstance(card, dict) else None
        onnx_path = unpack(folder, "weights.onnx", read(onnx["source"])[0]) if isinstance(onnx.get("source"), str) \
            else None
    _UNPACKED[key] = PackageFiles(ckpt, card, onnx_path)
    return _UNPACKED[key]


def onnx_header(path) -> dict:
    """The emseg checkpoint header an exported ONNX file carries (ValueError naming the file if it has none)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError(f"model {os.fspath(path)}: an ONNX model runs through onnxruntime: pip install 'emseg[onnx]'") \
            from None

    from .export import METADATA_KEY

    p = os.fspath(path)
    try:
        meta = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    except Exception as e:  # noqa: BLE001  # onnxruntime's own errors (not a model, damaged protobuf)
        raise ValueError(f"model {p}: onnxruntime cannot read it ({str(e).splitlines()[0][:200]})") from None
    if METADATA_KEY not in meta:
        raise ValueError(f"model {p}: an ONNX file without emseg's header (metadata {METADATA_KEY!r}); emseg runs the "
                         "ONNX files `emseg export --format onnx` writes")
    try:
        header = json.loads(meta[METADATA_KEY])
    except ValueError as err:
        raise ValueError(f"model {p}: its emseg header is not JSON ({err})") from None
    if not isinstance(header, dict) or not isinstance(header.get("init_args"), dict) or \
            not isinstance(header.get("extra") or {}, dict) or not isinstance(header.get("card") or {}, dict):
        raise ValueError(f"model {p}: its emseg header is damaged (init_args, extra and card must be JSON objects)")
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

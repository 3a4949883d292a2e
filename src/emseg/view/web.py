"""``emseg view``: volumes in neuroglancer, served from this machine (the ``neuroglancer`` package).

Every volume is served lazily as a neuroglancer ``LocalVolume`` (chunks read when the browser asks,
downsampled on the fly when zoomed out) with its voxel size in nm: raw as an image layer, labels as a
segmentation layer (click an object to select it), a channels-first prediction as one image layer per
channel with a colour map; a precomputed folder (``emseg mesh``) is served as it is by a small static
server beside it, meshes included. The servers bind 127.0.0.1 unless told otherwise; the viewer's URL
is printed, and the page, its state and the chunks are plain HTTP from there.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["layer_kind", "view_volumes"]

SHADERS = ("#uicontrol invlerp normalized\nvoid main() { emitRGB(colormapJet(normalized())); }",)
LABEL_DTYPES = ("uint16", "uint32", "uint64", "int32", "int64")


def layer_kind(vol) -> str:
    """``segmentation``, ``probabilities`` or ``image`` for an open emseg volume.

    Labels: what emseg wrote as labels, an OME-NGFF ``image-label``, or ids of 32/64 bits; probabilities:
    a channels-first (czyx) volume; anything else (uint8, uint16, floats): an image.
    """
    from ..io.runattrs import read_run_attrs

    attrs = read_run_attrs(vol.path, group_key(vol.format, vol.key), vol.format) or {}
    if attrs.get("kind") == "labels" or _is_label_image(vol):
        return "segmentation"
    if vol.meta.axes.startswith("c") or attrs.get("kind") == "prediction":
        return "probabilities"
    if str(np.dtype(vol.dtype)) in ("uint32", "uint64", "int32", "int64"):
        return "segmentation"
    return "image"


def group_key(fmt, key):
    """The key of an OME-Zarr image group (its attributes) for the key of its array (``.../0``)."""
    if fmt != "zarr" or not key:
        return key
    parent, _, name = key.rpartition("/")
    return (parent or None) if name.isdigit() else key


def _is_label_image(vol) -> bool:
    if vol.format != "zarr":
        return False
    import zarr

    try:
        node = zarr.open(vol.path, mode="r")
        key = group_key(vol.format, vol.key)
        attrs = (node[key] if key else node).attrs.asdict()
    except Exception:  # noqa: BLE001 - no attributes: not a label image
        return False
    return "image-label" in attrs or "image-label" in (attrs.get("ome") or {})


class _Channel:
    """Channel ``c`` of a (c, z, y, x) volume as a (z, y, x) array (float16 read as float32, which neuroglancer shows)."""

    def __init__(self, vol, c):
        self.vol, self.c = vol, c
        self.shape = tuple(vol.shape[1:])
        self.dtype = np.dtype(np.float32) if np.dtype(vol.dtype) == np.float16 else np.dtype(vol.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, roi):
        roi = roi if isinstance(roi, tuple) else (roi,)
        return np.asarray(self.vol[(self.c,) + roi]).astype(self.dtype, copy=False)


def view_volumes(paths, *, bind="127.0.0.1", port=0, names=None):
    """Serve ``paths`` (volumes emseg reads) in a neuroglancer viewer; returns ``(viewer, url, layers)``.

    ``layers`` lists ``(name, kind, key)``: the server answers ``/neuroglancer/info/KEY`` (the volume's
    scales) and ``/neuroglancer/npz/KEY/SCALE/START/END`` (a chunk). The volumes stay open while the viewer lives.
    """
    import neuroglancer

    from ..io import open_volume

    import socket

    try:  # a bad address or a taken port fails here, in one line, not inside the server's thread
        family = socket.getaddrinfo(bind, int(port))[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((bind, int(port)))
    except OSError as e:
        raise ValueError(f"--bind {bind} --port {port}: cannot serve there ({e})") from None
    neuroglancer.set_server_bind_address(bind, int(port))
    viewer = neuroglancer.Viewer()
    names = names or [_name(p) for p in paths]
    if len(set(names)) != len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names)]
    precomputed = [p for p in paths if is_precomputed(p)]
    static = serve_folders(precomputed, bind) if precomputed else {}
    vols = [None if is_precomputed(p) else open_volume(p) for p in paths]
    layers = []
    with viewer.txn() as state:
        for path, vol, name in zip(paths, vols, names):
            if vol is None:  # an emseg mesh folder: neuroglancer reads it from the static server
                url = f"precomputed://{static[os.fspath(path)]}"
                state.layers[name] = neuroglancer.SegmentationLayer(source=url)
                layers.append((name, "segmentation", url))
                continue
            kind = layer_kind(vol)
            spatial = vol.meta.spatial_axes
            vs = list(vol.voxel_size or (1.0,) * len(spatial))
            space = neuroglancer.CoordinateSpace(names=list(spatial), units="nm" if vol.voxel_size else "",
                                                 scales=vs)
            offset = [int(round(o / v)) for o, v in zip(vol.meta.offset or (0.0,) * len(spatial), vs)]
            if kind == "probabilities":
                for c in range(vol.shape[0]):
                    src = neuroglancer.LocalVolume(_Channel(vol, c), dimensions=space, voxel_offset=offset,
                                                   volume_type="image")
                    state.layers[f"{name}[{c}]"] = neuroglancer.ImageLayer(source=src, shader=SHADERS[0],
                                                                         opacity=0.5)
                    layers.append((f"{name}[{c}]", kind, f"{viewer.token}.{src.token}"))
            else:
                src = neuroglancer.LocalVolume(vol, dimensions=space, voxel_offset=offset, volume_type=kind)
                layer = neuroglancer.SegmentationLayer(source=src) if kind == "segmentation" else \
                    neuroglancer.ImageLayer(source=src)
                state.layers[name] = layer
                layers.append((name, kind, f"{viewer.token}.{src.token}"))
    viewer._emseg_volumes = vols  # kept open as long as the viewer
    viewer._emseg_static = static
    return viewer, viewer.get_viewer_url(), layers


def is_precomputed(path) -> bool:
    """Whether ``path`` is a neuroglancer precomputed folder (``emseg mesh``'s output): an ``info`` with a type."""
    info = os.path.join(os.fspath(path), "info")
    if not os.path.isfile(info):
        return False
    import json

    try:
        with open(info) as f:
            return json.load(f).get("type") in ("segmentation", "image")
    except (OSError, ValueError, AttributeError):
        return False


def serve_folders(folders, bind="127.0.0.1") -> dict:
    """Serve ``folders`` read-only over HTTP (with CORS, which the viewer's page needs) from one background
    server; returns folder -> its URL."""
    import functools
    import http.server
    import threading

    roots = {os.fspath(f): os.path.abspath(os.fspath(f)) for f in folders}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path):
            from urllib.parse import unquote

            parts = [p for p in unquote(path.split("?")[0].split("#")[0]).split("/") if p]
            if not parts or parts[0] not in mounts or any(p in (".", "..") for p in parts[1:]):
                return os.path.join(os.devnull, "missing")  # only the served folders, nothing above them
            return os.path.join(mounts[parts[0]], *parts[1:])

        def end_headers(self):
            self.send_header("Access-Control-Allow-Origin", "*")
            super().end_headers()

        def log_message(self, *args):  # quiet: the viewer asks for many chunks
            pass

    mounts = {f"d{i}": root for i, root in enumerate(roots.values())}
    try:
        server = http.server.ThreadingHTTPServer((bind, 0), functools.partial(Handler, directory=os.devnull))
    except OSError as e:
        raise ValueError(f"--bind {bind}: cannot serve there ({e})") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return {f: f"http://{host}:{port}/d{i}" for i, f in enumerate(roots)}


def _name(path):
    """A layer name: the dataset key's last part, else the file name without its suffixes."""
    from ..io.paths import split_key

    file, key = split_key(os.fspath(path))
    return key.rstrip("/").split("/")[-1] if key else os.path.basename(file.rstrip("/")).split(".")[0] or "volume"

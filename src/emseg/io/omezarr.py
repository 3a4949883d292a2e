"""Zarr v2 and v3 arrays and OME-Zarr (OME-NGFF 0.4 on Zarr v2, 0.5 on Zarr v3) images.

Reading: a plain array, or an OME-Zarr image group (its first, full-resolution dataset, with
the voxel size and offset from ``multiscales``). Writing always makes an OME-Zarr image group
(one scale, ``0``), so napari-ome-zarr, Fiji/BigDataViewer and neuroglancer show it with its voxel
size; arrays read by emseg are the same either way.
"""

from __future__ import annotations

import functools
import json
import os
import struct

import numpy as np

from .meta import VolumeMeta, plausible_voxel_size, to_nm
from .paths import KeyNotFoundError, check_key, suffix_hint
from .volume import Volume, VolumeReadError, describe_error

__all__ = ["open_zarr", "create_zarr", "list_zarr_arrays", "ome_multiscales"]

BLOSC_CODECS = ("zstd", "lz4", "lz4hc", "zlib", "blosclz")
BLOSC_LEVEL = 3  # the Blosc compression level of new Zarr arrays
_AXIS_TYPES = {"c": "channel", "t": "time", "z": "space", "y": "space", "x": "space"}
_METADATA_FILES = (".zgroup", ".zarray", ".zattrs", ".zmetadata", "zarr.json")


def list_zarr_arrays(node) -> list[str]:
    """Paths of every array below a Zarr group (or a path to one), sorted."""
    import zarr

    if not isinstance(node, (zarr.Group, zarr.Array)):
        path = node
        if not os.path.isdir(path):
            raise _unreadable(path, None, None)
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as e:
            raise _unreadable(path, None, e) from None
    else:
        store = node.store_path.store
        path = getattr(getattr(store, "_store", store), "root", str(store))
    if isinstance(node, zarr.Array):
        return [""]
    try:
        return sorted(name for name, m in node.members(max_depth=None) if isinstance(m, zarr.Array))
    except Exception as e:
        raise _unreadable(path, node.path or None, e, below=True) from None


def _bad_metadata(path, key, below=False) -> tuple[str, Exception] | None:
    """The first metadata file from the store's root down to ``key`` (and, with ``below``, in the
    groups under it) that is not a JSON object; None when all are. Chunk folders are not listed."""
    chain = [os.fspath(path)]
    for part in key.split("/") if key else []:
        chain.append(os.path.join(chain[-1], part))
    queue, seen = list(chain), 0
    while queue:
        folder = queue.pop(0)
        seen += 1
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        for name in sorted(names & set(_METADATA_FILES)):
            file = os.path.join(folder, name)
            try:
                with open(file, encoding="utf-8") as f:
                    doc = json.load(f)
                if not isinstance(doc, dict):
                    raise ValueError(f"holds a JSON {type(doc).__name__}, not an object")
            except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                return file, e
        if below and seen >= len(chain) and names & set(_METADATA_FILES) and ".zarray" not in names:
            queue += [os.path.join(folder, n) for n in sorted(names) if os.path.isdir(os.path.join(folder, n))]
    return None


def _unreadable(path, key, error, below=False) -> VolumeReadError:
    """A one-line error for a Zarr store (or node ``key`` in it, or a node below that) that zarr cannot open."""
    where = f"{path}:{key}" if key else f"{path}"
    folder = os.path.join(os.fspath(path), *(key.split("/") if key else []))
    bad = _bad_metadata(path, key, below)
    if bad is not None:
        file, e = bad
        why = ("is empty" if os.path.isfile(file) and os.path.getsize(file) == 0
               else f"is not valid JSON ({describe_error(e)})")
        return VolumeReadError(f"{where}: Zarr metadata file {file} {why}; the store is damaged: restore the file "
                               "or write the volume again")
    if os.path.isfile(path):
        return VolumeReadError(f"{path}: not a Zarr store: a Zarr store is a folder, this is a file"
                               f"{suffix_hint(path, 'zarr')}")
    if os.path.isdir(folder) and not set(os.listdir(folder)) & set(_METADATA_FILES):
        return VolumeReadError(f"{where}: not a Zarr array or group: {folder} holds no .zarray, .zgroup or "
                               "zarr.json")
    meta = [n for n in (".zarray", "zarr.json", ".zgroup") if os.path.isfile(os.path.join(folder, n))]
    if isinstance(error, KeyError) and meta:
        return VolumeReadError(f"{where}: Zarr metadata file {os.path.join(folder, meta[0])} lacks the field "
                               f"{error.args[0]!r}; the store is damaged: restore the file or write the volume again")
    return VolumeReadError(f"{where}: not a readable Zarr store or array ({describe_error(error)})")


def _member(node, name, path, key):
    """``node[name]``, with an error naming the store and its damaged metadata file."""
    try:
        return node[name]
    except Exception as e:
        raise _unreadable(path, "/".join(p for p in (key, name) if p), e) from None


def _checked_store(path, read_only):
    """A local store that refuses truncated Blosc chunks of the arrays named in its ``blosc_arrays``.

    numcodecs decodes a Blosc chunk from the sizes in its 16-byte header without checking them
    against the bytes it was given: a chunk file cut short (an interrupted copy, a full disk)
    decodes without an error, from memory past its end. This store compares the header's
    compressed size with the length of the chunk file before zarr decodes it.
    """
    from zarr.storage import LocalStore

    store = _checked_store_class()(LocalStore(str(path), read_only=read_only))
    store.blosc_arrays = set()
    return store


@functools.cache
def _checked_store_class():
    """The store class, made on first use so that importing this module does not import zarr."""
    from zarr.storage import WrapperStore

    class CheckedStore(WrapperStore):
        def _with_store(self, store):
            new = type(self)(store)
            new.blosc_arrays = self.blosc_arrays  # shared: arrays found later are checked by every copy
            return new

        async def get(self, key, prototype, byte_range=None):
            buf = await self._store.get(key, prototype, byte_range)
            if buf is not None and byte_range is None and self.blosc_arrays:
                if key.rpartition("/")[2] not in _METADATA_FILES and any(
                        a == "" or key.startswith(a + "/") for a in self.blosc_arrays):
                    _check_blosc(buf.as_numpy_array())
            return buf

    CheckedStore.__qualname__ = CheckedStore.__name__ = "CheckedStore"  # pickled by name: see __getattr__
    CheckedStore.__module__ = __name__
    return CheckedStore


def __getattr__(name):  # lets pickle find the lazily made store class (a pickled Volume of a Zarr array)
    if name == "CheckedStore":
        return _checked_store_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_blosc(data: np.ndarray) -> None:
    if data.size < 16:
        raise ValueError(f"Blosc chunk is truncated: {data.size} bytes, less than the 16-byte Blosc header")
    version, _, _, _, nbytes, _, cbytes = struct.unpack_from("<BBBBIII", data[:16].tobytes())
    if not 1 <= version <= 5 or cbytes > nbytes + 32:  # format versions 1-5; Blosc adds <= 16 (Blosc2: 32) bytes
        raise ValueError("not a Blosc chunk: its first 16 bytes are not a Blosc header")
    if data.size < cbytes:
        raise ValueError(f"Blosc chunk is truncated: the file holds {data.size} bytes, its header says {cbytes}")


def _blosc_coded(arr) -> bool:
    """Whether each chunk of ``arr`` is stored as one Blosc frame (Zarr v2 compressor, or v3 codecs)."""
    md = arr.metadata
    if getattr(md, "zarr_format", 3) == 2:
        return getattr(md.compressor, "codec_id", None) == "blosc"
    codecs = getattr(md, "codecs", ())
    return bool(codecs) and type(codecs[-1]).__name__ == "BloscCodec"  # not sharded, Blosc last


class _ChunkFiles:
    """Says which file holds chunk ``index`` of ``arr`` (in the store at ``path``), for read errors."""

    def __init__(self, arr, path):
        self.arr, self.path = arr, os.fspath(path)

    def __call__(self, index):
        arr, shards = self.arr, getattr(self.arr, "shards", None)
        if shards:
            shard = tuple(i * c // s for i, c, s in zip(index, arr.chunks, shards))
            return f"in shard {shard}, file {self.file(shard)}"
        return f"in file {self.file(index)}"

    def file(self, index) -> str:
        key = self.arr.metadata.encode_chunk_key(tuple(int(i) for i in index))
        return os.path.join(self.path, *(self.arr.path.split("/") if self.arr.path else []), *key.split("/"))


def ome_multiscales(attrs) -> list | None:
    """The ``multiscales`` list of OME-NGFF 0.4 (top level) or 0.5 (under ``ome``), or None."""
    if "ome" in attrs and isinstance(attrs["ome"], dict) and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"]
    return attrs.get("multiscales")


def _ome_meta(ms: dict, dataset: dict, path) -> VolumeMeta:
    axes_md = ms.get("axes") or [{"name": a} for a in "zyx"]  # 0.3 and older: implied tczyx subset
    axes_md = [{"name": a} if isinstance(a, str) else a for a in axes_md]
    names = "".join(str(a["name"]).lower() for a in axes_md)
    if set(names) - set("tczyx"):
        raise ValueError(f"{path}: OME-Zarr axes {names!r} are not a subset of t, c, z, y, x")
    scale = np.ones(len(names))
    translation = np.zeros(len(names))
    for transforms in (dataset.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale":
                scale = scale * np.asarray(t["scale"], float)
            elif t.get("type") == "translation":
                translation = translation + np.asarray(t["translation"], float)
    vs, off = [], []
    for i, a in enumerate(axes_md):
        if a["name"] in "zyx":
            unit = a.get("unit")
            vs.append(to_nm(scale[i], unit) if unit else None)
            off.append(to_nm(translation[i], unit) if unit else None)
    known = all(v is not None for v in vs)
    return VolumeMeta(names, plausible_voxel_size(vs) if known else None, tuple(off) if known else None)


def _plain_meta(arr, path) -> VolumeMeta:
    attrs = arr.attrs.asdict()
    axes = attrs.get("axes") if isinstance(attrs.get("axes"), str) else None
    axes = axes or {2: "yx", 3: "zyx", 4: "czyx"}.get(arr.ndim)
    if axes is None:
        raise ValueError(f"{path} is {arr.ndim}D; emseg reads 2D (yx), 3D (zyx) or 4D (czyx) arrays")
    n = sum(a in "zyx" for a in axes)
    vs = attrs.get("resolution", attrs.get("voxel_size"))
    vs = plausible_voxel_size(vs) if vs is not None and np.size(vs) == n else None
    off = attrs.get("offset")
    return VolumeMeta(axes, vs, tuple(off) if off is not None and np.size(off) == n else None)


def open_zarr(path, key=None, mode="r") -> Volume:
    """Open a Zarr array (v2 or v3) or OME-Zarr image lazily.

    A damaged store fails at open naming its damaged metadata file; a damaged chunk fails when
    it is read, naming the chunk and its file (a Blosc chunk cut short included, which numcodecs
    alone would decode into garbage).
    """
    key = check_key(path, key)
    if not os.path.isdir(path):
        raise _unreadable(path, None, None)
    store = _checked_store(path, read_only=mode == "r")
    arr, meta, key = _find_array(store, path, key, mode)
    if _blosc_coded(arr):
        store.blosc_arrays.add(arr.path)
    return Volume(arr, meta, path=path, key=key, format="zarr", mode=mode, chunk_location=_ChunkFiles(arr, path))


def _find_array(store, path, key, mode):
    """The array at ``key`` (or the only one, or an OME-Zarr image's full-resolution one), its
    metadata and its full key."""
    import zarr

    try:
        root = zarr.open(store, mode="r" if mode == "r" else "r+")
    except Exception as e:
        raise _unreadable(path, None, e) from None
    node, where = root, str(path)
    if key is not None:
        try:
            node = root[key]
        except KeyError:
            if _bad_metadata(path, key) is not None:
                raise _unreadable(path, key, None) from None
            raise KeyNotFoundError(f"{path} has no array or group {key!r}; arrays: "
                                   f"{', '.join(list_zarr_arrays(root)) or '(none)'}") from None
        except Exception as e:
            raise _unreadable(path, key, e) from None
        where = f"{path}:{key}"
    if isinstance(node, zarr.Array):
        return node, _plain_meta(node, where), key
    ms = ome_multiscales(node.attrs.asdict())
    if ms:
        dataset = ms[0]["datasets"][0]
        name, meta = dataset["path"], _ome_meta(ms[0], dataset, where)
    else:
        arrays = list_zarr_arrays(node)
        if len(arrays) != 1:
            raise ValueError(f"{where} is a group of {len(arrays)} arrays; name one as PATH:KEY. "
                             f"Arrays: {', '.join(arrays) or '(none)'}")
        name, meta = arrays[0], None
    full = "/".join(p for p in (key, name) if p)
    arr = _member(node, name, path, key)
    if not isinstance(arr, zarr.Array):
        raise VolumeReadError(f"{path}:{full}: not a Zarr array: {os.path.join(path, *full.split('/'))} holds no "
                              "complete .zarray or zarr.json (its metadata is missing or damaged)")
    return arr, meta or _plain_meta(arr, f"{path}:{full}"), full


def ome_attrs(meta: VolumeMeta, zarr_format: int) -> dict:
    """OME-NGFF ``multiscales`` attributes for a one-scale image with ``meta``'s voxel size."""
    vs = iter(meta.voxel_size or (1.0,) * len(meta.spatial_axes))
    off = iter(meta.offset or (0.0,) * len(meta.spatial_axes))
    axes, scale, translation = [], [], []
    for a in meta.axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if a in "zyx":
            if meta.voxel_size is not None:
                entry["unit"] = "nanometer"
            scale.append(float(next(vs)))
            translation.append(float(next(off)))
        else:
            scale.append(1.0)
            translation.append(0.0)
        axes.append(entry)
    transforms = [{"type": "scale", "scale": scale}]
    if any(translation):
        transforms.append({"type": "translation", "translation": translation})
    ms = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": transforms}]}
    if zarr_format == 2:
        return {"multiscales": [{"version": "0.4", **ms}]}
    return {"ome": {"version": "0.5", "multiscales": [ms]}}


def create_zarr(path, key, shape, dtype, chunks, meta: VolumeMeta, *, zarr_format=2, compression="zstd") -> Volume:
    """Create an OME-Zarr image group (at ``key`` inside the store, or at its root) for blockwise writes.

    Chunks are stored nested (``0/1/2``), as OME-NGFF requires; compression is Blosc with
    ``compression`` as its codec (``zstd``, ``lz4``, ``zlib``…) or ``None``.
    """
    import zarr
    from zarr.codecs import BloscCodec

    if compression is not None and compression not in BLOSC_CODECS:
        raise ValueError(f"Zarr compression must be one of {BLOSC_CODECS} (Blosc codecs) or None; "
                         f"got {compression!r}")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3; got {zarr_format!r}")
    key = check_key(path, key)
    root = zarr.open_group(str(path), mode="a", zarr_format=zarr_format)
    if key:
        if key in root:
            raise FileExistsError(f"{path} already holds {key!r}; pass overwrite=True or use another key")
        group = root.create_group(key)
    else:
        if len(list(root.members())):
            raise FileExistsError(f"{path} is not empty; pass overwrite=True or write to another path")
        group = root
    group.attrs.update(ome_attrs(meta, zarr_format))
    kwargs = {}
    if compression is None:
        kwargs["compressors"] = None
    elif zarr_format == 2:
        from numcodecs import Blosc

        kwargs["compressors"] = Blosc(cname=compression, clevel=BLOSC_LEVEL, shuffle=Blosc.SHUFFLE)
    else:
        kwargs["compressors"] = BloscCodec(cname=compression, clevel=BLOSC_LEVEL, shuffle="shuffle")
    if zarr_format == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        kwargs["dimension_names"] = list(meta.axes)
    arr = group.create_array("0", shape=tuple(shape), chunks=tuple(chunks), dtype=np.dtype(dtype),
                             fill_value=0, **kwargs)
    return Volume(arr, meta, path=path, key="/".join(p for p in (key, "0") if p), format="zarr", mode="r+")

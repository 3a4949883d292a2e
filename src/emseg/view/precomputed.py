"""``emseg mesh``: a label volume as a neuroglancer *precomputed* segmentation with a 3D mesh per object.

The folder ``OUT`` can be served by any static web server (``python -m http.server``) and opened in
neuroglancer as ``precomputed://http://HOST/OUT``::

    OUT/info                        the segmentation: data type, size, voxel size (nm), "mesh": "mesh"
    OUT/<vx>_<vy>_<vz>/X0-X1_Y0-Y1_Z0-Z1   the ids, raw chunks (little-endian, x fastest)
    OUT/mesh/info                   {"@type": "neuroglancer_legacy_mesh"}
    OUT/mesh/ID:0                   {"fragments": ["ID:0:1"]}
    OUT/mesh/ID:0:1                 the mesh of object ID (uint32 vertex count, float32 xyz in nm, uint32 triangles)

Each object is meshed with zmesh (marching cubes and, with ``simplify``, quadric simplification) on
its bounding box only, read from the (lazy) volume; the boxes come from :func:`emseg.measure.region_table`
(blockwise, bounded memory), so memory grows with the largest object, not with the volume. The folder
is written under a hidden name and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

__all__ = ["write_precomputed", "read_mesh"]


def write_precomputed(labels, out, *, voxel_size=None, simplify=0.0, chunk=64, workers=2, overwrite=False) -> dict:
    """Write ``labels`` (a path emseg reads) to the precomputed folder ``out``; returns its ``info`` plus the
    number of meshes (``n_meshes``) and triangles (``n_triangles``).

    ``simplify``: the largest error (nm) the mesh simplification may make; 0 keeps the marching-cubes mesh.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..io import open_volume
    from ..io.lock import output_lock
    from ..io.siblings import remove_ours, sibling
    from ..measure import region_table
    from ..measure.table import check_labels_volume

    out = os.fspath(out).rstrip("/")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{out}: output folder {parent} does not exist")
    if simplify < 0:
        raise ValueError(f"simplify must be >= 0 nm; got {simplify}")
    with output_lock(out, what=out), open_volume(labels) as vol:
        if os.path.lexists(out) and not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or write to another folder")
        shape = check_labels_volume(vol, labels)
        if len(shape) != 3:
            raise ValueError(f"{labels}: emseg mesh takes a (z, y, x) label volume; got shape {shape}")
        vs = tuple(float(v) for v in (voxel_size or vol.voxel_size or (1.0, 1.0, 1.0)))
        table = region_table(vol, voxel_size=vs, workers=workers)
        tmp = sibling(out, None, ".emseg-partial-")
        if os.path.lexists(tmp):
            remove_ours(tmp, parent)
        os.makedirs(os.path.join(tmp, "mesh"))
        dtype = "uint64" if int(table["id"].max(initial=0)) >= 2**32 else "uint32"
        key = "_".join(f"{v:g}" for v in vs[::-1])
        info = {"@type": "neuroglancer_multiscale_volume", "type": "segmentation", "data_type": dtype,
                "num_channels": 1, "mesh": "mesh",
                "scales": [{"key": key, "size": list(shape[::-1]), "resolution": list(vs[::-1]),
                            "voxel_offset": [0, 0, 0], "chunk_sizes": [[chunk] * 3], "encoding": "raw"}]}
        _write_json(os.path.join(tmp, "info"), info)
        _write_json(os.path.join(tmp, "mesh", "info"), {"@type": "neuroglancer_legacy_mesh"})
        os.makedirs(os.path.join(tmp, key))
        starts = [range(0, n, chunk) for n in shape]
        boxes = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(lambda b: _write_chunk(vol, tmp, key, b, chunk, shape, dtype), boxes))
            counts = list(pool.map(lambda r: _write_mesh(vol, tmp, table, r, vs, simplify), range(len(table["id"]))))
        if os.path.lexists(out):
            remove_ours(out, parent) if os.path.basename(out).startswith(".emseg-") else _replace(out)
        os.replace(tmp, out)
    return {**info, "n_meshes": int(sum(c > 0 for c in counts)), "n_triangles": int(sum(counts))}


def _replace(out):
    import shutil

    if not (os.path.isfile(os.path.join(out, "info")) and os.path.isfile(os.path.join(out, "mesh", "info"))):
        raise ValueError(f"{out} exists and is not a precomputed folder written by emseg mesh; not replacing it")
    shutil.rmtree(out)


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def _write_chunk(vol, folder, key, start, chunk, shape, dtype):
    stop = [min(s + chunk, n) for s, n in zip(start, shape)]
    block = np.asarray(vol[tuple(slice(a, b) for a, b in zip(start, stop))])
    (z0, y0, x0), (z1, y1, x1) = start, stop
    with open(os.path.join(folder, key, f"{x0}-{x1}_{y0}-{y1}_{z0}-{z1}"), "wb") as f:
        f.write(np.ascontiguousarray(block).astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes())


def _write_mesh(vol, folder, table, row, vs, simplify):
    """Mesh object ``row`` of ``table`` on its bounding box (+1 voxel); returns its triangle count."""
    import zmesh

    oid = int(table["id"][row])
    lo = [max(0, int(table[f"bbox_{a}0"][row]) - 1) for a in "zyx"]
    hi = [min(n, int(table[f"bbox_{a}1"][row]) + 1) for a, n in zip("zyx", vol.shape)]
    mask = np.pad((np.asarray(vol[tuple(slice(a, b) for a, b in zip(lo, hi))]) == oid).astype(np.uint8), 1)
    lo = [a - 1 for a in lo]  # the pad: objects on the volume's border are closed there
    mesher = zmesh.Mesher(vs[::-1])
    mesher.mesh(np.asfortranarray(mask.T))  # x, y, z: neuroglancer's order
    mesh = mesher.get(1, normals=False, reduction_factor=100 if simplify else 0,
                      max_error=simplify if simplify else None)
    mesher.clear()
    verts = (mesh.vertices + (np.asarray(lo[::-1]) + 0.5) * np.asarray(vs[::-1])).astype("<f4")  # voxel i spans [i, i+1)
    faces = mesh.faces.astype("<u4")
    with open(os.path.join(folder, "mesh", f"{oid}:0:1"), "wb") as f:
        f.write(struct.pack("<I", len(verts)) + verts.tobytes() + faces.tobytes())
    _write_json(os.path.join(folder, "mesh", f"{oid}:0"), {"fragments": [f"{oid}:0:1"]})
    return len(faces)


def read_mesh(path) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (n, 3) float32 xyz nm, triangles (m, 3) uint32)`` of a legacy precomputed mesh fragment."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<I", data[:4])[0]
    verts = np.frombuffer(data, "<f4", 3 * n, 4).reshape(n, 3)
    faces = np.frombuffer(data, "<u4", offset=4 + 12 * n).reshape(-1, 3)
    return verts, faces

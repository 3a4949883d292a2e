"""The built-in example: the README's first command runs it on a fresh machine.

Today it synthesizes an EM-like volume with ground truth, writes it as OME-Zarr (raw, neuron
ids, mitochondria ids) and describes what was written. Training, blockwise prediction,
instances and evaluation join it as those stages land.
"""

from __future__ import annotations

import os
import time

__all__ = ["run_demo"]


def run_demo(out="emseg-demo", *, shape=(32, 256, 256), seed=0, echo=print) -> str:
    """Run the example into folder ``out``; returns the path of the OME-Zarr written."""
    from .data.synthetic import synthetic_em
    from .io import volume_info, write_volume

    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    em = synthetic_em(tuple(shape), seed=seed, defects=True)
    echo(f"synthesized {em.raw.shape} EM-like volume at {'x'.join(f'{v:g}' for v in em.voxel_size)} nm "
         f"in {time.perf_counter() - t0:.1f} s: {int(em.neurons.max())} cells, {int(em.mito.max())} mitochondria, "
         f"defects {em.defects}")
    path = os.path.join(out, "synthetic.zarr")
    for key, data in (("raw", em.raw), ("labels/neurons", em.neurons), ("labels/mito", em.mito)):
        write_volume(f"{path}:{key}", data, voxel_size=em.voxel_size, overwrite=True)
    for key in ("raw", "labels/neurons", "labels/mito"):
        info = volume_info(path, key)
        s = info["sample"]
        echo(f"{path}:{key}  {info['shape']} {info['dtype']}  voxel size {info['voxel_size_nm']} nm  "
             f"chunks {info['chunks']}  {info['size_on_disk_bytes'] / 2**20:.2f} MiB on disk  "
             f"values {s['min']}..{s['max']}")
    echo(f"wrote {path} (OME-Zarr: open it in napari, Fiji/BigDataViewer or neuroglancer)")
    return path

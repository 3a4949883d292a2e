"""Makes docs/napari.png: synthetic EM (emseg.synthetic) with its mitochondria, written as an OME-Zarr image with
a label image and pyramids, opened in napari through emseg's reader. Run on a screen (or Xvfb):
``DISPLAY=:1 QT_QPA_PLATFORM=xcb python docs/napari_screenshot.py``."""

import os
import tempfile

import napari
from PIL import Image

from emseg.io import write_volume
from emseg.io.ome_labels import register_label_image
from emseg.io.pyramid import add_pyramid
from emseg.synthetic import synthetic_em

folder = tempfile.mkdtemp()
em = synthetic_em((16, 512, 512), seed=7)
raw = os.path.join(folder, "raw.zarr")
write_volume(raw, em.raw, voxel_size=em.voxel_size, chunks=(8, 128, 128))
add_pyramid(raw, method="mean", min_size=128)
write_volume(f"{raw}:labels/mito", em.mito.astype("uint16"), voxel_size=em.voxel_size, chunks=(8, 128, 128))
register_label_image(f"{raw}:labels/mito")
add_pyramid(raw, "labels/mito", method="mode", min_size=128)
viewer = napari.Viewer(show=True)
viewer.open(raw, plugin="emseg")
viewer.dims.set_point(0, em.voxel_size[0] * 8)
shot = viewer.screenshot(canvas_only=False, flash=False)
Image.fromarray(shot).save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "napari.png"))
viewer.close()

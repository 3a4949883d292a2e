"""The napari plugin in a real napari viewer on a virtual screen (Xvfb): a segment output opened through the
plugin's reader (layers, their types, scales and levels), the writer, and the segment and fit widgets."""

import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from conftest import tiny_bc_model

napari = pytest.importorskip("napari")


def _xvfb():
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    return xvfb


@pytest.fixture
def screen():
    """Inside the child process: the virtual screen the parent started (see ``test_in_a_viewer``)."""
    if not os.environ.get("EMSEG_NAPARI_CHILD"):
        pytest.skip("runs in a child process with its own X screen (test_in_a_viewer)")
    return os.environ["DISPLAY"]


def test_in_a_viewer(tmp_path):
    """Runs this file's viewer tests in a child pytest on a fresh Xvfb screen, so Qt never lives in this
    process (an X server that goes away takes the process that holds a Qt window with it)."""
    import sys

    display = f":{100 + os.getpid() % 400}"
    xvfb = subprocess.Popen([_xvfb(), display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "EMSEG_NAPARI_CHILD": "1"}
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__,
                            "-k", "not test_in_a_viewer", "--basetemp", str(tmp_path / "child")],
                           capture_output=True, text=True, env=env, timeout=900)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    summary = [line for line in r.stdout.splitlines() if " passed" in line or " failed" in line]
    assert r.returncode == 0 and summary and "2 passed" in summary[-1], r.stdout[-4000:] + r.stderr[-2000:]


@pytest.fixture
def segmented(tmp_path):
    from emseg.io import write_volume
    from emseg.io.pyramid import add_pyramid
    from scipy import ndimage

    from emseg.workflows import segment_volume

    smooth = ndimage.gaussian_filter(np.random.default_rng(0).random((6, 160, 144)), (1, 3, 3))
    raw = ((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255).astype(np.uint8)
    write_volume(tmp_path / "raw.zarr", raw, voxel_size=(30, 6, 6), chunks=(6, 64, 64))
    add_pyramid(tmp_path / "raw.zarr", method="mean", min_size=64)
    tiny_bc_model(tmp_path / "m.safetensors")
    from emseg.instances import PostprocessConfig

    segment_volume(str(tmp_path / "raw.zarr"), str(tmp_path / "raw.zarr:labels/cells"), str(tmp_path / "m.safetensors"),
                   postprocess=PostprocessConfig(method="bc", params={"seed_threshold": 0.6, "min_seed_size": 4}))
    from emseg.io.ome_labels import register_label_image

    register_label_image(tmp_path / "raw.zarr:labels/cells")
    add_pyramid(tmp_path / "raw.zarr", "labels/cells", method="mode", min_size=64)
    return tmp_path


def test_reader_layers_types_scales_levels(screen, segmented, tmp_path):
    from emseg.io import read_volume

    viewer = napari.Viewer(show=True)  # on the virtual screen: a canvas that is drawn
    try:
        layers = viewer.open(str(segmented / "raw.zarr"), plugin="emseg")
        assert [(type(x).__name__, x.name) for x in layers] == [("Image", "raw"), ("Labels", "cells")]
        raw, cells = layers
        for layer in layers:
            np.testing.assert_allclose(layer.scale, (30, 6, 6))
            assert layer.multiscale and len(layer.data) == 3 and tuple(layer.data[0].shape) == (6, 160, 144)
        ids = set(np.unique(read_volume(segmented / "raw.zarr:labels/cells")))
        assert len(ids) > 3 and set(np.unique(np.asarray(cells.data[2]))) <= ids  # no invented ids
        shot = viewer.screenshot(canvas_only=True, flash=False)
        assert shot.shape[2] == 4 and len(np.unique(shot[..., :3].reshape(-1, 3), axis=0)) > 50  # drawn
        cells.save(str(tmp_path / "saved.tif"), plugin="emseg")  # the writer
        np.testing.assert_array_equal(read_volume(tmp_path / "saved.tif"), read_volume(segmented / "raw.zarr:labels/cells"))
        from emseg.io import open_volume  # the writer kept the voxel size

        with open_volume(tmp_path / "saved.tif") as v:
            np.testing.assert_allclose(v.voxel_size, (30, 6, 6))
    finally:
        viewer.close()


def test_segment_and_fit_widgets(screen, segmented, tmp_path, monkeypatch):
    from emseg.view import napari_plugin

    viewer = napari.Viewer(show=True)  # on the virtual screen: a canvas that is drawn
    try:
        raw = viewer.open(str(segmented / "raw.zarr"), plugin="emseg")[0]
        data, meta, kind = napari_plugin.segment_widget(raw, model=str(segmented / "m.safetensors"),
                                                       params="seed_threshold=0.6, min_seed_size=4",
                                                       out_dir=str(tmp_path / "w"))
        assert kind == "labels" and meta["scale"] == (30, 6, 6)
        from emseg.io import read_volume  # the same objects as emseg segment with those parameters

        from conftest import same_partition

        assert same_partition(data, read_volume(segmented / "raw.zarr:labels/cells")) and len(np.unique(data)) > 3
        painted = np.zeros((6, 160, 144), np.uint16)
        painted[1], painted[4] = data[1], data[4]
        labels = viewer.add_labels(painted, scale=raw.scale, name="painted")
        seen = {}

        def fake_fit(config):  # the fit itself is tested in tests/fit; here: what the widget hands it
            from emseg.io import read_volume

            seen.update(sections=config.sections, minutes=config.minutes,
                        labels=read_volume(config.labels), raw=read_volume(config.raw))

        monkeypatch.setattr("emseg.fit.run.fit", fake_fit)
        napari_plugin.fit_widget(raw, labels, out_dir=str(tmp_path / "fit"), minutes=2.0)
        assert seen["sections"] == (1, 4) and seen["minutes"] == 2.0
        np.testing.assert_array_equal(seen["labels"], painted)
        assert seen["raw"].shape == (6, 160, 144)
        with pytest.raises(ValueError, match="empty"):
            napari_plugin.fit_widget(raw, viewer.add_labels(np.zeros_like(painted)), minutes=1.0)
    finally:
        viewer.close()

"""emseg measure --report: the page, its summary numbers and its pictures."""

import numpy as np
from PIL import Image
from scipy import ndimage

from emseg.measure import region_table
from emseg.measure.report import summary, write_report


def test_report_page_and_pictures(tmp_path):
    rng = np.random.default_rng(2)
    lab = ndimage.label(ndimage.gaussian_filter(rng.random((16, 64, 64)), 2.0) > 0.52)[0].astype(np.uint16)
    raw = rng.integers(0, 255, lab.shape).astype(np.uint8)
    vs = (30.0, 8.0, 8.0)
    t = region_table(lab, raw, voxel_size=vs)
    page = write_report(t, tmp_path / "rep", lab, raw, vs, n_show=3, title="blobs")
    text = open(page).read()
    s = summary(t, lab.shape, vs)
    assert s["objects"] == len(np.unique(lab)) - 1 > 5
    assert abs(s["volume_fraction"] - np.count_nonzero(lab) / lab.size) < 1e-12
    assert f"<td>objects</td><td>{s['objects']}</td>" in text and "16×64×64 voxels of 30×8×8 nm" in text
    for name in ("histograms", "largest", "smallest"):
        assert f"src='{name}.png'" in text
        with Image.open(tmp_path / "rep" / f"{name}.png") as im:
            assert im.width > 200 and im.height > 100
            assert len(np.unique(np.asarray(im.convert("L")))) > 10  # drawn, not blank


def test_report_of_an_empty_volume(tmp_path):
    lab = np.zeros((2, 8, 8), np.uint8)
    page = write_report(region_table(lab), tmp_path / "rep", lab)
    assert "<td>objects</td><td>0</td>" in open(page).read()


def test_report_of_a_2d_image(tmp_path):
    from emseg.measure.table import _Section

    lab = np.zeros((40, 50), np.uint8)
    lab[5:15, 5:20], lab[20:35, 25:45] = 1, 2
    t = region_table(lab, voxel_size=(4.0, 4.0))
    page = write_report(t, tmp_path / "rep", _Section(lab), None, (1.0, 4.0, 4.0))
    assert "<td>objects</td><td>2</td>" in open(page).read() and (tmp_path / "rep" / "largest.png").exists()

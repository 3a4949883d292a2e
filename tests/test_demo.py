"""`emseg demo`, the README's first command, end to end (half its default training steps, to keep the suite short:
350 steps measured IoU 0.87, AP50 0.75, PQ 0.74 on this seed)."""

import json
import os

import numpy as np
from PIL import Image

from emseg.cli import main as emseg


def test_demo_runs_the_whole_pipeline_and_reports(capsys):
    assert emseg(["demo", "--out", "demo", "--steps", "350"]) == 0
    out = capsys.readouterr().out
    assert "[5/5] report: " in out and out.strip().endswith("report.html")
    with open("demo/report.json") as f:
        report = json.load(f)
    m = report["metrics"]
    assert report["steps"] >= 250 and m["objects (gt)"] > 20  # 350 unless the 3-minute cap stopped it
    assert m["foreground IoU"] > 0.75, m  # half a minute of training finds the mitochondria
    assert m["AP@0.5"] > 0.5 and m["PQ"] > 0.5, m  # and separates them into instances
    page = open("demo/report.html").read()
    assert "<table>" in page and "foreground IoU" in page
    for section in report["pictures"].values():
        assert len(section) == 4
        for title, name in section.items():
            assert f'src="{name}"' in page
            img = Image.open(os.path.join("demo", name))
            assert img.size == (512, 512) and img.mode == "RGB"
    for section in report["pictures"].values():  # the overlays are coloured where there are objects
        img = np.asarray(Image.open(os.path.join("demo", section["instances (emseg)"])))
        assert (np.ptp(img.astype(int), axis=-1) > 40).mean() > 0.01


def test_demo_rejects_a_bad_shape(capsys):
    assert emseg(["demo", "--out", "demo", "--shape", "4,64,64"]) == 2
    assert "shape must be z,y,x of at least 8,128,128" in capsys.readouterr().err

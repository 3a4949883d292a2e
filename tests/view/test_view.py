"""emseg view: a real neuroglancer server on loopback; the page, the viewer state and chunks fetched over HTTP."""

import http.client
import io
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from urllib.parse import urlparse

import numpy as np
import pytest

from emseg.io import VolumeMeta, create_volume, read_volume, write_volume

pytest.importorskip("neuroglancer")


@pytest.fixture
def volumes(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (6, 40, 50)).astype(np.uint8)
    write_volume(tmp_path / "raw.zarr", raw, voxel_size=(40, 8, 8))
    write_volume(tmp_path / "ids.zarr", rng.integers(0, 9, raw.shape).astype(np.uint32), voxel_size=(40, 8, 8))
    p = create_volume(tmp_path / "pred.zarr", (2,) + raw.shape, np.float16, chunks=(2, 6, 40, 50),
                      meta=VolumeMeta("czyx", (40, 8, 8)))
    p[:] = rng.random((2,) + raw.shape).astype(np.float16)
    p.close()
    return tmp_path


def _get(url):
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status, r.read()


def _state(url, viewer_token):
    """The viewer's shared state, as the browser gets it: the first events of /events/TOKEN."""
    u = urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    c.request("GET", f"/events/{viewer_token}?c=emseg-test&gc=&gs=")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("content-type") == "text/event-stream"
    buf = b""
    while b'"k": "s"' not in buf:
        buf += r.read1(65536)
    c.close()
    events = [json.loads(line[6:]) for line in buf.decode().split("\n\n") if line.startswith("data: ")]
    return next(e["s"] for e in events if e["k"] == "s")


def test_layers_state_and_chunks_over_http(volumes):
    from emseg.view import view_volumes

    paths = [volumes / "raw.zarr", volumes / "ids.zarr", volumes / "pred.zarr"]
    viewer, url, layers = view_volumes(paths)
    assert urlparse(url).hostname == "127.0.0.1"
    assert [(n, k) for n, k, _ in layers] == [("raw", "image"), ("ids", "segmentation"),
                                              ("pred[0]", "probabilities"), ("pred[1]", "probabilities")]
    status, page = _get(url)
    assert status == 200 and b"neuroglancer" in page
    state = _state(url, viewer.token)
    assert [(x["name"], x["type"]) for x in state["layers"]] == [("raw", "image"), ("ids", "segmentation"),
                                                                ("pred[0]", "image"), ("pred[1]", "image")]
    base = url.split("/v/")[0]
    expected = {"raw": read_volume(volumes / "raw.zarr"), "ids": read_volume(volumes / "ids.zarr"),
                "pred[1]": read_volume(volumes / "pred.zarr")[1].astype(np.float32)}
    for name, _, key in layers:
        info = json.loads(_get(f"{base}/neuroglancer/info/{key}")[1])
        assert info["coordinateSpace"] == {"z": [4e-08, "m"], "y": [8e-09, "m"], "x": [8e-09, "m"]}
        assert info["shape"] == [6, 40, 50]
        if name in expected:
            _, data = _get(f"{base}/neuroglancer/npz/{key}/1,1,1/2,8,16/5,24,40")
            chunk = np.load(io.BytesIO(zlib.decompress(data)))
            np.testing.assert_array_equal(chunk, expected[name][2:5, 8:24, 16:40])
            assert info["dataType"] == str(expected[name].dtype)


def test_cli_serves_until_interrupted(volumes):
    proc = subprocess.Popen([sys.executable, "-m", "emseg", "view", "raw.zarr", "ids.zarr"], cwd=volumes,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        while not any(line.startswith("open http") for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        assert "  raw: image\n" in lines and "  ids: segmentation\n" in lines
        url = lines[-1].split()[1]
        assert _get(url)[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in out, err


def test_precomputed_folder_is_served_for_the_viewer(tmp_path):
    pytest.importorskip("zmesh")
    from emseg.view import view_volumes
    from emseg.view.precomputed import read_mesh, write_precomputed

    lab = np.zeros((6, 30, 30), np.uint32)
    lab[1:5, 5:20, 8:25] = 4
    write_volume(tmp_path / "lab.zarr", lab, voxel_size=(40, 8, 8))
    write_precomputed(tmp_path / "lab.zarr", tmp_path / "seg")
    viewer, url, layers = view_volumes([tmp_path / "seg"])
    (name, kind, source), = layers
    assert kind == "segmentation" and source.startswith("precomputed://http://127.0.0.1:")
    state = _state(url, viewer.token)
    assert state["layers"][0]["type"] == "segmentation" and state["layers"][0]["source"][0]["url"] == source
    base = source[len("precomputed://"):]
    info = json.loads(_get(f"{base}/info")[1])
    assert info["mesh"] == "mesh" and info["scales"][0]["resolution"] == [8, 8, 40]
    _, frag = _get(f"{base}/mesh/4:0:1")
    (tmp_path / "frag").write_bytes(frag)
    verts, _ = read_mesh(tmp_path / "frag")
    np.testing.assert_array_equal(verts, read_mesh(tmp_path / "seg" / "mesh" / "4:0:1")[0])
    with pytest.raises(urllib.error.HTTPError):  # nothing outside the served folder
        _get(f"{base}/../lab.zarr/.zattrs")

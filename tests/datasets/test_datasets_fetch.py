"""fetch_dataset against a loopback server: archives become OME-Zarr with the registry's voxel size, resumable,
complete or absent."""

import glob
import hashlib
import io
import json
import os
import tarfile
import zipfile

import h5py
import numpy as np
import pytest
import zarr

from emseg.datasets import ChecksumError, DownloadInterrupted, fetch_dataset
from emseg.io import open_volume, write_volume
from loopback_server import server  # noqa: F401 - the loopback HTTP server fixture

RNG = np.random.default_rng(7)
RAW = RNG.integers(0, 256, (4, 24, 32), dtype=np.uint8)
LABELS = (RNG.integers(0, 3, (4, 24, 32)) * 7).astype(np.uint16)


def _zip_of_tifs(folder) -> bytes:
    """stack/raw.tif and stack/labels.tif (written with a voxel size the registry overrides), zipped."""
    write_volume(os.path.join(folder, "raw.tif"), RAW, voxel_size=(1, 1, 1))
    write_volume(os.path.join(folder, "labels.tif"), LABELS)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("raw.tif", "labels.tif"):
            z.write(os.path.join(folder, name), f"stack/{name}")
    return buf.getvalue()


def entry(server, data, name="tiny", filename="tiny.zip", checksum=True, **fields):
    e = {"name": name, "family": "tiny", "title": "a tiny test stack",
         "files": [{"url": server.url(filename), "filename": filename, "size": len(data),
                    "checksum": ("sha256:" + hashlib.sha256(data).hexdigest()) if checksum is True else checksum}],
         "volumes": {"raw": {"path": "stack/raw.tif", "kind": "raw"},
                     "labels": {"path": "stack/labels.tif", "kind": "labels"}},
         "voxel_size": [30, 8, 8], "modality": "ssTEM", "organism": "none", "tissue": "none", "labels": "ids",
         "licence": "CC0", "citation": "none", "reference": None, "homepage": "http://127.0.0.1", "source": "this test"}
    e.update(fields)
    server.files[filename] = data
    return {name: e}


@pytest.fixture
def tiny(server, tmp_path):
    os.makedirs(tmp_path / "src")
    data = _zip_of_tifs(str(tmp_path / "src"))
    return server, data, entry(server, data)


def _leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith("."))


def test_full_fetch_converts_to_ome_zarr_with_the_voxel_size(tiny, tmp_path):
    server, data, reg = tiny
    r = fetch_dataset("tiny", tmp_path / "data", registry=reg)
    assert r.path == str(tmp_path / "data" / "tiny") and not r.already and r.converted
    assert r.volumes == {"raw": ["raw.zarr"], "labels": ["labels.zarr"]}
    for vol, want in (("raw.zarr", RAW), ("labels.zarr", LABELS)):
        with open_volume(os.path.join(r.path, vol)) as v:
            assert v.voxel_size == (30.0, 8.0, 8.0)  # the registry's, not the file's (1, 1, 1)
            np.testing.assert_array_equal(v[...], want)
            assert v.dtype == want.dtype
        ms = zarr.open_group(os.path.join(r.path, vol), mode="r").attrs["multiscales"]  # OME-NGFF metadata
        assert ms[0]["datasets"][0]["coordinateTransformations"][0]["scale"][-3:] == [30.0, 8.0, 8.0]
    record = json.load(open(os.path.join(r.path, "dataset.json")))
    assert record["files"][0]["sha256"] == hashlib.sha256(data).hexdigest() and record["files"][0]["verified"]
    assert sorted(os.listdir(r.path)) == ["dataset.json", "labels.zarr", "raw.zarr"]  # the unpacked files are gone
    assert _leftovers(tmp_path / "data") == []


def test_a_rerun_after_a_complete_fetch_does_nothing(tiny, tmp_path):
    server, _, reg = tiny
    fetch_dataset("tiny", tmp_path, registry=reg)
    n = len(server.requests)
    r = fetch_dataset("tiny", tmp_path, registry=reg)
    assert r.already and len(server.requests) == n and r.volumes["raw"] == ["raw.zarr"]


def test_an_interrupted_download_resumes_on_the_next_run(tiny, tmp_path):
    server, data, reg = tiny
    server.cut["tiny.zip"] = 1000
    with pytest.raises(DownloadInterrupted, match="run the same command again to resume"):
        fetch_dataset("tiny", tmp_path, registry=reg, retries=0)
    assert not os.path.exists(tmp_path / "tiny")  # nothing that looks complete
    assert os.path.getsize(tmp_path / ".tiny.download" / "tiny.zip.part") == 1000
    r = fetch_dataset("tiny", tmp_path, registry=reg, retries=0)
    assert server.requests[-1] == ("tiny.zip", "bytes=1000-")
    assert server.sent == [1000, len(data) - 1000]  # the resume fetched only the rest
    with open_volume(os.path.join(r.path, "raw.zarr")) as v:
        np.testing.assert_array_equal(v[...], RAW)
    assert _leftovers(tmp_path) == []


def test_a_dropped_connection_is_retried_within_one_fetch(tiny, tmp_path):
    server, data, reg = tiny
    server.cut["tiny.zip"] = len(data) // 2
    r = fetch_dataset("tiny", tmp_path, registry=reg)
    assert [rng for _, rng in server.requests] == [None, f"bytes={len(data) // 2}-"]
    with open_volume(os.path.join(r.path, "labels.zarr")) as v:
        np.testing.assert_array_equal(v[...], LABELS)


def test_a_wrong_checksum_is_one_line_and_leaves_nothing_that_looks_complete(server, tmp_path):
    os.makedirs(tmp_path / "src")
    data = _zip_of_tifs(str(tmp_path / "src"))
    wrong = "sha256:" + hashlib.sha256(b"another file").hexdigest()
    reg = entry(server, data, checksum=wrong)
    with pytest.raises(ChecksumError) as e:
        fetch_dataset("tiny", tmp_path / "data", registry=reg)
    text = str(e.value)
    assert "\n" not in text and text.startswith("tiny.zip: checksum mismatch") and wrong in text
    assert hashlib.sha256(data).hexdigest() in text
    assert os.listdir(tmp_path / "data") == []  # no tiny/, no .part, no download folder
    assert glob.glob(str(tmp_path / "**" / "*.part"), recursive=True) == []


def test_without_a_checksum_the_computed_sha256_is_recorded(server, tmp_path):
    os.makedirs(tmp_path / "src")
    data = _zip_of_tifs(str(tmp_path / "src"))
    r = fetch_dataset("tiny", tmp_path, registry=entry(server, data, checksum=None))
    assert r.files[0]["verified"] is False and r.files[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.load(open(os.path.join(r.path, "dataset.json")))["files"][0]["sha256"] == r.files[0]["sha256"]


def test_a_tar_of_hdf5_blocks_with_keys_and_a_pattern(server, tmp_path):
    blocks = [RNG.integers(0, 256, (3, 8, 8), dtype=np.uint8) for _ in range(2)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for i, b in enumerate(blocks):
            path = tmp_path / f"block_{i}.h5"
            with h5py.File(path, "w") as f:
                f["volumes/raw"] = b
                f["volumes/labels"] = (b > 128).astype(np.uint8)
            t.add(path, f"blocks/block_{i}.h5")
    volumes = {"raw": {"path": "blocks/block_*.h5", "key": "volumes/raw", "kind": "raw"},
               "labels": {"path": "blocks/block_*.h5", "key": "volumes/labels", "kind": "labels"}}
    reg = entry(server, buf.getvalue(), filename="blocks.tar.gz", volumes=volumes, voxel_size=[25, 10, 10])
    r = fetch_dataset("tiny", tmp_path / "out", registry=reg)
    assert r.volumes["raw"] == ["raw/block_0.zarr", "raw/block_1.zarr"]
    for i, b in enumerate(blocks):
        with open_volume(os.path.join(r.path, "raw", f"block_{i}.zarr")) as v:
            np.testing.assert_array_equal(v[...], b)
            assert v.voxel_size == (25.0, 10.0, 10.0)
        with open_volume(os.path.join(r.path, "labels", f"block_{i}.zarr")) as v:
            np.testing.assert_array_equal(v[...], b > 128)


def test_flyem_ground_truth_is_mapped_to_neuron_ids(server, tmp_path):
    stack = np.array([[[1, 2], [3, 4]]], np.uint64)
    with h5py.File(tmp_path / "gt.h5", "w") as f:
        f["stack"] = stack
        f["transforms"] = np.array([[1, 10], [2, 10], [3, 30]], np.uint64)  # 4 is not in the table: kept
    data = open(tmp_path / "gt.h5", "rb").read()
    volumes = {"labels": {"path": "gt.h5", "key": "stack", "kind": "labels", "relabel": "transforms"}}
    r = fetch_dataset("tiny", tmp_path / "out", registry=entry(server, data, filename="gt.h5", volumes=volumes))
    with open_volume(os.path.join(r.path, "labels.zarr")) as v:
        np.testing.assert_array_equal(v[...], [[[10, 10], [30, 4]]])


def test_no_convert_keeps_the_unpacked_files(tiny, tmp_path):
    server, _, reg = tiny
    r = fetch_dataset("tiny", tmp_path, registry=reg, convert=False)
    assert not r.converted and r.volumes == {}
    assert sorted(os.listdir(os.path.join(r.path, "source", "stack"))) == ["labels.tif", "raw.tif"]


def test_a_failed_conversion_keeps_the_download_and_the_next_run_needs_no_network(tiny, tmp_path):
    server, data, reg = tiny
    bad = {"tiny": dict(reg["tiny"], volumes={"raw": {"path": "stack/missing.tif", "kind": "raw"}})}
    with pytest.raises(ValueError, match=r"stack/missing\.tif \(volume 'raw'\) is not in the download, which holds "
                                         r"stack; the registry entry is out of date"):
        fetch_dataset("tiny", tmp_path, registry=bad)
    assert not os.path.exists(tmp_path / "tiny")
    n = len(server.requests)
    r = fetch_dataset("tiny", tmp_path, registry=reg)  # the verified download is reused; the build starts over
    assert len(server.requests) == n and r.volumes["raw"] == ["raw.zarr"] and _leftovers(tmp_path) == []


def test_datasets_without_files_and_foreign_folders_are_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="^cellmap: nothing to download here: the CellMap crops are remote"):
        fetch_dataset("cellmap", tmp_path)
    server, _, reg = tiny
    os.makedirs(tmp_path / "tiny")
    with pytest.raises(FileExistsError, match="is not a finished emseg datasets fetch"):
        fetch_dataset("tiny", tmp_path, registry=reg)
    assert server.requests == []


def test_archives_that_would_write_outside_their_folder_are_refused(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="would land outside its folder"):
        fetch_dataset("tiny", tmp_path / "out", registry=entry(server, buf.getvalue()))
    out = tmp_path / "out"
    assert not os.path.exists(out / ".tiny.building" / "evil.txt") and not os.path.exists(out / "tiny")
    buf = io.BytesIO()  # a tar member that climbs out
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError):
        fetch_dataset("tiny", out, registry=entry(server, buf.getvalue(), filename="tiny.tar.gz"))
    assert not os.path.exists(out / "evil.txt") and not os.path.exists(tmp_path / "evil.txt")


def test_a_rerun_after_no_convert_says_so(server, tmp_path):
    (tmp_path / "src").mkdir()
    reg = entry(server, _zip_of_tifs(tmp_path / "src"))
    fetch_dataset("tiny", tmp_path, registry=reg, convert=False)
    with pytest.raises(ValueError, match="--no-convert"):
        fetch_dataset("tiny", tmp_path, registry=reg)

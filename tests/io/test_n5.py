"""Tests for emseg.io.n5: round trips, the on-disk layout, errors, and tensorstore as the reference."""

import gzip
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emseg.io import n5, n5blocks
from emseg.io.n5 import create_n5, list_n5_datasets, open_n5, read_n5_attrs, write_n5_attrs

DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64"]
COMPRESSIONS = [
    "raw",
    {"type": "gzip"},
    {"type": "gzip", "level": 9, "useZlib": True},
    {"type": "bzip2", "blockSize": 5},
    {"type": "xz", "preset": 1},
    {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
    {"type": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2},
    {"type": "zstd", "level": 3},
]


def random_array(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def block_bytes(arr, mode=0):
    """An uncompressed N5 block written by hand from the spec (independent of the module)."""
    header = struct.pack(f">HH{arr.ndim}I", mode, arr.ndim, *arr.shape[::-1])
    if mode == 1:
        header += struct.pack(">I", arr.size)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=lambda c: c if isinstance(c, str) else
                         "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype_and_compression(tmp_path, dtype, compression):
    data = random_array(np.random.default_rng(0), (5, 6, 7), dtype)
    arr = create_n5(tmp_path / "c.n5", "vol", data.shape, dtype, chunks=(2, 4, 3), compression=compression)
    arr[...] = data
    back = open_n5(tmp_path / "c.n5", "vol")
    assert back.dtype == np.dtype(dtype) and back.shape == data.shape and back.chunks == (2, 4, 3)
    np.testing.assert_array_equal(back[...], data)
    expected = n5blocks.normalize_compression(compression, "test")
    assert back.compression == expected
    assert expected.items() >= ({"type": compression} if isinstance(compression, str) else compression).items()


def test_golden_block_bytes(tmp_path):
    """A raw (1, 2, 3) uint16 block is exactly the spec's header and a big-endian, x-fastest payload."""
    arr = create_n5(tmp_path / "g.n5", "a", (1, 2, 3), "uint16", chunks=(1, 2, 3), compression="raw")
    arr[...] = np.arange(6, dtype="uint16").reshape(1, 2, 3)
    with open(tmp_path / "g.n5" / "a" / "0" / "0" / "0", "rb") as f:
        assert f.read() == (b"\x00\x00\x00\x03" + b"\x00\x00\x00\x03\x00\x00\x00\x02\x00\x00\x00\x01"
                            + b"\x00\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05")


def test_on_disk_layout(tmp_path):
    root = tmp_path / "l.n5"
    arr = create_n5(root, "g/raw", (10, 20, 30), "int16", chunks=(1, 2, 4), attrs={"resolution": [40, 4, 4]})
    arr[3, 5, 9] = -7
    assert json.loads((root / "attributes.json").read_text()) == {"n5": "4.0.0"}
    meta = json.loads((root / "g" / "raw" / "attributes.json").read_text())
    assert meta["dimensions"] == [30, 20, 10] and meta["blockSize"] == [4, 2, 1]
    assert meta["dataType"] == "int16" and meta["resolution"] == [40, 4, 4]
    assert meta["compression"] == {"type": "gzip", "level": -1, "useZlib": False}
    files = [os.path.relpath(os.path.join(d, f), root / "g" / "raw") for d, _, fs in os.walk(root / "g" / "raw")
             for f in fs]
    assert sorted(files) == ["2/2/3", "attributes.json"]  # block grid (x, y, z) = (9 // 4, 5 // 2, 3 // 1)
    with open(root / "g" / "raw" / "2" / "2" / "3", "rb") as f:
        assert gzip.decompress(f.read()[16:])[2 * (1 * 4 + 1):][:2] == struct.pack(">h", -7)


def test_edge_blocks_are_truncated_on_disk(tmp_path):
    data = random_array(np.random.default_rng(1), (5, 6, 7), "uint16")
    arr = create_n5(tmp_path / "e.n5", "a", data.shape, "uint16", chunks=(2, 4, 4), compression="raw")
    arr[...] = data
    with open(tmp_path / "e.n5" / "a" / "1" / "1" / "2", "rb") as f:  # x block 1, y block 1, z block 2
        buf = f.read()
    assert struct.unpack(">HH3I", buf[:16]) == (0, 3, 3, 2, 1)  # x: 7 - 4, y: 6 - 4, z: 5 - 4
    np.testing.assert_array_equal(np.frombuffer(buf[16:], ">u2").reshape(1, 2, 3), data[4:, 4:, 4:])
    np.testing.assert_array_equal(open_n5(tmp_path / "e.n5", "a")[...], data)


def test_partial_writes_and_reads_equal_numpy(tmp_path):
    rng = np.random.default_rng(2)
    shape = (11, 13, 17)
    ref = np.zeros(shape, "int32")
    arr = create_n5(tmp_path / "p.n5", "a", shape, "int32", chunks=(4, 5, 6))

    def random_index():
        key = []
        for n in shape:
            if rng.random() < 0.2:
                key.append(int(rng.integers(-n, n)))
            else:
                a, b = sorted(rng.integers(0, n + 1, 2))
                step = int(rng.choice([1, 1, 1, 2, 3, -1, -2]))
                key.append(slice(a, b, step) if step > 0 else slice(b, a, step))
        return tuple(key)

    for _ in range(40):
        key = random_index()
        value = rng.integers(-1000, 1000, ref[key].shape) if rng.random() < 0.7 else int(rng.integers(-9, 9))
        ref[key] = value
        arr[key] = value
    np.testing.assert_array_equal(arr[...], ref)
    for _ in range(60):
        key = random_index()
        np.testing.assert_array_equal(arr[key], ref[key])
    for key in [(Ellipsis, 3), (2, Ellipsis), (slice(None), -1), 5, (slice(-4, None), Ellipsis, slice(2, 9)),
                np.int64(4), (slice(20, 30),), (slice(5, 5), 1)]:
        np.testing.assert_array_equal(arr[key], ref[key])
    assert arr[1, 2, 3] == ref[1, 2, 3]


def test_missing_blocks_read_as_zeros(tmp_path):
    arr = create_n5(tmp_path / "m.n5", "a", (8, 8, 8), "float32", chunks=(4, 4, 4))
    np.testing.assert_array_equal(arr[...], np.zeros((8, 8, 8), "float32"))
    assert os.listdir(tmp_path / "m.n5" / "a") == ["attributes.json"]
    arr[4:, :4, 4:] = 2.5
    assert open_n5(tmp_path / "m.n5", "a")[...].sum() == 2.5 * 64
    os.remove(tmp_path / "m.n5" / "a" / "1" / "0" / "1")
    np.testing.assert_array_equal(arr[...], np.zeros((8, 8, 8), "float32"))


@pytest.mark.parametrize("shape, chunks", [((13, 9), (4, 4)), ((3, 7, 5, 6), (2, 3, 2, 4)), ((10,), (3,))])
def test_other_dimensionalities(tmp_path, shape, chunks):
    data = random_array(np.random.default_rng(3), shape, "uint8")
    arr = create_n5(tmp_path / "d.n5", "a", shape, "uint8", chunks=chunks)
    arr[...] = data
    back = open_n5(tmp_path / "d.n5", "a")
    np.testing.assert_array_equal(back[...], data)
    np.testing.assert_array_equal(back[..., 1:-1], data[..., 1:-1])
    assert json.loads((tmp_path / "d.n5" / "a" / "attributes.json").read_text())["dimensions"] == list(shape[::-1])


def test_reads_and_writes_touch_only_the_blocks_asked_for(tmp_path, monkeypatch):
    arr = create_n5(tmp_path / "big.n5", "a", (1024, 1024, 1024), "uint8", chunks=(64, 64, 64))
    arr[64:192, 64:192, 64:192] = 1  # 2 x 2 x 2 whole blocks: written without reading
    assert sum(len(fs) for _, _, fs in os.walk(tmp_path / "big.n5" / "a")) == 8 + 1
    touched = []
    read_block = n5.read_block
    monkeypatch.setattr(n5, "read_block", lambda path, *a: touched.append(path) or read_block(path, *a))
    region = arr[100:228, 100:228, 100:228]
    assert len(touched) == 27 and region.shape == (128, 128, 128)
    assert region.sum() == 92 ** 3
    touched.clear()
    arr[0:64, 0:64, 0:64] = 2
    assert touched == []


def test_concurrent_writes_to_different_blocks(tmp_path):
    data = random_array(np.random.default_rng(4), (16, 16, 16), "uint16")
    arr = create_n5(tmp_path / "t.n5", "a", data.shape, "uint16", chunks=(4, 16, 16))

    def write(z):
        arr[z:z + 4] = data[z:z + 4]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(0, 16, 4)))
    np.testing.assert_array_equal(open_n5(tmp_path / "t.n5", "a")[...], data)
    assert not [f for _, _, fs in os.walk(tmp_path / "t.n5") for f in fs if ".emseg-partial-" in f]


def test_attrs_round_trip(tmp_path):
    root = tmp_path / "a.n5"
    arr = create_n5(root, "raw", (4, 4), "uint8", chunks=(2, 2), attrs={"resolution": [4.0, 4.0], "unit": "nm"})
    assert arr.attrs == {"resolution": [4.0, 4.0], "unit": "nm"}
    arr.update_attrs(offset=np.array([8, 16]), unit="um")
    assert open_n5(root, "raw").attrs == {"resolution": [4.0, 4.0], "unit": "um", "offset": [8, 16]}
    assert arr.attrs == open_n5(root, "raw").attrs
    assert read_n5_attrs(root, "raw")["dimensions"] == [4, 4]
    write_n5_attrs(root, "groups/g", {"note": "a group"})
    write_n5_attrs(root, "groups/g", {"count": np.int64(3)})
    assert read_n5_attrs(root, "groups/g") == {"note": "a group", "count": 3}
    assert read_n5_attrs(root) == {"n5": "4.0.0"}
    assert read_n5_attrs(root, "groups") == {}
    assert list_n5_datasets(root) == ["raw"]
    with pytest.raises(ValueError, match=r"\['dataType'\] describe the dataset layout"):
        arr.update_attrs(dataType="uint16")
    with pytest.raises(ValueError, match="dimensions"):
        write_n5_attrs(root, "raw", {"dimensions": [1, 1]})
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        arr.update_attrs(bad=object())
    assert open_n5(root, "raw").attrs["unit"] == "um"


def test_list_datasets_and_open_without_key(tmp_path):
    root = tmp_path / "n.n5"
    for key in ["z", "volumes/raw", "volumes/labels/neuron_ids", "a/b/c/d"]:
        create_n5(root, key, (2, 2), "uint8", chunks=(2, 2))[...] = 1
    assert list_n5_datasets(root) == ["a/b/c/d", "volumes/labels/neuron_ids", "volumes/raw", "z"]
    assert list_n5_datasets(root / "volumes") == ["labels/neuron_ids", "raw"]
    assert list_n5_datasets(root / "z") == [""]
    assert open_n5(root / "volumes" / "raw").path == os.path.join(root, "volumes", "raw")
    assert open_n5(root / "a").path == os.path.join(root, "a", "b", "c", "d")  # the only dataset below


def test_old_style_compression_type_and_other_writers_blocks(tmp_path):
    """Blocks as other writers leave them: compressionType, varlength mode, full-size edge blocks, zstd streams."""
    root = tmp_path / "o.n5"
    os.makedirs(root / "a")
    (root / "a" / "attributes.json").write_text(json.dumps(
        {"dimensions": [5, 3], "blockSize": [4, 2], "dataType": "int16", "compressionType": "gzip"}))
    data = random_array(np.random.default_rng(5), (3, 5), "int16")
    full = np.zeros((2, 4), "int16")
    full[:1, :1] = data[2:, 4:]  # edge block stored at its full (2, 4) size, as tensorstore does

    def gzip_block(arr, mode=0):
        header = len(block_bytes(arr, mode)) - arr.nbytes
        return block_bytes(arr, mode)[:header] + gzip.compress(arr.astype(">i2").tobytes())

    write_file(root / "a" / "0" / "0", gzip_block(data[:2, :4]))
    write_file(root / "a" / "1" / "0", gzip_block(data[:2, 4:], mode=1))  # varlength header
    write_file(root / "a" / "0" / "1", gzip_block(data[2:, :4]))
    write_file(root / "a" / "1" / "1", gzip_block(full))
    arr = open_n5(root, "a")
    assert arr.compression == {"type": "gzip", "level": -1, "useZlib": False}
    np.testing.assert_array_equal(arr[...], data)

    from numcodecs import Zstd

    zst = create_n5(root, "z", (1, 600), "uint8", chunks=(1, 600), compression="zstd")
    payload = np.arange(600, dtype="uint8")
    frame = bytes(Zstd(level=3).encode(payload.tobytes()))
    assert frame[4] == 0x60  # single segment, 2-byte content size; rewrite it as a streamed frame:
    streamed = frame[:4] + b"\x00\x00" + frame[7:]  # no content size, 1 KiB window (zstd-jni streams)
    write_file(root / "z" / "0" / "0", block_bytes(payload[None])[:12] + streamed)
    np.testing.assert_array_equal(zst[0], payload)


def test_errors(tmp_path):
    root = tmp_path / "err.n5"
    arr = create_n5(root, "volumes/raw", (4, 6), "uint16", chunks=(2, 4), compression="raw")
    arr[...] = 7
    create_n5(root, "volumes/labels", (4, 6), "uint64", chunks=(2, 4))
    with pytest.raises(FileNotFoundError, match="nowhere.n5 does not exist"):
        open_n5(tmp_path / "nowhere.n5", "raw")
    with pytest.raises(KeyError, match=r"no dataset 'volumes/gt'; datasets: volumes/labels, volumes/raw"):
        open_n5(root, "volumes/gt")
    with pytest.raises(ValueError, match=r"volumes is an N5 group, not a dataset.*datasets below it: labels, raw"):
        open_n5(root, "volumes")
    with pytest.raises(ValueError, match="mode must be one of"):
        open_n5(root, "volumes/raw", mode="w")
    ro = open_n5(root, "volumes/raw")
    with pytest.raises(ValueError, match=r"opened with mode='r'; open it with mode='r\+'"):
        ro[0] = 1
    with pytest.raises(ValueError, match="mode='r'"):
        ro.update_attrs(a=1)
    open_n5(root, "volumes/raw", mode="r+")[0, 0] = 1
    assert ro[0, 0] == 1
    with pytest.raises(FileExistsError, match="overwrite=True"):
        create_n5(root, "volumes/raw", (4, 6), "uint16", chunks=(2, 4))
    with pytest.raises(ValueError, match="unsupported N5 compression 'lz4'; supported types are raw, gzip"):
        create_n5(root, "x", (4,), "uint8", chunks=(2,), compression="lz4")
    with pytest.raises(ValueError, match="N5 has no dataType for complex64; supported: uint8"):
        create_n5(root, "x", (4,), "complex64", chunks=(2,))
    with pytest.raises(ValueError, match="chunks must be one positive int per axis"):
        create_n5(root, "x", (4, 4), "uint8", chunks=(2,))
    with pytest.raises(ValueError, match="key must name a dataset"):
        create_n5(root, "", (4,), "uint8", chunks=(2,))
    with pytest.raises(ValueError, match="is a dataset; N5 datasets cannot hold"):
        create_n5(root, "volumes/raw/inner", (4,), "uint8", chunks=(2,))
    assert not os.path.exists(root / "x")

    meta_file = root / "volumes" / "raw" / "attributes.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "compression": {"type": "lz4", "blockSize": 65536}}))
    with pytest.raises(ValueError, match=rf"{meta_file}: unsupported N5 compression 'lz4'; supported types are "
                                         "raw, gzip, bzip2, xz, blosc, zstd"):
        open_n5(root, "volumes/raw")
    meta_file.write_text(json.dumps(meta))

    block = root / "volumes" / "raw" / "0" / "0"
    good = block.read_bytes()
    block.write_bytes(good[:-2])
    with pytest.raises(ValueError, match=rf"N5 block {block}: payload is 14 bytes after decompression; "
                                         r"expected 16 \(block size \[4, 2\]"):
        open_n5(root, "volumes/raw")[...]
    block.write_bytes(good[:6])
    with pytest.raises(ValueError, match=rf"N5 block {block}: bad header"):
        open_n5(root, "volumes/raw")[...]
    block.write_bytes(struct.pack(">HH", 2, 2) + good[4:])
    with pytest.raises(ValueError, match="bad header.*expected mode 0 or 1 and ndim 2"):
        open_n5(root, "volumes/raw")[...]
    gz_block = root / "volumes" / "labels" / "0" / "0"
    write_file(gz_block, good[:12] + b"\x1f\x8b not gzip at all")
    with pytest.raises(ValueError, match=rf"N5 block {gz_block}: cannot decompress the gzip payload"):
        open_n5(root, "volumes/labels")[:1]

    with pytest.raises(IndexError, match="too many indices"):
        arr[0, 0, 0]
    with pytest.raises(IndexError, match="index 4 is out of bounds for axis 0 with size 4"):
        arr[4]
    with pytest.raises(TypeError, match="ints, slices and ... as indices; got list"):
        arr[[0, 1]]
    with pytest.raises(ValueError, match="could not broadcast"):
        arr[0:2, 0:2] = np.zeros((3, 3))


def test_overwrite_replaces_the_dataset(tmp_path):
    create_n5(tmp_path / "w.n5", "a", (4, 4), "uint8", chunks=(2, 2))[...] = 9
    arr = create_n5(tmp_path / "w.n5", "a", (3, 3), "float64", chunks=(3, 3), overwrite=True)
    np.testing.assert_array_equal(arr[...], np.zeros((3, 3)))
    assert open_n5(tmp_path / "w.n5", "a").dtype == np.float64


# --- tensorstore's N5 driver as the independent reference implementation --------------------------

TS_COMPRESSIONS = [{"type": "raw"}, {"type": "gzip"}, {"type": "gzip", "useZlib": True},
                   {"type": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}, {"type": "bzip2"},
                   {"type": "xz"}, {"type": "zstd"}]


@pytest.mark.parametrize("compression", TS_COMPRESSIONS, ids=lambda c: "-".join(map(str, c.values())))
def test_reads_what_tensorstore_writes(tmp_path, compression):
    ts = pytest.importorskip("tensorstore")
    data = random_array(np.random.default_rng(6), (9, 10, 11), "int32")
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "ts.n5" / "a")},
                     "metadata": {"dimensions": [11, 10, 9], "blockSize": [4, 3, 2], "dataType": "int32",
                                  "compression": compression}}, create=True).result()
    store[...] = data.T  # tensorstore indexes N5 x first
    store[:4, :3, :2] = 0  # an all-zero block, which tensorstore leaves (or we make) missing on disk
    (tmp_path / "ts.n5" / "a" / "0" / "0" / "0").unlink(missing_ok=True)
    data[:2, :3, :4] = 0
    arr = open_n5(tmp_path / "ts.n5", "a")
    np.testing.assert_array_equal(arr[...], data)
    np.testing.assert_array_equal(arr[3:8, -1, 2:], data[3:8, -1, 2:])


@pytest.mark.parametrize("compression", TS_COMPRESSIONS, ids=lambda c: "-".join(map(str, c.values())))
def test_tensorstore_reads_what_we_write(tmp_path, compression):
    ts = pytest.importorskip("tensorstore")
    data = random_array(np.random.default_rng(7), (9, 10, 11), "float32")
    arr = create_n5(tmp_path / "us.n5", "a", data.shape, "float32", chunks=(2, 3, 4), compression=compression)
    arr[...] = data
    arr[:2, :3, :4] = 0
    data[:2, :3, :4] = 0
    arr[5:7, 2:9, 1:3] = data[5:7, 2:9, 1:3] + 1  # partial rewrites of truncated and whole blocks
    data[5:7, 2:9, 1:3] += 1
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "us.n5" / "a")}}).result()
    assert list(store.shape) == [11, 10, 9]
    np.testing.assert_array_equal(store.read().result().T, data)

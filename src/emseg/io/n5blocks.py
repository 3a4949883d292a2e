"""N5 block files: the header, the big-endian payload and its compression.

One block is a file ``<ix>/<iy>/<iz>`` in the dataset folder: a big-endian header (uint16 mode,
uint16 ndim, ndim x uint32 size, x first; mode 1 adds a uint32 element count), then the
payload, compressed as the dataset's attributes.json says, big-endian and x fastest. The
compressions and their default parameters are those the N5 Java libraries write.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import struct
import zlib

import numpy as np

from .atomic import write_bytes_atomic

__all__ = ["COMPRESSIONS", "normalize_compression", "compress", "decompress", "read_block", "write_block"]

COMPRESSIONS = {  # type -> default parameters, as the N5 Java libraries write them
    "raw": {},
    "gzip": {"level": -1, "useZlib": False},
    "bzip2": {"blockSize": 9},
    "xz": {"preset": 6},
    "blosc": {"cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
    "zstd": {"level": 3},
}


def normalize_compression(compression, where) -> dict:
    """Normalise a compression (None, a type name or an N5 dict) to a full N5 dict."""
    if compression is None:
        compression = "gzip"
    if isinstance(compression, str):
        compression = {"type": compression}
    kind = compression.get("type") if isinstance(compression, dict) else compression
    if kind not in COMPRESSIONS:
        raise ValueError(f"{where}: unsupported N5 compression {kind!r}; supported types are "
                         f"{', '.join(COMPRESSIONS)}")
    return {"type": kind, **COMPRESSIONS[kind], **compression}


def compress(block: np.ndarray, c: dict) -> bytes:
    kind = c["type"]
    if kind == "blosc":
        from numcodecs import Blosc

        codec = Blosc(cname=c["cname"], clevel=c["clevel"], shuffle=c["shuffle"], blocksize=c["blocksize"])
        return bytes(codec.encode(block))  # the array, not bytes, so Blosc shuffles by item size
    data = block.tobytes()
    if kind == "gzip":
        level = c["level"] if c["level"] >= 0 else 6  # -1: zlib's default
        return zlib.compress(data, level) if c["useZlib"] else gzip.compress(data, level, mtime=0)
    if kind == "bzip2":
        return bz2.compress(data, c["blockSize"])
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=c["preset"])
    if kind == "zstd":
        from numcodecs import Zstd

        return bytes(Zstd(level=c["level"]).encode(data))
    return data


def decompress(data: bytes, kind: str):
    if kind == "gzip":  # useZlib only says which framing the writer chose; the magic bytes tell
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else zlib.decompress(data)
    if kind == "bzip2":
        return bz2.decompress(data)
    if kind == "xz":
        return lzma.decompress(data)
    if kind in ("blosc", "zstd"):
        from numcodecs import Blosc, Zstd  # Zstd also takes frames without a content size (zstd-jni)

        return (Blosc() if kind == "blosc" else Zstd()).decode(data)
    return data


def read_block(path, dtype: np.dtype, ndim: int, kind: str) -> np.ndarray | None:
    """One block file as a numpy-order array of its stored size, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        return None
    mode, nd = struct.unpack_from(">HH", buf) if len(buf) >= 4 else (None, None)
    start = 4 + 4 * ndim + 4 * (mode == 1)
    if mode not in (0, 1) or nd != ndim or len(buf) < start:
        raise ValueError(f"N5 block {path}: bad header (mode {mode}, ndim {nd}, {len(buf)} bytes); expected "
                         f"mode 0 or 1 and ndim {ndim} in a header of {start} bytes")
    size = struct.unpack_from(f">{ndim}I", buf, 4)[::-1]
    if mode == 1 and struct.unpack_from(">I", buf, 4 + 4 * ndim)[0] != math.prod(size):
        raise ValueError(f"N5 block {path}: varlength element count differs from the block size {size[::-1]}")
    try:
        data = np.frombuffer(decompress(buf[start:], kind), np.uint8)
    except Exception as e:  # zlib.error, OSError, EOFError, LZMAError, RuntimeError: all mean corrupt
        raise ValueError(f"N5 block {path}: cannot decompress the {kind} payload ({e})") from e
    expected = math.prod(size) * dtype.itemsize
    if data.size != expected:
        raise ValueError(f"N5 block {path}: payload is {data.size} bytes after decompression; expected {expected} "
                         f"(block size {list(size[::-1])} in N5 order x {dtype.itemsize}-byte {dtype})")
    return data.view(dtype.newbyteorder(">")).reshape(size).astype(dtype)


def write_block(path, block: np.ndarray, compression: dict) -> None:
    header = struct.pack(f">HH{block.ndim}I", 0, block.ndim, *block.shape[::-1])
    payload = compress(np.ascontiguousarray(block, block.dtype.newbyteorder(">")), compression)
    write_bytes_atomic(path, header + payload)

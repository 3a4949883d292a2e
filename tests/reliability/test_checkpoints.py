"""Damaged and crafted model checkpoints: each ends in one ValueError naming the file, at once, without
allocating memory (a safetensors header is checked against the file's size before anything is read,
and the model its init_args describe is first built on torch's meta device).

Real files, written byte by byte here; the memory bound is measured in a real subprocess
(``ru_maxrss`` before and after loading every crafted file)."""

import json
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from emseg.models import UNet, load_model, read_model_header, save_model


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "good.safetensors"
    save_model(UNet(1, 2, ndim=2, depth=2, features=4), path, extra={"normalization": {"low": 0, "high": 255}})
    return path


def _parts(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _write(path, header, body, length=None):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + body)
    return path


def _crafted_init_args(good, path, **changes):
    header, body = _parts(good)
    init = {**json.loads(header["__metadata__"]["init_args"]), **changes}
    header["__metadata__"]["init_args"] = json.dumps(init)
    return _write(path, header, body)


def _crafted(good, folder):
    """name -> (file, what the message must say)."""
    header, body = _parts(good)

    def init(name, **changes):
        return _crafted_init_args(good, folder / f"{name}.safetensors", **changes)

    def tensor(name, **changes):  # one tensor's entry changed
        crafted = json.loads(json.dumps(header))
        crafted["head.weight"].update(changes)  # a float32 tensor
        return _write(folder / f"{name}.safetensors", crafted, body)

    (folder / "notjson.safetensors").write_bytes(struct.pack("<Q", 16) + b"\xff" * 16 + body)
    return {
        "header length 2**40": (_write(folder / "len40.safetensors", header, body, length=2**40),
                                "more than the 100000000 bytes"),
        "header length past the end": (_write(folder / "past.safetensors", header, body,
                                              length=len(json.dumps(header)) + len(body) + 1), "the file holds"),
        "header not JSON": (folder / "notjson.safetensors", "header is not JSON"),
        "tensor past the end": (tensor("offsets", data_offsets=[0, 10**12]), "lies at bytes"),
        "tensor shape 10**6 x 10**6": (tensor("huge", shape=[10**6, 10**6]), "needs 4000000000000 bytes"),
        "features 10**6": (init("f6", features=[10**6, 2 * 10**6, 4 * 10**6]), "do not match its init_args"),
        "depth 10**6": (init("depth", depth=10**6), "depth is 1000000"),
        "features 10**100": (init("f100", features=10**100), "beyond the +-2**31"),
        "unknown init arg": (init("bogus", bogus=1), "unexpected keyword argument 'bogus'"),
        "kernel 99999": (init("kernel", kernel_sizes=99999), "do not match its init_args"),
    }


def _one_line(err, path):
    text = str(err)
    assert "\n" not in text, text
    assert str(path) in text, text
    return text


def test_truncated_checkpoint_at_every_kind_of_cut(good, tmp_path):
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    cuts = [0, 3, 8, 9, 8 + n // 2, 8 + n, 8 + n + 1, 8 + n + (len(data) - 8 - n) // 2, len(data) - 1]
    cuts += [int(c) for c in np.random.default_rng(0).integers(0, len(data), 20)]
    t0 = time.perf_counter()
    for cut in cuts:
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError) as err:
            load_model(path)
        text = _one_line(err.value, path)
        assert "truncated" in text, text
    assert time.perf_counter() - t0 < 5


def test_crafted_headers_and_init_args_fail_fast_naming_the_file(good, tmp_path):
    for name, (path, expected) in _crafted(good, tmp_path).items():
        t0 = time.perf_counter()
        with pytest.raises(ValueError) as err:
            load_model(path)
        assert expected in _one_line(err.value, path), (name, str(err.value))
        assert time.perf_counter() - t0 < 2, name


def test_nan_weights_name_the_checkpoint_and_the_tensor(good, tmp_path):
    from safetensors.torch import load_file, save_file

    header, _ = _parts(good)
    tensors = load_file(good)
    tensors["head.weight"][0, 0, 0, 0] = float("nan")
    tensors["encoder.0.0.0.weight"][1, 0, 1, 1] = float("inf")
    save_file(tensors, tmp_path / "nan.safetensors", metadata=header["__metadata__"])
    with pytest.raises(ValueError, match=r"tensor '(head|encoder\.0\.0\.0)\.weight' holds 1 NaN/Inf value"):
        load_model(tmp_path / "nan.safetensors")


def test_other_files_are_not_checkpoints(good, tmp_path):
    from emseg.io import write_volume

    write_volume(tmp_path / "raw.tif", np.zeros((2, 16, 16), np.uint8))
    write_volume(tmp_path / "raw.h5:raw", np.zeros((2, 16, 16), np.uint8))
    (tmp_path / "config.yaml").write_text("steps: 10\n")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors", metadata={"format": "pt"})
    for name, expected in [("raw.tif", "not a safetensors file"), ("raw.h5", "not a safetensors file"),
                           ("config.yaml", "not a safetensors file"), ("empty.safetensors", "holds 0 bytes"),
                           ("plain.safetensors", "not an emseg model checkpoint")]:
        with pytest.raises(ValueError) as err:
            read_model_header(tmp_path / name)
        assert expected in _one_line(err.value, tmp_path / name), str(err.value)
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors' does not exist"):
        load_model(tmp_path / "missing.safetensors")
    assert read_model_header(good).extra["normalization"]["high"] == 255  # the good one still loads


def test_crafted_files_use_no_memory(good, tmp_path):
    """In a fresh process: the peak memory after loading every crafted file is that of importing torch."""
    paths = [str(p) for p, _ in _crafted(good, tmp_path).values()]
    code = ("import resource, sys\n"
            "from emseg.models import load_model\n"
            "load_model(sys.argv[1])\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "for p in sys.argv[2:]:\n"
            "    try:\n        load_model(p)\n    except ValueError:\n        pass\n"
            "    else:\n        raise SystemExit(f'{p} loaded')\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(good), *paths], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) < 50, f"peak memory grew by {proc.stdout.strip()} MiB"

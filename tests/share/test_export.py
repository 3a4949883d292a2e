"""emseg export: bare ONNX/TorchScript networks and bioimage.io packages, read back by emseg, and checked
against PyTorch (the reference: the checkpoint run by emseg's own predictor)."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml

from conftest import tiny_bc_model

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _raw(shape=(2, 64, 64), seed=3):
    from emseg.synthetic import synthetic_em

    return synthetic_em(shape, voxel_size=(5.0, 5.0, 5.0), seed=seed).raw


def _reference(model, raw):
    """(normalised input (N, 1, y, x), emseg's PyTorch output) of ``model`` on the sections of ``raw``."""
    from emseg.predict import as_predictor

    p = as_predictor(model)
    x = p.normalization(raw)[:, None] if p.normalization else raw.astype(np.float32)[:, None]
    return x, p.fn(x)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")
    tiny_bc_model(path)
    return path


def test_onnx_and_torchscript_equal_pytorch_and_read_back(tiny, tmp_path):
    import torch

    from emseg.models.reader import read_checkpoint
    from emseg.predict import as_predictor
    from emseg.share import export_model

    raw = _raw()
    x, want = _reference(tiny, raw)
    onnx_path = export_model(tiny, str(tmp_path / "net.onnx"), "onnx")
    got = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"raw": x})[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4
    ts = torch.jit.load(export_model(tiny, str(tmp_path / "net.pt"), "torchscript"))
    with torch.no_grad():
        assert np.abs(ts(torch.from_numpy(x[:, :, :48, :32])).numpy() - _reference(tiny, raw[:, :48, :32])[1]).max() < 1e-4
    info, ref = read_checkpoint(onnx_path), read_checkpoint(tiny)  # the header travels in the ONNX metadata
    assert (info.task, info.activations, info.init_args) == (ref.task, ref.activations, ref.init_args)
    p = as_predictor(onnx_path)  # an ONNX file runs through onnxruntime
    assert p.halo == as_predictor(tiny).halo and np.abs(p.fn(x) - want).max() < 1e-4


def test_package_architecture_is_standalone(tiny, tmp_path):
    """The package's pytorch_state_dict weights load into its architecture file in a Python without emseg."""
    from emseg.share import export_model

    pkg = export_model(tiny, str(tmp_path / "tiny.zip"), license="MIT")
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(pkg).extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    x, want = _reference(tiny, _raw())
    np.save(folder / "x.npy", x)
    code = f"""
import sys, json, numpy as np, torch
sys.modules['emseg'] = None  # importing emseg fails here
namespace = {{}}
exec(compile(open({str(folder / arch['source'])!r}).read(), 'arch', 'exec'), namespace)
net = namespace[{arch['callable']!r}](**json.loads({__import__('json').dumps(__import__('json').dumps(arch['kwargs']))}))
net.load_state_dict(torch.load({str(folder / 'weights.pt')!r}, weights_only=True))
with torch.no_grad():
    np.save({str(folder / 'y.npy')!r}, net.eval()(torch.from_numpy(np.load({str(folder / 'x.npy')!r}))).numpy())
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert np.abs(np.load(folder / "y.npy") - want).max() < 1e-5


@pytest.mark.parametrize("name", ["mito-fibsem", "mito-sbem", "membrane-sstem", "neurons-fibsem"])
def test_bioimageio_core_passes_on_every_shipped_model(name, tmp_path):
    """bioimageio.core's own test (format, then each weight format on the test tensors and on sizes n = 0, 1, 2)
    on the package of each shipped model; its ONNX and TorchScript outputs equal PyTorch's within 1e-4."""
    core = pytest.importorskip("bioimageio.core")
    from emseg.share import export_model

    pkg = export_model(name, str(tmp_path / f"{name}.zip"))
    # the 3D neuron model's inputs are at least 104³ (its halo): bioimageio.core runs each weight format 7 times
    # on up to 2 x 120³, 45 s on 2 cores, so there it runs on the PyTorch weights (the standalone architecture
    # file) and the ONNX and TorchScript weights are checked below against the test output
    weights = ("pytorch_state_dict",) if name == "neurons-fibsem" else ("onnx", "torchscript", "pytorch_state_dict")
    summary = core.test_model(pkg, weight_format=weights[0] if len(weights) == 1 else None)
    failed = [(d.name, [e.msg for e in d.errors][:1]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    names = {d.name for d in summary.details}
    assert {f"Reproduce test outputs from test inputs ({w})" for w in weights} <= names
    with zipfile.ZipFile(pkg) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        for name_ in ("test_input.npy", "test_output.npy", "weights.onnx", "weights_torchscript.pt"):
            z.extract(name_, tmp_path)
    from emseg.models.reader import read_checkpoint

    info = read_checkpoint(name)
    raw, want = np.load(tmp_path / "test_input.npy"), np.load(tmp_path / "test_output.npy")
    got = ort.InferenceSession(str(tmp_path / "weights.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"raw": info.normalization(raw)})[0]
    assert np.abs(got - want).max() < 1e-4
    import torch

    with torch.no_grad():  # our own export, just written: TorchScript's loader, not a pickle of unknown origin
        ts = torch.jit.load(str(tmp_path / "weights_torchscript.pt"))(torch.from_numpy(info.normalization(raw)))
    assert np.abs(ts.numpy() - want).max() < 1e-4
    axes = rdf["inputs"][0]["axes"]
    vs = info.voxel_size or info.card["input_voxel_size_nm"]
    if vs:  # the voxel size as the axes' scale, in nm
        assert [a["scale"] for a in axes[2:]] == [float(v) for v in vs][-len(axes[2:]):]
        assert {a["unit"] for a in axes[2:]} == {"nanometer"}
    else:  # mito-sbem: the card does not know it, so the package says nothing
        assert not any("scale" in a for a in axes[2:])
    assert rdf["license"] == info.card["license_spdx"] and rdf["cite"] == info.card["cite"]


def test_segment_and_predict_run_a_package(tiny, tmp_path):
    """emseg segment --model PACKAGE.zip equals the checkpoint's segmentation; --runtime onnx predicts within 1e-4."""
    import tifffile

    from emseg.io import read_volume
    from emseg.predict import predict_blockwise
    from emseg.share import export_model
    from emseg.workflows import segment_volume

    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, _raw((3, 96, 80)), photometric="minisblack")
    pkg = export_model(tiny, str(tmp_path / "tiny.zip"), license="MIT")
    segment_volume(str(raw), str(tmp_path / "a.zarr"), tiny)
    segment_volume(str(raw), str(tmp_path / "b.zarr"), pkg)
    np.testing.assert_array_equal(read_volume(str(tmp_path / "a.zarr")), read_volume(str(tmp_path / "b.zarr")))
    predict_blockwise(str(raw), tiny, str(tmp_path / "t.zarr"), dtype="float32")
    predict_blockwise(str(raw), pkg, str(tmp_path / "o.zarr"), dtype="float32", runtime="onnx")
    predict_blockwise(str(raw), tiny, str(tmp_path / "m.zarr"), dtype="float32", runtime="onnx")  # exported in memory
    t = read_volume(str(tmp_path / "t.zarr"))
    assert np.abs(read_volume(str(tmp_path / "o.zarr")) - t).max() < 1e-4
    assert np.abs(read_volume(str(tmp_path / "m.zarr")) - t).max() < 1e-4


def test_export_refuses_what_it_cannot_describe(tiny, tmp_path):
    import torch

    from emseg.models import UNet, save_model
    from emseg.share import export_model

    ctx = str(tmp_path / "ctx.safetensors")  # a 2.5D model: 3 sections as channels
    save_model(UNet(3, 2, ndim=2, depth=1, features=4), ctx, extra={"target": "bc"})
    with pytest.raises(ValueError, match="2.5D model .* not expressible .*--format onnx"):
        export_model(ctx, str(tmp_path / "ctx.zip"), license="MIT")
    export_model(ctx, str(tmp_path / "ctx.onnx"), "onnx")  # the bare network is fine
    with pytest.raises(ValueError, match="no SPDX licence.*--license"):
        export_model(tiny, str(tmp_path / "t.zip"))
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(tiny, str(tmp_path / "t.zip"), "keras")
    with pytest.raises(ValueError, match=r"written as a \.onnx file"):
        export_model(tiny, str(tmp_path / "t.zip"), "onnx")
    (tmp_path / "there.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        export_model(tiny, str(tmp_path / "there.onnx"), "onnx")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".emseg-export")]
    del torch


def test_reading_foreign_or_damaged_exports_fails_in_one_line(tiny, tmp_path):
    import onnx

    from emseg.models.reader import read_checkpoint
    from emseg.predict import as_predictor
    from emseg.share import export_model

    pkg = export_model(tiny, str(tmp_path / "tiny.zip"), license="MIT")
    with zipfile.ZipFile(pkg) as z:
        files = {n: z.read(n) for n in z.namelist()}
    bad = dict(files, **{"emseg.safetensors": files["emseg.safetensors"][:-8] + b"\0" * 8})
    foreign = {k: v for k, v in files.items()}
    rdf = yaml.safe_load(files["rdf.yaml"])
    rdf.pop("config")
    foreign["rdf.yaml"] = yaml.safe_dump(rdf).encode()
    for name, content in (("bad.zip", bad), ("foreign.zip", foreign)):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for n, data in content.items():
                z.writestr(n, data)
    with pytest.raises(ValueError, match="emseg.safetensors has sha256 .* damaged"):
        read_checkpoint(str(tmp_path / "bad.zip"))
    with pytest.raises(ValueError, match="did not export"):
        read_checkpoint(str(tmp_path / "foreign.zip"))
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip file"):
        read_checkpoint(str(tmp_path / "junk.zip"))
    plain = onnx.load(export_model(tiny, str(tmp_path / "n.onnx"), "onnx"))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="without emseg's header"):
        read_checkpoint(str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="holds its activations"):
        as_predictor(str(tmp_path / "n.onnx"), sigmoid=False)
    with pytest.raises(ValueError, match="runtime must be one of"):
        as_predictor(tiny, runtime="tensorrt")


def test_onnx_runs_on_the_cpu_when_a_gpu_is_there(tiny, tmp_path, monkeypatch):
    """--device auto would pick cuda on a GPU machine; onnxruntime runs on the CPU here: auto means the CPU for it,
    an explicit cuda is refused naming --device."""
    import torch

    from emseg.predict import as_predictor
    from emseg.share import export_model

    path = export_model(tiny, str(tmp_path / "n.onnx"), "onnx")
    x, want = _reference(tiny, _raw())  # PyTorch on the CPU, before the GPU is pretended
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert np.abs(as_predictor(path, cache=False).fn(x) - want).max() < 1e-4
    with pytest.raises(ValueError, match="--device cpu"):
        as_predictor(path, device="cuda", cache=False)


def test_malformed_package_metadata_is_refused_naming_the_package(tiny, tmp_path):
    from emseg.models.reader import read_checkpoint
    from emseg.share import export_model

    pkg = export_model(tiny, str(tmp_path / "tiny.zip"), license="MIT")
    with zipfile.ZipFile(pkg) as z:
        files = {n: z.read(n) for n in z.namelist()}
    rdf = yaml.safe_load(files["rdf.yaml"])
    unlisted = dict(rdf, attachments=[a for a in rdf["attachments"] if a["source"] != "emseg.safetensors"])
    for name, text in (("list.zip", "- a\n- b\n"), ("unlisted.zip", yaml.safe_dump(unlisted))):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for n, data in files.items():
                z.writestr(n, text.encode() if n == "rdf.yaml" else data)
        with pytest.raises(ValueError, match=f"model {tmp_path / name}: .*(did not export|lists no sha256)"):
            read_checkpoint(str(tmp_path / name))

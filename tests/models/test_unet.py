import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from emseg.models import UNet, UNetConfig, anisotropic_plan, load_model, read_model_header, save_model

torch.set_num_threads(2)


# ---------------------------------------------------------------- shapes

SHAPE_CASES = {
    "2d": (dict(ndim=2, depth=3, features=4), (1, 1, 40, 24)),
    "3d": (dict(ndim=3, depth=2, features=4), (2, 1, 8, 12, 16)),
    "residual": (dict(ndim=2, depth=2, features=4, block="residual", norm="group"), (1, 1, 20, 28)),
    "aspp": (dict(ndim=3, depth=2, features=4, bottleneck="aspp", norm="instance"), (1, 1, 12, 12, 8)),
    "bilinear": (dict(ndim=3, depth=2, features=4, upsample="bilinear", activation="elu"), (1, 1, 8, 8, 16)),
    "nearest": (dict(ndim=2, depth=2, features=[3, 5, 7], upsample="nearest", norm=None), (1, 1, 16, 12)),
    "pool3": (dict(ndim=2, depth=2, features=4, pool_sizes=[3, (2, 2)], kernel_sizes=[3, 5, (1, 3)]), (1, 1, 18, 30)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_CASES))
def test_output_shape_equals_input_shape(name):
    torch.manual_seed(0)
    kwargs, shape = SHAPE_CASES[name]
    model = UNet(1, 3, **kwargs)
    assert model(torch.rand(shape)).shape == (shape[0], 3) + shape[2:]


def test_output_shape_anisotropic_and_light():
    torch.manual_seed(0)
    model = UNet.for_voxel_size((30, 6, 6), 1, 2, depth=3, features=4, block="residual")
    assert model.input_divisor == (2, 8, 8)
    assert model(torch.rand(1, 1, 6, 24, 16)).shape == (1, 2, 6, 24, 16)
    light = UNet.light2d()
    assert light.init_args["upsample"] == "bilinear" and light.init_args["features"][0] == 8
    assert light(torch.rand(1, 1, 32, 48)).shape == (1, 1, 32, 48)
    assert sum(p.numel() for p in light.parameters()) < 500_000


# ------------------------------------------- receptive field vs. impulse response

def measured_field(model, pool="avg"):
    """Measure (receptive field, halo) per axis from input gradients of single output voxels.

    All weights are set positive (scaled by 1/fan-in) and the input is positive, so no ReLU is
    inactive and no sum cancels: every input voxel connected to the output voxel gets a nonzero
    gradient. Max pooling passes gradient to one voxel per window only, so by default it is
    swapped for average pooling, which has the same windows. The output voxel's position modulo
    ``input_divisor`` changes the field (pooling windows are aligned), so sample ``b`` of the
    batch takes the voxel at ``centre + b % divisor`` and the maximum over the batch is compared.
    The input is sized from the model's own halo, and the test asserts that no gradient reaches
    the border, so zero padding never clips the measurement.
    """
    torch.manual_seed(0)
    model = model.double().eval()  # eval: batch norm uses running stats, samples are independent
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) * 0.5 + 0.5)
            if p.dim() > 1:
                p /= p[0].numel()
    if pool == "avg":
        pool_class = getattr(torch.nn, f"AvgPool{model.ndim}d")
        for i, p in enumerate(model.pools):
            model.pools[i] = pool_class(p.kernel_size, stride=p.stride)
    divisor, halo = model.input_divisor, model.halo
    centre = model.valid_shape([h + 2 for h in halo])
    shape = model.valid_shape([c + d + h + 2 for c, d, h in zip(centre, divisor, halo)])
    batch = max(divisor)
    x = (torch.rand((batch, model.in_channels) + shape, dtype=torch.float64) + 0.5).requires_grad_()
    out = model(x)
    positions = [tuple(c + b % d for c, d in zip(centre, divisor)) for b in range(batch)]
    sum(out[(b, 0) + pos] for b, pos in enumerate(positions)).backward()
    influence = (x.grad != 0).any(dim=1).numpy()
    fields, halos = [0] * model.ndim, [0] * model.ndim
    for b, pos in enumerate(positions):
        for axis in range(model.ndim):
            hit = np.flatnonzero(influence[b].any(axis=tuple(a for a in range(model.ndim) if a != axis)))
            assert hit[0] > 0 and hit[-1] < shape[axis] - 1, "influence reached the border"
            fields[axis] = max(fields[axis], int(hit[-1] - hit[0] + 1))
            halos[axis] = max(halos[axis], int(pos[axis] - hit[0]), int(hit[-1] - pos[axis]))
    return tuple(fields), tuple(halos)


FIELD_CASES = {
    "2d_plain": lambda: UNet(ndim=2, depth=3, features=4, norm=None),
    "2d_residual_aspp_bilinear_batchnorm": lambda: UNet(ndim=2, depth=2, features=4, block="residual",
                                                         bottleneck="aspp", upsample="bilinear"),
    "2d_pool3_kernel5": lambda: UNet(ndim=2, depth=2, features=4, norm=None, pool_sizes=[(3, 2), 2],
                                     kernel_sizes=[5, 3, (1, 3)]),
    "3d": lambda: UNet(ndim=3, depth=2, features=2, norm=None, upsample="bilinear", activation="elu"),
    "3d_anisotropic": lambda: UNet.for_voxel_size((12, 6, 6), depth=2, features=2, norm=None,
                                                  upsample="nearest", bottleneck="aspp"),
}


@pytest.mark.parametrize("name", sorted(FIELD_CASES))
def test_receptive_field_equals_impulse_response(name):
    model = FIELD_CASES[name]()
    field, halo = measured_field(model)
    assert field == model.receptive_field
    assert halo == model.halo


def test_receptive_field_values_and_max_pooling_bound():
    # by hand, output voxel 0 (voxel 1 gives the same): decoder block (2 convs of 3) -> [-2, 2];
    # transposed conv of stride 2 -> coarse [-1, 1]; bottleneck -> [-3, 3]; pooling windows ->
    # fine [-6, 7]; encoder block -> [-8, 9]: 18 voxels, 8 or 9 on either side
    model = UNet(ndim=2, depth=1, features=4, norm=None)
    assert model.receptive_field == (18, 18) and model.halo == (9, 9)
    assert UNet(ndim=2, depth=0, features=4).receptive_field == (5, 5)
    # the real max-pooling model: gradient reaches fewer voxels, never more
    deeper = UNet(ndim=2, depth=2, features=4, norm=None)
    field, _ = measured_field(deeper, pool="max")
    assert all(f <= r for f, r in zip(field, deeper.receptive_field))


# ---------------------------------------------------------------- errors

def test_invalid_shape_names_nearest_valid_shapes():
    model = UNet(ndim=3, depth=3, features=4, kernel_sizes=(1, 3, 3), pool_sizes=(1, 2, 2))
    message = ("input shape (30, 100, 100) is not divisible by (1, 8, 8) along y, x; "
               "nearest valid shapes: (30, 96, 96) or (30, 104, 104)")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(torch.zeros(1, 1, 30, 100, 100))
    with pytest.raises(ValueError, match=r"along x; nearest valid shapes: \(2, 8, 8\)$"):
        model.check_input_shape((2, 8, 5))
    model.check_input_shape((30, 96, 104))
    assert model.valid_shape((30, 100, 3)) == (30, 104, 8)


def test_wrong_channels_and_dimensions():
    model = UNet(2, 1, ndim=2, depth=1, features=4)
    with pytest.raises(ValueError, match=r"expects 2 input channel\(s\); got 3"):
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"expects a tensor \(N, C, y, x\)"):
        model(torch.zeros(2, 8, 8))


@pytest.mark.parametrize("kwargs, match", [
    (dict(block="dense"), r"block must be one of \('plain', 'residual'\)"),
    (dict(norm="layer"), "norm must be one of"),
    (dict(ndim=4), "ndim must be 2 or 3"),
    (dict(kernel_sizes=4), "odd positive"),
    (dict(depth=2, pool_sizes=[2, (2, 2), 2]), r"pool_sizes must be an int, 2 ints \(every level\) or 2 entries"),
    (dict(ndim=3, depth=2, kernel_sizes=[3, 3]), "kernel_sizes must be"),
    (dict(depth=2, features=[4, 8]), "features must be"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_config_and_keywords_build_the_same_model():
    """``UNet(config=UNetConfig(...))``, ``UNet(**fields)`` and ``UNet(**init_args)`` are one model:
    the same init_args and, from the same torch seed, the same initial weights."""
    config = UNetConfig(ndim=3, depth=2, features=[3, 5, 7], kernel_sizes=[[1, 3, 3], 3, 3], block="residual",
                        bottleneck="aspp", aspp_rates=[1, 3], norm="group")
    torch.manual_seed(0)
    a = UNet(1, 2, config=config)
    torch.manual_seed(0)
    b = UNet(1, 2, **config.as_dict())
    torch.manual_seed(0)
    c = UNet(**a.init_args)
    assert a.config == b.config == config and a.init_args == b.init_args == c.init_args
    assert json.loads(json.dumps(a.init_args)) == a.init_args
    for other in (b, c):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values()))
    assert hash(config) == hash(UNetConfig(**config.as_dict()))  # lists kept as tuples: hashable
    assert UNet(config=config, depth=1, features=4, kernel_sizes=3).config.depth == 1  # keywords replace fields


def test_config_errors_name_the_field():
    from emseg.config import ConfigError

    with pytest.raises(ConfigError, match="features must be") as info:
        UNetConfig(depth=2, features=[4, 8])
    assert info.value.key == "features"
    with pytest.raises(TypeError, match="unexpected keyword argument 'featuers'; valid: in_channels, out_channels, "
                                        "config, ndim, depth, features"):
        UNet(featuers=4)
    with pytest.raises(TypeError, match="by name"):
        UNet(UNetConfig())
    with pytest.raises(TypeError, match="expected a UNetConfig"):
        UNet(config={"depth": 2})
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        UNet(0, 1)


# ---------------------------------------------------------------- anisotropic plan

def test_anisotropic_plan():
    kernels, pools = anisotropic_plan((30, 6, 6), 4)  # spacing 30,6,6 -> 30,12,12 -> 30,24,24 -> 60,48,48
    assert kernels == [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)]
    assert pools == [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert anisotropic_plan((8, 8, 8), 3) == ([(3, 3, 3)] * 4, [(2, 2, 2)] * 3)
    assert anisotropic_plan((5, 5), 2) == ([(3, 3)] * 3, [(2, 2)] * 2)
    assert anisotropic_plan((4, 1), 3) == ([(1, 3), (1, 3), (3, 3), (3, 3)], [(1, 2), (1, 2), (2, 2)])
    with pytest.raises(ValueError, match="voxel_size"):
        anisotropic_plan((0, 4, 4), 2)


# ---------------------------------------------------------------- checkpoints

CHECKPOINT_CASES = {
    "2d_batchnorm": lambda: UNet(1, 2, ndim=2, depth=2, features=4),
    "3d_anisotropic_residual_aspp": lambda: UNet.for_voxel_size((30, 6, 6), 2, 3, depth=2, features=4,
                                                                block="residual", bottleneck="aspp", norm="group"),
    "light2d": lambda: UNet.light2d(out_channels=2, features=4),
}


def _randomize(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return model.eval()


def _read_safetensors_plain(path):
    """A safetensors file by its spec: u64 header size, JSON header, raw little-endian tensors."""
    data = open(path, "rb").read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    metadata = header.pop("__metadata__")
    dtypes = {"F32": "<f4", "I64": "<i8"}
    tensors = {name: np.frombuffer(data[8 + size + info["data_offsets"][0]:8 + size + info["data_offsets"][1]],
                                   dtype=dtypes[info["dtype"]]).reshape(info["shape"])
               for name, info in header.items()}
    return metadata, tensors


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CASES))
def test_checkpoint_roundtrip_identical_outputs(name, tmp_path, monkeypatch):
    model = _randomize(CHECKPOINT_CASES[name]())
    x = torch.rand((1, model.in_channels) + model.valid_shape((6,) * model.ndim))
    path = tmp_path / "model.safetensors"
    save_model(model, path, extra={"normalization": {"mean": 0.5, "std": 0.25}})

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = load_model(path)
    assert not loaded.training and type(loaded) is UNet
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert read_model_header(path).extra == {"normalization": {"mean": 0.5, "std": 0.25}}

    metadata, tensors = _read_safetensors_plain(path)  # no emseg, no safetensors, no pickle
    assert metadata["model_class"] == "UNet"
    rebuilt = UNet(**json.loads(metadata["init_args"]))
    rebuilt.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt.eval()(x))


def test_init_args_are_json_and_rebuild():
    model = UNet.for_voxel_size((40, 4, 4), depth=3, features=[4, 6, 8, 10], bottleneck="aspp")
    args = json.loads(json.dumps(model.init_args))
    rebuilt = UNet(**args)
    assert rebuilt.init_args == model.init_args
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == \
           [(k, v.shape) for k, v in model.state_dict().items()]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not an emseg model checkpoint"):
        load_model(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(TypeError, match="JSON-able"):
        save_model(UNet(depth=1, features=4), tmp_path / "m.safetensors", extra={"bad": object()})
    with pytest.raises(TypeError, match="model class must be one of"):
        save_model(torch.nn.Conv2d(1, 1, 1), tmp_path / "m.safetensors")


# ---------------------------------------------------------------- import hygiene

def test_import_emseg_does_not_import_torch():
    code = "import sys, emseg; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

"""The shape of the io API: at most 8 parameters per public function, one config for storage choices."""

import inspect

import numpy as np
import pytest

import emseg.io
from emseg.config import ConfigError, ExecutionConfig
from emseg.io import StorageConfig, Volume, VolumeMeta, open_volume, write_volume
from emseg.io.output import Output


def _public_callables():
    for name in emseg.io.__all__:
        obj = getattr(emseg.io, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and not issubclass(obj, BaseException) and "__dataclass_fields__" not in vars(obj):
            yield f"{name}.__init__", obj.__init__
    yield "Output.__init__", Output.__init__
    yield "Output.create", Output.create


@pytest.mark.parametrize("name,fn", list(_public_callables()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_public_function_takes_more_than_8_parameters(name, fn):
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    assert len(params) <= 8, f"{name} takes {len(params)} parameters: {[p.name for p in params]}"


def test_storage_config_refuses_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match=r"format must be one of \['hdf5'") as caught:
        StorageConfig(format="hdf6")
    assert caught.value.key == "format"
    with pytest.raises(ConfigError, match="zarr_format must be one of 2, 3; got 4"):
        StorageConfig(zarr_format=4)
    with pytest.raises(ConfigError, match="zarr_format must be one of 2, 3; got True"):
        StorageConfig(zarr_format=True)
    with pytest.raises(ConfigError, match="compression must be 'default', a codec name or None; got 3"):
        StorageConfig(compression=3)


def test_the_execution_config_sets_the_block_memory_and_overwrite(tmp_path):
    class Counting:
        shape, dtype, reads = (8, 16, 16), np.dtype(np.uint8), []

        def __getitem__(self, key):
            self.reads.append(key)
            return np.ones([s.stop - s.start for s in key], np.uint8)

    src = Counting()
    path = str(tmp_path / "c.zarr")
    write_volume(path, src, chunks=(1, 16, 16), execution=ExecutionConfig(max_block_mb=256 / 2**20))
    assert len(src.reads) == 8  # one 256-byte plane per block
    with pytest.raises(FileExistsError, match="overwrite"):
        write_volume(path, np.zeros((8, 16, 16), np.uint8))
    write_volume(path, np.zeros((8, 16, 16), np.uint8), execution=ExecutionConfig(overwrite=True))
    assert open_volume(path)[...].max() == 0


def test_progress_bar_when_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the test suite hides bars
    write_volume(str(tmp_path / "p.tif"), np.zeros((4, 8, 8), np.uint8), execution=ExecutionConfig(progress=True))
    assert "write" in capsys.readouterr().err
    write_volume(str(tmp_path / "q.tif"), np.zeros((4, 8, 8), np.uint8))
    assert capsys.readouterr().err == ""


def test_volume_chunks_come_from_the_array():
    class Dasklike:  # dask arrays give the chunk sizes per axis, not one chunk shape
        shape, dtype, chunks = (4, 4), np.dtype(np.uint8), ((2, 2), (4,))

    assert Volume(np.zeros((4, 4)), VolumeMeta("yx"), path="a", format="zarr").chunks is None
    assert Volume(Dasklike(), VolumeMeta("yx"), path="a", format="zarr").chunks is None

    class Chunked(Dasklike):
        chunks = (np.int64(2), 4)

    assert Volume(Chunked(), VolumeMeta("yx"), path="a", format="zarr").chunks == (2, 4)


def test_output_create_takes_the_outputs_own_format(tmp_path):
    with Output(str(tmp_path / "o.zarr"), signature={"command": "test"}) as o:
        with pytest.raises(ValueError, match=r"o.zarr is a zarr output; storage.format 'n5' does not fit it"):
            o.create((2, 4, 4), "uint8", storage=StorageConfig(format="n5"))
        vol = o.create((2, 4, 4), "uint8", meta=VolumeMeta("zyx", (4, 4, 4)), storage=StorageConfig(compression=None))
        vol[...] = 3
        vol.close()
        o.commit()
    with open_volume(str(tmp_path / "o.zarr")) as vol:
        assert vol.voxel_size == (4.0, 4.0, 4.0) and vol[...].min() == 3

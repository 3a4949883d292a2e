"""emseg datasets list|info|fetch through emseg.cli.main: the table, the entry, a loopback fetch, one-line errors."""

import json
import os

from test_datasets_fetch import _zip_of_tifs, entry

from emseg.cli import main
from emseg.datasets import load_registry
from loopback_server import server  # noqa: F401 - the loopback HTTP server fixture


def test_list_shows_every_dataset_with_its_fields(capsys):
    assert main(["datasets", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "modality", "voxel", "zyx", "(nm)", "size", "labels", "licence"]
    names = [line.split()[0] for line in lines[1:-1]]
    assert names == list(load_registry()) and len(names) >= 15
    row = next(line for line in lines if line.startswith("cremi-a "))
    assert "ssTEM" in row and "40x4x4" in row and "neuron ids" in row and "not recorded" in row


def test_list_json(capsys):
    assert main(["datasets", "list", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == list(load_registry())


def test_info_shows_all_fields_and_what_is_not_recorded(capsys):
    assert main(["datasets", "info", "lucchi"]) == 0
    out = capsys.readouterr().out
    for text in ("FIB-SEM", "5x5x5 nm (z,y,x)", "mouse", "hippocampus", "mitochondria", "EPFL CVLab terms",
                 "Lucchi A.", "training.tif", "checksum not recorded", "size not recorded", "source:",
                 "fetch: emseg datasets fetch lucchi --to DIR"):
        assert text in out, text
    assert main(["datasets", "info", "cremi-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["voxel_size"] == [40, 4, 4]


def test_unknown_name_is_one_line_with_the_nearest(capsys):
    assert main(["datasets", "info", "lucci"]) == 2
    err = capsys.readouterr().err
    assert err == "emseg datasets: error: unknown dataset 'lucci'; did you mean 'lucchi'?\n"
    assert main(["datasets", "fetch", "lucci"]) == 2
    assert "did you mean 'lucchi'?" in capsys.readouterr().err
    assert main(["datasets", "fetch"]) == 2
    assert "needs a dataset name" in capsys.readouterr().err


def test_fetch_from_a_registry_file_says_where_it_put_the_volumes(server, tmp_path, capsys):
    os.makedirs(tmp_path / "src")
    data = _zip_of_tifs(str(tmp_path / "src"))
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({"datasets": list(entry(server, data, checksum=None).values())}))
    args = ["datasets", "fetch", "tiny", "--to", str(tmp_path / "data"), "--registry", str(reg), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("tiny.zip: no checksum is recorded for this file, so the download cannot be verified; "
                             "its sha256 is ")
    assert out[1] == ("tiny -> data/tiny: raw.zarr (4x24x32 uint8, 30x8x8 nm), "
                      "labels.zarr (4x24x32 uint16, 30x8x8 nm)")
    assert main(args) == 0
    assert capsys.readouterr().out == "tiny is already at data/tiny (a finished fetch); nothing to do\n"


def test_fetch_errors_are_one_line(server, tmp_path, capsys):
    assert main(["datasets", "fetch", "nucmm-z", "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emseg datasets: error: nucmm-z: nothing to download here: NucMM is shared as a Google Drive "
                          "folder") and err.count("\n") == 1
    assert main(["datasets", "list", "lucchi"]) == 2
    assert "takes no name" in capsys.readouterr().err
    os.makedirs(tmp_path / "src")
    data = _zip_of_tifs(str(tmp_path / "src"))
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({"datasets": list(entry(server, data, checksum="md5:" + "0" * 32).values())}))
    assert main(["datasets", "fetch", "tiny", "--to", "out", "--registry", str(reg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emseg datasets: error: tiny.zip: checksum mismatch: expected md5:000") and \
        err.count("\n") == 1 and os.listdir("out") == []
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["datasets", "list", "--registry", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err

"""The shipped registry: at least 15 datasets, every field present, and names looked up with a suggestion."""

import json

import pytest

from emseg.datasets import UnknownDatasetError, dataset_info, dataset_names, load_registry, total_size
from emseg.datasets.registry import FIELDS


def test_at_least_15_datasets_with_every_field():
    registry = load_registry()
    assert len(registry) >= 15
    for name, e in registry.items():
        assert all(k in e for k in FIELDS), name
        for k in ("name", "family", "title", "modality", "organism", "tissue", "labels", "licence", "citation",
                  "homepage", "source"):
            assert isinstance(e[k], str) and e[k].strip(), (name, k)  # what is unknown is said, not left empty
        assert e["voxel_size"] is None or len(e["voxel_size"]) == 3
        assert e["files"] or e.get("access"), name
        for f in e["files"]:
            assert f["checksum"] is None or f["checksum"].startswith(("sha256:", "md5:")), name
    fetchable = [n for n, e in registry.items() if e["files"] and e["volumes"]]
    assert len(fetchable) >= 15
    assert {"cremi", "mitoem", "lucchi", "isbi2012", "snemi3d", "urocell", "flyem", "cdeep3m", "vnc"} <= \
        {e["family"] for e in registry.values()}


def test_checksums_are_recorded_only_where_a_source_gives_them():
    registry = load_registry()
    assert registry["cremi-a"]["files"][0]["checksum"].startswith("sha256:4c563d1b")  # torch-em's
    assert all(f["checksum"] is None for f in registry["lucchi"]["files"])  # EPFL publishes none
    assert total_size(registry["lucchi"]) is None


@pytest.mark.parametrize("typo, nearest", [("lucci", "lucchi"), ("snemi", "snemi3d"), ("mitoem-rat", "mitoem-r"),
                                           ("isbi", "isbi2012")])
def test_unknown_name_suggests_the_nearest(typo, nearest):
    with pytest.raises(UnknownDatasetError, match=rf"^unknown dataset '{typo}'; did you mean '{nearest}'\?$"):
        dataset_info(typo)


def test_a_family_name_lists_its_datasets():
    with pytest.raises(UnknownDatasetError, match="cremi-a, cremi-b, cremi-c"):
        dataset_info("cremi")


def test_names_are_case_insensitive():
    assert dataset_info("CREMI-A")["name"] == "cremi-a"


def test_a_bad_registry_file_names_the_entry_and_field(tmp_path):
    entry = dict(load_registry()["lucchi"])
    entry["files"] = [dict(entry["files"][0], checksum="sha1:abc")]
    path = tmp_path / "reg.json"
    path.write_text(json.dumps({"datasets": [entry]}))
    with pytest.raises(ValueError, match="dataset 'lucchi'.*checksum must be"):
        load_registry(path)
    del entry["licence"]
    path.write_text(json.dumps({"datasets": [entry]}))
    with pytest.raises(ValueError, match="lacks the field.*licence"):
        load_registry(path)
    assert dataset_names(load_registry()) == list(load_registry())

"""download_file against a loopback server: resume with Range, servers that ignore Range, wrong checksums."""

import hashlib
import os

import numpy as np
import pytest

from emseg.datasets import ChecksumError, DownloadInterrupted, download_file
from loopback_server import server  # noqa: F401 - the loopback HTTP server fixture

DATA = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
SHA = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def served(server):
    server.files["f.bin"] = DATA
    return server


def test_whole_download_is_verified(served, tmp_path):
    d = download_file(served.url("f.bin"), str(tmp_path / "f.bin"), checksum=SHA, size=len(DATA))
    assert open(d.path, "rb").read() == DATA and d.verified and d.fetched == len(DATA) and d.resumed_from == 0
    assert served.requests == [("f.bin", None)] and not os.path.exists(d.path + ".part")


def test_an_interrupted_download_resumes_with_a_range_request(served, tmp_path):
    served.cut["f.bin"] = 12_000  # the first response stops after 12,000 bytes and closes the connection
    dest = str(tmp_path / "f.bin")
    with pytest.raises(DownloadInterrupted, match=r"f\.bin: download interrupted after 12000 of 50000 bytes.*resume"):
        download_file(served.url("f.bin"), dest, checksum=SHA, retries=0)
    assert os.path.getsize(dest + ".part") == 12_000 and not os.path.exists(dest)
    d = download_file(served.url("f.bin"), dest, checksum=SHA, retries=0)
    assert served.requests[-1] == ("f.bin", "bytes=12000-")
    assert d.fetched == len(DATA) - 12_000 < len(DATA) and d.resumed_from == 12_000
    assert open(dest, "rb").read() == DATA


def test_a_retry_in_the_same_call_resumes(served, tmp_path):
    served.cut["f.bin"] = 7
    d = download_file(served.url("f.bin"), str(tmp_path / "f.bin"), checksum=SHA, retries=1)
    assert [r for _, r in served.requests] == [None, "bytes=7-"] and d.fetched == len(DATA)
    assert open(d.path, "rb").read() == DATA


def test_a_server_that_ignores_range_starts_over(served, tmp_path):
    dest = str(tmp_path / "f.bin")
    with open(dest + ".part", "wb") as f:
        f.write(b"x" * 100)  # bytes that are not the file's: a resume would corrupt it
    served.ignore_range = True
    download_file(served.url("f.bin"), dest, checksum=SHA)
    assert served.requests == [("f.bin", "bytes=100-")] and open(dest, "rb").read() == DATA


def test_a_part_that_is_already_whole_is_not_fetched_again(served, tmp_path):
    dest = str(tmp_path / "f.bin")
    with open(dest + ".part", "wb") as f:
        f.write(DATA)
    d = download_file(served.url("f.bin"), dest, checksum=SHA)  # the server answers 416 with the total
    assert d.fetched == 0 and open(dest, "rb").read() == DATA


def test_a_wrong_checksum_is_one_line_and_leaves_nothing(served, tmp_path):
    wrong = "sha256:" + "0" * 64
    dest = str(tmp_path / "f.bin")
    with pytest.raises(ChecksumError) as e:
        download_file(served.url("f.bin"), dest, checksum=wrong)
    text = str(e.value)
    assert "\n" not in text and text.startswith("f.bin: checksum mismatch")
    assert wrong in text and SHA in text
    assert os.listdir(tmp_path) == []


def test_md5_checksums_and_sizes_are_checked(served, tmp_path):
    md5 = "md5:" + hashlib.md5(DATA).hexdigest()
    d = download_file(served.url("f.bin"), str(tmp_path / "a.bin"), checksum=md5)
    assert d.verified and d.sha256 == SHA.split(":")[1]
    with pytest.raises(ChecksumError, match="expected 10 bytes, received 50000"):
        download_file(served.url("f.bin"), str(tmp_path / "b.bin"), size=10)
    assert not os.path.exists(tmp_path / "b.bin.part")


def test_without_a_checksum_the_sha256_is_still_computed(served, tmp_path):
    d = download_file(served.url("f.bin"), str(tmp_path / "f.bin"))
    assert not d.verified and d.sha256 == SHA.split(":")[1]


def test_http_errors_are_one_line(served, tmp_path):
    with pytest.raises(OSError, match=r"^nope\.bin: the server answered HTTP 404"):
        download_file(served.url("nope.bin"), str(tmp_path / "nope.bin"))
    assert os.listdir(tmp_path) == []

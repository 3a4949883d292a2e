"""Fetch a registry dataset: download (resumable, verified), unpack, convert to OME-Zarr with its voxel size.

What lies under ``DIR`` while a fetch runs, and after it::

    DIR/.NAME.download/   FILE.part while a file arrives, FILE once verified; kept until the
                          dataset is complete, so an interrupted fetch resumes where it stopped
    DIR/.NAME.building/   the unpacked files (source/) and the volumes being converted
    DIR/NAME/             appears only complete (.building renamed): VOLUME.zarr (OME-Zarr, the
                          registry's voxel size), and dataset.json (the entry, each file's
                          sha256, the volumes); with ``convert=False``, source/ instead

A rerun after a complete fetch finds ``DIR/NAME/dataset.json`` and does nothing; a rerun after an
interrupted one resumes the download and rebuilds what was being built.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import shutil
import tarfile
import zipfile

from .download import download_file
from .registry import dataset_info

__all__ = ["FetchResult", "fetch_dataset", "MARKER"]

MARKER = "dataset.json"
_TAR = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_SUFFIXES = (".nii.gz", ".hdf5", ".hdf", ".h5", ".n5", ".zarr", ".tiff", ".tif", ".nii", ".mrc")


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """Where a fetched dataset lies: ``path`` (DIR/NAME); ``volumes``, each volume's OME-Zarr
    path(s) relative to it; ``files``, per downloaded file its ``filename``, ``url``, ``sha256``
    and whether a recorded checksum ``verified`` it; ``already``: it was complete before this call
    and nothing was done; ``converted``: the volumes were written (False with ``convert=False``)."""

    name: str
    path: str
    volumes: dict
    files: list
    already: bool
    converted: bool


def fetch_dataset(name, to=".", *, convert=True, registry=None, progress=False, retries=2) -> FetchResult:
    """Download dataset ``name`` into ``to``, check it, unpack it and convert it to OME-Zarr.

    Parameters
    ----------
    name : str
        A registry name (``emseg datasets list``).
    to : str
        The folder that receives ``NAME/`` (created if needed).
    convert : bool
        Write the registry's raw and label volumes as OME-Zarr with its voxel size (the unpacked
        files are deleted once they are converted); False keeps the unpacked files in
        ``NAME/source/`` and converts nothing.
    registry : dict or str, optional
        A loaded registry or a registry file (default: the shipped one).
    progress : bool
        Progress bars for the downloads and conversions (tqdm, on stderr).
    retries : int
        Further attempts per file after the connection drops mid-file, each resuming.

    Returns
    -------
    FetchResult

    Raises
    ------
    UnknownDatasetError, ValueError (a dataset without files to download, a file missing from the
    download, a wrong checksum: :class:`~emseg.datasets.download.ChecksumError`),
    DownloadInterrupted (the bytes received are kept: the same call resumes), OSError,
    FileExistsError (``to/NAME`` holds something else).
    """
    from ..io.atomic import write_text_atomic
    from ..io.lock import output_lock

    entry = dataset_info(name, registry)
    name = entry["name"]
    if not entry["files"]:
        raise ValueError(f"{name}: nothing to download here: {entry.get('access')}")
    to = os.path.abspath(os.fspath(to))
    if os.path.exists(to) and not os.path.isdir(to):
        raise NotADirectoryError(f"{to} is a file; give the folder that is to hold {name}/")
    os.makedirs(to, exist_ok=True)
    final = os.path.join(to, name)
    with output_lock(final, what=final):
        if os.path.isfile(os.path.join(final, MARKER)):
            done = _finished(final, already=True)
            if convert and not done.converted:
                raise ValueError(f"{final} holds {name} fetched with --no-convert (no OME-Zarr volumes); move it away "
                                 "to fetch and convert it, or keep using the unpacked files")
            return done
        if os.path.lexists(final):
            raise FileExistsError(f"{final} exists but is not a finished emseg datasets fetch (it has no {MARKER}); "
                                  "move it away or fetch into another --to")
        downloads = os.path.join(to, f".{name}.download")
        os.makedirs(downloads, exist_ok=True)
        try:
            files = [_download(f, downloads, retries, progress) for f in entry["files"]]
        finally:
            if not os.listdir(downloads):  # a failed first file leaves nothing behind
                os.rmdir(downloads)
        building = os.path.join(to, f".{name}.building")
        if os.path.lexists(building):  # an interrupted unpack or conversion: start it over
            shutil.rmtree(building)
        source = os.path.join(building, "source")
        os.makedirs(source)
        for f in files:
            _unpack(os.path.join(downloads, f["filename"]), source)
        volumes = {}
        if convert:
            volumes = _convert_volumes(entry, source, building, progress)
            shutil.rmtree(source)
        record = {"name": name, "fetched": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "converted": convert, "voxel_size": entry["voxel_size"], "volumes": volumes, "files": files,
                  "entry": entry}
        write_text_atomic(os.path.join(building, MARKER), json.dumps(record, indent=2) + "\n")
        os.chmod(os.path.join(building, MARKER), 0o644)  # readable like the volumes beside it
        os.rename(building, final)
        shutil.rmtree(downloads)
    return _finished(final, already=False)


def _finished(final, already) -> FetchResult:
    with open(os.path.join(final, MARKER), encoding="utf-8") as f:
        record = json.load(f)
    return FetchResult(record["name"], final, record["volumes"], record["files"], already, record["converted"])


def _download(f, downloads, retries, progress) -> dict:
    """One registry file into ``downloads`` (skipped when an earlier run finished it); its record."""
    dest = os.path.join(downloads, f["filename"])
    done = dest + ".done.json"  # written once the file is complete and checked: what it was checked against
    wanted = {"url": f["url"], "checksum": f["checksum"]}
    record = None
    if os.path.isfile(dest) and os.path.isfile(done):
        with open(done, encoding="utf-8") as fh:
            record = json.load(fh)
        if {k: record.get(k) for k in wanted} != wanted:  # the registry changed since: fetch it anew
            os.remove(dest)
            record = None
    if record is None:
        d = download_file(f["url"], dest, checksum=f["checksum"], size=f["size"], retries=retries, progress=progress)
        record = dict(wanted, sha256=d.sha256)
        from ..io.atomic import write_text_atomic

        write_text_atomic(done, json.dumps(record) + "\n")
    sha256 = record["sha256"]
    return {"filename": f["filename"], "url": f["url"], "checksum": f["checksum"], "sha256": sha256,
            "verified": f["checksum"] is not None}


def _unpack(path, dest):
    """Unpack a zip or tar archive into ``dest``; a plain file (HDF5, TIFF, ...) is linked there."""
    name, lower = os.path.basename(path), path.lower()
    try:
        if lower.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                root = os.path.realpath(dest)
                for member in z.namelist():
                    target = os.path.realpath(os.path.join(root, member))
                    if target != root and not target.startswith(root + os.sep):
                        raise ValueError(f"{name}: the archive holds {member!r}, which would land outside its folder; "
                                         "not unpacked")
                z.extractall(root)
        elif lower.endswith(_TAR):
            with tarfile.open(path) as t:
                t.extractall(dest, filter="data")  # refuses members that leave dest, links out, devices
        else:
            target = os.path.join(dest, name)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    except (zipfile.BadZipFile, tarfile.TarError) as e:
        raise ValueError(f"{name}: not a readable archive ({e}); delete it and fetch again") from None


def _convert_volumes(entry, source, out, progress) -> dict[str, list[str]]:
    """Each of the entry's volumes as OME-Zarr in ``out``: VOLUME.zarr, or VOLUME/STEM.zarr per file of a pattern."""
    voxel = tuple(float(v) for v in entry["voxel_size"]) if entry["voxel_size"] else None
    written = {}
    for vname, spec in entry["volumes"].items():
        pattern = os.path.join(source, spec["path"])
        if any(c in spec["path"] for c in "*?["):
            matches = sorted(glob.glob(pattern))
            if matches:
                os.makedirs(os.path.join(out, vname))
            targets = [(m, os.path.join(out, vname, _stem(m) + ".zarr")) for m in matches]
        else:
            targets = [(pattern, os.path.join(out, vname + ".zarr"))] if os.path.exists(pattern) else []
        if not targets:
            raise ValueError(f"{entry['name']}: {spec['path']} (volume {vname!r}) is not in the download, which holds "
                             f"{_listing(source)}; the registry entry is out of date")
        for src, dst in targets:
            _convert_one(src, spec, dst, voxel, progress)
        written[vname] = [os.path.relpath(dst, out) for _, dst in targets]
    return written


def _convert_one(src, spec, dst, voxel, progress):
    from ..config import ExecutionConfig
    from ..io import convert_volume, write_volume

    execution = ExecutionConfig(progress=progress, pyramid=False)
    if spec.get("relabel") == "transforms":  # FlyEM ground truth: supervoxel ids and a table to neuron ids
        import fastremap
        import h5py

        with h5py.File(src, "r") as f:
            ids, table = f[spec["key"]][...], f["transforms"][...]
        labels = fastremap.remap(ids, {int(a): int(b) for a, b in table}, preserve_missing_labels=True)
        write_volume(dst, labels, voxel_size=voxel, execution=execution)
        return
    convert_volume(src + (f":{spec['key']}" if spec.get("key") else ""), dst, voxel_size=voxel, execution=execution)


def _stem(path) -> str:
    name = os.path.basename(path.rstrip("/"))
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def _listing(folder, limit=8) -> str:
    names = sorted(os.listdir(folder))
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return shown

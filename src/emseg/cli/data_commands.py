"""The command for public datasets: ``emseg datasets list|info|fetch NAME [--to DIR]``."""

from __future__ import annotations

import json
import os

from .commands import _human

_NOT_RECORDED = "not recorded"


def cmd_datasets(args):
    from ..datasets import load_registry

    registry = load_registry(args.registry)
    if args.action == "list":
        if args.name:
            raise ValueError("emseg datasets list takes no name; use emseg datasets info NAME")
        _print_list(registry, args.json)
        return
    if not args.name:
        raise ValueError(f"emseg datasets {args.action} needs a dataset name (emseg datasets list shows them)")
    if args.action == "info":
        _print_info(registry, args.name, args.json)
    else:
        _fetch(registry, args)


def _voxel(entry) -> str:
    vs = entry["voxel_size"]
    return "x".join(f"{v:g}" for v in vs) if vs else _NOT_RECORDED


def _size(entry) -> str:
    from ..datasets import total_size

    if not entry["files"]:
        return "remote" if "remote" in (entry.get("access") or "") else "manual"
    total = total_size(entry)
    if total is not None:
        return _human(total)
    parts = [_human(f["size"]) if f["size"] else (f.get("size_note") or "").split(" (")[0].removeprefix("about ")
             for f in entry["files"]]
    return "~" + " + ".join(parts) if all(parts) else _NOT_RECORDED


def _print_list(registry, as_json):
    if as_json:
        print(json.dumps(list(registry.values()), indent=2))
        return
    rows = [("name", "modality", "voxel zyx (nm)", "size", "labels", "licence")]
    rows += [(e["name"], e["modality"], _voxel(e), _size(e), e["labels"], e["licence"]) for e in registry.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"{len(registry)} datasets; emseg datasets info NAME shows one, emseg datasets fetch NAME --to DIR "
          "downloads it and converts it to OME-Zarr")


def _print_info(registry, name, as_json):
    from ..datasets import dataset_info

    e = dataset_info(name, registry)
    if as_json:
        print(json.dumps(e, indent=2))
        return
    print(f"{e['name']}: {e['title']}")
    for label, value in (("family", e["family"]), ("modality", e["modality"]), ("voxel size", _voxel(e) + (
            " nm (z,y,x)" if e["voxel_size"] else "")), ("shape", "x".join(map(str, e["shape"])) if e.get("shape")
                                                          else _NOT_RECORDED), ("organism", e["organism"]),
                         ("tissue", e["tissue"]), ("labels", e["labels"]), ("licence", e["licence"]),
                         ("citation", e["citation"]), ("reference", e["reference"] or _NOT_RECORDED),
                         ("homepage", e["homepage"]), ("size", _size(e))):
        print(f"  {label:11s} {value}")
    if e["files"]:
        print("files:")
        for f in e["files"]:
            size = _human(f["size"]) if f["size"] else f"size {_NOT_RECORDED}" + (
                f" in bytes; {f['size_note']}" if f.get("size_note") else "")
            print(f"  {f['filename']}  {f['url']}")
            print(f"    {size}; checksum {f['checksum'] or _NOT_RECORDED}")
    else:
        print(f"access: {e.get('access')}")
    if e["volumes"]:
        print("volumes (each becomes NAME.zarr, OME-Zarr with the voxel size):")
        for vname, spec in e["volumes"].items():
            key = f":{spec['key']}" if spec.get("key") else ""
            print(f"  {vname:12s} {spec['kind']:6s} {spec['path']}{key}")
    for note in e.get("notes") or ():
        print(f"note: {note}")
    print(f"source: {e['source']}")
    if e["files"]:
        print(f"fetch: emseg datasets fetch {e['name']} --to DIR")


def _fetch(registry, args):
    from ..datasets import fetch_dataset
    from ..io import open_volume

    try:
        r = fetch_dataset(args.name, args.to, convert=not args.no_convert, registry=registry,
                          progress=not args.no_progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt("interrupted; what was downloaded is kept: run the same command again to "
                                "resume") from None
    where = r.path if os.path.relpath(r.path).startswith("..") else os.path.relpath(r.path)
    if r.already:
        print(f"{r.name} is already at {where} (a finished fetch); nothing to do")
        return
    for f in r.files:
        if not f["verified"]:
            print(f"{f['filename']}: no checksum is recorded for this file, so the download cannot be verified; its "
                  f"sha256 is {f['sha256']} (recorded in {os.path.join(where, 'dataset.json')})")
    if not r.converted:
        print(f"{r.name} -> {os.path.join(where, 'source')} (unpacked, not converted)")
        return
    parts = []
    for vname, paths in r.volumes.items():
        if len(paths) > 1:
            parts.append(f"{vname}/ ({len(paths)} volumes)")
            continue
        with open_volume(os.path.join(r.path, paths[0])) as v:
            vs = "x".join(f"{s:g}" for s in v.voxel_size) + " nm" if v.voxel_size else "no voxel size"
            parts.append(f"{paths[0]} ({'x'.join(map(str, v.shape))} {v.dtype}, {vs})")
    print(f"{r.name} -> {where}: " + ", ".join(parts))

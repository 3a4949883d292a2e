"""The commands that measure and show results: ``emseg measure``, ``emseg pyramid``, ``emseg view``."""

from __future__ import annotations

import os


def cmd_pyramid(args):
    from ..io.lock import output_lock
    from ..io.paths import split_key
    from ..io.pyramid import add_pyramid, pyramid_method

    path, key = split_key(args.path)
    if not os.path.isdir(path) or not path.rstrip("/").endswith(".zarr"):
        raise ValueError(f"{args.path}: emseg pyramid adds levels to an OME-Zarr image (a .zarr folder); "
                         "emseg convert IN OUT.zarr makes one")
    import zarr

    try:
        group = zarr.open_group(path, mode="r", path=key or "")
    except Exception:  # noqa: BLE001 - an array, not an image group
        raise ValueError(f"{args.path} is not an OME-Zarr image group; give the image (e.g. out.zarr), not one of "
                         "its arrays") from None
    method = args.method or pyramid_method(group.attrs.asdict(), group[_first_dataset(group, args.path)].dtype)
    if method is None:
        raise ValueError(f"{args.path}: cannot tell whether it holds labels or intensities; say --method mode "
                         "(labels) or --method mean (raw)")
    with output_lock(path, what=args.path):
        shapes = add_pyramid(path, key, method=method, min_size=args.min_size, workers=args.threads)
    print(f"{len(shapes) - 1} levels ({method}): " + ", ".join("x".join(map(str, s)) for s in shapes[1:])
          + f" -> {args.path}")


def _first_dataset(group, name):
    from ..io.omezarr import ome_multiscales

    ms = ome_multiscales(group.attrs.asdict())
    if not ms:
        raise ValueError(f"{name} is not an OME-Zarr image (no multiscales); emseg convert IN OUT.zarr makes one")
    return ms[0]["datasets"][0]["path"]


def cmd_view(args):
    try:
        import neuroglancer  # noqa: F401
    except ImportError:
        raise ValueError("emseg view needs neuroglancer (pip install 'emseg[view]')") from None
    import time

    from ..view import view_volumes

    viewer, url, layers = view_volumes(args.paths, bind=args.bind, port=args.port)
    for name, kind, _ in layers:
        print(f"  {name}: {kind}")
    print(f"open {url} in a browser (Ctrl-C stops the server)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped")


def cmd_measure(args):
    from ..config import ExecutionConfig
    from ..measure.run import measure_volume
    from ..measure.write import table_format

    table_format(args.output)  # a bad extension or a missing library is refused before anything is read
    if args.report:
        from ..measure.report import check_report

        check_report()
        if os.path.isfile(args.report):
            raise ValueError(f"--report {args.report} is a file; give a folder for the page and its pictures")
    from .cluster_options import cluster_options, print_job_script

    e = ExecutionConfig(workers=args.workers or args.threads, scheduler=args.scheduler or ("local" if args.workers
                        else None), overwrite=args.overwrite, progress=not args.no_progress, **cluster_options(args))
    if args.job_script:
        from ..measure.run import measure_memory

        return print_job_script("measure", e, measure_memory(args.labels, args.block_shape))
    r = measure_volume(args.labels, args.output, args.raw, voxel_size=args.voxel_size, block_shape=args.block_shape,
                       execution=e)
    unit = "nm" if r.voxel_size_known else "voxels (the labels give no voxel size: --voxel-size sets it)"
    print(f"{len(r.columns['id'])} objects from {r.n_blocks} blocks in {r.seconds:.1f} s, voxel size "
          f"{'x'.join(f'{v:g}' for v in r.voxel_size)}, lengths in {unit} -> {r.path}")
    if args.report:
        from ..io import open_volume
        from ..measure.report import write_report
        from ..measure.table import _Section

        with open_volume(args.labels) as lab:
            raw = open_volume(args.raw) if args.raw else None
            try:
                flat = len(lab.shape) == 2
                page = write_report(r.columns, args.report, _Section(lab) if flat else lab,
                                    None if raw is None else _Section(raw) if flat else raw,
                                    ((1.0,) if flat else ()) + tuple(r.voxel_size), title=os.path.basename(args.labels))
            finally:
                if raw is not None:
                    raw.close()
        print(f"report: {page}")


def cmd_mesh(args):
    try:
        import zmesh  # noqa: F401
    except ImportError:
        raise ValueError("emseg mesh needs zmesh (pip install 'emseg[view]')") from None
    from ..view.precomputed import write_precomputed

    r = write_precomputed(args.labels, args.output, voxel_size=args.voxel_size, simplify=args.simplify,
                          workers=args.threads, overwrite=args.overwrite)
    print(f"{r['n_meshes']} meshes ({r['n_triangles']} triangles) and the segmentation -> {args.output}; serve it "
          f"(python -m http.server) and open precomputed://http://HOST/{os.path.basename(args.output.rstrip('/'))} "
          "in neuroglancer")

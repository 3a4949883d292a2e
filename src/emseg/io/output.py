"""The life of an output: locked, written under a hidden partial name, renamed into place when complete.

Every writer of emseg (``write_volume``/``convert``, ``predict``, ``segment``, ``postprocess``)
goes through :class:`Output`, so what stands at the requested path is always either complete or
absent::

    dir/.emseg-lock-NAME            the writer's lock (pid, host, start; flock: stale when it dies)
    dir/.emseg-run-NAME.jsonl       the run record: its signature, then one line per finished block
    dir/.emseg-partial-NAME         the output being written (a container holding KEY for keyed outputs)
    dir/NAME                        appears only when complete (renamed, or KEY moved into the container)

(``NAME`` is ``KEY@name``, the key percent-encoded, for a dataset of a container.) A rerun with the same
signature resumes the partial output; another signature is refused with the fields that differ;
``overwrite`` starts over and replaces only the requested file or dataset, and only once the new
one is complete. A completed output of a container format carries its signature in the ``emseg``
attribute, so rerunning a finished command does nothing. Nothing is deleted unless its real path
lies inside the output folder and carries one of the names above, or is the requested output itself.

The names beside an output are :mod:`emseg.io.siblings`, the ``emseg`` attribute
:mod:`emseg.io.runattrs`; this module is the :class:`Output` that uses both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from ..config import ExecutionConfig
from .lock import output_lock
from .paths import CONTAINERS, check_key, detect_format, inside_container, split_key
from .runattrs import read_run_attrs, write_run_attrs
from .siblings import incomplete_hint, partial_location, remove_ours, sibling

# The names and the attribute live in siblings and runattrs; they are importable from here too.
__all__ = ["Output", "check_not_input", "partial_location", "incomplete_hint", "read_run_attrs",
           "write_run_attrs", "remove_ours", "sibling"]


def check_not_input(out, *inputs):
    """Refuse an output that is one of the run's inputs (the same file, or the same dataset of a container)."""
    o_path, o_key = split_key(os.fspath(out))
    for i in inputs:
        if i is None or not isinstance(i, (str, os.PathLike)):
            continue
        i_path, i_key = split_key(os.fspath(i))
        if os.path.exists(i_path) and os.path.exists(o_path) and os.path.samefile(i_path, o_path) and \
                (o_key or "") == (i_key or ""):
            raise ValueError(f"{out} is also this run's input {i}: write the output to another file or dataset "
                             "(--overwrite would replace the input with its own result)")


# -- the output ---------------------------------------------------------------------------------------------

class Output:
    """An output being written: lock, run record, partial location, commit.

    Use as a context manager::

        with Output("pred.zarr", signature=sig, execution=ExecutionConfig(overwrite=False)) as o:
            if o.complete:            # this very run finished before: nothing to do
                ...
            vol = o.create(shape, dtype, chunks=..., meta=VolumeMeta("czyx", voxel_size))  # or reopens the partial
            ... write blocks, o.record.mark(i) ...
            o.commit({"kind": "prediction"})

    Parameters
    ----------
    path, key : the requested output (``file.h5:key`` allowed).
    signature : dict
        The run's :func:`emseg.runs.run_signature`; the record starts with it.
    execution : emseg.config.ExecutionConfig, optional
        Only ``overwrite`` and ``resume`` apply. ``overwrite``: start over; an existing partial
        output is discarded and, at commit, the existing output (that file, or that dataset of its
        container) is replaced. ``resume=False``: discard a partial output of this run instead of
        continuing it. Default: ``ExecutionConfig()`` (resume, never overwrite).
    resumable : bool
        Keep the partial output when interrupted so a rerun with the same signature continues it
        (block outputs); False for writes that start over (conversion).
    complete_ok : bool, optional
        Whether a finished output carrying this very signature counts as done (``complete``),
        rather than as existing data to refuse; default ``resumable``.
    format : str, optional
        Force the output's format (default: from the path's suffix).
    """

    def __init__(self, path, key=None, *, signature, execution=None, resumable=True, complete_ok=None, format=None):
        execution = execution or ExecutionConfig()
        self.path, self.key = split_key(os.fspath(path), key)
        self.fmt = detect_format(self.path, format, for_writing=True)
        if self.key is not None and self.fmt not in CONTAINERS:
            raise ValueError(f"{self.path}: a {self.fmt} file holds one volume; drop the key {self.key!r}")
        self.key = check_key(self.path, self.key)
        if self.key and self.fmt in ("zarr", "n5") and os.path.isdir(self.path):
            parts = self.key.split("/")
            for i in range(1, len(parts) + 1):
                node = os.path.join(self.path, *parts[:i])
                if os.path.islink(node):
                    raise ValueError(f"{self.path}: dataset key {self.key!r} goes through the symbolic link "
                                     f"{'/'.join(parts[:i])!r}; emseg does not write through links inside a "
                                     "container (it could replace what the link points to)")
            inside_container(self.path, self.key)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{self.path}: output folder {folder} does not exist")
        self.folder = folder
        self.name = self.path + (f":{self.key}" if self.key else "")
        self.keyed = self.key is not None and self.fmt in CONTAINERS
        self.tmp_path, self.tmp_key = partial_location(self.path, self.key if self.keyed else None), self.key
        self.record_file = sibling(self.path, self.key if self.keyed else None, ".emseg-run-", ".jsonl")
        self.signature, self.resumable = signature, resumable
        self.overwrite, self.resume = execution.overwrite, execution.resume
        self.complete_ok = resumable if complete_ok is None else complete_ok
        self.complete, self.record, self.resumed = False, None, False
        self.zarr_format = None
        self._stack = contextlib.ExitStack()

    # lifetime ------------------------------------------------------------------------------------------
    def __enter__(self):
        try:
            self._stack.enter_context(output_lock(self.path, self.key if self.keyed else None, what=self.name))
            if self.keyed:  # nobody may be writing the whole container meanwhile
                with output_lock(self.path, what=self.path):
                    pass
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind, exc, tb):
        try:
            if self.record is not None:
                self.record.close()
            if kind is not None:
                self._restore_old()
                if not self.resumable:
                    self.discard()
        finally:
            self._stack.close()

    def _start(self):
        from ..blockwise.record import BlockRecord

        self._restore_old()
        if self.exists():
            recorded = read_run_attrs(self.path, self.key, self.fmt)
            if (self.complete_ok and not self.overwrite and recorded and recorded.get("complete")
                    and recorded.get("signature") == self.signature):
                self.complete = True
                if os.path.exists(self.record_file):
                    remove_ours(self.record_file, self.folder)
                return
            if not self.overwrite:
                raise FileExistsError(self._exists_message(recorded))
        if self.keyed and self.fmt == "zarr" and os.path.isdir(self.path):
            self.zarr_format = 3 if os.path.exists(os.path.join(self.path, "zarr.json")) else 2
        head = BlockRecord.read_head(self.record_file) if os.path.exists(self.record_file) else None
        resume = False
        if head is not None and os.path.exists(self.tmp_path):
            same = head.get("signature") == self.signature
            if same and self.resumable and self.resume:  # the same run: resuming equals starting over
                resume = True
            elif not same and head.get("resumable") and not self.overwrite and self.resume:
                from ..runs import check_same_run

                check_same_run(head.get("signature"), self.signature,
                               f"{self.name} (its incomplete output at {self.tmp_path})",
                               fix="pass --overwrite to discard it and start over, or write to another output")
        if not resume:
            self.discard()
        self.record = BlockRecord(self.record_file, self.signature, resume=resume, what=self.name,
                                  resumable=self.resumable)
        self.resumed = resume

    def _old_location(self):
        """Where the previous version of the output waits while ``--overwrite`` swaps the new one in."""
        if self.keyed and self.fmt in ("zarr", "n5"):
            if not os.path.isdir(self.path):
                return None, None
            parent, _, name = self.key.rpartition("/")
            folder = inside_container(self.path, parent) if parent else os.path.realpath(self.path)
            return os.path.join(folder, f".emseg-old-{name}"), os.path.join(folder, name)
        if self.keyed:
            return None, None  # HDF5 datasets are replaced inside the file
        return sibling(self.path, None, ".emseg-old-"), self.path

    def _restore_old(self):
        """A run killed between moving the old output aside and moving the new one in left the old one
        beside it: put it back (the new one is still complete at the partial location, or is redone)."""
        old, final = self._old_location()
        if old is None or not os.path.lexists(old):
            return
        if os.path.lexists(final):
            remove_ours(old)  # the swap finished: this is the replaced version
        else:
            os.replace(old, final)

    def _exists_message(self, recorded):
        if recorded and (recorded.get("signature") or {}).get("command") == self.signature.get("command"):
            from ..runs import differences

            diff = differences(recorded["signature"], self.signature)
            if diff:
                return (f"{self.name} already holds the output of another run ({'; '.join(diff[:3])}); "
                        "pass --overwrite to replace it, or write to another output")
        what = "already holds a dataset" if self.keyed else "already exists"
        return f"{self.name} {what}; pass --overwrite to replace it, or write to another output"

    def exists(self) -> bool:
        """Whether the requested output (that file/folder, or that key of its container) exists."""
        if not os.path.lexists(self.path):
            return False
        if not self.keyed:
            return True
        if self.fmt == "hdf5":
            import h5py

            try:
                with h5py.File(self.path, "r") as f:
                    return self.key in f
            except OSError as e:
                raise ValueError(f"{self.path}: cannot open the existing HDF5 file to add {self.key!r} "
                                 f"({e}); write to another file") from None
        return os.path.exists(inside_container(self.path, self.key))

    # writing ------------------------------------------------------------------------------------------
    def create(self, shape, dtype, *, chunks=None, meta=None, storage=None):
        """The partial volume to write into: created, or reopened when this run resumes.

        ``meta`` (a :class:`~emseg.io.VolumeMeta`) and ``storage`` (a
        :class:`~emseg.io.StorageConfig`) as for :func:`~emseg.io.create_volume`; the format is
        the output's own, and a dataset added to an existing Zarr container takes its version.
        """
        from .access import create_volume, open_volume
        from .storage import StorageConfig

        storage = storage or StorageConfig()
        if storage.format not in (None, self.fmt):
            raise ValueError(f"{self.name} is a {self.fmt} output; storage.format {storage.format!r} does not fit it")
        storage = dataclasses.replace(storage, format=self.fmt, zarr_format=self.zarr_format or storage.zarr_format)
        if self.resumed:
            vol = open_volume(self.tmp_path, self.tmp_key, mode="r+", format=self.fmt)
            if tuple(vol.shape) == tuple(shape) and str(vol.dtype) == str(__import__("numpy").dtype(dtype)):
                return vol
            vol.close()  # another shape with the same signature cannot happen; start over to be safe
            self.record.close()
            self.discard()
            from ..blockwise.record import BlockRecord

            self.record = BlockRecord(self.record_file, self.signature, resume=False, what=self.name,
                                      resumable=self.resumable)
            self.resumed = False
        return create_volume(self.tmp_path, shape, dtype, chunks, key=self.tmp_key, meta=meta, storage=storage,
                             overwrite=True)

    @property
    def done(self) -> set:
        return self.record.done if self.record is not None else set()

    def discard(self):
        """Remove this output's partial data and record (never anything else)."""
        if self.record is not None:
            self.record.close()
        for p in (self.tmp_path, self.record_file):
            if os.path.lexists(p):
                remove_ours(p, self.folder)

    def commit(self, attrs=None):
        """Mark the partial output complete and move it to the requested path (replacing only that output)."""
        from .. import faults

        if self.fmt in CONTAINERS:
            write_run_attrs(self.tmp_path, self.tmp_key, self.fmt,
                            {"signature": self.signature, "complete": True, **(attrs or {})})
        faults.point("commit")
        if self.record is not None:
            self.record.close()
        with output_lock(self.path, what=self.path, wait=60) if self.keyed else contextlib.nullcontext():
            if self.exists() and not self.overwrite:
                raise FileExistsError(f"{self.name} appeared while this run was writing; the complete result is "
                                      f"kept at {self.tmp_path}: move it yourself, or rerun with --overwrite")
            if self.keyed and os.path.exists(self.path):
                self._move_key()
            else:
                self._replace_whole()
        faults.point("committed")
        if os.path.exists(self.record_file):
            remove_ours(self.record_file, self.folder)

    def _replace_whole(self):
        from .. import faults

        if os.path.lexists(self.path):
            old = sibling(self.path, None, ".emseg-old-")
            if os.path.lexists(old):
                remove_ours(old, self.folder)
            os.replace(self.path, old)
            faults.point("moved-old")
            os.replace(self.tmp_path, self.path)
            remove_ours(old, self.folder)
        else:
            os.replace(self.tmp_path, self.path)

    def _move_key(self):
        parent, _, name = self.key.rpartition("/")
        if self.fmt == "hdf5":
            import h5py

            staging = f"{parent + '/' if parent else ''}.emseg-partial-{name}"
            try:
                f = h5py.File(self.path, "a")
            except OSError as e:
                raise ValueError(f"{self.path}: cannot open the HDF5 file to add {self.key!r} ({e}); it is open "
                                 "elsewhere (another process, or this run's own input in the same file); the "
                                 f"complete result is kept at {self.tmp_path}: rerun when the file is free") from None
            with f, h5py.File(self.tmp_path, "r") as src:
                if staging in f:
                    del f[staging]
                f.copy(src[self.tmp_key], f.require_group(parent) if parent else f, name=staging.rpartition("/")[2])
                if self.key in f:
                    del f[self.key]
                f.move(staging, self.key)
            remove_ours(self.tmp_path, self.folder)
            return
        src = os.path.join(self.tmp_path, self.key)
        dst = inside_container(self.path, self.key)
        if parent:
            if self.fmt == "zarr":
                import zarr

                fmt = 3 if os.path.exists(os.path.join(self.path, "zarr.json")) else 2
                zarr.open_group(str(self.path), mode="a", path=parent, zarr_format=fmt)
            else:
                os.makedirs(inside_container(self.path, parent), exist_ok=True)
        if os.path.lexists(dst):
            old = os.path.join(os.path.dirname(dst), f".emseg-old-{name}")
            if os.path.lexists(old):
                remove_ours(old, os.path.dirname(dst))
            os.replace(dst, old)
            os.replace(src, dst)
            remove_ours(old, os.path.dirname(dst))
        else:
            os.replace(src, dst)
        remove_ours(self.tmp_path, self.folder)

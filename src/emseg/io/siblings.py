"""The hidden files emseg keeps beside an output, their names, and deleting only those.

For an output ``dir/NAME`` (``NAME`` is ``KEY@name``, the key percent-encoded, for a dataset of a
container)::

    dir/.emseg-lock-NAME            the writer's lock (:mod:`emseg.io.lock`)
    dir/.emseg-run-NAME.jsonl       the run record
    dir/.emseg-partial-NAME         the output being written
    dir/.emseg-old-NAME             the previous output while --overwrite swaps the new one in
    dir/.emseg-scratch-NAME.d       intermediate state of a multi-pass run (segment)
    dir/.emseg-prob-NAME.zarr       the probabilities of a segment run that keeps none

:func:`remove_ours` deletes a path only when it carries one of these names and lies in the
output's own folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

from .paths import split_key

__all__ = ["sibling", "partial_location", "incomplete_hint", "remove_ours"]

_OURS = (".emseg-partial-", ".emseg-run-", ".emseg-old-", ".emseg-scratch-", ".emseg-prob-")


def _tag(key):
    from urllib.parse import quote

    return quote(key, safe="") + "@" if key else ""  # injective: "a/b" and "a~b" get different names


def sibling(path, key, prefix, suffix=""):
    """``dir/PREFIX[KEY@]NAME[SUFFIX]``: where emseg keeps what belongs to the output ``path`` (``key``)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f"{prefix}{_tag(key)}{name}{suffix}")


def partial_location(path, key=None) -> str:
    """The hidden path an output of ``path`` (``key``) is written to until it is complete."""
    return sibling(path, key, ".emseg-partial-")


def incomplete_hint(path, key=None) -> str:
    """A sentence to add to "does not exist" when an interrupted run left a partial output of ``path``."""
    path, key = split_key(os.fspath(path), key)
    for p in (partial_location(path, key), sibling(path, key, ".emseg-scratch-", ".d"),
              sibling(path, key, ".emseg-run-", ".jsonl")):
        if os.path.exists(p):
            return (f" (an incomplete output of an interrupted run is at {p}: rerun the same command to resume, "
                    "or pass --overwrite to start over)")
    return ""


def remove_ours(path, folder=None):
    """Delete ``path`` (file or folder) if it is one of emseg's own names in ``folder``; else refuse.

    A symbolic link of such a name is unlinked, never followed.
    """
    path = os.path.abspath(os.fspath(path))
    here = os.path.realpath(os.path.dirname(path))
    folder = os.path.realpath(folder or os.path.dirname(path))
    if here != folder or not os.path.basename(path).startswith(_OURS):
        raise RuntimeError(f"refusing to delete {path}: not one of emseg's own files in {folder}")
    _rmtree(path)


def _rmtree(path):
    # Zarr writes from its own I/O thread: a chunk in flight when we were interrupted can land
    # after the first removal, so look again after a moment.
    for _ in range(100):
        if not os.path.lexists(path):
            return
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        time.sleep(0.02)
    if os.path.lexists(path):
        raise OSError(f"cannot remove {path}: it keeps coming back or is not removable; remove it by hand")

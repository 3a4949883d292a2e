"""One writer per output: an advisory lock file holding the writer's process id, host and start time.

The lock is ``flock`` on a hidden file beside the output (``dir/.emseg-lock-NAME``). The kernel
releases it when the holder dies, however it dies, so a lock left by a killed run is stale by
construction and the next run takes it over; the file's contents only serve the message that
names the live holder. (Locks on network file systems follow the file system's ``flock`` support;
NFS emulates it with byte-range locks.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

from .siblings import sibling

__all__ = ["OutputBusyError", "output_lock", "lock_path"]


class OutputBusyError(FileExistsError):
    """Another live process is writing the same output."""


def lock_path(path, key=None) -> str:
    """``dir/.emseg-lock-NAME`` (``NAME`` is ``KEY@name``, the key percent-encoded, for a dataset of a container)."""
    return sibling(path, key, ".emseg-lock-")


def _holder(fd) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"process {info.get('pid')} on {info.get('host')} (since {since})"


def _try_lock(target):
    """Take the lock on ``target`` or return the holder's description. Returns (fd, None) or (None, holder)."""
    while True:
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            return None, holder
        # the previous holder may have removed the file between our open and our lock: lock the live file
        try:
            same = os.fstat(fd).st_ino == os.stat(target).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, None
        os.close(fd)


@contextlib.contextmanager
def output_lock(path, key=None, *, what=None, wait=0.0):
    """Hold the lock of ``path`` (``key``) while the block runs; refuse when a live process holds it.

    Parameters
    ----------
    wait : float
        Seconds to keep trying before giving up (0: fail at once; short steps such as a commit wait).

    Raises
    ------
    OutputBusyError
        Naming the output, the holder (pid, host, start) and what to do.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "pred.zarr")
    >>> with output_lock(out):
    ...     try:
    ...         with output_lock(out):
    ...             pass
    ...     except OutputBusyError as e:
    ...         print(str(e).split(" by ")[0])
    pred.zarr is being written
    """
    target = lock_path(path, key)
    if not os.path.isdir(os.path.dirname(target)):
        raise FileNotFoundError(f"{path}: output folder {os.path.dirname(target)} does not exist")
    deadline = time.monotonic() + wait
    while True:
        try:
            fd, holder = _try_lock(target)
        except PermissionError:
            raise PermissionError(f"{path}: cannot write in the output folder {os.path.dirname(target)} "
                                  "(permission denied); choose a folder you can write to") from None
        if fd is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if fd is None:
        name = what or (f"{os.path.basename(os.fspath(path))}" + (f":{key}" if key else ""))
        raise OutputBusyError(f"{name} is being written by {holder}; wait for that run to finish (or stop it), "
                              "or write to another output")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
        yield target
    finally:
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(target).st_ino:
                os.unlink(target)
        os.close(fd)

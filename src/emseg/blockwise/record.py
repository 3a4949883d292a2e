"""The durable record of a blockwise run: its signature, then one line per finished block.

::

    {"signature": {...}, "resumable": true}     the head: which run this is
    0                                            block 0 is written
    3                                            block 3 is written
    ...

Shared by every writing stage (through :class:`emseg.io.output.Output`) and by the passes of
:func:`emseg.instances.segment_blockwise`; knows nothing about what a block computes.
"""

from __future__ import annotations

import json
import os
import threading

__all__ = ["BlockRecord"]


class BlockRecord:
    """Append-only, fsync'ed record of finished blocks, headed by the run's signature (a JSON dict).

    A run started again with the same signature skips the recorded blocks; a different signature
    is refused naming the fields that differ (:func:`emseg.runs.check_same_run`). A line cut short
    by a kill is ignored (that block is simply computed again).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
    >>> r = BlockRecord(path, {"command": "demo"})
    >>> r.mark(3); r.close()
    >>> BlockRecord.read_head(path), sorted(BlockRecord(path, {"command": "demo"}).done)
    ({'signature': {'command': 'demo'}, 'resumable': True}, [3])
    """

    def __init__(self, path, signature, resume=True, what="the output", resumable=True):
        self.path, self.done = path, set()
        if os.path.exists(path) and resume:
            from ..runs import check_same_run

            with open(path) as f:
                lines = f.read().splitlines()
            head = self.read_head(path) or {}
            check_same_run(head.get("signature"), signature, what)
            self.done = {int(x) for x in lines[1:] if x.strip().isdigit()}
        else:
            from ..io.atomic import write_text_atomic

            write_text_atomic(path, json.dumps({"signature": signature, "resumable": resumable}) + "\n")
        self._f = open(path, "a")
        self._lock = threading.Lock()

    @classmethod
    def read_head(cls, path) -> dict | None:
        """The first line of the record at ``path`` (``{"signature", "resumable"}``); None if missing or unreadable."""
        try:
            with open(path) as f:
                head = json.loads(f.readline() or "null")
        except (OSError, ValueError):
            return None
        return head if isinstance(head, dict) else None

    def mark(self, index):
        """Record block ``index`` as written (durably: on disk before this returns)."""
        from .. import faults

        faults.point("block-written")
        with self._lock:
            self._f.write(f"{index}\n")
            self._f.flush()
            os.fsync(self._f.fileno())
            self.done.add(int(index))
        faults.point("block-recorded")

    def note(self, text):
        """A durable line that is not a block index (e.g. that the whole run completed)."""
        with self._lock:
            self._f.write(f"{text}\n")
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self):
        if not self._f.closed:
            self._f.close()

"""Download one file over HTTP(S), resuming an interrupted download, and check its checksum.

pooch (like ``urllib.request.urlretrieve``) starts an interrupted download over from byte 0, and
some of these files are tens of GB, so emseg has this small downloader of its own: the bytes
received go to ``NAME.part``; the next attempt (a retry, or the same command run again) asks the
server for the rest with an HTTP ``Range`` request and appends them. A server that ignores
``Range`` answers 200 with the whole file, and the ``.part`` starts over. The checksum is checked
on the finished ``.part``; only a file that passed takes its real name, so a file under its real
name is always complete, and a wrong one is deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from typing import NamedTuple

__all__ = ["Download", "ChecksumError", "DownloadInterrupted", "download_file", "file_digests"]

_BLOCK = 1 << 20


class ChecksumError(ValueError):
    """The downloaded file is not the one the registry describes (it was deleted)."""


class DownloadInterrupted(ConnectionError):
    """The connection ended before the whole file arrived; what arrived is kept for a resume."""


class Download(NamedTuple):
    """A finished download: ``path``, its ``sha256``, whether a recorded checksum ``verified`` it,
    the bytes ``fetched`` by this call and the bytes of an earlier attempt it ``resumed_from``."""

    path: str
    sha256: str
    verified: bool
    fetched: int
    resumed_from: int


def file_digests(path, algorithms=("sha256",)) -> dict[str, str]:
    """Hex digests of a file for each hashlib algorithm, read once in 1 MiB blocks.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "f")
    >>> _ = open(p, "wb").write(b"abc")
    >>> file_digests(p, ("md5",))
    {'md5': '900150983cd24fb0d6963f7d28e17f72'}
    """
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def download_file(url, dest, *, checksum=None, size=None, retries=2, progress=False, timeout=60.0) -> Download:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if an earlier attempt left one.

    Parameters
    ----------
    url : str
        http:// or https:// (certificates are checked).
    dest : str
        The file to write; it appears only once complete and checked.
    checksum : str, optional
        ``"sha256:<hex>"`` or ``"md5:<hex>"``; None: nothing to check against (the sha256 is
        computed and returned either way).
    size : int, optional
        The expected number of bytes, checked before the checksum.
    retries : int
        Further attempts after the connection drops mid-file, each resuming where the last stopped.
    progress : bool
        A progress bar (tqdm, on stderr).
    timeout : float
        Seconds without data before the connection counts as dropped.

    Returns
    -------
    Download

    Raises
    ------
    ChecksumError
        Wrong size or checksum: one line naming the file, the expected and the found value; the
        bad file is deleted, so nothing that looks complete is left.
    DownloadInterrupted
        The connection dropped ``retries + 1`` times; ``dest.part`` keeps the bytes received, and
        the same call resumes from them.
    OSError
        The server refused (an HTTP error status) or could not be reached.
    """
    name, part = os.path.basename(dest), dest + ".part"
    if not checksum and os.path.exists(part):  # an earlier run's bytes: with no checksum to check the whole file,
        os.remove(part)  # a file changed on the server since could not be told from them; start over
    resumed_from = os.path.getsize(part) if os.path.exists(part) else 0
    fetched = 0
    for attempt in range(retries + 1):
        try:
            fetched += _fetch(url, part, name, timeout, progress)
            break
        except DownloadInterrupted as e:
            fetched += getattr(e, "received", 0)
            if attempt == retries:
                raise
    algorithm = checksum.split(":", 1)[0] if checksum else "sha256"
    found = os.path.getsize(part)
    if size is not None and found != size:
        os.remove(part)
        raise ChecksumError(f"{name}: expected {size} bytes, received {found}; the download was removed, run the "
                            "same command again to download it anew")
    digests = file_digests(part, sorted({"sha256", algorithm}))
    if checksum and f"{algorithm}:{digests[algorithm]}" != checksum:
        os.remove(part)
        raise ChecksumError(f"{name}: checksum mismatch: expected {checksum}, found {algorithm}:{digests[algorithm]}; "
                            "the download was removed (run the same command again to download it anew; if it "
                            "fails again the file on the server has changed)")
    os.replace(part, dest)
    return Download(dest, digests["sha256"], bool(checksum), fetched, resumed_from)


def _fetch(url, part, name, timeout, progress) -> int:
    """Append the rest of ``url`` to ``part``; returns the bytes received. Raises DownloadInterrupted."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "emseg-datasets", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing after byte `have`: the .part is whole, or the file changed
            total = _total(e.headers.get("Content-Range"))
            if total == have:
                return 0
            os.remove(part)
            return _fetch(url, part, name, timeout, progress)
        raise OSError(f"{name}: the server answered HTTP {e.code} {e.reason} for {url}") from None
    except urllib.error.URLError as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (socket.timeout, ConnectionError)):
            raise DownloadInterrupted(f"{name}: no answer from {url} ({reason})") from None
        raise OSError(f"{name}: cannot reach {url} ({reason})") from None
    except (socket.timeout, ConnectionError, http.client.HTTPException) as e:
        raise DownloadInterrupted(f"{name}: connection to {url} failed ({e!r})") from None
    with response:
        if response.status == 206 and _range_start(response.headers.get("Content-Range")) != have:
            response.close()  # a part we did not ask for: start over without Range
            os.remove(part)
            return _fetch(url, part, name, timeout, progress)
        if response.status != 206:  # 200: the server ignored Range and sends the whole file; start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        if response.status == 206:
            total = _total(response.headers.get("Content-Range")) or total
        received, broken = 0, None
        with open(part, "ab" if have else "wb") as out, _Progress(progress, total, have, name) as bar:
            try:
                for block in iter(lambda: response.read(_BLOCK), b""):
                    out.write(block)
                    received += len(block)
                    bar(len(block))
            except (socket.timeout, ConnectionError, http.client.HTTPException) as e:
                broken = type(e).__name__
    if broken or (total is not None and have + received < total):
        of = f" of {total}" if total is not None else ""
        e = DownloadInterrupted(f"{name}: download interrupted after {have + received}{of} bytes "
                                f"({broken or 'the connection closed early'}); they are kept in "
                                f"{os.path.basename(part)}: run the same command again to resume")
        e.received = received
        raise e
    return received


def _range_start(value) -> int | None:
    m = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def _total(value) -> int | None:
    m = re.match(r"^\s*bytes\s+(?:\d+-\d+|\*)/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


class _Progress:
    """A tqdm byte counter when ``show``, else a no-op; called with the bytes just written."""

    def __init__(self, show, total, initial, name):
        self._tqdm = None
        if show:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                              desc=name, leave=False)

    def __enter__(self):
        return self

    def __call__(self, n):
        if self._tqdm is not None:
            self._tqdm.update(n)

    def __exit__(self, *exc):
        if self._tqdm is not None:
            self._tqdm.close()

"""A region table written as CSV or Parquet, and read back: one row per object, one column per measure."""

from __future__ import annotations

import csv
import os

import numpy as np

__all__ = ["TABLE_FORMATS", "table_format", "write_table", "read_table"]

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path) -> str:
    """``"csv"`` or ``"parquet"`` from the name of ``path``; a ValueError for any other extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in TABLE_FORMATS:
        raise ValueError(f"{path}: unsupported table extension {ext or '(none)'!r}; use "
                         f"{', '.join(TABLE_FORMATS)}")
    if TABLE_FORMATS[ext] == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: writing Parquet needs pyarrow (pip install 'emseg[parquet]'); or write a "
                             ".csv") from None
    return TABLE_FORMATS[ext]


def _cell(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))  # the shortest text that reads back as the same float (inf, nan included)


def write_table(columns, path, fmt=None):
    """Write ``columns`` (name -> 1D array, all of one length) to ``path`` (no checks on what is there).

    Examples
    --------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> write_table({"id": np.array([3, 5]), "volume_nm3": np.array([1.5, np.inf])}, p)
    >>> open(p).read().splitlines()
    ['id,volume_nm3', '3,1.5', '5,inf']
    """
    fmt = fmt or table_format(path)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), path)
        return
    names = list(columns)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        for row in zip(*(np.asarray(columns[n]).tolist() for n in names)):
            w.writerow([_cell(v) for v in row])


def read_table(path) -> dict:
    """The columns of a table written by :func:`write_table` (CSV: ints, floats and booleans as written)."""
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        return {n: t.column(n).to_numpy() for n in t.column_names}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names, body = rows[0], rows[1:]
    out = {}
    for i, n in enumerate(names):
        cells = [r[i] for r in body]
        if cells and all(c in ("True", "False") for c in cells):
            out[n] = np.array([c == "True" for c in cells])
        elif all(c.lstrip("-").isdigit() for c in cells):
            out[n] = np.array([int(c) for c in cells], np.int64)
        else:
            out[n] = np.array([float(c) for c in cells])
    return out

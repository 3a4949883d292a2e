"""Real processes for the reliability tests: run ``python -m emseg``, kill it at chosen fault points, compare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

ENV = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


def emseg(*args, faults=None, timeout=300, cwd=None):
    """Run ``python -m emseg ARGS`` to the end; returns the CompletedProcess (text output)."""
    env = dict(ENV, **({"EMSEG_FAULTS": faults} if faults else {}))
    env.pop("EMSEG_FAULTS", None) if not faults else None
    return subprocess.run([sys.executable, "-m", "emseg", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def emseg_here(*args):
    """``emseg ARGS`` in this process, for the error paths of options (no start-up of a new Python each time):
    a CompletedProcess with the exit code and the output, as :func:`emseg` gives."""
    import contextlib
    import io

    from emseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own exits
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return subprocess.CompletedProcess(["emseg", *map(str, args)], code, out.getvalue(), err.getvalue())


def start(*args, cwd=None):
    """Start ``python -m emseg ARGS`` in the background (default SIGINT disposition)."""
    return subprocess.Popen([sys.executable, "-m", "emseg", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def fault_points(*args, cwd=None) -> list[str]:
    """The fault points a clean run of ``emseg ARGS`` passes, in order (it runs once, to the end)."""
    log = os.path.abspath(os.path.join(cwd or ".", ".points.log"))
    if os.path.exists(log):
        os.remove(log)
    r = emseg(*args, faults=f"count:{log}", cwd=cwd)
    assert r.returncode == 0, r.stderr
    with open(log) as f:
        points = f.read().split()
    os.remove(log)
    return points


def spread(n, k=5):
    """``k`` fault points spread over ``1..n`` (first, last and between), or all of them when fewer."""
    if n <= k:
        return list(range(1, n + 1))
    return sorted({int(round(v)) for v in np.linspace(1, n, k)})


def one_line_error(r, command, *needles):
    """The process failed with exit code 2 and one line ``emseg COMMAND: error: ...`` containing every needle."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"emseg {command}: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def wait_for(predicate, timeout=60.0, what="a condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def tree(folder):
    """Every file under ``folder`` with its bytes (to show that nothing changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = f.read()
    return out

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run_cli(*argv):
    """``emseg ARGV`` in this process: (exit code, stdout, stderr); argparse's exits give their code."""
    import contextlib
    import io

    from emseg.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return rc, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def shared_data():
    """The real EM data beside the checkout (../shared/data); tests using it skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a busy
    2-core machine two threads per process spin against each other and a step takes many times longer."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.environ.setdefault("TQDM_DISABLE", "1")


def write_poisoned_em(folder, shape, seed, sections):
    """A synthetic EM volume in ``folder``: ``raw.zarr``, ``mito.zarr`` and ``poisoned.zarr`` (the mito
    labels on ``sections``, random ids 0-3 on every other section); returns the SyntheticEM."""
    from emseg.io import write_volume
    from emseg.synthetic import synthetic_em

    em = synthetic_em(shape, seed=seed)
    write_volume(str(folder / "raw.zarr"), em.raw, voxel_size=em.voxel_size)
    write_volume(str(folder / "mito.zarr"), em.mito, voxel_size=em.voxel_size)
    poisoned = em.mito.astype(np.uint16)
    other = [z for z in range(shape[0]) if z not in sections]
    poisoned[other] = np.random.default_rng(0).integers(0, 4, (len(other),) + tuple(shape[1:]))
    write_volume(str(folder / "poisoned.zarr"), poisoned, voxel_size=em.voxel_size)
    return em


def tiny_bc_model(path, seed=2, ndim=2):
    """A random 2D BC U-Net whose outputs spread over [0, 1], so the watershed finds objects (a stand-in model
    for tests of what happens around a segmentation, not of its quality)."""
    import torch

    from emseg.models import UNet, save_model

    torch.manual_seed(seed)
    net = UNet(1, 2, ndim=ndim, depth=1, features=4)
    with torch.no_grad():
        net.head.weight.mul_(20)
        net.head.bias[1] -= 3
    save_model(net, path, extra={"target": "bc"})


def same_partition(a, b) -> bool:
    """Two labelings with the same background and the same objects, up to a permutation of ids."""
    a, b = np.asarray(a).ravel().astype(np.int64), np.asarray(b).ravel().astype(np.int64)
    if ((a == 0) != (b == 0)).any():
        return False
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def kill_when_recorded(code, record, n_lines, timeout=60):
    """Run ``code`` in a fresh Python, SIGKILL it once ``record`` has ``n_lines`` lines (header included);
    return the number of blocks the record holds then."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + timeout
    while time.time() < deadline and (not os.path.exists(record) or len(open(record).read().splitlines()) < n_lines):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(open(record).read().splitlines()) - 1


class Crash(Exception):
    """Raised by :func:`crash_after_checkpoint`: a run dying after a checkpoint, in this process."""


@pytest.fixture
def crash_after_checkpoint(monkeypatch):
    """``crash()``: until ``resume()``, every trainer checkpoint is written and then :class:`Crash` is raised."""
    import emseg.train.loop as loop

    write = loop.write_checkpoint

    def crashing(run, progress, improved):
        write(run, progress, improved)
        raise Crash

    class Switch:
        Crash = Crash

        @staticmethod
        def crash():
            monkeypatch.setattr(loop, "write_checkpoint", crashing)

        @staticmethod
        def resume():
            monkeypatch.setattr(loop, "write_checkpoint", write)

    return Switch

"""Workers that die mid-run cost only their blocks: a real Dask LocalCluster on loopback whose worker
processes are SIGKILLed one after another while a real blockwise prediction (a tiny U-Net) runs; the
run completes and its output equals an uninterrupted run's bit for bit."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from conftest import tiny_bc_model

from emseg.io import read_volume, write_volume

distributed = pytest.importorskip("distributed")

RECORD = ".emseg-run-{}.jsonl"


class SlowBlocks(distributed.WorkerPlugin):
    """A worker plugin (sent to every worker, restarted ones too): each block of a prediction takes 0.15 s
    longer, so that kills land while blocks run."""

    name = "emseg-slow-blocks"

    def setup(self, worker):
        import emseg.predict.blocks as blocks

        run = getattr(blocks._run_block, "__wrapped__", blocks._run_block)

        def slow(*args, **kwargs):
            time.sleep(0.15)
            return run(*args, **kwargs)

        slow.__wrapped__ = run
        blocks._run_block = slow  # tasks name the function by module and name: they find this one


def _recorded(output):
    path = RECORD.format(output)
    return len(open(path).read().splitlines()) - 1 if os.path.exists(path) else 0


def _kill_one_after_another(client, output, kills, every, log):
    """Each time ``every`` more blocks are recorded, SIGKILL the worker process that has run longest."""
    killed = []
    deadline = time.time() + 120
    while len(killed) < kills and time.time() < deadline:
        if _recorded(output) < every * (len(killed) + 1):
            time.sleep(0.02)
            continue
        pids = sorted(set(client.run(os.getpid).values()) - set(killed))
        if not pids:  # the killed ones are still coming back
            time.sleep(0.05)
            continue
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])
        log.append((pids[0], _recorded(output)))


@pytest.fixture
def cluster():
    """Two worker processes on 127.0.0.1; a task whose worker dies fails at once (allowed-failures 0), so
    that emseg's own resubmission is what saves the run."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None)
        client = Client(lc)
        try:
            yield lc, client
        finally:
            client.close()
            lc.close()


def test_prediction_survives_workers_killed_one_after_another(cluster, caplog):
    from emseg.predict import predict_blockwise

    lc, client = cluster
    tiny_bc_model("m.safetensors")
    write_volume("raw.zarr", np.random.default_rng(0).integers(0, 256, (12, 64, 64), dtype=np.uint8))
    run = dict(block_shape=(2, 32, 32), dtype="float32", scheduler=lc.scheduler_address, workers=2)  # 24 blocks
    predict_blockwise("raw.zarr", "m.safetensors", "clean.zarr", **run)
    client.register_plugin(SlowBlocks())
    kills = []
    killer = threading.Thread(target=_kill_one_after_another, args=(client, "out.zarr", 2, 4, kills))
    killer.start()
    with caplog.at_level(logging.WARNING, logger="emseg.blockwise.dask_workers"):
        r = predict_blockwise("raw.zarr", "m.safetensors", "out.zarr", **run)
    killer.join()
    assert len(kills) == 2 and all(done < 24 for _, done in kills), kills  # both died mid-run
    assert r.n_computed == 24 and not os.path.exists(RECORD.format("out.zarr"))  # complete, committed
    assert "lost their Dask workers; submitting them again" in caplog.text  # KilledWorker, resubmitted
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("clean.zarr"))


def test_a_job_that_ends_mid_run_is_replaced_and_the_run_completes(monkeypatch):
    """dask-jobqueue's own LocalCluster runs each job's script as a local process: the SGE cluster's jobs,
    their script and the dask worker it starts are the real ones, only ``qsub`` is a subprocess. The one
    job is killed mid-run (as a walltime or a preemption would end it): a new one is submitted, and the
    output equals the clean run's."""
    import cloudpickle
    import dask
    import dask_jobqueue
    import psutil
    from dask_jobqueue.local import LocalCluster

    import emseg.blockwise.cluster as cluster_module
    from emseg.blockwise import dask_workers
    from emseg.blockwise.execute import shared_dask
    from emseg.config import ExecutionConfig
    from emseg.predict import predict_blockwise

    monkeypatch.setattr(dask_jobqueue, "SGECluster", LocalCluster)
    monkeypatch.setattr(cluster_module, "RESUBMIT_EVERY", 0.5)
    tiny_bc_model("m.safetensors")
    write_volume("raw.zarr", np.random.default_rng(1).integers(0, 256, (4, 64, 64), dtype=np.uint8))
    e = ExecutionConfig(cluster="sge", workers=1, cluster_config={"interface": "lo", "walltime": "00:10:00",
                                                                  "scheduler_options": {"dashboard_address": None}})
    run = dict(block_shape=(1, 32, 32), dtype="float32", execution=e)  # 16 blocks
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}), shared_dask():
        predict_blockwise("raw.zarr", "m.safetensors", "clean.zarr", **run)
        _, client, jobs, _ = dask_workers._SHARED[0]  # the run's own cluster, kept for the next run
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the jobs' Python cannot import this file
        try:
            client.register_plugin(SlowBlocks())
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        job = next(iter(jobs.workers.values()))

        ended = []

        def end_job():  # as SGE ends a job: its processes, the nanny and its worker, at once
            while _recorded("out.zarr") < 4:
                time.sleep(0.02)
            proc = psutil.Process(int(job.job_id))
            for p in proc.children(recursive=True) + [proc]:
                p.kill()
            ended.append(_recorded("out.zarr"))

        killer = threading.Thread(target=end_job)
        killer.start()
        r = predict_blockwise("raw.zarr", "m.safetensors", "out.zarr", **run)
        killer.join()
        assert ended[0] < 16 and next(iter(jobs.workers.values())).job_id != job.job_id  # a new job took over
    assert r.n_computed == 16
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("clean.zarr"))


def test_blocks_whose_workers_keep_dying_end_in_one_line_saying_what_is_done(monkeypatch, tmp_path):
    """Block 1 kills every worker that runs it: after the last round the error says how many blocks are done
    (recorded: a rerun resumes there). A stand-in client whose block 1 always ends in KilledWorker."""
    import distributed

    from emseg.blockwise import dask_workers
    from emseg.blockwise.execute import BlockJob, run_blocks
    from emseg.blockwise.record import BlockRecord
    from emseg.config import ExecutionConfig

    class Future:
        def __init__(self, index):
            self.key, self.index = f"block-{index}-{id(self)}", index
            self.status = "error" if index == 1 else "finished"

        def exception(self):
            return distributed.KilledWorker(self.key, "tcp://127.0.0.1:1", 3)

        def result(self):
            return self.index

    class Client:
        submitted = []

        def submit(self, fn, spec, pure):
            return spec

        def map(self, fn, plans, todo, pure):
            self.submitted.append(list(todo))
            return [Future(i) for i in todo]

        def cancel(self, futures):
            pass

    client = Client()
    monkeypatch.setattr(dask_workers, "_client", lambda execution, memory: (client, None, False))
    monkeypatch.setattr(distributed, "as_completed", iter)
    record = BlockRecord(str(tmp_path / "run.jsonl"), {"command": "test"})
    with pytest.raises(RuntimeError) as err:
        run_blocks(None, {}, [0, 1, 2], execution=ExecutionConfig(scheduler="tcp://127.0.0.1:1"),
                   job=BlockJob(record=record, where="out.zarr"))
    assert str(err.value) == ("1 blocks failed 4 times because their Dask workers died (killed, out of memory, or "
                              "their jobs ended); 2 of 3 blocks are done; the incomplete output is at out.zarr: run "
                              "the same command again to resume")
    assert client.submitted == [[0, 1, 2], [1], [1], [1]] and record.done == {0, 2}

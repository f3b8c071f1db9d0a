"""The Dask executor on a LocalCluster of 2 workers: a worker killed mid-run, results equal to
local runs, and an address where no scheduler answers (skipped without dask.distributed)."""

import os
import signal
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import numba  # noqa: E402

from minibnn.cli import main  # noqa: E402
from minibnn.blas_threads import blas_threads, set_blas_threads  # noqa: E402
from minibnn.sweeps import SweepError, execute, parse_spec, plan, run_sweep  # noqa: E402
from minibnn.sweeps.cluster import connect, dask_executor, local_cluster  # noqa: E402
from minibnn.sweeps.run import set_process_threads  # noqa: E402
from minibnn.checkpoint import load_state  # noqa: E402
from minibnn.train import read_history  # noqa: E402

SPEC = """
name = "dask-kill"
[base]
dataset = "synthetic"
model = "cnn"
width = 0.25
epochs = 3
batch_size = 32
[axes]
seed = [0]
[shared.teacher]
real = true
epochs = 1
[arms.a]
[arms.b]
teacher = "@teacher"
method = "lcr"
input_quantizer = "ede"
weight_quantizer = "irnet"
"""


def _kill_worker_running(client, out, names, timeout=120.0) -> str:
    """SIGKILL the worker process that is training one of `names` after its first epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for name in names:
            path = out / name / "history.json"
            if path.exists() and 1 <= len(read_history(out / name)) < 3:
                for address, keys in client.processing().items():
                    if any(str(k).startswith(f"minibnn-{name}-") for k in keys):
                        pid = client.run(os.getpid, workers=[address])[address]
                        os.kill(pid, signal.SIGKILL)
                        return name
        time.sleep(0.02)
    raise AssertionError("no run was caught mid-training")


def test_killed_worker_resumes_and_matches_local_runs(tmp_path):
    spec = parse_spec(SPEC)
    out = tmp_path / "dask"
    environ = dict(os.environ)
    client = local_cluster(2)
    cluster = client.cluster
    assert dict(os.environ) == environ       # dask's worker settings stay out of this process
    try:
        results = {}
        sweep = threading.Thread(target=lambda: results.update(run_sweep(
            spec, out, executor=dask_executor(client, threads=1), log=lambda s: None)))
        sweep.start()
        killed = _kill_worker_running(client, out, ["a-s0", "b-s0"])
        sweep.join(timeout=300)
        assert not sweep.is_alive()
    finally:
        client.close()
        cluster.close()
        os.environ.clear()                     # a nanny restarting its worker writes dask's
        os.environ.update(environ)             # worker settings (OMP_NUM_THREADS=1) again
    assert all(isinstance(r, dict) for r in results.values()), results
    log = (out / killed / "sweep.log").read_text()
    assert "resuming after epoch" in log, log
    local = tmp_path / "local"
    numba_threads, blas = numba.get_num_threads(), blas_threads()
    set_process_threads(1)                  # as the workers: bit-identity needs equal threads
    try:
        for row in plan(spec, local):                   # the same runs, in this process
            execute(row["task"])
    finally:
        numba.set_num_threads(numba_threads)
        if blas:
            set_blas_threads(blas)
    for name in ("teacher", "a-s0", "b-s0"):
        a, b = load_state(out / name / "last.npz"), load_state(local / name / "last.npz")
        assert a["epoch"] == b["epoch"]
        for key in a["model"]:
            np.testing.assert_array_equal(a["model"][key], b["model"][key], err_msg=name)


def test_a_scheduler_that_does_not_answer_starts_nothing(tmp_path, capsys):
    started = time.time()
    with pytest.raises(SweepError, match="no Dask scheduler answered at tcp://127.0.0.1:9"):
        connect("tcp://127.0.0.1:9", timeout="1s")
    assert time.time() - started < 30
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"),
                 "--scheduler", "tcp://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "no Dask scheduler answered" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()

"""The Dask executor: the runs of a sweep as tasks on a dask.distributed cluster (optional extra).

    pip install 'minibnn[dask]'
    minibnn sweep SPEC --scheduler tcp://HOST:8786     # an existing cluster
    minibnn sweep SPEC --dask --jobs 2                 # a LocalCluster on this machine

Each run is one task calling `run.execute` inside the worker, with the runs it depends on as
task dependencies, so a teacher is trained once before its students. The output folder must
be on a file system every worker sees, at the same path. A task whose worker dies (killed,
out of memory, node lost) is rescheduled by the scheduler and a task that raises is retried
(`retries`); either way `execute` finds the last finished epoch in the run folder and resumes
from it bit-exactly, so the checkpoints equal those of a local sweep.
Threads: with `threads` given (`--dask` passes cores // workers), each task sets its process's
BLAS and Numba threads to it; otherwise the workers keep what they were started with (start them
with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and NUMBA_NUM_THREADS set to their share of a node).
"""

from __future__ import annotations

import os
import uuid
from typing import Callable

from .run import execute, set_process_threads
from .sweep import SweepError

__all__ = ["connect", "local_cluster", "dask_executor", "CONNECT_TIMEOUT", "RETRIES"]

CONNECT_TIMEOUT = "5s"
RETRIES = 2


def _distributed():
    try:
        import distributed
    except ImportError:
        raise SweepError("--scheduler/--dask need dask.distributed: pip install 'minibnn[dask]' "
                         "(or pip install 'dask[distributed]')") from None
    return distributed


def connect(address: str, timeout: str = CONNECT_TIMEOUT):
    """A Client of the scheduler at `address`; one clear error when nothing answers there."""
    distributed = _distributed()
    if "://" not in address:
        raise SweepError(f"--scheduler expects an address such as tcp://HOST:8786, got {address!r}")
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise SweepError(f"no Dask scheduler answered at {address} within {timeout} "
                         f"({type(err).__name__}); nothing was started") from None


def local_cluster(workers: int, threads_per_worker: int = 1):
    """A Client of a new LocalCluster of `workers` processes with one task slot each.

    Starting the nannies writes dask's worker environment (OMP_NUM_THREADS=1, ...) into this
    process's os.environ; it is put back afterwards, so processes started later by the caller
    (a local sweep, a test's subprocess) keep the caller's thread settings. (A nanny restarting
    a dead worker writes them again: restore os.environ after closing the cluster if it
    matters.)"""
    distributed = _distributed()
    saved = dict(os.environ)
    try:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                           processes=True, dashboard_address=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return distributed.Client(cluster)


def _task(task: dict, threads: int | None, *dependencies) -> dict:
    """Runs on a worker; `dependencies` are the results of the runs it needs (unused: their
    folders are named in the task's config). threads None: as the worker was started."""
    if threads is not None:
        set_process_threads(threads)
    return execute(task)


def dask_executor(client, threads: int | None = None, retries: int = RETRIES) -> Callable:
    """An executor for run_sweep that submits every task to `client`'s cluster."""
    distributed = _distributed()

    def run(tasks: list[dict], deps: dict, log: Callable[[str], None]) -> dict:
        futures, names, results = {}, {}, {}
        for task in tasks:                               # tasks come in dependency order
            needs = [futures[d] for d in deps.get(task["name"], [])]
            key = f"minibnn-{task['name']}-{uuid.uuid4().hex[:8]}"
            futures[task["name"]] = client.submit(_task, task, threads, *needs, pure=False,
                                                  retries=retries, key=key)
            names[key] = task["name"]
        log(f"submitted {len(futures)} runs to {client.scheduler.address}")
        for future in distributed.as_completed(list(futures.values())):
            name = names[future.key]
            try:
                results[name] = future.result()
                log(f"finished {name} ({results[name]['outcome']})")
            except Exception as err:                      # noqa: BLE001 (reported per run)
                results[name] = f"failed: {type(err).__name__}: {err}"
                log(f"FAILED {name}: {results[name][8:]}")
        return results

    return run

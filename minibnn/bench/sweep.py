"""`minibnn bench sweep`: what running a sweep's runs side by side buys, and what Dask costs.

One 6-run sweep (2 arms x 3 seeds of a small binary network on the synthetic data set) is run
from scratch, in fresh folders, three ways:

    local --jobs 1     one run at a time, each with all the cores' BLAS/Numba threads
    local --jobs J     J runs at a time (J = the cores), each with cores // J threads
    dask  J workers    the same J-way split on a dask.distributed LocalCluster

and the wall times are printed with their ratios: jobs 1 / jobs J (the speed-up of running
runs side by side instead of threading each run) and dask / local J (the cost of the Dask
path: cluster start and task transfer, against the local executor's fresh process per run).
Each run is a whole training (data, model build, epochs, checkpoints), so process start-up and
imports are part of what is timed, as they are in a real sweep. A benchmark, not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from ..sweeps import parse_spec, run_sweep
from ..sweeps.cluster import dask_executor, local_cluster
from ..sweeps.local import available_cores

__all__ = ["add_arguments", "run", "SPEC", "cpu_name"]

SPEC = """
name = "bench-sweep"
[base]
dataset = "synthetic"
model = "{model}"
width = {width}
epochs = {epochs}
batch_size = 64
[axes]
seed = [0, 1, 2]
[arms.binary]
[arms.real]
real = true
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="cnn", help="architecture (default: cnn)")
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier (default: 0.25)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="J, runs at a time in the parallel modes (default: the cores)")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster mode")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _time_sweep(spec, out: Path, **options) -> float:
    started = time.perf_counter()
    results = run_sweep(spec, out, log=lambda s: None, **options)
    seconds = time.perf_counter() - started
    failed = {k: v for k, v in results.items() if isinstance(v, str)}
    if failed:
        raise RuntimeError(f"bench sweep: runs failed: {failed}")
    return seconds


def run(args: argparse.Namespace) -> int:
    cores = available_cores()
    jobs = args.jobs or cores
    spec = parse_spec(SPEC.format(model=args.model, width=args.width, epochs=args.epochs))
    print(f"6 runs ({args.model} width {args.width:g}, {args.epochs} epochs, synthetic data); "
          f"{cores} cores, {cpu_name()}")
    times = {}
    with tempfile.TemporaryDirectory(prefix="minibnn-bench-sweep-") as tmp:
        tmp = Path(tmp)
        times["local --jobs 1"] = _time_sweep(spec, tmp / "jobs1", jobs=1, threads=cores)
        print(f"  local --jobs 1 ({cores} threads per run): {times['local --jobs 1']:.1f} s",
              flush=True)
        threads = max(1, cores // jobs)
        times["local --jobs J"] = _time_sweep(spec, tmp / "jobsJ", jobs=jobs, threads=threads)
        print(f"  local --jobs {jobs} ({threads} thread{'s' * (threads > 1)} per run): "
              f"{times['local --jobs J']:.1f} s", flush=True)
        dask_seconds = None if args.no_dask else _time_dask(spec, tmp / "dask", jobs, threads)
        if dask_seconds is not None:
            times["dask"] = dask_seconds
    print(f"jobs 1 / jobs {jobs} wall time: {times['local --jobs 1'] / times['local --jobs J']:.2f}x"
          " (above 1: running runs side by side is faster)")
    if "dask" in times:
        print(f"dask LocalCluster ({jobs} workers, start included) / local --jobs {jobs}: "
              f"{times['dask'] / times['local --jobs J']:.2f}x (above 1: the Dask path costs "
              "more; below 1: its long-lived workers import Python modules and load Numba's "
              "kernels once, the local executor once per run)")
    return 0


def _time_dask(spec, out: Path, jobs: int, threads: int) -> float | None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("  dask: skipped (pip install 'minibnn[dask]')")
        return None
    started = time.perf_counter()
    client = local_cluster(jobs)
    try:
        seconds = _time_sweep(spec, out, executor=dask_executor(client, threads=threads))
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    total = time.perf_counter() - started
    print(f"  dask LocalCluster, {jobs} workers ({threads} thread{'s' * (threads > 1)} per run): "
          f"{total:.1f} s ({total - seconds:.1f} s of it starting and stopping the cluster)",
          flush=True)
    return total

"""`minibnn sweep SPEC`: run every run of a sweep spec (TOML), locally or on a Dask cluster.

Finished runs are reused, interrupted ones resume bit-exactly, a folder holding other options
is refused; see minibnn/sweeps for the spec format and docs/sweeps.md for a walk-through.
"""

from __future__ import annotations

import argparse

from ..sweeps import load_spec, run_sweep
from ..sweeps.cluster import connect, dask_executor, local_cluster
from ..sweeps.local import available_cores, default_jobs
from ..sweeps.spec import parse_value

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="sweep spec (.toml), e.g. experiments/first_results.toml")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: the spec's `out`, else runs/NAME)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and what is already done; start nothing")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="runs at a time (default: one per core, each on its share of the "
                             "cores' BLAS/Numba threads; with --dask: the number of workers)")
    parser.add_argument("--threads", type=int, default=None, metavar="T",
                        help="BLAS/Numba threads of each run (default: cores // jobs); "
                             "checkpoints are bit-identical between sweeps with the same T")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option in every run (TOML value syntax), e.g. "
                             "--set epochs=1; an axis name replaces the axis: --set seed=[0]")
    parser.add_argument("--arms", default=None, metavar="A,B",
                        help="run only these arms (and the runs they depend on)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="submit the runs to this dask.distributed scheduler "
                            "(needs the dask extra; the output folder must be shared)")
    where.add_argument("--dask", action="store_true",
                       help="start a dask.distributed LocalCluster of --jobs workers here")


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (e.g. epochs=1), got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def run(args: argparse.Namespace) -> int:
    for name in ("jobs", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    spec = load_spec(args.spec, _overrides(args.set))
    out = args.out or spec.out
    arms = [a.strip() for a in args.arms.split(",")] if args.arms else None
    executor, client = None, None
    if not args.dry_run and (args.scheduler or args.dask):
        if args.scheduler:
            client = connect(args.scheduler)
            executor = dask_executor(client, threads=args.threads)
        else:
            workers = args.jobs or default_jobs(available_cores())
            client = local_cluster(workers)
            executor = dask_executor(client, threads=args.threads
                                     or max(1, available_cores() // workers))
    try:
        results = run_sweep(spec, out, jobs=args.jobs, threads=args.threads, arms=arms, dry_run=args.dry_run,
                            executor=executor)
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and args.dask:
                cluster.close()
    if args.dry_run:
        return 0
    failed = {name: r for name, r in results.items() if isinstance(r, str)}
    print(f"sweep {spec.name}: {len(results) - len(failed)} of {len(results)} runs finished in "
          f"{out}" + (f"; {len(failed)} did not:" if failed else "; table: minibnn report " + out))
    for name, why in failed.items():
        print(f"  {name}: {why}")
    return 1 if failed else 0

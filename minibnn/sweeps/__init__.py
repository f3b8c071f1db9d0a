"""Sweeps: studies declared in a TOML spec, run locally or on a Dask cluster, and reported.

    spec.py     the spec format, its checks, and its expansion into named runs
    run.py      one run: reuse, resume bit-exactly, or train; refuse a folder of other options
    extras.py   the run keys beyond TrainConfig: linear_eval, robustness, untrained
    robustness.py  accuracy under corruptions after training, and the mCE of the report
    local.py    N runs at a time in child processes with their thread counts set (worker.py)
    cluster.py  the same runs as tasks on a dask.distributed cluster (optional extra)
    sweep.py    the output folder's owner marker and lock, the plan, the dispatch
    report.py   mean +- std over seeds, paired differences with t-intervals, curves

`minibnn sweep SPEC` and `minibnn report SWEEP_DIR` are the command-line faces of this package.
"""

from .report import write_report
from .run import RunConflict, execute
from .spec import Run, SpecError, SweepSpec, expand, load_spec, parse_spec
from .sweep import SweepError, plan, run_sweep

__all__ = ["SweepSpec", "Run", "SpecError", "SweepError", "RunConflict", "load_spec",
           "parse_spec", "expand", "plan", "run_sweep", "execute", "write_report"]

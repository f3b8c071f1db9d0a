"""The local executor: up to `jobs` runs at a time, each in its own child process.

A child is `python -m minibnn.sweeps.worker TASK_JSON`, started with OMP/OpenBLAS/MKL/Numba
thread counts of max(1, cores // jobs) in its environment (they must be set before NumPy and
Numba load, hence a fresh process rather than a fork), so N jobs together use the cores once
instead of N times over. Its output goes to RUN_DIR/sweep.log; a failure is the last line there.
A run starts only when the runs it depends on have succeeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .run import thread_env

__all__ = ["run_local", "available_cores", "default_jobs"]

POLL_SECONDS = 0.1


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                                  # pragma: no cover (macOS)
        return os.cpu_count() or 1


def default_jobs(runs: int) -> int:
    """As many jobs as there are cores (each on its own core), never more than runs."""
    return max(1, min(available_cores(), runs))


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "exited without output"


def _start(task: dict, threads: int) -> subprocess.Popen:
    run_dir = Path(task["dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "sweep.log", "a")
    try:
        return subprocess.Popen([sys.executable, "-m", "minibnn.sweeps.worker", json.dumps(task)],
                                stdout=log, stderr=subprocess.STDOUT, env=thread_env(threads))
    finally:
        log.close()


def run_local(tasks: list[dict], deps: dict, jobs: int, threads: int | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Run tasks (in dependency order) `jobs` at a time. Returns {name: result dict or
    "failed: ..." / "skipped: ..." string}."""
    threads = threads or max(1, available_cores() // jobs)
    pending = list(tasks)
    running: dict[str, tuple[subprocess.Popen, dict, float]] = {}
    results: dict = {}
    try:
        while pending or running:
            for task in list(pending):
                if len(running) >= jobs:
                    break
                needs = deps.get(task["name"], [])
                bad = [d for d in needs if isinstance(results.get(d), str)]
                if bad:
                    results[task["name"]] = f"skipped: needs {bad[0]}, which did not finish"
                    pending.remove(task)
                elif all(d in results for d in needs):
                    pending.remove(task)
                    running[task["name"]] = (_start(task, threads), task, time.perf_counter())
                    log(f"started {task['name']} ({threads} thread{'s' * (threads > 1)})")
            time.sleep(POLL_SECONDS)
            for name, (proc, task, started) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                seconds = time.perf_counter() - started
                if proc.returncode == 0:
                    results[name] = {"name": name, "seconds": seconds}
                    log(f"finished {name} in {seconds:.1f} s")
                else:
                    message = _last_line(Path(task["dir"]) / "sweep.log")
                    results[name] = f"failed: {message}"
                    log(f"FAILED {name}: {message}")
    finally:
        for proc, _, _ in running.values():              # interrupted: stop the children
            proc.terminate()
    return results

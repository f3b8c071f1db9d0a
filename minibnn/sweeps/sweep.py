"""Running a sweep: claim the output folder, plan the runs, hand them to an executor.

The output folder belongs to one spec: OUT/sweep.json records the spec's name, its options and
its runs (the report reads it), and a second spec with another name is refused. While a sweep
runs, OUT/.sweep.lock holds its host and pid, so two sweeps never work in one folder at once
(a lock left by a process that no longer exists on this host is taken over).
Before anything starts, every run folder is inspected: a folder holding other options than the
spec asks for stops the sweep with one line naming the folder and the option.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..checkpoint import atomic_write_text
from .local import default_jobs, run_local
from .run import inspect
from .spec import Run, SpecError, SweepSpec, expand

__all__ = ["plan", "run_sweep", "claim", "MARKER", "LOCK", "read_marker", "SweepError"]

MARKER = "sweep.json"
LOCK = ".sweep.lock"


class SweepError(ValueError):
    """The sweep cannot start (folder owned by another spec, locked, conflicting runs)."""


def read_marker(out: str | Path) -> dict:
    path = Path(out) / MARKER
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {out} a folder written by 'minibnn sweep'?")
    return json.loads(path.read_text())


def _task(run: Run, out: Path) -> dict:
    return {"name": run.name, "dir": str((out / run.name).absolute()),
            "config": run.config(out).to_dict(), "linear_eval": run.options.get("linear_eval"),
            "robustness": run.robustness(), "untrained": bool(run.options.get("untrained"))}


def plan(spec: SweepSpec, out: str | Path, arms: list[str] | None = None) -> list[dict]:
    """[{"run", "task", "state", "done", "error"}] in dependency order; `arms` (names) selects
    those arms' runs and every run they depend on."""
    out = Path(out)
    runs = expand(spec)
    if arms:
        unknown = [a for a in arms if a not in spec.arms and a not in spec.shared]
        if unknown:
            raise SpecError(f"--arms: {unknown[0]!r} is not an arm of {spec.name} "
                            f"(arms: {', '.join(spec.arms)})")
        by_name = {r.name: r for r in runs}
        keep = {r.name for r in runs if r.arm in arms}
        stack = list(keep)
        while stack:
            for dep in by_name[stack.pop()].deps:
                if dep not in keep:
                    keep.add(dep)
                    stack.append(dep)
        runs = [r for r in runs if r.name in keep]
    rows = []
    for run in runs:
        task = _task(run, out)
        row = {"run": run, "task": task, "state": "new", "done": 0, "error": None}
        try:
            row["state"], row["done"] = inspect(task["dir"], run.config(out))
        except ValueError as err:
            row["state"], row["error"] = "conflict", str(err)
        rows.append(row)
    return rows


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(out: Path) -> str | None:
    marker = out / MARKER
    return json.loads(marker.read_text()).get("name") if marker.exists() else None


@contextmanager
def claim(spec: SweepSpec, out: Path, runs: list[Run]):
    """Own `out` for `spec` for the duration of the block (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    owner = _owner(out)
    if owner is not None and owner != spec.name:
        raise SweepError(f"{out} belongs to the sweep {owner!r}, not {spec.name!r}: two "
                         "specs cannot share an output folder; pass another --out")
    lock = out / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                other = {}
            if other.get("host") == me["host"] and not _pid_alive(int(other.get("pid", 0))):
                lock.unlink(missing_ok=True)                  # stale: its process is gone
                continue
            raise SweepError(f"another sweep (pid {other.get('pid')} on {other.get('host')}) is "
                             f"running in {out}; wait for it, or remove {lock} if it is dead")
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        atomic_write_text(marker, json.dumps(
            {"name": spec.name, "spec_file": spec.source, "spec": spec.to_dict(),
             "runs": [{"name": r.name, "arm": r.arm, "axes": r.axes, "shared": r.shared,
                       "deps": r.deps, "linear_eval": r.options.get("linear_eval"),
                       "robustness": r.robustness(),
                       "untrained": bool(r.options.get("untrained"))}
                      for r in runs]}, indent=1) + "\n")
        yield
    finally:
        lock.unlink(missing_ok=True)


def describe(rows: list[dict]) -> list[str]:
    """One line per run for --dry-run: folder, what will happen, what it waits for."""
    lines = []
    for row in rows:
        run, task = row["run"], row["task"]
        epochs = task["config"]["epochs"]
        what = {"done": f"done ({row['done']}/{epochs} epochs), reused",
                "partial": f"interrupted after {row['done']}/{epochs} epochs, will resume",
                "new": ("untrained: linear evaluation of its initialisation"
                        if task["untrained"] else f"new, {epochs} epochs"),
                "conflict": f"REFUSED: {row['error']}"}[row["state"]]
        if task["linear_eval"] is not None and row["state"] != "conflict" and not task["untrained"]:
            what += ", then linear evaluation"
        if task["robustness"] is not None and row["state"] != "conflict":
            what += ", then robustness"
        after = f"  (after {', '.join(run.deps)})" if run.deps else ""
        lines.append(f"  {run.name:<32s} {what}{after}")
    return lines


def run_sweep(spec: SweepSpec, out: str | Path, *, jobs: int | None = None,
              threads: int | None = None, arms: list[str] | None = None, dry_run: bool = False, executor=None,
              log: Callable[[str], None] = print) -> dict:
    """Plan and run `spec` into `out`. executor: None (local processes, `jobs` at a time) or a
    callable (tasks, deps, log) -> results, e.g. dask_executor(client). threads: BLAS/Numba
    threads of each local run (default: cores // jobs). Returns {name: result}
    where a failed or skipped run maps to a string saying why."""
    out = Path(out)
    rows = plan(spec, out, arms)
    todo = [r for r in rows if r["state"] != "done"]
    log(f"sweep {spec.name}: {len(rows)} runs in {out} ({len(rows) - len(todo)} done, "
        f"{sum(r['state'] == 'partial' for r in rows)} to resume, "
        f"{sum(r['state'] == 'new' for r in rows)} new)")
    if dry_run:
        owner = _owner(out)
        if owner not in (None, spec.name):
            log(f"  REFUSED: {out} belongs to the sweep {owner!r}; pass another --out")
        for line in describe(rows):
            log(line)
        return {}
    conflicts = [r for r in rows if r["state"] == "conflict"]
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise SweepError(conflicts[0]["error"] + more)
    work = [r for r in rows if r["state"] != "done" or r["task"]["linear_eval"] is not None
            or r["task"]["robustness"] is not None]
    names = {r["run"].name for r in work}
    results: dict = {r["run"].name: {"name": r["run"].name, "outcome": "reused"}
                     for r in rows if r["run"].name not in names}
    tasks = [r["task"] for r in work]
    deps = {r["run"].name: [d for d in r["run"].deps if d in names] for r in work}
    with claim(spec, out, expand(spec)):
        if executor is None:
            results.update(run_local(tasks, deps, jobs or default_jobs(len(tasks)), threads,
                                     log=log))
        else:
            results.update(executor(tasks, deps, log))
    return results

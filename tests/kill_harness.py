"""kill -9 harness for run folders (driven by tests/test_runfolder_kill.py; runnable by hand).

    python tests/kill_harness.py WORK_DIR [--seeded N] [--seed S]

Trains a tiny binary MLP on the synthetic data set for 3 epochs and kills training with SIGKILL
at chosen file-system operations inside the run folder (mkdir, fsync, chmod, rename/replace,
unlink, rmtree): at EVERY operation of the last epoch's writes (resuming a folder stopped after
epoch 2), and at N seeded operations of a whole run from scratch. After each kill the run is
resumed to the end (or, killed before its config.json existed, started again by the same command) and compared with an uninterrupted run: every array of last.npz and best.npz
bit-exact, the same epoch and best epoch, the complete history (timings aside), the record's
SHA-256 sums matching the files, and no leftover staging or temporary files.

Each training runs in a forked child of this process (warmed up by the reference run, which
runs in-process; training uses no thread-parallel kernel, so forking is safe), so a kill point
costs a fraction of a second. Prints one JSON report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

from minibnn.cli import main
from minibnn.checkpoint import load_state
from minibnn.train.runfolder import sha256_file

ARGS = ["--model", "mlp", "--dataset", "synthetic", "--width", "0.25", "--epochs", "3", "--limit-train", "160",
        "--batch-size", "32", "--quiet"]
FILES = {"best.npz", "config.json", "history.csv", "history.json", "last.npz", "run.json"}
_OPS = ("replace", "rename", "fsync", "chmod", "mkdir", "unlink", "rmdir")


def _target(arg) -> str:
    if isinstance(arg, int):                     # fsync(fd): the path behind the descriptor
        try:
            return os.readlink(f"/proc/self/fd/{arg}")
        except OSError:
            return ""
    return os.fspath(arg) if isinstance(arg, (str, os.PathLike)) else ""


def _arm(folder: Path, kill_at: int) -> list:
    """Patch the file-system calls so the kill_at-th one inside `folder` SIGKILLs the process
    before it happens (kill_at 0: never); returns [number of calls so far]."""
    root, seen = str(folder.resolve()), [0]

    def wrap(fn):
        def patched(*args, **kwargs):
            target = _target(args[0]) if args else ""
            if target == root or target.startswith(root + os.sep):
                seen[0] += 1
                if seen[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return patched

    for name in _OPS:
        setattr(os, name, wrap(getattr(os, name)))
    shutil.rmtree = wrap(shutil.rmtree)
    return seen


def _child(argv: list[str], folder: Path, kill_at: int = 0, count_file=None) -> int:
    """Run `minibnn argv` in a forked child; its exit status (-9 when it was killed)."""
    pid = os.fork()
    if pid == 0:                                 # pragma: no cover (child)
        code = 1
        try:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)                    # the report on stdout is the parent's
            seen = _arm(folder, kill_at)
            code = main(argv)
            if count_file is not None:
                count_file.write_text(str(seen[0]))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _arrays(state, prefix="") -> dict:
    if isinstance(state, np.ndarray):
        return {prefix: state}
    out = {}
    if isinstance(state, dict):
        for key, value in state.items():
            out.update(_arrays(value, f"{prefix}/{key}"))
    elif isinstance(state, list):
        for i, value in enumerate(state):
            out.update(_arrays(value, f"{prefix}/{i}"))
    return out


def _plain(state):
    """The state without arrays, timings and the run id (which differ between two runs)."""
    if isinstance(state, dict):
        return {k: _plain(v) for k, v in state.items() if k not in ("seconds", "run_id")}
    if isinstance(state, list):
        return [_plain(v) for v in state]
    return None if isinstance(state, np.ndarray) else state


def compare(run: Path, reference: Path) -> list[str]:
    """What differs between a finished run folder and the uninterrupted reference."""
    problems = []
    names = {p.name for p in run.iterdir()}
    if names != FILES:
        problems.append(f"files {sorted(names ^ FILES)} differ from {sorted(FILES)}")
    for name in ("last.npz", "best.npz"):
        got, want = load_state(run / name), load_state(reference / name)
        a, b = _arrays(got), _arrays(want)
        if a.keys() != b.keys() or any(a[k].dtype != b[k].dtype or not np.array_equal(a[k], b[k])
                                       for k in b):
            problems.append(f"{name}: arrays differ")
        if _plain(got) != _plain(want):
            problems.append(f"{name}: header differs")
    rows = [_plain(r) for r in json.loads((run / "history.json").read_text())]
    if rows != [_plain(r) for r in json.loads((reference / "history.json").read_text())]:
        problems.append("history.json differs")
    record = json.loads((run / "run.json").read_text())
    for name, digest in record["files"].items():
        if sha256_file(run / name) != digest:
            problems.append(f"run.json: the SHA-256 of {name} does not match")
    if record["epoch"] != 3 or load_state(run / "last.npz")["run_id"] != record["run_id"]:
        problems.append("run.json names another epoch or run")
    return problems


def sweep(work: Path, seeded: int, seed: int) -> dict:
    reference, prefix = work / "reference", work / "prefix"
    # The reference runs in this process: it loads every module and compiled kernel once, so
    # the forked children start warm (training uses no parallel kernels, so forking is safe).
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        assert main(["train", *ARGS, "--out", str(reference)]) == 0
    assert _child(["train", *ARGS, "--stop-after", "2", "--out", str(prefix)], prefix) == 0
    count_file = work / "count"
    probe = work / "probe"
    shutil.copytree(prefix, probe)
    assert _child(["train", "--resume", str(probe), "--quiet"], probe, 0, count_file) == 0
    last_epoch_ops = int(count_file.read_text())
    cases = [("last-epoch", k) for k in range(1, last_epoch_ops + 1)]
    full = work / "full-count"
    assert _child(["train", *ARGS, "--out", str(full)], full, 0, count_file) == 0
    all_ops = int(count_file.read_text())
    rng = np.random.default_rng(seed)
    cases += [("whole-run", int(k)) for k in rng.choice(np.arange(1, all_ops + 1),
                                                        size=min(seeded, all_ops), replace=False)]
    results = []
    for i, (kind, k) in enumerate(cases):
        run = work / f"case{i}"
        if kind == "last-epoch":
            shutil.copytree(prefix, run)
            killed = _child(["train", "--resume", str(run), "--quiet"], run, k)
        else:
            killed = _child(["train", *ARGS, "--out", str(run)], run, k)
        if (run / "config.json").exists():
            resumed = _child(["train", "--resume", str(run), "--quiet"], run)
        else:       # killed before the run existed: the user runs the same command again
            resumed = _child(["train", *ARGS, "--out", str(run)], run)
        problems = [] if killed == -signal.SIGKILL else [f"not killed (status {killed})"]
        problems += [f"resume exited with {resumed}"] if resumed else compare(run, reference)
        results.append({"kind": kind, "kill_at": k, "problems": problems})
        shutil.rmtree(run, ignore_errors=True)
    best_epoch = json.loads((reference / "run.json").read_text())["best_epoch"]
    return {"last_epoch_ops": last_epoch_ops, "all_ops": all_ops, "best_epoch": best_epoch,
            "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--seeded", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    print(json.dumps(sweep(a.work, a.seeded, a.seed)))

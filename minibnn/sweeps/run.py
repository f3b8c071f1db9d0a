"""One run of a sweep, wherever it executes: reuse it, resume it, or train it; never overwrite.

`execute(task)` is the whole job of a worker (a local child process or a Dask worker). A task is
a JSON-able dict {"name", "dir", "config" (TrainConfig fields), "linear_eval" and
"robustness" (options or None), "untrained" (bool)}. The run folder decides what happens:

    last.npz with all epochs, same config      reused (nothing is recomputed)
    last.npz with fewer epochs, same config    resumed bit-exactly (resume_training)
    no last.npz                                trained from scratch (run_training)
    a different stored config                  RunConflict, naming the first differing option

so re-running a sweep, or retrying a task whose worker died, always continues from the last
finished epoch and ends with the same checkpoints as an uninterrupted run. An untrained task
writes config.json and the linear evaluation of the network at its initialisation (build_run:
the model of the config's seed, nothing trained), with the run's own validation score of that
network (kNN for S2-BNN) beside it in lincls.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numba

from ..blas_threads import blas_threads, set_blas_threads
from ..data import load_dataset
from ..evaluate import linear_evaluation
from ..methods import METHODS
from ..train import (TrainConfig, build_run, load_model, read_history, resume_training,
                     run_training)
from ..train.runner import config_text
from ..checkpoint import atomic_write_text, load_state, resolve
from .robustness import robustness_step

__all__ = ["execute", "inspect", "RunConflict", "config_difference", "thread_env",
           "set_process_threads", "THREAD_VARIABLES", "LINCLS_FILE"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")
LINCLS_FILE = "lincls.json"
LINEAR_EVAL_DEFAULTS = {"epochs": 100, "lr": 0.1, "batch_size": 256, "momentum": 0.9,
                        "weight_decay": 0.0, "seed": 0, "standardize": False}


class RunConflict(ValueError):
    """A run folder holds a run with other options than the spec asks for."""


def thread_env(threads: int, base: dict | None = None) -> dict:
    """An environment in which NumPy's BLAS, OpenMP and Numba each use `threads` threads."""
    env = dict(os.environ if base is None else base)
    env.update({name: str(max(1, int(threads))) for name in THREAD_VARIABLES})
    return env


def set_process_threads(threads: int) -> None:
    """Set this process's Numba and OpenBLAS threads now (NumPy and Numba already loaded).

    Bit-identical checkpoints need the same threads per run: a BLAS product or a parallel
    reduction sums in an order that depends on how many threads share it."""
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    set_blas_threads(int(threads))


PATH_OPTIONS = ("teacher", "init_from")


def _same(key: str, a, b) -> bool:
    if key in PATH_OPTIONS and isinstance(a, str) and isinstance(b, str):
        return os.path.abspath(a) == os.path.abspath(b)      # relative to where runs start
    return a == b


def config_difference(stored: dict, wanted: dict) -> str | None:
    """'lr: stored 0.002, spec 0.001' for the first differing option, or None if equal.
    Method options are compared with the method's defaults filled in on both sides, and
    checkpoint paths as absolute paths."""
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if key == "method_options" and isinstance(a, dict) and isinstance(b, dict):
            defaults = _method_defaults(wanted.get("method", "ce"))
            inner = config_difference({**defaults, **a}, {**defaults, **b})
            if inner:
                return f"method_options.{inner}"
        elif not _same(key, a, b):
            return f"{key}: stored {a!r}, spec {b!r}"
    return None


def _method_defaults(method: str) -> dict:
    if method not in METHODS:
        return {}
    return dict(getattr(METHODS[method], "DEFAULTS", {}))


def inspect(run_dir: str | Path, config: TrainConfig) -> tuple[str, int]:
    """(state, epochs done): state is "new", "partial" or "done"; raises RunConflict."""
    run_dir = Path(run_dir)
    wanted = config.to_dict()
    last = resolve(run_dir, "last.npz")          # a committed epoch not yet moved into place
    if last.exists():
        state = load_state(last)
        stored, done = state["config"], int(state["epoch"])
    elif (run_dir / "config.json").exists():
        stored, done = json.loads((run_dir / "config.json").read_text()), 0
    else:
        return "new", 0
    diff = config_difference(stored, wanted)
    if diff:
        raise RunConflict(f"{run_dir} holds a run with other options ({diff}); runs are never "
                          "overwritten: delete that folder or give the sweep another --out")
    if done >= config.epochs:
        return "done", done
    return ("partial" if done else "new"), done


def _log(run_dir: Path, text: str) -> None:
    with open(run_dir / "sweep.log", "a") as f:
        f.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")


def _threads_note() -> str:
    return f" (Numba {numba.get_num_threads()} threads, BLAS {blas_threads()})"


def execute(task: dict) -> dict:
    """Reuse, resume or train one run, then its linear evaluation and robustness evaluation
    if asked (each kept in the run folder, reused when present); returns a summary
    {"name", "outcome" (reused/resumed/trained), "epochs", "val_accuracy", "seconds"}."""
    run_dir = Path(task["dir"])
    config = TrainConfig.from_dict(task["config"])
    state, done = inspect(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if task.get("untrained"):
        if not (run_dir / "config.json").exists():
            atomic_write_text(run_dir / "config.json", config_text(config))
        kept = linear_eval_step(run_dir, task["linear_eval"], untrained=config)
        return {"name": task["name"], "outcome": "evaluated untrained", "epochs": 0,
                "val_accuracy": kept["own_val_accuracy"],
                "seconds": time.perf_counter() - started}
    if state == "done":
        outcome = "reused"
    elif state == "partial":
        _log(run_dir, f"pid {os.getpid()}: resuming after epoch {done} of {config.epochs}"
                      f"{_threads_note()}")
        resume_training(run_dir, quiet=True)
        outcome = "resumed"
    else:
        _log(run_dir, f"pid {os.getpid()}: training {config.epochs} epochs from scratch"
                      f"{_threads_note()}")
        run_training(config, run_dir, quiet=True)
        outcome = "trained"
    if outcome != "reused":
        _log(run_dir, f"pid {os.getpid()}: finished ({time.perf_counter() - started:.1f} s)")
    if task.get("linear_eval") is not None:
        linear_eval_step(run_dir, task["linear_eval"])
    if task.get("robustness") is not None:
        robustness_step(run_dir, task["robustness"])
    history = read_history(run_dir)
    return {"name": task["name"], "outcome": outcome, "epochs": len(history),
            "val_accuracy": history[-1].get("val_accuracy"),
            "seconds": time.perf_counter() - started}


def linear_eval_step(run_dir: Path, options: dict, untrained: TrainConfig | None = None) -> dict:
    """Linear evaluation of run_dir/last.npz (or, untrained, of the network of that config at
    its initialisation) on all training images of its dataset, kept in lincls.json (reused when
    it was made with the same options)."""
    options = {**LINEAR_EVAL_DEFAULTS, **options}
    path = run_dir / LINCLS_FILE
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("options") == options and kept.get("untrained", False) == bool(untrained):
            return kept
    if untrained is None:
        model, config = load_model(run_dir / "last.npz")
    else:
        run = build_run(untrained)
        model, config = run.model, untrained
    train_set, val_set = load_dataset(config.dataset, config.data_dir)
    standardize = options["standardize"]
    result = linear_evaluation(model, train_set, val_set, standardize=standardize,
                               **{k: v for k, v in options.items() if k != "standardize"})
    history = (read_history(run_dir) if untrained is None else
               [{**run.loss.evaluate(run.model, run.val_loader), "seconds": 0.0}])
    kept = {"val_accuracy": result["val_accuracy"], "train_accuracy": result["train_accuracy"],
            "best_val_accuracy": result["best_val_accuracy"],
            "knn_accuracy": history[-1].get("val_knn_accuracy"),
            "own_val_accuracy": history[-1].get("val_accuracy"),
            "seconds": sum(r["seconds"] for r in history), "options": options,
            **({"untrained": True} if untrained is not None else {})}
    atomic_write_text(path, json.dumps(kept, indent=2) + "\n")
    return kept

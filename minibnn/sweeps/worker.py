"""`python -m minibnn.sweeps.worker TASK_JSON`: the child process of the local executor.

Runs one task with `execute` (reuse, resume or train; see run.py) and exits 0, or prints one
line saying what went wrong and exits 1. Thread counts come from the environment the parent
set (local.py), read by NumPy and Numba as they load.
"""

from __future__ import annotations

import json
import sys

from ..allocator import keep_freed_memory
from .run import execute

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Child process: run one task (JSON on the command line), one error line on failure."""
    argv = sys.argv[1:] if argv is None else argv
    keep_freed_memory()                                  # as `minibnn train` does
    task = json.loads(argv[0])
    try:
        result = execute(task)
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as err:
        print(f"error: {err}", flush=True)
        return 1
    print(f"{result['outcome']} {result['name']}: {result['epochs']} epochs, val accuracy "
          f"{result['val_accuracy']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

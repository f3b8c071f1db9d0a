"""`minibnn verify DIR --against module:function`: check a port against golden cases.

The function is called once per case as fn(name, inputs, params, upstream, attrs) and returns
a dict of outputs and gradients "grad_<name>" (or None to skip the case); see docs/golden.md.
Prints a per-tensor report and exits 1 if any tensor is NOT OK, a case errors, or nothing
was checked. The port's file is imported and run like any Python code: only verify code you
trust. A case that runs past --timeout seconds is reported as an error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["add_arguments", "run", "load_callable", "with_timeout", "CaseTimeout"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a golden folder (manifest.json + .npz), e.g. "
                                          "tests/golden or one written by 'minibnn golden'")
    parser.add_argument("--against", required=True, metavar="MODULE:FUNCTION",
                        help="the port: an importable module (or a path/to/file.py) and a "
                             "function name, e.g. my_port:golden_fn. This IMPORTS AND RUNS that "
                             "file's code with your permissions: give only code you trust")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="a case whose call takes longer is reported as an ERROR and the "
                             "next case runs (0: no limit)")
    parser.add_argument("--only", metavar="NAMES", default=None,
                        help="comma-separated case names or patterns, e.g. 'lcr.*'")
    parser.add_argument("--tolerance-scale", type=float, default=1.0,
                        help="multiply every tolerance (e.g. 10 for a float16/bfloat16 port)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the cases that are not OK, and the summary")


def load_callable(spec: str) -> Callable[..., Any]:
    """"module:function" or "path/to/file.py:function" (function may be dotted: "mod:obj.fn").
    The current directory is importable, as with `python -m`."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--against expects MODULE:FUNCTION (e.g. my_port:golden_fn or "
                         f"ports/torch_port.py:golden_fn), got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"--against: no such file {module_name!r}")
        if str(path.resolve().parent) not in sys.path:     # so the port's own imports work
            sys.path.insert(0, str(path.resolve().parent))
        loader_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[path.stem] = module
        try:
            loader_spec.loader.exec_module(module)
        except SyntaxError as err:
            raise ValueError(f"--against: {err.filename}:{err.lineno}: syntax error: "
                             f"{err.msg}") from None
        except Exception as err:  # noqa: BLE001 (whatever the port raises on import: one line)
            raise ValueError(f"--against: importing {module_name!r} failed: "
                             f"{type(err).__name__}: {err}") from None
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except SyntaxError as err:
            raise ValueError(f"--against: {err.filename}:{err.lineno}: syntax error: "
                             f"{err.msg}") from None
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"--against: cannot import module {module_name!r}: "
                             f"{type(err).__name__}: {err}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--against: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"--against: {spec!r} is a {type(target).__name__}, not a function")
    return target


class CaseTimeout(Exception):
    """A port's call on one case ran past --timeout."""


def with_timeout(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """fn, interrupted after `seconds` of wall time by SIGALRM (POSIX main thread; elsewhere,
    or with seconds 0, fn itself). The CaseTimeout becomes that case's ERROR report."""
    if not seconds or not hasattr(signal, "setitimer"):
        return fn

    def expire(signum, frame):
        raise CaseTimeout(f"no answer within {seconds:g} s (--timeout)")

    def limited(*args, **kwargs):
        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return limited


def run(args: argparse.Namespace) -> int:
    from .. import golden

    cases = golden.load_cases(args.directory, only=args.only)
    if not args.tolerance_scale > 0:
        raise ValueError(f"--tolerance-scale must be positive, got {args.tolerance_scale}")
    if not args.timeout >= 0:
        raise ValueError(f"--timeout must be >= 0 seconds, got {args.timeout}")
    fn = with_timeout(load_callable(args.against), args.timeout)
    result = golden.verify(cases, fn, tolerance_scale=args.tolerance_scale)
    for report in result.reports:
        if not args.quiet or not report.ok:
            print(report)
    print(f"verify {args.directory} against {args.against}: {result.summary()}")
    return 0 if result.ok else 1

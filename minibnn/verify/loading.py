"""Load a port named on the command line: "module:function" or "path/to/file.py:function"."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["load_callable", "with_timeout", "CaseTimeout"]


def _import_file(path: Path, shown: str):
    if str(path.resolve().parent) not in sys.path:        # so the port's own imports work
        sys.path.insert(0, str(path.resolve().parent))
    loader_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[path.stem] = module
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ValueError(f"--against: {err.filename}:{err.lineno}: syntax error: "
                         f"{err.msg}") from None
    except Exception as err:  # noqa: BLE001 (any failure of the user's file is reported)
        raise ValueError(f"--against: importing {shown!r} failed: {type(err).__name__}: "
                         f"{err}") from None
    return module


def load_callable(spec: str) -> Callable[..., Any]:
    """"module:function" or "path/to/file.py:function" (function may be dotted: "mod:obj.fn").
    The current directory is importable, as with `python -m`. Every failure is a ValueError or
    TypeError with one line saying what was expected and what was found."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--against expects MODULE:FUNCTION (e.g. my_port:golden_fn or "
                         f"ports/torch_port.py:golden_fn), got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"--against: no such file {module_name!r}")
        module = _import_file(path, module_name)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except SyntaxError as err:
            raise ValueError(f"--against: {err.filename}:{err.lineno}: syntax error: "
                             f"{err.msg}") from None
        except ImportError as err:
            raise ValueError(f"--against: cannot import module {module_name!r}: {err}") from None
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"--against: importing {module_name!r} failed: "
                             f"{type(err).__name__}: {err}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(module) if not n.startswith("_")
                            and callable(getattr(module, n)))
            raise ValueError(f"--against: {module_name!r} has no attribute {attr!r} (its "
                             f"callables: {', '.join(public[:12]) or 'none'})")
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

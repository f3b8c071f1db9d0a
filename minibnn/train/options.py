"""What `minibnn train` and `minibnn pretrain` share beyond parsing: the checks of option
combinations (refusing values that can never work and options that would be silently ignored)
and the report of what a resume repaired."""

from __future__ import annotations

import argparse
import sys

from ..methods import METHODS, uses_teacher

__all__ = ["RESUME_OPTIONS", "check_args", "report_recovery"]

RESUME_OPTIONS = {"resume", "epochs", "data_dir", "stop_after", "quiet"}


def check_args(args: argparse.Namespace, command: str = "train") -> None:
    """Refuse values that can never work, and options that would be silently ignored."""
    for name in ("epochs", "stop_after"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    explicit = getattr(args, "_explicit", set())
    if getattr(args, "resume", None):
        ignored = sorted(explicit - RESUME_OPTIONS)
        if ignored:
            raise ValueError(f"--{ignored[0].replace('_', '-')} cannot be given with --resume: "
                             f"the run folder fixes every option except --epochs (to extend "
                             f"it), --data-dir, --stop-after and --quiet; start a new run with "
                             f"--out to change it")
        return
    if command != "train":
        return
    method = getattr(args, "method", None)
    if method in METHODS and not uses_teacher(method) and "teacher" in explicit:
        users = [m for m in METHODS if uses_teacher(m)]
        what = getattr(METHODS[method], "DESCRIPTION", None)
        raise ValueError(f"--teacher is used by --method {', '.join(users[:-1])} or {users[-1]}, "
                         f"but this run uses --method {method}"
                         + (f" ({what})" if what else "") + ", which has no teacher")
    for name in sorted(explicit):
        owner = next((m for m in METHODS if name.startswith(f"{m}_")), None)
        if owner is not None and owner != method:
            raise ValueError(f"--{name.replace('_', '-')} is an option of --method {owner}, but "
                             f"this run uses --method {method}")


def report_recovery(result, quiet: bool, stop_after: int | None = None) -> bool:
    """Print what resume repaired and, when nothing was trained, why; True if it trained."""
    if not quiet:
        for note in result.notes:
            print(f"recovered {result.out_dir}: {note}", file=sys.stderr)
    if not result.trained:
        why = (f"--stop-after {stop_after}" if stop_after else "give --epochs N to extend it")
        print(f"nothing to do: {result.out_dir} has already trained {len(result.history)} "
              f"epochs ({why})")
    return result.trained

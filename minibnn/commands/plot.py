"""`minibnn plot RUN_DIR`: the training curves of a run folder, as PNG files beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..plots import plot_history, plot_lcr_estimates
from ..train import read_history

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by 'minibnn train'")
    parser.add_argument("--out", default=None, help="where to write the PNG (default: RUN_DIR/curves.png)")


def run(args: argparse.Namespace) -> int:
    history = read_history(args.run_dir)
    out = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    plot_history(history, out, title=_shown(Path(args.run_dir).name))
    print(f"wrote {_shown(out)}")
    if any(key.startswith("lcr_pair") for row in history for key in row):   # an LCR-BNN run
        lcr_out = out.with_name("lcr_estimates.png")
        plot_lcr_estimates(history, lcr_out)
        print(f"wrote {_shown(lcr_out)}")
    return 0


def _shown(path) -> str:
    """A file name that is not valid UTF-8, printable (undecodable bytes become U+FFFD)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")

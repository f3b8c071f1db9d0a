"""`minibnn report SWEEP_DIR`: the table (markdown + CSV) and learning curves of a sweep.

Every arm with mean +- std and n over seeds, paired differences against a baseline arm with a
95 % t-interval, seconds per epoch; written to SWEEP_DIR/report.md, report.csv, curves.png.
"""

from __future__ import annotations

import argparse

from ..sweeps import write_report

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="output folder of 'minibnn sweep'")
    parser.add_argument("--baseline", default=None, metavar="ARM",
                        help="arm to pair the others against (default: the spec's `baseline`)")
    parser.add_argument("--no-plots", action="store_true", help="skip curves.png")


def run(args: argparse.Namespace) -> int:
    result = write_report(args.sweep_dir, baseline=args.baseline, plots=not args.no_plots)
    print(result["markdown"])
    print("written: " + ", ".join(str(p) for p in result["files"]))
    return 0

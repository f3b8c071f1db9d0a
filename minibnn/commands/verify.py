"""`minibnn verify DIR --against module:function`: check a port against golden cases.

The function is called once per case as fn(name, inputs, params, upstream, attrs) and returns
a dict of outputs and gradients "grad_<name>" (or None to skip the case); see docs/golden.md.
Prints a per-tensor report. Exit codes: 0 every checked tensor OK; 1 a mismatch (a tensor NOT
OK, MISSING or WRONG SHAPE, a case that raised, nothing checked, or --check-reference finding
an inconsistent reference); 2 a usage error (bad option, port that cannot be loaded, unreadable
golden folder), reported on one line. The port's file is imported and run like any Python
code: only verify code you trust. A case that runs past --timeout seconds is reported as an
error and the next case runs.
"""

from __future__ import annotations

import argparse
import sys

from .. import golden
from ..golden import SPECS
from ..golden.compare import PRECISION_SCALES
from ..golden.conventions import parse_conventions
from ..golden.fdcheck import finite_difference_check
from ..golden.reports import write_json, write_junit
from ..verify.loading import load_callable, with_timeout

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a golden folder (manifest.json + .npz), e.g. "
                                          "tests/golden or one written by 'minibnn golden'")
    parser.add_argument("--against", metavar="MODULE:FUNCTION", default=None,
                        help="the port: an importable module (or a path/to/file.py) and a "
                             "function name, e.g. my_port:golden_fn (required unless "
                             "--check-reference is given). This IMPORTS AND RUNS that file's "
                             "code with your permissions: give only code you trust")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="a case whose call takes longer is reported as an ERROR and the "
                             "next case runs (0: no limit)")
    parser.add_argument("--only", metavar="NAMES", default=None,
                        help="comma-separated case names or patterns, e.g. 'lcr.*'")
    parser.add_argument("--tolerance-scale", type=float, default=None,
                        help="multiply every tolerance (default 1, or as --precision says)")
    parser.add_argument("--precision", choices=("float32", "float16", "bfloat16"),
                        default=None, help="the port's float type: sets --tolerance-scale to "
                                           "1, 100 or 1000 (measured, see docs/golden.md)")
    parser.add_argument("--convention", action="append", default=[], metavar="NAME",
                        help="a convention the port follows on purpose, judged on exactly the "
                             "elements it changes and reported in separate rows; 'sign0=zero' "
                             "(torch.sign) is the one known (repeatable)")
    parser.add_argument("--check-reference", action="store_true",
                        help="also recompute each case's gradients by central finite "
                             "differences of minibnn's forward (float64) to show the reference "
                             "is self-consistent")
    parser.add_argument("--fd-elements", type=int, default=64, metavar="N",
                        help="elements per tensor differenced by --check-reference (a seeded "
                             "sample of larger tensors)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the report as JSON")
    parser.add_argument("--junit", metavar="PATH", default=None,
                        help="also write a JUnit XML report (one testcase per case and tensor)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the cases that are not OK, and the summary")


def _usage(message: str) -> int:
    print(f"minibnn verify: error: {message}", file=sys.stderr)
    return 2


def _setup(args: argparse.Namespace):
    if args.tolerance_scale is not None and args.precision is not None:
        raise ValueError("give --precision or --tolerance-scale, not both")
    if args.tolerance_scale is None:
        args.tolerance_scale = PRECISION_SCALES[args.precision or "float32"]
    if not args.tolerance_scale > 0:
        raise ValueError(f"--tolerance-scale must be positive, got {args.tolerance_scale}")
    if not args.timeout >= 0:
        raise ValueError(f"--timeout must be >= 0 seconds, got {args.timeout}")
    if args.fd_elements < 1:
        raise ValueError(f"--fd-elements must be at least 1, got {args.fd_elements}")
    if args.against is None and not args.check_reference:
        raise ValueError("give the port with --against MODULE:FUNCTION (or --check-reference "
                         "to check the golden cases themselves)")
    conventions = parse_conventions(args.convention)
    cases = golden.load_cases(args.directory, only=args.only)
    fn = with_timeout(load_callable(args.against), args.timeout) if args.against else None
    return cases, fn, conventions


def _check_reference(cases, fd_elements: int, quiet: bool) -> bool:
    ok = True
    for case in cases:
        if case.name not in SPECS:
            print(f"[NOT CHECKED] {case.name}  (not a case this minibnn defines)")
            continue
        report = finite_difference_check(case, max_elements=fd_elements)
        ok &= report.ok
        if not quiet or not report.ok:
            text = str(report).replace(f"] {case.name}", f"] {case.name} (reference vs "
                                                         f"finite differences)", 1)
            print(text)
    verdict = "self-consistent" if ok else "NOT self-consistent (see NOT OK rows)"
    print(f"check-reference: the reference gradients of {len(cases)} cases are {verdict}")
    return ok


def run(args: argparse.Namespace) -> int:
    try:
        cases, fn, conventions = _setup(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError, OSError) as err:
        return _usage(str(err))
    ok = True
    if args.check_reference:
        ok = _check_reference(cases, args.fd_elements, args.quiet)
    if fn is None:
        return 0 if ok else 1
    result = golden.verify(cases, fn, tolerance_scale=args.tolerance_scale,
                           conventions=conventions)
    for report in result.reports:
        if not args.quiet or not report.ok:
            print(report)
    extra = f", conventions {', '.join(conventions)}" if conventions else ""
    print(f"verify {args.directory} against {args.against}{extra}: {result.summary()}")
    needed = result.required_scale() * args.tolerance_scale
    if not result.ok and 1.0 < needed <= PRECISION_SCALES["bfloat16"]:
        print(f"note: every value is within {needed:.3g} times the float32 tolerances; for a "
              f"float16 / bfloat16 port use --precision (docs/golden.md has the measurements)")
    meta = dict(directory=str(args.directory), against=args.against,
                tolerance_scale=args.tolerance_scale, conventions=list(conventions))
    try:
        if args.json:
            write_json(result, args.json, **meta)
        if args.junit:
            write_junit(result, args.junit)
    except OSError as err:
        return _usage(f"cannot write the report: {err}")
    return 0 if (result.ok and ok) else 1

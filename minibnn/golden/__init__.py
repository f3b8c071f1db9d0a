"""Golden reference vectors: check another framework's port of a BNN method tensor by tensor.

    spec.py     a case's Spec, the registry, seeded input makers, and the generic runner
                `reference` (itself a callable with the verify convention)
    cases_*.py  the case definitions: layers, methods, packed engine (cases.py imports all)
    io.py       the format: Case, one .npz per case plus manifest.json, deterministic writing,
                checked reading
    compare.py  compare(case, got) -> Report (per tensor OK / NOT OK / WRONG SHAPE ...),
                verify(cases, fn) -> SuiteReport
    conventions.py  declared conventions (sign0=zero): the reference under another convention
    fdcheck.py  finite_difference_check(case): the reference gradients vs finite differences
    reports.py  JSON and JUnit XML reports of a verify run

A port is a callable fn(name, inputs, params, upstream, attrs) -> dict | None returning the
outputs and the gradients "grad_<name>"; see docs/golden.md. No framework is imported here;
the framework adapters, the whole-model comparison and the pytest helper are minibnn.verify.
"""

from .. import __version__
from .cases import (DEFAULT_SEED, GENERAL_CONVENTIONS, SPECS, build_case, build_cases,
                    case_names, reference)
from .compare import Report, Row, SuiteReport, compare, verify
from .fdcheck import finite_difference_check
from .io import Case, Expected, load_case, load_cases, read_manifest, select_names, write_cases

__all__ = ["Case", "Expected", "Report", "Row", "SuiteReport", "compare", "verify",
           "build_case", "build_cases", "case_names", "reference", "write_cases", "load_cases",
           "load_case", "read_manifest", "select_names", "SPECS", "DEFAULT_SEED",
           "GENERAL_CONVENTIONS", "write_golden", "finite_difference_check",
           "GoldenCheckError"]


class GoldenCheckError(ValueError):
    """A case's recorded gradients disagree with finite differences; nothing was written."""


def write_golden(out_dir, only=None, seed: int = DEFAULT_SEED):
    """Build the cases matching `only` (all by default), check every gradient against finite
    differences (fdcheck.py; raises GoldenCheckError and writes nothing if one fails) and write
    them to out_dir; returns the manifest path. The same seed gives byte-identical files."""
    cases = build_cases(only, seed)
    failed = [report for report in map(finite_difference_check, cases) if not report.ok]
    if failed:
        raise GoldenCheckError(
            "golden: refusing to write: gradients disagree with finite differences in "
            + "; ".join(f"{r.case} ({', '.join(row.tensor for row in r.failures)})"
                        for r in failed))
    return write_cases(cases, out_dir, seed=seed,
                       generator=f"minibnn {__version__}", conventions=GENERAL_CONVENTIONS)

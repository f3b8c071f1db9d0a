"""One pytest test per golden case and tensor, for a port's own test suite (CI shows which tensor
of which case broke, and `pytest -k grad_weight` selects).

    from minibnn.verify.pytest import GoldenSuite
    suite = GoldenSuite("golden_cases", my_port, only="layer.*", conventions=["sign0=zero"])

    @suite.parametrize
    def test_golden(case, tensor):
        suite.check(case, tensor)

The test ids are "<case>/<tensor>". The port runs once per case (the report is cached), on the
first test of that case. A tensor NOT OK, MISSING or WRONG SHAPE fails with the report row and
the case's conventions; a port that raised fails every test of its case with the message
(WRONG SHAPE for a shape error); a case the port returns None for, and an optional
intermediate it does not return, are skipped. A declared convention's row is checked with the
tensor it belongs to. Only the manifest is read at collection time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

try:
    import pytest
except ImportError as _err:                            # pragma: no cover
    raise ImportError("minibnn.verify.pytest needs pytest (pip install pytest, or the test "
                      "extra: pip install minibnn[test])") from _err

from ..golden import load_case, read_manifest, select_names
from ..golden.compare import Report, run_case
from ..golden.conventions import parse_conventions

__all__ = ["GoldenSuite"]


class GoldenSuite:
    """The golden cases of `directory` (those matching `only`) checked against `port`
    (fn(name, inputs, params, upstream, attrs)), with verify's tolerance_scale and
    conventions."""

    def __init__(self, directory: str | Path, port: Callable[..., Any], *,
                 only: str | Sequence[str] | None = None, tolerance_scale: float = 1.0,
                 conventions: Sequence[str] = ()):
        self.directory = Path(directory)
        self.port = port
        self.tolerance_scale = float(tolerance_scale)
        self.conventions = parse_conventions(conventions)
        manifest = read_manifest(self.directory)
        self.names = select_names(manifest["cases"], only)
        self.tensors = {n: list(manifest["cases"][n]["expected"]) for n in self.names}
        self._reports: dict[str, Report] = {}

    def params(self) -> list:
        """pytest.param((case, tensor), id="case/tensor") for every expected tensor."""
        return [pytest.param(case, tensor, id=f"{case}/{tensor}")
                for case in self.names for tensor in self.tensors[case]]

    def parametrize(self, test: Callable) -> Callable:
        """Decorator: parametrize `test(case, tensor)` with params()."""
        return pytest.mark.parametrize("case, tensor", self.params())(test)

    def report(self, case: str) -> Report:
        """The cached report of one case (the port runs on first use)."""
        if case not in self._reports:
            self._reports[case] = run_case(load_case(self.directory, case), self.port,
                                           self.tolerance_scale, self.conventions)
        return self._reports[case]

    def check(self, case: str, tensor: str) -> None:
        """Fail, skip or pass the test of one tensor of one case."""
        report = self.report(case)
        if report.skipped:
            pytest.skip(f"the port returns None for {case}")
        if report.error is not None:
            pytest.fail(f"[{report.status()}] {case}: {report.error}", pytrace=False)
        rows = [r for r in report.rows
                if r.tensor == tensor or r.tensor.startswith(f"{tensor} [")]
        bad = [r for r in rows if not r.ok]
        if bad:
            lines = [f"[{r.status}] {case} {r.tensor}: {r.note} (max abs {r.max_abs}, atol "
                     f"{r.atol}, rtol {r.rtol}, tol used {r.used})" for r in bad]
            if report.conventions:
                lines += ["conventions to check:"] + [f"  - {c}" for c in report.conventions]
            pytest.fail("\n".join(lines), pytrace=False)
        if rows and all(r.status == "NOT RETURNED" for r in rows):
            pytest.skip(f"{case}: optional intermediate {tensor} not returned")

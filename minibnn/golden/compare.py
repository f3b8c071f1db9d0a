"""Compare a port's tensors with a golden case, and run a port over many cases.

compare(case, got) -> Report: one Row per expected tensor (OK / NOT OK / MISSING / WRONG SHAPE,
max abs and max rel difference, the worst element), plus rows for names the case does not know.
verify(cases, fn) -> SuiteReport: calls fn(name, inputs, params, upstream, attrs) per case,
turning a None answer into "skipped" and an exception into an error row naming the case.
Values may be anything np.asarray accepts; objects with .detach() (torch) are detached first.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .io import Case, Expected

__all__ = ["Row", "Report", "SuiteReport", "compare", "verify"]

_PASSING = ("OK", "NOT RETURNED", "EXTRA")


@dataclass
class Row:
    """The verdict on one tensor of one case."""

    tensor: str
    status: str                      # OK, NOT OK, MISSING, WRONG SHAPE, NOT RETURNED, EXTRA
    kind: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    atol: float | None = None
    rtol: float | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in _PASSING


@dataclass
class Report:
    """All rows of one case. ok is False when a required tensor is NOT OK or missing, or the
    port failed (`error`); a skipped case (the port returned None) is ok but not `checked`."""

    case: str
    rows: list[Row] = field(default_factory=list)
    skipped: bool = False
    error: str | None = None
    conventions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.rows)

    @property
    def checked(self) -> bool:
        return not self.skipped

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def row(self, tensor: str) -> Row:
        for r in self.rows:
            if r.tensor == tensor:
                return r
        raise KeyError(f"case {self.case!r} has no row for tensor {tensor!r}")

    def status(self) -> str:
        if self.skipped:
            return "SKIPPED"
        if self.error is not None:
            return "ERROR"
        return "OK" if self.ok else "NOT OK"

    def __str__(self) -> str:
        head = f"[{self.status()}] {self.case}"
        if self.skipped:
            return head + "  (the port returned None)"
        if self.error is not None:
            return f"{head}\n    {self.error}"
        bad = self.failures
        checked = [r for r in self.rows if r.status not in ("NOT RETURNED", "EXTRA")]
        if bad:
            head += f"  ({len(bad)} of {len(checked)} tensors NOT OK)"
        lines = [head, f"    {'tensor':<22} {'kind':<12} {'status':<12} {'max abs':>9} "
                       f"{'max rel':>9} {'atol':>8} {'rtol':>8}"]
        for r in self.rows:
            lines.append(f"    {r.tensor:<22} {r.kind:<12} {r.status:<12} {_num(r.max_abs):>9} "
                         f"{_num(r.max_rel):>9} {_num(r.atol, 2):>8} {_num(r.rtol, 2):>8}")
            if r.note and (not r.ok or r.status in ("EXTRA", "NOT RETURNED")):
                lines.append(f"    {'':<22} -> {r.note}")
        if bad and self.conventions:
            lines.append("    conventions to check:")
            lines.extend(f"      - {c}" for c in self.conventions)
        return "\n".join(lines)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.{digits - 1}e}"


@dataclass
class SuiteReport:
    """The reports of a verify run. ok: no case NOT OK or ERROR, and at least one checked."""

    reports: list[Report]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and any(r.checked for r in self.reports)

    def counts(self) -> dict[str, int]:
        counts = {"OK": 0, "NOT OK": 0, "ERROR": 0, "SKIPPED": 0}
        for r in self.reports:
            counts[r.status()] += 1
        return counts

    def __getitem__(self, case: str) -> Report:
        for r in self.reports:
            if r.case == case:
                return r
        raise KeyError(f"no report for case {case!r}")

    def summary(self) -> str:
        c = self.counts()
        n = len(self.reports)
        text = (f"{n} case{'' if n == 1 else 's'}: {c['OK']} OK, {c['NOT OK']} NOT OK, "
                f"{c['ERROR']} ERROR, {c['SKIPPED']} skipped")
        if not any(r.checked for r in self.reports):
            text += " (nothing was checked: the port returned None for every case)"
        return text

    def __str__(self) -> str:
        return "\n".join([str(r) for r in self.reports] + [self.summary()])


# ------------------------------------------------------------------------------ compare
def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):                       # a torch tensor
        value = value.detach()
        value = value.cpu() if hasattr(value, "cpu") else value
    return np.asarray(value)


def _value(v: Any) -> str:
    v = np.asarray(v).item()
    return f"{v:.7g}" if isinstance(v, float) else str(v)


def _compare_one(name: str, check: Expected, want: np.ndarray, value: Any,
                 scale: float) -> Row:
    row = Row(name, "OK", check.kind, atol=check.atol * scale, rtol=check.rtol * scale)
    if check.exact:
        row.atol = row.rtol = 0.0
    try:
        got = _as_array(value)
    except Exception as err:  # noqa: BLE001 (any conversion failure is reported, not raised)
        row.status, row.note = "NOT OK", f"cannot be read as an array: {type(err).__name__}: {err}"
        return row
    if got.dtype.kind not in "biuf":
        row.status, row.note = "NOT OK", f"has dtype {got.dtype}, expected numbers ({want.dtype})"
        return row
    if got.shape != want.shape:
        if want.shape == () and got.size == 1:
            got = got.reshape(())
        else:
            row.status = "WRONG SHAPE"
            row.note = f"shape {got.shape}, expected {want.shape}"
            return row
    if want.dtype == np.uint64 and got.dtype == np.int64:
        got = got.view(np.uint64)                      # the same bits in a signed container
    if want.dtype.kind in "iu" and got.dtype.kind in "iub":
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        bad = got.astype(want.dtype) != want if want.dtype == np.uint64 else diff != 0
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        both_nan = np.isnan(g) & np.isnan(w)
        diff = np.where(both_nan, 0.0, np.abs(g - w))
        diff = np.where(np.isnan(diff), np.inf, diff)
        bad = ~(diff <= row.atol + row.rtol * np.abs(w))
    if want.size:
        row.max_abs = float(diff.max())
        nonzero = want != 0
        row.max_rel = (float((diff[nonzero] / np.abs(want[nonzero].astype(np.float64))).max())
                       if nonzero.any() else None)
    if bad.any():
        row.status = "NOT OK"
        worst = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), want.shape)
        where = f"{tuple(int(i) for i in worst)}" if want.ndim else "()"
        row.note = (f"{int(bad.sum())} of {want.size} elements off; worst at {where}: "
                    f"got {_value(got[worst])}, want {_value(want[worst])}")
        if check.kind == "grad" and check.detached:
            row.note += f" ({check.of} is detached: its gradient must be 0)"
    return row


def compare(case: Case, outputs_and_grads: Mapping[str, Any], tolerance_scale: float = 1.0
            ) -> Report:
    """Check a port's answer for `case`: every expected tensor (outputs, "grad_<name>",
    optional intermediates) against the reference, element-wise |got - want| <= atol + rtol |want|.

    tolerance_scale multiplies every tolerance (exact tensors stay exact). A TypeError names the
    case when the answer is not a mapping.
    """
    if not isinstance(outputs_and_grads, Mapping):
        raise TypeError(f"golden case {case.name!r}: the port returned "
                        f"{type(outputs_and_grads).__name__}, expected a dict mapping tensor "
                        f"names to arrays (or None to skip the case); expected names: "
                        f"{', '.join(case.expected)}")
    got = {str(k): v for k, v in outputs_and_grads.items()}
    rows = []
    for name, want in case.expected.items():
        check = case.checks[name]
        if name not in got:
            status = "MISSING" if check.required else "NOT RETURNED"
            note = ("not returned" if check.required else "optional, not returned (not checked)")
            rows.append(Row(name, status, check.kind, note=note))
            continue
        rows.append(_compare_one(name, check, want, got[name], tolerance_scale))
    for name in got:
        if name not in case.expected:
            rows.append(Row(name, "EXTRA", "", note="not a tensor of this case (ignored); "
                                                    f"expected names: {', '.join(case.expected)}"))
    return Report(case.name, rows, conventions=list(case.conventions))


def _location(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno} in {last.name})"


def verify(cases: Sequence[Case], fn: Callable[..., Any], tolerance_scale: float = 1.0
           ) -> SuiteReport:
    """Run a port over `cases` and compare each answer.

    fn(name, inputs, params, upstream, attrs) -> dict[str, array] | None receives fresh copies
    of the case's arrays; None means "this port does not implement the case" (skipped).
    An exception or a non-dict answer becomes an ERROR report naming the case.
    """
    reports = []
    for case in cases:
        copies = [{k: np.array(v, copy=True) for k, v in group.items()}
                  for group in (case.inputs, case.params, case.upstream)]
        try:
            got = fn(case.name, *copies, dict(case.attrs))
        except Exception as err:  # noqa: BLE001 (a port's failure is a report, not a crash)
            reports.append(Report(case.name, error=f"the port raised {type(err).__name__}: "
                                                   f"{err}{_location(err)}"))
            continue
        if got is None:
            reports.append(Report(case.name, skipped=True))
            continue
        try:
            reports.append(compare(case, got, tolerance_scale))
        except TypeError as err:
            reports.append(Report(case.name, error=str(err)))
    return SuiteReport(reports)

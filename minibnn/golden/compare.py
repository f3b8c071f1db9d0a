"""Compare a port's tensors with a golden case, and run a port over many cases.

compare(case, got) -> Report: one Row per expected tensor (OK / NOT OK / MISSING / WRONG SHAPE,
max abs and max rel difference, the share of the tolerance used, the worst element), plus rows
for names the case does not know. verify(cases, fn) -> SuiteReport: calls fn(name, inputs,
params, upstream, attrs) per case, turning a None answer into "skipped", an exception into an
ERROR (or WRONG SHAPE when it is a shape error) naming the case. Values may be anything
np.asarray accepts; objects with .detach() (torch) are detached first, bfloat16 is widened.

Declared conventions (conventions.py, e.g. "sign0=zero") judge the elements they affect against
the reference recomputed under that convention, in a separate row "<tensor> [<convention>]".
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .conventions import alternative_expected, parse_conventions
from .io import Case, Expected

__all__ = ["Row", "Report", "SuiteReport", "compare", "verify", "run_case", "is_shape_error",
           "STATUSES", "PRECISION_SCALES"]

_PASSING = ("OK", "NOT RETURNED", "EXTRA", "NOT CHECKED")
STATUSES = ("OK", "NOT OK", "WRONG SHAPE", "ERROR", "SKIPPED")    # of a case
# --tolerance-scale per port precision: the worst tol-used measured over every case family with
# a PyTorch port in that dtype (float32 0.013, float16 70, bfloat16 581; docs/golden.md), with
# a margin. bfloat16 at 1000 means a 10 % relative tolerance: still far below the classic bugs.
PRECISION_SCALES = {"float32": 1.0, "float16": 100.0, "bfloat16": 1000.0}
_SHAPE_MESSAGES = re.compile(
    r"size of tensor a \(\d+\) must match|shapes? .*cannot be multiplied|is invalid for input of "
    r"size|could not be broadcast|not aligned|cannot reshape|size mismatch|expected input\[.*\] "
    r"to have|Incompatible shapes|shape mismatch|dimension mismatch|must have the same shape|"
    r"Dimensions must be equal|incompatible shapes|mismatch in shape|mismatch in its core "
    r"dimension|wrong shape", re.IGNORECASE)


def is_shape_error(err: BaseException) -> bool:
    """Whether an exception raised by a port is a shape error (torch, NumPy, TensorFlow and
    JAX wordings), reported as WRONG SHAPE instead of ERROR."""
    return type(err).__name__ == "ShapeError" or bool(_SHAPE_MESSAGES.search(str(err)))


@dataclass
class Row:
    """The verdict on one tensor of one case."""

    tensor: str
    status: str       # OK, NOT OK, MISSING, WRONG SHAPE, NOT RETURNED, EXTRA, NOT CHECKED
    kind: str = ""
    max_abs: float | None = None
    max_rel: float | None = None      # over elements with |want| > atol (not near-zero ones)
    atol: float | None = None
    rtol: float | None = None
    note: str = ""
    used: float | None = None         # max |got - want| / (atol + rtol |want|): > 1 fails
    elements: int | None = None       # how many elements this row judged
    convention: str = ""              # set on the row judging a convention's elements

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
    shape_error: bool = False         # the port raised a shape error (status WRONG SHAPE)

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
            return "WRONG SHAPE" if self.shape_error else "ERROR"
        if self.ok:
            return "OK"
        return "WRONG SHAPE" if any(r.status == "WRONG SHAPE" for r in self.rows) else "NOT OK"

    def required_scale(self) -> float:
        """The smallest tolerance scale at which this report's value rows pass (inf when an
        exact tensor differs or a tensor is missing or mis-shaped)."""
        worst = 0.0
        for r in self.rows:
            if r.status in ("MISSING", "WRONG SHAPE") or (r.status == "NOT OK" and r.used is None):
                return float("inf")
            if r.used is not None:
                worst = max(worst, r.used)
        return worst

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
                       f"{'max rel':>9} {'atol':>8} {'rtol':>8} {'tol used':>8}"]
        for r in self.rows:
            lines.append(f"    {r.tensor:<22} {r.kind:<12} {r.status:<12} {_num(r.max_abs):>9} "
                         f"{_num(r.max_rel):>9} {_num(r.atol, 2):>8} {_num(r.rtol, 2):>8} "
                         f"{_num(r.used, 2):>8}")
            if r.note and (not r.ok or r.convention or r.status in ("EXTRA", "NOT RETURNED")):
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
    if value == float("inf"):
        return "inf"
    return f"{value:.{digits - 1}e}"


@dataclass
class SuiteReport:
    """The reports of a verify run. ok: no case NOT OK or ERROR, and at least one checked."""

    reports: list[Report]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and any(r.checked for r in self.reports)

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
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
                f"{c['WRONG SHAPE']} WRONG SHAPE, {c['ERROR']} ERROR, {c['SKIPPED']} skipped")
        if not any(r.checked for r in self.reports):
            text += " (nothing was checked: the port returned None for every case)"
        return text

    def __str__(self) -> str:
        return "\n".join([str(r) for r in self.reports] + [self.summary()])

    def required_scale(self) -> float:
        """The smallest --tolerance-scale at which every checked case passes."""
        return max([r.required_scale() for r in self.reports if r.checked and r.error is None],
                   default=0.0)


# ------------------------------------------------------------------------------ compare
def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):                       # a torch tensor
        value = value.detach()
        value = value.cpu() if hasattr(value, "cpu") else value
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()                      # NumPy has no bfloat16
    array = np.asarray(value)
    if array.dtype.kind == "V" or str(array.dtype) == "bfloat16":   # ml_dtypes (JAX)
        array = array.astype(np.float32)
    return array


def _value(v: Any) -> str:
    v = np.asarray(v).item()
    return f"{v:.7g}" if isinstance(v, float) else str(v)


def _judge(row: Row, got: np.ndarray, want: np.ndarray, mask: np.ndarray | None,
           detached_of: str | None) -> Row:
    """Fill row's statistics from the elements selected by mask (all when None)."""
    if want.dtype.kind in "iu" and got.dtype.kind in "iub":
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        bad = got.astype(want.dtype) != want if want.dtype == np.uint64 else diff != 0
        bound = None
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        both_nan = np.isnan(g) & np.isnan(w)
        diff = np.where(both_nan, 0.0, np.abs(g - w))
        diff = np.where(np.isnan(diff), np.inf, diff)
        bound = row.atol + row.rtol * np.abs(w)
        bad = ~(diff <= bound)
    sel = np.ones(want.shape, bool) if mask is None else mask
    row.elements = int(sel.sum())
    if row.elements:
        row.max_abs = float(diff[sel].max())
        w_abs = np.abs(want.astype(np.float64))
        big = sel & (w_abs > (row.atol if row.atol else 0.0))     # near-zero refs left out
        row.max_rel = float((diff[big] / w_abs[big]).max()) if big.any() else None
        if bound is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(diff[sel] == 0, 0.0, diff[sel] / bound[sel])
            row.used = float(ratio.max())
    bad &= sel
    if bad.any():
        row.status = "NOT OK"
        worst = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), want.shape)
        where = f"{tuple(int(i) for i in worst)}" if want.ndim else "()"
        row.note = (f"{int(bad.sum())} of {row.elements} elements off; worst at {where}: "
                    f"got {_value(got[worst])}, want {_value(want[worst])}")
        if detached_of:
            row.note += f" ({detached_of} is detached: its gradient must be 0)"
    return row


def _compare_one(name: str, check: Expected, want: np.ndarray, value: Any, scale: float,
                 alternatives: Mapping[str, np.ndarray] | None = None) -> list[Row]:
    row = Row(name, "OK", check.kind, atol=check.atol * scale, rtol=check.rtol * scale)
    if check.exact:
        row.atol = row.rtol = 0.0
    try:
        got = _as_array(value)
    except Exception as err:  # noqa: BLE001 (any conversion failure is reported, not raised)
        row.status, row.note = "NOT OK", f"cannot be read as an array: {type(err).__name__}: {err}"
        return [row]
    if got.dtype.kind not in "biuf":
        row.status, row.note = "NOT OK", f"has dtype {got.dtype}, expected numbers ({want.dtype})"
        return [row]
    if got.shape != want.shape:
        if want.shape == () and got.size == 1:
            got = got.reshape(())
        else:
            row.status = "WRONG SHAPE"
            row.note = f"shape {got.shape}, expected {want.shape}"
            return [row]
    if want.dtype == np.uint64 and got.dtype == np.int64:
        got = got.view(np.uint64)                      # the same bits in a signed container
    detached = check.of if check.kind == "grad" and check.detached else None
    rows, judged = [row], np.zeros(want.shape, bool)
    for convention, alt in (alternatives or {}).items():
        mask = ~judged & ~((alt == want) | (np.isnan(alt) & np.isnan(want)))
        if not mask.any():
            continue
        judged |= mask
        extra = Row(f"{name} [{convention}]", "OK", check.kind, atol=row.atol, rtol=row.rtol,
                    convention=convention)
        _judge(extra, got, alt, mask, detached)
        extra.note = (f"{extra.elements} element(s) where {convention} changes the reference, "
                      f"judged by it" + (f"; {extra.note}" if extra.note else ""))
        rows.append(extra)
    _judge(row, got, want, ~judged if judged.any() else None, detached)
    if judged.any():
        row.note = (f"{int(judged.sum())} element(s) judged by the declared convention (next "
                    f"row)" + (f"; {row.note}" if row.note else ""))
    return rows


def compare(case: Case, outputs_and_grads: Mapping[str, Any], tolerance_scale: float = 1.0,
            conventions: Sequence[str] = ()) -> Report:
    """Check a port's answer for `case`: every expected tensor (outputs, "grad_<name>",
    optional intermediates) against the reference, element-wise |got - want| <= atol + rtol |want|.

    tolerance_scale multiplies every tolerance (exact tensors stay exact). conventions: declared
    conventions ("sign0=zero", see conventions.py); the elements each one changes are judged
    against the reference under that convention, in an extra row per tensor. A TypeError names
    the case when the answer is not a mapping.
    """
    if not isinstance(outputs_and_grads, Mapping):
        raise TypeError(f"golden case {case.name!r}: the port returned "
                        f"{type(outputs_and_grads).__name__}, expected a dict mapping tensor "
                        f"names to arrays (or None to skip the case); expected names: "
                        f"{', '.join(case.expected)}")
    alternatives = {c: alternative_expected(case, c) for c in parse_conventions(conventions)}
    got = {str(k): v for k, v in outputs_and_grads.items()}
    rows = []
    for name, want in case.expected.items():
        check = case.checks[name]
        if name not in got:
            status = "MISSING" if check.required else "NOT RETURNED"
            note = ("not returned" if check.required else "optional, not returned (not checked)")
            rows.append(Row(name, status, check.kind, note=note))
            continue
        alts = {c: a[name] for c, a in alternatives.items() if name in a}
        rows.extend(_compare_one(name, check, want, got[name], tolerance_scale, alts))
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


def run_case(case: Case, fn: Callable[..., Any], tolerance_scale: float = 1.0,
             conventions: Sequence[str] = ()) -> Report:
    """Call fn on fresh copies of one case's arrays and compare its answer (see verify)."""
    copies = [{k: np.array(v, copy=True) for k, v in group.items()}
              for group in (case.inputs, case.params, case.upstream)]
    try:
        got = fn(case.name, *copies, dict(case.attrs))
    except Exception as err:  # noqa: BLE001 (a port's failure is a report, not a crash)
        return Report(case.name, error=f"the port raised {type(err).__name__}: {err}"
                                       f"{_location(err)}", shape_error=is_shape_error(err),
                      conventions=list(case.conventions))
    if got is None:
        return Report(case.name, skipped=True)
    try:
        return compare(case, got, tolerance_scale, conventions)
    except TypeError as err:
        return Report(case.name, error=str(err))


def verify(cases: Sequence[Case], fn: Callable[..., Any], tolerance_scale: float = 1.0,
           conventions: Sequence[str] = ()) -> SuiteReport:
    """Run a port over `cases` and compare each answer.

    fn(name, inputs, params, upstream, attrs) -> dict[str, array] | None receives fresh copies
    of the case's arrays; None means "this port does not implement the case" (skipped).
    An exception becomes an ERROR report naming the case (WRONG SHAPE for a shape error), a
    non-dict answer an ERROR. conventions: see compare.
    """
    parse_conventions(conventions)                     # a bad name fails before any port call
    return SuiteReport([run_case(c, fn, tolerance_scale, conventions) for c in cases])

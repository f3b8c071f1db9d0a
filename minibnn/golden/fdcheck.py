"""Is a golden case's reference self-consistent? Its gradients recomputed by central finite
differences of minibnn's own forward, in float64.

For each checked gradient grad_X of a case, a sample of X's elements is perturbed by +-h and

    g_fd[i] = (L(X + h e_i) - L(X - h e_i)) / (2 h),   L = sum_o sum(upstream[o] * output[o])

is compared with the case's expected grad_X (|g_fd - want| <= atol + rtol |want|). This is the
oracle for "who is wrong" when a port's forward matches and its gradients do not.

Pseudo-gradients are not derivatives of sign, so while the differences are taken every sign
Function is replaced by its surrogate, frozen at the base point: y(x) = sign(x0) + s(x) - s(x0)
with x0 the input of that call in the unperturbed run. The value at the base point is the true
forward, and dy/dx = s'(x) is the documented pseudo-gradient of an independent closed form:
    STE (clip c)          s(x) = x where |x0| <= c (both edges pass), constant elsewhere
    ApproxSign            s(x) = 2x - x|x| for |x| < 1, sign(x) outside (Bi-Real's quadratic)
    EDE (t, k)            s(x) = k tanh(t x)
    ReActNet weight sign  s(w) = w where |w0| <= c (alpha = mean |w| is detached)
Detached inputs (gradient 0 by convention) are not perturbed; an attribute left unset (null)
that the case also returns as an output (CMIM's normalisers Z, set by the first call from its
own scores, without gradient) is held at the returned value. Cases that detach a quantity built
inside an op from raw arrays cannot be differenced this way and are listed in
NOT_DIFFERENTIABLE with the reason (their rows say NOT CHECKED).
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator

import numpy as np

from ..quantizers import ApproxSign, EDESign, ReActNetWeightSign, SignSTE
from .compare import Report, Row, _judge
from .io import Case
from .spec import SPECS, reference

__all__ = ["finite_difference_check", "NOT_DIFFERENTIABLE", "surrogate_signs"]

NOT_DIFFERENTIABLE = {
    "weight.xnor_detached": "alpha = mean |w| is detached inside the binarizer (built from the "
                            "raw array), so the forward's derivative includes d(alpha)/dw and "
                            "the reference's does not",
}


def _ste(x, x0, ctx):
    return np.where(np.abs(x0) <= ctx.clip, x, 0.0)


def _approx(x, x0, ctx):
    return np.where(np.abs(x) < 1, 2 * x - x * np.abs(x), np.where(x < 0, -1.0, 1.0))


def _ede(x, x0, ctx):
    return ctx.k * np.tanh(ctx.t * x)


_SURROGATES = {SignSTE: _ste, ApproxSign: _approx, EDESign: _ede, ReActNetWeightSign: _ste}


class _Recorder:
    def __init__(self):
        self.base: list = []
        self.recording = True
        self.position = 0

    def forward(self, cls, original):
        def forward(ctx, x, *args, **kwargs):
            y = original(ctx, x, *args, **kwargs)            # sets ctx.clip / ctx.t, ctx.k
            if self.recording:
                self.base.append((np.array(x, copy=True), y))
                return y
            x0, y0 = self.base[self.position]
            self.position += 1
            s = _SURROGATES[cls]
            return (y0 + (s(x, x0, ctx) - s(x0, x0, ctx))).astype(y0.dtype)
        return staticmethod(forward)


@contextlib.contextmanager
def surrogate_signs() -> Iterator[_Recorder]:
    """Within the block, sign Functions record their inputs while `recorder.recording` is True
    and afterwards return the frozen surrogate (module docstring); restored on exit."""
    recorder = _Recorder()
    originals = {cls: cls.__dict__["forward"] for cls in _SURROGATES}
    try:
        for cls, original in originals.items():
            cls.forward = recorder.forward(cls, original.__func__)
        yield recorder
    finally:
        for cls, original in originals.items():
            cls.forward = original


def _objective(case: Case, inputs: dict, params: dict, attrs: dict) -> float:
    out = reference(case.name, inputs, params, {}, attrs)
    return float(sum(np.sum(np.asarray(case.upstream[o], np.float64) * np.asarray(out[o]))
                     for o in case.upstream))


def finite_difference_check(case: Case, *, eps: float = 1e-6, max_elements: int = 64,
                            seed: int = 0, rtol: float = 1e-5, atol: float = 1e-6) -> Report:
    """Compare every gradient of `case` with central finite differences of minibnn's forward.

    eps: the step, relative (h = eps * max(1, |x_i|)); max_elements: elements differenced per
    tensor (a seeded random sample for larger tensors, all of a smaller one); rtol, atol: the
    test |g_fd - want| <= atol * max|want| + rtol * |want| (+ 1e-10 absolute), loose enough for
    the O(h^2) and rounding errors of float64 differences and far tighter than any real bug.
    Returns a Report with one row per gradient (OK, NOT OK, NOT CHECKED); report.ok says the
    reference is self-consistent. A case minibnn does not define is a ValueError.
    """
    if case.name not in SPECS:
        raise ValueError(f"finite differences need minibnn's forward of case {case.name!r}, "
                         f"which this minibnn does not define")
    f64 = {g: {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in d.items()}
           for g, d in (("inputs", case.inputs), ("params", case.params))}
    attrs = dict(case.attrs)
    for key, value in case.attrs.items():
        if value is None and key in case.expected:          # state set by this call, frozen
            attrs[key] = float(np.asarray(case.expected[key]))
    rows = []
    with surrogate_signs() as recorder:
        _objective(case, f64["inputs"], f64["params"], attrs)          # records the base point
        recorder.recording = False
        for name, check in case.checks.items():
            if check.kind != "grad":
                continue
            row = Row(name, "NOT CHECKED", "grad")
            group = "inputs" if check.of in f64["inputs"] else "params"
            source = f64[group][check.of]
            if check.detached:
                row.note = f"{check.of} is detached: its gradient is 0 by convention"
            elif case.name in NOT_DIFFERENTIABLE:
                row.note = NOT_DIFFERENTIABLE[case.name]
            elif source.dtype.kind != "f":
                row.note = f"{check.of} is not a float array"
            else:
                row = _difference(case, name, check.of, group, f64, attrs, recorder, eps,
                                  max_elements, seed, rtol, atol)
            rows.append(row)
    return Report(case.name, rows, conventions=list(case.conventions))


def _difference(case, name, of, group, f64, attrs, recorder, eps, max_elements, seed, rtol,
                atol) -> Row:
    want = np.asarray(case.expected[name], np.float64)
    source = f64[group][of]
    rng = np.random.default_rng([seed, zlib.crc32(f"{case.name}/{name}".encode())])
    flat = (np.arange(source.size) if source.size <= max_elements
            else np.sort(rng.choice(source.size, max_elements, replace=False)))
    fd = np.zeros(len(flat))
    for j, i in enumerate(flat):
        h = eps * max(1.0, abs(source.flat[i]))
        values = []
        for step in (h, -h):
            moved = {g: dict(d) for g, d in f64.items()}
            x = source.copy()
            x.flat[i] += step
            moved[group][of] = x
            recorder.position = 0
            values.append(_objective(case, moved["inputs"], moved["params"], attrs))
        fd[j] = (values[0] - values[1]) / (2 * h)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    row = Row(name, "OK", "grad", atol=atol * scale + 1e-10, rtol=rtol)
    _judge(row, fd, want.reshape(-1)[flat], None, None)
    head = f"finite differences on {len(flat)} of {source.size} elements"
    if row.status == "NOT OK":          # name the element in X's own shape
        worst = int(flat[int(np.argmax(np.abs(fd - want.reshape(-1)[flat])))])
        where = tuple(int(k) for k in np.unravel_index(worst, source.shape))
        row.note = (f"{head}; {row.note.split(';')[0]}; worst at {where}: finite difference "
                    f"{fd[list(flat).index(worst)]:.7g}, reference {want.flat[worst]:.7g}")
    else:
        row.note = head
    return row

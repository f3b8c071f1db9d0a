"""Finite-difference check of a golden case's gradients: no expected gradient is taken on trust.

For each gradient the case records, the scalar the gradients belong to,

    L(inputs, params) = sum over differentiable outputs o of sum(upstream[o] * o),

is evaluated in float64 at X +- eps e_i for sampled elements i of X, always from the case's own
starting arrays: state that the op changes (memory banks, queues) is rebuilt from them at every
evaluation, so the check gives the gradient of the state as it was before the call, which is
what training must follow. Outputs the spec marks `frozen` (detached constants computed by
the op, such as CMIM's first-call normaliser) are held at their unperturbed values.
(L(X + eps e_i) - L(X - eps e_i)) / 2 eps is compared with the
recorded gradient; detached gradients must be exactly zero. Gradients listed in the spec's
`pseudo` are straight-through pseudo-gradients of a sign (zero almost everywhere as true
derivatives); they are skipped here and checked against their closed forms by the quantizer
tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import Case
from .spec import SPECS, Spec, evaluate

__all__ = ["FDResult", "finite_difference_check", "FD_EPS", "FD_SAMPLES"]

FD_EPS = 1e-6        # central-difference step; float64 truncation error ~ eps^2, roundoff ~ 1e-10
FD_SAMPLES = 24      # elements checked per gradient when it has more


@dataclass
class FDResult:
    """One gradient of one case: the largest |fd - recorded| over the checked elements."""

    case: str
    grad: str
    checked: int              # elements compared (0 for a skipped pseudo-gradient)
    max_abs_error: float
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance

    def __str__(self) -> str:
        status = "OK" if self.ok else "FAILED"
        return (f"{self.case}: grad_{self.grad} {status} ({self.checked} elements, max |fd - "
                f"recorded| {self.max_abs_error:.2e}, tolerance {self.tolerance:.2e}){self.note}")


def _scalar(spec: Spec, inputs: dict, params: dict, upstream: dict, attrs: dict) -> float:
    out = evaluate(spec, inputs, params, {}, attrs)
    return float(sum(np.sum(np.asarray(upstream[o], np.float64) * out[o]) for o in spec.outputs))


def _elements(size: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(size) if size <= samples else np.sort(rng.choice(size, samples, replace=False))


def _check_one(spec: Spec, case: Case, name: str, eps: float, samples: int,
               rng: np.random.Generator) -> FDResult:
    group = case.inputs if name in case.inputs else case.params
    base = np.asarray(group[name], dtype=np.float64)
    recorded = np.asarray(case.expected["grad_" + name], dtype=np.float64)
    attrs = dict(case.attrs)
    if spec.frozen:                        # detached constants keep their unperturbed values
        start = evaluate(spec, case.inputs, case.params, {}, case.attrs)
        attrs.update({k: np.asarray(start[k]).item() if np.ndim(start[k]) == 0 else start[k]
                      for k in spec.frozen})
    errors = []
    for i in _elements(base.size, samples, rng):
        values = []
        for step in (eps, -eps):
            moved = base.copy()
            moved.reshape(-1)[i] += step
            arrays = {**case.inputs, **case.params, name: moved}
            values.append(_scalar(spec, {k: arrays[k] for k in case.inputs},
                                  {k: arrays[k] for k in case.params}, case.upstream, attrs))
        errors.append(abs((values[0] - values[1]) / (2 * eps) - recorded.reshape(-1)[i]))
    scale = max(1.0, float(np.max(np.abs(recorded))) if recorded.size else 0.0)
    return FDResult(case.name, name, len(errors), max(errors, default=0.0), 1e-6 * scale)


def finite_difference_check(case: Case, eps: float = FD_EPS, samples: int = FD_SAMPLES,
                            seed: int = 0) -> list[FDResult]:
    """Check every recorded gradient of `case` (from build_case or load_case) by central
    differences of minibnn's own float64 forward; returns one FDResult per gradient."""
    spec = SPECS.get(case.name)
    if spec is None:
        raise ValueError(f"finite_difference_check: {case.name!r} is not a minibnn case")
    rng = np.random.default_rng(seed)
    results = []
    for name in spec.grads:
        recorded = np.asarray(case.expected["grad_" + name])
        if name in spec.detached:
            bad = float(np.max(np.abs(recorded))) if recorded.size else 0.0
            results.append(FDResult(case.name, name, recorded.size, bad, 0.0, " (detached)"))
        elif name in spec.pseudo:
            note = f" (skipped: {spec.pseudo[name]})"
            results.append(FDResult(case.name, name, 0, 0.0, 0.0, note))
        else:
            results.append(_check_one(spec, case, name, eps, samples, rng))
    return results

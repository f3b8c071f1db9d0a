"""The machinery of the golden cases: the `Spec` of a case, its registry, the seeded input
makers, and the generic runner that turns a Spec into a `Case` (inputs, upstream gradients,
expected tensors, tolerances).

The runner is itself a callable with the `minibnn verify` calling convention,
`reference(name, inputs, params, upstream, attrs)`, so rebuilding a case, checking the committed
files and checking minibnn in float32 are all the same call. Cases are computed in float64 (the
packed-engine cases are integer or float32 by nature) with small, seeded inputs that keep sign
decisions and clip edges away from rounding. The cases themselves are defined in
cases_layers.py, cases_methods.py and cases_engine.py.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..autograd import Tensor
from ..nn import Parameter
from .io import Case, Expected, select_names

__all__ = ["DEFAULT_SEED", "GENERAL_CONVENTIONS", "Spec", "SPECS", "register", "case_names",
           "build_case", "build_cases", "reference", "away", "unit_rows", "SPECIAL", "sign_input",
           "activation", "plain_weight", "standardize", "irnet_weight", "weight_input", "NO_CLIP",
           "ZERO_PAD"]

DEFAULT_SEED = 0
ATOL, RTOL = 1e-5, 1e-4          # default: atol = ATOL * max|want|, rtol = RTOL (float32 ports)

GENERAL_CONVENTIONS = [
    "Arrays are NCHW (N, C, H, W) for images and (N, D) for features; weights (M, C, kh, kw) "
    "or (M, K), as in PyTorch.",
    "Gradients are those of L = sum over the differentiable outputs o of sum(upstream[o] * o); "
    "a scalar output (a loss) has upstream 1.0, so plain loss.backward() gives them.",
    "The gradient of input or parameter X is returned as 'grad_X'. A gradient marked detached "
    "is exactly zero: the method treats X as a constant (torch: X.detach(), or a no_grad "
    "teacher); return zeros for it (a None .grad in torch).",
    "Reference values are computed in float64; the tolerances (|got - want| <= atol + "
    "rtol * |want| element-wise) are chosen for a float32 port. atol = rtol = 0 means exact.",
    "Intermediates (kind 'intermediate') are optional: compared when returned, to localise a "
    "difference, ignored otherwise.",
]

SIGN0 = ("sign(x) = +1 for x >= 0, -1 otherwise: sign(0) = sign(-0.0) = +1. torch.sign gives 0 "
         "there (as the official IR-Net, ReActNet, Bi-Real, LCR-BNN, CMIM and S2-BNN code; "
         "minibnn verify --convention sign0=zero judges those elements by that rule); this "
         "case contains exact zeros so that difference shows.")
NO_CLIP = "No clipping of the pseudo-gradient outside |x| <= 1."
ZERO_PAD = ("Zero padding of the binarized input: a padded position contributes 0, not +-1 "
            "(pad after binarizing, as F.conv2d(sign(x), ...)).")


# ---------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class Spec:
    """One case. `op(inputs, params, attrs)` gets float arrays as Tensors (Parameters when their
    gradient is wanted) and integer arrays as ndarrays, and returns a dict of outputs.

    outputs: the differentiable outputs (they receive an upstream gradient); any other returned
    tensor is a required non-differentiable output unless listed in `intermediates`.
    grads: inputs/params whose gradient is checked; `detached` ones must be exactly 0.
    exact: outputs compared exactly (besides integer ones). tolerance: name -> (atol factor of
    max|want|, rtol) overrides.
    """

    name: str
    reference: str
    description: str
    conventions: tuple
    make: Callable[[np.random.Generator], tuple[dict, dict]]
    op: Callable[[dict, dict, dict], dict]
    attrs: dict = field(default_factory=dict)
    outputs: tuple = ()
    grads: tuple = ()
    detached: tuple = ()
    intermediates: tuple = ()
    exact: tuple = ()
    tolerance: dict = field(default_factory=dict)


SPECS: dict[str, Spec] = {}


def register(**kwargs) -> None:
    spec = Spec(**kwargs)
    if spec.name in SPECS:
        raise ValueError(f"duplicate golden case {spec.name!r}")
    SPECS[spec.name] = spec


# ----------------------------------------------------------------------- input makers
def away(x: np.ndarray, points=(0.0,), margin: float = 0.02) -> np.ndarray:
    """Push values closer than `margin` to any of `points` out to the margin, so a float32 port
    makes the same sign and clip decisions as the float64 reference."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        d = x - p
        close = np.abs(d) < margin
        x[close] = p + np.where(d[close] >= 0, margin, -margin)
    return x


def unit_rows(rng, shape) -> np.ndarray:
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# exact zeros (both signs), the clip edges +-1 and ApproxSign's table (docs/methods.md §1.2)
SPECIAL = np.array([-2.0, -1.5, -1.0, -0.5, -0.25, -0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0])


def sign_input(rng) -> tuple[dict, dict]:
    rand = away(rng.normal(0, 1.2, 18), (0.0, -1.0, 1.0))
    return {"x": np.concatenate([SPECIAL, rand]).reshape(3, 10)}, {}


def activation(rng, shape, zeros: int = 3) -> np.ndarray:
    """Activations away from 0 and +-1, with `zeros` exact zeros (one of them -0.0)."""
    x = away(rng.normal(0, 1.0, shape), (0.0, -1.0, 1.0))
    flat = x.reshape(-1)
    at = rng.choice(flat.size, zeros, replace=False)
    flat[at] = 0.0
    flat[at[0]] = -0.0
    return x


def plain_weight(rng, shape) -> np.ndarray:
    """Latent weights away from 0 and +-1 except one exact 0 and the two clip edges +-1."""
    w = away(rng.normal(0, 0.6, shape), (0.0, -1.0, 1.0))
    flat = w.reshape(-1)
    at = rng.choice(flat.size, 3, replace=False)
    flat[at] = [0.0, 1.0, -1.0]
    return w


def standardize(w: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, w.ndim))
    c = w - w.mean(axis=axes, keepdims=True)
    return c / c.std(axis=axes, ddof=1, keepdims=True)


def irnet_weight(rng, shape) -> np.ndarray:
    """Gaussian filters (scale 1) and, in the last output channel, small values with two
    outliers (mean |W_hat| < 2^-0.5, so the power-of-two scale is 0.5). Redrawn until every
    standardised entry is 0.02 away from 0 and log2(mean |W_hat|) 0.05 away from a rounding
    edge."""
    n = int(np.prod(shape[1:]))
    while True:
        w = rng.normal(0, 0.1, shape)
        small = rng.uniform(0.005, 0.015, n - 2) * rng.choice([-1.0, 1.0], n - 2)
        w[-1] = rng.permutation(np.concatenate([small, [0.3, -0.3]])).reshape(shape[1:])
        w_hat = standardize(w)
        log_scale = np.log2(np.abs(w_hat).mean(axis=tuple(range(1, w.ndim))))
        if (np.abs(w_hat).min() > 0.02
                and np.all(np.abs(log_scale - np.floor(log_scale) - 0.5) > 0.05)):
            return w


def weight_input(make_weight) -> Callable:
    return lambda rng: ({"w": make_weight(rng, (3, 2, 3, 3))}, {})


# ---------------------------------------------------------------------------- runner
def _wrap(name: str, array: np.ndarray, wanted: set) -> Any:
    array = np.array(array, copy=True)
    if array.dtype.kind != "f":
        return array
    return Parameter(array) if name in wanted else Tensor(array)


def _evaluate(spec: Spec, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict:
    wanted = set(spec.grads) - set(spec.detached)
    inp = {k: _wrap(k, v, wanted) for k, v in inputs.items()}
    prm = {k: _wrap(k, v, wanted) for k, v in params.items()}
    out = spec.op(inp, prm, dict(attrs))
    result = {k: np.array(v.data if isinstance(v, Tensor) else v) for k, v in out.items()}
    if upstream:
        total = None
        for name in spec.outputs:
            y = out[name]
            term = (y * Tensor(np.asarray(upstream[name], dtype=y.dtype))).sum()
            total = term if total is None else total + term
        if total is not None and total.requires_grad:
            total.backward()
        for name in spec.grads:
            t = inp.get(name, prm.get(name))
            g = t.grad if isinstance(t, Tensor) and t.grad is not None else None
            result["grad_" + name] = np.zeros(t.shape, t.dtype) if g is None else np.array(g)
    return result


def reference(name: str, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict | None:
    """minibnn's own answer, with the `minibnn verify` calling convention.

    Returns the outputs and the "grad_<name>" gradients of case `name` for the given arrays
    (computed in their dtype: pass float32 arrays to see minibnn in float32), or None for a name
    that is not a minibnn case.
    """
    spec = SPECS.get(name)
    if spec is None:
        return None
    return _evaluate(spec, inputs, params, upstream, attrs)


def case_names() -> list[str]:
    return list(SPECS)


def _tolerance(spec: Spec, name: str, want: np.ndarray) -> tuple[float, float]:
    if want.dtype.kind in "iub" or name in spec.exact:
        return 0.0, 0.0
    atol_factor, rtol = spec.tolerance.get(name, (ATOL, RTOL))
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return float(f"{atol_factor * scale:.2g}"), rtol


def build_case(name: str, seed: int = DEFAULT_SEED) -> Case:
    """Draw the inputs of case `name` from (seed, name), run minibnn in float64, and return the
    Case with its upstream gradients, expected tensors and tolerances."""
    if name not in SPECS:
        raise ValueError(f"unknown golden case {name!r}; available: {', '.join(SPECS)}")
    spec = SPECS[name]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    inputs, params = spec.make(rng)
    forward = _evaluate(spec, inputs, params, {}, spec.attrs)
    upstream = {o: np.array(1.0) if forward[o].ndim == 0 else rng.standard_normal(forward[o].shape)
                for o in spec.outputs}
    expected = _evaluate(spec, inputs, params, upstream, spec.attrs)
    checks = {}
    for key, want in expected.items():
        atol, rtol = _tolerance(spec, key, want)
        if key.startswith("grad_") and key[5:] in spec.grads:
            of = key[5:]
            checks[key] = Expected("grad", atol, rtol, of=of, detached=of in spec.detached)
        elif key in spec.intermediates:
            checks[key] = Expected("intermediate", atol, rtol)
        else:
            checks[key] = Expected("output", atol, rtol, differentiable=key in spec.outputs)
    case = Case(name=name, description=spec.description, reference=spec.reference,
                conventions=list(spec.conventions), attrs=dict(spec.attrs), inputs=inputs,
                params=params, upstream=upstream, expected=expected, checks=checks)
    case.validate()
    return case


def build_cases(only=None, seed: int = DEFAULT_SEED) -> list[Case]:
    """Build every case, or those matching `only` (names or patterns, see select_names)."""
    return [build_case(n, seed) for n in select_names(SPECS, only)]

"""Conventions a port may declare (`minibnn verify --convention NAME`), and the reference values
of a case under each one.

A golden case is computed with minibnn's own conventions (sign(0) = +1, ...). A port that
follows another, documented convention on purpose (a port faithful to code that uses
torch.sign) differs from the reference only on the elements that convention changes. Declaring
it makes `compare` judge exactly those elements against the reference recomputed under the
convention, and report them in a separate row; every other element is still judged strictly.
The affected elements are found by recomputing the case (float64) under the convention and
keeping the elements whose value changes: for sign(0) that is every output or gradient element
that depends on a binarised exact zero, not only the zeros themselves (a conv output whose
window holds a zero, the weight gradient that sums over it).

    sign0=zero   sign(0) = 0 (torch.sign, jnp.sign, tf.sign), for activations and weights.
                 The official IR-Net, ReActNet, Bi-Real Net, LCR-BNN, CMIM and S2-BNN code
                 binarise with torch.sign. The packed-engine cases are unaffected (bits
                 cannot encode 0), so is every case without a sign.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..quantizers import sign_zero
from .io import Case
from .spec import SPECS, reference

__all__ = ["CONVENTIONS", "parse_conventions", "alternative_expected"]

CONVENTIONS = {
    "sign0=zero": "sign(0) = 0 as torch.sign / jnp.sign / tf.sign (the official IR-Net, "
                  "ReActNet, Bi-Real, LCR-BNN, CMIM and S2-BNN code); minibnn uses sign(0) = +1",
}
_CONTEXTS = {"sign0=zero": lambda: sign_zero(0.0)}


def parse_conventions(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate declared conventions ("sign0=zero" or a comma-separated string); a ValueError
    lists the known ones."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = names.split(",")
    out = []
    for name in names:
        name = name.strip().replace(" ", "")
        if not name:
            continue
        if name not in CONVENTIONS:
            known = "; ".join(f"{k}: {v}" for k, v in CONVENTIONS.items())
            raise ValueError(f"unknown convention {name!r}; known conventions: {known}")
        if name not in out:
            out.append(name)
    return tuple(out)


def alternative_expected(case: Case, convention: str) -> dict[str, np.ndarray]:
    """The case's expected tensors recomputed by minibnn under `convention`, for the tensors
    where at least one element changes ({} for a case minibnn does not know)."""
    (convention,) = parse_conventions([convention])
    if case.name not in SPECS:
        return {}
    with _CONTEXTS[convention]():
        alt = reference(case.name, case.inputs, case.params, case.upstream, case.attrs)
    changed = {}
    for name, want in case.expected.items():
        if name not in alt:
            continue
        value = np.asarray(alt[name]).astype(want.dtype, copy=False)
        if value.shape == want.shape and not np.array_equal(value, want, equal_nan=True):
            changed[name] = value
    return changed

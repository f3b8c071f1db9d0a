"""One vocabulary of quantizers for inputs and weights: the base class, the registry, the factory.

A quantizer is a named callable Tensor -> Tensor of the same shape. Every name lives in ONE
namespace, `QUANTIZERS`, whatever it applies to (larq's model: one word per quantizer, usable
wherever it makes sense):

    name       class                 applies to        what it computes
    ste        SteQuantizer          inputs, weights   sign, clipped straight-through gradient
    approx     ApproxSignQuantizer   inputs, weights   sign, Bi-Real's ApproxSign gradient
    ede        EDEQuantizer          inputs, weights   sign, IR-Net's EDE gradient
    identity   IdentityQuantizer     inputs, weights   no quantization
    xnor       XnorWeight            weights           mean|W_o| * sign(W_o) per output channel
    irnet      IRNetWeight           weights           balanced W, power-of-two scale, EDE
    reactnet   ReActNetWeight        weights           detached mean|W_o| * sign, clip backward
    sign       SignWeight            weights           unscaled sign(W) (BNN), STE by default
    none       RealWeight            weights           the real weights (no binarizer)

A quantizer says what it applies to in `roles`: the per-output-channel binarizers need the
filter axis of a weight (M, ...), so they are weights-only; "sign" and "none" are the weight
vocabulary of the BNN and S2-BNN papers (for inputs, "ste" and "identity" say the same). The
factory `make_quantizer(spec, role=...)` checks the name and the role and names the closest
valid name in a one-line error. New quantizers join with `@register_quantizer`.
Reference: the single-vocabulary design follows larq (https://docs.larq.dev, quantizers).
Differences from larq: our names are the papers' short ones, and weights-only binarizers
exist because scaled binarizers need the filter axis (larq keeps scaling in the layer).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from ..autograd import Tensor

__all__ = ["ROLES", "Quantizer", "CallableQuantizer", "QUANTIZERS", "register_quantizer",
           "quantizer_names", "check_quantizer_name", "make_quantizer"]

ROLES = ("input", "weight")


class Quantizer:
    """A named, callable quantizer: Tensor -> Tensor, same shape.

    `name` is its key in QUANTIZERS; `binary` says whether the output is +-1 (times a
    per-output-channel scale for weights), so the packed engine can run it; `roles` says
    whether it applies to layer inputs, weights, or both; a quantizer valid for one role names
    in `counterpart` the quantizer that does its job in the other (what errors suggest).
    """

    name: str = ""
    binary: bool = True
    roles: tuple = ROLES
    counterpart: str = ""       # a one-role quantizer: the name doing its job in the other role

    def __call__(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CallableQuantizer(Quantizer):
    """Any function Tensor -> Tensor used as a quantizer (either role). Assumed to binarize."""

    name = "callable"

    def __init__(self, fn: Callable[[Tensor], Tensor], binary: bool = True):
        self.fn, self.binary = fn, binary

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def __repr__(self) -> str:
        return f"CallableQuantizer({getattr(self.fn, '__name__', repr(self.fn))})"


QUANTIZERS: dict[str, type] = {}


def register_quantizer(cls: type) -> type:
    """Class decorator: add a Quantizer subclass to QUANTIZERS under `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Quantizer)) or not cls.name:
        raise TypeError(f"register_quantizer: expected a Quantizer subclass with a name, "
                        f"got {cls!r}")
    if cls.name in QUANTIZERS and QUANTIZERS[cls.name] is not cls:
        raise ValueError(f"quantizer name {cls.name!r} is already taken by "
                         f"{QUANTIZERS[cls.name].__name__}")
    bad = sorted(set(cls.roles) - set(ROLES))
    if bad:
        raise ValueError(f"{cls.__name__}: roles must be among {ROLES}, got {bad}")
    QUANTIZERS[cls.name] = cls
    return cls


def quantizer_names(role: str | None = None) -> list[str]:
    """The registered names, in registration order; only those valid for `role` if given."""
    return [n for n, c in QUANTIZERS.items() if role is None or role in c.roles]


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"make_quantizer: role must be one of {ROLES}, got {role!r}")


def _closest(name: str, valid: list) -> str:
    """The closest valid name: a known one-role quantizer's counterpart, else by spelling."""
    near = [name] if name in QUANTIZERS else difflib.get_close_matches(name, list(QUANTIZERS),
                                                                        n=1, cutoff=0.6)
    if near and near[0] in valid:
        return near[0]
    if near and QUANTIZERS[near[0]].counterpart in valid:
        return QUANTIZERS[near[0]].counterpart
    return difflib.get_close_matches(name, valid, n=1, cutoff=0.0)[0]


def _unknown_name(name: str, role: str) -> ValueError:
    valid = quantizer_names(role)
    close, known = _closest(name, valid), QUANTIZERS.get(name)
    what = (f"quantizer {name!r} applies to {' and '.join(known.roles)}s only, not to {role}s"
            if known else f"unknown {role} quantizer {name!r}")
    return ValueError(f"{what}; closest valid name: {close!r}; valid names: {', '.join(valid)}")


def check_quantizer_name(name: str, role: str) -> None:
    """Refuse a name that is not a quantizer for `role`, naming the closest valid one."""
    _check_role(role)
    if name not in QUANTIZERS or role not in QUANTIZERS[name].roles:
        raise _unknown_name(name, role)


def make_quantizer(spec: Any, role: str = "input", **options: Any) -> Quantizer:
    """A Quantizer for `role` ("input" or "weight") from `spec`:

    a name in QUANTIZERS (options go to its constructor, e.g. make_quantizer("xnor",
    role="weight", detach_alpha=True)); a Quantizer (returned as is, so several layers can
    share one); or a callable Tensor -> Tensor (wrapped in CallableQuantizer).
    A name or object that does not apply to `role` is refused with the closest valid name.
    """
    _check_role(role)
    if isinstance(spec, Quantizer):
        if options:
            raise ValueError(f"make_quantizer: options {sorted(options)} given with a ready "
                             f"quantizer {spec!r}; set its attributes instead")
        if role not in spec.roles:
            raise ValueError(f"make_quantizer: {spec!r} applies to "
                             f"{' and '.join(spec.roles)}s only, not to {role}s")
        return spec
    if isinstance(spec, str):
        check_quantizer_name(spec, role)
        return QUANTIZERS[spec](**options)
    if callable(spec):
        return CallableQuantizer(spec, **options)
    names = ", ".join(quantizer_names(role))
    raise TypeError(f"make_quantizer: expected a quantizer name ({names}), a Quantizer or a "
                    f"callable, got {type(spec).__name__}")

"""Elementwise quantizers: sign with hand-written pseudo-gradients, and their quantizer objects.

Each sign Function has the same forward, `sign` (sign(0) = +1), and differs only in the
pseudo-gradient its backward returns. The quantizer objects wrap them so a layer, a config
file or a training schedule can name one ("ste", "approx", "ede", "identity"; registered in
the one vocabulary of registry.py) and mutate its hyper-parameters (EDE's t and k change every
epoch). Being elementwise, they apply to inputs and to weights (unscaled sign of W).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from ..autograd import Context, Function, Tensor
from .registry import Quantizer, register_quantizer

__all__ = ["sign", "sign_zero", "SignSTE", "ApproxSign", "EDESign", "ste_sign", "approx_sign",
           "ede_sign", "identity", "SteQuantizer", "ApproxSignQuantizer", "EDEQuantizer",
           "IdentityQuantizer"]


def sign(x: np.ndarray) -> np.ndarray:
    """+1 where x >= 0 else -1:  y = 1 - 2 * bit  with  bit = (x < 0).  ndarray -> ndarray.

    This is the packed engine's rule written out (bit 1 means -1), so training and the engine
    agree on every input: sign(0) = sign(-0.0) = +1 (np.copysign would give -1 for -0.0), and
    NaN, for which `x < 0` is False, also maps to +1. The result has x's dtype (float32 for
    bool and unsigned inputs); why the masked form: docs/quantizers.md, lab notes. For
    Tensors use ste_sign / approx_sign / ede_sign.
    """
    if isinstance(x, Tensor):
        raise TypeError("sign() works on ndarrays; for a Tensor use ste_sign, approx_sign or "
                        "ede_sign (sign forward with a pseudo-gradient), or sign(t.data)")
    x = np.asarray(x)
    y = (x < 0).astype(x.dtype if x.dtype.kind in "fi" else np.float32)
    y *= -2
    y += 1
    if _ZERO_VALUE is not None:
        y[x == 0] = _ZERO_VALUE
    return y


_ZERO_VALUE: float | None = None       # None: the rule above (sign(0) = +1)


@contextlib.contextmanager
def sign_zero(value: float = 0.0) -> Iterator[None]:
    """Inside the block, `sign` (and so every sign Function and weight binarizer forward) maps
    an exact zero (+0.0 and -0.0) to `value` instead of +1; 0.0 reproduces torch.sign.

    Used by the golden cases to compute what a port following torch.sign's convention should
    give (minibnn verify --convention sign0=zero). Not thread-safe: a module-level setting,
    restored on exit. The packed engine is unaffected (its bits cannot encode 0).
    """
    global _ZERO_VALUE
    previous, _ZERO_VALUE = _ZERO_VALUE, float(value)
    try:
        yield
    finally:
        _ZERO_VALUE = previous


class SignSTE(Function):
    """Binarize with the clipped straight-through estimator ("hard tanh" STE).

        forward:   y  = sign(x)                         (sign(0) = +1)
        backward:  dx = dy * 1[|x| <= clip]             (both edges pass: |x| = clip gives dy)

    clip = np.inf gives the plain (unclipped) straight-through estimator dx = dy.
    Reference: Courbariaux, Hubara et al. 2016, "Binarized Neural Networks", arXiv:1602.02830.
    Differences from the paper: none beyond sign(0) = +1 (the paper leaves sign(0) open).
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, clip: float = 1.0) -> np.ndarray:
        ctx.save_for_backward(x)
        ctx.clip = clip
        return sign(x)

    @staticmethod
    def backward(ctx: Context, dy: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return dy * (np.abs(x) <= ctx.clip)


class ApproxSign(Function):
    """Bi-Real Net's ApproxSign: sign forward, derivative of a piecewise quadratic backward.

        forward:   y  = sign(x)
        backward:  dx = dy * (2 + 2x)  for -1 <= x < 0
                        dy * (2 - 2x)  for  0 <= x < 1
                        0              otherwise
                 = dy * max(0, 2 - 2|x|)    (the same numbers, bit for bit: 0 at x = +-1)

    Reference: Liu et al. 2018, "Bi-Real Net", arXiv:1808.00278 (used as ReActNet's and
    S2-BNN's BinaryActivation). Differences from the official code: sign(0) = +1, not 0.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx: Context, dy: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return dy * np.maximum(2 - 2 * np.abs(x), 0)


class EDESign(Function):
    """IR-Net's Error Decay Estimator: sign forward, derivative of k * tanh(t x) backward.

        forward:   y  = sign(x)
        backward:  dx = dy * k * t * (1 - tanh^2(t x))          (no clipping)

    Training moves t from small (k t = 1: gradient ~ identity, like an unclipped STE) to large
    (a sharp bump of height k t around 0, close to sign's true derivative); see docs/methods.md
    section 1.1 for the t/k schedule. Reference: Qin et al. 2020, "Forward and Backward
    Information Retention for Accurate Binary Neural Networks" (IR-Net), arXiv:1909.10788.
    Differences from the official code: sign(0) = +1, not 0.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, t: float = 0.1, k: float = 10.0) -> np.ndarray:
        ctx.save_for_backward(x)
        ctx.t, ctx.k = t, k
        return sign(x)

    @staticmethod
    def backward(ctx: Context, dy: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        th = np.tanh(ctx.t * x)
        return dy * (ctx.k * ctx.t * (1 - th * th))


def ste_sign(x: Tensor, clip: float = 1.0) -> Tensor:
    """sign(x) with pseudo-gradient dy * 1[|x| <= clip] (see SignSTE)."""
    return SignSTE.apply(x, clip=clip)


def approx_sign(x: Tensor) -> Tensor:
    """sign(x) with Bi-Real's pseudo-gradient dy * max(0, 2 - 2|x|) (see ApproxSign)."""
    return ApproxSign.apply(x)


def ede_sign(x: Tensor, t: float = 0.1, k: float = 10.0) -> Tensor:
    """sign(x) with IR-Net's pseudo-gradient dy * k t (1 - tanh^2(t x)) (see EDESign)."""
    return EDESign.apply(x, t=float(t), k=float(k))


def identity(x: Tensor) -> Tensor:
    """No quantization: returns x itself (gradient dy). For real-valued activations."""
    return x


# ----------------------------------------------------------------------- quantizer objects
@register_quantizer
class SteQuantizer(Quantizer):
    """sign with the clipped straight-through pseudo-gradient; `clip` may be changed later."""

    name = "ste"

    def __init__(self, clip: float = 1.0):
        self.clip = float(clip)

    def __call__(self, x: Tensor) -> Tensor:
        return ste_sign(x, self.clip)

    def __repr__(self) -> str:
        return f"SteQuantizer(clip={self.clip:g})"


@register_quantizer
class ApproxSignQuantizer(Quantizer):
    """sign with Bi-Real's ApproxSign pseudo-gradient."""

    name = "approx"

    def __call__(self, x: Tensor) -> Tensor:
        return approx_sign(x)


@register_quantizer
class EDEQuantizer(Quantizer):
    """sign with IR-Net's EDE pseudo-gradient; training sets `.t` and `.k` every epoch.

    Defaults t = 0.1, k = 10 are the official BinarizeConv2d constructor's values.
    """

    name = "ede"

    def __init__(self, t: float = 0.1, k: float = 10.0):
        self.t, self.k = float(t), float(k)

    def __call__(self, x: Tensor) -> Tensor:
        return ede_sign(x, self.t, self.k)

    def __repr__(self) -> str:
        return f"EDEQuantizer(t={self.t:g}, k={self.k:g})"


@register_quantizer
class IdentityQuantizer(Quantizer):
    """No quantization (real-valued activations)."""

    name = "identity"
    binary = False

    def __call__(self, x: Tensor) -> Tensor:
        return identity(x)

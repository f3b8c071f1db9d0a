"""Weight binarizers: latent real weights W -> the (scaled) +-1 weights a binary layer uses.

All work per output channel (axis 0) on conv weights (M, C, kh, kw) and linear weights (M, K);
the scale of output channel o is computed over the n = C*kh*kw (or K) entries of W_o.
Implemented: XNOR-Net (mean |W| scale), IR-Net (balanced weights, power-of-two scale, EDE),
ReActNet (detached scale, straight-through clip), plain sign, and real weights (no binarizer).
They are registered in the one vocabulary of registry.py with roles = ("weight",): the scaled
ones need the filter axis; "sign" and "none" are the papers' names for the unscaled sign and
the real weights (the elementwise "ste" and "identity" compute the same on a weight).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Context, Function, Tensor
from .registry import Quantizer, make_quantizer, register_quantizer
from .sign import sign

__all__ = ["ReActNetWeightSign", "WeightQuantizer", "XnorWeight", "IRNetWeight",
           "ReActNetWeight", "SignWeight", "RealWeight"]


def _channel_axes(w: Any) -> tuple:
    """The axes of one output channel's filter: (1, 2, 3) for conv, (1,) for linear."""
    if w.ndim < 2:
        raise ValueError(f"weight binarizers need a weight (M, ...) with at least 2 dimensions, "
                         f"got shape {w.shape}")
    return tuple(range(1, w.ndim))


class ReActNetWeightSign(Function):
    """ReActNet's HardBinaryConv weight: detached scaled sign, straight-through clip backward.

        forward:   W_b = alpha_o * sign(W_o),  alpha_o = mean |W_o|       (alpha a constant)
        backward:  dW  = dW_b * 1[|W| <= clip]                            (edges pass)

    The backward is the derivative of clip(W, -1, 1): alpha does not appear in it.
    """

    @staticmethod
    def forward(ctx: Context, w: np.ndarray, clip: float = 1.0) -> np.ndarray:
        ctx.save_for_backward(w)
        ctx.clip = clip
        alpha = np.mean(np.abs(w), axis=_channel_axes(w), keepdims=True)   # (M, 1, ...)
        return alpha * sign(w)

    @staticmethod
    def backward(ctx: Context, dy: np.ndarray) -> np.ndarray:
        (w,) = ctx.saved_tensors
        return dy * (np.abs(w) <= ctx.clip)


class WeightQuantizer(Quantizer):
    """A weights-only quantizer: latent W (Tensor) -> binary W_b (Tensor), same shape.

    `binary` is False only for RealWeight ("none"), whose output is the real W itself. The
    inner elementwise quantizer Q of the binarizers below is any name valid for inputs.
    """

    roles = ("weight",)


@register_quantizer
class XnorWeight(WeightQuantizer):
    """XNOR-Net weights: W_b = alpha_o * Q(W_o), alpha_o = mean |W_o| (the L1-optimal scale).

        forward:   W_b = alpha * sign(W)                                  (M, C, kh, kw)
        backward (detach_alpha=False, the default: exact chain rule of the composition):
                   dW = alpha * dQ(dW_b) + sign(W) * sum_o(dW_b * sign(W)) / n
        backward (detach_alpha=True):  dW = alpha * dQ(dW_b)
    where dQ is the pseudo-gradient of the sign quantizer Q (default STE, clip 1).
    Reference: Rastegari et al. 2016, "XNOR-Net", arXiv:1603.05279.
    Differences from the paper: the gradient through alpha is the exact derivative of
    alpha * Q(W) (what autograd of the same expression gives), not the paper's simplified
    per-element form 1/n + alpha * dQ; sign(0) = +1.
    """

    name = "xnor"
    counterpart = "ste"

    def __init__(self, quantizer: Any = "ste", detach_alpha: bool = False):
        self.quantizer = make_quantizer(quantizer, "input")
        self.detach_alpha = bool(detach_alpha)

    def __call__(self, w: Tensor) -> Tensor:
        axes = _channel_axes(w)
        if self.detach_alpha:
            alpha = Tensor(np.mean(np.abs(w.data), axis=axes, keepdims=True))  # (M, 1, ...)
        else:
            alpha = w.abs().mean(axis=axes, keepdims=True)                      # (M, 1, ...)
        return alpha * self.quantizer(w)                                       # W's shape

    def __repr__(self) -> str:
        return f"XnorWeight(quantizer={self.quantizer!r}, detach_alpha={self.detach_alpha})"


@register_quantizer
class IRNetWeight(WeightQuantizer):
    """IR-Net weights: balanced (standardised) filters, a power-of-two scale, EDE sign.

        W_hat_o = (W_o - mean(W_o)) / std(W_o)        unbiased std (n - 1); autograd through both
        s_o     = 2^round(log2(mean |W_hat_o|))       detached (a constant)
        W_b     = s_o * Q(W_hat_o)                     Q = EDE with the layer's (t, k)
        backward: dW = d(W_hat)/dW^T [ s * dQ(dW_b) ]  (exact through mean and std)

    For Gaussian-like weights mean |W_hat| ~ 0.8, so s = 1 almost always. A filter needs
    n >= 2 entries (the unbiased std of one value is undefined); a constant filter has std 0
    and gives NaN, as in the official code.
    Reference: Qin et al. 2020, "Forward and Backward Information Retention for Accurate
    Binary Neural Networks" (IR-Net), arXiv:1909.10788; docs/methods.md section 1.1.
    Differences from the official code: sign(0) = +1 (torch.sign(0) = 0); log2 instead of
    log(x)/log(2) for the scale's exponent (identical away from exact half-integers).
    """

    name = "irnet"
    counterpart = "ede"

    def __init__(self, quantizer: Any = "ede"):
        self.quantizer = make_quantizer(quantizer, "input")

    def standardize(self, w: Tensor) -> Tensor:
        """W_hat = (W - mean) / std per output channel, differentiable."""
        axes = _channel_axes(w)
        centred = w - w.mean(axis=axes, keepdims=True)                  # W's shape
        return centred / centred.std(axis=axes, unbiased=True, keepdims=True)

    @staticmethod
    def scale(w_hat: np.ndarray) -> np.ndarray:
        """s_o = 2^round(log2(mean |W_hat_o|)), shape (M, 1, ...), in W_hat's dtype."""
        mean_abs = np.mean(np.abs(w_hat), axis=_channel_axes(w_hat), keepdims=True)
        return (2.0 ** np.round(np.log2(mean_abs))).astype(w_hat.dtype)

    def __call__(self, w: Tensor) -> Tensor:
        w_hat = self.standardize(w)
        return Tensor(self.scale(w_hat.data)) * self.quantizer(w_hat)

    def __repr__(self) -> str:
        return f"IRNetWeight(quantizer={self.quantizer!r})"


@register_quantizer
class ReActNetWeight(WeightQuantizer):
    """ReActNet weights: W_b = alpha_o * sign(W_o) with alpha_o = mean |W_o| detached,
    dW = dW_b * 1[|W| <= clip] (see ReActNetWeightSign).

    Reference: Liu et al. 2020, "ReActNet", arXiv:2003.03488 (HardBinaryConv, as in S2-BNN).
    Differences from the official code: the forward is alpha * sign(W) exactly (the official
    detach trick computes (b - c) + c, which can differ from b in the last bit); sign(0) = +1.
    """

    name = "reactnet"
    counterpart = "approx"

    def __init__(self, clip: float = 1.0):
        self.clip = float(clip)

    def __call__(self, w: Tensor) -> Tensor:
        return ReActNetWeightSign.apply(w, clip=self.clip)

    def __repr__(self) -> str:
        return f"ReActNetWeight(clip={self.clip:g})"


@register_quantizer
class SignWeight(WeightQuantizer):
    """Unscaled binary weights W_b = Q(W) (BNN, arXiv:1602.02830), Q default STE with clip 1."""

    name = "sign"
    counterpart = "ste"

    def __init__(self, quantizer: Any = "ste"):
        self.quantizer = make_quantizer(quantizer, "input")

    def __call__(self, w: Tensor) -> Tensor:
        return self.quantizer(w)

    def __repr__(self) -> str:
        return f"SignWeight(quantizer={self.quantizer!r})"


@register_quantizer
class RealWeight(WeightQuantizer):
    """No binarizer: the layer uses its real weights (S2-BNN step 1: binary activations only)."""

    name = "none"
    counterpart = "identity"
    binary = False

    def __call__(self, w: Tensor) -> Tensor:
        return w

"""Binary layers and the model-level helpers that training, summary and export use.

BinaryConv2d / BinaryLinear keep real-valued latent weights and binarize weights and inputs in
every forward; LearnableBias, RSign and RPReLU are ReActNet's (arXiv:2003.03488) building
blocks. Grouped or dilated binary convolutions are left out.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..quantizers import EDEQuantizer, Quantizer, make_quantizer
from . import init
from .layers import PReLU, as_generator
from .module import Module, Parameter

__all__ = ["BinaryConv2d", "BinaryLinear", "LearnableBias", "RSign", "RPReLU", "binary_layers",
           "set_ede", "clip_latent_weights", "FlipRatio"]


def _check_input(layer: Module, x: Tensor, ndim: int, channels: int, expected: str) -> None:
    if x.ndim != ndim or x.shape[1] != channels:
        raise ValueError(f"{type(layer).__name__}: expected input {expected}, got shape {x.shape}")


class _BinaryLayer(Module):
    """What BinaryConv2d and BinaryLinear share: quantizer setup, binary_weight(), set_ede()."""

    def _init_weights(self, shape: tuple, bias: bool, rng: Any,
                      weight_init: Callable | None) -> None:
        rng = as_generator(rng)
        w, b = init.torch_default(shape, rng, bias)            # as nn.Conv2d / nn.Linear
        if weight_init is not None:
            w = np.asarray(weight_init(shape, rng), dtype=np.float32)
        self.weight = Parameter(w)                              # latent real weights
        self.bias = Parameter(b) if bias else None

    def _init_quantizers(self, input_quantizer: Any, weight_quantizer: Any) -> None:
        self.input_quantizer: Quantizer = make_quantizer(input_quantizer, "input")
        self.weight_quantizer: Quantizer = make_quantizer(weight_quantizer, "weight")
        shared = getattr(self.weight_quantizer, "quantizer", None)
        if (isinstance(weight_quantizer, str) and isinstance(self.input_quantizer, EDEQuantizer)
                and isinstance(shared, EDEQuantizer)):
            # One (t, k) for weights and activations, as IR-Net's BinarizeConv2d.
            self.weight_quantizer.quantizer = self.input_quantizer

    def binary_weight(self) -> np.ndarray:
        """A copy of exactly the weight the forward uses: scale * (+-1), or W for "none"."""
        with no_grad():
            return np.array(self.weight_quantizer(self.weight).data, copy=True)

    def set_ede(self, t: float, k: float) -> int:
        """Set (t, k) on this layer's EDE quantizers; returns how many were set."""
        return set_ede(self, t, k)

    def _quantizer_repr(self) -> str:
        return (f"input_quantizer={self.input_quantizer!r}, "
                f"weight_quantizer={self.weight_quantizer!r}")


class BinaryConv2d(_BinaryLayer):
    """y = conv2d(q_in(x), q_w(W)) (+ b).  x (N, C, H, W) -> y (N, M, OH, OW).

    The optimizer updates the latent real W (M, C, k, k), initialised like nn.Conv2d (PyTorch's
    default) or by `weight_init(shape, rng)`; the forward only sees q_w(W) = scale * (+-1).
    Quantizers are names in QUANTIZERS (valid for the role), callables or quantizer objects.
    Padding is ZERO padding of the binarized input: padded positions contribute 0, not +-1, so
    outputs near the border sum fewer terms; the packed engine (which cannot store 0 in a bit)
    corrects for exactly this. With weight_quantizer="irnet" and input_quantizer="ede" the two
    share one EDEQuantizer, so set_ede(t, k) moves both, as in IR-Net.
    Reference: BNN arXiv:1602.02830, XNOR-Net 1603.05279, IR-Net 1909.10788, ReActNet 2003.03488.
    Differences from the official code: sign(0) = +1 (see minibnn.quantizers); groups = 1 only.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False, input_quantizer: Any = "ste",
                 weight_quantizer: Any = "xnor", rng: Any = None,
                 weight_init: Callable | None = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self._init_weights((out_channels, in_channels, kernel_size, kernel_size), bias, rng,
                           weight_init)
        self._init_quantizers(input_quantizer, weight_quantizer)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x, 4, self.in_channels, f"(N, {self.in_channels}, H, W)")
        xb = self.input_quantizer(x)                    # (N, C, H, W) in {-1, +1}
        wb = self.weight_quantizer(self.weight)         # (M, C, k, k) = scale_m * {-1, +1}
        return F.conv2d(xb, wb, self.bias, self.stride, self.padding)  # (N, M, OH, OW); pad 0

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
                + self._quantizer_repr())


class BinaryLinear(_BinaryLayer):
    """y = q_in(x) @ q_w(W)^T (+ b).  x (N, K) -> y (N, M); latent W (M, K) as nn.Linear's.

    Everything else as BinaryConv2d (quantizer specs, binary_weight, set_ede).
    Reference: BNN arXiv:1602.02830, XNOR-Net 1603.05279.
    Differences from the papers: sign(0) = +1 (see minibnn.quantizers).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 input_quantizer: Any = "ste", weight_quantizer: Any = "xnor", rng: Any = None,
                 weight_init: Callable | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_weights((out_features, in_features), bias, rng, weight_init)
        self._init_quantizers(input_quantizer, weight_quantizer)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x, 2, self.in_features, f"(N, {self.in_features})")
        xb = self.input_quantizer(x)                    # (N, K) in {-1, +1}
        wb = self.weight_quantizer(self.weight)         # (M, K) = scale_m * {-1, +1}
        return F.linear(xb, wb, self.bias)              # (N, M); integers times scale (+ b)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                + self._quantizer_repr())


# ---------------------------------------------------------------------- ReActNet blocks
class LearnableBias(Module):
    """y = x + b_c: a learnable per-channel shift, b (C,) broadcast as (1, C, 1, 1) or (1, C).

    Init 0. Reference: ReActNet, arXiv:2003.03488 (the "move" layers of RSign and RPReLU).
    Differences from the official code: b is stored with shape (C,), not (1, C, 1, 1), so one
    module serves (N, C) and (N, C, H, W) inputs.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.bias = Parameter(init.zeros((channels,)))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"LearnableBias: expected input (N, {self.channels}) or "
                             f"(N, {self.channels}, H, W), got shape {x.shape}")
        return x + self.bias.reshape((1, -1) + (1,) * (x.ndim - 2))   # x's shape

    def extra_repr(self) -> str:
        return f"{self.channels}"


class RSign(Module):
    """ReActNet's RSign: y = q(x + b_c), q = sign with ApproxSign's pseudo-gradient by default.

    Reference: Liu et al. 2020, "ReActNet", arXiv:2003.03488. Differences: sign(0) = +1.
    """

    def __init__(self, channels: int, quantizer: Any = "approx"):
        super().__init__()
        self.shift = LearnableBias(channels)
        self.quantizer = make_quantizer(quantizer, "input")

    def forward(self, x: Tensor) -> Tensor:
        return self.quantizer(self.shift(x))            # x's shape, in {-1, +1}

    def extra_repr(self) -> str:
        return f"quantizer={self.quantizer!r}"


class RPReLU(Module):
    """ReActNet's RPReLU: y = PReLU_c(x + b_c) + d_c, slopes init 0.25 (PyTorch's), b = d = 0.

    Reference: Liu et al. 2020, "ReActNet", arXiv:2003.03488.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in = LearnableBias(channels)
        self.prelu = PReLU(channels, init_value=0.25)
        self.shift_out = LearnableBias(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.shift_out(self.prelu(self.shift_in(x)))   # x's shape


# ------------------------------------------------------------------------ model helpers
def binary_layers(model: Module) -> Iterator[tuple[str, _BinaryLayer]]:
    """(dotted name, layer) for every BinaryConv2d / BinaryLinear in `model`, in module order
    (including layers with weight_quantizer="none", whose activations are still binary)."""
    for name, module in model.named_modules():
        if isinstance(module, _BinaryLayer):
            yield name, module


def _ede_quantizers(model: Module) -> list[EDEQuantizer]:
    found: dict[int, EDEQuantizer] = {}
    for module in model.modules():
        for value in vars(module).values():
            for q in (value, getattr(value, "quantizer", None)):
                if isinstance(q, EDEQuantizer):
                    found[id(q)] = q
    return list(found.values())


def set_ede(model: Module, t: float, k: float) -> int:
    """Set (t, k) on every EDE quantizer in `model` (activations and IR-Net weights).

    Found as module attributes (input_quantizer, RSign.quantizer, ...) or one level down as a
    weight quantizer's `.quantizer`; a quantizer shared by several layers is counted once.

    Returns how many distinct quantizers were set (0 means the model uses no EDE). Training
    calls it at the start of every epoch with the schedule of docs/methods.md section 1.1.
    """
    quantizers = _ede_quantizers(model)
    for q in quantizers:
        q.t, q.k = float(t), float(k)
    return len(quantizers)


def _latent_layers(model: Module) -> Iterator[tuple[str, _BinaryLayer]]:
    """Binary layers whose weights are actually binarized (skips weight_quantizer="none")."""
    return ((n, m) for n, m in binary_layers(model) if m.weight_quantizer.binary)


def clip_latent_weights(model: Module, bound: float = 1.0) -> int:
    """Clip the latent weights of binarized layers to [-bound, bound] in place (BNN,
    arXiv:1602.02830). Returns how many entries were outside and got clipped. Real weights
    (weight_quantizer="none") and full-precision layers are left alone."""
    clipped = 0
    for _, layer in _latent_layers(model):
        w = layer.weight.data
        clipped += int(np.count_nonzero(np.abs(w) > bound))
        np.clip(w, -bound, bound, out=w)
    return clipped


class FlipRatio:
    """Fraction of binary weights whose sign flipped between consecutive `update()` calls.

    Counted over all binarized layers of `model` on the weights the forward uses
    (binary_weight(), so IR-Net's flips are those of the standardised weights). The first call
    records the signs and returns 0.0.
    """

    def __init__(self, model: Module):
        self.model = model
        self._previous: dict[str, np.ndarray] | None = None

    def _negative(self) -> dict[str, np.ndarray]:
        return {name: layer.binary_weight() < 0 for name, layer in _latent_layers(self.model)}

    def update(self) -> float:
        current = self._negative()
        previous, self._previous = self._previous, current
        total = sum(bits.size for bits in current.values())
        if previous is None or total == 0:
            return 0.0
        flipped = sum(int(np.count_nonzero(bits != previous[name]))
                      for name, bits in current.items()
                      if name in previous and previous[name].shape == bits.shape)
        return flipped / total

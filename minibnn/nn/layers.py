"""Real-valued layers: thin Modules around minibnn.functional, named and shaped as in torch.nn.

Layers that draw random initial weights take `rng`: a np.random.Generator, an int seed, or None
for fresh OS entropy. Models pass one generator down, so the same seed gives the same network.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Identity", "Flatten", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU",
           "LeakyReLU", "PReLU", "Hardtanh", "Tanh", "Sigmoid", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Dropout", "as_generator"]


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_ndim(name: str, x: Tensor, allowed: tuple, what: str) -> None:
    if x.ndim not in allowed:
        raise ValueError(f"{name}: expected {what}, got shape {x.shape}")


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def __init__(self, start_axis: int = 1):
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_axis)


class Linear(Module):
    """y = x @ W^T + b.  x (N, K) -> y (N, M); W (M, K) and b (M,) start U(+-1/sqrt(K))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        w, b = init.torch_default((out_features, in_features), as_generator(rng), bias)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(w)
        self.bias = Parameter(b) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution.  x (N, C, H, W) -> y (N, M, OH, OW); W (M, C, k, k) starts U(+-1/sqrt(C k k))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, rng=None):
        super().__init__()
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        w, b = init.torch_default(shape, as_generator(rng), bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = Parameter(w)
        self.bias = Parameter(b) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class _BatchNorm(Module):
    """Shared body of BatchNorm1d/2d: gamma = 1, beta = 0, running mean 0 and variance 1."""

    allowed_ndim: tuple = ()
    expected: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(init.ones((num_features,))) if affine else None
        self.bias = Parameter(init.zeros((num_features,))) if affine else None
        self.register_buffer("running_mean", init.zeros((num_features,)))
        self.register_buffer("running_var", init.ones((num_features,)))

    def forward(self, x: Tensor) -> Tensor:
        _check_ndim(type(self).__name__, x, self.allowed_ndim, self.expected)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels "
                             f"(axis 1), got input of shape {x.shape}")
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    allowed_ndim, expected = (2, 3), "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    allowed_ndim, expected = (4,), "(N, C, H, W)"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)


class PReLU(Module):
    """x if x > 0 else a_c x, one learnable slope per channel (num_parameters = C) or shared (1)."""

    def __init__(self, num_parameters: int = 1, init_value: float = 0.25):
        super().__init__()
        self.weight = Parameter(np.full((num_parameters,), init_value, dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.weight.size}"


class Hardtanh(Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x: Tensor) -> Tensor:
        return F.hardtanh(x, self.min_val, self.max_val)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class MaxPool2d(Module):
    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Dropout(Module):
    """Zero activations with probability p in training mode, using the module's own generator."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p, self.rng = p, as_generator(rng)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"

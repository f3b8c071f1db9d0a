"""Weight initialisers. Each returns a new float32 array and takes an explicit Generator.

    fan_in = C_in * kh * kw (or K for a linear layer), fan_out = C_out * kh * kw.
    kaiming: std = gain / sqrt(fan), gain = sqrt(2 / (1 + a^2)) (He et al. 2015, arXiv:1502.01852)
    xavier:  std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010)

Linear and Conv2d default to PyTorch's initialisation, kaiming_uniform with a = sqrt(5), which
works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fan_in_and_out", "kaiming_normal", "kaiming_uniform", "xavier_normal",
           "xavier_uniform", "uniform", "normal", "zeros", "ones", "torch_default"]


def fan_in_and_out(shape: tuple) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: tuple, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in_and_out(shape)[0 if mode == "fan_in" else 1]


def kaiming_normal(shape: tuple, rng: np.random.Generator, a: float = 0.0,
                   mode: str = "fan_in") -> np.ndarray:
    std = math.sqrt(2.0 / (1 + a * a)) / math.sqrt(_fan(shape, mode))
    return normal(shape, rng, 0.0, std)


def kaiming_uniform(shape: tuple, rng: np.random.Generator, a: float = 0.0,
                    mode: str = "fan_in") -> np.ndarray:
    bound = math.sqrt(3.0) * math.sqrt(2.0 / (1 + a * a)) / math.sqrt(_fan(shape, mode))
    return uniform(shape, rng, -bound, bound)


def xavier_normal(shape: tuple, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    fi, fo = fan_in_and_out(shape)
    return normal(shape, rng, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def xavier_uniform(shape: tuple, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    fi, fo = fan_in_and_out(shape)
    bound = gain * math.sqrt(6.0 / (fi + fo))
    return uniform(shape, rng, -bound, bound)


def uniform(shape: tuple, rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return rng.uniform(low, high, size=shape).astype(np.float32)


def normal(shape: tuple, rng: np.random.Generator, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    return rng.normal(mean, std, size=shape).astype(np.float32)


def zeros(shape: tuple) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def ones(shape: tuple) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


def torch_default(weight_shape: tuple, rng: np.random.Generator,
                  bias: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(weight, bias) as torch.nn.Linear / Conv2d initialise them: U(+-1/sqrt(fan_in)) both."""
    weight = kaiming_uniform(weight_shape, rng, a=math.sqrt(5.0))
    bound = 1.0 / math.sqrt(fan_in_and_out(weight_shape)[0])
    return weight, (uniform((weight_shape[0],), rng, -bound, bound) if bias else None)

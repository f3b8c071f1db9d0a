"""Float64 central-difference gradient check, used by the tests and the tutorials."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .tensor import Tensor

__all__ = ["numerical_grad", "gradcheck"]


def numerical_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences, perturbing `x` in place one element at a time."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def gradcheck(fn: Callable[..., Tensor], *inputs: Tensor, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-5, seed: int = 0) -> bool:
    """Check the analytic gradient of `fn(*inputs)` against central differences, in float64.

    The output is contracted with a fixed random upstream gradient g, so every output element
    is checked: the scalar checked is sum(fn(*inputs) * g). Raises AssertionError naming the
    input and the worst element when they disagree; returns True otherwise.
    """
    tensors: Sequence[Tensor] = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    for t in tensors:
        if t.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs, got {t.dtype}")
        t.grad = None
    out = fn(*inputs)
    g = np.random.default_rng(seed).normal(size=out.shape)
    out.backward(g)
    for k, t in enumerate(tensors):
        analytic = t.grad if t.grad is not None else np.zeros_like(t.data)
        numeric = numerical_grad(lambda: float(np.sum(fn(*inputs).data * g)), t.data, eps)
        if not np.allclose(analytic, numeric, atol=atol, rtol=rtol):
            worst = np.unravel_index(np.argmax(np.abs(analytic - numeric)), t.shape)
            raise AssertionError(
                f"gradcheck failed for input {k} of shape {t.shape}: at index {worst} analytic "
                f"{analytic[worst]:.8g} vs numeric {numeric[worst]:.8g} "
                f"(max abs diff {np.max(np.abs(analytic - numeric)):.3g})")
    return True

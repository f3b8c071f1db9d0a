"""The graph node: `Function` (forward/backward on plain ndarrays), its `Context`, and `no_grad`.

A Function subclass writes `forward(ctx, *arrays, **options)` and `backward(ctx, dy)` with NumPy
only. `Function.apply` is the one place that knows about Tensors: it unwraps the inputs, runs the
forward, and, when gradients are wanted, records the node on the output. This module imports
tensor.py, never the other way round: a Tensor reaches its Function only through the recorded
Context (`ctx.function`) during backward. Gradients that a
backward returns in broadcast shape are summed back to each input's shape here, once, so no op
has to do it itself.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from . import anomaly
from .tensor import Tensor

__all__ = ["Context", "Function", "no_grad", "enable_grad", "is_grad_enabled", "unbroadcast"]

_GRAD_ENABLED = True


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


class _GradMode(contextlib.ContextDecorator):
    """Context manager and decorator that sets whether new operations are recorded."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._previous: list[bool] = []   # a stack, so one object may be entered re-entrantly

    def _recreate_cm(self):               # a fresh manager per call of a decorated function
        return _GradMode(self.enabled)

    def __enter__(self):
        global _GRAD_ENABLED
        self._previous.append(_GRAD_ENABLED)
        _GRAD_ENABLED = self.enabled
        return self

    def __exit__(self, *exc):
        global _GRAD_ENABLED
        _GRAD_ENABLED = self._previous.pop()
        return False


def no_grad() -> _GradMode:
    """`with no_grad():` (or `@no_grad()`) runs operations without recording the graph."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    return _GradMode(True)


class Context:
    """What forward leaves for backward: saved arrays and any plain attributes it sets."""

    saved_tensors: tuple = ()
    needs_input_grad: tuple = ()  # one bool per positional input, set before forward runs

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved_tensors = arrays


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` over the axes along which an input of `shape` was broadcast."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"gradient of shape {grad.shape} cannot belong to an input of shape {shape}")
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True) if axes else grad
    return grad.reshape(shape)


class Function:
    """Base class of every differentiable operation.

    Subclasses define two static methods on raw ndarrays:

        forward(ctx, *inputs, **options) -> ndarray
        backward(ctx, dy) -> one gradient per positional input (None where there is none)

    and are called through `apply`, which accepts Tensors, arrays and Python scalars.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, dy: np.ndarray) -> Any:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any):
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        ctx = Context()
        ctx.needs_input_grad = tuple(
            _GRAD_ENABLED and isinstance(a, Tensor) and a.requires_grad for a in args)
        out = cls.forward(ctx, *raw, **kwargs)
        needs_grad = any(ctx.needs_input_grad)
        if anomaly.is_anomaly_enabled():
            anomaly.check_forward_finite(cls.__name__, raw, out)
            if needs_grad:
                ctx._anomaly = anomaly.fingerprint(ctx)
        result = Tensor(out, requires_grad=needs_grad)
        if needs_grad:
            ctx.function = cls
            ctx.inputs = args
            result._ctx = ctx
        return result

    @classmethod
    def _input_grads(cls, ctx: Context, dy: np.ndarray) -> list:
        """Run backward and return a gradient (or None) per positional input, input-shaped."""
        if hasattr(ctx, "_anomaly"):
            anomaly.check_unchanged(ctx, cls.__name__)
        grads = cls.backward(ctx, dy)
        if hasattr(ctx, "_anomaly"):
            anomaly.check_backward_finite(cls.__name__, dy, grads)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if len(grads) != len(ctx.inputs):
            raise RuntimeError(
                f"{cls.__name__}.backward returned {len(grads)} gradients for {len(ctx.inputs)} inputs"
            )
        result = []
        for inp, g in zip(ctx.inputs, grads):
            if g is None or not (isinstance(inp, Tensor) and inp.requires_grad):
                result.append(None)
                continue
            g = unbroadcast(np.asarray(g), inp.data.shape)
            result.append(g.astype(inp.data.dtype, copy=False))
        return result


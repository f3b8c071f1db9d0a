"""The one place where the primitives become Tensor operators and methods.

tensor.py defines the data, the gradient slot and backward, and imports no op; the primitives
(elementwise.py, reductions.py, shape.py) import Tensor. Attaching the operators here, once,
when `minibnn.autograd` is imported, keeps the imports one-way (tensor <- function <- ops <-
this module) without a lazy import inside every method.

    x + y, x - y, x * y, x / y, x ** y, x @ y   elementwise.add/sub/mul/div/pow, reductions.matmul
    -x, x[index], x.T                           elementwise.neg, shape.getitem, shape.transpose
    x.sum/mean/max/var/std(axis, ...)           reductions
    x.reshape/flatten/transpose/permute(...)    shape
    x.exp/log/abs/sqrt/clip(...), x.astype(dt)  elementwise (astype is cast)

Each attribute is the op itself (a plain function whose first argument is the tensor), so a
method call costs no more than calling the op; the reflected operators (`2 - x`, `a @ x`) swap
their arguments first. Comparisons (`<`, `>=`, ...) do not record a graph and stay in tensor.py.
"""

from __future__ import annotations

from .elementwise import abs, add, cast, clip, div, exp, log, mul, neg, pow, sqrt, sub
from .reductions import matmul, max, mean, std, sum, var
from .shape import flatten, getitem, reshape, transpose
from .tensor import Tensor

__all__ = ["attach"]


def _reflected(op):
    """`other <op> tensor` for Python's reflected operators: op(other, tensor)."""
    def method(self, other):
        return op(other, self)

    method.__name__ = f"r{op.__name__}"
    return method


METHODS = {
    "__add__": add, "__radd__": _reflected(add),
    "__sub__": sub, "__rsub__": _reflected(sub),
    "__mul__": mul, "__rmul__": _reflected(mul),
    "__truediv__": div, "__rtruediv__": _reflected(div),
    "__pow__": pow, "__rpow__": _reflected(pow),
    "__matmul__": matmul, "__rmatmul__": _reflected(matmul),
    "__neg__": neg, "__getitem__": getitem,
    "T": property(transpose),
    "sum": sum, "mean": mean, "max": max, "var": var, "std": std,
    "reshape": reshape, "flatten": flatten, "transpose": transpose, "permute": transpose,
    "exp": exp, "log": log, "abs": abs, "sqrt": sqrt, "clip": clip, "astype": cast,
}


def attach(cls: type = Tensor) -> None:
    """Set every entry of METHODS on `cls` (idempotent)."""
    for name, value in METHODS.items():
        setattr(cls, name, value)


attach()

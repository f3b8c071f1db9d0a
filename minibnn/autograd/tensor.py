"""`Tensor`: an ndarray with a gradient slot and a link to the Function that made it.

Only leaf tensors (made by the user, not by an op) keep `.grad` after `backward()`, as in
PyTorch; call `retain_grad()` on an intermediate to keep its gradient too. Gradients accumulate
until they are reset. The backward pass walks the graph in reverse topological order with an
explicit stack, so graphs thousands of nodes deep do not hit Python's recursion limit.

This module sits below everything else in the engine and imports none of it: the node that
made a tensor (`_ctx`, a `function.Context`) is only called, never imported, and the
operators and array methods (`+`, `@`, `x[i]`, `sum`, `reshape`, `astype`, ...) are attached to
the class once, by tensor_methods.py, when `minibnn.autograd` is imported.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

__all__ = ["Tensor", "DEFAULT_DTYPE"]

DEFAULT_DTYPE = np.float32


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """ndarrays and NumPy scalars keep their dtype; Python numbers and lists become float32
    (floats) or int64 (ints), as torch.tensor does."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64:
            arr = arr.astype(DEFAULT_DTYPE)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Tensor data must be boolean, integer or floating-point numbers, got "
                        f"dtype {arr.dtype} ({type(data).__name__})")
    return arr


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    Tensor(data, requires_grad=False, dtype=None). `.data` is the ndarray, `.grad` the
    accumulated gradient (an ndarray of the same shape, or None).
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retain", "__weakref__")
    __array_priority__ = 100  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        self.data = _as_array(data, dtype)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got {self.data.dtype}")
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None       # the function.Context of the op that made it; None for a leaf
        self._retain = False

    # ----------------------------------------------------------------- array-like attributes
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, precision=4, threshold=20, prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{flag})"

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (shares memory, like torch.Tensor.detach)."""
        return Tensor(self.data)

    def retain_grad(self) -> "Tensor":
        self._retain = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # ---------------------------------------------------------------------------- backward
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf that requires a gradient.

        `grad` is the upstream gradient, of this tensor's shape; it may be left out only for a
        tensor with a single element (a loss), where it defaults to 1.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: none of its "
                               "inputs had requires_grad=True, or it was computed under no_grad()")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() on a tensor of shape {self.shape} needs an upstream "
                                   "gradient of that shape: backward(grad=...); only a single-element "
                                   "tensor (a loss) defaults to 1")
            grad = np.ones_like(self.data)
        else:
            grad = _as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"upstream gradient has shape {grad.shape}, expected {self.shape}")
        pending = {id(self): grad}
        for node in _reverse_topological_order(self):
            g = pending.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None or node._retain:
                node.grad = np.array(g) if node.grad is None else node.grad + g
            if node._ctx is None:
                continue
            ctx = node._ctx
            for inp, g_in in zip(ctx.inputs, ctx.function._input_grads(ctx, g)):
                if g_in is not None:
                    key = id(inp)
                    pending[key] = g_in if key not in pending else pending[key] + g_in

    # ------------------------------------------------------------------------- comparisons
    # Comparisons give boolean tensors without gradient. `==` keeps Python identity semantics
    # so tensors can live in sets and dicts; compare `.data` for elementwise equality.
    def __lt__(self, other): return Tensor(self.data < _raw(other))
    def __le__(self, other): return Tensor(self.data <= _raw(other))
    def __gt__(self, other): return Tensor(self.data > _raw(other))
    def __ge__(self, other): return Tensor(self.data >= _raw(other))
    __hash__ = object.__hash__


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _reverse_topological_order(root: Tensor) -> Iterable[Tensor]:
    """Every tensor that `root` depends on (and that requires grad), consumers before producers.

    Iterative post-order depth-first search: a node is emitted after everything it depends on,
    and the reversed list starts at the root.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for inp in node._ctx.inputs:
                if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return reversed(order)

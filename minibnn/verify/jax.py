"""The JAX adapter: pure JAX functions become the callable `minibnn verify` calls.

    port = JaxPort()                                     # float32 (bfloat16 / float16 too)
    port.function("s2bnn.distribution_loss",
                  lambda i, p, a: my_loss(i["student"], i["teacher"], a["tau"]))
    port.function("s2bnn.moco_infonce", my_moco, layout={"queue": QUEUE_COLUMNS})

fn(inputs, params, attrs) receives dicts of jax arrays (through the declared layouts) and
returns an array (the case's first output), a tuple (the case's outputs in order) or a dict.
Gradients come from jax.vjp of fn with respect to the inputs and parameters the case checks,
applied to the case's upstream gradients; a jax.lax.stop_gradient'ed tensor gets zeros, as the
cases expect of detached ones. JAX is functional, so a buffer the method updates (running
statistics, memory banks) is returned under its own name, and intermediates are simply
returned too. Integer arrays stay integer (int32 unless jax_enable_x64 is set). float64 needs
jax.config.update("jax_enable_x64", True) before the port runs; otherwise JAX computes in
float32 whatever dtype is asked.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError as _err:
    raise ImportError("minibnn.verify.jax needs JAX, which is not installed (pip install jax); "
                      "the rest of minibnn.verify works without it") from _err

from .adapter import Entry, PortBase, as_tuple, name_outputs, wanted_grads

__all__ = ["JaxPort"]


def _is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _to_numpy(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "V" or str(array.dtype) in ("bfloat16", "float16"):
        array = array.astype(np.float32)
    return array


class JaxPort(PortBase):
    """A verify callable assembled from JAX functions, one per case (dtype: the float type)."""

    def __init__(self, dtype: Any = jnp.float32):
        super().__init__()
        self.dtype = dtype

    def function(self, case: str, fn: Callable | None = None, *, outputs=None, layout=None,
                 requires_grad=None, dtype=None):
        """Declare fn(inputs, params, attrs) for `case` (a decorator when fn is left out)."""
        def add(fn: Callable) -> Callable:
            self._add(Entry(case, "function", fn, outputs=as_tuple(outputs),
                            layout=dict(layout or {}), requires_grad=as_tuple(requires_grad),
                            dtype=dtype))
            return fn
        return add if fn is None else add(fn)

    def _array(self, entry: Entry, name: str, array: np.ndarray, dtype) -> Any:
        layout = entry.layout_of(name)
        array = layout.to_framework(array) if layout is not None else np.asarray(array)
        if array.dtype.kind == "f":
            return jnp.asarray(array, dtype=dtype)
        if array.dtype == np.uint64:
            array = array.view(np.int64)
        return jnp.asarray(array)

    def _back(self, entry: Entry, name: str, value: Any, shape: tuple | None = None):
        array = _to_numpy(value)
        layout = entry.layout_of(name)
        return layout.to_case(array, shape) if layout is not None else array

    def _run(self, entry: Entry, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict:
        dtype = entry.dtype or self.dtype
        arrays = {**inputs, **params}
        values = {k: self._array(entry, k, v, dtype) for k, v in arrays.items()}
        wanted = {k for k in wanted_grads(entry, inputs, params)
                  if k in values and jnp.issubdtype(values[k].dtype, jnp.floating)}
        fixed = {k: v for k, v in values.items() if k not in wanted}

        def pure(diff):
            merged = {**fixed, **diff}
            raw = entry.target({k: merged[k] for k in inputs}, {k: merged[k] for k in params},
                               attrs)
            out = name_outputs(entry, raw, upstream, _is_array)
            primal = {k: out[k] for k in upstream
                      if k in out and jnp.issubdtype(jnp.asarray(out[k]).dtype, jnp.floating)}
            return primal, out

        primal, vjp, out = jax.vjp(pure, {k: values[k] for k in wanted}, has_aux=True)
        cotangent = {}
        for k, y in primal.items():
            layout = entry.layout_of(k)
            up = layout.to_framework(upstream[k]) if layout is not None else upstream[k]
            cotangent[k] = jnp.asarray(np.reshape(up, np.shape(y)) if np.size(up) == np.size(y)
                                       else up, dtype=jnp.asarray(y).dtype)
        (grads,) = vjp(cotangent)
        result = {k: self._back(entry, k, v) for k, v in out.items()}
        for k in wanted:
            result["grad_" + k] = self._back(entry, k, grads[k], np.shape(arrays[k]))
        return result

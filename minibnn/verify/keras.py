"""The Keras 3 adapter: Keras layers and functions become the callable `minibnn verify` calls.

    port = KerasPort()
    port.layer("op.conv2d.s1p0", lambda a: keras.layers.Conv2D(4, 3, strides=a["stride"]),
               layout={"x": NHWC, "y": NHWC, "weight": KERAS_KERNEL})
    port.function("s2bnn.distribution_loss", lambda i, p, a: my_loss(i["student"], ...))

A layer's variables are filled from the case by name and shape after the layout: Keras names
are read in minibnn's vocabulary (kernel and gamma -> weight, beta -> bias, moving_mean ->
running_mean, moving_variance -> running_var), `names=` overrides. Non-trainable variables
(moving statistics) are buffers: read back after the call when they changed. The case
attribute "training" is passed as layer(x, training=...).

Gradients run through the active Keras backend: torch (KERAS_BACKEND=torch; tested in CI) or
tensorflow (tf.GradientTape; written to the same contract, but not exercised by minibnn's test
suite, which does not install TensorFlow). With the jax backend, write pure functions and use
minibnn.verify.jax. larq's quantizers need the tensorflow backend.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

try:
    import keras
except ImportError as _err:
    raise ImportError("minibnn.verify.keras needs Keras 3 and a backend: pip install keras, "
                      "then tensorflow, or set KERAS_BACKEND=torch (PyTorch) before importing; "
                      f"import failed with: {_err}") from _err

from .adapter import Entry, PortBase, as_tuple, match_names, name_outputs, wanted_grads

__all__ = ["KerasPort", "BACKEND", "KERAS_NAMES"]

BACKEND = keras.backend.backend()
KERAS_NAMES = {"kernel": "weight", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}
if BACKEND == "torch":
    import torch as _fw
elif BACKEND == "tensorflow":
    import tensorflow as _fw
else:
    _fw = None


def _minibnn_name(path: str) -> str:
    parts = path.replace("/", ".").split(".")
    parts[-1] = KERAS_NAMES.get(parts[-1], parts[-1])
    return ".".join(parts)


def _to_numpy(value: Any) -> np.ndarray:
    if BACKEND == "torch" and isinstance(value, _fw.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype in (_fw.float16, _fw.bfloat16) else value).numpy()
    array = np.asarray(keras.ops.convert_to_numpy(value))
    return array.astype(np.float32) if array.dtype.kind == "V" else array


class KerasPort(PortBase):
    """A verify callable assembled from Keras layers and functions (dtype: "float32",
    "float16" or "bfloat16")."""

    def __init__(self, dtype: str = "float32"):
        super().__init__()
        if _fw is None:
            raise ValueError(f"KerasPort runs gradients through the torch or tensorflow backend; "
                             f"this Keras uses {BACKEND!r} (set KERAS_BACKEND, or use "
                             f"minibnn.verify.jax for JAX)")
        self.dtype = dtype

    def function(self, case: str, fn: Callable | None = None, *, outputs=None, layout=None,
                 requires_grad=None, buffers=()):
        """Declare fn(inputs, params, attrs) with backend tensors (keras.ops works on them)."""
        def add(fn: Callable) -> Callable:
            self._add(Entry(case, "function", fn, outputs=as_tuple(outputs),
                            layout=dict(layout or {}), requires_grad=as_tuple(requires_grad),
                            buffers=tuple(buffers)))
            return fn
        return add if fn is None else add(fn)

    def layer(self, case: str, factory: Callable, *, inputs=None, outputs=None, layout=None,
              requires_grad=None, names=None, call=None) -> Entry:
        """Declare factory(attrs) -> keras.Layer for `case`, called as layer(*inputs,
        training=attrs["training"]) or call(layer, inputs, attrs)."""
        return self._add(Entry(case, "module", factory, inputs=as_tuple(inputs),
                               outputs=as_tuple(outputs), layout=dict(layout or {}),
                               requires_grad=as_tuple(requires_grad), names=dict(names or {}),
                               call=call))

    # -------------------------------------------------------------------------- running
    def _tensor(self, entry: Entry, name: str, array: np.ndarray, grad: bool):
        layout = entry.layout_of(name)
        array = np.ascontiguousarray(layout.to_framework(array) if layout else array)
        if array.dtype.kind != "f":
            return keras.ops.convert_to_tensor(array.view(np.int64) if array.dtype == np.uint64
                                               else array)
        value = keras.ops.convert_to_tensor(array, dtype=self.dtype)
        if BACKEND == "torch" and grad:
            value = value.detach().requires_grad_(True)
        return value

    def _back(self, entry: Entry, name: str, value: Any, shape=None) -> np.ndarray:
        layout = entry.layout_of(name)
        array = _to_numpy(value)
        return layout.to_case(array, shape) if layout is not None else array

    def _run(self, entry: Entry, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict:
        arrays = {**inputs, **params}
        wanted = {k for k in wanted_grads(entry, inputs, params) if arrays[k].dtype.kind == "f"}
        tensors = {k: self._tensor(entry, k, v, k in wanted) for k, v in arrays.items()}
        variables = {}
        tape = _fw.GradientTape(persistent=True) if BACKEND == "tensorflow" else None
        if tape is not None:
            tape.__enter__()
            for k in wanted:
                tape.watch(tensors[k])
        try:
            if entry.kind == "module":
                raw, variables = self._call_layer(entry, inputs, params, tensors, attrs)
            else:
                raw = entry.target({k: tensors[k] for k in inputs},
                                   {k: tensors[k] for k in params}, attrs)
            out = name_outputs(entry, raw, upstream, keras.ops.is_tensor)
        finally:
            if tape is not None:
                tape.__exit__(None, None, None)
        sources = {k: variables[k] if k in variables else tensors[k] for k in wanted}
        grads = self._gradients(entry, out, upstream, sources, tape)
        result = {k: self._back(entry, k, v) for k, v in out.items()}
        for k in wanted:
            g = grads.get(k)
            result["grad_" + k] = (np.zeros(np.shape(arrays[k]), np.float32) if g is None
                                   else self._back(entry, k, g, np.shape(arrays[k])))
        for k, var in variables.items():
            if not var.trainable and k not in wanted:
                now = _to_numpy(var.value)
                layout = entry.layout_of(k)
                before = layout.to_framework(params[k]) if layout else params[k]
                if not np.array_equal(now, np.asarray(before, now.dtype)):
                    result[k] = self._back(entry, k, now, np.shape(params[k]))
        return result

    def _call_layer(self, entry: Entry, inputs, params, tensors, attrs):
        layer = entry.target(attrs)
        args = [tensors[k] for k in (entry.inputs or tuple(inputs))]
        kwargs = {"training": bool(attrs["training"])} if "training" in attrs else {}
        if not layer.built:
            layer.build(*[tuple(a.shape) for a in args])
        state = {_minibnn_name(v.path): v for v in layer.weights}
        shapes = {k: tuple(np.shape(tensors[k])) for k in params}
        mapping = match_names(entry.case, shapes, {k: tuple(v.shape) for k, v in state.items()},
                              entry.names)
        variables = {}
        for name, key in mapping.items():
            var = state[key]
            var.assign(_to_numpy(tensors[name]).astype(var.dtype))
            if BACKEND == "torch" and var.trainable:
                var.value.requires_grad_(True)
                var.value.grad = None
            variables[name] = var
        raw = (entry.call(layer, {k: tensors[k] for k in inputs}, attrs) if entry.call
               else layer(*args, **kwargs))
        return raw, variables

    def _gradients(self, entry: Entry, out: dict, upstream: dict, sources: dict, tape) -> dict:
        ys, ups = [], []
        for name, up in upstream.items():
            if name not in out:
                continue
            layout = entry.layout_of(name)
            up = layout.to_framework(up) if layout is not None else np.asarray(up)
            y = out[name]
            ys.append(y)
            ups.append(keras.ops.convert_to_tensor(np.reshape(up, tuple(y.shape)),
                                                   dtype=y.dtype))
        if not ys:
            return {}
        if BACKEND == "torch":
            pairs = [(y, u) for y, u in zip(ys, ups) if y.requires_grad]
            if pairs:
                _fw.autograd.backward([y for y, _ in pairs], [u for _, u in pairs])
            return {k: (s.value.grad if hasattr(s, "path") else s.grad)
                    for k, s in sources.items()}
        targets = {k: (s.value if hasattr(s, "path") else s) for k, s in sources.items()}
        grads = tape.gradient(ys, list(targets.values()), output_gradients=ups)
        return dict(zip(targets, grads))

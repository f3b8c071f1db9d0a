"""The PyTorch adapter: a port written as ordinary PyTorch code (functions or nn.Modules) becomes
the callable `minibnn verify` calls, fn(name, inputs, params, upstream, attrs).

    port = TorchPort()                                   # float32 (float16 / bfloat16 too)
    port.function("s2bnn.distribution_loss",
                  lambda i, p, a: my_loss(i["student"], i["teacher"], a["tau"]))
    port.module("layer.rsign", lambda a: MyRSign(a["channels"]),
                layout={"shift.bias": CHANNEL_BIAS})     # my bias is (1, C, 1, 1)
    port.module("layer.batch_norm2d.train", lambda a: torch.nn.BatchNorm2d(3, a["eps"],
                a["momentum"]))                         # running stats read back as outputs
    port.module("layer.binary_conv2d.reactnet_approx", lambda a: MyBlock(...),
                capture={"wb": argument_of(F.conv2d, 1)})   # the binarised weight

What the adapter does per call: converts the arrays (through the declared layouts) to tensors
of the port's dtype; marks the tensors whose gradient the case checks as requiring grad (the
others, buffers such as running statistics and memory banks, may be updated in place); loads a
module's parameters and buffers from the case by name and shape (`names=` overrides); runs the
forward with the requested captures; back-propagates the case's upstream gradients; and returns
outputs, "grad_<name>" (zeros for a tensor the port detached), every buffer that changed or
was declared, and the captured intermediates, all converted back to the case's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

try:
    import torch
    from torch.overrides import TorchFunctionMode
except ImportError as _err:                          # pragma: no cover (torch is the oracle)
    raise ImportError("minibnn.verify.torch needs PyTorch, which is not installed (pip install "
                      "torch); the rest of minibnn.verify works without it") from _err

from .adapter import Entry, PortBase, as_tuple, match_names, name_outputs, wanted_grads

__all__ = ["TorchPort", "Capture", "output_of", "argument_of", "result_of", "to_numpy",
           "from_numpy"]


# ------------------------------------------------------------------------------ captures
@dataclass(frozen=True)
class Capture:
    """An intermediate to capture: the output of a submodule ("layer1.0.conv"), or an argument
    (index >= 0) or the result (index = -1) of the call-th call of a torch function."""

    target: Any
    index: int = -1
    call: int = 0


def output_of(submodule: str, call: int = 0) -> Capture:
    """The output of a submodule of the port's module, by dotted name ("" = the module)."""
    return Capture(str(submodule), -1, call)


def argument_of(function: Callable, index: int, call: int = 0) -> Capture:
    """Argument `index` of the call-th call of a torch function, e.g. argument_of(F.conv2d, 1)
    is the (binarised) weight a conv layer passes; found however the function is imported."""
    return Capture(function, int(index), call)


def result_of(function: Callable, call: int = 0) -> Capture:
    """The result of the call-th call of a torch function, e.g. result_of(torch.sign)."""
    return Capture(function, -1, call)


class _Spy(TorchFunctionMode):
    """Records the arguments / results of the torch functions named by function captures."""

    def __init__(self, captures: Mapping[str, Capture]):
        super().__init__()
        self.captures = captures
        self.calls: dict[int, int] = {}
        self.found: dict[str, Any] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for name, cap in self.captures.items():
            if func is cap.target:
                n = self.calls.get(id(cap), 0)
                self.calls[id(cap)] = n + 1
                if n == cap.call:
                    self.found[name] = result if cap.index < 0 else args[cap.index]
        return result


# ---------------------------------------------------------------------------- conversion
def from_numpy(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Float arrays become `dtype` tensors; integer arrays keep their type (uint64 bit words as
    int64, the same bits)."""
    array = np.ascontiguousarray(array)
    if array.dtype.kind == "f":
        return torch.tensor(array, dtype=dtype)
    if array.dtype == np.uint64:
        array = array.view(np.int64)
    return torch.from_numpy(array.copy())


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (any dtype, with or without grad) as an ndarray; float16/bfloat16 widen to
    float32."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        return value.numpy().copy()
    return np.asarray(value)


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


# ------------------------------------------------------------------------------ the port
class TorchPort(PortBase):
    """A verify callable assembled from PyTorch functions and modules, one per case.

    dtype: the float type the port runs in (torch.float32 by default; torch.float16 /
    torch.bfloat16 to see a half-precision port, with --tolerance-scale from docs/golden.md).
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.dtype = dtype

    def function(self, case: str, fn: Callable | None = None, *, outputs=None, layout=None,
                 requires_grad=None, buffers=(), capture=None, dtype=None):
        """Declare fn(inputs, params, attrs) -> tensor | tuple | dict for `case`; inputs and
        params are dicts of tensors. Usable as a decorator when fn is left out."""
        def add(fn: Callable) -> Callable:
            self._add(Entry(case, "function", fn, outputs=as_tuple(outputs),
                            layout=dict(layout or {}), requires_grad=as_tuple(requires_grad),
                            buffers=tuple(buffers), capture=dict(capture or {}), dtype=dtype))
            return fn
        return add if fn is None else add(fn)

    def module(self, case: str, factory: Any, *, inputs=None, outputs=None, layout=None,
               requires_grad=None, buffers=(), names=None, capture=None, call=None, dtype=None
               ) -> Entry:
        """Declare a module for `case`: factory(attrs) -> nn.Module, or an nn.Module (reused;
        its state is reloaded from the case on every call). The module is called as
        module(*inputs) (the case's inputs in order, or `inputs=`), or call(module, inputs,
        attrs). A case attribute "training" sets module.train(training)."""
        return self._add(Entry(case, "module", factory, inputs=as_tuple(inputs),
                               outputs=as_tuple(outputs), layout=dict(layout or {}),
                               requires_grad=as_tuple(requires_grad), buffers=tuple(buffers),
                               names=dict(names or {}), capture=dict(capture or {}), call=call,
                               dtype=dtype))

    # -------------------------------------------------------------------------- running
    def _tensor(self, entry: Entry, name: str, array: np.ndarray, dtype) -> torch.Tensor:
        layout = entry.layout_of(name)
        return from_numpy(layout.to_framework(array) if layout else array, dtype)

    def _back(self, entry: Entry, name: str, value: Any, shape: tuple | None = None) -> Any:
        array = to_numpy(value)
        layout = entry.layout_of(name)
        return layout.to_case(array, shape) if layout is not None else array

    def _run(self, entry: Entry, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict:
        dtype = entry.dtype or self.dtype
        wanted = wanted_grads(entry, inputs, params)
        tensors = {k: self._tensor(entry, k, v, dtype) for k, v in {**inputs, **params}.items()}
        for k, t in tensors.items():
            if k in wanted and t.is_floating_point() and k not in entry.buffers:
                t.requires_grad_(True)
        before = {k: tensors[k].detach().clone() for k in params}
        module, state = None, {}
        if entry.kind == "module":
            module, state = self._load(entry, params, tensors, wanted, attrs, dtype)
        functions = {n: c for n, c in entry.capture.items() if not isinstance(c.target, str)}
        spy, hooks, found = _Spy(functions), [], {}
        for name, cap in entry.capture.items():
            if isinstance(cap.target, str):
                hooks.append(self._hook(entry, module, name, cap, found))
        try:
            with spy:
                if module is None:
                    raw = entry.target({k: tensors[k] for k in inputs},
                                       {k: tensors[k] for k in params}, attrs)
                elif entry.call is not None:
                    raw = entry.call(module, {k: tensors[k] for k in inputs}, attrs)
                else:
                    raw = module(*[tensors[k] for k in (entry.inputs or tuple(inputs))])
        finally:
            for h in hooks:
                h.remove()
        out = name_outputs(entry, raw, upstream, _is_tensor)
        found.update(spy.found)
        self._backward(entry, out, upstream)
        result = {k: self._back(entry, k, v) for k, v in out.items()}
        for k in wanted:
            source = state.get(k, tensors.get(k))
            if source is None or not source.is_floating_point():
                continue
            grad = source.grad
            shape = np.shape({**inputs, **params}[k])
            result["grad_" + k] = (np.zeros(shape, np.float32) if grad is None
                                   else self._back(entry, k, grad, shape))
        for k in params:
            if k in out or ("grad_" + k) in result and k not in entry.buffers:
                continue
            now = state.get(k, tensors[k]).detach()
            if k in entry.buffers or not torch.equal(now, before[k]):
                result[k] = self._back(entry, k, now, np.shape(params[k]))
        for name, value in found.items():
            result[name] = self._back(entry, name, value)
        return result

    def _load(self, entry: Entry, params: dict, tensors: dict, wanted: set, attrs: dict, dtype):
        module = entry.target(attrs) if not isinstance(entry.target, torch.nn.Module) \
            else entry.target
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"the factory of case {entry.case!r} returned "
                            f"{type(module).__name__}, expected a torch.nn.Module")
        module.to(dtype)
        if "training" in attrs:
            module.train(bool(attrs["training"]))
        state = dict(module.state_dict(keep_vars=True))
        shapes = {k: tuple(tensors[k].shape) for k in params}
        mapping = match_names(entry.case, shapes, {k: tuple(v.shape) for k, v in state.items()},
                              entry.names)
        loaded = {}
        for name, key in mapping.items():
            target = state[key]
            if tuple(target.shape) != shapes[name]:
                raise ValueError(f"case {entry.case!r}: parameter {name!r} has shape "
                                 f"{shapes[name]} after its layout, the module's {key!r} has "
                                 f"{tuple(target.shape)}; declare layout={{{name!r}: ...}}")
            with torch.no_grad():
                target.copy_(tensors[name].to(target.dtype))
            if isinstance(target, torch.nn.Parameter):
                target.grad = None
                target.requires_grad_(name in wanted)
            loaded[name] = target
        return module, loaded

    @staticmethod
    def _hook(entry: Entry, module, name: str, cap: Capture, found: dict):
        if module is None:
            raise ValueError(f"case {entry.case!r}: capture {name!r} names a submodule "
                             f"({cap.target!r}) but the case is declared as a function; use "
                             f"argument_of / result_of, or declare a module")
        try:
            sub = module.get_submodule(cap.target)
        except AttributeError:
            names = ", ".join(n for n, _ in module.named_modules() if n)
            raise ValueError(f"case {entry.case!r}: capture {name!r}: the module has no "
                             f"submodule {cap.target!r}; it has: {names}") from None
        calls = [0]

        def hook(_module, _args, output):
            if calls[0] == cap.call:
                found[name] = output
            calls[0] += 1
        return sub.register_forward_hook(hook)

    @staticmethod
    def _backward(entry: Entry, out: dict, upstream: dict) -> None:
        tensors, grads = [], []
        for name, up in upstream.items():
            y = out.get(name)
            if not isinstance(y, torch.Tensor) or not y.requires_grad:
                continue                           # missing or constant: compare reports it
            layout = entry.layout_of(name)
            up = layout.to_framework(up) if layout is not None else np.asarray(up)
            if tuple(up.shape) != tuple(y.shape) and np.size(up) == y.numel():
                up = np.reshape(up, tuple(y.shape))      # a (1,) loss for a scalar case
            tensors.append(y)
            grads.append(torch.as_tensor(np.asarray(up), dtype=y.dtype))
        if tensors:
            torch.autograd.backward(tensors, grads)

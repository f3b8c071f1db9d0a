"""Whole-model comparison: a minibnn model against a PyTorch port of it, layer by layer.

    report = compare_models(minibnn_model, torch_model, x)
    print(report)            # one row per paired layer: forward max diff, gradient max diff
    report.first_forward     # the first layer (execution order) whose output differs
    report.first_backward    # the first layer (backward order) whose output gradient differs

How it works: the torch model's parameters and buffers are set from the minibnn model's
(`mapping` {minibnn name: torch name}; automatic otherwise: the same name, else the next
unmatched torch entry in registration order with the same shape up to unit axes, so a (C,)
bias fills a (1, C, 1, 1) one); both run in float64 on the same input in the minibnn model's
mode; the loss sum(upstream * output) with a seeded upstream is back-propagated on both sides.
Layers are paired through the parameters they own (and `layers` {minibnn module: torch module}
for parameterless ones); their outputs and output gradients, the input gradient and every
parameter gradient are compared with |a - b| <= atol * max|b| + rtol * |b| (float64 noise
only: a port that computes the same thing agrees to ~1e-12). A layer called more than once is
compared on its first call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

try:
    import torch
except ImportError as _err:                          # pragma: no cover
    raise ImportError("minibnn.verify.models needs PyTorch, which is not installed (pip "
                      "install torch)") from _err

from ..autograd import Tensor
from ..nn import Module

__all__ = ["compare_models", "ModelReport", "LayerRow", "map_state"]


@dataclass
class LayerRow:
    minibnn: str
    torch: str
    kind: str                      # "output", "output grad", "param grad", "input grad"
    shape: tuple
    max_abs: float | None = None
    ok: bool = True
    note: str = ""


@dataclass
class ModelReport:
    """rows: forward outputs in execution order, then output gradients in backward order, then
    parameter gradients and the input gradient. mapping: {minibnn name: torch name}."""

    rows: list[LayerRow] = field(default_factory=list)
    mapping: dict = field(default_factory=dict)
    error: str | None = None          # the torch model raised (rows: the layers before)

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.rows)

    def _first(self, kind: str) -> LayerRow | None:
        return next((r for r in self.rows if r.kind == kind and not r.ok), None)

    @property
    def first_forward(self) -> LayerRow | None:
        return self._first("output")

    @property
    def first_backward(self) -> LayerRow | None:
        return self._first("output grad")

    def __str__(self) -> str:
        lines = [f"{'minibnn layer':<26} {'torch layer':<22} {'compared':<11} {'shape':<16} "
                 f"{'max abs':>9}  status"]
        for r in self.rows:
            value = "-" if r.max_abs is None else f"{r.max_abs:.2e}"
            lines.append(f"{r.minibnn:<26} {r.torch:<22} {r.kind:<11} {str(r.shape):<16} "
                         f"{value:>9}  {'OK' if r.ok else 'DIFFERS'}"
                         + (f"  ({r.note})" if r.note else ""))
        first = self.first_forward
        lines.append("forward: " + ("every paired layer agrees" if first is None else
                                    f"first diverges at {first.minibnn} <-> {first.torch} "
                                    f"({_what(first)}); later layers inherit it"))
        first = self.first_backward
        lines.append("backward: " + ("not compared" if self.error else
                                     "every output gradient agrees" if first is None else
                                     f"first diverges at {first.minibnn} <-> {first.torch} "
                                     f"({_what(first)}), counting from the output"))
        if self.error:
            lines.append(f"the torch model raised: {self.error}")
        return "\n".join(lines)


def _what(row: LayerRow) -> str:
    if row.note:
        return row.note
    return f"max abs {row.max_abs:.3g}"


# ------------------------------------------------------------------------ state mapping
def _squeezed(shape) -> tuple:
    return tuple(n for n in shape if n != 1)


def map_state(mini: Module, port: "torch.nn.Module", mapping: Mapping[str, str] | None = None
              ) -> dict[str, str]:
    """{minibnn parameter/buffer name: torch state_dict key}; see the module docstring. A
    ValueError lists what is left when an entry on either side has no partner."""
    result = dict(mapping or {})
    sides = [({n: np.shape(v.data) for n, v in mini.named_parameters()},
              {k: tuple(v.shape) for k, v in port.named_parameters()}),
             ({n: np.shape(v) for n, v in mini.named_buffers()},
              {k: tuple(v.shape) for k, v in port.named_buffers() if v.is_floating_point()})]
    for name, key in result.items():
        if not any(name in ours for ours, _ in sides) or not any(key in t for _, t in sides):
            raise ValueError(f"mapping {name!r} -> {key!r}: one of them is not a float "
                             f"parameter or buffer of its model")
    for ours, theirs in sides:              # parameters with parameters, buffers with buffers
        free = [k for k in theirs if k not in result.values()]
        for name, shape in ours.items():
            if name in result:
                continue
            if name in free and theirs[name] == shape:
                result[name] = name
            else:
                hit = next((k for k in free if _squeezed(theirs[k]) == _squeezed(shape)), None)
                if hit is None:
                    raise ValueError(f"no torch entry left for minibnn's {name!r} {shape}; "
                                     f"unmatched torch entries: "
                                     f"{', '.join(f'{k} {theirs[k]}' for k in free) or 'none'}"
                                     f" (pass mapping={{...}})")
                result[name] = hit
            free.remove(result[name])
        if free:
            raise ValueError(f"torch entries with no minibnn partner: "
                             f"{', '.join(f'{k} {theirs[k]}' for k in free)} (pass "
                             f"mapping={{...}})")
    return result


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def _float64_copy(model: Module) -> Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                p.data = p.data.astype(np.float64)
                p.grad = None
        for k, b in m._buffers.items():
            if b is not None and np.asarray(b).dtype.kind == "f":
                m._buffers[k] = np.asarray(b, np.float64).copy()
    return model


# ------------------------------------------------------------------------------ compare
def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> tuple[float, bool]:
    if a.shape != b.shape:
        return float("nan"), False
    diff = np.abs(a - b)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return (float(diff.max()) if diff.size else 0.0,
            bool(np.all(diff <= atol * scale + rtol * np.abs(b))))


def compare_models(mini: Module, port: "torch.nn.Module", x: np.ndarray, *,
                   mapping: Mapping[str, str] | None = None,
                   layers: Mapping[str, str] | None = None, seed: int = 0,
                   rtol: float = 1e-7, atol: float = 1e-9) -> ModelReport:
    """Run `mini` and `port` on x (float64 copies; neither model is modified) and report where
    they first diverge, forward and backward. See the module docstring."""
    names = map_state(mini, port, mapping)
    mini = _float64_copy(mini)
    port = copy.deepcopy(port).double().train(mini.training)
    ours = dict([*mini.named_parameters(), *mini.named_buffers()])
    theirs = port.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, key in names.items():
            value = ours[name].data if isinstance(ours[name], Tensor) else ours[name]
            theirs[key].copy_(torch.from_numpy(np.asarray(value)).reshape(theirs[key].shape))
    pairs = {"": ""}                                   # the models themselves: the output
    pairs.update({_owner(n): _owner(k) for n, k in names.items()})
    pairs.update(layers or {})
    mini_modules, torch_modules = dict(mini.named_modules()), dict(port.named_modules())
    for m_name, t_name in pairs.items():
        if m_name not in mini_modules or t_name not in torch_modules:
            raise ValueError(f"layers: {m_name!r} <-> {t_name!r} is not a module pair of the "
                             f"two models")
    seen_ours, seen_theirs, order = {}, {}, []
    patched = []
    for m_name, t_name in pairs.items():
        module = mini_modules[m_name]
        original = module.forward

        def wrapped(*args, _orig=original, _name=m_name, **kwargs):
            out = _orig(*args, **kwargs)
            if _name not in seen_ours and isinstance(out, Tensor):
                seen_ours[_name] = out.retain_grad() if out.requires_grad else out
                order.append(_name)
            return out
        object.__setattr__(module, "forward", wrapped)
        patched.append(module)

    def hook(_module, _args, out, _name=None):
        if _name not in seen_theirs and isinstance(out, torch.Tensor):
            if out.requires_grad:
                out.retain_grad()
            seen_theirs[_name] = out
    handles = [torch_modules[t].register_forward_hook(
        lambda m, a, o, _n=t: hook(m, a, o, _n)) for t in set(pairs.values())]
    try:
        x64 = np.asarray(x, np.float64)
        xm, xt = Tensor(x64.copy(), requires_grad=True), torch.tensor(x64, requires_grad=True)
        ym = mini(xm)
        up = np.random.default_rng(seed).standard_normal(ym.shape)
        (ym * Tensor(up)).sum().backward()
        try:
            yt = port(xt)
            (yt * torch.from_numpy(up).reshape(yt.shape)).sum().backward()
        except RuntimeError as err:
            error = f"{type(err).__name__}: {err}"
        else:
            error = None
    finally:
        for module in patched:
            del module.__dict__["forward"]
        for h in handles:
            h.remove()
    report = ModelReport(mapping=names, error=error)

    def row(kind, m_name, t_name, a, b):
        a = None if a is None else np.asarray(a)
        b = None if b is None else b.detach().numpy()
        if a is None or b is None:
            report.rows.append(LayerRow(m_name, t_name, kind, (), None, a is None and b is None,
                                        "no gradient on one side" if (a is None) != (b is None)
                                        else ""))
            return
        diff, ok = _close(b, a, rtol, atol)
        note = "" if a.shape == b.shape else f"shapes {a.shape} vs {tuple(b.shape)}"
        report.rows.append(LayerRow(m_name, t_name, kind, a.shape, diff, ok, note))

    for m_name in order:
        t_name = pairs[m_name]
        if t_name in seen_theirs:
            row("output", m_name or "(model)", t_name or "(model)", seen_ours[m_name].data,
                seen_theirs[t_name])
        elif error is None:
            report.rows.append(LayerRow(m_name, t_name, "output", seen_ours[m_name].shape, None,
                                        False, "the torch layer was never called"))
    if error is not None:
        return report
    for m_name in reversed(order):
        t_name = pairs[m_name]
        if t_name in seen_theirs:
            row("output grad", m_name or "(model)", t_name or "(model)", seen_ours[m_name].grad,
                seen_theirs[t_name].grad)
    for name, key in names.items():
        if isinstance(ours[name], Tensor):
            grad = theirs[key].grad
            row("param grad", name, key, ours[name].grad,
                None if grad is None else grad.reshape(ours[name].shape))
    row("input grad", "(input)", "(input)", xm.grad, xt.grad)
    return report

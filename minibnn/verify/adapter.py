"""What every framework adapter shares: the per-case declarations (`Entry`), what a case wants
(which gradients, which outputs), mapping a case's parameter names onto a module's state by
name and shape, and turning a forward's return value into named outputs.

The framework modules (torch.py, jax.py, keras.py) only convert arrays, run autograd and hook
intermediates. No framework is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..golden import SPECS
from .layouts import Layout, as_layouts

__all__ = ["Entry", "wanted_grads", "differentiable_outputs", "name_outputs", "match_names",
           "PortBase"]


@dataclass
class Entry:
    """One case of a port. kind "function": fn(inputs, params, attrs) with dicts of framework
    tensors; kind "module": factory(attrs) -> module (or a module), called on the inputs.

    inputs: positional order of the inputs for a module (default: the case's order);
    outputs: names for a returned tensor or tuple (default: the case's differentiable outputs);
    layout: {case tensor name: Layout}; requires_grad: names whose gradient to return (default:
    the case's checked gradients, or every float array not in `buffers` for an unknown case);
    buffers: params passed without gradient and always read back after the call (any param that
    changes in place is read back anyway); names: {case param: module state key} overrides;
    capture: {output name: capture spec} of intermediates; call: call(module, inputs, attrs)
    replaces module(*inputs); dtype: overrides the port's dtype for this case.
    """

    case: str
    kind: str
    target: Any
    inputs: tuple | None = None
    outputs: tuple | None = None
    layout: dict = field(default_factory=dict)
    requires_grad: tuple | None = None
    buffers: tuple = ()
    names: dict = field(default_factory=dict)
    capture: dict = field(default_factory=dict)
    call: Callable | None = None
    dtype: Any = None

    def layout_of(self, name: str) -> Layout | None:
        return self.layout.get(name)


def wanted_grads(entry: Entry, inputs: Mapping, params: Mapping) -> set:
    """The case tensors whose gradient the adapter returns."""
    if entry.requires_grad is not None:
        return set(entry.requires_grad)
    spec = SPECS.get(entry.case)
    if spec is not None:
        return set(spec.grads)
    return {k for k, v in {**inputs, **params}.items()
            if np.asarray(v).dtype.kind == "f" and k not in entry.buffers}


def differentiable_outputs(entry: Entry, upstream: Mapping) -> tuple:
    if entry.outputs is not None:
        return tuple(entry.outputs)
    spec = SPECS.get(entry.case)
    if spec is not None and spec.outputs:
        return tuple(spec.outputs)
    return tuple(upstream) or ("y",)


def name_outputs(entry: Entry, value: Any, upstream: Mapping, is_tensor: Callable) -> dict:
    """A forward's return value as {name: value}: a dict as is, a tensor under the first
    output name, a tuple/list under the output names in order."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    names = differentiable_outputs(entry, upstream)
    if is_tensor(value):
        return {names[0]: value}
    if isinstance(value, (tuple, list)):
        if len(value) > len(names):
            raise ValueError(f"the {entry.kind} of case {entry.case!r} returned {len(value)} "
                             f"values but only {len(names)} output names are known "
                             f"({', '.join(names)}); pass outputs=(...) naming each")
        return dict(zip(names, value))
    raise TypeError(f"the {entry.kind} of case {entry.case!r} returned "
                    f"{type(value).__name__}, expected a tensor, a tuple of tensors or a dict")


def match_names(case: str, params: Mapping[str, tuple], state: Mapping[str, tuple],
                overrides: Mapping[str, str]) -> dict[str, str]:
    """{case param: state key}: the override, else the same name, else the one state key with
    the same last name component and the same shape (shapes already in the framework's
    layout). A ValueError lists the candidates when a name has no unique match."""
    mapping = {}
    taken = set(overrides.values())
    for name, shape in params.items():
        if name in overrides:
            if overrides[name] not in state:
                raise ValueError(f"case {case!r}: names maps {name!r} to {overrides[name]!r}, "
                                 f"which the module does not have; its state: "
                                 f"{_listing(state)}")
            mapping[name] = overrides[name]
            continue
        if name in state and name not in taken:
            mapping[name] = name
            continue
        last = name.split(".")[-1]
        hits = [k for k, s in state.items() if k not in taken and k not in mapping.values()
                and k.split(".")[-1] == last and tuple(s) == tuple(shape)]
        if len(hits) != 1:
            raise ValueError(f"case {case!r}: cannot place parameter {name!r} {tuple(shape)} in "
                             f"the module ({'no' if not hits else 'several'} candidates by name "
                             f"and shape); its state: {_listing(state)}; pass "
                             f"names={{{name!r}: '<state key>'}}")
        mapping[name] = hits[0]
    return mapping


def _listing(state: Mapping[str, tuple]) -> str:
    return ", ".join(f"{k} {tuple(s)}" for k, s in state.items())


class PortBase:
    """A verify callable holding one Entry per case: port(name, inputs, params, upstream,
    attrs) runs the case's entry, or returns None for a case the port does not declare."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}

    def _add(self, entry: Entry) -> Entry:
        entry.layout = as_layouts(entry.layout)
        if entry.case in self.entries:
            raise ValueError(f"case {entry.case!r} is already declared in this port")
        self.entries[entry.case] = entry
        return entry

    def cases(self) -> list[str]:
        return list(self.entries)

    def __call__(self, name: str, inputs: dict, params: dict, upstream: dict, attrs: dict):
        entry = self.entries.get(name)
        if entry is None:
            return None
        return self._run(entry, inputs, params, upstream, attrs)

    def _run(self, entry: Entry, inputs, params, upstream, attrs) -> dict:  # pragma: no cover
        raise NotImplementedError


def as_tuple(value: Sequence[str] | str | None) -> tuple | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)

"""PackedModel: run, trace, size and store an exported binary network (engine/export.py).

A PackedModel is a list of nodes (engine/graph.py) over named registers. It takes the model's
input, float32 (N, C, H, W) normalised as in training, and returns float32 logits (N, classes);
inside, activations are channels last and binary layers see packed signs. `.trace(x)` also
returns every binary layer's int32 accumulators, for checks against the float model.
Files are `.npz` without pickle: a JSON header (format name and version, metadata, node list)
plus one array per weight. Imports numpy and the engine modules only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..blas_threads import single_blas_thread
from ..npzio import load_npz, save_npz
from .graph import NODE_TYPES, Node, Stage

__all__ = ["PackedModel", "Trace", "SizeReport", "LayerSize", "PackedFormatError",
           "FORMAT", "FORMAT_VERSION"]

FORMAT, FORMAT_VERSION = "minibnn-packed", 1
HEADER_KEY = "__minibnn_packed__"
INPUT = "input"


class PackedFormatError(ValueError):
    """A packed-model file that is missing, damaged, or not one this version can read."""


@dataclass
class Trace:
    """What `PackedModel.trace` returns: the output, the int32 accumulators of every binary
    layer of the model (by the model's layer name; (N, OH, OW, M) channels last, or (N, M)),
    and every register the run wrote (channels last)."""

    output: np.ndarray
    accumulators: dict = field(default_factory=dict)
    registers: dict = field(default_factory=dict)


@dataclass
class LayerSize:
    name: str
    kind: str
    packed_bytes: int      # what the packed node stores (packed words + float32 vectors)
    float32_bytes: int     # the model's float32 parameters and buffers for the same layer


@dataclass
class SizeReport:
    rows: list

    @property
    def packed_bytes(self) -> int:
        return sum(r.packed_bytes for r in self.rows)

    @property
    def float32_bytes(self) -> int:
        return sum(r.float32_bytes for r in self.rows)

    @property
    def ratio(self) -> float:
        return self.float32_bytes / max(1, self.packed_bytes)

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [5])
        lines = [f"{'layer':<{width}}  {'kind':<12} {'packed B':>11} {'float32 B':>11} "
                 f"{'ratio':>7}"]
        for r in self.rows + [LayerSize("total", "", self.packed_bytes, self.float32_bytes)]:
            ratio = f"{r.float32_bytes / r.packed_bytes:6.1f}x" if r.packed_bytes else ""
            lines.append(f"{r.name:<{width}}  {r.kind:<12} {r.packed_bytes:>11,} "
                         f"{r.float32_bytes:>11,} {ratio:>7}")
        return "\n".join(lines)


class PackedModel:
    """An exported BNN ready to run.  model(x): float32 (N, C, H, W) -> float32 (N, classes).

    meta holds what a user of the file needs: model name, input_shape (C, H, W), num_classes,
    dataset name and normalisation (mean, std) when known. Dead outputs (a float copy nobody
    reads, signs of the last layer) are pruned at construction.
    """

    def __init__(self, nodes: list, meta: dict, output: str = "logits"):
        self.nodes, self.meta, self.output = list(nodes), dict(meta), output
        self.input_shape = tuple(int(v) for v in self.meta["input_shape"])
        self._prune_and_check()
        for node in self.nodes:
            node.prepare()

    def _prune_and_check(self) -> None:
        live, kept = {self.output}, []
        for node in reversed(self.nodes):
            if node.stage is not None:
                for attr in ("out", "bits"):
                    if getattr(node.stage, attr) not in live:
                        setattr(node.stage, attr, None)
            if any(r in live for r in node.writes() if r is not None):
                kept.append(node)
                live.update(node.reads())
        self.nodes = kept[::-1]
        written = {INPUT}
        for node in self.nodes:
            missing = [r for r in node.reads() if r not in written]
            if missing:
                raise ValueError(f"node {node.name!r} reads {missing} before anything writes it")
            written.update(node.writes())
        if self.output not in written:
            raise ValueError(f"no node writes the output register {self.output!r}")

    # ----------------------------------------------------------------------------- running
    def _check_input(self, x) -> np.ndarray:
        expected = "(N, " + ", ".join(str(v) for v in self.input_shape) + ")"
        if not isinstance(x, np.ndarray):
            raise TypeError(f"PackedModel: expected a float32 ndarray {expected}, "
                            f"found {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"PackedModel: expected float32 input {expected} (normalised as "
                             f"for the model), found dtype {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape or x.shape[0] < 1:
            raise ValueError(f"PackedModel: expected input shape {expected}, found {x.shape}")
        return np.ascontiguousarray(x)

    def _run(self, x: np.ndarray, trace: dict | None) -> tuple:
        regs = {INPUT: self._check_input(x)}
        with single_blas_thread():      # no spinning BLAS workers beside Numba's (blas_threads.py)
            for node in self.nodes:
                node.run(regs, trace)
        return regs[self.output], regs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(x, None)[0]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class indices int64 (N,): argmax of the logits, batch_size images at a time."""
        x = self._check_input(x)
        return np.concatenate([self(x[i:i + batch_size]).argmax(axis=1)
                               for i in range(0, len(x), batch_size)])

    def trace(self, x: np.ndarray) -> Trace:
        """Run with every binary layer's int32 accumulators kept (the threshold-in-kernel path
        is replaced by accumulators + the same stage, which gives the same bits)."""
        raw: dict = {}
        out, regs = self._run(x, raw)
        acc = {}
        for node in self.nodes:
            if node.name in raw:
                for layer, start, stop in node.sources:
                    acc[layer] = raw[node.name][..., start:stop]
        return Trace(out, acc, regs)

    # ------------------------------------------------------------------------------ report
    def size_report(self) -> SizeReport:
        return SizeReport([LayerSize(n.name, n.kind, n.nbytes(), n.float32_bytes)
                           for n in self.nodes if n.nbytes() or n.float32_bytes])

    def __repr__(self) -> str:
        lines = [f"PackedModel({self.meta.get('model', '?')}, input {self.input_shape}, "
                 f"{len(self.nodes)} nodes)"]
        lines += [f"  {n.kind:<15} {n.name:<28} {n.src} -> {', '.join(n.writes())}"
                  for n in self.nodes]
        return "\n".join(lines)

    # ---------------------------------------------------------------------------- storage
    def save(self, path) -> None:
        """Write an .npz atomically (no pickle): HEADER_KEY holds the JSON header, then the
        nodes' arrays."""
        header = {"format": FORMAT, "version": FORMAT_VERSION, "meta": self.meta,
                  "output": self.output, "nodes": [n.state() for n in self.nodes]}
        arrays = {f"n{i}.{k}": v for i, n in enumerate(self.nodes) for k, v in n.arrays().items()}
        save_npz(path, HEADER_KEY, header, arrays)

    @classmethod
    def load(cls, path) -> "PackedModel":
        """Read what save() wrote; PackedFormatError for missing, damaged or foreign files."""
        path = Path(path)
        header, arrays = load_npz(path, HEADER_KEY, PackedFormatError, "packed minibnn model",
                                  hint="; write one with 'minibnn export'")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise PackedFormatError(f"{path}: header format is not {FORMAT!r}")
        version = header.get("version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise PackedFormatError(f"{path}: format version {version!r} cannot be read by this "
                                    f"minibnn (reads versions 1..{FORMAT_VERSION})")
        _check_header(header, arrays, path)
        nodes = [_node_from_state(i, spec, arrays, path) for i, spec in enumerate(header["nodes"])]
        try:
            return cls(nodes, header["meta"], header["output"])
        except (KeyError, ValueError) as err:
            raise PackedFormatError(f"{path}: inconsistent graph ({err})") from err


def _check_header(header: dict, arrays: dict, path) -> None:
    """Field types of a packed model's header, and finite float arrays (one line per problem)."""
    for key, kind in (("nodes", list), ("meta", dict)):
        if not isinstance(header.get(key), kind):
            raise PackedFormatError(f"{path}: header field {key!r} must be a {kind.__name__}, "
                                    f"found {type(header.get(key)).__name__}")
    fields = {"kind": str, "name": str, "attrs": dict}
    for i, spec in enumerate(header["nodes"]):
        if not isinstance(spec, dict):
            raise PackedFormatError(f"{path}: header node {i} must be an object, found "
                                    f"{type(spec).__name__}")
        for key, kind in fields.items():
            if not isinstance(spec.get(key), kind):
                raise PackedFormatError(f"{path}: header node {i} field {key!r} must be a "
                                        f"{kind.__name__}, found {spec.get(key)!r:.40}")
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise PackedFormatError(f"{path}: array {key!r} holds NaN or infinite values")


def _node_from_state(i: int, spec: dict, arrays: dict, path) -> Node:
    try:
        node_cls = NODE_TYPES[spec["kind"]]
        mine = {k[len(f"n{i}."):]: v for k, v in arrays.items() if k.startswith(f"n{i}.")}
        stage = None
        if spec["stage"] is not None:
            stage = Stage(**spec["stage"], **{k[6:]: v for k, v in mine.items()
                                              if k.startswith("stage.")})
        own = {k: v for k, v in mine.items() if not k.startswith("stage.")}
        missing = [a for a in node_cls.ARRAYS if a not in own and a != "bias"]
        if missing:
            raise KeyError(f"missing arrays {missing}")
        return node_cls(spec["name"], spec["src"], **spec["attrs"], **own, stage=stage,
                        dst=spec["dst"], sources=spec["sources"],
                        float32_bytes=spec["float32_bytes"])
    except (KeyError, TypeError, ValueError) as err:
        raise PackedFormatError(f"{path}: node {i} ({spec.get('kind', '?')} "
                                f"{spec.get('name', '?')!r}) is damaged: {err}") from err

"""Per-layer parameters, bits, memory, FLOPs and BOPs of a model, from one forward pass.

What is counted (per input sample):
  - real params: every Parameter, 32 bits each, except the latent weights of binary layers
    (BinaryConv2d/BinaryLinear whose weight quantizer binarizes), which are binary params,
    1 bit each at inference. Scaled binarizers ("xnor", "irnet", "reactnet") add one 32-bit
    scale per output channel. Buffers (batch-norm running statistics) are not counted.
  - FLOPs = real multiply-accumulates (MACs) of convolutions and linear layers; BOPs = binary
    MACs (binary weights times binary activations). A binary layer whose weights stay real
    (weight_quantizer="none", S2-BNN step 1) or whose inputs are real counts FLOPs. A binary
    layer with input_quantizer="identity" counts BOPs when the activations it received were all
    +-1 (ReActNet, where the RSign in front binarizes). BN, activations, pools, additions and
    the packing itself are ignored.
  - OPs = FLOPs + BOPs / 64, the convention of Bi-Real Net (arXiv:1808.00278) and ReActNet
    (arXiv:2003.03488).
Shapes come from one forward of zeros (batch 1, eval mode, no_grad) with each layer's forward
wrapped for the duration of the call; wrappers and train/eval modes are restored afterwards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .autograd import Tensor, no_grad
from .nn import Conv2d, Linear, Module
from .nn.binary import BinaryConv2d, BinaryLinear

__all__ = ["LayerInfo", "Summary", "summary", "human_count", "human_bytes", "SCALED_WEIGHTS"]

SCALED_WEIGHTS = ("xnor", "irnet", "reactnet")   # weight binarizers with a per-channel scale
_MAC_LAYERS = (Conv2d, Linear, BinaryConv2d, BinaryLinear)


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: tuple | None          # per sample (batch axis dropped); None if never called
    real_params: int = 0
    binary_params: int = 0
    scales: int = 0                      # 32-bit per-channel scales of binary weights
    flops: int = 0                       # real MACs
    bops: int = 0                        # binary MACs

    @property
    def bits(self) -> int:
        return 32 * self.real_params + self.binary_params + 32 * self.scales

    @property
    def bytes(self) -> float:
        return self.bits / 8


@dataclass
class Summary:
    """The rows of `summary()` and their totals; str() prints an aligned table."""

    layers: list
    input_shape: tuple
    model: str = ""
    totals: dict = field(init=False)

    def __post_init__(self) -> None:
        keys = ("real_params", "binary_params", "scales", "flops", "bops")
        t = {k: int(sum(getattr(row, k) for row in self.layers)) for k in keys}
        t["params"] = t["real_params"] + t["binary_params"]
        t["bits"] = int(sum(row.bits for row in self.layers))
        t["packed_bytes"] = math.ceil(t["bits"] / 8)
        t["float32_bytes"] = 4 * t["params"]
        t["compression"] = t["float32_bytes"] / t["packed_bytes"] if t["packed_bytes"] else 1.0
        t["ops"] = t["flops"] + t["bops"] / 64
        self.totals = t

    def __getattr__(self, name: str):
        totals = self.__dict__.get("totals", {})
        if name in totals:
            return totals[name]
        raise AttributeError(f"'Summary' object has no attribute {name!r}")

    def to_dict(self) -> dict:
        return {"model": self.model, "input_shape": list(self.input_shape),
                "layers": [dict(asdict(r), bits=r.bits) for r in self.layers],
                "totals": self.totals}

    def __str__(self) -> str:
        head = ("Layer", "Type", "Output", "Real", "Binary", "Memory", "FLOPs", "BOPs")
        rows = [(r.name, r.type, _shape(r.output_shape), human_count(r.real_params),
                 human_count(r.binary_params), human_bytes(r.bytes), human_count(r.flops),
                 human_count(r.bops)) for r in self.layers]
        t = self.totals
        total = ("total", "", "", human_count(t["real_params"]), human_count(t["binary_params"]),
                 human_bytes(t["packed_bytes"]), human_count(t["flops"]), human_count(t["bops"]))
        widths = [max(len(row[i]) for row in [head, total] + rows) for i in range(len(head))]
        left = 3                                           # name, type, shape left-aligned

        def fmt(row):
            return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "-" * len(fmt(head))
        title = f"{self.model or 'model'} on input {_shape(self.input_shape)}"
        lines = [title, rule, fmt(head), rule, *map(fmt, rows), rule, fmt(total), rule]
        lines += [
            f"params: {t['params']:,} ({t['real_params']:,} real, {t['binary_params']:,} binary, "
            f"{t['scales']:,} 32-bit scales)",
            f"memory: {human_bytes(t['packed_bytes'])} packed vs {human_bytes(t['float32_bytes'])} "
            f"float32 ({t['compression']:.1f}x smaller)",
            f"FLOPs {human_count(t['flops'])} (real MACs), "
            f"BOPs {human_count(t['bops'])} (binary MACs), OPs = FLOPs + BOPs/64 = {human_count(t['ops'])}   [convs and linears only]",
        ]
        return "\n".join(lines)


def human_count(n: float) -> str:
    """1234 -> '1.23K', 5.6e6 -> '5.60M' (powers of 1000); small integers as they are."""
    if n < 1000:
        return f"{n:g}" if n != int(n) else f"{int(n)}"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)  # pragma: no cover


def human_bytes(n: float) -> str:
    """Bytes in B, KiB, MiB, GiB (powers of 1024)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:g} B"


def _shape(shape) -> str:
    return "-" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def _is_binary_weight(layer: Module) -> bool:
    return isinstance(layer, (BinaryConv2d, BinaryLinear)) and layer.weight_quantizer.binary


def _num_scales(layer: Module) -> int:
    q = layer.weight_quantizer
    if q.name in SCALED_WEIGHTS:
        return layer.weight.shape[0]
    if q.name == "callable":                       # unknown binarizer: look at its output
        w = np.abs(layer.binary_weight())
        return layer.weight.shape[0] if not np.all(w == 1) else 0
    return 0


def _macs(layer: Module, out: np.ndarray) -> int:
    """Multiply-accumulates per sample: every output element reads fan_in = weight[0].size."""
    return int(np.prod(out.shape[1:])) * int(layer.weight.size // layer.weight.shape[0])


def _tracked(model: Module) -> list:
    """(name, module) of leaves and of modules that own parameters directly."""
    return [(name or type(model).__name__, m) for name, m in model.named_modules()
            if not m._modules or any(p is not None for p in m._parameters.values())]


def _count_params(name: str, m: Module) -> LayerInfo:
    row = LayerInfo(name, type(m).__name__, None)
    for pname, p in m._parameters.items():
        if p is None:
            continue
        if pname == "weight" and _is_binary_weight(m):
            row.binary_params += p.size
            row.scales = _num_scales(m)
        else:
            row.real_params += p.size
    return row


def summary(model: Module, input_shape: tuple | None = None) -> Summary:
    """Run model on zeros of shape (1, *input_shape) and tabulate every layer (module docstring).

    input_shape is per sample, (C, H, W); it defaults to the model's `input_shape` attribute.
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", ())
    input_shape = tuple(input_shape)
    if not input_shape:
        raise ValueError("summary: pass input_shape=(C, H, W); this model has no input_shape")
    tracked = _tracked(model)
    rows = {id(m): _count_params(name, m) for name, m in tracked}
    modes = [(m, m.training) for m in model.modules()]
    saved = []                                        # (module, instance forward or None)

    def wrap(m: Module, original):
        def forward(*args, **kwargs):
            out = original(*args, **kwargs)
            row = rows[id(m)]
            if isinstance(out, Tensor):
                row.output_shape = tuple(out.shape[1:])
                if isinstance(m, _MAC_LAYERS):
                    _add_macs(m, row, args[0], out)
            return out
        return forward

    try:
        for _, m in tracked:
            saved.append((m, m.__dict__.get("forward")))
            object.__setattr__(m, "forward", wrap(m, m.forward))
        model.eval()
        with no_grad():
            model(Tensor(np.zeros((1,) + input_shape, dtype=np.float32)))
    finally:
        for m, previous in saved:
            if previous is None:
                m.__dict__.pop("forward", None)
            else:
                object.__setattr__(m, "forward", previous)
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return Summary([rows[id(m)] for _, m in tracked], input_shape, type(model).__name__)


def _add_macs(m: Module, row: LayerInfo, x: Tensor, out: Tensor) -> None:
    macs = _macs(m, out.data)
    if _is_binary_weight(m):
        binary_input = m.input_quantizer.binary or bool(np.all(np.abs(x.data) == 1))
        if binary_input:
            row.bops += macs
            return
    row.flops += macs

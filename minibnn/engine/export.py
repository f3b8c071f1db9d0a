"""Export a trained model to a PackedModel (engine/runtime.py): the builder and its protocol.

Binary layers: the bits are sign(binary_weight()) packed with bitpack (bit 1 means -1) and the
per-output-channel magnitude alpha = |binary_weight()| goes into the layer's output stage, so
any weight binarizer (xnor, irnet, reactnet, sign) exports the weight its forward really uses.
What follows a layer is folded into that stage, per output channel m (engine/stage.py):

    conv -> [maxpool] -> BN -> [+ shortcut] -> act -> [sign]
    t = ((float32(max acc) * alpha_m - mu_m) * inv_std_m) * gamma_m + beta_m (+ r) -> act(t)

Max-pool runs on the integer accumulators (exact, since alpha >= 0); BN keeps the model's own
float32 operation order (inv_std = 1 / sqrt(var + eps) as nn.BatchNorm computes it) instead of
collapsing into one scale and bias, so a layer whose float accumulator is exact (IR-Net's
power-of-two scales) matches the model bit for bit. A stage that only feeds the next sign
becomes an integer threshold per channel (graph.Stage.integer_threshold). Real-valued layers
stay float32. Anything the engine cannot run raises ExportError naming the layer.

The protocol. `export(model)` walks the model in forward order with an ExportBuilder, which
knows the modules of minibnn.nn: Sequential (its children in order); Conv2d, BinaryConv2d,
Linear and BinaryLinear, each absorbing a following MaxPool2d (window = stride), BatchNorm and
activation (Hardtanh, ReLU, Identity, RPReLU) into its stage, and an RSign in front of a binary
layer into the layer's sign; a BatchNorm or activation on its own; Flatten. A module that
defines

    export_packed(self, builder, x) -> value

exports itself instead: it gets the builder and the value holding its input, and returns the
value holding its output, calling only the builder's methods below. Blocks and architectures
(minibnn/models) describe their own export this way, so the engine imports nothing above nn
and a new architecture needs no engine edit. `export` needs the model itself to define
export_packed and `input_shape` = (C, H, W); every minibnn Backbone does (models/base.py).

    builder.chain(modules, x)             modules applied in sequence, folded as above
    builder.layer(layers, x, pool=, bns=, act=, rsign=, residual=)
                                          one conv / linear layer, or several binary ones
                                          sharing x (outputs concatenated), with its stage
    builder.residual(v, stride=1, offset=0, repeats=1)
                                          a shortcut added in a stage: v[:, ::s, ::s] into
                                          channels offset.., tiled `repeats` times
    builder.flatten(x, features)          (N, C, H, W) -> (N, features), the model's NCHW order
    builder.global_avg_pool(x)            (N, C, H, W) -> (N, C)
    builder.avg_down2(x, module)          2x2 average, stride 2, odd sizes padded by repetition
    builder.l2_normalize(x)               rows to unit L2 norm
    builder.absorb(*modules)              mark parameter-free modules as folded away
    builder.fail(module, why)             raise ExportError naming the layer
    builder.name(module)                  the module's dotted name in the model

A value `x` is opaque apart from x.channels and x.layout ("nchw" = the model input, "nhwc",
"flat"). Every parameter-free leaf module an export_packed folds away without passing it to
the builder must be absorbed: a leaf that no step used makes export fail. A worked example:
docs/packed_export.md.

Exactness: accumulators are exact integers; everything after them replays the model's float32
ops. Differences remain only where the model's own conv sum of +-alpha terms is inexact (alpha
not a power of two: XNOR-Net, ReActNet scales) AND a pre-activation lies within rounding of 0,
and in summation orders (ReActNet's 2x2 average, global pooling, float classifier) that move
logits by ~1e-6. A BN still at its init (mean 0, beta 0) with XNOR scales puts the threshold
exactly at acc = 0, where the float model's sign is its BLAS rounding noise (+-1e-8) while the
engine returns the exact sign(0) = +1. What was measured: docs/engine_speed.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..nn import (BatchNorm1d, BatchNorm2d, BinaryConv2d, BinaryLinear, Conv2d, Flatten,
                  Hardtanh, Identity, Linear, MaxPool2d, Module, ReLU, RPReLU, RSign, Sequential)
from . import bitpack, graph
from .runtime import INPUT, PackedModel

__all__ = ["export", "ExportError", "ExportBuilder", "Value", "Residual", "PROTOCOL"]

PROTOCOL = "export_packed"          # the method a module defines to export itself
_ACTS = (Hardtanh, ReLU, Identity, RPReLU)
_LAYERS = (Conv2d, BinaryConv2d, Linear, BinaryLinear)


class ExportError(ValueError):
    """The model holds something the packed engine cannot run; the message names the layer."""


@dataclass
class Value:
    """An activation during export: its float register, layout ("nchw" = the model input,
    "nhwc" or "flat"), channel count, the stage that wrote it (which can also emit its signs),
    and the sign registers made so far (keyed by the sign's bias)."""

    reg: str
    layout: str
    channels: int
    stage: graph.Stage | None = None
    signs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Residual:
    """A shortcut added inside a layer's stage: value[:, ::stride, ::stride] added to output
    channels offset .. offset + repeats * C (tiled; other channels get nothing)."""

    value: Value
    stride: int = 1
    offset: int = 0
    repeats: int = 1


def _nbytes32(*modules) -> int:
    """Bytes of the modules' parameters and buffers in float32."""
    return 4 * sum(sum(p.data.size for p in m.parameters())
                   + sum(b.size for _, b in m.named_buffers()) for m in modules if m is not None)


def _exports_itself(module) -> bool:
    return callable(getattr(module, PROTOCOL, None))


class ExportBuilder:
    """Walks a model in forward order and appends graph nodes (the API: module docstring)."""

    def __init__(self, model: Module):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.nodes: list = []
        self.seen: set = set()
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}{self._count}"

    def name(self, module: Module) -> str:
        return self.names.get(id(module), type(module).__name__)

    def absorb(self, *modules) -> int:
        """Mark modules (and their submodules) as exported; returns their float32 bytes."""
        for m in modules:
            if m is not None:
                self.seen.update(id(sub) for sub in m.modules())
        return _nbytes32(*modules)

    def fail(self, module: Module, why: str):
        raise ExportError(f"layer {self.name(module)!r} ({type(module).__name__}): {why}")

    @staticmethod
    def residual(value: Value, stride: int = 1, offset: int = 0, repeats: int = 1) -> Residual:
        return Residual(value, int(stride), int(offset), int(repeats))

    # ------------------------------------------------------------------------- signs
    def _signs(self, v: Value, bias: np.ndarray | None, consumer: Module) -> str:
        """The register holding packed sign(v + bias), made once per (value, bias)."""
        if v.layout == "nchw":
            self.fail(consumer, "a binary layer directly on the model input is not supported")
        key = None if bias is None else np.asarray(bias, np.float32).tobytes()
        if key not in v.signs:
            reg = self.fresh("s")
            if v.stage is not None and v.stage.bits is None:        # fuse into the producer
                v.stage.emit_signs(reg, bias)
            else:
                st = graph.Stage(v.channels, bits=reg, sign_bias=bias)
                self.nodes.append(graph.StageOp(f"sign({v.reg})", v.reg, stage=st))
            v.signs[key] = reg
        return v.signs[key]

    # ------------------------------------------------------------------------ stages
    def _stage(self, m: int, pool=None, bns=(), act=None, res: Residual | None = None,
               alpha=None):
        """Stage arrays and attributes for a layer with m outputs, and the bytes absorbed."""
        arrays, attrs, nbytes = {"alpha": alpha}, {}, self.absorb(pool, act, *bns)
        if pool is not None:
            if pool.kernel_size != pool.stride or pool.padding != 0:
                self.fail(pool, "only max-pooling with window == stride and no padding")
            attrs["pool"] = pool.kernel_size
        if bns:
            if sum(bn.num_features for bn in bns) != m:
                self.fail(bns[0], f"BatchNorm over {[bn.num_features for bn in bns]} channels "
                                  f"after a layer with {m} outputs")
            mean = [np.asarray(bn.running_mean).astype(np.float32) for bn in bns]
            inv = [(1.0 / np.sqrt(bn.running_var + bn.eps)).astype(np.float32) for bn in bns]
            one = [np.ones(bn.num_features, np.float32) for bn in bns]
            gamma = [o if bn.weight is None else bn.weight.data for o, bn in zip(one, bns)]
            beta = [0 * o if bn.bias is None else bn.bias.data for o, bn in zip(one, bns)]
            arrays.update(mean=np.concatenate(mean), inv_std=np.concatenate(inv),
                          gamma=np.concatenate(gamma), beta=np.concatenate(beta))
        if isinstance(act, Hardtanh):
            attrs.update(act="hardtanh", lo=act.min_val, hi=act.max_val)
        elif isinstance(act, ReLU):
            attrs["act"] = "relu"
        elif isinstance(act, RPReLU):
            slope = np.broadcast_to(act.prelu.weight.data, (m,))
            attrs["act"] = "rprelu"
            arrays.update(b_in=act.shift_in.bias.data, slope=slope, b_out=act.shift_out.bias.data)
        elif act is not None and not isinstance(act, Identity):
            self.fail(act, f"activation not supported by the packed engine; use one of "
                           f"{[c.__name__ for c in _ACTS]}")
        if res is not None:
            attrs.update(res=res.value.reg, res_stride=res.stride, res_off=res.offset,
                         res_reps=res.repeats)
        trivial = alpha is None and not bns and not attrs
        st = None if trivial else graph.Stage(m, out=self.fresh("x"), **attrs, **arrays)
        return st, nbytes

    def _packed_weight(self, layer: Module) -> tuple:
        """(uint64 words, alpha float32 (M,)) from sign and magnitude of binary_weight()."""
        wb = np.asarray(layer.binary_weight(), np.float32)
        mag = np.abs(wb.reshape(wb.shape[0], -1))
        alpha = mag.max(axis=1)
        if not np.all(np.isfinite(wb)) or np.any(mag != alpha[:, None]):
            self.fail(layer, f"binary_weight() is not +-alpha per output channel (weight "
                             f"quantizer {layer.weight_quantizer!r}); only binarized weights pack")
        if layer.bias is not None:
            self.fail(layer, "binary layers with a bias are not supported (the models use none)")
        return (bitpack.pack_nhwc(wb) if wb.ndim == 4 else bitpack.pack_rows(wb)), alpha

    def _sign_bias(self, layer: Module, bias):
        if layer.input_quantizer.binary or bias is not None:
            return bias                      # sign(sign(x + b)) = sign(x + b)
        self.fail(layer, f"input quantizer {layer.input_quantizer!r} does not binarize and no "
                         f"RSign precedes it, so the input is real-valued")

    # ------------------------------------------------------------------------ layers
    def layer(self, layers, x: Value, *, pool=None, bns=(), act=None,
              residual: Value | Residual | None = None, rsign: RSign | None = None) -> Value:
        """One layer (or several binary ones sharing an input, outputs concatenated) plus the
        stage folded from what follows it; `rsign` is a ReActNet RSign in front (its learnable
        bias becomes the bias of the packed sign). Returns the value the layer writes."""
        if rsign is not None and not rsign.quantizer.binary:
            self.fail(rsign, "RSign does not binarize (a real twin?); export binary models")
        layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        bns = [b for b in (bns if isinstance(bns, (list, tuple)) else [bns]) if b is not None]
        res = self.residual(residual) if isinstance(residual, Value) else residual
        first, name = layers[0], self.name(layers[0])
        if not isinstance(first, _LAYERS):
            self.fail(first, f"not a layer the engine packs ({[c.__name__ for c in _LAYERS]})")
        conv = isinstance(first, (Conv2d, BinaryConv2d))
        if (x.layout == "flat") == conv:
            self.fail(first, f"expects {'an image' if conv else 'a flat'} input, found {x.layout}")
        geometry = [(type(l), getattr(l, "in_channels", None) or l.in_features,
                     getattr(l, "kernel_size", 0), getattr(l, "stride", 0),
                     getattr(l, "padding", 0)) for l in layers]
        if len(set(geometry)) > 1:
            self.fail(layers[1], f"cannot share an input with {name!r}: {geometry}")
        sizes = [getattr(l, "out_channels", None) or l.out_features for l in layers]
        m, nbytes = sum(sizes), self.absorb(*layers, rsign)
        sign_bias = None if rsign is None else rsign.shift.bias.data
        if isinstance(first, (BinaryConv2d, BinaryLinear)):
            packed = [self._packed_weight(l) for l in layers]
            st, extra = self._stage(m, pool, bns, act, res,
                                    alpha=np.concatenate([a for _, a in packed]))
            words = np.concatenate([w for w, _ in packed])
            src = self._signs(x, self._sign_bias(first, sign_bias), first)
            edges = np.cumsum([0] + sizes)
            kw = dict(stage=st, sources=[[self.name(l), int(a), int(b)] for l, a, b in
                                         zip(layers, edges[:-1], edges[1:])],
                      float32_bytes=nbytes + extra)
            if conv:
                node = graph.BinaryConv(name, src, words, first.in_channels, first.stride,
                                        first.padding, **kw)
            else:
                node = graph.BinaryDense(name, src, words, first.in_features, **kw)
        else:
            if len(layers) > 1 or sign_bias is not None:
                self.fail(first, "real layers are exported one at a time, without a sign")
            st, extra = self._stage(m, pool, bns, act, res)
            w, b = first.weight.data, None if first.bias is None else first.bias.data
            kw = dict(stage=st, dst=None if st else self.fresh("x"), float32_bytes=nbytes + extra)
            if conv:
                k = first.kernel_size
                node = graph.FloatConv(name, x.reg, w.transpose(0, 2, 3, 1).reshape(m, -1), k,
                                       first.stride, first.padding, x.layout == "nchw", b, **kw)
            else:
                node = graph.FloatDense(name, x.reg, w, b, **kw)
        self.nodes.append(node)
        return Value(st.out if st else node.dst, "nhwc" if conv else "flat", m, st)

    # --------------------------------------------------------- parameter-free steps
    def _simple(self, kind, x: Value, out_layout: str, module=None, channels=None,
                **kw) -> Value:
        """A parameter-free node writing a new register, named after `module` (or its kind)."""
        dst = self.fresh("x")
        self.nodes.append(graph.NODE_TYPES[kind](kind if module is None else self.name(module),
                                                 x.reg, dst=dst, **kw))
        self.absorb(module)
        return Value(dst, out_layout, x.channels if channels is None else channels)

    def flatten(self, x: Value, features: int, module=None) -> Value:
        """(N, C, H, W) -> (N, features) in the model's NCHW order."""
        layout = "nchw" if x.layout == "nchw" else "nhwc"
        return self._simple("flatten", x, "flat", module, channels=int(features), layout=layout)

    def global_avg_pool(self, x: Value, module=None) -> Value:
        return self._simple("global_avg_pool", x, "flat", module)

    def avg_down2(self, x: Value, module=None) -> Value:
        return self._simple("avg_down2", x, "nhwc", module)

    def l2_normalize(self, x: Value, module=None) -> Value:
        return self._simple("l2_normalize", x, "flat", module)

    # ------------------------------------------------------------------ containers
    def chain(self, modules, x: Value) -> Value:
        """Modules applied in sequence; each layer absorbs a following pool, BN and activation,
        a module with export_packed exports itself."""
        modules, i = list(modules), 0
        while i < len(modules):
            mod = modules[i]
            if _exports_itself(mod):
                x, i = self._delegate(mod, x), i + 1
                continue
            if isinstance(mod, Sequential):
                self.seen.add(id(mod))                  # the container; children below
                x, i = self.chain(mod.children(), x), i + 1
                continue
            if isinstance(mod, Flatten):
                if x.layout == "flat":
                    self.absorb(mod)
                else:
                    x = self._simple("flatten", x, "flat", mod, channels=-1, layout=(
                        "nchw" if x.layout == "nchw" else "nhwc"))
                i += 1
                continue
            rsign = None
            if isinstance(mod, RSign) and i + 1 < len(modules) \
                    and isinstance(modules[i + 1], (BinaryConv2d, BinaryLinear)):
                rsign, i = mod, i + 1                   # its bias becomes the sign's bias
                mod = modules[i]
            j, pool, bn, act = i + 1, None, None, None
            is_layer = isinstance(mod, _LAYERS)
            if is_layer and j < len(modules) and type(modules[j]) is MaxPool2d:
                pool, j = modules[j], j + 1
            if not is_layer:
                j = i
            if j < len(modules) and isinstance(modules[j], (BatchNorm1d, BatchNorm2d)):
                bn, j = modules[j], j + 1
            if j < len(modules) and isinstance(modules[j], _ACTS):
                act, j = modules[j], j + 1
            if j == i:
                self.fail(mod, f"not supported by the packed engine (a block exports itself by "
                               f"defining {PROTOCOL}(builder, x); see minibnn.engine.export)")
            if is_layer:
                x = self.layer(mod, x, pool=pool, bns=[bn], act=act, rsign=rsign)
            else:                                       # BN and/or activation on their own
                st, nbytes = self._stage(x.channels, None, [b for b in [bn] if b], act)
                if st is not None:
                    self.nodes.append(graph.StageOp(self.name(modules[i]), x.reg, stage=st,
                                                    float32_bytes=nbytes))
                    x = Value(st.out, x.layout, x.channels, st)
            i = j
        return x

    def _delegate(self, module: Module, x: Value) -> Value:
        out = getattr(module, PROTOCOL)(self, x)
        if not isinstance(out, Value):
            self.fail(module, f"{PROTOCOL} must return the value its last builder call gave, "
                              f"found {type(out).__name__}")
        return out


def export(model: Module, *, meta: dict | None = None) -> PackedModel:
    """Export a model (eval statistics are read; the model is not modified).

    The model defines export_packed(builder, x) and input_shape (C, H, W), as every minibnn
    Backbone does. meta is stored in the packed file (e.g. model name, dataset, mean, std; see
    commands/export.py). Raises ExportError naming the first layer that cannot be packed.
    """
    shape = getattr(model, "input_shape", None)
    if not _exports_itself(model) or not shape:
        raise ExportError(f"export supports models that define {PROTOCOL}(builder, x) and "
                          f"input_shape (C, H, W), as the minibnn models do; found "
                          f"{type(model).__name__}")
    builder = ExportBuilder(model)
    out = builder._delegate(model, Value(INPUT, "nchw", int(shape[0])))
    for name, mod in model.named_modules():
        if id(mod) not in builder.seen and not list(mod.children()):
            raise ExportError(f"layer {name!r} ({type(mod).__name__}) is not part of any "
                              f"exported step; the packed engine does not know where it goes")
    info = {"model": type(model).__name__, "input_shape": list(model.input_shape),
            "num_classes": int(out.channels)}
    info.update(meta or {})
    return PackedModel(builder.nodes, info, output=out.reg)

"""Export a trained minibnn model to a PackedModel (engine/runtime.py) for bit-packed inference.

Binary layers: the bits are sign(binary_weight()) packed with bitpack (bit 1 means -1) and the
per-output-channel magnitude alpha = |binary_weight()| goes into the layer's output stage, so
any weight binarizer (xnor, irnet, reactnet, sign) exports the weight its forward really uses.
What follows a layer is folded into that stage, per output channel m (engine/ops.py):

    conv -> [maxpool] -> BN -> [+ shortcut] -> act -> [sign]
    t = ((float32(max acc) * alpha_m - mu_m) * inv_std_m) * gamma_m + beta_m (+ r) -> act(t)

Max-pool runs on the integer accumulators (exact, since alpha >= 0); BN keeps the model's own
float32 operation order (inv_std = 1 / sqrt(var + eps) as nn.BatchNorm computes it) instead of
collapsing into one scale and bias, so a layer whose float accumulator is exact (IR-Net's
power-of-two scales) matches the model bit for bit. A stage that only feeds the next sign
becomes an integer threshold per channel (graph.Stage.integer_threshold). Shortcuts (identity,
option A, real or binary 1x1 conv, ReActNet's 2x2 average pool), RSign's learnable bias (as
the sign's bias), RPReLU and ReActNet's concatenated 1x1 pair (one conv with 2C outputs) are
supported; real-valued first and last layers stay float32. Anything else raises ExportError
naming the layer.

Exactness: accumulators are exact integers; everything after them replays the model's float32
ops. Differences remain only where the model's own conv sum of +-alpha terms is inexact (alpha
not a power of two: XNOR-Net, ReActNet scales) AND a pre-activation lies within rounding of 0,
and in summation orders (ReActNet's 2x2 average, global pooling, float classifier) that move
logits by ~1e-6. Measured on the 2,000 mnist-t10k validation images, all six architectures,
random weights with perturbed BN and 1-epoch-trained: 0 sign flips, 0 prediction changes.
One known case: BN still at its init (mean 0, beta 0) with XNOR scales puts the threshold
exactly at acc = 0, where the float model's sign is its BLAS rounding noise (+-1e-8) while the
engine returns the exact sign(0) = +1 (1-3 % of decisions for mlp/cnn at init).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..models import MLP, ReActNet, ResNet, SmallCNN, VGGSmall
from ..models.heads import MLPHead
from ..models.reactnet import AvgDown2, ReActBlock
from ..models.resnet import BiRealBlock, ShortcutA
from ..nn import (BatchNorm1d, BatchNorm2d, BinaryConv2d, BinaryLinear, Conv2d, Flatten,
                  Hardtanh, Identity, Linear, MaxPool2d, Module, ReLU, RPReLU, Sequential)
from . import bitpack, graph
from .runtime import INPUT, PackedModel

__all__ = ["export", "ExportError", "SUPPORTED_MODELS"]

SUPPORTED_MODELS = (MLP, SmallCNN, VGGSmall, ResNet, ReActNet)
_ACTS = (Hardtanh, ReLU, Identity, RPReLU)


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


def _nbytes32(*modules) -> int:
    """Bytes of the modules' parameters and buffers in float32."""
    return 4 * sum(sum(p.data.size for p in m.parameters())
                   + sum(b.size for _, b in m.named_buffers()) for m in modules if m is not None)


class _Builder:
    """Walks a model in forward order and appends graph nodes."""

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
        for m in modules:
            if m is not None:
                self.seen.update(id(sub) for sub in m.modules())
        return _nbytes32(*modules)

    def fail(self, module: Module, why: str):
        raise ExportError(f"layer {self.name(module)!r} ({type(module).__name__}): {why}")

    # ------------------------------------------------------------------------- signs
    def signs(self, v: Value, bias: np.ndarray | None, consumer: Module) -> str:
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
    def stage(self, m: int, pool=None, bns=(), act=None, res=None, alpha=None):
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
            value, stride, off, reps = res
            attrs.update(res=value.reg, res_stride=stride, res_off=off, res_reps=reps)
        trivial = alpha is None and not bns and not attrs
        st = None if trivial else graph.Stage(m, out=self.fresh("x"), **attrs, **arrays)
        return st, nbytes

    def packed_weight(self, layer: Module) -> tuple:
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

    # ------------------------------------------------------------------------ layers
    def layer(self, layers, x: Value, *, pool=None, bns=(), act=None, res=None,
              rsign=None) -> Value:
        """One layer (or several binary ones sharing an input, outputs concatenated) plus the
        stage folded from what follows it; `rsign` is a ReActNet RSign in front (its learnable
        bias becomes the bias of the packed sign). Returns the value the layer writes."""
        layers = layers if isinstance(layers, (list, tuple)) else [layers]
        bns = [b for b in (bns if isinstance(bns, (list, tuple)) else [bns]) if b is not None]
        first, name = layers[0], self.name(layers[0])
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
            packed = [self.packed_weight(l) for l in layers]
            st, extra = self.stage(m, pool, bns, act, res,
                                   alpha=np.concatenate([a for _, a in packed]))
            words = np.concatenate([w for w, _ in packed])
            src = self.signs(x, self._sign_bias(first, sign_bias), first)
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
            st, extra = self.stage(m, pool, bns, act, res)
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

    def _sign_bias(self, layer: Module, bias):
        if layer.input_quantizer.binary or bias is not None:
            return bias                      # sign(sign(x + b)) = sign(x + b)
        self.fail(layer, f"input quantizer {layer.input_quantizer!r} does not binarize and no "
                         f"RSign precedes it, so the input is real-valued")

    def simple(self, kind, x: Value, out_layout: str, module=None, channels=None, **kw) -> Value:
        """A parameter-free node (flatten, pooling, normalisation) writing a new register."""
        dst = self.fresh("x")
        self.nodes.append(graph.NODE_TYPES[kind](kind if module is None else self.name(module),
                                                 x.reg, dst=dst, **kw))
        self.absorb(module)
        return Value(dst, out_layout, x.channels if channels is None else channels)

    # ------------------------------------------------------------------ containers
    def chain(self, modules: list, x: Value) -> Value:
        """Modules applied in sequence; each layer absorbs a following pool, BN and activation."""
        i = 0
        while i < len(modules):
            mod = modules[i]
            if isinstance(mod, Sequential):
                x, i = self.chain(list(mod.children()), x), i + 1
                self.absorb(mod)
                continue
            if isinstance(mod, MLPHead):
                x = self.chain([mod.fc1, mod.relu, mod.fc2], x)
                if mod.normalize:
                    x = self.simple("l2_normalize", x, "flat")
                self.absorb(mod)
                i += 1
                continue
            if isinstance(mod, Flatten) and x.layout != "flat":
                x, i = self.simple("flatten", x, "flat", mod, channels=-1), i + 1
                continue
            j, pool, bn, act = i + 1, None, None, None
            is_layer = isinstance(mod, (Conv2d, BinaryConv2d, Linear, BinaryLinear))
            if is_layer and j < len(modules) and isinstance(modules[j], MaxPool2d):
                pool, j = modules[j], j + 1
            if not is_layer:
                j = i
            if j < len(modules) and isinstance(modules[j], (BatchNorm1d, BatchNorm2d)):
                bn, j = modules[j], j + 1
            if j < len(modules) and isinstance(modules[j], _ACTS):
                act, j = modules[j], j + 1
            if j == i:
                self.fail(mod, "not supported by the packed engine")
            if is_layer:
                x = self.layer(mod, x, pool=pool, bns=[bn], act=act)
            else:                                       # BN and/or activation on their own
                st, nbytes = self.stage(x.channels, None, [b for b in [bn] if b], act)
                if st is not None:
                    self.nodes.append(graph.StageOp(self.name(modules[i]), x.reg, stage=st,
                                                    float32_bytes=nbytes))
                    x = Value(st.out, x.layout, x.channels, st)
            i = j
        return x

    # ---------------------------------------------------------------------- blocks
    def resnet_block(self, blk: BiRealBlock, x: Value) -> Value:
        """h = act1(BN1(conv1(x)) + D(x)); out = act2(BN2(conv2(h)) + h)."""
        ds = blk.downsample
        if isinstance(ds, Identity):
            res = (x, 1, 0, 1)
        elif isinstance(ds, ShortcutA):          # x[:, ::s, ::s] into channels lo .. lo + C
            res = (x, ds.stride, ds.pad[0], 1)
        elif isinstance(ds, Sequential) and len(list(ds.children())) == 2:
            conv, bn = ds.children()
            res = (self.layer(conv, x, bns=[bn]), 1, 0, 1)
        else:
            self.fail(ds, "unsupported shortcut")
        self.absorb(ds, blk)
        h = self.layer(blk.conv1, x, bns=[blk.bn1], act=blk.act1, res=res)
        return self.layer(blk.conv2, h, bns=[blk.bn2], act=blk.act2, res=(h, 1, 0, 1))

    def reactnet_block(self, blk: ReActBlock, x: Value) -> Value:
        """y = RPReLU(BN(bconv3(RSign(x))) + pool(x));
        out = RPReLU(concat_i [BN_i(bconv1_i(RSign(y))) + y]): one conv with all 1x1 outputs."""
        for sign in (blk.sign3, blk.sign1):
            if not sign.quantizer.binary:
                self.fail(sign, "RSign does not binarize (a real twin?); export binary models")
        self.absorb(blk.pool, blk)
        r = x
        if isinstance(blk.pool, AvgDown2):
            r = self.simple("avg_down2", x, "nhwc", blk.pool)
        elif not isinstance(blk.pool, Identity):
            self.fail(blk.pool, "unsupported pooling shortcut")
        y = self.layer(blk.conv3, x, bns=[blk.bn3], act=blk.act3, res=(r, 1, 0, 1),
                       rsign=blk.sign3)
        convs, bns = list(blk.convs1), list(blk.bns1)
        return self.layer(convs, y, bns=bns, act=blk.act1, res=(y, 1, 0, len(convs)),
                          rsign=blk.sign1)

    def model(self, model: Module) -> Value:
        if not isinstance(model, SUPPORTED_MODELS):
            raise ExportError(f"export supports {[c.__name__ for c in SUPPORTED_MODELS]}; "
                              f"found {type(model).__name__}")
        c = model.input_shape[0]
        x = Value(INPUT, "nchw", c)
        if isinstance(model, MLP):
            x = self.simple("flatten", x, "flat", channels=int(np.prod(model.input_shape)),
                            layout="nchw")
            x = self.chain([model.input_layer, *model.hidden], x)
            return self.chain([model.classifier], x)
        if isinstance(model, (SmallCNN, VGGSmall)):
            body = model.stages if isinstance(model, SmallCNN) else model.layers
            x = self.simple("flatten", self.chain(list(body), x), "flat",
                            channels=model.embedding_dim)
            return self.chain([model.classifier], x)
        if isinstance(model, ResNet):
            x = self.chain([model.stem], x)
            for stage in model.stages:
                self.absorb(stage)
                for blk in stage:
                    if not isinstance(blk, BiRealBlock):
                        self.fail(blk, "unsupported block")
                    x = self.resnet_block(blk, x)
            return self.chain([model.classifier], self.simple("global_avg_pool", x, "flat"))
        if isinstance(model, ReActNet):
            x = self.layer(model.stem_conv, x, bns=[model.stem_bn])
            for blk in model.blocks:
                x = self.reactnet_block(blk, x)
        return self.chain([model.classifier], self.simple("global_avg_pool", x, "flat"))


def export(model: Module, *, meta: dict | None = None) -> PackedModel:
    """Export a minibnn model (eval statistics are read; the model is not modified).

    meta is stored in the packed file (e.g. model name, dataset, mean, std; see
    commands/export.py). Raises ExportError naming the first layer that cannot be packed.
    """
    builder = _Builder(model)
    out = builder.model(model)
    for name, mod in model.named_modules():
        if id(mod) not in builder.seen and not list(mod.children()):
            raise ExportError(f"layer {name!r} ({type(mod).__name__}) is not part of any "
                              f"exported step; the packed engine does not know where it goes")
    info = {"model": type(model).__name__, "input_shape": list(model.input_shape),
            "num_classes": int(out.channels)}
    info.update(meta or {})
    return PackedModel(builder.nodes, info, output=out.reg)

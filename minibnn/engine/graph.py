"""The nodes of an exported model: packed binary layers, real layers and reshaping steps.

Nodes read and write registers (named arrays). Activations are channels last: float32
(N, H, W, C) or (N, D), packed signs uint64 (N, H, W, ceil(C/64)) or (N, ceil(D/64)) with bit 1
meaning -1 (engine/bitpack.py). A layer node ends in a `Stage` (engine/stage.py): the int32
accumulators of a binary layer, or the float32 output of a real one, go through
[max-pool] -> * alpha -> BatchNorm -> [+ residual] -> activation -> float and/or packed signs.
When a binary layer only feeds the sign of the next binary layer, its stage is an integer
threshold per channel (`Stage.integer_threshold`) that the conv kernel applies itself.
"""

from __future__ import annotations

import numpy as np

from . import conv, float_layers, gemm
from .stage import ACTIVATIONS, stage as output_stage

__all__ = ["Stage", "Node", "BinaryConv", "BinaryDense", "FloatConv", "FloatDense", "StageOp",
           "AvgDown2", "GlobalAvgPool", "Flatten", "L2Normalize", "NODE_TYPES"]


def _vector(name: str, v, m: int) -> np.ndarray:
    v = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
    if v.shape != (m,):
        raise ValueError(f"stage vector {name!r} must have shape ({m},), found {v.shape}")
    return v


class Stage:
    """The fused output stage of one layer, M output channels (see engine/stage.py for the math).

    Arrays (float32 (M,), only those given are stored): alpha, mean, inv_std, gamma, beta
    (BatchNorm with inv_std = 1 / sqrt(var + eps) as nn.BatchNorm computes it), b_in, slope,
    b_out (RPReLU), sign_bias (the RSign shift applied before packing signs).
    Attributes: pool (max-pool window = stride, 1 = none), act, lo/hi (hardtanh), res / res_stride
    / res_off / res_reps (residual register, its spatial subsampling, first channel, how many
    times it is tiled along channels), out (float register or None), bits (sign register or None).
    """

    ARRAYS = ("alpha", "mean", "inv_std", "gamma", "beta", "b_in", "slope", "b_out", "sign_bias")
    ATTRS = ("m", "pool", "act", "lo", "hi", "res", "res_stride", "res_off", "res_reps", "out",
             "bits")

    def __init__(self, m: int, *, pool: int = 1, act: str = "identity", lo: float = -1.0,
                 hi: float = 1.0, res: str | None = None, res_stride: int = 1, res_off: int = 0,
                 res_reps: int = 1, out: str | None = None, bits: str | None = None, **arrays):
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown stage activation {act!r}; one of {list(ACTIVATIONS)}")
        unknown = set(arrays) - set(self.ARRAYS)
        if unknown:
            raise ValueError(f"unknown stage arrays {sorted(unknown)}")
        if act == "rprelu" and not {"b_in", "slope", "b_out"} <= set(arrays):
            raise ValueError("an rprelu stage needs b_in, slope and b_out")
        self.m, self.pool, self.act, self.lo, self.hi = int(m), int(pool), act, float(lo), float(hi)
        self.res, self.res_stride = res, int(res_stride)
        self.res_off, self.res_reps = int(res_off), int(res_reps)
        self.out, self.bits = out, bits
        self.arrays = {k: _vector(k, v, self.m) for k, v in arrays.items() if v is not None}
        ones, zeros = np.ones(self.m, np.float32), np.zeros(self.m, np.float32)
        self._defaults = dict(alpha=ones, mean=zeros, inv_std=ones, gamma=ones, beta=zeros,
                              b_in=zeros, slope=ones, b_out=zeros, sign_bias=zeros)

    def emit_signs(self, reg: str, bias=None) -> None:
        """Also write packed sign(t + bias) of the stage's result t to register `reg`."""
        self.bits = reg
        if bias is not None:
            self.arrays["sign_bias"] = _vector("sign_bias", bias, self.m)

    def get(self, key: str) -> np.ndarray:
        return self.arrays.get(key, self._defaults[key])

    def apply(self, x: np.ndarray, regs: dict) -> None:
        """Run on x (N, H, W, M) or (N, M), int32 or float32; write regs[out] / regs[bits]."""
        flat = x.ndim == 2
        x4 = x.reshape(x.shape[0], 1, 1, -1) if flat else x
        res = None
        if self.res is not None:
            res = regs[self.res]
            res = res.reshape(res.shape[0], 1, 1, -1) if res.ndim == 2 else res
        g = self.get
        out, bits = output_stage(x4, self.pool, g("alpha"), g("mean"), g("inv_std"), g("gamma"),
                              g("beta"), res, self.res_stride, self.res_off, self.res_reps,
                              self.act, self.lo, self.hi, g("b_in"), g("slope"), g("b_out"),
                              g("sign_bias"), want_out=self.out is not None,
                              want_bits=self.bits is not None)
        if self.out is not None:
            regs[self.out] = out.reshape(x.shape[0], -1) if flat else out
        if self.bits is not None:
            regs[self.bits] = bits.reshape(x.shape[0], -1) if flat else bits

    def integer_threshold(self, k: int):
        """(scale, bias) float32 (M,) for the kernels' fused sign stage, or None.

        Runs this very stage on every accumulator value a in [-k, k] and reads off, per
        channel, the set of a that give the bit -1. When each set is empty, everything, a
        prefix {a < T} or a suffix {a >= T} (always, since every step is monotone, unless a
        slope of RPReLU is negative), returns scale, bias with
            float32(a) * scale + bias < 0   <=>   bit(a) = 1         for all integer a
        (scale, bias) = (0, +1), (0, -1), (1, -T) or (-1, T - 1): integers, exact in float32.
        """
        if self.pool != 1 or self.res is not None or self.out is not None or self.bits is None:
            return None
        a = np.arange(-k, k + 1, dtype=np.int32)
        grid = np.repeat(a[:, None, None, None], self.m, axis=3)               # (2k+1,1,1,M)
        regs: dict = {}
        probe = Stage(self.m, act=self.act, lo=self.lo, hi=self.hi, bits="b", **self.arrays)
        probe.apply(grid, regs)
        neg = np.unpackbits(regs["b"].reshape(a.size, -1).view(np.uint8), axis=1,
                            count=self.m, bitorder="little").astype(bool)        # (2k+1, M)
        if np.any((neg[1:] != neg[:-1]).sum(axis=0) > 1):      # not an interval: no threshold
            return None
        first_true = np.where(neg.any(axis=0), neg.argmax(axis=0), a.size)       # (M,)
        first_false = np.where((~neg).any(axis=0), (~neg).argmax(axis=0), a.size)
        scale = np.zeros(self.m, np.float32)
        bias = np.where(neg[0], -1.0, 1.0).astype(np.float32)                    # constants
        prefix = neg[0] & ~neg[-1]
        suffix = ~neg[0] & neg[-1]
        scale[prefix], bias[prefix] = 1.0, -(first_false[prefix] - k)           # a < T
        scale[suffix], bias[suffix] = -1.0, (first_true[suffix] - k) - 1        # a >= T
        return scale, bias

    def state(self) -> tuple[dict, dict]:
        return {key: getattr(self, key) for key in self.ATTRS}, dict(self.arrays)


class Node:
    """Base class: a named step reading `src` (and the stage's residual) and writing registers.

    `sources` maps output channels back to the model's layers: [[layer name, start, stop]].
    `float32_bytes` is what the model's own parameters and buffers for this step take.
    """

    kind = ""
    ATTRS: tuple = ()
    ARRAYS: tuple = ()

    def __init__(self, name: str, src: str, *, stage: Stage | None = None, dst: str | None = None,
                 sources=(), float32_bytes: int = 0):
        if stage is None and dst is None and self.ARRAYS:
            raise ValueError(f"{name}: a layer needs a stage or a destination register")
        self.name, self.src, self.stage, self.dst = name, src, stage, dst
        self.sources = [list(s) for s in sources]
        self.float32_bytes = int(float32_bytes)

    def reads(self) -> list:
        return [self.src] + ([self.stage.res] if self.stage and self.stage.res else [])

    def writes(self) -> list:
        if self.stage is None:
            return [self.dst]
        return [r for r in (self.stage.out, self.stage.bits) if r is not None]

    def prepare(self) -> None:
        """Build run-time objects once the graph's live registers are known."""

    def finish(self, y: np.ndarray, regs: dict) -> None:
        if self.stage is None:
            regs[self.dst] = y
        else:
            self.stage.apply(y, regs)

    def nbytes(self) -> int:
        own = sum(getattr(self, a).nbytes for a in self.ARRAYS if getattr(self, a) is not None)
        return own + (sum(v.nbytes for v in self.stage.arrays.values()) if self.stage else 0)

    def state(self) -> dict:
        return {"kind": self.kind, "name": self.name, "src": self.src, "dst": self.dst,
                "sources": self.sources, "float32_bytes": self.float32_bytes,
                "attrs": {a: getattr(self, a) for a in self.ATTRS},
                "stage": self.stage.state()[0] if self.stage else None}

    def arrays(self) -> dict:
        out = {a: getattr(self, a) for a in self.ARRAYS if getattr(self, a) is not None}
        if self.stage:
            out.update({f"stage.{k}": v for k, v in self.stage.arrays.items()})
        return out

    def _input(self, regs: dict, dtype, ndim: int, last: int | None, what: str) -> np.ndarray:
        x = regs[self.src]
        if x.dtype != dtype or x.ndim != ndim or (last is not None and x.shape[-1] != last):
            raise ValueError(f"{self.kind} {self.name!r}: expected {what}, found {x.dtype} "
                             f"array of shape {x.shape}")
        return x


class BinaryConv(Node):
    """Packed binary conv: bits (N, H, W, ceil(C/64)) -> int32 (N, OH, OW, M) -> stage.

    w_words uint64 (M, k, k, ceil(C/64)) = bitpack.pack_nhwc(sign(W_b)); alpha in the stage.
    """

    kind, ATTRS, ARRAYS = "binary_conv", ("c", "stride", "padding"), ("w_words",)

    def __init__(self, name, src, w_words, c, stride, padding, **kw):
        super().__init__(name, src, **kw)
        self.w_words = np.ascontiguousarray(w_words, dtype=np.uint64)
        self.c, self.stride, self.padding = int(c), int(stride), int(padding)
        self.k = self.w_words.shape[1] * self.w_words.shape[2] * self.c      # reduction length
        self._conv = self._fused = None

    def prepare(self) -> None:
        self._conv = conv.prepare_conv2d(self.w_words, self.c, self.stride, self.padding)
        folded = self.stage.integer_threshold(self.k)
        self._fused = None if folded is None else conv.prepare_conv2d(
            self.w_words, self.c, self.stride, self.padding, *folded, to_bits=True)

    def run(self, regs: dict, trace: dict | None = None) -> None:
        words = -(-self.c // 64)
        x = self._input(regs, np.uint64, 4, words, f"packed uint64 (N, H, W, {words}) "
                                                    f"holding {self.c} channels")
        if self._fused is not None and trace is None:
            regs[self.stage.bits] = self._fused(x)          # threshold inside the kernel
            return
        acc = self._conv(x)                                 # int32 (N, OH, OW, M)
        if trace is not None:
            trace[self.name] = acc
        self.finish(acc, regs)


class BinaryDense(Node):
    """Packed binary linear: bits (N, ceil(K/64)) -> int32 (N, M) -> stage.

    w_words uint64 (M, ceil(K/64)) = bitpack.pack_rows(sign(W_b)).
    """

    kind, ATTRS, ARRAYS = "binary_dense", ("k",), ("w_words",)

    def __init__(self, name, src, w_words, k, **kw):
        super().__init__(name, src, **kw)
        self.w_words = np.ascontiguousarray(w_words, dtype=np.uint64)
        self.k = int(k)
        self._dense = self._fused = None

    def prepare(self) -> None:
        self._dense = gemm.prepare_linear(self.w_words, self.k)
        folded = self.stage.integer_threshold(self.k)
        self._fused = None if folded is None else gemm.prepare_linear(
            self.w_words, self.k, *folded, to_bits=True)

    def run(self, regs: dict, trace: dict | None = None) -> None:
        words = -(-self.k // 64)
        x = self._input(regs, np.uint64, 2, words, f"packed uint64 (N, {words}) holding "
                                                    f"{self.k} features")
        if self._fused is not None and trace is None:
            regs[self.stage.bits] = self._fused(x)
            return
        acc = self._dense(x)                                # int32 (N, M)
        if trace is not None:
            trace[self.name] = acc
        self.finish(acc, regs)


class FloatConv(Node):
    """Real conv kept in float32: w2 (M, k*k*C) taps ordered (kh, kw, C), optional bias (M,).
    Input (N, H, W, C), or the model's (N, C, H, W) input when nchw is True."""

    kind, ATTRS, ARRAYS = "float_conv", ("k", "stride", "padding", "nchw"), ("w2", "bias")

    def __init__(self, name, src, w2, k, stride, padding, nchw=False, bias=None, **kw):
        super().__init__(name, src, **kw)
        self.w2 = np.ascontiguousarray(w2, dtype=np.float32)
        self.bias = None if bias is None else np.asarray(bias, np.float32)
        self.k, self.stride, self.padding, self.nchw = int(k), int(stride), int(padding), bool(nchw)

    def run(self, regs: dict, trace: dict | None = None) -> None:
        c = self.w2.shape[1] // (self.k * self.k)
        x = regs[self.src]
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1 if self.nchw else 3] != c:
            raise ValueError(f"{self.kind} {self.name!r}: expected float32 with {c} channels "
                             f"({'NCHW' if self.nchw else 'NHWC'}), found {x.dtype} {x.shape}")
        y = float_layers.conv2d_float(x, self.w2, self.k, self.stride, self.padding, self.bias,
                                      self.nchw)
        self.finish(y, regs)


class FloatDense(Node):
    """Real linear layer kept in float32: w (M, K), optional bias (M,). Input (N, K)."""

    kind, ATTRS, ARRAYS = "float_dense", (), ("w", "bias")

    def __init__(self, name, src, w, bias=None, **kw):
        super().__init__(name, src, **kw)
        self.w = np.ascontiguousarray(w, dtype=np.float32)
        self.bias = None if bias is None else np.asarray(bias, np.float32)

    def run(self, regs: dict, trace: dict | None = None) -> None:
        x = self._input(regs, np.float32, 2, self.w.shape[1], f"float32 (N, {self.w.shape[1]})")
        self.finish(float_layers.linear_float(x, self.w, self.bias), regs)


class StageOp(Node):
    """A stage on a float register (a BatchNorm / activation with no layer in front)."""

    kind = "stage"

    def run(self, regs: dict, trace: dict | None = None) -> None:
        self.stage.apply(regs[self.src], regs)


class _Reshape(Node):
    fn = None

    def run(self, regs: dict, trace: dict | None = None) -> None:
        regs[self.dst] = type(self).fn(regs[self.src])


class AvgDown2(_Reshape):
    kind, fn = "avg_down2", staticmethod(float_layers.avg_down2)


class GlobalAvgPool(_Reshape):
    kind, fn = "global_avg_pool", staticmethod(float_layers.global_avg_pool)


class Flatten(Node):
    """(N, H, W, C) -> (N, C*H*W) in the model's NCHW order; layout="nchw" flattens the
    model's own (N, C, H, W) input (the MLP's first step)."""

    kind, ATTRS = "flatten", ("layout",)

    def __init__(self, name, src, layout="nhwc", **kw):
        super().__init__(name, src, **kw)
        if layout not in ("nhwc", "nchw"):
            raise ValueError(f"flatten layout must be 'nhwc' or 'nchw', found {layout!r}")
        self.layout = layout

    def run(self, regs: dict, trace: dict | None = None) -> None:
        x = regs[self.src]
        regs[self.dst] = (x.reshape(x.shape[0], -1) if self.layout == "nchw"
                          else float_layers.flatten_nchw(x))


class L2Normalize(_Reshape):
    kind, fn = "l2_normalize", staticmethod(float_layers.l2_normalize)


NODE_TYPES = {cls.kind: cls for cls in (BinaryConv, BinaryDense, FloatConv, FloatDense, StageOp,
                                        AvgDown2, GlobalAvgPool, Flatten, L2Normalize)}

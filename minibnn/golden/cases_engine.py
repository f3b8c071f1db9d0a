"""Golden cases of the packed engine: XNOR-popcount conv (zero padding, fused stages) and
binary linear, compared exactly."""

from __future__ import annotations

import numpy as np

from ..engine import bitpack, conv, gemm
from .spec import register, activation, SIGN0

__all__: list[str] = []  # registers cases with spec.register on import

# ------------------------------------------------------------------------ packed engine
_ENGINE_C = 70                     # two 64-bit words per pixel, the second one partly used


def _make_engine_conv(rng, n, hw, m):
    """float32 (what the engine packs): only the signs matter, the zeros included."""
    x = activation(rng, (n, _ENGINE_C, hw, hw), zeros=6).astype(np.float32)
    w = activation(rng, (m, _ENGINE_C, 3, 3), zeros=4).astype(np.float32)
    return {"x": x}, {"weight": w}


def _op_engine_conv(i, p, a):
    x, w = i["x"].data, p["weight"].data
    x_words = bitpack.pack_nhwc(x, layout="NCHW")               # (N, H, W, W64)
    w_words = bitpack.pack_nhwc(w, layout="NCHW")               # (M, kh, kw, W64)
    out = {"x_words": x_words, "w_words": w_words,
           "y": conv.binary_conv2d(x_words, w_words, x.shape[1], a["stride"],
                                           a["padding"])}
    if "scale" in p:
        scale, bias = p["scale"].data, p["bias"].data
        out["y_float"] = conv.binary_conv2d(x_words, w_words, x.shape[1], a["stride"],
                                                    a["padding"], scale, bias)
        out["y_bits"] = conv.binary_conv2d(x_words, w_words, x.shape[1], a["stride"],
                                                   a["padding"], scale, bias, to_bits=True)
    return out


def _make_engine_bits(rng):
    inputs, params = _make_engine_conv(rng, 1, 5, 3)
    acc = conv.binary_conv2d_reference(np.where(inputs["x"] < 0, -1, 1),
                                               np.where(params["weight"] < 0, -1, 1), 2, 1)
    scale = np.array([1.0, -0.5, 0.25], np.float32)
    bias = np.array([-acc[0, 0, 1, 1], 3.0, -1.5], np.float32)   # channel 0 hits 0 exactly
    return inputs, dict(params, scale=scale, bias=bias)


_ENGINE_CONV = (
    SIGN0.split(" torch.sign")[0] + " Packed: bit = (x < 0), bit 1 means -1.",
    "Packing is NHWC with channels innermost: bit b of word w holds channel 64 w + b; "
    "x_words (N, H, W, ceil(C/64)) and w_words (M, kh, kw, ceil(C/64)) are uint64, "
    "little-endian bit order, unused tail bits 0 (C = 70: two words).",
    "y = the exact integer conv of sign(x) and sign(w) with ZERO padding (a padded position "
    "contributes 0), NHWC (N, OH, OW, M) int32 (the engine's layout).",
)
register(name="engine.binary_conv2d",
      reference="minibnn.engine.bitpack.pack_nhwc, minibnn.engine.conv.binary_conv2d",
      op=_op_engine_conv, make=lambda rng: _make_engine_conv(rng, 1, 5, 3),
      attrs={"stride": 1, "padding": 1},
      description="The packed XNOR-popcount convolution: pack the signs of x and w into "
                  "uint64 words, then y = sum over taps of (C - 2 popcount(x XOR w)), border "
                  "pixels corrected for zero padding. Stride 1, padding 1, C = 70.",
      conventions=_ENGINE_CONV)
register(name="engine.binary_conv2d_bits",
      reference="minibnn.engine.bitpack.pack_nhwc, minibnn.engine.conv.binary_conv2d",
      op=_op_engine_conv, make=_make_engine_bits, attrs={"stride": 2, "padding": 1},
      description="The packed conv with its fused output stage, stride 2, padding 1: y as "
                  "engine.binary_conv2d, y_float = float32(y) * scale + bias (float32), y_bits "
                  "= the packed signs of y_float (what the next binary layer reads).",
      conventions=_ENGINE_CONV + (
          "scale, bias are float32 (M,); y_float is computed in float32 (multiply, then add).",
          "y_bits (N, OH, OW, ceil(M/64)) uint64: bit m = (y_float[..., m] < 0), so an output "
          "of exactly 0 is +1 (channel 0 has such pixels).",),
      tolerance={"y_float": (1e-7, 1e-6)})


def _op_engine_linear(i, p, a):
    x_words = bitpack.pack_rows(i["x"].data)                    # (B, W64)
    w_words = bitpack.pack_rows(p["weight"].data)               # (M, W64)
    return {"x_words": x_words, "w_words": w_words,
            "y": gemm.binary_linear(x_words, w_words, i["x"].shape[1])}


register(name="engine.binary_linear",
      reference="minibnn.engine.bitpack.pack_rows, minibnn.engine.gemm.binary_linear",
      op=_op_engine_linear,
      make=lambda rng: ({"x": activation(rng, (5, _ENGINE_C), zeros=4).astype(np.float32)},
                        {"weight": activation(rng, (3, _ENGINE_C), zeros=2).astype(np.float32)}),
      description="The packed binary linear layer: y = x_b . w_b^T = K - 2 popcount(x XOR w) "
                  "on packed signs, K = 70 (two words, the second partly used).",
      conventions=(SIGN0.split(" torch.sign")[0] + " Packed: bit = (x < 0), bit 1 means -1.",
                   "x_words (B, ceil(K/64)), w_words (M, ceil(K/64)) uint64, bit b of word w "
                   "holds element 64 w + b, tail bits 0; y (B, M) int32."))



"""The golden cases: what each one computes with minibnn, the inputs it draws, its conventions.

A case is a `Spec` (name, minibnn function, inputs maker, which tensors get gradients, the
conventions a port must follow) run by one generic runner. The runner is itself a callable with
the `minibnn verify` calling convention, `reference(name, inputs, params, upstream, attrs)`, so
rebuilding a case, checking the committed files and checking minibnn in float32 are all the
same call. Cases are computed in float64 (the packed-engine cases are integer or float32 by
nature) with small, seeded inputs that keep sign decisions and clip edges away from rounding.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..engine import bitpack, kernels, kernels_conv
from ..methods import cmim, lcr, s2bnn
from ..nn import Parameter
from ..nn.binary import BinaryConv2d, BinaryLinear, RPReLU, RSign, set_ede
from ..quantizers import (EDEQuantizer, IRNetWeight, RealWeight, ReActNetWeight, SignWeight,
                          XnorWeight, approx_sign, ede_sign, ste_sign)
from .io import Case, Expected, select_names

__all__ = ["DEFAULT_SEED", "GENERAL_CONVENTIONS", "Spec", "SPECS", "case_names", "build_case",
           "build_cases", "reference"]

DEFAULT_SEED = 0
ATOL, RTOL = 1e-5, 1e-4          # default: atol = ATOL * max|want|, rtol = RTOL (float32 ports)

GENERAL_CONVENTIONS = [
    "Arrays are NCHW (N, C, H, W) for images and (N, D) for features; weights (M, C, kh, kw) "
    "or (M, K), as in PyTorch.",
    "Gradients are those of L = sum over the differentiable outputs o of sum(upstream[o] * o); "
    "a scalar output (a loss) has upstream 1.0, so plain loss.backward() gives them.",
    "The gradient of input or parameter X is returned as 'grad_X'. A gradient marked detached "
    "is exactly zero: the method treats X as a constant (torch: X.detach(), or a no_grad "
    "teacher); return zeros for it (a None .grad in torch).",
    "Reference values are computed in float64; the tolerances (|got - want| <= atol + "
    "rtol * |want| element-wise) are chosen for a float32 port. atol = rtol = 0 means exact.",
    "Intermediates (kind 'intermediate') are optional: compared when returned, to localise a "
    "difference, ignored otherwise.",
]

SIGN0 = ("sign(x) = +1 for x >= 0, -1 otherwise: sign(0) = sign(-0.0) = +1. torch.sign gives 0 "
         "there (as the official LCR-BNN, CMIM and S2-BNN code); this case contains exact zeros "
         "so that difference shows.")
NO_CLIP = "No clipping of the pseudo-gradient outside |x| <= 1."
ZERO_PAD = ("Zero padding of the binarized input: a padded position contributes 0, not +-1 "
            "(pad after binarizing, as F.conv2d(sign(x), ...)).")


# ---------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class Spec:
    """One case. `op(inputs, params, attrs)` gets float arrays as Tensors (Parameters when their
    gradient is wanted) and integer arrays as ndarrays, and returns a dict of outputs.

    outputs: the differentiable outputs (they receive an upstream gradient); any other returned
    tensor is a required non-differentiable output unless listed in `intermediates`.
    grads: inputs/params whose gradient is checked; `detached` ones must be exactly 0.
    exact: outputs compared exactly (besides integer ones). tolerance: name -> (atol factor of
    max|want|, rtol) overrides.
    """

    name: str
    reference: str
    description: str
    conventions: tuple
    make: Callable[[np.random.Generator], tuple[dict, dict]]
    op: Callable[[dict, dict, dict], dict]
    attrs: dict = field(default_factory=dict)
    outputs: tuple = ()
    grads: tuple = ()
    detached: tuple = ()
    intermediates: tuple = ()
    exact: tuple = ()
    tolerance: dict = field(default_factory=dict)


SPECS: dict[str, Spec] = {}


def _spec(**kwargs) -> None:
    spec = Spec(**kwargs)
    if spec.name in SPECS:
        raise ValueError(f"duplicate golden case {spec.name!r}")
    SPECS[spec.name] = spec


# ----------------------------------------------------------------------- input makers
def _away(x: np.ndarray, points=(0.0,), margin: float = 0.02) -> np.ndarray:
    """Push values closer than `margin` to any of `points` out to the margin, so a float32 port
    makes the same sign and clip decisions as the float64 reference."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        d = x - p
        close = np.abs(d) < margin
        x[close] = p + np.where(d[close] >= 0, margin, -margin)
    return x


def _unit_rows(rng, shape) -> np.ndarray:
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# exact zeros (both signs), the clip edges +-1 and ApproxSign's table (methods.md §1.2)
_SPECIAL = np.array([-2.0, -1.5, -1.0, -0.5, -0.25, -0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0])


def _sign_input(rng) -> tuple[dict, dict]:
    rand = _away(rng.normal(0, 1.2, 18), (0.0, -1.0, 1.0))
    return {"x": np.concatenate([_SPECIAL, rand]).reshape(3, 10)}, {}


def _activation(rng, shape, zeros: int = 3) -> np.ndarray:
    """Activations away from 0 and +-1, with `zeros` exact zeros (one of them -0.0)."""
    x = _away(rng.normal(0, 1.0, shape), (0.0, -1.0, 1.0))
    flat = x.reshape(-1)
    at = rng.choice(flat.size, zeros, replace=False)
    flat[at] = 0.0
    flat[at[0]] = -0.0
    return x


def _plain_weight(rng, shape) -> np.ndarray:
    """Latent weights away from 0 and +-1 except one exact 0 and the two clip edges +-1."""
    w = _away(rng.normal(0, 0.6, shape), (0.0, -1.0, 1.0))
    flat = w.reshape(-1)
    at = rng.choice(flat.size, 3, replace=False)
    flat[at] = [0.0, 1.0, -1.0]
    return w


def _standardize(w: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, w.ndim))
    c = w - w.mean(axis=axes, keepdims=True)
    return c / c.std(axis=axes, ddof=1, keepdims=True)


def _irnet_weight(rng, shape) -> np.ndarray:
    """Gaussian filters (scale 1) and, in the last output channel, small values with two
    outliers (mean |W_hat| < 2^-0.5, so the power-of-two scale is 0.5). Redrawn until every
    standardised entry is 0.02 away from 0 and log2(mean |W_hat|) 0.05 away from a rounding
    edge."""
    n = int(np.prod(shape[1:]))
    while True:
        w = rng.normal(0, 0.1, shape)
        small = rng.uniform(0.005, 0.015, n - 2) * rng.choice([-1.0, 1.0], n - 2)
        w[-1] = rng.permutation(np.concatenate([small, [0.3, -0.3]])).reshape(shape[1:])
        w_hat = _standardize(w)
        log_scale = np.log2(np.abs(w_hat).mean(axis=tuple(range(1, w.ndim))))
        if (np.abs(w_hat).min() > 0.02
                and np.all(np.abs(log_scale - np.floor(log_scale) - 0.5) > 0.05)):
            return w


def _weight_input(make_weight) -> Callable:
    return lambda rng: ({"w": make_weight(rng, (3, 2, 3, 3))}, {})


# ------------------------------------------------------------------------- quantizers
def _op_ste(i, p, a):
    return {"y": ste_sign(i["x"], clip=a["clip"])}


def _op_approx(i, p, a):
    return {"y": approx_sign(i["x"])}


def _op_ede(i, p, a):
    return {"y": ede_sign(i["x"], t=a["t"], k=a["k"])}


_SIGN_CASE = dict(make=_sign_input, outputs=("y",), grads=("x",), exact=("y",))

_spec(name="quantizer.ste", reference="minibnn.quantizers.ste_sign", op=_op_ste,
      attrs={"clip": 1.0},
      description="sign with the clipped straight-through estimator (BNN, arXiv:1602.02830): "
                  "y = sign(x), dx = dy * 1[|x| <= clip].",
      conventions=(SIGN0, "Both clip edges pass: |x| = clip gives dx = dy (x contains +-1)."),
      **_SIGN_CASE)
_spec(name="quantizer.approx", reference="minibnn.quantizers.approx_sign", op=_op_approx,
      description="Bi-Real Net's ApproxSign (arXiv:1808.00278), ReActNet/S2-BNN's "
                  "BinaryActivation: y = sign(x), dx = dy * max(0, 2 - 2|x|).",
      conventions=(SIGN0, "The derivative is 0 at x = +-1 and 2 at x = 0 (the table of "
                          "methods.md section 1.2 is in the first row of x)."),
      **_SIGN_CASE)
for _name, _t, _k, _when in (("quantizer.ede", 0.1, 10.0, "the official BinarizeConv2d "
                                                            "initial values"),
                             ("quantizer.ede_late", 10.0, 1.0, "late in the t/k schedule")):
    _spec(name=_name, reference="minibnn.quantizers.ede_sign", op=_op_ede,
          attrs={"t": _t, "k": _k},
          description=f"IR-Net's Error Decay Estimator (arXiv:1909.10788): y = sign(x), "
                      f"dx = dy * k t (1 - tanh^2(t x)), with t = {_t:g}, k = {_k:g} "
                      f"({_when}).",
          conventions=(SIGN0, NO_CLIP), **_SIGN_CASE)


# ------------------------------------------------------------------ weight binarizers
def _op_weight(binarizer: Callable[[dict], Any]) -> Callable:
    return lambda i, p, a: {"wb": binarizer(a)(i["w"])}


_WEIGHT_CASE = dict(outputs=("wb",), grads=("w",))
_spec(name="weight.xnor", reference="minibnn.quantizers.XnorWeight(detach_alpha=False)",
      op=_op_weight(lambda a: XnorWeight("ste", detach_alpha=False)),
      make=_weight_input(_plain_weight), attrs={"clip": 1.0},
      description="XNOR-Net weights (arXiv:1603.05279): wb = alpha_o * sign(w_o), "
                  "alpha_o = mean |w_o| over (C, kh, kw), sign with the STE (clip 1).",
      conventions=(SIGN0, "alpha is NOT detached: the gradient flows through mean |w| "
                          "(d|w|/dw = sign(w), 0 at w = 0 as torch.abs), plus alpha times "
                          "the STE gradient, which passes |w| <= 1 (edges included)."),
      **_WEIGHT_CASE)
_spec(name="weight.xnor_detached", reference="minibnn.quantizers.XnorWeight(detach_alpha=True)",
      op=_op_weight(lambda a: XnorWeight("ste", detach_alpha=True)),
      make=_weight_input(_plain_weight), attrs={"clip": 1.0},
      description="XNOR-Net weights with a detached scale: wb = alpha_o * sign(w_o), "
                  "dw = alpha_o * dwb * 1[|w| <= 1].",
      conventions=(SIGN0, "alpha = mean |w_o| is detached (a constant in the backward)."),
      **_WEIGHT_CASE)
_spec(name="weight.irnet", reference="minibnn.quantizers.IRNetWeight",
      op=_op_weight(lambda a: IRNetWeight(EDEQuantizer(a["t"], a["k"]))),
      make=_weight_input(_irnet_weight), attrs={"t": 10 ** -0.5, "k": 10 ** 0.5},
      description="IR-Net balanced weights (arXiv:1909.10788): w_hat = (w - mean) / std per "
                  "output channel, s = 2^round(log2(mean |w_hat|)), wb = s * sign(w_hat), "
                  "EDE backward with t = 10^-0.5, k = 10^0.5 (CMIM schedule, epoch 200).",
      conventions=(SIGN0, "std is the UNBIASED estimator (n - 1), torch.std's default.",
                   "Autograd runs through the mean and the std (they are not detached).",
                   "s is detached; the last output channel has s = 0.5, the others s = 1.",
                   NO_CLIP), **_WEIGHT_CASE)
_spec(name="weight.reactnet", reference="minibnn.quantizers.ReActNetWeight",
      op=_op_weight(lambda a: ReActNetWeight(clip=a["clip"])),
      make=_weight_input(_plain_weight), attrs={"clip": 1.0},
      description="ReActNet's HardBinaryConv weights (arXiv:2003.03488, S2-BNN step 2): "
                  "wb = alpha_o * sign(w_o), alpha_o = mean |w_o|, dw = dwb * 1[|w| <= 1].",
      conventions=(SIGN0, "alpha is DETACHED and does not appear in the gradient; the clip "
                          "edges |w| = 1 pass."), **_WEIGHT_CASE)
_spec(name="weight.sign", reference="minibnn.quantizers.SignWeight",
      op=_op_weight(lambda a: SignWeight("ste")), make=_weight_input(_plain_weight),
      attrs={"clip": 1.0},
      description="Unscaled binary weights (BNN): wb = sign(w), dw = dwb * 1[|w| <= 1].",
      conventions=(SIGN0,), exact=("wb",), **_WEIGHT_CASE)
_spec(name="weight.none", reference="minibnn.quantizers.RealWeight",
      op=_op_weight(lambda a: RealWeight()), make=_weight_input(_plain_weight),
      description="No weight binarizer (S2-BNN step 1 keeps real weights): wb = w, dw = dwb.",
      conventions=(), **_WEIGHT_CASE)


# ---------------------------------------------------------------------- binary layers
def _op_binary_conv(i, p, a):
    layer = BinaryConv2d(a["in_channels"], a["out_channels"], a["kernel_size"], a["stride"],
                         a["padding"], bias="bias" in p, input_quantizer=a["input_quantizer"],
                         weight_quantizer=a["weight_quantizer"])
    layer.weight = p["weight"]
    if "bias" in p:
        layer.bias = p["bias"]
    if "t" in a:
        set_ede(layer, a["t"], a["k"])
    return {"y": layer(i["x"]), "wb": Tensor(layer.binary_weight())}


def _conv_maker(weight_maker, n=2, c=3, m=4, k=3, hw=5, bias=False) -> Callable:
    def make(rng):
        params = {"weight": weight_maker(rng, (m, c, k, k))}
        if bias:
            params["bias"] = rng.normal(0, 0.5, m)
        return {"x": _activation(rng, (n, c, hw, hw))}, params
    return make


_CONV_ATTRS = dict(in_channels=3, out_channels=4, kernel_size=3)
_LAYER_CASE = dict(outputs=("y",), intermediates=("wb",))
_spec(name="layer.binary_conv2d.xnor_ste", reference="minibnn.nn.binary.BinaryConv2d",
      op=_op_binary_conv, make=_conv_maker(_plain_weight, bias=True),
      attrs=dict(_CONV_ATTRS, stride=1, padding=1, input_quantizer="ste",
                 weight_quantizer="xnor"),
      description="Binary conv (XNOR-Net): y = conv2d(sign(x), alpha * sign(W)) + b, stride 1, "
                  "padding 1; STE (clip 1) on activations and weights, alpha = mean |W_o| not "
                  "detached.", grads=("x", "weight", "bias"),
      conventions=(SIGN0, ZERO_PAD, "Intermediate wb = alpha * sign(W) (M, C, kh, kw)."),
      **_LAYER_CASE)
_spec(name="layer.binary_conv2d.irnet_ede", reference="minibnn.nn.binary.BinaryConv2d",
      op=_op_binary_conv, make=_conv_maker(_irnet_weight, hw=6),
      attrs=dict(_CONV_ATTRS, stride=2, padding=1, input_quantizer="ede",
                 weight_quantizer="irnet", t=10 ** -0.5, k=10 ** 0.5),
      description="IR-Net binary conv (LCR-BNN and CMIM's BinarizeConv2d): balanced weights "
                  "w_hat = (W - mean) / std (unbiased), s = 2^round(log2 mean |w_hat|) "
                  "(detached), y = conv2d(sign(x), s * sign(w_hat)), stride 2, padding 1, no "
                  "bias; EDE with one shared (t, k) = (10^-0.5, 10^0.5) on x and w_hat.",
      grads=("x", "weight"),
      conventions=(SIGN0, ZERO_PAD, "std is unbiased (n - 1); autograd through mean and std.",
                   "The last output channel has s = 0.5.", NO_CLIP), **_LAYER_CASE)
_spec(name="layer.binary_conv2d.reactnet_approx", reference="minibnn.nn.binary.BinaryConv2d",
      op=_op_binary_conv, make=_conv_maker(_plain_weight),
      attrs=dict(_CONV_ATTRS, stride=1, padding=1, input_quantizer="approx",
                 weight_quantizer="reactnet"),
      description="ReActNet / S2-BNN binary conv: y = conv2d(sign(x), alpha * sign(W)), "
                  "ApproxSign on x, HardBinaryConv weights (alpha = mean |W_o| detached, "
                  "dW = dwb * 1[|W| <= 1]), stride 1, padding 1, no bias.",
      grads=("x", "weight"), conventions=(SIGN0, ZERO_PAD, "alpha is detached."),
      **_LAYER_CASE)


def _op_binary_linear(i, p, a):
    layer = BinaryLinear(a["in_features"], a["out_features"], bias=True,
                         input_quantizer=a["input_quantizer"],
                         weight_quantizer=a["weight_quantizer"])
    layer.weight, layer.bias = p["weight"], p["bias"]
    return {"y": layer(i["x"]), "wb": Tensor(layer.binary_weight())}


_spec(name="layer.binary_linear.xnor_ste", reference="minibnn.nn.binary.BinaryLinear",
      op=_op_binary_linear,
      make=lambda rng: ({"x": _activation(rng, (4, 10))},
                        {"weight": _plain_weight(rng, (3, 10)), "bias": rng.normal(0, 0.5, 3)}),
      attrs=dict(in_features=10, out_features=3, input_quantizer="ste", weight_quantizer="xnor"),
      description="Binary linear layer (XNOR-Net): y = sign(x) @ (alpha * sign(W))^T + b, STE "
                  "(clip 1), alpha = mean |W_o| not detached.", grads=("x", "weight", "bias"),
      conventions=(SIGN0,), **_LAYER_CASE)


def _op_rsign(i, p, a):
    layer = RSign(a["channels"])
    layer.shift.bias = p["shift.bias"]
    return {"y": layer(i["x"])}


def _make_rsign(rng):
    b = rng.normal(0, 0.5, 3)
    z = _away(rng.normal(0, 1.0, (2, 3, 3, 3)), (0.0, -1.0, 1.0))   # the pre-sign value x + b
    x = z - b.reshape(1, 3, 1, 1)
    x[0, :, 0, 0] = -b                                               # x + b exactly 0
    return {"x": x}, {"shift.bias": b}


_spec(name="layer.rsign", reference="minibnn.nn.binary.RSign", op=_op_rsign, make=_make_rsign,
      attrs={"channels": 3}, outputs=("y",), grads=("x", "shift.bias"), exact=("y",),
      description="ReActNet's RSign: y = sign(x + b_c) with ApproxSign's pseudo-gradient; b is "
                  "a learnable per-channel shift (C,), broadcast as (1, C, 1, 1).",
      conventions=(SIGN0 + " Here x + b is exactly 0 at pixel (0, :, 0, 0).",))


def _op_rprelu(i, p, a):
    layer = RPReLU(a["channels"])
    layer.shift_in.bias, layer.prelu.weight = p["shift_in.bias"], p["prelu.weight"]
    layer.shift_out.bias = p["shift_out.bias"]
    return {"y": layer(i["x"])}


def _make_rprelu(rng):
    b = rng.normal(0, 0.5, 3)
    x = _away(rng.normal(0, 1.0, (2, 3, 3, 3)), (0.0,)) - b.reshape(1, 3, 1, 1)
    return {"x": x}, {"shift_in.bias": b, "prelu.weight": rng.uniform(0.1, 0.4, 3),
                      "shift_out.bias": rng.normal(0, 0.5, 3)}


_spec(name="layer.rprelu", reference="minibnn.nn.binary.RPReLU", op=_op_rprelu,
      make=_make_rprelu, attrs={"channels": 3}, outputs=("y",),
      grads=("x", "shift_in.bias", "prelu.weight", "shift_out.bias"),
      description="ReActNet's RPReLU: y = PReLU_c(x + b_c) + d_c, one slope per channel.",
      conventions=("PReLU: z if z > 0 else a_c z (inputs stay away from z = 0).",))


# ------------------------------------------------------------ batch norm and conv2d
def _op_batch_norm(i, p, a):
    mean, var = p["running_mean"].data.copy(), p["running_var"].data.copy()
    y = F.batch_norm(i["x"], mean, var, p["weight"], p["bias"], training=a["training"],
                     momentum=a["momentum"], eps=a["eps"])
    out = {"y": y}
    if a["training"]:
        out.update(running_mean=mean, running_var=var)
    return out


def _bn_maker(shape) -> Callable:
    def make(rng):
        c = shape[1]
        return ({"x": rng.normal(0.5, 2.0, shape)},
                {"weight": rng.uniform(0.5, 1.5, c), "bias": rng.normal(0, 0.5, c),
                 "running_mean": rng.normal(0, 0.3, c), "running_var": rng.uniform(0.5, 1.5, c)})
    return make


_BN_GRADS = dict(outputs=("y",), grads=("x", "weight", "bias"))
_BN_TRAIN = ("Normalise with the batch mean and the BIASED batch variance over all axes but 1; "
             "the running update uses the UNBIASED one: running = (1 - momentum) * running + "
             "momentum * batch (torch's convention). running_mean/var are buffers (params "
             "without gradient); return their updated values.",
             "Autograd runs through the batch statistics.")
_spec(name="layer.batch_norm2d.train", reference="minibnn.functional.batch_norm",
      op=_op_batch_norm, make=_bn_maker((4, 3, 3, 3)),
      attrs={"training": True, "momentum": 0.1, "eps": 1e-5},
      description="BatchNorm2d in training mode: y = gamma (x - mu_B) / sqrt(var_B + eps) + beta.",
      conventions=_BN_TRAIN, **_BN_GRADS)
_spec(name="layer.batch_norm1d.train", reference="minibnn.functional.batch_norm",
      op=_op_batch_norm, make=_bn_maker((6, 4)),
      attrs={"training": True, "momentum": 0.1, "eps": 1e-5},
      description="BatchNorm1d on (N, D) features in training mode (the BN1d before the "
                  "classifier of the CMIM/LCR ResNets).", conventions=_BN_TRAIN, **_BN_GRADS)
_spec(name="layer.batch_norm2d.eval", reference="minibnn.functional.batch_norm",
      op=_op_batch_norm, make=_bn_maker((4, 3, 3, 3)),
      attrs={"training": False, "momentum": 0.1, "eps": 1e-5},
      description="BatchNorm2d in evaluation mode: y = gamma (x - running_mean) / "
                  "sqrt(running_var + eps) + beta.",
      conventions=("The running statistics are constants (no gradient, not updated).",),
      **_BN_GRADS)


def _op_conv2d(i, p, a):
    return {"y": F.conv2d(i["x"], p["weight"], p["bias"], a["stride"], a["padding"])}


for _stride, _pad in ((1, 0), (2, 1)):
    _spec(name=f"op.conv2d.s{_stride}p{_pad}", reference="minibnn.functional.conv2d",
          op=_op_conv2d, attrs={"stride": _stride, "padding": _pad},
          make=lambda rng: ({"x": rng.normal(0, 1, (2, 3, 6, 6))},
                            {"weight": rng.normal(0, 0.3, (4, 3, 3, 3)),
                             "bias": rng.normal(0, 0.5, 4)}),
          description=f"Real-valued 2-D cross-correlation (torch.nn.functional.conv2d), stride "
                      f"{_stride}, zero padding {_pad}, groups 1, with bias.",
          conventions=("Cross-correlation (no kernel flip); OH = (H + 2p - kh) // s + 1.",),
          outputs=("y",), grads=("x", "weight", "bias"))


# --------------------------------------------------------------------------- LCR-BNN
_LCR_CHANNELS, _LCR_SIZES = (3, 4, 5, 6), (4, 2, 2, 1)


def _make_lcr(rng):
    inputs = {}
    for side in ("binary", "real"):
        for s, (c, hw) in enumerate(zip(_LCR_CHANNELS, _LCR_SIZES)):
            f = rng.uniform(-1, 1, (2, c, hw, hw))
            inputs[f"{side}_{s}"] = f if side == "binary" else np.abs(f) * 1.5
    return inputs, {"gammas": rng.uniform(0.5, 1.5, 4)}


def _op_lcr(i, p, a):
    n = len(_LCR_CHANNELS)
    terms = lcr.lcr_terms([i[f"binary_{s}"] for s in range(n)], [i[f"real_{s}"] for s in range(n)],
                          variant=a["variant"], gammas=p["gammas"])
    out = {"loss": terms.loss}
    for j in range(n - 1):
        out[f"sigma_binary_{j}"] = terms.sigma_binary[j]
        out[f"sigma_real_{j}"] = terms.sigma_real[j]
    return out


_LCR_OUT = tuple(f"sigma_{side}_{j}" for j in range(3) for side in ("binary", "real"))
_LCR_CONV = (
    "Stage features f_0..f_3 (N, C_i, H_i, W_i), C = 3, 4, 5, 6, H = W = 4, 2, 2, 1. Pair i: "
    "f_i is adaptive-average-pooled to f_{i+1}'s size when larger (pair 1 has equal sizes: no "
    "pooling); RM = X Y^T / P per sample (N, C_i, C_{i+1}), K = RM RM^T.",
    "The binary features are multiplied by gammas[i] (a learnable (4,) parameter) first.",
    "L = sum_i 2^-(3-i) * mean_n (sigma_B[n] - sigma_R[n])^2, weights 1/8, 1/4, 1/2 (F.mse_loss "
    "= mean over the N per-sample values). No alpha / (B * 1e4) multiplier.",
    "The real (reference-network) features are DETACHED: their gradient is 0.",
)
_spec(name="lcr.loss_official", reference="minibnn.methods.lcr.lcr_loss(variant='official')",
      op=_op_lcr, make=_make_lcr, attrs={"variant": "official"}, outputs=("loss",),
      grads=tuple(f"binary_{s}" for s in range(4)) + tuple(f"real_{s}" for s in range(4))
      + ("gammas",), detached=tuple(f"real_{s}" for s in range(4)), intermediates=_LCR_OUT,
      description="LCR-BNN's Lipschitz retention loss as the official code computes it "
                  "(arXiv:2207.06540, LCR.py): sigma = ||K 1||^(1/2), one power step from the "
                  "unnormalised all-ones vector, differentiated through K.",
      conventions=_LCR_CONV + (
          "sigma = (||K 1||_2^2 + 1e-30)^(1/4); the 1e-30 only matters at K = 0.",
          "Intermediates sigma_binary_i, sigma_real_i (N,) per pair."))
_spec(name="lcr.loss_exact", reference="minibnn.methods.lcr.lcr_loss(variant='exact')",
      op=_op_lcr, make=_make_lcr, attrs={"variant": "exact"}, outputs=("loss",),
      grads=tuple(f"binary_{s}" for s in range(4)) + tuple(f"real_{s}" for s in range(4))
      + ("gammas",), detached=tuple(f"real_{s}" for s in range(4)), intermediates=_LCR_OUT,
      description="LCR loss with the converged spectral norm: sigma = sigma_max(RM) = "
                  "sqrt(lambda_max(K)) per sample (power iteration to convergence; "
                  "torch.linalg.matrix_norm(RM, 2) gives the same).",
      conventions=_LCR_CONV + (
          "The gradient is the true one of sigma_max: u v^T w.r.t. RM (the converged vector is "
          "a constant; at convergence its own dependence on K contributes nothing).",))


def _op_lcr_pair(i, p, a):
    rm = lcr.retention_matrix(i["f_i"], i["f_next"])
    k = lcr.gram(rm)
    return {"sigma": lcr.spectral_norm_estimate(k, "official"), "rm": rm, "k": k}


_spec(name="lcr.worked_example", reference="minibnn.methods.lcr.spectral_norm_estimate",
      op=_op_lcr_pair,
      make=lambda rng: ({"f_i": np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]]),
                         "f_next": np.array([1.0, -1.0, 0.5]).reshape(1, 3, 1, 1)}, {}),
      outputs=("sigma",), grads=("f_i", "f_next"), intermediates=("rm", "k"),
      description="methods.md section 5, LCR vector 4: f_i one sample with 2 channels 2x2, "
                  "f_next 3 channels 1x1 -> pooled f_i = (0.5, 0.5), RM = [[0.5, -0.5, 0.25]] * 2 rows, "
                  "K = 0.5625 * 11^T, sigma = (1.125 sqrt 2)^(1/2) = 1.2613447 (official).",
      conventions=("rm (1, 2, 3) and k (1, 2, 2) are intermediates.",))


# ------------------------------------------------------------------------------ CMIM
_CMIM_M, _CMIM_D, _CMIM_K, _CMIM_N, _CMIM_B = 24, 6, 8, 5, 3


def _make_cmim(rng):
    labels = rng.permutation(np.arange(_CMIM_M) % 4)
    idx = rng.choice(_CMIM_M, _CMIM_B, replace=False)
    sampler = cmim.NegativeSampler(labels, _CMIM_N, rng)
    bound = 1 / np.sqrt(_CMIM_K)
    inputs = {"f_bnn": rng.normal(0, 1, (_CMIM_B, _CMIM_K)),
              "f_fp": rng.normal(0, 1, (_CMIM_B, _CMIM_K)),
              "idx": idx.astype(np.int64), "sample_idx": sampler.sample(idx)}
    params = {}
    for side in ("bnn", "fp"):
        params[f"embed_{side}.weight"] = rng.uniform(-bound, bound, (_CMIM_D, _CMIM_K))
        params[f"embed_{side}.bias"] = rng.uniform(-bound, bound, _CMIM_D)
    for side in ("bnn", "fp"):
        params[f"memory_{side}"] = cmim.MemoryBank(_CMIM_M, _CMIM_D, rng, np.float64).weight
    return inputs, params


def _op_cmim_official(i, p, a):
    e_bnn = cmim.embed(i["f_bnn"], p["embed_bnn.weight"], p["embed_bnn.bias"])
    e_fp = cmim.embed(i["f_fp"], p["embed_fp.weight"], p["embed_fp.bias"])
    banks = {}
    for side in ("bnn", "fp"):
        bank = cmim.MemoryBank(1, 1)
        bank.weight = p[f"memory_{side}"].data.copy()
        banks[side] = bank
    z = {side: cmim.Normaliser(len(banks[side].weight)) for side in ("bnn", "fp")}
    for side in ("bnn", "fp"):
        z[side].value = a[f"z_{side}"]
    terms = cmim.official_loss(e_bnn, e_fp, i["idx"], i["sample_idx"], banks["bnn"], banks["fp"],
                               z["bnn"], z["fp"], tau=a["tau"], momentum=a["momentum"],
                               eps=a["eps"], update=True)
    return {"loss_bnn_anchor": terms.bnn_anchor, "loss_fp_anchor": terms.fp_anchor,
            "memory_bnn": banks["bnn"].weight, "memory_fp": banks["fp"].weight,
            "z_bnn": np.array(z["bnn"].value), "z_fp": np.array(z["fp"].value),
            "e_bnn": e_bnn, "e_fp": e_fp}


_CMIM_CONV = (
    "Embedding heads: e = l2normalize(f W^T + b) per row (CMIM's Embed; d = 6).",
    "Memory banks memory_bnn, memory_fp (M = 24, d) are buffers (params without gradient); rows "
    "are gathered with sample_idx (B, N+1), column 0 = the positive idx, and are DETACHED.",
    "u[b, j] = exp(<memory_fp[S[b, j]], e_bnn[b]> / tau) / z_bnn (BNN-anchored); "
    "w[b, j] = exp(<memory_bnn[S[b, j]], e_fp[b]> / tau) / z_fp (FP-anchored).",
    "NCE with c = N / M, eps = 1e-7: l(x) = -1/B sum_b [log(x_b0 / (x_b0 + c + eps)) + "
    "sum_{j>=1} log(c / (x_bj + c + eps))]; loss_bnn_anchor = l(u), loss_fp_anchor = l(w).",
    "After scoring (no gradient): memory_bnn[idx] <- l2normalize(momentum * memory_bnn[idx] + "
    "(1 - momentum) * e_bnn), memory_fp likewise with e_fp; other rows unchanged. Return the "
    "updated memories and z_bnn, z_fp.",
    "e_fp is NOT detached: the FP-anchored term gives f_fp and its head a gradient.",
)
_CMIM_COMMON = dict(reference="minibnn.methods.cmim.official_loss", op=_op_cmim_official,
                    make=_make_cmim, outputs=("loss_bnn_anchor", "loss_fp_anchor"),
                    grads=("f_bnn", "f_fp", "embed_bnn.weight", "embed_bnn.bias",
                           "embed_fp.weight", "embed_fp.bias"),
                    intermediates=("e_bnn", "e_fp"))
_spec(name="cmim.official_first_call",
      attrs={"tau": 0.1, "momentum": 0.5, "eps": 1e-7, "z_bnn": None, "z_fp": None},
      description="CMIM's released loss (CRD-style NCE, arXiv:2207.02970 / 1910.10699) on the "
                  "first call: the normalisers are not set yet (attrs z = null) and become "
                  "Z = M * mean of this batch's exp scores.",
      conventions=_CMIM_CONV + ("z_bnn = M * mean(exp(scores_bnn / tau)) over the (B, N+1) "
                                "raw exponentials of this call, z_fp likewise; Z is a constant "
                                "(no gradient through it).",), **_CMIM_COMMON)
_spec(name="cmim.official",
      attrs={"tau": 0.1, "momentum": 0.5, "eps": 1e-7, "z_bnn": 30000.0, "z_fp": 50000.0},
      description="CMIM's released loss on a later call: the normalisers z_bnn, z_fp (attrs) "
                  "were fixed by the first call and are constants now.",
      conventions=_CMIM_CONV, **_CMIM_COMMON)


def _op_nce(i, p, a):
    return {"loss": cmim.nce_loss(i["x"], a["n_noise"], a["n_data"], a["eps"])}


_spec(name="cmim.nce_loss", reference="minibnn.methods.cmim.nce_loss", op=_op_nce,
      make=lambda rng: ({"x": rng.uniform(0.01, 1.0, (3, 6))}, {}),
      attrs={"n_noise": 5, "n_data": 20, "eps": 1e-7}, outputs=("loss",), grads=("x",),
      description="CRD's NCE loss alone: x (B, N+1) normalised scores, positive in column 0, "
                  "uniform noise 1/M with M = n_data.",
      conventions=("c = n_noise / n_data; l = -1/B sum_b [log(x_b0 / (x_b0 + c + eps)) + "
                   "sum_{j>=1} log(c / (x_bj + c + eps))] (batch MEAN, sum over columns).",))


def _op_info_nce(i, p, a):
    return {"loss": cmim.info_nce(i["anchor"], i["positives"], i["queue"].data, tau=a["tau"],
                                  in_batch=True)}


_spec(name="cmim.paper_infonce", reference="minibnn.methods.cmim.info_nce", op=_op_info_nce,
      make=lambda rng: ({"anchor": _unit_rows(rng, (4, 8)), "positives": _unit_rows(rng, (4, 8)),
                         "queue": _unit_rows(rng, (6, 8))}, {}),
      attrs={"tau": 0.1}, outputs=("loss",), grads=("anchor", "positives", "queue"),
      detached=("queue",),
      description="The paper form of CMIM (per layer): InfoNCE between the embedded binary "
                  "activations (anchor) and the embedded latent real ones (positives), with "
                  "in-batch negatives and a queue of earlier latent embeddings.",
      conventions=("logits[b] = [<a_b, p_0>, ..., <a_b, p_{B-1}>, <a_b, queue_0>, ...] / tau "
                   "(B, B + K); target b (the diagonal); cross-entropy, batch MEAN.",
                   "The positives are NOT detached (they are also the negatives of the other "
                   "anchors); the queue is DETACHED (gradient 0).",))


# ----------------------------------------------------------------------------- S2-BNN
def _op_distribution(i, p, a):
    return {"loss": s2bnn.distribution_loss(i["student"], i["teacher"], tau=a["tau"])}


_spec(name="s2bnn.distribution_loss", reference="minibnn.methods.s2bnn.distribution_loss",
      op=_op_distribution,
      make=lambda rng: ({"student": _unit_rows(rng, (4, 16)), "teacher": _unit_rows(rng, (4, 16))},
                        {}),
      attrs={"tau": 0.2}, outputs=("loss",), grads=("student", "teacher"), detached=("teacher",),
      description="S2-BNN's guided distribution calibration (arXiv:2102.08946, DistributionLoss):"
                  " L = 1/N sum_n -sum_d softmax(t_n / tau)_d log_softmax(s_n / tau)_d over the "
                  "D = 16 embedding dimensions.",
      conventions=("Softmax over the embedding dimensions (axis 1), both inputs divided by "
                   "tau = 0.2; cross-entropy form (= KL + H(p_t)), no tau^2 factor; batch MEAN.",
                   "The teacher is DETACHED (frozen): its gradient is 0.",
                   "Inputs are the L2-normalised projections (the caller normalises)."))


def _op_moco(i, p, a):
    logits = s2bnn.moco_logits(i["q"], i["k"], i["queue"].data, tau=a["tau"])
    return {"loss": s2bnn.moco_infonce(i["q"], i["k"], i["queue"].data, tau=a["tau"]),
            "logits": logits}


_spec(name="s2bnn.moco_infonce", reference="minibnn.methods.s2bnn.moco_infonce", op=_op_moco,
      make=lambda rng: ({"q": _unit_rows(rng, (4, 16)), "k": _unit_rows(rng, (4, 16)),
                         "queue": _unit_rows(rng, (8, 16))}, {}),
      attrs={"tau": 0.2}, outputs=("loss",), grads=("q", "k", "queue"), detached=("k", "queue"),
      intermediates=("logits",),
      description="MoCo v2's InfoNCE as S2-BNN uses it (arXiv:1911.05722): logits = [<q_n, k_n>,"
                  " <q_n, queue_j>] / tau (N, 1 + K), cross-entropy with label 0, batch mean.",
      conventions=("The queue holds K = 8 keys as ROWS (K, D) (the official code stores the "
                   "transpose).", "k comes from the key encoder and is DETACHED; the queue is "
                   "a constant: both gradients are 0.",
                   "Intermediate logits (N, 1 + K), positive in column 0."))


# ------------------------------------------------------------------------ packed engine
_ENGINE_C = 70                     # two 64-bit words per pixel, the second one partly used


def _make_engine_conv(rng, n, hw, m):
    """float32 (what the engine packs): only the signs matter, the zeros included."""
    x = _activation(rng, (n, _ENGINE_C, hw, hw), zeros=6).astype(np.float32)
    w = _activation(rng, (m, _ENGINE_C, 3, 3), zeros=4).astype(np.float32)
    return {"x": x}, {"weight": w}


def _op_engine_conv(i, p, a):
    x, w = i["x"].data, p["weight"].data
    x_words = bitpack.pack_nhwc(x, layout="NCHW")               # (N, H, W, W64)
    w_words = bitpack.pack_nhwc(w, layout="NCHW")               # (M, kh, kw, W64)
    out = {"x_words": x_words, "w_words": w_words,
           "y": kernels_conv.binary_conv2d(x_words, w_words, x.shape[1], a["stride"],
                                           a["padding"])}
    if "scale" in p:
        scale, bias = p["scale"].data, p["bias"].data
        out["y_float"] = kernels_conv.binary_conv2d(x_words, w_words, x.shape[1], a["stride"],
                                                    a["padding"], scale, bias)
        out["y_bits"] = kernels_conv.binary_conv2d(x_words, w_words, x.shape[1], a["stride"],
                                                   a["padding"], scale, bias, to_bits=True)
    return out


def _make_engine_bits(rng):
    inputs, params = _make_engine_conv(rng, 1, 5, 3)
    acc = kernels_conv.binary_conv2d_reference(np.where(inputs["x"] < 0, -1, 1),
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
_spec(name="engine.binary_conv2d",
      reference="minibnn.engine.bitpack.pack_nhwc, minibnn.engine.kernels_conv.binary_conv2d",
      op=_op_engine_conv, make=lambda rng: _make_engine_conv(rng, 1, 5, 3),
      attrs={"stride": 1, "padding": 1},
      description="The packed XNOR-popcount convolution: pack the signs of x and w into "
                  "uint64 words, then y = sum over taps of (C - 2 popcount(x XOR w)), border "
                  "pixels corrected for zero padding. Stride 1, padding 1, C = 70.",
      conventions=_ENGINE_CONV)
_spec(name="engine.binary_conv2d_bits",
      reference="minibnn.engine.bitpack.pack_nhwc, minibnn.engine.kernels_conv.binary_conv2d",
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
            "y": kernels.binary_linear(x_words, w_words, i["x"].shape[1])}


_spec(name="engine.binary_linear",
      reference="minibnn.engine.bitpack.pack_rows, minibnn.engine.kernels.binary_linear",
      op=_op_engine_linear,
      make=lambda rng: ({"x": _activation(rng, (5, _ENGINE_C), zeros=4).astype(np.float32)},
                        {"weight": _activation(rng, (3, _ENGINE_C), zeros=2).astype(np.float32)}),
      description="The packed binary linear layer: y = x_b . w_b^T = K - 2 popcount(x XOR w) "
                  "on packed signs, K = 70 (two words, the second partly used).",
      conventions=(SIGN0.split(" torch.sign")[0] + " Packed: bit = (x < 0), bit 1 means -1.",
                   "x_words (B, ceil(K/64)), w_words (M, ceil(K/64)) uint64, bit b of word w "
                   "holds element 64 w + b, tail bits 0; y (B, M) int32."))


# ---------------------------------------------------------------------------- runner
def _wrap(name: str, array: np.ndarray, wanted: set) -> Any:
    array = np.array(array, copy=True)
    if array.dtype.kind != "f":
        return array
    return Parameter(array) if name in wanted else Tensor(array)


def _evaluate(spec: Spec, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict:
    wanted = set(spec.grads) - set(spec.detached)
    inp = {k: _wrap(k, v, wanted) for k, v in inputs.items()}
    prm = {k: _wrap(k, v, wanted) for k, v in params.items()}
    out = spec.op(inp, prm, dict(attrs))
    result = {k: np.array(v.data if isinstance(v, Tensor) else v) for k, v in out.items()}
    if upstream:
        total = None
        for name in spec.outputs:
            y = out[name]
            term = (y * Tensor(np.asarray(upstream[name], dtype=y.dtype))).sum()
            total = term if total is None else total + term
        if total is not None and total.requires_grad:
            total.backward()
        for name in spec.grads:
            t = inp.get(name, prm.get(name))
            g = t.grad if isinstance(t, Tensor) and t.grad is not None else None
            result["grad_" + name] = np.zeros(t.shape, t.dtype) if g is None else np.array(g)
    return result


def reference(name: str, inputs: dict, params: dict, upstream: dict, attrs: dict) -> dict | None:
    """minibnn's own answer, with the `minibnn verify` calling convention.

    Returns the outputs and the "grad_<name>" gradients of case `name` for the given arrays
    (computed in their dtype: pass float32 arrays to see minibnn in float32), or None for a name
    that is not a minibnn case.
    """
    spec = SPECS.get(name)
    if spec is None:
        return None
    return _evaluate(spec, inputs, params, upstream, attrs)


def case_names() -> list[str]:
    return list(SPECS)


def _tolerance(spec: Spec, name: str, want: np.ndarray) -> tuple[float, float]:
    if want.dtype.kind in "iub" or name in spec.exact:
        return 0.0, 0.0
    atol_factor, rtol = spec.tolerance.get(name, (ATOL, RTOL))
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return float(f"{atol_factor * scale:.2g}"), rtol


def build_case(name: str, seed: int = DEFAULT_SEED) -> Case:
    """Draw the inputs of case `name` from (seed, name), run minibnn in float64, and return the
    Case with its upstream gradients, expected tensors and tolerances."""
    if name not in SPECS:
        raise ValueError(f"unknown golden case {name!r}; available: {', '.join(SPECS)}")
    spec = SPECS[name]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    inputs, params = spec.make(rng)
    forward = _evaluate(spec, inputs, params, {}, spec.attrs)
    upstream = {o: np.array(1.0) if forward[o].ndim == 0 else rng.standard_normal(forward[o].shape)
                for o in spec.outputs}
    expected = _evaluate(spec, inputs, params, upstream, spec.attrs)
    checks = {}
    for key, want in expected.items():
        atol, rtol = _tolerance(spec, key, want)
        if key.startswith("grad_") and key[5:] in spec.grads:
            of = key[5:]
            checks[key] = Expected("grad", atol, rtol, of=of, detached=of in spec.detached)
        elif key in spec.intermediates:
            checks[key] = Expected("intermediate", atol, rtol)
        else:
            checks[key] = Expected("output", atol, rtol, differentiable=key in spec.outputs)
    case = Case(name=name, description=spec.description, reference=spec.reference,
                conventions=list(spec.conventions), attrs=dict(spec.attrs), inputs=inputs,
                params=params, upstream=upstream, expected=expected, checks=checks)
    case.validate()
    return case


def build_cases(only=None, seed: int = DEFAULT_SEED) -> list[Case]:
    """Build every case, or those matching `only` (names or patterns, see select_names)."""
    return [build_case(n, seed) for n in select_names(SPECS, only)]

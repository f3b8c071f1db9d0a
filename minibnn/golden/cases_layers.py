"""Golden cases of the building blocks: quantizers, weight binarizers, binary layers, batch
norm and conv2d (docs/methods.md §1)."""

from __future__ import annotations

from typing import Any, Callable

from .. import functional as F
from ..autograd import Tensor
from ..nn.binary import BinaryConv2d, BinaryLinear, RPReLU, RSign, set_ede
from ..quantizers import (EDEQuantizer, IRNetWeight, RealWeight, ReActNetWeight, SignWeight,
                          XnorWeight, approx_sign, ede_sign, ste_sign)
from .spec import (register, away, sign_input, activation, plain_weight, irnet_weight,
                   weight_input, NO_CLIP, ZERO_PAD, SIGN0)

__all__: list[str] = []  # registers cases with spec.register on import

# ------------------------------------------------------------------------- quantizers
def _op_ste(i, p, a):
    return {"y": ste_sign(i["x"], clip=a["clip"])}


def _op_approx(i, p, a):
    return {"y": approx_sign(i["x"])}


def _op_ede(i, p, a):
    return {"y": ede_sign(i["x"], t=a["t"], k=a["k"])}


_SIGN_CASE = dict(make=sign_input, outputs=("y",), grads=("x",), exact=("y",))

register(name="quantizer.ste", reference="minibnn.quantizers.ste_sign", op=_op_ste,
      attrs={"clip": 1.0},
      description="sign with the clipped straight-through estimator (BNN, arXiv:1602.02830): "
                  "y = sign(x), dx = dy * 1[|x| <= clip].",
      conventions=(SIGN0, "Both clip edges pass: |x| = clip gives dx = dy (x contains +-1)."),
      **_SIGN_CASE)
register(name="quantizer.approx", reference="minibnn.quantizers.approx_sign", op=_op_approx,
      description="Bi-Real Net's ApproxSign (arXiv:1808.00278), ReActNet/S2-BNN's "
                  "BinaryActivation: y = sign(x), dx = dy * max(0, 2 - 2|x|).",
      conventions=(SIGN0, "The derivative is 0 at x = +-1 and 2 at x = 0 (the table of "
                          "minibnn docs/methods.md, section 1.2, is in the first row of x)."),
      **_SIGN_CASE)
for _name, _t, _k, _when in (("quantizer.ede", 0.1, 10.0, "the official BinarizeConv2d "
                                                            "initial values"),
                             ("quantizer.ede_late", 10.0, 1.0, "late in the t/k schedule")):
    register(name=_name, reference="minibnn.quantizers.ede_sign", op=_op_ede,
          attrs={"t": _t, "k": _k},
          description=f"IR-Net's Error Decay Estimator (arXiv:1909.10788): y = sign(x), "
                      f"dx = dy * k t (1 - tanh^2(t x)), with t = {_t:g}, k = {_k:g} "
                      f"({_when}).",
          conventions=(SIGN0, NO_CLIP), **_SIGN_CASE)


# ------------------------------------------------------------------ weight binarizers
def _op_weight(binarizer: Callable[[dict], Any]) -> Callable:
    return lambda i, p, a: {"wb": binarizer(a)(i["w"])}


_WEIGHT_CASE = dict(outputs=("wb",), grads=("w",))
register(name="weight.xnor", reference="minibnn.quantizers.XnorWeight(detach_alpha=False)",
      op=_op_weight(lambda a: XnorWeight("ste", detach_alpha=False)),
      make=weight_input(plain_weight), attrs={"clip": 1.0},
      description="XNOR-Net weights (arXiv:1603.05279): wb = alpha_o * sign(w_o), "
                  "alpha_o = mean |w_o| over (C, kh, kw), sign with the STE (clip 1).",
      conventions=(SIGN0, "alpha is NOT detached: the gradient flows through mean |w| "
                          "(d|w|/dw = sign(w), 0 at w = 0 as torch.abs), plus alpha times "
                          "the STE gradient, which passes |w| <= 1 (edges included)."),
      **_WEIGHT_CASE)
register(name="weight.xnor_detached", reference="minibnn.quantizers.XnorWeight(detach_alpha=True)",
      op=_op_weight(lambda a: XnorWeight("ste", detach_alpha=True)),
      make=weight_input(plain_weight), attrs={"clip": 1.0},
      description="XNOR-Net weights with a detached scale: wb = alpha_o * sign(w_o), "
                  "dw = alpha_o * dwb * 1[|w| <= 1].",
      conventions=(SIGN0, "alpha = mean |w_o| is detached (a constant in the backward)."),
      **_WEIGHT_CASE)
register(name="weight.irnet", reference="minibnn.quantizers.IRNetWeight",
      op=_op_weight(lambda a: IRNetWeight(EDEQuantizer(a["t"], a["k"]))),
      make=weight_input(irnet_weight), attrs={"t": 10 ** -0.5, "k": 10 ** 0.5},
      description="IR-Net balanced weights (arXiv:1909.10788): w_hat = (w - mean) / std per "
                  "output channel, s = 2^round(log2(mean |w_hat|)), wb = s * sign(w_hat), "
                  "EDE backward with t = 10^-0.5, k = 10^0.5 (CMIM schedule, epoch 200).",
      conventions=(SIGN0, "std is the UNBIASED estimator (n - 1), torch.std's default.",
                   "Autograd runs through the mean and the std (they are not detached).",
                   "s is detached; the last output channel has s = 0.5, the others s = 1.",
                   NO_CLIP), **_WEIGHT_CASE)
register(name="weight.reactnet", reference="minibnn.quantizers.ReActNetWeight",
      op=_op_weight(lambda a: ReActNetWeight(clip=a["clip"])),
      make=weight_input(plain_weight), attrs={"clip": 1.0},
      description="ReActNet's HardBinaryConv weights (arXiv:2003.03488, S2-BNN step 2): "
                  "wb = alpha_o * sign(w_o), alpha_o = mean |w_o|, dw = dwb * 1[|w| <= 1].",
      conventions=(SIGN0, "alpha is DETACHED and does not appear in the gradient; the clip "
                          "edges |w| = 1 pass."), **_WEIGHT_CASE)
register(name="weight.sign", reference="minibnn.quantizers.SignWeight",
      op=_op_weight(lambda a: SignWeight("ste")), make=weight_input(plain_weight),
      attrs={"clip": 1.0},
      description="Unscaled binary weights (BNN): wb = sign(w), dw = dwb * 1[|w| <= 1].",
      conventions=(SIGN0,), exact=("wb",), **_WEIGHT_CASE)
register(name="weight.none", reference="minibnn.quantizers.RealWeight",
      op=_op_weight(lambda a: RealWeight()), make=weight_input(plain_weight),
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
        return {"x": activation(rng, (n, c, hw, hw))}, params
    return make


_CONV_ATTRS = dict(in_channels=3, out_channels=4, kernel_size=3)
_LAYER_CASE = dict(outputs=("y",), intermediates=("wb",))
register(name="layer.binary_conv2d.xnor_ste", reference="minibnn.nn.binary.BinaryConv2d",
      op=_op_binary_conv, make=_conv_maker(plain_weight, bias=True),
      attrs=dict(_CONV_ATTRS, stride=1, padding=1, input_quantizer="ste",
                 weight_quantizer="xnor"),
      description="Binary conv (XNOR-Net): y = conv2d(sign(x), alpha * sign(W)) + b, stride 1, "
                  "padding 1; STE (clip 1) on activations and weights, alpha = mean |W_o| not "
                  "detached.", grads=("x", "weight", "bias"),
      conventions=(SIGN0, ZERO_PAD, "Intermediate wb = alpha * sign(W) (M, C, kh, kw)."),
      **_LAYER_CASE)
register(name="layer.binary_conv2d.irnet_ede", reference="minibnn.nn.binary.BinaryConv2d",
      op=_op_binary_conv, make=_conv_maker(irnet_weight, hw=6),
      attrs=dict(_CONV_ATTRS, stride=2, padding=1, input_quantizer="ede",
                 weight_quantizer="irnet", t=10 ** -0.5, k=10 ** 0.5),
      description="IR-Net binary conv (LCR-BNN and CMIM's BinarizeConv2d): balanced weights "
                  "w_hat = (W - mean) / std (unbiased), s = 2^round(log2 mean |w_hat|) "
                  "(detached), y = conv2d(sign(x), s * sign(w_hat)), stride 2, padding 1, no "
                  "bias; EDE with one shared (t, k) = (10^-0.5, 10^0.5) on x and w_hat.",
      grads=("x", "weight"),
      conventions=(SIGN0, ZERO_PAD, "std is unbiased (n - 1); autograd through mean and std.",
                   "The last output channel has s = 0.5.", NO_CLIP), **_LAYER_CASE)
register(name="layer.binary_conv2d.reactnet_approx", reference="minibnn.nn.binary.BinaryConv2d",
      op=_op_binary_conv, make=_conv_maker(plain_weight),
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


register(name="layer.binary_linear.xnor_ste", reference="minibnn.nn.binary.BinaryLinear",
      op=_op_binary_linear,
      make=lambda rng: ({"x": activation(rng, (4, 10))},
                        {"weight": plain_weight(rng, (3, 10)), "bias": rng.normal(0, 0.5, 3)}),
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
    z = away(rng.normal(0, 1.0, (2, 3, 3, 3)), (0.0, -1.0, 1.0))   # the pre-sign value x + b
    x = z - b.reshape(1, 3, 1, 1)
    x[0, :, 0, 0] = -b                                               # x + b exactly 0
    return {"x": x}, {"shift.bias": b}


register(name="layer.rsign", reference="minibnn.nn.binary.RSign", op=_op_rsign, make=_make_rsign,
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
    x = away(rng.normal(0, 1.0, (2, 3, 3, 3)), (0.0,)) - b.reshape(1, 3, 1, 1)
    return {"x": x}, {"shift_in.bias": b, "prelu.weight": rng.uniform(0.1, 0.4, 3),
                      "shift_out.bias": rng.normal(0, 0.5, 3)}


register(name="layer.rprelu", reference="minibnn.nn.binary.RPReLU", op=_op_rprelu,
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
register(name="layer.batch_norm2d.train", reference="minibnn.functional.batch_norm",
      op=_op_batch_norm, make=_bn_maker((4, 3, 3, 3)),
      attrs={"training": True, "momentum": 0.1, "eps": 1e-5},
      description="BatchNorm2d in training mode: y = gamma (x - mu_B) / sqrt(var_B + eps) + beta.",
      conventions=_BN_TRAIN, **_BN_GRADS)
register(name="layer.batch_norm1d.train", reference="minibnn.functional.batch_norm",
      op=_op_batch_norm, make=_bn_maker((6, 4)),
      attrs={"training": True, "momentum": 0.1, "eps": 1e-5},
      description="BatchNorm1d on (N, D) features in training mode (the BN1d before the "
                  "classifier of the CMIM/LCR ResNets).", conventions=_BN_TRAIN, **_BN_GRADS)
register(name="layer.batch_norm2d.eval", reference="minibnn.functional.batch_norm",
      op=_op_batch_norm, make=_bn_maker((4, 3, 3, 3)),
      attrs={"training": False, "momentum": 0.1, "eps": 1e-5},
      description="BatchNorm2d in evaluation mode: y = gamma (x - running_mean) / "
                  "sqrt(running_var + eps) + beta.",
      conventions=("The running statistics are constants (no gradient, not updated).",),
      **_BN_GRADS)


def _op_conv2d(i, p, a):
    return {"y": F.conv2d(i["x"], p["weight"], p["bias"], a["stride"], a["padding"])}


for _stride, _pad in ((1, 0), (2, 1)):
    register(name=f"op.conv2d.s{_stride}p{_pad}", reference="minibnn.functional.conv2d",
          op=_op_conv2d, attrs={"stride": _stride, "padding": _pad},
          make=lambda rng: ({"x": rng.normal(0, 1, (2, 3, 6, 6))},
                            {"weight": rng.normal(0, 0.3, (4, 3, 3, 3)),
                             "bias": rng.normal(0, 0.5, 4)}),
          description=f"Real-valued 2-D cross-correlation (torch.nn.functional.conv2d), stride "
                      f"{_stride}, zero padding {_pad}, groups 1, with bias.",
          conventions=("Cross-correlation (no kernel flip); OH = (H + 2p - kh) // s + 1.",),
          outputs=("y",), grads=("x", "weight", "bias"))



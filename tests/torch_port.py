"""A PyTorch port of every golden case family, written from the case conventions (docs/golden.md)
as ordinary PyTorch code and wired with minibnn.verify.torch.TorchPort.

Used by the adapter tests (functions, modules, layouts, buffers, captures), the tolerance
measurement (tests/measure_tolerances.py: the same port in float32, float16 and bfloat16) and
as the faithful port in the sign(0) tests: `make_port(torch_sign=True)` binarises with
torch.sign, as the official code of IR-Net, ReActNet, Bi-Real, LCR-BNN, CMIM and S2-BNN does.
The packed-engine cases are not ported (integer kernels have no float precision to measure).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as TF

from minibnn.verify.layouts import CHANNEL_BIAS, QUEUE_COLUMNS
from minibnn.verify.torch import TorchPort, argument_of


# ----------------------------------------------------------------------------- binarizers
class Binarize(torch.autograd.Function):
    """sign forward (sign(0) = +1, or torch.sign's 0), a pseudo-gradient backward."""

    @staticmethod
    def forward(ctx, x, kind, a, b, torch_sign):
        ctx.save_for_backward(x)
        ctx.kind, ctx.a, ctx.b = kind, a, b
        if torch_sign:
            return torch.sign(x)
        return torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        if ctx.kind == "ste":                                 # a = clip
            g = (x.abs() <= ctx.a).to(dy.dtype)
        elif ctx.kind == "approx":
            g = torch.clamp(2 - 2 * x.abs(), min=0)
        else:                                                 # ede: a = t, b = k
            g = ctx.b * ctx.a * (1 - torch.tanh(ctx.a * x) ** 2)
        return dy * g, None, None, None, None


def binarize(x, kind="ste", a=1.0, b=0.0, torch_sign=False):
    return Binarize.apply(x, kind, a, b, torch_sign)


class ClippedSign(torch.autograd.Function):
    """ReActNet's weight sign: alpha * sign(w) forward (alpha detached), 1[|w| <= 1] backward."""

    @staticmethod
    def forward(ctx, w, torch_sign):
        ctx.save_for_backward(w)
        alpha = w.abs().mean(dim=tuple(range(1, w.ndim)), keepdim=True)
        s = torch.sign(w) if torch_sign else torch.where(w < 0, -1.0, 1.0).to(w.dtype)
        return alpha * s

    @staticmethod
    def backward(ctx, dy):
        (w,) = ctx.saved_tensors
        return dy * (w.abs() <= 1).to(dy.dtype), None


def weight_binarizer(kind, w, torch_sign=False, t=None, k=None):
    dims = tuple(range(1, w.ndim))
    if kind in ("xnor", "xnor_detached"):
        alpha = w.abs().mean(dim=dims, keepdim=True)
        alpha = alpha.detach() if kind == "xnor_detached" else alpha
        return alpha * binarize(w, "ste", 1.0, torch_sign=torch_sign)
    if kind == "irnet":
        centred = w - w.mean(dim=dims, keepdim=True)
        w_hat = centred / centred.std(dim=dims, keepdim=True)              # unbiased
        scale = torch.pow(2.0, torch.round(torch.log2(w_hat.abs().mean(dim=dims, keepdim=True))))
        return scale.detach() * binarize(w_hat, "ede", t, k, torch_sign)
    if kind == "reactnet":
        return ClippedSign.apply(w, torch_sign)
    if kind == "sign":
        return binarize(w, "ste", 1.0, torch_sign=torch_sign)
    return w


# --------------------------------------------------------------------------------- modules
class BinConv(nn.Module):
    def __init__(self, a, torch_sign):
        super().__init__()
        self.a, self.torch_sign = a, torch_sign
        k = a["kernel_size"]
        self.weight = nn.Parameter(torch.zeros(a["out_channels"], a["in_channels"], k, k))
        self.bias = nn.Parameter(torch.zeros(a["out_channels"])) if a.get("bias") else None

    def forward(self, x):
        a, q = self.a, self.a["input_quantizer"]
        t, k = a.get("t"), a.get("k")
        xb = binarize(x, q, *((t, k) if q == "ede" else (1.0, 0.0)), torch_sign=self.torch_sign)
        wb = weight_binarizer(a["weight_quantizer"], self.weight, self.torch_sign, t, k)
        return TF.conv2d(xb, wb, self.bias, a["stride"], a["padding"])


class BinLinear(nn.Module):
    def __init__(self, a, torch_sign):
        super().__init__()
        self.torch_sign = torch_sign
        self.weight = nn.Parameter(torch.zeros(a["out_features"], a["in_features"]))
        self.bias = nn.Parameter(torch.zeros(a["out_features"]))

    def forward(self, x):
        wb = weight_binarizer("xnor", self.weight, self.torch_sign)
        return TF.linear(binarize(x, "ste", 1.0, torch_sign=self.torch_sign), wb, self.bias)


class LearnableBias(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return x + self.bias


class RSign(nn.Module):
    def __init__(self, c, torch_sign):
        super().__init__()
        self.move, self.torch_sign = LearnableBias(c), torch_sign

    def forward(self, x):
        return binarize(self.move(x), "approx", torch_sign=self.torch_sign)


class RPReLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.move1, self.prelu, self.move2 = LearnableBias(c), nn.PReLU(c), LearnableBias(c)

    def forward(self, x):
        return self.move2(self.prelu(self.move1(x)))


# ----------------------------------------------------------------------------- method losses
def lcr_sigma(rm, variant):
    if variant == "exact":
        return torch.linalg.matrix_norm(rm.float(), ord=2).to(rm.dtype)   # no half SVD
    k = rm @ rm.transpose(1, 2)
    k1 = k.sum(dim=2)                                             # K 1
    return ((k1 ** 2).sum(dim=1) + 1e-30) ** 0.25


def retention(f_i, f_next):
    if f_i.shape[2] > f_next.shape[2]:
        f_i = TF.adaptive_avg_pool2d(f_i, f_next.shape[2:])
    x, y = f_i.flatten(2), f_next.flatten(2)                      # (N, C, P)
    return x @ y.transpose(1, 2) / x.shape[2]


def lcr(i, p, a):
    out, loss = {}, 0
    for j in range(3):
        sb = lcr_sigma(retention(i[f"binary_{j}"] * p["gammas"][j],
                                 i[f"binary_{j + 1}"] * p["gammas"][j + 1]), a["variant"])
        sr = lcr_sigma(retention(i[f"real_{j}"].detach(), i[f"real_{j + 1}"].detach()),
                       a["variant"])
        loss = loss + 2.0 ** -(3 - j) * TF.mse_loss(sb, sr)
        out[f"sigma_binary_{j}"], out[f"sigma_real_{j}"] = sb, sr
    return {"loss": loss, **out}


def lcr_pair(i, p, a):
    rm = retention(i["f_i"], i["f_next"])
    return {"sigma": lcr_sigma(rm, "official"), "rm": rm, "k": rm @ rm.transpose(1, 2)}


def nce(x, n_noise, n_data, eps):
    c = n_noise / n_data
    positive = torch.log(x[:, 0] / (x[:, 0] + c + eps))
    negative = torch.log(c / (x[:, 1:] + c + eps)).sum(dim=1)
    return -(positive + negative).mean()


def cmim_official(i, p, a):
    e = {s: TF.normalize(TF.linear(i[f"f_{s}"], p[f"embed_{s}.weight"], p[f"embed_{s}.bias"]),
                         dim=1) for s in ("bnn", "fp")}
    other = {"bnn": "fp", "fp": "bnn"}
    out = {"e_bnn": e["bnn"], "e_fp": e["fp"]}
    m = p["memory_bnn"].shape[0]
    for s in ("bnn", "fp"):
        rows = p[f"memory_{other[s]}"][i["sample_idx"]].detach()           # (B, N+1, d)
        scores = torch.einsum("bjd,bd->bj", rows, e[s]) / a["tau"]
        raw = torch.exp(scores.float() if scores.dtype == torch.float16 else scores)
        z = a[f"z_{s}"]                  # e^10 * M overflows float16: exp and NCE in float32
        z = m * raw.detach().mean() if z is None else torch.tensor(z, dtype=raw.dtype)
        out[f"loss_{s}_anchor"] = nce(raw / z, i["sample_idx"].shape[1] - 1, m, a["eps"])
        out[f"z_{s}"] = z
    with torch.no_grad():                                                  # after scoring
        for s in ("bnn", "fp"):
            bank = p[f"memory_{s}"]
            new = a["momentum"] * bank[i["idx"]] + (1 - a["momentum"]) * e[s]
            bank[i["idx"]] = TF.normalize(new, dim=1)
    return out


def paper_infonce(i, p, a):
    anchor, positives = i["anchor"], i["positives"]
    logits = torch.cat([anchor @ positives.T, anchor @ i["queue"].detach().T], dim=1) / a["tau"]
    return {"loss": TF.cross_entropy(logits, torch.arange(len(anchor)))}


def distribution(i, p, a):
    p_t = TF.softmax(i["teacher"].detach() / a["tau"], dim=1)
    return -(p_t * TF.log_softmax(i["student"] / a["tau"], dim=1)).sum(dim=1).mean()


def moco(i, p, a):                       # the queue arrives as (D, K) columns: QUEUE_COLUMNS
    q, k = i["q"], i["k"].detach()
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ i["queue"].detach()], 1) / a["tau"]
    loss = TF.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    return {"loss": loss, "logits": logits}


def moco_step(i, p, a):                  # MoCo's forward: score a clone, then enqueue in place
    q, k = i["q"], i["k"].detach()
    buffer = i["queue"].detach().clone()                  # the module's (D, K) queue buffer
    neg = q @ buffer.clone().detach()                     # as MoCo: self.queue.clone().detach()
    logits = torch.cat([(q * k).sum(1, keepdim=True), neg], 1) / a["tau"]
    loss = TF.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    buffer[:, a["ptr"]:a["ptr"] + len(k)] = k.T           # enqueue before backward
    return {"loss": loss, "logits": logits, "queue_after": buffer.T}


# ------------------------------------------------------------------------------------ port
def make_port(dtype=torch.float32, torch_sign=False) -> TorchPort:
    ts = torch_sign
    port = TorchPort(dtype)
    port.function("quantizer.ste", lambda i, p, a: binarize(i["x"], "ste", a["clip"],
                                                            torch_sign=ts))
    port.function("quantizer.approx", lambda i, p, a: binarize(i["x"], "approx", torch_sign=ts))
    for name in ("quantizer.ede", "quantizer.ede_late"):
        port.function(name, lambda i, p, a: binarize(i["x"], "ede", a["t"], a["k"], ts))
    for kind in ("xnor", "xnor_detached", "irnet", "reactnet", "sign", "none"):
        port.function(f"weight.{kind}", lambda i, p, a, kind=kind: weight_binarizer(
            kind, i["w"], ts, a.get("t"), a.get("k")))
    for name in ("xnor_ste", "irnet_ede", "reactnet_approx"):
        port.module(f"layer.binary_conv2d.{name}",
                    lambda a, name=name: BinConv(dict(a, bias=name == "xnor_ste"), ts),
                    capture={"wb": argument_of(TF.conv2d, 1)})
    port.module("layer.binary_linear.xnor_ste", lambda a: BinLinear(a, ts),
                capture={"wb": argument_of(TF.linear, 1)})
    port.module("layer.rsign", lambda a: RSign(a["channels"], ts),
                layout={"shift.bias": CHANNEL_BIAS})
    port.module("layer.rprelu", lambda a: RPReLU(a["channels"]),
                layout={"shift_in.bias": CHANNEL_BIAS, "shift_out.bias": CHANNEL_BIAS},
                names={"shift_in.bias": "move1.bias", "shift_out.bias": "move2.bias"})
    for name, cls in (("batch_norm2d.train", nn.BatchNorm2d), ("batch_norm2d.eval", nn.BatchNorm2d),
                      ("batch_norm1d.train", nn.BatchNorm1d)):
        port.module(f"layer.{name}", lambda a, cls=cls: cls(
            4 if cls is nn.BatchNorm1d else 3, eps=a["eps"], momentum=a["momentum"]))
    for name in ("op.conv2d.s1p0", "op.conv2d.s2p1"):
        port.function(name, lambda i, p, a: TF.conv2d(i["x"], p["weight"], p["bias"],
                                                      a["stride"], a["padding"]))
    port.function("lcr.loss_official", lcr)
    port.function("lcr.loss_exact", lcr)
    port.function("lcr.worked_example", lcr_pair)
    port.function("cmim.official_first_call", cmim_official)
    port.function("cmim.official", cmim_official)
    port.function("cmim.nce_loss", lambda i, p, a: nce(i["x"], a["n_noise"], a["n_data"],
                                                       a["eps"]))
    port.function("cmim.paper_infonce", paper_infonce)
    port.function("s2bnn.distribution_loss", distribution)
    port.function("s2bnn.moco_infonce", moco, layout={"queue": QUEUE_COLUMNS})
    port.function("s2bnn.moco_step", moco_step, layout={"queue": QUEUE_COLUMNS})
    return port

"""PyTorch parity: the binary layers and ReActNet blocks against a short re-implementation of
the same formulas in torch (custom autograd Functions for the pseudo-gradients), float32,
forward and gradients w.r.t. input, latent weight and learnable shifts. Optional: needs torch."""

import numpy as np
import pytest

from minibnn import Tensor
from minibnn.nn.binary import BinaryConv2d, BinaryLinear, RPReLU, RSign, set_ede

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
TOL = dict(rtol=1e-5, atol=1e-5)


def t_sign(x):
    return torch.where(x < 0, -1.0, 1.0).to(x.dtype)                # sign(0) = +1, as minibnn


class TSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, clip):
        ctx.save_for_backward(x)
        ctx.clip = clip
        return t_sign(x)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * (x.abs() <= ctx.clip), None


class TApprox(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return t_sign(x)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        inner = torch.where((x >= 0) & (x < 1), 2 - 2 * x, 0 * x)
        g = torch.where((x >= -1) & (x < 0), 2 + 2 * x, inner)
        return dy * g


class TEde(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t, k):
        ctx.save_for_backward(x)
        ctx.t, ctx.k = t, k
        return t_sign(x)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * ctx.k * ctx.t * (1 - torch.tanh(ctx.t * x) ** 2), None, None


class TReAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        return alpha * t_sign(w)

    @staticmethod
    def backward(ctx, dy):
        (w,) = ctx.saved_tensors
        return dy * (w.abs() <= 1)


T, K = 0.5, 2.0                                                    # one EDE (t, k) for the tests


def t_activation(name, x):
    return {"ste": lambda: TSte.apply(x, 1.0), "approx": lambda: TApprox.apply(x),
            "ede": lambda: TEde.apply(x, T, K)}[name]()


def t_weight(name, w):
    dims = tuple(range(1, w.dim()))
    if name == "xnor":
        return w.abs().mean(dim=dims, keepdim=True) * TSte.apply(w, 1.0)
    if name == "irnet":
        bw = w - w.mean(dim=dims, keepdim=True)
        bw = bw / bw.std(dim=dims, keepdim=True)                   # unbiased, as torch's default
        s = torch.pow(2.0, torch.round(torch.log2(bw.abs().mean(dim=dims, keepdim=True)))).detach()
        return s * TEde.apply(bw, T, K)
    if name == "reactnet":
        return TReAct.apply(w)
    if name == "sign":
        return TSte.apply(w, 1.0)
    return w                                                        # "none"


CASES = [(wq, "ste") for wq in ["xnor", "reactnet", "sign", "none"]] + [
    ("irnet", "ede"), ("irnet", "ste"), ("reactnet", "approx"), ("xnor", "ede")]


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("weight_q,input_q", CASES)
def test_binary_layer_matches_torch(kind, weight_q, input_q, rng):
    if kind == "conv":
        layer = BinaryConv2d(3, 8, 3, stride=2, padding=1, input_quantizer=input_q,
                             weight_quantizer=weight_q, rng=0)
        x = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    else:
        layer = BinaryLinear(20, 6, input_quantizer=input_q, weight_quantizer=weight_q, rng=0)
        x = rng.normal(size=(4, 20)).astype(np.float32)
    set_ede(layer, T, K)
    layer.weight.data *= 8                                          # some latent |W| > 1
    assert 0 < np.mean(np.abs(layer.weight.data) > 1) < 0.8
    xt = Tensor(x, requires_grad=True)
    y = layer(xt)
    dy = rng.normal(size=y.shape).astype(np.float32)
    y.backward(dy)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(layer.weight.data, requires_grad=True)
    xb, wb = t_activation(input_q, tx), t_weight(weight_q, tw)
    ty = (torch.nn.functional.conv2d(xb, wb, stride=2, padding=1) if kind == "conv"
          else torch.nn.functional.linear(xb, wb))
    ty.backward(torch.tensor(dy))

    np.testing.assert_allclose(y.data, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.binary_weight(), wb.detach().numpy(), **TOL)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(layer.weight.grad, tw.grad.numpy(), **TOL)


def test_rsign_and_rprelu_match_torch(rng):
    c = 4
    rsign, rprelu = RSign(c), RPReLU(c)
    shifts = [rsign.shift.bias, rprelu.shift_in.bias, rprelu.shift_out.bias]
    for p in shifts:
        p.data[...] = rng.normal(size=c) * 0.3
    rprelu.prelu.weight.data[...] = rng.uniform(0.1, 0.4, size=c)
    x = rng.normal(size=(2, c, 3, 3)).astype(np.float32)
    mult = rng.normal(size=x.shape).astype(np.float32)             # stands in for a conv
    xt = Tensor(x, requires_grad=True)
    y = rprelu(rsign(xt) * Tensor(mult))
    dy = rng.normal(size=y.shape).astype(np.float32)
    y.backward(dy)

    view = (1, c, 1, 1)
    tx = torch.tensor(x, requires_grad=True)
    tb = [torch.tensor(p.data, requires_grad=True) for p in shifts]
    slope = torch.tensor(rprelu.prelu.weight.data, requires_grad=True)
    h = TApprox.apply(tx + tb[0].view(view)) * torch.tensor(mult)
    ty = torch.nn.functional.prelu(h + tb[1].view(view), slope) + tb[2].view(view)
    ty.backward(torch.tensor(dy))

    np.testing.assert_allclose(y.data, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), **TOL)
    for p, t in zip(shifts, tb):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **TOL)
    np.testing.assert_allclose(rprelu.prelu.weight.grad, slope.grad.numpy(), **TOL)

"""Binary layers: equal to the real layer fed sign(x) and binary_weight(), forward and backward
(closed-form pseudo-gradients per weight binarizer), plus the ReActNet blocks and the
model-level helpers (set_ede, clip_latent_weights, FlipRatio, binary_layers)."""

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F
from minibnn.autograd import gradcheck
from minibnn.nn import Conv2d, Sequential, init
from minibnn.nn.binary import (BinaryConv2d, BinaryLinear, FlipRatio, LearnableBias, RPReLU,
                               RSign, binary_layers, clip_latent_weights, set_ede)
from minibnn.quantizers import EDEQuantizer, IRNetWeight, XnorWeight, sign

WEIGHT_BINARIZERS = ["xnor", "irnet", "reactnet", "sign", "none"]
CONV = dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1)


def make_layer(kind: str, weight_quantizer, input_quantizer="ste", seed=0):
    if kind == "conv":
        layer = BinaryConv2d(**CONV, input_quantizer=input_quantizer,
                             weight_quantizer=weight_quantizer, rng=seed)
    else:
        layer = BinaryLinear(7, 5, input_quantizer=input_quantizer,
                             weight_quantizer=weight_quantizer, rng=seed)
    layer.weight.data = layer.weight.data.astype(np.float64) * 8   # some |W| > 1
    assert 0 < np.mean(np.abs(layer.weight.data) > 1) < 0.8
    return layer


def make_input(kind: str, rng) -> np.ndarray:
    x = rng.normal(size=(2, 3, 6, 5) if kind == "conv" else (3, 7)) * 1.5
    x.reshape(-1)[:3] = 0.0                                         # exact zeros: sign(0) = +1
    return x


def real_layer(kind: str, xb: np.ndarray, wb: np.ndarray, dy: np.ndarray):
    """(y, dx, dw) of the real conv/linear at the given operands: the oracle."""
    xt, wt = Tensor(xb, requires_grad=True), Tensor(wb, requires_grad=True)
    y = (F.conv2d(xt, wt, None, CONV["stride"], CONV["padding"]) if kind == "conv"
         else F.linear(xt, wt))
    y.backward(dy)
    return y.data, xt.grad, wt.grad


def weight_grad_closed_form(name: str, w: np.ndarray, dwb: np.ndarray, ede: EDEQuantizer):
    """dL/dW from dL/dW_b, written out per binarizer (not via autograd)."""
    axes = tuple(range(1, w.ndim))
    n = int(np.prod(w.shape[1:]))
    ste = np.abs(w) <= 1
    if name in ("sign", "reactnet"):
        return dwb * ste
    if name == "none":
        return dwb
    if name == "xnor":
        alpha = np.mean(np.abs(w), axis=axes, keepdims=True)
        return alpha * dwb * ste + np.sign(w) * np.sum(dwb * sign(w), axis=axes, keepdims=True) / n
    # irnet: W_hat = (W - mu) / sigma (unbiased), g = s * EDE'(W_hat) * dW_b, then
    # dW = (g - mean(g) - W_hat * sum(g W_hat) / (n - 1)) / sigma
    mu = w.mean(axis=axes, keepdims=True)
    sigma = w.std(axis=axes, ddof=1, keepdims=True)
    w_hat = (w - mu) / sigma
    s = 2.0 ** np.round(np.log2(np.mean(np.abs(w_hat), axis=axes, keepdims=True)))
    g = s * dwb * ede.k * ede.t * (1 - np.tanh(ede.t * w_hat) ** 2)
    return (g - g.mean(axis=axes, keepdims=True)
            - w_hat * np.sum(g * w_hat, axis=axes, keepdims=True) / (n - 1)) / sigma


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("name", WEIGHT_BINARIZERS)
def test_binary_layer_equals_real_layer_on_binarized_operands(kind, name, rng):
    layer = make_layer(kind, name)
    if name == "irnet":
        layer.set_ede(0.5, 2.0)                                     # a non-trivial EDE bump
    x = make_input(kind, rng)
    xt = Tensor(x, requires_grad=True)
    y = layer(xt)
    dy = rng.normal(size=y.shape)
    y.backward(dy)
    wb = layer.binary_weight()
    y_ref, dxb, dwb = real_layer(kind, sign(x), wb, dy)
    np.testing.assert_array_equal(y.data, y_ref)                    # binary_weight() is what runs
    np.testing.assert_array_equal(xt.grad, dxb * (np.abs(x) <= 1))  # STE on the input
    ede = getattr(layer.weight_quantizer, "quantizer", None)
    expected = weight_grad_closed_form(name, layer.weight.data, dwb, ede)
    np.testing.assert_allclose(layer.weight.grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["xnor", "irnet", "reactnet", "sign"])
def test_binary_weight_is_scaled_sign(name):
    layer = BinaryConv2d(8, 6, 3, weight_quantizer=name, rng=1)
    wb = layer.binary_weight()
    scale = np.abs(wb).reshape(6, -1)
    np.testing.assert_array_equal(scale, scale[:, :1].repeat(scale.shape[1], axis=1))
    assert wb.dtype == np.float32 and wb.shape == (6, 8, 3, 3)


def test_binary_weight_is_a_copy():
    layer = BinaryLinear(4, 3, weight_quantizer="none", rng=0)
    wb = layer.binary_weight()
    np.testing.assert_array_equal(wb, layer.weight.data)
    wb[...] = 7
    assert not np.any(layer.weight.data == 7)


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_gradcheck_smooth_binary_layer(kind, rng):
    """Identity quantizers leave alpha * W (xnor) or s * W_hat (irnet): smooth, checkable."""
    for wq in (XnorWeight(quantizer="identity"), IRNetWeight(quantizer="identity")):
        layer = make_layer(kind, wq, input_quantizer="identity")
        gradcheck(layer, Tensor(make_input(kind, rng), requires_grad=True))
        gradcheck(lambda w: layer(Tensor(make_input(kind, np.random.default_rng(1)))), layer.weight)


def test_zero_padding_contributes_zero():
    layer = BinaryConv2d(1, 1, 3, padding=1, weight_quantizer="sign", rng=0)
    layer.weight.data[...] = 0.5                                    # sign(W) = +1 everywhere
    y = layer(Tensor(np.full((1, 1, 4, 4), 0.3, np.float32))).data[0, 0]
    np.testing.assert_array_equal(y, [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])


def test_initialisation_matches_real_layers_and_can_be_overridden():
    for bias in (False, True):
        b, r = BinaryConv2d(3, 8, 3, bias=bias, rng=5), Conv2d(3, 8, 3, bias=bias, rng=5)
        np.testing.assert_array_equal(b.weight.data, r.weight.data)
        if bias:
            np.testing.assert_array_equal(b.bias.data, r.bias.data)
    layer = BinaryConv2d(3, 8, 3, weight_quantizer="reactnet", rng=0,
                         weight_init=lambda shape, rng: init.uniform(shape, rng, 0.0, 1e-3))
    assert layer.weight.dtype == np.float32 and 0 <= layer.weight.data.min() < 1e-3
    assert BinaryLinear(5, 2, rng=0).bias is None
    assert BinaryLinear(5, 2, bias=True, rng=0).bias.shape == (2,)


def test_bias_is_added_after_the_binary_product(rng):
    layer = BinaryLinear(6, 3, bias=True, rng=0)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(layer(Tensor(x)).data,
                               sign(x) @ layer.binary_weight().T + layer.bias.data, rtol=1e-6)


@pytest.mark.parametrize("bad", [(2, 4, 5, 5), (2, 3, 5), (3, 5, 5)])
def test_conv_input_validation_names_the_expected_shape(bad):
    with pytest.raises(ValueError, match=r"BinaryConv2d: expected input \(N, 3, H, W\)"):
        BinaryConv2d(3, 2, 3, rng=0)(Tensor(np.zeros(bad, np.float32)))


@pytest.mark.parametrize("bad", [(2, 6), (2, 5, 1), (5,)])
def test_linear_input_validation_names_the_expected_shape(bad):
    with pytest.raises(ValueError, match=r"BinaryLinear: expected input \(N, 5\)"):
        BinaryLinear(5, 2, rng=0)(Tensor(np.zeros(bad, np.float32)))


def test_repr_names_the_quantizers():
    text = repr(BinaryConv2d(3, 4, 3, padding=1, input_quantizer="approx",
                             weight_quantizer="reactnet"))
    for part in ("ApproxSignQuantizer()", "ReActNetWeight(clip=1)", "padding=1"):
        assert part in text


# -------------------------------------------------------------------------------- EDE
def test_irnet_layer_shares_one_ede_with_its_input_and_set_ede_reaches_all():
    shared = BinaryConv2d(3, 4, 3, input_quantizer="ede", weight_quantizer="irnet", rng=0)
    assert shared.weight_quantizer.quantizer is shared.input_quantizer
    assert shared.set_ede(2.0, 0.5) == 1
    assert (shared.weight_quantizer.quantizer.t, shared.weight_quantizer.quantizer.k) == (2.0, 0.5)
    separate = BinaryConv2d(4, 4, 3, input_quantizer="ste", weight_quantizer="irnet", rng=0)
    model = Sequential(shared, separate, RSign(4, quantizer="ede"), BinaryLinear(4, 2, rng=0))
    assert set_ede(model, 0.01, 100.0) == 3                         # shared, separate, RSign
    for q in (shared.input_quantizer, separate.weight_quantizer.quantizer, model[2].quantizer):
        assert (q.t, q.k) == (0.01, 100.0)
    assert set_ede(BinaryLinear(4, 2, rng=0), 1.0, 1.0) == 0


# ------------------------------------------------------------------------ ReActNet blocks
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4, 5)])
def test_learnable_bias_shapes_and_gradients(shape, rng):
    lb = LearnableBias(3)
    assert lb.bias.shape == (3,) and not lb.bias.data.any()
    lb.bias.data[...] = [0.5, -1.0, 2.0]
    x, dy = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    xt = Tensor(x, requires_grad=True)
    y = lb(xt)
    y.backward(dy)
    b = lb.bias.data.reshape((1, 3) + (1,) * (len(shape) - 2))
    np.testing.assert_array_equal(y.data, x + b)
    np.testing.assert_array_equal(xt.grad, dy)
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(lb.bias.grad, dy.sum(axis=axes), rtol=1e-5)
    with pytest.raises(ValueError, match=r"LearnableBias: expected input \(N, 3\)"):
        lb(Tensor(np.zeros((2, 4), np.float32)))


def test_rsign_is_shift_then_approx_sign(rng):
    rs = RSign(3)
    rs.shift.bias.data[...] = [0.25, -0.5, 0.0]
    x = rng.normal(size=(4, 3, 2, 2)) * 0.8
    xt = Tensor(x, requires_grad=True)
    y = rs(xt)
    dy = rng.normal(size=y.shape)
    y.backward(dy)
    z = x + rs.shift.bias.data.reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(y.data, sign(z))
    expected_dx = dy * np.maximum(2 - 2 * np.abs(z), 0)
    np.testing.assert_allclose(xt.grad, expected_dx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rs.shift.bias.grad, expected_dx.sum(axis=(0, 2, 3)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
def test_rprelu_forward_and_gradcheck(shape, rng):
    m = RPReLU(3)
    np.testing.assert_array_equal(m.prelu.weight.data, 0.25)
    for p, v in zip(m.parameters(), ([0.1, -0.2, 0.3], [0.25, 0.5, 0.75], [1.0, 0.0, -1.0])):
        p.data = np.array(v, np.float64)
    x = rng.normal(size=shape)
    view = (1, 3) + (1,) * (len(shape) - 2)
    z = x + m.shift_in.bias.data.reshape(view)
    ref = (np.where(z > 0, z, z * m.prelu.weight.data.reshape(view))
           + m.shift_out.bias.data.reshape(view))
    np.testing.assert_allclose(m(Tensor(x)).data, ref, rtol=1e-12)
    gradcheck(m, Tensor(x, requires_grad=True))
    gradcheck(lambda *ps: m(Tensor(x)), *m.parameters())


# ------------------------------------------------------------------------ model helpers
def small_model():
    return Sequential(BinaryConv2d(2, 3, 3, rng=0), Conv2d(3, 3, 1, rng=1),
                      BinaryConv2d(3, 2, 1, weight_quantizer="none", rng=2),
                      BinaryConv2d(2, 4, 1, weight_quantizer="reactnet", rng=3))


def test_binary_layers_lists_binary_convs_and_linears_by_name():
    names = [name for name, _ in binary_layers(small_model())]
    assert names == ["0", "2", "3"]


def test_clip_latent_weights_clips_binarized_layers_only():
    model = small_model()
    for p in model.parameters():
        p.data *= 10
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    expected = sum(int(np.sum(np.abs(before[f"{i}.weight"]) > 0.5)) for i in ("0", "3"))
    assert clip_latent_weights(model, bound=0.5) == expected > 0
    for i in ("0", "3"):
        np.testing.assert_array_equal(model[int(i)].weight.data,
                                      np.clip(before[f"{i}.weight"], -0.5, 0.5))
    for name in ("1.weight", "1.bias", "2.weight"):                # real conv, real weights
        np.testing.assert_array_equal(dict(model.named_parameters())[name].data, before[name])
    assert clip_latent_weights(model, bound=0.5) == 0


def test_flip_ratio_counts_sign_changes_between_updates():
    model = small_model()
    ratio = FlipRatio(model)
    assert ratio.update() == 0.0 and ratio.update() == 0.0
    total = model[0].weight.size + model[3].weight.size            # "none" layer not counted
    model[0].weight.data.reshape(-1)[:5] *= -1
    model[3].weight.data.reshape(-1)[:2] *= -1
    model[2].weight.data *= -1                                      # real weights: ignored
    assert ratio.update() == pytest.approx(7 / total)
    model[0].weight.data.reshape(-1)[:5] *= 0.5                     # magnitude only: no flip
    assert ratio.update() == 0.0

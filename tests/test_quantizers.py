"""Quantizers: sign(0) = +1, each pseudo-gradient against its closed form and the verified tables
of docs/methods.md section 1, the registries, and the weight binarizers on their own."""

import re
from pathlib import Path

import numpy as np
import pytest

from minibnn import Tensor
from minibnn.autograd import gradcheck
from minibnn.quantizers import (QUANTIZERS, ApproxSignQuantizer, CallableQuantizer,
                                EDEQuantizer, IdentityQuantizer, IRNetWeight, Quantizer,
                                ReActNetWeight, RealWeight, SignWeight, SteQuantizer,
                                WeightQuantizer, XnorWeight, approx_sign, ede_sign, identity,
                                make_quantizer, quantizer_names, register_quantizer, sign,
                                ste_sign)


def grad_of(fn, x: np.ndarray, upstream=None) -> np.ndarray:
    t = Tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(np.ones_like(x) if upstream is None else upstream)
    return t.grad


# -------------------------------------------------------------------------------- sign
def test_sign_of_zero_is_plus_one_and_agrees_with_the_packing_rule():
    x = np.array([0.0, -0.0, np.nan, 1e-45, -1e-45, np.inf, -np.inf, 3.0, -3.0], np.float32)
    expected = np.array([1, 1, 1, 1, -1, 1, -1, 1, -1], np.float32)
    np.testing.assert_array_equal(sign(x), expected)
    np.testing.assert_array_equal(sign(x) < 0, x < 0)          # engine: bit = x < 0, 1 means -1
    assert np.copysign(1, np.float32(-0.0)) == -1              # why copysign alone is not used


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_sign_keeps_dtype_and_matches_copysign_away_from_zero(dtype, rng):
    x = (rng.normal(size=(3, 4, 5)) * 10).astype(dtype)
    y = sign(x)
    assert y.dtype == dtype and y.shape == x.shape
    nonzero = x != 0
    np.testing.assert_array_equal(y[nonzero], np.copysign(1, x[nonzero]))


@pytest.mark.parametrize("fn", [ste_sign, approx_sign, ede_sign,
                                lambda x: ste_sign(x, clip=np.inf)])
def test_every_sign_function_has_the_same_forward(fn, rng):
    x = np.concatenate([rng.normal(size=50), [0.0, -0.0, 1.0, -1.0]]).astype(np.float32)
    y = fn(Tensor(x))
    np.testing.assert_array_equal(y.data, sign(x))
    assert y.dtype == np.float32


# --------------------------------------------------------------------- pseudo-gradients
def test_ste_pseudo_gradient_is_clipped_identity_edges_pass():
    x = np.array([-2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0])             # exact 0 and both clip edges
    np.testing.assert_array_equal(grad_of(ste_sign, x), [0, 1, 1, 1, 1, 1, 0])
    clipped = grad_of(lambda t: ste_sign(t, clip=0.3), x)
    np.testing.assert_array_equal(clipped, [0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(grad_of(lambda t: ste_sign(t, clip=np.inf), x), np.ones(7))


def test_ste_pseudo_gradient_multiplies_the_upstream_gradient(rng):
    x, dy = rng.normal(size=(4, 6)) * 2, rng.normal(size=(4, 6))
    np.testing.assert_array_equal(grad_of(ste_sign, x, dy), dy * (np.abs(x) <= 1))


def test_approx_sign_matches_the_verified_table():
    # docs/methods.md 1.2: x = [-1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 1.5]
    x = np.array([-1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 1.5], np.float32)
    np.testing.assert_array_equal(grad_of(approx_sign, x), [0, 0, 1, 1.5, 2, 1.5, 1, 0, 0])


def test_approx_sign_equals_the_piecewise_closed_form_bit_for_bit(rng):
    x = (rng.uniform(-1.5, 1.5, size=2000)).astype(np.float32)
    piecewise = np.select([(x >= -1) & (x < 0), (x >= 0) & (x < 1)], [2 + 2 * x, 2 - 2 * x], 0)
    np.testing.assert_array_equal(grad_of(approx_sign, x), piecewise.astype(np.float32))


EDE_TABLE = {  # docs/methods.md 1.1, x = [-2, -0.5, 0, 0.5, 2], values rounded as printed there
    (1e-3, 1000): [1, 1, 1, 1, 1],
    (0.1, 10): [0.9610, 0.9975, 1, 0.9975, 0.9610],
    (1, 1): [0.0707, 0.7864, 1, 0.7864, 0.0707],
    (10, 1): [0, 0.001816, 10, 0.001816, 0],
}


@pytest.mark.parametrize("t,k", list(EDE_TABLE))
def test_ede_pseudo_gradient_matches_the_verified_table(t, k):
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    got = grad_of(lambda v: ede_sign(v, t, k), x)
    np.testing.assert_allclose(got, EDE_TABLE[(t, k)], rtol=1e-3, atol=1e-6)
    assert got[2] == pytest.approx(k * t, rel=1e-6)                  # peak k t at x = 0


@pytest.mark.parametrize("t,k", list(EDE_TABLE))
def test_ede_pseudo_gradient_equals_its_closed_form(t, k, rng):
    x, dy = rng.normal(size=300) * 3, rng.normal(size=300)
    expected = dy * k * t * (1 - np.tanh(t * x) ** 2)
    np.testing.assert_allclose(grad_of(lambda v: ede_sign(v, t, k), x, dy), expected, rtol=1e-12)


def test_identity_returns_its_input_and_passes_the_gradient(rng):
    x = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
    assert identity(x) is x
    doubled = grad_of(lambda v: identity(v) * 2.0, x.data)
    np.testing.assert_array_equal(doubled, np.full((3, 4), 2.0))


# ------------------------------------------------------------------- quantizer objects
@pytest.mark.parametrize("name,cls", [("ste", SteQuantizer), ("approx", ApproxSignQuantizer),
                                      ("ede", EDEQuantizer), ("identity", IdentityQuantizer)])
def test_make_quantizer_by_name(name, cls):
    q = make_quantizer(name)
    assert type(q) is cls and q.name == name and q.roles == ("input", "weight")
    assert type(make_quantizer(name, "weight")) is cls         # elementwise: weights too
    assert quantizer_names("input") == ["ste", "approx", "ede", "identity"]
    assert repr(q).startswith(cls.__name__ + "(")
    assert q.binary == (name != "identity")


def test_make_quantizer_passes_options_shares_objects_and_wraps_callables():
    q = make_quantizer("ste", clip=2.0)
    assert q.clip == 2.0 and repr(q) == "SteQuantizer(clip=2)"
    assert make_quantizer(q) is q
    wrapped = make_quantizer(ste_sign)
    assert isinstance(wrapped, CallableQuantizer) and "ste_sign" in repr(wrapped)
    np.testing.assert_array_equal(wrapped(Tensor(np.array([-0.0, 2.0]))).data, [1, 1])


def test_unknown_quantizer_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="ste, approx, ede, identity$"):
        make_quantizer("tanh")
    with pytest.raises(ValueError, match="closest valid name: 'xnor'; valid names: ste, approx, "
                                         "ede, identity, xnor, irnet, reactnet, sign, none"):
        make_quantizer("xnr", "weight")
    with pytest.raises(TypeError):
        make_quantizer(3)
    with pytest.raises(ValueError, match="role must be one of"):
        make_quantizer("ste", "bias")


@pytest.mark.parametrize("name,closest", [("none", "identity"), ("sign", "ste"), ("xnor", "ste"),
                                          ("irnet", "ede"), ("reactnet", "approx")])
def test_weights_only_names_are_refused_for_inputs_with_their_counterpart(name, closest):
    with pytest.raises(ValueError, match=f"applies to weights only, not to inputs; closest "
                                         f"valid name: '{closest}'"):
        make_quantizer(name, "input")
    with pytest.raises(ValueError, match="applies to weights only"):
        make_quantizer(make_quantizer(name, "weight"), "input")


def test_misspelt_weights_only_names_point_inputs_to_the_counterpart():
    with pytest.raises(ValueError, match="unknown input quantizer 'irnt'; closest valid name: 'ede'"):
        make_quantizer("irnt")
    with pytest.raises(ValueError, match="unknown weight quantizer 'irnt'; closest valid name: "
                                         "'irnet'"):
        make_quantizer("irnt", "weight")


def test_one_namespace_and_register_quantizer_checks_names_and_roles():
    assert list(QUANTIZERS) == ["ste", "approx", "ede", "identity", "xnor", "irnet", "reactnet",
                                "sign", "none"]
    assert quantizer_names("weight") == list(QUANTIZERS)

    class Clash(Quantizer):
        name = "xnor"
    with pytest.raises(ValueError, match="already taken by XnorWeight"):
        register_quantizer(Clash)

    class BadRole(Quantizer):
        name, roles = "bad_role", ("bias",)
    with pytest.raises(ValueError, match="roles must be among"):
        register_quantizer(BadRole)
    with pytest.raises(TypeError, match="Quantizer subclass"):
        register_quantizer(int)
    assert "bad_role" not in QUANTIZERS


def test_ede_quantizer_defaults_and_mutable_t_k():
    q = make_quantizer("ede")
    assert (q.t, q.k) == (0.1, 10.0) and repr(q) == "EDEQuantizer(t=0.1, k=10)"
    x = np.array([0.0, 0.5])
    q.t, q.k = 1.0, 1.0                                           # what set_ede does per epoch
    np.testing.assert_allclose(grad_of(q, x), [1.0, 1 - np.tanh(0.5) ** 2])


# ------------------------------------------------------------------- weight binarizers
SHAPES = [(4, 3, 3, 3), (5, 7)]                                 # conv (M, C, k, k), linear (M, K)


@pytest.mark.parametrize("name,cls", [("xnor", XnorWeight), ("irnet", IRNetWeight),
                                      ("reactnet", ReActNetWeight), ("sign", SignWeight),
                                      ("none", RealWeight)])
def test_make_weight_quantizer_by_name(name, cls):
    q = make_quantizer(name, "weight")
    assert type(q) is cls and q.name == name and q.roles == ("weight",)
    assert isinstance(q, WeightQuantizer) and isinstance(q, Quantizer)
    assert repr(q).startswith(cls.__name__ + "(") and q.binary == (name != "none")
    assert make_quantizer(q, "weight") is q
    assert isinstance(make_quantizer(lambda w: w, "weight"), CallableQuantizer)
    approx = make_quantizer("approx")
    assert make_quantizer(approx, "weight") is approx           # elementwise: used as it is


def test_elementwise_quantizers_on_weights_equal_the_sign_binarizer(rng):
    w, dy = rng.normal(size=(4, 3, 3, 3)), rng.normal(size=(4, 3, 3, 3))
    for name, inner in (("ste", "ste"), ("approx", "approx"), ("identity", "identity")):
        direct, wrapped = make_quantizer(name, "weight"), SignWeight(inner)
        np.testing.assert_array_equal(direct(Tensor(w)).data, wrapped(Tensor(w)).data)
        np.testing.assert_array_equal(grad_of(direct, w, dy), grad_of(wrapped, w, dy))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("detach", [False, True])
def test_xnor_forward_and_closed_form_gradient(shape, detach, rng):
    w, dy = rng.normal(size=shape) * 0.8, rng.normal(size=shape)
    axes = tuple(range(1, len(shape)))
    n = int(np.prod(shape[1:]))
    alpha = np.mean(np.abs(w), axis=axes, keepdims=True)
    q = make_quantizer("xnor", "weight", detach_alpha=detach)
    np.testing.assert_allclose(q(Tensor(w)).data, alpha * sign(w), rtol=1e-15)  # sum/n vs mean
    expected = alpha * dy * (np.abs(w) <= 1)                      # through the STE
    if not detach:                                                 # through alpha = mean |W|
        expected = expected + np.sign(w) * np.sum(dy * sign(w), axis=axes, keepdims=True) / n
    np.testing.assert_allclose(grad_of(q, w, dy), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_xnor_alpha_path(shape, rng):
    q = XnorWeight(quantizer="identity")                          # alpha * W: smooth away from 0
    gradcheck(q, Tensor(rng.normal(size=shape), requires_grad=True))


@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_irnet_standardisation_path(shape, rng):
    q = IRNetWeight(quantizer="identity")                         # s * W_hat, s detached
    gradcheck(q, Tensor(rng.normal(size=shape), requires_grad=True))
    gradcheck(q.standardize, Tensor(rng.normal(size=shape), requires_grad=True))


@pytest.mark.parametrize("shape", SHAPES)
def test_irnet_standardises_with_the_unbiased_std(shape, rng):
    w = rng.normal(0.3, 2.0, size=shape)
    axes = tuple(range(1, len(shape)))
    w_hat = IRNetWeight().standardize(Tensor(w)).data
    ref = (w - w.mean(axis=axes, keepdims=True)) / w.std(axis=axes, ddof=1, keepdims=True)
    np.testing.assert_allclose(w_hat, ref, rtol=1e-12)
    np.testing.assert_allclose(w_hat.reshape(shape[0], -1).std(axis=1, ddof=1), 1.0, rtol=1e-12)
    biased = (w - w.mean(axis=axes, keepdims=True)) / w.std(axis=axes, keepdims=True)
    assert not np.allclose(w_hat, biased)


@pytest.mark.parametrize("shape", [(64, 64, 3, 3), (16, 8, 3, 3)])
def test_irnet_scale_is_one_for_gaussian_weights(shape, rng):
    w = rng.normal(size=shape).astype(np.float32)                 # docs/methods.md 1.1 [verified]
    q = IRNetWeight()
    out = q(Tensor(w)).data
    np.testing.assert_array_equal(np.abs(out), 1.0)
    np.testing.assert_array_equal(out, sign(q.standardize(Tensor(w)).data))


def test_irnet_scale_is_a_detached_power_of_two():
    w = np.zeros((1, 50))
    w[0, 0] = 1.0                                                 # one spike: mean |W_hat| = 0.28
    w_hat = IRNetWeight().standardize(Tensor(w)).data
    assert np.mean(np.abs(w_hat)) < 2 ** -1.5
    assert IRNetWeight.scale(w_hat)[0, 0] == 0.25
    np.testing.assert_array_equal(np.abs(IRNetWeight(quantizer="ste")(Tensor(w)).data), 0.25)


def test_irnet_needs_two_entries_per_filter():
    with pytest.raises(ValueError, match="at least 2"):
        IRNetWeight()(Tensor(np.ones((3, 1, 1, 1))))


def test_reactnet_example_from_methods_section_1_2():
    w = np.array([[0.5, -2, 0.1], [-0.3, 0.3, 1.0]], np.float32).reshape(2, 3, 1, 1)
    wb = make_quantizer("reactnet", "weight")(Tensor(w)).data
    np.testing.assert_allclose(wb.sum(axis=(1, 2, 3)), [0.866667, 0.533333], rtol=1e-6)
    grad = grad_of(make_quantizer("reactnet", "weight"), w)         # alpha not in the gradient
    np.testing.assert_array_equal(grad.ravel(), [1, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("shape", SHAPES)
def test_reactnet_and_sign_weights_closed_forms(shape, rng):
    w, dy = rng.normal(size=shape), rng.normal(size=shape)
    alpha = np.mean(np.abs(w), axis=tuple(range(1, len(shape))), keepdims=True)
    np.testing.assert_array_equal(ReActNetWeight()(Tensor(w)).data, alpha * sign(w))
    np.testing.assert_array_equal(grad_of(ReActNetWeight(), w, dy), dy * (np.abs(w) <= 1))
    np.testing.assert_array_equal(SignWeight()(Tensor(w)).data, sign(w))
    np.testing.assert_array_equal(grad_of(SignWeight(), w, dy), dy * (np.abs(w) <= 1))
    real = Tensor(w, requires_grad=True)
    assert RealWeight()(real) is real


def test_weight_binarizers_reject_vectors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        XnorWeight()(Tensor(np.ones(4)))


def test_quantizer_base_classes_are_exported():
    assert isinstance(make_quantizer("ede"), Quantizer)


def test_sign_refuses_tensors_and_points_to_the_pseudo_gradient_versions():
    with pytest.raises(TypeError, match="ste_sign"):
        sign(Tensor(np.ones(3)))


def test_docs_table_and_error_are_the_registry_and_the_real_message():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "quantizers.md").read_text()
    rows = re.findall(r"^\| `(\w+)` +\| `(\w+)` +\| ([a-z, ]+?) +\|", doc, re.M)
    assert [(n, c) for n, c, _ in rows] == [(n, k.__name__) for n, k in QUANTIZERS.items()]
    assert all(set(r.replace(" ", "").split(",")) == {x + "s" for x in QUANTIZERS[n].roles}
               for n, _, r in rows)
    stated = re.search(r'>>> make_quantizer\("none", "input"\)\nValueError: (.*)\n', doc).group(1)
    with pytest.raises(ValueError) as err:
        make_quantizer("none", "input")
    assert str(err.value) == stated

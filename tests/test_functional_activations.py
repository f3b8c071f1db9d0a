"""Composites (functional/activations.py, functional/losses.py, var/std in
autograd/reductions.py): gradchecks, closed-form values, and edge conventions of softmax,
losses, normalize, var/std, activations, linear and dropout."""

import numpy as np
import pytest
from scipy import special

from minibnn import Tensor
from minibnn import functional as F
from minibnn.autograd import gradcheck


def leaf(x) -> Tensor:
    return Tensor(np.array(x, dtype=np.float64), requires_grad=True)


def away_from(rng, shape, kinks, margin=0.05, scale=2.0):
    """Normal samples pushed at least `margin` away from every kink."""
    x = scale * rng.normal(size=shape)
    for k in kinks:
        close = np.abs(x - k) < margin
        x[close] = k + np.where(x[close] >= k, margin, -margin) * 2
    return x


# ------------------------------------------------------------------ softmax and friends
@pytest.mark.parametrize("fn, ref", [(F.softmax, special.softmax), (F.log_softmax, special.log_softmax)],
                         ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((6,), 0)], ids=str)
def test_softmax_family_gradcheck_and_values(fn, ref, shape, axis, rng):
    x = 2 * rng.normal(size=shape)
    np.testing.assert_allclose(fn(leaf(x), axis=axis).data, ref(x, axis=axis), rtol=1e-12, atol=1e-14)
    gradcheck(lambda t: fn(t, axis=axis), leaf(x))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape, axis", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1)], ids=str)
def test_logsumexp_gradcheck_and_values(shape, axis, keepdims, rng):
    x = 2 * rng.normal(size=shape)
    out = F.logsumexp(leaf(x), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, special.logsumexp(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    gradcheck(lambda t: F.logsumexp(t, axis=axis, keepdims=keepdims), leaf(x))


def test_softmax_is_stable_for_huge_logits():
    x = leaf([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]])
    p = F.softmax(x)
    np.testing.assert_allclose(p.data, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    lp = F.log_softmax(x)
    np.testing.assert_allclose(lp.data[0, :2], np.log(0.5))
    (p.sum() + lp[:, 1].sum()).backward()
    assert np.all(np.isfinite(x.grad))


def test_softmax_rows_sum_to_one_and_gradient_of_the_sum_is_zero(rng):
    x = leaf(rng.normal(size=(3, 7)))
    p = F.softmax(x, axis=1)
    np.testing.assert_allclose(p.data.sum(axis=1), 1.0, rtol=1e-12)
    p.sum().backward()
    np.testing.assert_allclose(x.grad, 0.0, atol=1e-15)


# -------------------------------------------------------------------------- cross-entropy
LABELS = np.array([0, 3, 3, 1, 2])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_with_labels_gradcheck(reduction, label_smoothing, rng):
    x = leaf(rng.normal(size=(5, 4)))
    gradcheck(lambda t: F.cross_entropy(t, LABELS, reduction=reduction, label_smoothing=label_smoothing), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_with_soft_targets_gradcheck(reduction, label_smoothing, rng):
    x = leaf(rng.normal(size=(5, 4)))
    q = special.softmax(rng.normal(size=(5, 4)), axis=1)
    gradcheck(lambda t: F.cross_entropy(t, q, reduction=reduction, label_smoothing=label_smoothing), x)


def test_cross_entropy_value_and_gradient_closed_form(rng):
    x = rng.normal(size=(5, 4))
    t = leaf(x)
    loss = F.cross_entropy(t, LABELS)
    logp = special.log_softmax(x, axis=1)
    assert loss.item() == pytest.approx(-logp[np.arange(5), LABELS].mean(), rel=1e-12)
    loss.backward()
    one_hot = np.eye(4)[LABELS]
    np.testing.assert_allclose(t.grad, (np.exp(logp) - one_hot) / 5, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_label_smoothing_matches_smoothed_soft_targets(reduction, rng):
    x, eps = rng.normal(size=(5, 4)), 0.1
    smoothed = (1 - eps) * np.eye(4)[LABELS] + eps / 4
    got = F.cross_entropy(leaf(x), LABELS, reduction=reduction, label_smoothing=eps)
    want = F.cross_entropy(leaf(x), smoothed, reduction=reduction)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-12)
    per_row = -(smoothed * special.log_softmax(x, axis=1)).sum(axis=1)
    expected = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    np.testing.assert_allclose(got.data, expected, rtol=1e-12)


def test_cross_entropy_accepts_tensor_and_list_labels(rng):
    x = rng.normal(size=(5, 4))
    want = F.cross_entropy(leaf(x), LABELS).item()
    assert F.cross_entropy(leaf(x), Tensor(LABELS)).item() == want
    assert F.cross_entropy(leaf(x), LABELS.tolist()).item() == want
    assert F.cross_entropy(leaf(x), LABELS.astype(np.int32)).item() == want


def test_cross_entropy_with_one_hot_soft_targets_equals_labels(rng):
    x = rng.normal(size=(5, 4))
    a = F.cross_entropy(leaf(x), LABELS, reduction="none").data
    b = F.cross_entropy(leaf(x), np.eye(4)[LABELS], reduction="none").data
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_from_log_probs_gradcheck_and_pick(reduction, rng):
    logp = special.log_softmax(rng.normal(size=(5, 4)), axis=1)
    picked = -logp[np.arange(5), LABELS]
    want = {"mean": picked.mean(), "sum": picked.sum(), "none": picked}[reduction]
    np.testing.assert_allclose(F.nll_from_log_probs(leaf(logp), LABELS, reduction).data, want, rtol=1e-12)
    gradcheck(lambda t: F.nll_from_log_probs(t, LABELS, reduction), leaf(logp))


# ----------------------------------------------------------------------------------- kl_div
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_gradcheck_in_input_and_target(reduction, log_target, rng):
    logp = leaf(special.log_softmax(rng.normal(size=(3, 4)), axis=1))
    q = special.softmax(rng.normal(size=(3, 4)), axis=1)
    target = leaf(np.log(q) if log_target else q)
    gradcheck(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target), logp, target)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
def test_kl_div_values_match_the_definition(reduction, rng):
    logp = special.log_softmax(rng.normal(size=(3, 4)), axis=1)
    q = special.softmax(rng.normal(size=(3, 4)), axis=1)
    pointwise = q * (np.log(q) - logp)
    want = {"mean": pointwise.mean(), "sum": pointwise.sum(), "none": pointwise,
            "batchmean": pointwise.sum() / 3}[reduction]
    np.testing.assert_allclose(F.kl_div(leaf(logp), q, reduction=reduction).data, want, rtol=1e-12)
    np.testing.assert_allclose(F.kl_div(leaf(logp), np.log(q), reduction=reduction, log_target=True).data,
                               want, rtol=1e-12)


def test_kl_div_zero_target_entries_contribute_zero_without_nan(rng):
    logp = leaf(special.log_softmax(rng.normal(size=(2, 3)), axis=1))
    q = np.array([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])
    loss = F.kl_div(logp, q, reduction="sum")
    assert np.isfinite(loss.item())
    mask = q > 0
    assert loss.item() == pytest.approx(np.sum(q[mask] * (np.log(q[mask]) - logp.data[mask])), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(logp.grad, -q)


def test_kl_div_of_identical_distributions_is_zero(rng):
    logp = special.log_softmax(rng.normal(size=(3, 5)), axis=1)
    assert F.kl_div(leaf(logp), np.exp(logp), reduction="batchmean").item() == pytest.approx(0, abs=1e-14)


# --------------------------------------------------------------------------------- mse_loss
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_gradcheck_and_values(reduction, rng):
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    pointwise = (x - y) ** 2
    want = {"mean": pointwise.mean(), "sum": pointwise.sum(), "none": pointwise}[reduction]
    np.testing.assert_allclose(F.mse_loss(leaf(x), y, reduction=reduction).data, want, rtol=1e-12)
    gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), leaf(x), leaf(y))


# -------------------------------------------------------------------------------- normalize
@pytest.mark.parametrize("shape, axis", [((3, 5), 1), ((3, 5), 0), ((2, 3, 4), -1), ((2, 3, 4), 1)], ids=str)
def test_normalize_gradcheck_and_unit_norm(shape, axis, rng):
    x = rng.normal(size=shape)
    y = F.normalize(leaf(x), axis=axis)
    np.testing.assert_allclose(np.linalg.norm(y.data, axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(y.data, x / np.linalg.norm(x, axis=axis, keepdims=True), rtol=1e-12)
    gradcheck(lambda t: F.normalize(t, axis=axis), leaf(x))


def test_normalize_zero_row_gives_zero_output_and_finite_gradient_without_nan(rng):
    x = rng.normal(size=(3, 4))
    x[1] = 0.0
    t = leaf(x)
    y = F.normalize(t, axis=1)
    np.testing.assert_array_equal(y.data[1], 0.0)
    g = rng.normal(size=(3, 4))
    y.backward(g)
    assert np.all(np.isfinite(t.grad))
    # the other rows are unaffected by the zero row
    others = leaf(x[[0, 2]])
    F.normalize(others, axis=1).backward(g[[0, 2]])
    np.testing.assert_allclose(t.grad[[0, 2]], others.grad, rtol=1e-12)
    # through the zero row only the numerator path is left: dy / eps, as torch (not zero; the norm
    # path is zero because max(sum x^2, eps^2) passes no gradient to sum x^2 there)
    np.testing.assert_allclose(t.grad[1], g[1] / 1e-12, rtol=1e-12)


def test_normalize_of_zero_rows_under_a_smooth_loss_has_no_nan():
    x = leaf(np.zeros((2, 3)))
    z = F.normalize(x, axis=1)
    (z @ z.T).sum().backward()                         # the InfoNCE-style use: similarities
    np.testing.assert_array_equal(x.grad, np.zeros((2, 3)))


# ------------------------------------------------------------------------------- var and std
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)], ids=str)
@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std_gradcheck_and_values(name, axis, keepdims, unbiased, rng):
    x = rng.normal(size=(3, 2, 4))
    ref = getattr(np, name)(x, axis=axis, keepdims=keepdims, ddof=1 if unbiased else 0)
    got = getattr(leaf(x), name)(axis=axis, unbiased=unbiased, keepdims=keepdims)
    np.testing.assert_allclose(got.data, ref, rtol=1e-12)
    np.testing.assert_allclose(getattr(F, name)(leaf(x), axis=axis, unbiased=unbiased, keepdims=keepdims).data,
                               ref, rtol=1e-12)
    gradcheck(lambda t: getattr(F, name)(t, axis=axis, unbiased=unbiased, keepdims=keepdims), leaf(x))


def test_var_defaults_to_unbiased(rng):
    x = rng.normal(size=7)
    assert leaf(x).var().item() == pytest.approx(np.var(x, ddof=1), rel=1e-12)


# ------------------------------------------------------------------------------ activations
ACTIVATIONS = {
    "relu": (F.relu, lambda x: np.maximum(x, 0), [0.0]),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x), [0.0]),
    "hardtanh": (F.hardtanh, lambda x: np.clip(x, -1, 1), [-1.0, 1.0]),
    "hardtanh_range": (lambda t: F.hardtanh(t, -0.5, 2.0), lambda x: np.clip(x, -0.5, 2.0), [-0.5, 2.0]),
    "tanh": (F.tanh, np.tanh, []),
    "sigmoid": (F.sigmoid, special.expit, []),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(7,), (3, 2, 4)], ids=str)
def test_activation_gradcheck_away_from_kinks(name, shape, rng):
    fn, ref, kinks = ACTIVATIONS[name]
    x = away_from(rng, shape, kinks)
    np.testing.assert_allclose(fn(leaf(x)).data, ref(x), rtol=1e-12)
    gradcheck(fn, leaf(x))


@pytest.mark.parametrize("fn, want", [
    (F.relu, [0, 0, 0, 1, 1, 1, 1]),                     # relu'(0) = 0
    (F.hardtanh, [0, 0, 1, 1, 1, 0, 0]),                 # strict inside: 0 at both boundaries
    (lambda t: t.clip(-1.0, 1.0), [0, 1, 1, 1, 1, 1, 0]),  # clip passes the boundaries
    (lambda t: F.leaky_relu(t, 0.2), [0.2, 0.2, 0.2, 1, 1, 1, 1]),  # slope at 0 is the negative one
], ids=["relu", "hardtanh", "clip", "leaky_relu"])
def test_activation_gradient_at_exact_kinks(fn, want):
    x = leaf([-2.0, -1.0, 0.0, 0.5, 0.999, 1.0, 2.0])  # exact 0 and both hardtanh/clip boundaries
    fn(x).sum().backward()
    np.testing.assert_array_equal(x.grad, want)


def test_relu_and_hardtanh_keep_float32():
    x = Tensor(np.array([-2.0, 0.5, 2.0], dtype=np.float32), requires_grad=True)
    for y in (F.relu(x), F.hardtanh(x), F.leaky_relu(x), F.sigmoid(x), F.tanh(x)):
        assert y.dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5), (2, 3, 5)], ids=str)
def test_prelu_per_channel_gradcheck_in_input_and_slopes(shape, rng):
    x = away_from(rng, shape, [0.0])
    a = rng.uniform(0.05, 0.5, size=(shape[1],))
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    np.testing.assert_allclose(F.prelu(leaf(x), leaf(a)).data, np.where(x > 0, x, a.reshape(bshape) * x))
    gradcheck(F.prelu, leaf(x), leaf(a))


@pytest.mark.parametrize("wshape", [(1,), ()], ids=str)
def test_prelu_shared_slope_gradcheck(wshape, rng):
    x = away_from(rng, (2, 3, 4), [0.0])
    a = np.full(wshape, 0.25)
    np.testing.assert_allclose(F.prelu(leaf(x), leaf(a)).data, np.where(x > 0, x, 0.25 * x))
    w = leaf(a)
    gradcheck(F.prelu, leaf(x), w)
    assert w.grad.shape == wshape


def test_prelu_slope_gradient_is_sum_of_negative_inputs():
    x = leaf([[-1.0, 2.0], [-3.0, -4.0]])
    a = leaf([0.1, 0.2])
    F.prelu(x, a).sum().backward()
    np.testing.assert_allclose(a.grad, [-4.0, -4.0])
    np.testing.assert_allclose(x.grad, [[0.1, 1.0], [0.1, 0.2]])


# ------------------------------------------------------------------------------------ linear
@pytest.mark.parametrize("xshape", [(4, 3), (2, 4, 3), (3,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(xshape, bias, rng):
    x, w = leaf(rng.normal(size=xshape)), leaf(rng.normal(size=(5, 3)))
    b = leaf(rng.normal(size=(5,))) if bias else None
    want = x.data @ w.data.T + (b.data if bias else 0)
    np.testing.assert_allclose(F.linear(x, w, b).data, want, rtol=1e-12)
    if bias:
        gradcheck(F.linear, x, w, b)
    else:
        gradcheck(F.linear, x, w)


# ----------------------------------------------------------------------------------- dropout
def test_dropout_masks_and_rescales_with_a_fixed_rng():
    p, x = 0.3, np.linspace(1.0, 2.0, 1000).reshape(10, 100)
    t = leaf(x)
    y = F.dropout(t, p, rng=np.random.default_rng(7))
    keep = np.random.default_rng(7).random(x.shape) >= p       # the documented mask rule
    np.testing.assert_allclose(y.data, np.where(keep, x / (1 - p), 0.0), rtol=1e-15)
    assert abs(keep.mean() - (1 - p)) < 0.05
    g = np.random.default_rng(1).normal(size=x.shape)
    y.backward(g)
    np.testing.assert_allclose(t.grad, np.where(keep, g / (1 - p), 0.0), rtol=1e-15)


def test_dropout_gradcheck_with_fixed_mask(rng):
    gradcheck(lambda t: F.dropout(t, 0.4, rng=np.random.default_rng(3)), leaf(rng.normal(size=(4, 5))))


def test_dropout_same_seed_same_mask_and_float32_preserved():
    x = Tensor(np.ones((3, 8), dtype=np.float32), requires_grad=True)
    a = F.dropout(x, 0.5, rng=np.random.default_rng(0))
    b = F.dropout(x, 0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.data, b.data)
    assert a.dtype == np.float32
    assert set(np.unique(a.data)) <= {0.0, 2.0}


def test_dropout_is_identity_in_eval_mode_and_for_p_zero(rng):
    x = leaf(rng.normal(size=(3, 4)))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, rng=rng) is x

"""Convolution, pooling and batch norm (functional/conv.py, functional/batchnorm.py):
gradchecks over stride, padding and kernel shapes with odd spatial sizes, and forward values
against naive loop references."""

import itertools

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F
from minibnn.autograd import gradcheck


def leaf(x) -> Tensor:
    return Tensor(np.array(x, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- naive loop references
def conv2d_reference(x, w, b, stride, padding):
    """Direct definition: y[n,m,i,j] = sum_{c,u,v} w[m,c,u,v] xpad[n,c,s*i+u,s*j+v] + b[m]."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, m, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]          # (N, C, kh, kw)
        y[:, :, i, j] = np.einsum("ncuv,mcuv->nm", patch, w)
    return y if b is None else y + b[None, :, None, None]


def pool_reference(x, k, stride, padding, kind):
    (kh, kw), (sh, sw), (ph, pw) = k, stride, padding
    n, c, h, wd = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((n, c, h + 2 * ph, wd + 2 * pw), fill)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
        y[:, :, i, j] = patch.max(axis=(2, 3)) if kind == "max" else patch.sum(axis=(2, 3)) / (kh * kw)
    return y


def adaptive_reference(x, out):
    h, w = x.shape[2:]
    y = np.zeros(x.shape[:2] + out)
    for i, j in itertools.product(range(out[0]), range(out[1])):
        r0, r1 = (i * h) // out[0], int(np.ceil((i + 1) * h / out[0]))
        c0, c1 = (j * w) // out[1], int(np.ceil((j + 1) * w / out[1]))
        y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


def distinct(rng, shape, scale=0.1):
    """Values without ties, at least `scale` apart: safe for max and for gradcheck steps."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * scale - 1.0


# ------------------------------------------------------------------------------- conv2d
CONV_GRID = list(itertools.product([1, 2], [0, 1, 2], [(1, 1), (3, 3), (2, 3)], [True, False]))


@pytest.mark.parametrize("stride, padding, kernel, bias", CONV_GRID,
                         ids=[f"s{s}-p{p}-k{k[0]}x{k[1]}-{'b' if b else 'nob'}" for s, p, k, b in CONV_GRID])
def test_conv2d_gradcheck_and_forward(stride, padding, kernel, bias, rng):
    x = rng.normal(size=(2, 2, 5, 7))                       # odd H and W
    w = rng.normal(size=(3, 2) + kernel)
    b = rng.normal(size=(3,)) if bias else None
    want = conv2d_reference(x, w, b, (stride, stride), (padding, padding))
    got = F.conv2d(leaf(x), leaf(w), leaf(b) if bias else None, stride=stride, padding=padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-12)
    inputs = [leaf(x), leaf(w)] + ([leaf(b)] if bias else [])
    gradcheck(lambda *t: F.conv2d(*t, stride=stride, padding=padding), *inputs)


@pytest.mark.parametrize("stride, padding", [((1, 2), (2, 0)), ((2, 1), (0, 1)), ((3, 2), (1, 1))], ids=str)
def test_conv2d_asymmetric_stride_and_padding(stride, padding, rng):
    x, w, b = rng.normal(size=(1, 3, 6, 5)), rng.normal(size=(2, 3, 2, 3)), rng.normal(size=(2,))
    got = F.conv2d(leaf(x), leaf(w), leaf(b), stride=stride, padding=padding)
    np.testing.assert_allclose(got.data, conv2d_reference(x, w, b, stride, padding), rtol=1e-10, atol=1e-12)
    gradcheck(lambda *t: F.conv2d(*t, stride=stride, padding=padding), leaf(x), leaf(w), leaf(b))


def test_conv2d_gradient_with_only_the_weight_requiring_grad(rng):
    x = Tensor(rng.normal(size=(2, 2, 4, 4)))
    w = leaf(rng.normal(size=(3, 2, 3, 3)))
    gradcheck(lambda t: F.conv2d(x, t, padding=1), w)
    assert x.grad is None


def test_conv2d_float32_stays_float32(rng):
    x = Tensor(rng.normal(size=(1, 2, 5, 5)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.normal(size=(3, 2, 3, 3)).astype(np.float32), requires_grad=True)
    b = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    y = F.conv2d(x, w, b, stride=2, padding=1)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


def test_conv2d_bias_gradient_is_the_sum_of_dy(rng):
    x, w, b = leaf(rng.normal(size=(2, 2, 5, 5))), leaf(rng.normal(size=(3, 2, 3, 3))), leaf(np.zeros(3))
    g = rng.normal(size=(2, 3, 3, 3))
    F.conv2d(x, w, b).backward(g)
    np.testing.assert_allclose(b.grad, g.sum(axis=(0, 2, 3)), rtol=1e-12)


# ------------------------------------------------------------------------------ pooling
POOL_CASES = [
    (2, None, 0),            # the classic 2x2/2
    (3, 2, 1),               # overlapping windows with padding
    (3, 1, 1),               # stride 1, "same" size
    ((2, 3), (1, 2), (1, 1)),
    (3, 3, 0),               # windows that do not cover the last row/column
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES, ids=str)
def test_pool_gradcheck_and_forward(kind, kernel, stride, padding, rng):
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    x = distinct(rng, (2, 2, 5, 7))
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    want = pool_reference(x, pair(kernel), pair(stride or kernel), pair(padding), kind)
    got = pool(leaf(x), kernel, stride, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.data, want, rtol=1e-12)
    gradcheck(lambda t: pool(t, kernel, stride, padding), leaf(x))


def test_max_pool_gradient_goes_to_the_first_maximum_of_a_tied_window():
    x = leaf(np.array([[[[1.0, 1.0], [1.0, 0.0]]]]))
    F.max_pool2d(x, 2).backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(x.grad, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_max_pool_overlapping_windows_accumulate_on_a_shared_maximum():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9.0                                   # the max of all four 2x2 windows
    t = leaf(x)
    F.max_pool2d(t, 2, stride=1).sum().backward()
    expect = np.zeros((1, 1, 3, 3))
    expect[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(t.grad, expect)


def test_avg_pool_padding_counts_in_the_denominator():
    x = leaf(np.ones((1, 1, 2, 2)))
    y = F.avg_pool2d(x, 2, stride=2, padding=1)           # each window holds one real value
    np.testing.assert_allclose(y.data, np.full((1, 1, 2, 2), 0.25))
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full((1, 1, 2, 2), 0.25))


def test_max_pool_float32_stays_float32(rng):
    x = Tensor(distinct(rng, (1, 2, 4, 4)).astype(np.float32), requires_grad=True)
    for pool in (F.max_pool2d, F.avg_pool2d):
        y = pool(x, 2, padding=1)
        assert y.dtype == np.float32
        y.sum().backward()
        assert x.grad.dtype == np.float32


@pytest.mark.parametrize("in_hw, out", [
    ((6, 6), (3, 3)),      # divisible: one ordinary pooling
    ((4, 6), (1, 1)),      # global average
    ((6, 4), (3, 4)),      # divisible with identity along W
    ((5, 7), (3, 2)),      # non-divisible: overlapping bins
    ((5, 5), (2, 4)),
    ((3, 2), (5, 4)),      # output larger than the input
    ((6, 5), (3, 2)),      # divisible in H only
], ids=str)
def test_adaptive_avg_pool_gradcheck_and_bins(in_hw, out, rng):
    x = rng.normal(size=(2, 2) + in_hw)
    got = F.adaptive_avg_pool2d(leaf(x), out)
    np.testing.assert_allclose(got.data, adaptive_reference(x, out), rtol=1e-12)
    gradcheck(lambda t: F.adaptive_avg_pool2d(t, out), leaf(x))


def test_adaptive_avg_pool_int_output_size_and_global_mean(rng):
    x = rng.normal(size=(2, 3, 5, 5))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(leaf(x), 1).data[..., 0, 0], x.mean(axis=(2, 3)))
    assert F.adaptive_avg_pool2d(leaf(x), 2).shape == (2, 3, 2, 2)


# --------------------------------------------------------------------------- batch norm
def bn_reference(x, mean, var, gamma, beta, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)


BN_SHAPES = [(6, 3), (3, 2, 3, 2), (4, 2, 5)]


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_gradcheck_and_batch_statistics(shape, affine, rng):
    x = rng.normal(size=shape) * 2 + 1
    c = shape[1]
    gamma, beta = (rng.uniform(0.5, 1.5, c), rng.normal(size=c)) if affine else (None, None)
    axes = (0,) + tuple(range(2, len(shape)))
    want = bn_reference(x, x.mean(axis=axes), x.var(axis=axes), gamma, beta, 1e-5)
    got = F.batch_norm(leaf(x), None, None, None if gamma is None else leaf(gamma),
                       None if beta is None else leaf(beta), training=True)
    np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-12)
    inputs = [leaf(x)] + ([leaf(gamma), leaf(beta)] if affine else [])
    fn = (lambda t, g, b: F.batch_norm(t, None, None, g, b, training=True)) if affine else \
        (lambda t: F.batch_norm(t, None, None, training=True))
    gradcheck(fn, *inputs)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_eval_uses_running_statistics_and_gradchecks(shape, rng):
    x, c = rng.normal(size=shape), shape[1]
    rm, rv = rng.normal(size=c), rng.uniform(0.5, 2.0, c)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    rm0, rv0 = rm.copy(), rv.copy()
    got = F.batch_norm(leaf(x), rm, rv, leaf(gamma), leaf(beta), training=False)
    np.testing.assert_allclose(got.data, bn_reference(x, rm, rv, gamma, beta, 1e-5), rtol=1e-12)
    gradcheck(lambda t, g, b: F.batch_norm(t, rm, rv, g, b, training=False), leaf(x), leaf(gamma), leaf(beta))
    np.testing.assert_array_equal(rm, rm0)                  # evaluation never moves the statistics
    np.testing.assert_array_equal(rv, rv0)


def test_batch_norm_training_updates_running_stats_in_place(rng):
    x = rng.normal(size=(4, 3, 2, 2)) * 3 + 2
    rm, rv = np.zeros(3), np.ones(3)
    momentum, n = 0.2, 4 * 2 * 2
    expect_m, expect_v = rm.copy(), rv.copy()
    for step in range(3):
        xs = x + step
        F.batch_norm(leaf(xs), rm, rv, training=True, momentum=momentum)
        expect_m = (1 - momentum) * expect_m + momentum * xs.mean(axis=(0, 2, 3))
        expect_v = (1 - momentum) * expect_v + momentum * xs.var(axis=(0, 2, 3)) * n / (n - 1)  # unbiased
    np.testing.assert_allclose(rm, expect_m, rtol=1e-12)
    np.testing.assert_allclose(rv, expect_v, rtol=1e-12)


def test_batch_norm_training_output_has_zero_mean_unit_variance_per_channel(rng):
    x = Tensor((rng.normal(size=(8, 3, 4, 4)) * 5 + 3).astype(np.float32), requires_grad=True)
    y = F.batch_norm(x, None, None, training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.data.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)
    y.sum().backward()                                      # sum of a normalised output is constant
    np.testing.assert_allclose(x.grad, 0.0, atol=1e-5)
    assert x.grad.dtype == np.float32


def test_batch_norm_gamma_and_beta_gradients_closed_form(rng):
    x = rng.normal(size=(5, 2))
    gamma, beta = leaf([1.5, 0.5]), leaf([0.0, 1.0])
    g = rng.normal(size=(5, 2))
    F.batch_norm(leaf(x), None, None, gamma, beta, training=True, eps=0.0).backward(g)
    xhat = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(beta.grad, g.sum(0), rtol=1e-12)
    np.testing.assert_allclose(gamma.grad, (g * xhat).sum(0), rtol=1e-10)

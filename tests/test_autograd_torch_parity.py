"""Parity with PyTorch (optional oracle): forward values and every input gradient, float32
inputs, explicit tolerances. Skipped when torch is not installed."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

from minibnn import Tensor  # noqa: E402
from minibnn import functional as F  # noqa: E402

pytestmark = pytest.mark.torch

RTOL, ATOL = 1e-5, 1e-6            # elementwise ops and small reductions in float32
CONV_RTOL, CONV_ATOL = 1e-4, 1e-5  # longer float32 accumulations (conv, batch norm)


def pair(*arrays, dtype=np.float32):
    """The same float32 data as a minibnn leaf and a torch leaf."""
    out = []
    for a in arrays:
        a = np.asarray(a, dtype=dtype)
        out.append((Tensor(a.copy(), requires_grad=True), torch.tensor(a.copy(), requires_grad=True)))
    return out


def run_both(mine_fn, torch_fn, *arrays, upstream_seed=0, rtol=RTOL, atol=ATOL):
    """Forward both, backward the same random upstream gradient, compare outputs and gradients."""
    pairs = pair(*arrays)
    ours = mine_fn(*[p[0] for p in pairs])
    theirs = torch_fn(*[p[1] for p in pairs])
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=rtol, atol=atol)
    assert ours.dtype == np.float32
    g = np.random.default_rng(upstream_seed).normal(size=ours.shape).astype(np.float32)
    ours.backward(g)
    theirs.backward(torch.tensor(g))
    for k, (m, t) in enumerate(pairs):
        assert m.grad is not None and m.grad.dtype == np.float32, f"input {k}"
        np.testing.assert_allclose(m.grad, t.grad.numpy(), rtol=rtol, atol=atol, err_msg=f"input {k}")
    return ours, theirs


# ------------------------------------------------------------------------------- conv2d
CONV_GRID = list(itertools.product([1, 2], [0, 1, 2], [(1, 1), (3, 3), (2, 3)], [True, False]))


@pytest.mark.parametrize("stride, padding, kernel, bias", CONV_GRID,
                         ids=[f"s{s}-p{p}-k{k[0]}x{k[1]}-{'b' if b else 'nob'}" for s, p, k, b in CONV_GRID])
def test_conv2d_matches_torch_values_and_all_gradients(stride, padding, kernel, bias, rng):
    x, w = rng.normal(size=(2, 3, 7, 9)), rng.normal(size=(4, 3) + kernel)
    arrays = [x, w] + ([rng.normal(size=4)] if bias else [])
    run_both(lambda *t: F.conv2d(*t, stride=stride, padding=padding),
             lambda *t: TF.conv2d(*t, stride=stride, padding=padding),
             *arrays, rtol=CONV_RTOL, atol=CONV_ATOL)


def test_conv2d_asymmetric_stride_padding_matches_torch(rng):
    x, w, b = rng.normal(size=(2, 3, 8, 7)), rng.normal(size=(5, 3, 3, 2)), rng.normal(size=5)
    run_both(lambda *t: F.conv2d(*t, stride=(2, 1), padding=(1, 2)),
             lambda *t: TF.conv2d(*t, stride=(2, 1), padding=(1, 2)), x, w, b,
             rtol=CONV_RTOL, atol=CONV_ATOL)


# ------------------------------------------------------------------------------ pooling
POOLS = [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1)), (3, 3, 0)]


@pytest.mark.parametrize("kernel, stride, padding", POOLS, ids=str)
def test_max_pool2d_matches_torch(kernel, stride, padding, rng):
    x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.01   # no ties inside a window
    run_both(lambda t: F.max_pool2d(t, kernel, stride, padding),
             lambda t: TF.max_pool2d(t, kernel, stride, padding), x)


@pytest.mark.parametrize("kernel, stride, padding", POOLS, ids=str)
def test_avg_pool2d_matches_torch_including_padding(kernel, stride, padding, rng):
    run_both(lambda t: F.avg_pool2d(t, kernel, stride, padding),
             lambda t: TF.avg_pool2d(t, kernel, stride, padding), rng.normal(size=(2, 3, 7, 9)))


@pytest.mark.parametrize("in_hw, out", [((6, 6), (3, 3)), ((7, 9), (1, 1)), ((7, 9), (3, 4)),
                                        ((5, 5), (2, 4)), ((3, 2), (5, 4)), ((8, 7), (4, 3))], ids=str)
def test_adaptive_avg_pool2d_matches_torch(in_hw, out, rng):
    run_both(lambda t: F.adaptive_avg_pool2d(t, out), lambda t: TF.adaptive_avg_pool2d(t, out),
             rng.normal(size=(2, 3) + in_hw))


# --------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 6), (5, 3, 4)], ids=str)
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batch_norm_train_then_eval_matches_torch_with_running_stats(shape, momentum, rng):
    c = shape[1]
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    trm, trv = torch.zeros(c), torch.ones(c)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    for step in range(4):                                   # several steps move the running stats
        x = rng.normal(size=shape) * (1 + step) + step
        run_both(lambda t, g, b: F.batch_norm(t, rm, rv, g, b, training=True, momentum=momentum),
                 lambda t, g, b: TF.batch_norm(t, trm, trv, g, b, training=True, momentum=momentum),
                 x, gamma, beta, upstream_seed=step, rtol=CONV_RTOL, atol=CONV_ATOL)
        np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-5, atol=1e-6)   # unbiased running var
    x = rng.normal(size=shape)
    run_both(lambda t, g, b: F.batch_norm(t, rm, rv, g, b, training=False),
             lambda t, g, b: TF.batch_norm(t, trm, trv, g, b, training=False),
             x, gamma, beta, rtol=CONV_RTOL, atol=CONV_ATOL)


def test_batch_norm_without_affine_matches_torch(rng):
    run_both(lambda t: F.batch_norm(t, None, None, training=True, eps=1e-3),
             lambda t: TF.batch_norm(t, None, None, training=True, eps=1e-3),
             rng.normal(size=(4, 2, 3, 3)), rtol=CONV_RTOL, atol=CONV_ATOL)


# ------------------------------------------------------------------------------- losses
LABELS = np.array([0, 3, 3, 1, 2, 4])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_cross_entropy_with_labels_matches_torch(reduction, label_smoothing, rng):
    run_both(lambda t: F.cross_entropy(t, LABELS, reduction=reduction, label_smoothing=label_smoothing),
             lambda t: TF.cross_entropy(t, torch.tensor(LABELS), reduction=reduction,
                                        label_smoothing=label_smoothing),
             3 * rng.normal(size=(6, 5)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_with_soft_targets_matches_torch(reduction, label_smoothing, rng):
    q = rng.dirichlet(np.ones(5), size=6).astype(np.float32)
    run_both(lambda t: F.cross_entropy(t, q, reduction=reduction, label_smoothing=label_smoothing),
             lambda t: TF.cross_entropy(t, torch.tensor(q), reduction=reduction,
                                        label_smoothing=label_smoothing),
             3 * rng.normal(size=(6, 5)))


@pytest.mark.filterwarnings("ignore:reduction. 'mean':UserWarning")   # torch nudges towards batchmean
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch_in_input_and_target(reduction, log_target, rng):
    logp = np.log(rng.dirichlet(np.ones(5), size=4))
    q = rng.dirichlet(np.ones(5), size=4)
    target = np.log(q) if log_target else q
    run_both(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
             lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target), logp, target)


def test_kl_div_with_zero_targets_matches_torch(rng):
    logp = np.log(rng.dirichlet(np.ones(3), size=2)).astype(np.float32)
    q = np.array([[0.0, 0.4, 0.6], [1.0, 0.0, 0.0]], dtype=np.float32)
    (a, ta), = pair(logp)
    ours, theirs = F.kl_div(a, q, reduction="sum"), TF.kl_div(ta, torch.tensor(q), reduction="sum")
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=RTOL)
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(reduction, rng):
    run_both(lambda a, b: F.mse_loss(a, b, reduction=reduction),
             lambda a, b: TF.mse_loss(a, b, reduction=reduction),
             rng.normal(size=(3, 4)), rng.normal(size=(3, 4)))


# ------------------------------------------------------------------ softmax, normalize, stats
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_match_torch(axis, rng):
    x = 4 * rng.normal(size=(3, 4, 5))
    run_both(lambda t: F.softmax(t, axis=axis), lambda t: torch.softmax(t, dim=axis), x)
    run_both(lambda t: F.log_softmax(t, axis=axis), lambda t: torch.log_softmax(t, dim=axis), x)
    run_both(lambda t: F.logsumexp(t, axis=axis), lambda t: torch.logsumexp(t, dim=axis), x)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_normalize_matches_torch(axis, rng):
    run_both(lambda t: F.normalize(t, axis=axis), lambda t: TF.normalize(t, dim=axis),
             rng.normal(size=(3, 4, 5)))


def test_normalize_with_a_zero_row_matches_torch(rng):
    x = rng.normal(size=(3, 4))
    x[1] = 0.0
    # the zero row's gradient is dy / eps = O(1e12) in both; compare relatively
    run_both(lambda t: F.normalize(t, axis=1), lambda t: TF.normalize(t, dim=1), x, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("axis", [None, 1, (0, 2)], ids=str)
def test_var_and_std_match_torch(axis, unbiased, rng):
    x = rng.normal(size=(3, 4, 5))
    run_both(lambda t: F.var(t, axis=axis, unbiased=unbiased),
             lambda t: torch.var(t, dim=axis, unbiased=unbiased), x)
    run_both(lambda t: F.std(t, axis=axis, unbiased=unbiased),
             lambda t: torch.std(t, dim=axis, unbiased=unbiased), x)


# ---------------------------------------------------------------------- activations and ties
BOUNDARIES = np.array([[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]])   # exact kinks included


def test_relu_matches_torch_including_zero():
    run_both(F.relu, torch.relu, BOUNDARIES)


@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (-0.5, 2.0), (0.0, 0.5)])
def test_hardtanh_matches_torch_gradient_zero_at_the_boundaries(lo, hi):
    run_both(lambda t: F.hardtanh(t, lo, hi), lambda t: TF.hardtanh(t, lo, hi), BOUNDARIES)


@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (-0.5, 2.0), (0.0, 0.5)])
def test_clip_matches_torch_clamp_passing_the_boundaries(lo, hi):
    run_both(lambda t: t.clip(lo, hi), lambda t: torch.clamp(t, lo, hi), BOUNDARIES)


def test_hardtanh_and_clamp_differ_exactly_at_the_boundaries():
    (a, _), (b, _) = pair(BOUNDARIES, BOUNDARIES)
    F.hardtanh(a).sum().backward()
    b.clip(-1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(b.grad - a.grad, [[0, 1, 0, 0, 0, 1, 0]])


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu_matches_torch_including_zero(slope):
    run_both(lambda t: F.leaky_relu(t, slope), lambda t: TF.leaky_relu(t, slope), BOUNDARIES)


@pytest.mark.parametrize("shape, wshape", [((4, 3), (3,)), ((2, 3, 4, 5), (3,)), ((2, 3, 4, 5), (1,))], ids=str)
def test_prelu_matches_torch_in_input_and_weight(shape, wshape, rng):
    x = rng.normal(size=shape)
    x.flat[0] = 0.0
    run_both(F.prelu, TF.prelu, x, rng.uniform(0.05, 0.5, wshape))


def test_maximum_with_ties_splits_the_gradient_like_torch():
    a = np.array([1.0, 2.0, 3.0, -1.0, 0.0])
    b = np.array([1.0, 5.0, 0.0, -1.0, 0.0])
    run_both(F.maximum, torch.maximum, a, b)


def test_max_reduction_with_ties_matches_torch_amax():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 5.0, 5.0]])
    run_both(lambda t: t.max(axis=1), lambda t: torch.amax(t, dim=1), x)
    run_both(lambda t: t.max(), lambda t: torch.amax(t), x)


def test_abs_at_zero_matches_torch():
    run_both(F.abs, torch.abs, BOUNDARIES)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "exp"])
def test_smooth_unary_ops_match_torch(name, rng):
    run_both(getattr(F, name), getattr(torch, name), 3 * rng.normal(size=(4, 5)))


# ------------------------------------------------------------------------- linear algebra
@pytest.mark.parametrize("sa, sb", [((3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 5)), ((4,), (2, 4, 3)),
                                    ((2, 3, 4), (4,))], ids=str)
def test_matmul_matches_torch(sa, sb, rng):
    run_both(lambda a, b: a @ b, lambda a, b: a @ b, rng.normal(size=sa), rng.normal(size=sb))


def test_linear_matches_torch(rng):
    run_both(F.linear, TF.linear, rng.normal(size=(2, 3, 4)), rng.normal(size=(5, 4)), rng.normal(size=5))


def test_broadcasting_gradients_match_torch(rng):
    run_both(lambda a, b, c: (a * b - c) / (1.5 + F.abs(b)), lambda a, b, c: (a * b - c) / (1.5 + torch.abs(b)),
             rng.normal(size=(3, 1, 5)), rng.normal(size=(4, 5)), rng.normal(size=()))

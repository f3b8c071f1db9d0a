"""Bop (arXiv:1906.02107) against its definition: closed-form steps on hand-made inputs, a NumPy
transcription of Algorithm 1 over many random steps, and Combined with a second optimizer."""

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F
from minibnn.models import build_model
from minibnn.optim import Adam, Bop, Combined, split_binary_parameters


def _param(values) -> Tensor:
    return Tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def test_one_step_in_closed_form():
    # gamma = 0.5, tau = 0.2, m_0 = 0: m_1 = g / 2. Flip iff |g/2| > 0.2 and sign(g) == sign(w).
    w = _param([1, 1, -1, -1, 1, -1, 1])
    g = np.array([0.6, -0.6, -0.6, 0.6, 0.4, -0.4, 0.0])
    opt = Bop([w], threshold=0.2, gamma=0.5)
    w.grad = g
    opt.step()
    np.testing.assert_array_equal(opt.state[w]["exp_avg"], g / 2)
    #             flip  stays  flip  stays  |m|=0.2 not > tau   m=0
    np.testing.assert_array_equal(w.data, [-1, 1, 1, -1, 1, -1, 1])
    assert opt.last_flips == 2


def test_momentum_accumulates_until_the_threshold_is_crossed():
    # gamma = 0.25, g = 1 every step: m_t = 1 - 0.75^t = 0.25, 0.4375, 0.578..., tau = 0.5 -> the
    # flip comes at step 3; afterwards w = -1 and sign(m) = +1 != sign(w), so no flip back.
    w = _param([1.0])
    opt = Bop([w], threshold=0.5, gamma=0.25)
    history = []
    for t in range(1, 6):
        w.grad = np.ones(1)
        opt.step()
        assert opt.state[w]["exp_avg"][0] == pytest.approx(1 - 0.75 ** t, rel=1e-15)
        history.append(w.data[0])
    assert history == [1, 1, -1, -1, -1]


def test_opposite_gradient_flips_back():
    # after a flip to -1, a negative gradient (same sign as w) must first drag m below -tau
    w = _param([1.0])
    opt = Bop([w], threshold=0.1, gamma=0.5)
    signs = []
    for g in (1.0, -1.0, -1.0, -1.0):       # m: 0.5 (flip), -0.25 (flip back), -0.625, -0.8125
        w.grad = np.array([g])
        opt.step()
        signs.append(w.data[0])
    assert signs == [-1, 1, 1, 1]


def _algorithm_1(w, grads, gamma, tau):
    """Helwegen et al. 2019, Algorithm 1, written from the paper with plain NumPy."""
    m = np.zeros_like(w)
    for g in grads:
        m = (1 - gamma) * m + gamma * g
        flip = (np.abs(m) > tau) & (np.sign(m) == np.sign(w))
        w = np.where(flip, -w, w)
    return w, m


@pytest.mark.parametrize("seed", range(3))
def test_many_steps_equal_algorithm_1(seed):
    rng = np.random.default_rng(seed)
    w0 = np.where(rng.random((6, 9)) < 0.5, -1.0, 1.0)
    grads = [rng.normal(size=w0.shape) * (rng.random(w0.shape) > 0.1) for _ in range(40)]
    w = _param(w0)
    opt = Bop([w], threshold=0.05, gamma=0.1)
    for g in grads:
        w.grad = g
        opt.step()
    expected_w, expected_m = _algorithm_1(w0, grads, 0.1, 0.05)
    np.testing.assert_array_equal(w.data, expected_w)
    np.testing.assert_allclose(opt.state[w]["exp_avg"], expected_m, rtol=1e-12, atol=1e-15)


def test_real_valued_weights_become_their_signs():
    w = _param([0.3, -0.2, 0.0, -0.0])
    opt = Bop([w], threshold=10.0, gamma=0.1)       # threshold never reached: no flips
    w.grad = np.ones(4)
    opt.step()
    np.testing.assert_array_equal(w.data, [1, -1, 1, 1])


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(4, 5)) for _ in range(6)]
    a, b = _param(np.ones((4, 5))), _param(np.ones((4, 5)))
    opt_a, opt_b = Bop([a], 0.1, 0.3), Bop([b], 0.1, 0.3)
    for g in grads[:3]:
        a.grad = g
        opt_a.step()
    b.data[...] = a.data
    opt_b.load_state_dict(opt_a.state_dict())
    for g in grads[3:]:
        a.grad, b.grad = g, g
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("kwargs", [dict(gamma=0.0), dict(gamma=1.5), dict(threshold=-1.0),
                                    dict(gamma=float("nan"))])
def test_bad_hyperparameters_are_rejected(kwargs):
    with pytest.raises(ValueError, match="Bop"):
        Bop([_param([1.0])], **kwargs)


def test_combined_trains_binary_weights_with_bop_and_the_rest_with_adam():
    rng = np.random.default_rng(0)
    model = build_model("cnn", width=0.25, rng=0)
    binary, other = split_binary_parameters(model)
    assert binary and other and len(binary) + len(other) == len(list(model.parameters()))
    opt = Combined(Bop(binary, threshold=1e-6, gamma=1e-2), Adam(other, lr=1e-3))
    before = [p.data.copy() for p in other]
    x = Tensor(rng.normal(size=(8, 1, 28, 28)).astype(np.float32))
    y = rng.integers(0, 10, size=8)
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(set(np.unique(p.data)) <= {-1.0, 1.0} for p in binary)
    assert any(not np.array_equal(p.data, b) for p, b in zip(other, before))
    state = opt.state_dict()
    opt.load_state_dict(state)
    with pytest.raises(ValueError, match="Combined"):
        Combined(Bop(binary), Adam(binary))
    with pytest.raises(ValueError, match="expected 2 optimizer states"):
        opt.load_state_dict({"optimizers": [state["optimizers"][0]]})

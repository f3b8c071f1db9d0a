"""State updated before backward: CMIM's memory banks and MoCo's queue, against closed forms.

Both official codes update their state inside the forward (CMIM's momentum update of the two
memory banks, MoCo's enqueue of the keys) and score against detached copies, so the gradient is
that of the state as it was when the scores were computed. The expected gradients here are
independent float64 NumPy formulas evaluated on copies of the state taken before the call.
"""

import numpy as np
import pytest

from minibnn import functional as F
from minibnn.autograd import Tensor, detect_anomaly
from minibnn.methods import cmim, s2bnn

TAU, EPS = 0.1, 1e-7


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def nce_anchor_gradient(e, memory, sample_idx, z, n_data, tau=TAU, eps=EPS):
    """d l / d e for l = CRD's NCE of x_bj = exp(<V[S_bj], e_b> / tau) / Z (Z constant).

        dl/dx_b0 = -(1/B) (1/x_b0 - 1/(x_b0 + c + eps)),  dl/dx_bj = (1/B) / (x_bj + c + eps)
        dx_bj/de_b = x_bj / tau * V[S_bj]
    """
    b, j = sample_idx.shape
    c = (j - 1) / n_data
    rows = memory[sample_idx]                                    # (B, J, d)
    x = np.exp(np.einsum("bjd,bd->bj", rows, e) / tau) / z       # (B, J)
    dl_dx = 1.0 / (x + c + eps) / b
    dl_dx[:, 0] = -(1.0 / x[:, 0] - 1.0 / (x[:, 0] + c + eps)) / b
    return np.einsum("bj,bjd->bd", dl_dx * x / tau, rows)


@pytest.mark.parametrize("method", ["auto", "dense", "gather"])
def test_cmim_official_gradients_use_the_banks_as_they_were_before_the_update(method, rng,
                                                                             monkeypatch):
    m, d, b, n_neg = 40, 8, 6, 7
    labels = np.arange(m) % 4
    sampler = cmim.NegativeSampler(labels, n_neg, rng)
    banks = [cmim.MemoryBank(m, d, rng, np.float64) for _ in range(2)]
    z = [cmim.Normaliser(m), cmim.Normaliser(m)]
    original = cmim.memory_scores
    monkeypatch.setattr(cmim, "memory_scores",
                        lambda e, mem, idx, method_=None: original(e, mem, idx, method=method))
    for call in ("first", "later"):                  # the first call fixes Z, later ones reuse it
        idx = rng.choice(m, b, replace=False)
        sample_idx = sampler.sample(idx)
        e_bnn = Tensor(_unit(rng.normal(size=(b, d))), requires_grad=True)
        e_fp = Tensor(_unit(rng.normal(size=(b, d))), requires_grad=True)
        v_bnn, v_fp = banks[0].weight.copy(), banks[1].weight.copy()      # pre-update state
        with detect_anomaly():
            terms = cmim.official_loss(e_bnn, e_fp, idx, sample_idx, banks[0], banks[1], z[0],
                                       z[1], tau=TAU, momentum=0.5, eps=EPS, update=True)
            assert not np.array_equal(banks[0].weight, v_bnn)             # updated pre-backward
            (terms.bnn_anchor + terms.fp_anchor).backward()
        want_bnn = nce_anchor_gradient(e_bnn.data, v_fp, sample_idx, z[0].value, m)
        want_fp = nce_anchor_gradient(e_fp.data, v_bnn, sample_idx, z[1].value, m)
        np.testing.assert_allclose(e_bnn.grad, want_bnn, rtol=0, atol=1e-9, err_msg=call)
        np.testing.assert_allclose(e_fp.grad, want_fp, rtol=0, atol=1e-9, err_msg=call)


def moco_query_gradient(q, k, queue, tau):
    """d/dq of mean_n CE([q_n.k_n, q_n.queue_j] / tau, 0) = (sum_j p_nj x_j - k_n) / (N tau)."""
    cand = np.concatenate([k[:, None, :], np.broadcast_to(queue, (len(q),) + queue.shape)], 1)
    logits = np.einsum("nd,njd->nj", q, cand) / tau               # (N, 1 + K)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (np.einsum("nj,njd->nd", p, cand) - k) / (len(q) * tau)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_moco_gradient_uses_the_queue_as_it_was_before_the_enqueue(dtype, rng):
    """The recipe enqueues k before backward, as MoCo's forward does; q and the queue share a
    dtype (the case where a view of the live queue used to reach backward)."""
    n, dim, size, tau = 4, 16, 8, 0.2
    queue = s2bnn.MoCoQueue(dim, size, n, rng)
    queue.keys = queue.keys.astype(dtype)
    for step in range(3):                                          # the pointer wraps around
        q = Tensor(_unit(rng.normal(size=(n, dim))).astype(dtype), requires_grad=True)
        k = _unit(rng.normal(size=(n, dim))).astype(dtype)
        before = queue.keys.astype(np.float64)
        with detect_anomaly():
            loss = F.cross_entropy(s2bnn.moco_logits(q, k, queue.keys, tau),
                                   np.zeros(n, dtype=np.int64))
            queue.enqueue(k)
            loss.backward()
        want = moco_query_gradient(q.data.astype(np.float64), k.astype(np.float64), before, tau)
        atol = 1e-9 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(q.grad, want, rtol=0, atol=atol, err_msg=f"step {step}")


def test_paper_form_queue_is_scored_as_it_was_before_its_enqueue(rng):
    """cmim.paper_loss enqueues the latent embeddings after scoring, before backward; the
    gradient must equal that of the same InfoNCE against a copy of the queue taken before."""
    b, d, size = 4, 6, 10
    queue = cmim.FeatureQueue(size, d, rng, np.float64)
    zb = Tensor(_unit(rng.normal(size=(b, d))), requires_grad=True)
    zr = Tensor(_unit(rng.normal(size=(b, d))), requires_grad=True)
    before = queue.rows.copy()
    with detect_anomaly():
        (loss,) = cmim.paper_loss([zb], [zr], TAU, [queue], update=True)
        assert not np.array_equal(before, queue.rows)                # enqueued pre-backward
        loss.backward()
    zb2 = Tensor(zb.data.copy(), requires_grad=True)
    zr2 = Tensor(zr.data.copy(), requires_grad=True)
    cmim.info_nce(zb2, zr2, before, TAU).backward()
    np.testing.assert_allclose(zb.grad, zb2.grad, rtol=0, atol=1e-12)
    np.testing.assert_allclose(zr.grad, zr2.grad, rtol=0, atol=1e-12)

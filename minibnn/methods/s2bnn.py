"""S2-BNN: self-supervised BNNs by guided distribution calibration, and the MoCo v2 pieces it uses.

Functions of tensors and arrays only (no model classes, no training loop): the distribution
loss, MoCo's InfoNCE with a queue of keys, the momentum update of the key encoder, and a kNN
classifier on embeddings for monitoring. `s2bnn_recipe.py` wires them into `minibnn train`.

Reference: Shen, Liu, Qin, Savvides, Cheng, "S2-BNN: Bridging the Gap Between Self-Supervised
Real and 1-bit Neural Networks via Guided Distribution Calibration", CVPR 2021, arXiv:2102.08946;
MoCo v2: He et al. arXiv:1911.05722, Chen et al. arXiv:2003.04297.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad

__all__ = ["distribution_loss", "moco_logits", "moco_infonce", "MoCoQueue", "momentum_update",
           "knn_predict", "DEFAULT_TAU", "DEFAULT_MOMENTUM"]

DEFAULT_TAU = 0.2          # README command of the official code (--moco-t 0.2)
DEFAULT_MOMENTUM = 0.999   # MoCo's key-encoder momentum, kept by S2-BNN


def _values(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def distribution_loss(student_logits: Tensor, teacher_logits, tau: float = DEFAULT_TAU) -> Tensor:
    """Guided distribution calibration: cross-entropy of the teacher's softmax to the student's.

        p_t = softmax(t / tau),  log p_s = log_softmax(s / tau)      over the D embedding dims
        L   = (1/N) sum_n [ - sum_d p_t[n, d] log p_s[n, d] ]  =  KL(p_t || p_s) + H(p_t)
        dL/d(s / tau) = (p_s - p_t) / N,   dL/ds = (p_s - p_t) / (N tau)

    student_logits (N, D) Tensor, teacher_logits (N, D) Tensor or ndarray (treated as a constant:
    the teacher is frozen). S2-BNN feeds L2-normalised 128-d projections (the caller normalises).
    Reference: arXiv:2102.08946, the "distribution loss" (official code: DistributionLoss).
    Differences from the paper: none; as the official code there is no tau^2 factor and the
    loss is the cross-entropy form (its minimum over s is H(p_t), not 0).
    """
    t = _values(teacher_logits)
    if student_logits.ndim != 2 or t.shape != tuple(student_logits.shape):
        raise ValueError(f"distribution_loss: student and teacher outputs must both be (N, D) with "
                         f"the same D, got student {tuple(student_logits.shape)} and teacher "
                         f"{t.shape} (the teacher's projection size must equal the student's)")
    if not tau > 0:
        raise ValueError(f"distribution_loss: tau must be positive, got {tau}")
    with no_grad():
        p_t = F.softmax(Tensor(t.astype(student_logits.dtype, copy=False)) / tau, axis=1).data
    return F.cross_entropy(student_logits / tau, p_t)          # soft targets, batch mean


def moco_logits(q: Tensor, k, queue: np.ndarray, tau: float = DEFAULT_TAU) -> Tensor:
    """[<q_n, k_n>, <q_n, queue_1>, ..., <q_n, queue_K>] / tau.

    q, k (N, D), queue (K, D) -> logits (N, 1 + K).

    q: the query encoder's L2-normalised outputs (gradient flows); k: the key encoder's (a
    constant); queue: K earlier keys. The positive logit is column 0. k and the queue are copied
    here, so backward uses them as they were at forward time even when the caller enqueues k
    before backward runs (as MoCo's forward does; the official code scores against
    `queue.clone().detach()`).
    """
    k, queue = _values(k), _values(queue)
    if q.ndim != 2 or k.shape != tuple(q.shape) or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"moco_logits: expected q (N, D), k (N, D) and queue (K, D), got q "
                         f"{tuple(q.shape)}, k {k.shape}, queue {queue.shape}")
    k, queue = np.array(k, dtype=q.dtype), np.array(queue, dtype=q.dtype)   # snapshots
    l_pos = F.sum(q * Tensor(k), axis=1, keepdims=True)       # (N, 1)
    l_neg = q @ Tensor(queue.T)                                 # (N, K)
    return F.concatenate([l_pos, l_neg], axis=1) / tau          # (N, 1 + K)


def moco_infonce(q: Tensor, k, queue: np.ndarray, tau: float = DEFAULT_TAU) -> Tensor:
    """MoCo's InfoNCE: cross-entropy of moco_logits with label 0 (the positive), batch mean.

        l_pos = q_n.k_n / tau,  l_j = q_n.queue_j / tau
        L = -(1/N) sum_n log( exp(l_pos) / (exp(l_pos) + sum_j exp(l_j)) )

    Equal logits give log(1 + K). Reference: He et al., MoCo, arXiv:1911.05722, Eq. 1.
    """
    logits = moco_logits(q, k, queue, tau)
    return F.cross_entropy(logits, np.zeros(logits.shape[0], dtype=np.int64))


class MoCoQueue:
    """A FIFO of K L2-normalised keys (K, D) and the position where the next batch is written.

    Initialised N(0, 1) and normalised, as MoCo. `enqueue(keys)` overwrites rows
    ptr .. ptr + B - 1 and advances ptr by B modulo K; K must be a multiple of the batch size B
    so a batch never wraps around (MoCo asserts the same). The official code stores the
    transpose (D, K); rows here are keys.
    """

    def __init__(self, dim: int, size: int, batch_size: int, rng=None):
        if dim < 1 or size < 1 or batch_size < 1:
            raise ValueError(f"MoCoQueue: dim, size and batch_size must be >= 1, got {dim}, "
                             f"{size}, {batch_size}")
        if size % batch_size:
            raise ValueError(f"MoCoQueue: the queue size K={size} must be a multiple of the batch "
                             f"size {batch_size} (K % B = {size % batch_size}); choose e.g. "
                             f"K={max(1, size // batch_size) * batch_size}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        keys = rng.standard_normal((size, dim)).astype(np.float32)
        self.keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)   # (K, D) unit rows
        self.batch_size, self.ptr = batch_size, 0

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    def enqueue(self, keys) -> None:
        """Write `keys` (B, D) at the pointer and advance it by B (mod K)."""
        keys = _values(keys)
        n = keys.shape[0]
        if keys.ndim != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"MoCoQueue.enqueue: expected keys (B, {self.keys.shape[1]}), "
                             f"got {keys.shape}")
        if self.size % n or self.ptr + n > self.size:
            raise ValueError(f"MoCoQueue.enqueue: a batch of {n} keys does not fit the queue of "
                             f"K={self.size} at position {self.ptr} (K must be a multiple of B)")
        self.keys[self.ptr:self.ptr + n] = keys
        self.ptr = (self.ptr + n) % self.size

    def state_dict(self) -> dict:
        return {"keys": self.keys.copy(), "ptr": int(self.ptr), "batch_size": int(self.batch_size)}

    def load_state_dict(self, state: dict) -> None:
        keys = np.asarray(state["keys"], dtype=np.float32)
        if keys.shape != self.keys.shape:
            raise ValueError(f"MoCoQueue: saved keys have shape {keys.shape}, this queue "
                             f"{self.keys.shape} (K, D)")
        self.keys[...] = keys
        self.ptr = int(state["ptr"])


def momentum_update(key_encoder, query_encoder, m: float = DEFAULT_MOMENTUM) -> None:
    """theta_k <- m theta_k + (1 - m) theta_q for every parameter, in place (MoCo Eq. 2).

    Parameters are paired by name; buffers (batch-norm running statistics) are not averaged:
    the key encoder's come from its own forward passes, as in MoCo.
    """
    if not 0 <= m <= 1:
        raise ValueError(f"momentum_update: m must lie in [0, 1], got {m}")
    keys, queries = dict(key_encoder.named_parameters()), dict(query_encoder.named_parameters())
    if keys.keys() != queries.keys():
        raise ValueError("momentum_update: the key and query encoders have different parameters: "
                         f"{sorted(set(keys) ^ set(queries))[:5]}")
    for name, pk in keys.items():
        pk.data *= m
        pk.data += (1 - m) * queries[name].data


def knn_predict(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, num_classes: int,
                k: int = 20, t: float = 0.07) -> np.ndarray:
    """Weighted kNN on cosine similarity, the monitor of InstDisc / MoCo (arXiv:1805.01978).

    Each query votes over its k most similar bank rows with weight exp(sim / t); returns the
    class with the most weight.  bank (M, D), bank_labels (M,), queries (N, D) -> (N,) int64.
    """
    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    sim = unit(np.asarray(queries, np.float64)) @ unit(np.asarray(bank, np.float64)).T  # (N, M)
    k = min(k, sim.shape[1])
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]                                # (N, k)
    weights = np.exp(np.take_along_axis(sim, top, axis=1) / t)                       # (N, k)
    votes = np.zeros((len(sim), num_classes))
    np.add.at(votes, (np.arange(len(sim))[:, None], np.asarray(bank_labels)[top]), weights)
    return np.argmax(votes, axis=1).astype(np.int64)

"""CMIM (arXiv:2207.02970): contrastive mutual information between binary and real features.

Two forms, named because they give different numbers (docs/methods.md §3.3):
  official  what the released code computes: CRD-style NCE (arXiv:1910.10699) between the BNN's
            penultimate feature and a separate real-valued teacher's, two memory banks,
            label-aware negatives, a normaliser Z fixed at the first call, both anchor directions.
  paper     reconstructed from the paper's description (not transcribed from its equations):
            the pairs it contrasts, the binary activations sign(a) of the BNN against its own
            latent real activations a (pre-sign) at several layers, scored with InfoNCE.
Functions of Tensors plus the small explicit state objects of cmim_state.py (MemoryBank,
NegativeSampler, Normaliser, FeatureQueue; re-exported here). No model classes, no training loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from .. import functional as F
from ..autograd import Context, Function, Tensor
from .cmim_state import FeatureQueue, MemoryBank, NegativeSampler, Normaliser, index_array

__all__ = ["MemoryBank", "NegativeSampler", "Normaliser", "FeatureQueue", "MemoryScores",
           "memory_scores", "memory_scores_reference", "contrast_probabilities", "nce_loss",
           "nce_uniform_value", "OfficialTerms", "official_loss", "embed", "pool_activation",
           "info_nce", "paper_loss"]


# ------------------------------------------------------------------------- official form
class MemoryScores(Function):
    """s[b, j] = <V[S[b, j]], e[b]>: each anchor against its own gathered (detached) memory rows.

        e (B, d), V (M, d) ndarray, S (B, J) int  ->  s (B, J)
        backward:  de[b] = sum_j ds[b, j] V[S[b, j]]

    The rows are copied at forward time, so backward uses V as it was when the scores were
    computed even if the bank is updated in place before backward runs (the official code scores
    against `index_select(...).detach()`, a copy, and updates the bank in the same forward).
    Two equal computations: "dense" copies the U distinct rows S touches and scores them all,
    (e V_U^T)[b, S'[b]], in one BLAS product (B U d multiply-adds); "gather" copies the B J
    rows, one per (b, j) (cheaper when few rows repeat). "auto" takes dense when U <= 32 J.
    """

    @staticmethod
    def forward(ctx: Context, e: np.ndarray, memory: np.ndarray, index: np.ndarray,
                method: str = "auto") -> np.ndarray:
        used = np.zeros(len(memory), dtype=bool)
        used[index] = True
        rows = np.flatnonzero(used)                                      # (U,) distinct rows
        dense = method == "dense" or (method == "auto" and len(rows) <= 32 * index.shape[1])
        if dense:
            local = np.empty(len(memory), dtype=np.int64)
            local[rows] = np.arange(len(rows))
            ctx.rows, ctx.index = memory[rows], local[index]             # (U, d) copy, (B, J)
            scores = np.take_along_axis(e @ ctx.rows.T, ctx.index, axis=1)   # (B, U) -> (B, J)
        else:
            ctx.rows, ctx.index = memory[index], None                    # (B, J, d) copy
            scores = np.einsum("bjd,bd->bj", ctx.rows, e)
        ctx.dense = dense
        return scores

    @staticmethod
    def backward(ctx: Context, ds: np.ndarray):
        rows, index = ctx.rows, ctx.index
        if ctx.dense:
            n, u = index.shape[0], len(rows)
            g = np.zeros(n * u, dtype=np.result_type(ds, rows))         # repeated S[b, j] add up
            np.add.at(g, (np.arange(n)[:, None] * u + index).ravel(), ds.ravel())
            de = g.reshape(n, u) @ rows                                  # (B, U) @ (U, d)
        else:
            de = np.einsum("bj,bjd->bd", ds, rows)
        return de, None, None


def memory_scores(e: Tensor, memory: np.ndarray, index: np.ndarray,
                  method: str = "auto") -> Tensor:
    """<V[S[b, j]], e[b]> for every anchor b and column j (see MemoryScores). -> (B, J)."""
    if method not in ("auto", "dense", "gather"):
        raise ValueError(f"memory_scores: method must be auto, dense or gather, got {method!r}")
    memory = np.asarray(getattr(memory, "weight", memory))
    index = index_array("memory_scores", index, len(memory))
    if e.ndim != 2 or e.shape[1] != memory.shape[1] or index.ndim != 2 or len(index) != len(e):
        raise ValueError(f"memory_scores: expected e (B, {memory.shape[1]}) and index (B, J), "
                         f"got e {e.shape} and index {index.shape}")
    return MemoryScores.apply(e, memory, index, method=method)


def memory_scores_reference(e: np.ndarray, memory: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The NumPy oracle: gather the rows, then one dot product per (b, j)."""
    return np.einsum("bjd,bd->bj", memory[index], e)


def contrast_probabilities(e: Tensor, memory: Any, index: np.ndarray, normaliser: Normaliser,
                           tau: float = 0.1) -> Tensor:
    """x[b, j] = exp(<V[S[b, j]], e[b]> / tau) / Z  (B, J): CRD's out after normalisation.

    Z comes from `normaliser`, which fixes it at its first call. For unit rows the exponent is at
    most 1/tau, so float32 overflows only for tau < 1/88.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    raw = F.exp(memory_scores(e, memory, index) * (1.0 / tau))      # (B, J)
    return raw * (1.0 / normaliser(raw.data))


def nce_loss(scores: Tensor, n_noise: int, n_data: int, eps: float = 1e-7) -> Tensor:
    """CRD's NCE loss with the positive at column 0 and uniform noise P_n = 1/M.

        c = N / M,   x (B, N+1) > 0 (normalised scores)
        l = -1/B sum_b [ log(x_b0 / (x_b0 + c + eps)) + sum_{j>=1} log(c / (x_bj + c + eps)) ]

    l > 0 for positive x. With every x = 1/M it equals log(N+1) + N log(1 + 1/N) up to eps.
    Reference: Tian et al., "Contrastive Representation Distillation", arXiv:1910.10699
    (ContrastLoss); CMIM arXiv:2207.02970 uses it unchanged (docs/methods.md §3.1).
    """
    if scores.ndim != 2 or scores.shape[1] != n_noise + 1:
        raise ValueError(f"nce_loss: expected scores (B, {n_noise + 1}) = (B, n_noise + 1), "
                         f"got {scores.shape}")
    if n_noise < 1 or n_data < 1:
        raise ValueError(f"nce_loss: n_noise and n_data must be >= 1, got {n_noise}, {n_data}")
    c = n_noise / n_data
    log_denominator = F.log(scores + (c + eps))                    # (B, N+1)
    positive = F.log(scores[:, 0]) - log_denominator[:, 0]         # (B,)
    negative = np.log(c) - log_denominator[:, 1:]                   # (B, N)
    return -(positive.sum() + negative.sum()) * (1.0 / scores.shape[0])


def nce_uniform_value(n_noise: int, n_data: int, eps: float = 1e-7) -> float:
    """nce_loss on x = 1/M everywhere, in float64 (docs/methods.md §5 CMIM 2)."""
    c, x = n_noise / n_data, 1.0 / n_data
    return float(-np.log(x / (x + c + eps)) - n_noise * np.log(c / (x + c + eps)))


class OfficialTerms(NamedTuple):
    bnn_anchor: Tensor      # l(u): the BNN embedding against the FP memory; trains the BNN
    fp_anchor: Tensor       # l(w): the FP embedding against the BNN memory


def official_loss(e_bnn: Tensor, e_fp: Tensor, idx: Any, sample_idx: Any,
                  memory_bnn: MemoryBank, memory_fp: MemoryBank, z_bnn: Normaliser,
                  z_fp: Normaliser, tau: float = 0.1, momentum: float = 0.5, eps: float = 1e-7,
                  update: bool = True) -> OfficialTerms:
    """The two NCE terms of the released CMIM code; the loss is CE + alpha (l(u) + l(w)).

        u_bj = exp(<V_F[S_bj], e_B[b]> / tau) / Z_B     (BNN-anchored, FP memory)
        w_bj = exp(<V_B[S_bj], e_F[b]> / tau) / Z_F     (FP-anchored, BNN memory)
        then (update=True)  V_B[i] <- l2norm(mu V_B[i] + (1-mu) e_B),  V_F likewise

    e_bnn, e_fp (B, d): unit rows from the two embedding heads; idx (B,) dataset indices;
    sample_idx (B, N+1) from NegativeSampler (column 0 = idx). Memory rows are detached, so
    e_B gets gradient only through l(u); l(w) trains nothing but a trainable FP head.
    Reference: Shang et al., "Network Binarization via Contrastive Learning", ECCV 2022,
    arXiv:2207.02970, official code (docs/methods.md §3.1).
    Differences from the paper: this is the code's CRD distillation from a separate real
    network's final feature (one pair), not InfoNCE between a BNN's own binary and latent
    activations at three layers; see `paper_loss` for that form.
    """
    e_bnn, e_fp = (e if isinstance(e, Tensor) else Tensor(e) for e in (e_bnn, e_fp))
    sample_idx = np.asarray(sample_idx)
    idx = np.asarray(idx).reshape(-1)
    n, d = memory_bnn.shape
    if memory_fp.shape != (n, d):
        raise ValueError(f"official_loss: the memories differ in shape: {memory_bnn.shape} "
                         f"and {memory_fp.shape}")
    if e_bnn.shape != e_fp.shape or e_bnn.ndim != 2 or e_bnn.shape[1] != d:
        raise ValueError(f"official_loss: expected e_bnn and e_fp of shape (B, {d}), got "
                         f"{e_bnn.shape} and {e_fp.shape}")
    if sample_idx.ndim != 2 or len(sample_idx) != len(e_bnn) or idx.shape != (len(e_bnn),):
        raise ValueError(f"official_loss: expected idx ({len(e_bnn)},) and sample_idx "
                         f"({len(e_bnn)}, N+1), got {idx.shape} and {sample_idx.shape}")
    n_noise = sample_idx.shape[1] - 1
    u = contrast_probabilities(e_bnn, memory_fp.weight, sample_idx, z_bnn, tau)   # (B, N+1)
    w = contrast_probabilities(e_fp, memory_bnn.weight, sample_idx, z_fp, tau)
    terms = OfficialTerms(nce_loss(u, n_noise, n, eps), nce_loss(w, n_noise, n, eps))
    if update:
        memory_bnn.update(idx, e_bnn.data, momentum)
        memory_fp.update(idx, e_fp.data, momentum)
    return terms


def embed(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """CMIM's Embed head: z = l2norm(x W^T + b).  x (B, K), W (d, K) -> z (B, d) unit rows."""
    return F.normalize(F.linear(x.flatten(1), weight, bias), axis=1)


# ---------------------------------------------------------------------------- paper form
def pool_activation(a: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C) by global average pooling; (N, D) is returned as it is."""
    if a.ndim == 4:
        return a.mean(axis=(2, 3))
    if a.ndim == 2:
        return a
    raise ValueError(f"pool_activation: expected (N, C, H, W) or (N, D), got {a.shape}")


def info_nce(anchor: Tensor, positives: Tensor, negatives: Any = None, tau: float = 0.1,
             in_batch: bool = True) -> Tensor:
    """InfoNCE: -1/B sum_b log( exp(a_b.p_b / tau) / sum_k exp(a_b.k / tau) ).

    anchor, positives (B, D); the candidates k for anchor b are its positive p_b, the other
    positives p_j (j != b) when in_batch, and the rows of `negatives` (K, D) (a queue; constant).
    With every logit equal the loss is log(number of candidates), e.g. log(1 + K) for MoCo.
    Pass unit rows for cosine similarity. Reference: van den Oord et al., arXiv:1807.03748;
    MoCo arXiv:1911.05722.
    """
    if anchor.ndim != 2 or anchor.shape != positives.shape:
        raise ValueError(f"info_nce: anchor and positives must both be (B, D), got "
                         f"{anchor.shape} and {positives.shape}")
    if not tau > 0:
        raise ValueError(f"info_nce: tau must be positive, got {tau}")
    n = anchor.shape[0]
    columns = []
    if in_batch:
        columns.append(anchor @ positives.T)                                     # (B, B)
    else:
        columns.append((anchor * positives).sum(axis=1, keepdims=True))          # (B, 1)
    if negatives is not None:
        neg = np.array(getattr(negatives, "data", negatives))       # a copy: a queue may change
        if neg.ndim != 2 or neg.shape[1] != anchor.shape[1]:
            raise ValueError(f"info_nce: negatives must be (K, {anchor.shape[1]}), got {neg.shape}")
        columns.append(anchor @ Tensor(neg.T))                                   # (B, K)
    elif not in_batch:
        raise ValueError("info_nce: no negatives: pass negatives or in_batch=True")
    logits = columns[0] if len(columns) == 1 else F.concatenate(columns, axis=1)
    target = np.arange(n) if in_batch else np.zeros(n, dtype=np.int64)
    return F.cross_entropy(logits * (1.0 / tau), target)


def paper_loss(z_binary: Sequence[Tensor], z_latent: Sequence[Tensor], tau: float = 0.1,
               queues: Sequence[FeatureQueue] | None = None, update: bool = True) -> list:
    """One InfoNCE per layer pair: binary activations against the latent (pre-sign) ones.

        L_l = info_nce(anchor = h_l(pool(sign(a_l))), positives = g_l(pool(a_l)), tau)

    z_binary[l], z_latent[l] (B, d): the embedded (unit-row) binary and latent activations of
    layer l; positives are the same sample, negatives the other samples of the batch and, with
    `queues`, the latent embeddings of earlier batches (queue l is enqueued after use; info_nce
    copies the rows it scores, so backward sees the queue as it was at forward time).
    Returns the list of per-layer losses (the recipe averages them).
    Reference: Shang et al., ECCV 2022, arXiv:2207.02970 (abstract and README figure: MI between
    the binary and latent real activations of the same BNN, "three pairs").
    Differences from the paper: the paper's Eq. (NCE with memory, per docs/methods.md §6 not
    retrieved) is replaced by softmax InfoNCE with in-batch negatives and an optional queue;
    activations are globally average-pooled before the heads.
    """
    if len(z_binary) != len(z_latent) or not z_binary:
        raise ValueError(f"paper_loss: need as many binary as latent embeddings (>= 1), got "
                         f"{len(z_binary)} and {len(z_latent)}")
    if queues is not None and len(queues) != len(z_binary):
        raise ValueError(f"paper_loss: {len(queues)} queues for {len(z_binary)} layer pairs")
    losses = []
    for i, (zb, zr) in enumerate(zip(z_binary, z_latent)):
        queue = queues[i] if queues is not None else None
        losses.append(info_nce(zb, zr, None if queue is None else queue.rows, tau))
        if queue is not None and update:
            queue.enqueue(zr.data)
    return losses

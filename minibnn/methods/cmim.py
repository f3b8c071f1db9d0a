"""CMIM (arXiv:2207.02970): contrastive mutual information between binary and real features.

Two forms, named because they give different numbers (docs/methods.md §3.3):
  official  what the released code computes: CRD-style NCE (arXiv:1910.10699) between the BNN's
            penultimate feature and a separate real-valued teacher's, two memory banks,
            label-aware negatives, a normaliser Z fixed at the first call, both anchor directions.
  paper     reconstructed from the paper's description (not transcribed from its equations):
            the pairs it contrasts, the binary activations sign(a) of the BNN against its own
            latent real activations a (pre-sign) at several layers, scored with InfoNCE.
Functions of Tensors plus small explicit state objects (MemoryBank, NegativeSampler, Normaliser,
FeatureQueue) whose state_dict() checkpoints save. No model classes, no training loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from .. import functional as F
from ..autograd import Context, Function, Tensor

__all__ = ["MemoryBank", "NegativeSampler", "Normaliser", "FeatureQueue", "MemoryScores",
           "memory_scores", "memory_scores_reference", "contrast_probabilities", "nce_loss",
           "nce_uniform_value", "OfficialTerms", "official_loss", "embed", "pool_activation",
           "info_nce", "paper_loss"]


def _generator(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _index_array(name: str, index: Any, size: int) -> np.ndarray:
    """`index` as int64, checked to lie in [0, size)."""
    index = np.asarray(index)
    if index.size and not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"{name}: indices must be integers, got {index.dtype}")
    index = index.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= size):
        raise ValueError(f"{name}: indices must lie in [0, {size}), found "
                         f"[{index.min()}, {index.max()}]")
    return index


# ---------------------------------------------------------------------------- state objects
class MemoryBank:
    """M x d rows, one per training sample, updated by momentum (CRD's ContrastMemory half).

    Init: i.i.d. uniform(-s, s) with s = 1/sqrt(d/3), so E||row||^2 = d s^2 / 3 = 1.
    update(idx, new, mu): rows idx <- l2norm(mu * old + (1 - mu) * new); other rows untouched.
    Rows are plain ndarrays: gradients never flow into a memory.
    """

    def __init__(self, n_rows: int, dim: int, rng: Any = None, dtype: Any = np.float32):
        if n_rows < 1 or dim < 1:
            raise ValueError(f"MemoryBank: n_rows and dim must be >= 1, got {n_rows} and {dim}")
        s = 1.0 / np.sqrt(dim / 3.0)
        self.weight = _generator(rng).uniform(-s, s, size=(n_rows, dim)).astype(dtype)  # (M, d)

    @property
    def shape(self) -> tuple:
        return self.weight.shape

    def gather(self, rows: Any) -> np.ndarray:
        """A copy of the rows at `rows` (any integer shape S) -> (*S, d)."""
        return self.weight[_index_array("MemoryBank.gather", rows, len(self.weight))]

    def update(self, idx: Any, new: Any, momentum: float) -> None:
        """Momentum update with L2 renormalisation of the touched rows only (in place)."""
        idx = _index_array("MemoryBank.update", idx, len(self.weight)).reshape(-1)
        new = np.asarray(getattr(new, "data", new))
        if new.shape != (len(idx), self.weight.shape[1]):
            raise ValueError(f"MemoryBank.update: expected new rows of shape "
                             f"({len(idx)}, {self.weight.shape[1]}), got {new.shape}")
        if len(np.unique(idx)) != len(idx):
            raise ValueError("MemoryBank.update: duplicate indices in one update")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MemoryBank.update: momentum must be in [0, 1], got {momentum}")
        rows = momentum * self.weight[idx] + (1.0 - momentum) * new          # (B, d)
        rows = rows / np.sqrt(np.sum(rows * rows, axis=1, keepdims=True))
        self.weight[idx] = rows

    def state_dict(self) -> dict:
        return {"weight": self.weight.copy()}

    def load_state_dict(self, state: dict) -> None:
        weight = np.asarray(state["weight"])
        if weight.shape != self.weight.shape:
            raise ValueError(f"MemoryBank: checkpoint rows have shape {weight.shape}, "
                             f"this bank {self.weight.shape}")
        self.weight[...] = weight


class NegativeSampler:
    """Label-aware negatives: for anchor i, N indices drawn without replacement from the
    samples of the other classes (CRD / CMIM "exact" mode). sample(idx) -> (B, N+1), column 0
    is idx itself (the positive). One seeded Generator, saved by state_dict()."""

    def __init__(self, labels: Any, n_negatives: int, rng: Any = None):
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        self.labels, self.n_negatives = labels, int(n_negatives)
        self.rng = _generator(rng)
        self.pools = {int(c): np.flatnonzero(labels != c) for c in np.unique(labels)}
        available = self.max_negatives(labels)
        if self.n_negatives < 1 or self.n_negatives > available:
            raise ValueError(f"NegativeSampler: {self.n_negatives} negatives requested, but the "
                             f"smallest pool of other-class samples holds {available}; "
                             f"ask for between 1 and {available}")

    @staticmethod
    def max_negatives(labels: Any) -> int:
        """The most negatives every anchor can get: N - (size of the largest class)."""
        labels = np.asarray(labels).reshape(-1)
        return int(len(labels) - np.bincount(labels).max()) if len(labels) else 0

    def sample(self, idx: Any) -> np.ndarray:
        idx = _index_array("NegativeSampler.sample", idx, len(self.labels)).reshape(-1)
        out = np.empty((len(idx), self.n_negatives + 1), dtype=np.int64)      # (B, N+1)
        out[:, 0] = idx
        for b, i in enumerate(idx):
            out[b, 1:] = self.rng.choice(self.pools[int(self.labels[i])], self.n_negatives,
                                         replace=False)
        return out

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class Normaliser:
    """CRD's Z: fixed at the first call to M * mean(exp scores of that batch), then constant,
    so the first batch's normalised scores have mean exactly 1/M."""

    def __init__(self, n_data: int):
        self.n_data, self.value = int(n_data), None

    def __call__(self, exp_scores: np.ndarray) -> float:
        if self.value is None:
            self.value = float(self.n_data * np.mean(exp_scores))
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = None if state["value"] is None else float(state["value"])


class FeatureQueue:
    """A MoCo-style FIFO of K unit vectors (the paper form's optional extra negatives).

    Init rows N(0, 1) then L2-normalised (MoCo, arXiv:1911.05722); enqueue overwrites the oldest
    rows, wrapping around, so K need not be a multiple of the batch size.
    """

    def __init__(self, size: int, dim: int, rng: Any = None, dtype: Any = np.float32):
        if size < 1 or dim < 1:
            raise ValueError(f"FeatureQueue: size and dim must be >= 1, got {size} and {dim}")
        rows = _generator(rng).normal(size=(size, dim))
        self.rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(dtype)  # (K, d)
        self.ptr = 0

    def enqueue(self, keys: Any) -> None:
        keys = np.asarray(getattr(keys, "data", keys))
        if keys.ndim != 2 or keys.shape[1] != self.rows.shape[1]:
            raise ValueError(f"FeatureQueue.enqueue: expected (B, {self.rows.shape[1]}), "
                             f"got {keys.shape}")
        keys = keys[-len(self.rows):]                         # a batch larger than K keeps its end
        where = (self.ptr + np.arange(len(keys))) % len(self.rows)
        self.rows[where] = keys
        self.ptr = int((self.ptr + len(keys)) % len(self.rows))

    def state_dict(self) -> dict:
        return {"rows": self.rows.copy(), "ptr": self.ptr}

    def load_state_dict(self, state: dict) -> None:
        if np.shape(state["rows"]) != self.rows.shape:
            raise ValueError(f"FeatureQueue: checkpoint rows {np.shape(state['rows'])}, "
                             f"this queue {self.rows.shape}")
        self.rows[...] = state["rows"]
        self.ptr = int(state["ptr"])


# ------------------------------------------------------------------------- official form
class MemoryScores(Function):
    """s[b, j] = <V[S[b, j]], e[b]>: each anchor against its own gathered (detached) memory rows.

        e (B, d), V (M, d) ndarray, S (B, J) int  ->  s (B, J)
        backward:  de[b] = sum_j ds[b, j] V[S[b, j]] = (G V)[b],  G (B, M) = ds added at (b, S)

    Two equal computations: "dense" scores every row, (e V^T)[b, S[b]], in one BLAS product
    (B M d multiply-adds); "gather" copies the B J rows first (B J d floats, about 30 times
    slower per element on a CPU). "auto" takes dense when M <= 32 J.
    """

    @staticmethod
    def forward(ctx: Context, e: np.ndarray, memory: np.ndarray, index: np.ndarray,
                method: str = "auto") -> np.ndarray:
        dense = method == "dense" or (method == "auto" and len(memory) <= 32 * index.shape[1])
        ctx.memory, ctx.index, ctx.dense = memory, index, dense
        if dense:
            return np.take_along_axis(e @ memory.T, index, axis=1)        # (B, M) -> (B, J)
        return np.einsum("bjd,bd->bj", memory[index], e)

    @staticmethod
    def backward(ctx: Context, ds: np.ndarray):
        memory, index = ctx.memory, ctx.index
        n, m = index.shape[0], len(memory)
        if ctx.dense:
            g = np.zeros(n * m, dtype=np.result_type(ds, memory))       # repeated S[b, j] add up
            np.add.at(g, (np.arange(n)[:, None] * m + index).ravel(), ds.ravel())
            de = g.reshape(n, m) @ memory                                # (B, M) @ (M, d)
        else:
            de = np.einsum("bj,bjd->bd", ds, memory[index])
        return de, None, None


def memory_scores(e: Tensor, memory: np.ndarray, index: np.ndarray,
                  method: str = "auto") -> Tensor:
    """<V[S[b, j]], e[b]> for every anchor b and column j (see MemoryScores). -> (B, J)."""
    if method not in ("auto", "dense", "gather"):
        raise ValueError(f"memory_scores: method must be auto, dense or gather, got {method!r}")
    memory = np.asarray(getattr(memory, "weight", memory))
    index = _index_array("memory_scores", index, len(memory))
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
        neg = np.asarray(getattr(negatives, "data", negatives))
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
    `queues`, the latent embeddings of earlier batches (queue l is enqueued after use).
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
        losses.append(info_nce(zb, zr, None if queue is None else queue.rows.copy(), tau))
        if queue is not None and update:
            queue.enqueue(zr.data)
    return losses

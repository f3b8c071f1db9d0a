"""CMIM's state objects: memory banks, the label-aware negative sampler, the normaliser Z and
the paper form's feature queue.

Small explicit classes whose state_dict() checkpoints save; cmim.py computes the losses with
them. Reference: Shang et al., ECCV 2022, arXiv:2207.02970; CRD (Tian et al., arXiv:1910.10699)
for the memory bank, sampler and Z; MoCo (arXiv:1911.05722) for the queue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MemoryBank", "NegativeSampler", "Normaliser", "FeatureQueue", "index_array"]


def _generator(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def index_array(name: str, index: Any, size: int) -> np.ndarray:
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
        return self.weight[index_array("MemoryBank.gather", rows, len(self.weight))]

    def update(self, idx: Any, new: Any, momentum: float) -> None:
        """Momentum update with L2 renormalisation of the touched rows only (in place)."""
        idx = index_array("MemoryBank.update", idx, len(self.weight)).reshape(-1)
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
        idx = index_array("NegativeSampler.sample", idx, len(self.labels)).reshape(-1)
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

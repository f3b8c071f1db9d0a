"""Seeded minibatch iterator over in-memory arrays, with a resumable RNG state.

`BatchLoader` yields `(xb, yb, idx)`: float32 images, int64 labels and the int64 dataset indices
(memory banks such as CMIM's are keyed by them). Shuffling and augmentation each draw from their
own generator, spawned from one seed, so `state_dict()` / `load_state_dict()` resume a run
bit-exactly, even mid-epoch. Leaves out: worker processes, prefetching, samplers.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator

import numpy as np

from .transforms import normalize

__all__ = ["BatchLoader", "eval_loader"]


class BatchLoader:
    """Iterate over (x, y) in minibatches; each `for` loop over the loader is one epoch.

    x (N, C, H, W) uint8 (scaled to [0, 1] float32) or float; y (N,) integer labels.
    transform(xb, rng) -> xb is applied per batch with the loader's augmentation generator; it may
    return a tuple of views (TwoViewAugment), which is then yielded in place of xb.
    rng: an int seed or a Generator (which is advanced once); two child generators (shuffle,
    augment) are seeded from it.

    Shuffling draws one permutation per epoch from the shuffle generator. A `for` loop that is
    left early (break) is resumed by the next loop, which finishes that epoch first.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True,
                 rng: np.random.Generator | int = 0, drop_last: bool = False,
                 transform: Callable[[np.ndarray, np.random.Generator], Any] | None = None):
        if len(x) != len(y):
            raise ValueError(f"x holds {len(x)} samples but y holds {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, np.asarray(y, dtype=np.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform = transform
        entropy = rng.integers(2**63, size=4) if isinstance(rng, np.random.Generator) else rng
        children = np.random.SeedSequence(entropy).spawn(2)
        self._shuffle_rng, self._augment_rng = (np.random.default_rng(c) for c in children)
        self.epoch = 0        # epochs completed
        self._batch = 0       # batches of the current epoch already yielded
        self._epoch_start_state: dict | None = None  # shuffle state before this epoch's permutation

    def __len__(self) -> int:
        n, b = len(self.y), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self) -> np.ndarray:
        """This epoch's sample order (N,) int64; draws the permutation at the start of an epoch."""
        if self._epoch_start_state is None:
            self._epoch_start_state = copy.deepcopy(self._shuffle_rng.bit_generator.state)
        else:  # resuming mid-epoch: redraw the same permutation from the saved state
            self._shuffle_rng.bit_generator.state = copy.deepcopy(self._epoch_start_state)
        if self.shuffle:
            return self._shuffle_rng.permutation(len(self.y)).astype(np.int64)
        return np.arange(len(self.y), dtype=np.int64)

    def _make_batch(self, idx: np.ndarray):
        xb = self.x[idx]                                   # (B, C, H, W)
        xb = xb.astype(np.float32) / np.float32(255) if xb.dtype == np.uint8 else xb.astype(np.float32)
        if self.transform is not None:
            xb = self.transform(xb, self._augment_rng)
        return xb, self.y[idx], idx

    def __iter__(self) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        order = self._order()
        while self._batch < len(self):
            idx = order[self._batch * self.batch_size:(self._batch + 1) * self.batch_size]  # (B,)
            batch = self._make_batch(idx)
            self._batch += 1  # counted before yielding: a checkpoint taken now resumes after it
            yield batch
        self.epoch, self._batch, self._epoch_start_state = self.epoch + 1, 0, None

    def state_dict(self) -> dict:
        """Position and generator states (plain dicts/ints, JSON-serialisable)."""
        epoch, batch, shuffle_state = self.epoch, self._batch, self._epoch_start_state
        if batch and batch >= len(self):  # last batch yielded, loop not yet ended: epoch is over
            epoch, batch, shuffle_state = epoch + 1, 0, None
        if shuffle_state is None:         # between epochs: the next permutation comes from here
            shuffle_state = self._shuffle_rng.bit_generator.state
        return {"epoch": epoch, "batch": batch,
                "shuffle_rng": copy.deepcopy(shuffle_state),
                "augment_rng": copy.deepcopy(self._augment_rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict(); the next `for` loop continues exactly where it was taken."""
        self.epoch, self._batch = int(state["epoch"]), int(state["batch"])
        self._shuffle_rng.bit_generator.state = copy.deepcopy(state["shuffle_rng"])
        self._augment_rng.bit_generator.state = copy.deepcopy(state["augment_rng"])
        self._epoch_start_state = copy.deepcopy(state["shuffle_rng"]) if self._batch > 0 else None


def eval_loader(split, batch_size: int = 500, mean=None, std=None,
                limit: int | None = None) -> BatchLoader:
    """Unshuffled batches of a Dataset split, normalised as in training: (x - mean) / std.

    mean and std default to the split's own (its dataset's training statistics); give others to
    evaluate a model that was trained on another normalisation. limit keeps the first images.
    """
    mean = np.asarray(split.mean if mean is None else mean, np.float32)
    std = np.asarray(split.std if std is None else std, np.float32)
    n = len(split) if limit is None else min(limit, len(split))
    return BatchLoader(split.x[:n], split.y[:n], batch_size, shuffle=False,
                       transform=lambda xb, rng: normalize(xb, mean, std))

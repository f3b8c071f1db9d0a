"""The training loop: `train_epoch` and `fit`, written to be read top to bottom.

A loss function (a method's Recipe, methods/base.py) takes (model, batch) and returns a
`LossOutput`: the scalar to minimise, the logits for accuracy, and named terms for the log (a
method such as LCR-BNN adds its own term and reports it there). Everything that happens at epoch boundaries (learning-rate and EDE schedules,
checkpoints, the history file) goes through callbacks, so `fit` itself stays short.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

from ..methods.base import LossOutput, MetricTotals, evaluate
from .progress import Progress

__all__ = ["train_epoch", "fit", "Callback", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad update was applied."""


LossFn = Callable[[object, tuple], LossOutput]


class Callback:
    """Hooks at epoch boundaries; override what you need (the defaults do nothing)."""

    def on_epoch_start(self, epoch: int) -> dict:
        """Called before each epoch; returns values to log (lr, EDE t and k, ...)."""
        return {}

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        """Called after each epoch with its history row."""


def train_epoch(model, loader: Iterable, loss_fn: LossFn, optimizer, epoch: int,
                after_step: Callable[[], None] | None = None,
                progress: Progress | None = None) -> dict:
    """One pass over `loader` with an update per batch; returns mean loss terms and accuracy."""
    model.train()
    totals = MetricTotals()
    for step, batch in enumerate(loader):
        out = loss_fn(model, batch)
        value = out.loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(f"the loss became {value} at epoch {epoch + 1}, step {step + 1}")
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        totals.add(out, batch[1])
        if progress is not None:
            progress.update(step + 1, f"loss {value:.4f}")
    return totals.means("train_")


def fit(model, loss_fn: LossFn, optimizer, train_loader, val_loader, epochs: int,
        start_epoch: int = 0, callbacks: tuple = (), after_step=None, evaluate_fn=None,
        flip_ratio=None, quiet: bool = False) -> list[dict]:
    """Train from `start_epoch` to `epochs`; returns the per-epoch rows it produced.

    Each row: epoch, train_* and val_* loss terms and accuracy, values the callbacks set at the
    epoch start (lr, EDE t and k, ...), flip_ratio (binary weights whose sign changed during
    the epoch) and seconds. `evaluate_fn(model, val_loader) -> dict` replaces the default
    validation (cross-entropy and accuracy, methods.evaluate); `minibnn train` passes the
    recipe's own `evaluate`.
    """
    rows = []
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        row = {"epoch": epoch + 1}
        for cb in callbacks:
            row.update(cb.on_epoch_start(epoch) or {})
        progress = None if quiet else Progress(f"epoch {epoch + 1}/{epochs}", len(train_loader))
        row.update(train_epoch(model, train_loader, loss_fn, optimizer, epoch, after_step, progress))
        row.update((evaluate_fn or evaluate)(model, val_loader))
        if flip_ratio is not None:
            row["flip_ratio"] = flip_ratio.update()
        row["seconds"] = time.perf_counter() - started
        if progress is not None:
            progress.close(_epoch_summary(row))
        for cb in callbacks:
            cb.on_epoch_end(epoch, row)
        rows.append(row)
    return rows


def _epoch_summary(row: dict) -> str:
    parts = [f"loss {row['train_loss']:.4f}"]
    for key, label in (("train_accuracy", "train acc"), ("val_accuracy", "val acc")):
        if key in row:
            parts.append(f"{label} {row[key]:.4f}")
    return "  ".join(parts) + f"  ({row['seconds']:.1f}s)"

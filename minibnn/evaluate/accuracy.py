"""Accuracy and loss of a float model or an exported PackedModel on a dataset split.

For a split of N images with labels y_n and logits z_n (K classes) the reported numbers are

    accuracy = (1/N) sum_n [argmax_k z_{n,k} = y_n]
    loss     = (1/N) sum_n -log softmax(z_n)_{y_n}          (mean cross-entropy)

Inputs are the split's uint8 images (N, C, H, W), normalised as in training, (x/255 - mean) / std
per channel (`data.eval_loader`): mean and std default to the split's own (its dataset's training
statistics), a packed model evaluated on the dataset it was exported from uses the statistics
stored in its file. A float model is evaluated by the training loop's `evaluate` (eval mode, no
gradients), so `minibnn eval` prints exactly the validation numbers of the training log.

A packed model computes the float model's logits with its binary layers as XNOR-popcount
(minibnn.engine); `packed_agreement` counts the images on which both predict the same class,
the check `minibnn export --check N` prints. The packed loss is the float64 log-softmax of its
float32 logits, so a packed model and its float source print the same accuracy and loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autograd import Tensor, no_grad
from ..data import eval_loader, transforms
from ..methods import evaluate

__all__ = ["evaluate_split", "images_accuracy", "packed_normalisation", "evaluate_packed",
           "packed_agreement", "Agreement"]


def evaluate_split(model, split, batch_size: int = 500, mean=None, std=None,
                   limit: int | None = None) -> dict:
    """{"val_loss", "val_accuracy", "val_ce"} of `model` on a Dataset split (eval mode, no
    gradients); mean/std default to the split's; limit keeps the first images."""
    return evaluate(model, eval_loader(split, batch_size, mean, std, limit))


def images_accuracy(model, images: np.ndarray, labels: np.ndarray, mean, std,
                    batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` on float images in [0, 1] (N, C, H, W), normalised with
    mean/std per channel, batch_size images per forward pass (no gradients; the caller sets
    eval mode). Used where the images are not a stored split (corrupted copies)."""
    correct = 0
    with no_grad():
        for start in range(0, len(images), batch_size):
            xb = transforms.normalize(images[start:start + batch_size], mean, std)
            logits = model(Tensor(xb)).data                                     # (B, K)
            correct += int(np.sum(np.argmax(logits, axis=1) == labels[start:start + batch_size]))
    return correct / max(len(images), 1)


def packed_normalisation(packed, dataset_name: str, split) -> tuple:
    """(mean, std) to feed `packed`: the statistics stored in its file when it is evaluated on
    the dataset it was exported from, else the split's own."""
    own = dataset_name == packed.meta.get("dataset") and "mean" in packed.meta
    return (packed.meta["mean"], packed.meta["std"]) if own else (split.mean, split.std)


def evaluate_packed(packed, split, batch_size: int = 500, mean=None, std=None,
                    limit: int | None = None) -> dict:
    """{"val_loss", "val_accuracy", "num_images"} of a PackedModel on a Dataset split.

    The loss is the mean of -log softmax(z)_y with z the packed float32 logits in float64.
    mean/std default to the split's (see `packed_normalisation` for a packed file's own).
    """
    correct, loss, total = 0, 0.0, 0
    for xb, yb, _ in eval_loader(split, batch_size, mean, std, limit):
        logits = packed(xb).astype(np.float64)                                 # (B, K)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss -= float(logp[np.arange(len(yb)), yb].sum())
        correct += int((logits.argmax(axis=1) == yb).sum())
        total += len(yb)
    if total == 0:
        raise ValueError("evaluate_packed needs at least one image, the split is empty")
    return {"val_loss": loss / total, "val_accuracy": correct / total, "num_images": total}


@dataclass(frozen=True)
class Agreement:
    """How many of `total` images the packed and the float model assign the same class."""

    same: int
    total: int

    @property
    def exact(self) -> bool:
        return self.same == self.total

    @property
    def rate(self) -> float:
        return self.same / max(self.total, 1)


def packed_agreement(packed, model, split, limit: int | None = None, batch_size: int = 250,
                     mean=None, std=None) -> Agreement:
    """Compare argmax predictions of `packed` and its float source `model` (eval mode, no
    gradients) on the first `limit` images of a split (all when None), normalised with
    mean/std (default: the split's). An exact export agrees on every image."""
    model.eval()
    same = total = 0
    with no_grad():
        for xb, _, _ in eval_loader(split, batch_size, mean, std, limit):
            same += int((packed.predict(xb) == model(Tensor(xb)).data.argmax(1)).sum())
            total += len(xb)
    return Agreement(same, total)

"""Linear evaluation: a frozen backbone's embedding, scored by a linear classifier trained on it.

The protocol of self-supervised learning (MoCo, SimCLR; S2-BNN, Shen et al., CVPR 2021,
arXiv:2102.08946, main_lincls.py): the backbone of a checkpoint is frozen in eval mode
(batch-norm statistics fixed) and a new Linear(D, K) is trained on its embedding e(x) (the pooled
feature before any classifier or MLP head, `model.embedding`) by minimising

    (1/N) sum_n CE(W e(x_n) + b, y_n)       W (K, D) ~ N(0, 0.01^2), b = 0 at the start

with SGD, momentum 0.9, no weight decay, and the learning rate divided by 10 at 60% and 80% of
the epochs (official: 100 epochs, milestones 60 and 80, lr 0.1). The score is the top-1 accuracy
of argmax_k (W e(x) + b)_k on the validation split.

Shapes: images (N, C, H, W) uint8 -> embeddings (N, D) float32 -> logits (N, K).
Because the backbone is frozen and in eval mode, its embedding of an image never changes, so the
embeddings are computed ONCE and the classifier is trained on them: exactly the official
procedure when no augmentation is used. Difference from the paper: the official protocol augments
the training images (random resized crop + flip) every epoch; we do not (it would need a
backbone forward per epoch). The backbone's weights are compared bit for bit before and after,
and a change is an error.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import optim
from ..autograd import Tensor, no_grad
from ..data import transforms
from ..nn import Linear

__all__ = ["extract_embeddings", "train_linear", "linear_evaluation"]


def extract_embeddings(model, dataset, batch_size: int = 500) -> np.ndarray:
    """model.embedding of every image (normalised with the dataset's mean/std), in eval mode
    without gradients.  dataset.x (N, C, H, W) uint8 -> (N, D) float32."""
    model.eval()
    out = []
    with no_grad():
        for i in range(0, len(dataset), batch_size):
            xb = transforms.to_float(dataset.x[i:i + batch_size])
            xb = transforms.normalize(xb, dataset.mean, dataset.std)        # (B, C, H, W)
            out.append(np.asarray(model.embedding(Tensor(xb)).data, np.float32))  # (B, D)
    return np.concatenate(out)


def _accuracy(linear, feats: np.ndarray, labels: np.ndarray) -> float:
    with no_grad():
        return float(np.mean(np.argmax(linear(Tensor(feats)).data, axis=1) == labels))


def train_linear(train_feats: np.ndarray, train_y: np.ndarray, val_feats: np.ndarray,
                 val_y: np.ndarray, num_classes: int, *, epochs: int = 100, lr: float = 0.1,
                 batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 0.0,
                 seed: int = 0, log=None) -> dict:
    """SGD on a fresh Linear(D, classes) (weights N(0, 0.01), bias 0) over fixed features;
    lr x0.1 at int(0.6 E) and int(0.8 E). Returns final/best accuracies and a per-epoch history."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"linear evaluation needs epochs >= 1, batch_size >= 1 and lr > 0, got "
                         f"{epochs}, {batch_size}, {lr}")
    rng = np.random.default_rng(seed)
    d = train_feats.shape[1]
    linear = Linear(d, num_classes, rng=rng)
    linear.weight.data[...] = rng.normal(0.0, 0.01, size=(num_classes, d))   # as main_lincls.py
    linear.bias.data[...] = 0.0
    sgd = optim.SGD(linear.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = optim.schedules.multistep(lr, [int(0.6 * epochs), int(0.8 * epochs)])
    history = []
    for epoch in range(epochs):
        for group in sgd.param_groups:
            group["lr"] = schedule(epoch)
        order = rng.permutation(len(train_y))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(linear(Tensor(train_feats[idx])), train_y[idx])
            sgd.zero_grad()
            loss.backward()
            sgd.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch + 1, "lr": schedule(epoch), "train_loss": total / len(order),
               "val_accuracy": _accuracy(linear, val_feats, val_y)}
        if not np.isfinite(row["train_loss"]):
            raise ValueError(f"linear evaluation diverged at epoch {epoch + 1} (loss "
                             f"{row['train_loss']}); lower --lr or pass --standardize")
        history.append(row)
        if log is not None:
            log(row)
    return {"train_accuracy": _accuracy(linear, train_feats, train_y),
            "val_accuracy": history[-1]["val_accuracy"],
            "best_val_accuracy": max(r["val_accuracy"] for r in history),
            "history": history, "classifier": linear}


def linear_evaluation(model, train_set, val_set, *, standardize: bool = False, **options) -> dict:
    """Freeze `model` (eval mode), embed both splits once, train the linear classifier.

    Raises RuntimeError if any backbone parameter or buffer changed (it cannot, by construction:
    this is the official code's sanity check). options: see train_linear.
    """
    before = {k: v.copy() for k, v in model.state_dict().items()}
    train_feats = extract_embeddings(model, train_set)               # (N, D)
    val_feats = extract_embeddings(model, val_set)
    if standardize:
        mu, sd = train_feats.mean(axis=0), train_feats.std(axis=0) + 1e-6
        train_feats, val_feats = (train_feats - mu) / sd, (val_feats - mu) / sd
    result = train_linear(train_feats, train_set.y, val_feats, val_set.y,
                          train_set.num_classes, **options)
    after = model.state_dict()
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    if changed:
        raise RuntimeError(f"linear evaluation changed the frozen backbone: {changed[:5]}")
    result["backbone_unchanged"] = True
    result["embedding_dim"] = int(train_feats.shape[1])
    return result

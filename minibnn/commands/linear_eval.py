"""`minibnn linear-eval CKPT`: the linear-evaluation protocol of self-supervised learning.

The checkpoint's backbone is frozen, its embedding of every image is computed once, and a linear
classifier is trained on it with SGD (protocol, defaults and the difference from the official
procedure: minibnn.evaluate.linear). Prints one line per epoch (unless --quiet) and the final
accuracies; --out also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..data import load_dataset
from ..evaluate import linear_evaluation
from ..npzio import atomic_write_text
from ..train import load_model

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint (.npz) or a run folder (its best.npz)")
    parser.add_argument("--epochs", type=int, default=100, help="classifier epochs (official: 100)")
    parser.add_argument("--lr", type=float, default=0.1,
                        help="SGD learning rate (S2-BNN README: 0.1), x0.1 at 60%% and 80%%")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="weight decay of the linear classifier")
    parser.add_argument("--standardize", action="store_true",
                        help="z-score each embedding dimension with training-set statistics "
                             "(not in the official protocol)")
    parser.add_argument("--dataset", default=None,
                        help="dataset to evaluate on (default: the one the checkpoint trained on)")
    parser.add_argument("--data-dir", default=None, help="folder holding downloaded datasets")
    parser.add_argument("--limit-train", type=int, default=0, metavar="N",
                        help="train the classifier on the first N training images (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="classifier init and batch order")
    parser.add_argument("--out", default=None, metavar="JSON", help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="only the final line")


def run(args: argparse.Namespace) -> int:
    model, config = load_model(args.checkpoint)
    name = args.dataset or config.dataset
    train, val = load_dataset(name, args.data_dir or config.data_dir)
    if args.limit_train:
        train = train.subset(np.arange(min(args.limit_train, len(train))))
    log = None if args.quiet else (
        lambda r: print(f"epoch {r['epoch']:3d}  lr {r['lr']:.4g}  loss {r['train_loss']:.4f}  "
                        f"val acc {r['val_accuracy']:.4f}"))
    result = linear_evaluation(model, train, val, standardize=args.standardize,
                               epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                               momentum=args.momentum, weight_decay=args.weight_decay,
                               seed=args.seed, log=log)
    kind = "real-valued" if config.real else "binary"
    print(f"linear evaluation of {kind} {config.model} ({args.checkpoint}) on {name}: "
          f"D={result['embedding_dim']}, {len(train)} train / {len(val)} val images; "
          f"train acc {result['train_accuracy']:.4f}, val acc {result['val_accuracy']:.4f} "
          f"(best {result['best_val_accuracy']:.4f}); backbone unchanged")
    if args.out:
        keep = {k: v for k, v in result.items() if k != "classifier"}
        keep.update(checkpoint=str(args.checkpoint), dataset=name, epochs=args.epochs, lr=args.lr,
                    standardize=args.standardize)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(keep, indent=2) + "\n")
    return 0

"""`minibnn eval`: accuracy and loss of a trained checkpoint (or a run folder) on its dataset."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="a checkpoint (.npz written by 'minibnn train') or a run folder "
                             "(its best.npz is used)")
    parser.add_argument("--packed", metavar="PACKED_NPZ", default=None,
                        help="evaluate a packed model written by 'minibnn export' instead")
    parser.add_argument("--dataset", default=None,
                        help="evaluate on this dataset's validation split (default: the one trained on)")
    parser.add_argument("--data-dir", default=None, help="folder holding downloaded datasets")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass")


def run(args: argparse.Namespace) -> int:
    from ..data import eval_loader, load_dataset
    from ..methods import evaluate
    from ..train import load_model

    if (args.checkpoint is None) == (args.packed is None):
        raise ValueError("give either a CHECKPOINT or --packed PACKED_NPZ (one of the two)")
    if args.packed is not None:
        from .export import evaluate_packed

        return evaluate_packed(args)
    model, config = load_model(args.checkpoint)
    name = args.dataset or config.dataset
    _, val = load_dataset(name, args.data_dir or config.data_dir)
    result = evaluate(model, eval_loader(val, args.batch_size))
    kind = "real-valued" if config.real else "binary"
    print(f"{kind} {config.model} on {name} (validation, {len(val)} images): "
          f"accuracy {result['val_accuracy']:.4f}, loss {result['val_loss']:.4f}")
    return 0

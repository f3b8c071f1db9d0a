"""`minibnn eval`: accuracy and loss of a trained checkpoint (or a run folder) on its dataset.

`minibnn eval --packed OUT.npz` evaluates a packed model written by `minibnn export` instead:
the packed file keeps the dataset name and normalisation, so it evaluates on the same
validation split and inputs as `minibnn eval CKPT` without the checkpoint.
"""

from __future__ import annotations

import argparse

from ..data import load_dataset
from ..engine import PackedModel
from ..evaluate import evaluate_packed, evaluate_split, packed_normalisation
from ..train import load_model

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
    if (args.checkpoint is None) == (args.packed is None):
        raise ValueError("give either a CHECKPOINT or --packed PACKED_NPZ (one of the two)")
    if args.packed is not None:
        return _run_packed(args)
    model, config = load_model(args.checkpoint)
    name = args.dataset or config.dataset
    _, val = load_dataset(name, args.data_dir or config.data_dir)
    result = evaluate_split(model, val, args.batch_size)
    kind = "real-valued" if config.real else "binary"
    print(f"{kind} {config.model} on {name} (validation, {len(val)} images): "
          f"accuracy {result['val_accuracy']:.4f}, loss {result['val_loss']:.4f}")
    return 0


def _run_packed(args: argparse.Namespace) -> int:
    """The dataset is --dataset or the one stored in the file; the normalisation is the file's
    when it evaluates its own dataset, else the dataset's."""
    packed = PackedModel.load(args.packed)
    name = args.dataset or packed.meta.get("dataset")
    if name is None:
        raise ValueError(f"{args.packed} does not record its dataset; pass --dataset NAME")
    _, val = load_dataset(name, args.data_dir)
    mean, std = packed_normalisation(packed, name, val)
    result = evaluate_packed(packed, val, args.batch_size, mean, std)
    print(f"packed {packed.meta.get('model_name', packed.meta.get('model', '?'))} from "
          f"{args.packed} on {name} (validation, {result['num_images']} images): accuracy "
          f"{result['val_accuracy']:.4f}, loss {result['val_loss']:.4f}")
    return 0

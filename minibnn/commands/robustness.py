"""`minibnn robustness CKPT [--baseline CKPT]`: accuracy under seeded corruptions, and the mCE.

Every corruption of `minibnn.data.corruptions` is applied at each severity to the validation
images; the model (and the baseline, on the very same corrupted images) is evaluated on each.
With a baseline, the corruption errors CE / relative CE per corruption and their means (mCE) are
reported (definitions and reference: minibnn.evaluate.robustness). Prints the table and writes
robustness.json, robustness.csv and robustness.png to --out (default: CKPT's run folder /
robustness).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import load_dataset
from ..evaluate import corruption_accuracy, format_table, write_results
from ..train import load_model

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint (.npz) or run folder written by 'minibnn train'")
    parser.add_argument("--baseline", metavar="CKPT", default=None,
                        help="the model the corruption errors are normalised by (mCE)")
    parser.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                        help="corruptions to apply (unset: all of minibnn.data.corruptions)")
    parser.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5],
                        metavar="S", help="severities in 1..5")
    parser.add_argument("--limit", type=int, default=0, metavar="N",
                        help="use the first N validation images only (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions' randomness")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    parser.add_argument("--data-dir", default=None, help="folder holding downloaded datasets")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (unset: CKPT's run folder / robustness)")


def _name(path: Path) -> str:
    return path.name if path.is_dir() else f"{path.parent.name}/{path.stem}"


def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    path = Path(args.checkpoint)
    model, config = load_model(path)
    models = {_name(path): model}
    if args.baseline is not None:
        base_path = Path(args.baseline)
        base_model, base_config = load_model(base_path)
        if base_config.dataset != config.dataset:
            raise ValueError(f"the baseline was trained on {base_config.dataset!r}, the model on "
                             f"{config.dataset!r}; compare models of the same dataset")
        base_name = _name(base_path)
        if base_name in models:
            base_name += " (baseline)"
        models[base_name] = base_model
    _, val = load_dataset(config.dataset, args.data_dir or config.data_dir)
    tables = corruption_accuracy(models, val, args.corruptions, args.severities, args.seed,
                                 args.limit, args.batch_size)
    table = tables[_name(path)]
    baseline = tables[base_name] if args.baseline is not None else None
    print(format_table(table, baseline))
    out = Path(args.out) if args.out else (path if path.is_dir() else path.parent) / "robustness"
    files = write_results(out, table, baseline)
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0

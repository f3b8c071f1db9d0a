"""`minibnn export CKPT OUT.npz`: a trained checkpoint -> bit-packed model, with its size report.

The packed file records the dataset name and normalisation (so `minibnn eval --packed OUT.npz`
evaluates it like `minibnn eval CKPT`); `--check N` compares packed and float predictions on the
first N validation images (minibnn.evaluate.packed_agreement).
"""

from __future__ import annotations

import argparse

from ..data import load_dataset
from ..engine import export
from ..evaluate import packed_agreement
from ..train import load_trained

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint (.npz written by 'minibnn train') or a "
                                           "run folder (its best.npz is used)")
    parser.add_argument("out", help="where to write the packed model (.npz)")
    parser.add_argument("--check", type=int, default=500, metavar="N",
                        help="compare packed and float predictions on the first N validation "
                             "images (0: skip)")
    parser.add_argument("--data-dir", default=None, help="folder holding downloaded datasets")


def run(args: argparse.Namespace) -> int:
    trained, config = load_trained(args.checkpoint)      # the checkpoint describes its data
    model, info = trained.model, trained.data
    meta = {"model_name": config.model, "dataset": config.dataset, "mean": list(info.mean),
            "std": list(info.std), "width": config.width, "real": config.real,
            "input_quantizer": config.input_quantizer, "weight_quantizer": config.weight_quantizer,
            "source": str(args.checkpoint)}
    packed = export(model, meta=meta)
    packed.save(args.out)
    report = packed.size_report()
    print(f"exported {config.model} ({'real' if config.real else 'binary'}, width "
          f"{config.width:g}) from {args.checkpoint} -> {args.out}")
    print(report)
    print(f"packed {report.packed_bytes:,} bytes vs float32 {report.float32_bytes:,} bytes: "
          f"{report.ratio:.1f}x smaller")
    if args.check > 0:                                   # the one dataset load of an export
        _, val = load_dataset(config.dataset, args.data_dir or config.data_dir)
        agreement = packed_agreement(packed, model, val, limit=args.check)
        print(f"check: packed predictions equal the float model's on {agreement.same}/"
              f"{agreement.total} validation images")
        if not agreement.exact:
            print("WARNING: packed and float predictions differ (see the exactness notes in "
                  "minibnn/engine/export.py)")
    return 0

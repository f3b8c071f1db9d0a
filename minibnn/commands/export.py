"""`minibnn export CKPT OUT.npz`: a trained checkpoint -> bit-packed model, with its size report.

Also `evaluate_packed(args)`, which `minibnn eval --packed OUT.npz` calls: the packed file keeps
the dataset name and normalisation, so it evaluates on the same validation split and inputs
as `minibnn eval CKPT` without the checkpoint.
"""

from __future__ import annotations

import argparse

import numpy as np

__all__ = ["add_arguments", "run", "evaluate_packed"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint (.npz written by 'minibnn train') or a "
                                           "run folder (its best.npz is used)")
    parser.add_argument("out", help="where to write the packed model (.npz)")
    parser.add_argument("--check", type=int, default=500, metavar="N",
                        help="compare packed and float predictions on the first N validation "
                             "images (0: skip)")
    parser.add_argument("--data-dir", default=None, help="folder holding downloaded datasets")


def _val_loader(name: str, data_dir, mean, std, batch_size: int, limit: int | None = None):
    from ..data import eval_loader, load_dataset

    _, val = load_dataset(name, data_dir)
    return val, eval_loader(val, batch_size, mean, std, limit)


def run(args: argparse.Namespace) -> int:
    from ..autograd import Tensor, no_grad
    from ..engine import export
    from ..train import load_trained

    trained, config = load_trained(args.checkpoint)      # the checkpoint describes its data
    model, info = trained.model, trained.data
    data_dir = args.data_dir or config.data_dir
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
    if args.check > 0:
        _, loader = _val_loader(config.dataset, data_dir, info.mean, info.std, 250, args.check)
        same = total = 0
        with no_grad():
            for xb, _, _ in loader:
                same += int((packed.predict(xb) == model(Tensor(xb)).data.argmax(1)).sum())
                total += len(xb)
        print(f"check: packed predictions equal the float model's on {same}/{total} "
              f"validation images")
        if same != total:
            print("WARNING: packed and float predictions differ (see the exactness notes in "
                  "minibnn/engine/export.py)")
    return 0


def evaluate_packed(args: argparse.Namespace) -> int:
    """Accuracy and loss of a packed model (args.packed) on a validation split.

    The dataset is args.dataset or the one stored in the file; the normalisation is the file's
    when it evaluates its own dataset, else the dataset's.
    """
    from ..engine import PackedModel

    packed = PackedModel.load(args.packed)
    stored = packed.meta.get("dataset")
    name = args.dataset or stored
    if name is None:
        raise ValueError(f"{args.packed} does not record its dataset; pass --dataset NAME")
    from ..data import load_dataset

    _, val = load_dataset(name, args.data_dir)
    own = name == stored and "mean" in packed.meta
    mean, std = (packed.meta["mean"], packed.meta["std"]) if own else (val.mean, val.std)
    _, loader = _val_loader(name, args.data_dir, mean, std, args.batch_size)
    correct, loss, total = 0, 0.0, 0
    for xb, yb, _ in loader:
        logits = packed(xb).astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss -= float(logp[np.arange(len(yb)), yb].sum())
        correct += int((logits.argmax(axis=1) == yb).sum())
        total += len(yb)
    print(f"packed {packed.meta.get('model_name', packed.meta.get('model', '?'))} from "
          f"{args.packed} on {name} (validation, {total} images): accuracy "
          f"{correct / total:.4f}, loss {loss / total:.4f}")
    return 0

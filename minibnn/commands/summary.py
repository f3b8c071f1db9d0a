"""`minibnn summary MODEL`: a per-layer table of a model's parameters, bits, memory and operations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models import build_model
from ..summary import summary
from ..train import load_model

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="architecture name (mlp, cnn, vgg-small, resnet20, resnet18, "
                                      "reactnet) or a checkpoint / run folder")
    parser.add_argument("--real", action="store_true", help="the real-valued twin")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                        help="input shape without the batch axis, e.g. 3,32,32 for CIFAR")
    parser.add_argument("--num-classes", type=int, default=10, help="outputs of the classifier")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--input-shape must be C,H,W such as 1,28,28, got {text!r}") from None
    return c, h, w


def run(args: argparse.Namespace) -> int:
    shape = _shape(args.input_shape)
    if Path(args.model).exists():
        model, config = load_model(args.model)
        shape = model.input_shape
    else:
        model = build_model(args.model, binary=not args.real, in_channels=shape[0],
                            image_size=shape[1], num_classes=args.num_classes, width=args.width,
                            rng=0)
    print(summary(model, shape))
    return 0

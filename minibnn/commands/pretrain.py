"""`minibnn pretrain --method moco`: self-supervised MoCo v2 pre-training of a real-valued network.

This trains S2-BNN's teacher on the data at hand (nothing is downloaded): the real-valued twin
of an architecture with the MoCo v2 MLP projection head, a momentum key encoder and a queue of
negative keys. It is the `contrastive` variant of the s2bnn recipe run on `--real` weights, so
the run folder is an ordinary minibnn run (resumable, `minibnn linear-eval` reads it) and
`minibnn train --method s2bnn --teacher RUN_DIR` loads its projection head.

Defaults follow MoCo v2 (Chen et al., arXiv:2003.04297): SGD lr 0.03, momentum 0.9, weight decay
1e-4, cosine schedule, tau 0.2, MoCo v2 augmentation; the queue is sized to the data set.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..methods.s2bnn_options import DEFAULTS, add_view_arguments
from ..train import NonFiniteLossError, resume_training, run_training, s2bnn_config
from ..train.config import OPTIMIZERS, SCHEDULES
from ..train.options import check_args, report_recovery

__all__ = ["add_arguments", "run", "config_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    what = parser.add_argument_group("what to pretrain")
    what.add_argument("--method", choices=("moco",), default="moco",
                      help="self-supervised method (MoCo v2)")
    what.add_argument("--model", default="reactnet",
                      help="architecture whose real-valued twin is trained "
                           "(reactnet, resnet20, ...)")
    what.add_argument("--real", action="store_true", default=True,
                      help="real-valued weights and activations (always on: the teacher is real)")
    what.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="mnist-t10k", help="dataset to pre-train on (labels unused)")
    data.add_argument("--data-dir", default=None, help="folder holding downloaded datasets")
    data.add_argument("--limit-train", type=int, default=0, metavar="N",
                      help="pretrain on the first N training images (0: all)")
    opt = parser.add_argument_group("optimisation (MoCo v2 defaults)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="optimizer (MoCo v2: SGD)")
    opt.add_argument("--lr", type=float, default=0.03, help="peak learning rate (MoCo v2: 0.03)")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    opt.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay")
    opt.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule")
    opt.add_argument("--epochs", type=int, default=None, help="number of epochs (default: 8)")
    opt.add_argument("--batch-size", type=int, default=128, help="training batch size")
    moco = parser.add_argument_group("MoCo")
    moco.add_argument("--moco-dim", type=int, default=d["dim"], help="projection size")
    moco.add_argument("--moco-k", type=int, default=d["queue"],
                      help="queue size (a multiple of --batch-size)")
    moco.add_argument("--moco-m", type=float, default=d["key_momentum"],
                      help="key-encoder momentum")
    moco.add_argument("--moco-t", type=float, default=d["tau"], help="InfoNCE temperature")
    add_view_arguments(moco, "", "moco_v2")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    run.add_argument("--out", default=None,
                     help="run folder (default: runs/moco-MODEL-DATASET-...)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue a pretraining run bit-exactly from its last.npz; only "
                          "--epochs (to extend it), --data-dir, --stop-after and --quiet may be "
                          "given with it, other options are refused")
    run.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                     help="stop after this epoch, >= 1 (the run can be resumed later)")
    run.add_argument("--quiet", action="store_true", help="no progress output")


def config_from_args(args: argparse.Namespace):
    return s2bnn_config(
        "contrastive", real=True, model=args.model, width=args.width, dataset=args.dataset,
        data_dir=args.data_dir, limit_train=args.limit_train, optimizer=args.optimizer,
        lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, epochs=8 if args.epochs is None else args.epochs, batch_size=args.batch_size,
        seed=args.seed, dim=args.moco_dim, queue=args.moco_k, key_momentum=args.moco_m,
        tau=args.moco_t, aug=args.aug, crop_min=args.crop_min, noise=args.noise,
        flip=args.flip, shuffle_bn=args.shuffle_bn, knn_bank=args.knn_bank)


def run(args: argparse.Namespace) -> int:
    check_args(args, "pretrain")
    try:
        if args.resume:
            result = resume_training(args.resume, epochs=args.epochs, quiet=args.quiet,
                                     stop_after=args.stop_after, data_dir=args.data_dir)
        else:
            config = config_from_args(args)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = Path(args.out or
                       f"runs/moco-{config.model}-{config.dataset}-s{config.seed}-{stamp}")
            if not args.quiet:
                print(f"MoCo v2 pretraining of the real-valued {config.model} (width "
                      f"{config.width}) on {config.dataset} for {config.epochs} epochs -> {out}")
            result = run_training(config, out, quiet=args.quiet, stop_after=args.stop_after)
    except NonFiniteLossError as err:
        print(f"minibnn pretrain: error: {err}", file=sys.stderr)
        return 1
    if not report_recovery(result, args.quiet, args.stop_after):
        return 0
    print(f"kNN validation accuracy {result.val_accuracy:.4f} after epoch {result.final['epoch']}; "
          f"use it as a teacher with --teacher {result.out_dir}, or evaluate it with "
          f"'minibnn linear-eval {result.out_dir}'")
    return 0

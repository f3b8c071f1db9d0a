"""`minibnn train`: train a binary network (or its real-valued twin) and write a run folder.

With no options it trains the small binary CNN on the bundled MNIST test-set split (8,000 train
/ 2,000 validation images; not the standard 60k/10k protocol) in a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..methods import add_method_arguments, options_from_args
from ..train import NonFiniteLossError, resume_training, run_training
from ..train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from ..train.options import check_args, report_recovery

__all__ = ["add_arguments", "run", "config_from_args", "report"]

_DEFAULTS = TrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    what = parser.add_argument_group("what to train")
    what.add_argument("--model", default=d.model,
                      help="architecture: mlp, cnn, vgg-small, resnet20, resnet18, reactnet")
    what.add_argument("--real", action="store_true",
                      help="train the real-valued twin of the architecture instead of the BNN")
    what.add_argument("--width", type=float, default=d.width, help="channel width multiplier")
    what.add_argument("--input-quantizer", default=None,
                      help="activation binarizer: ste, approx, ede, identity (default: the architecture's)")
    what.add_argument("--weight-quantizer", default=None,
                      help="weight binarizer: xnor, irnet, reactnet, sign, none, or an activation "
                           "binarizer applied to W (default: the architecture's)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=d.dataset,
                      help="mnist-t10k (bundled), mnist, fashion-mnist, cifar10, cifar100, synthetic")
    data.add_argument("--data-dir", default=None,
                      help="folder holding downloaded datasets (then $MINIBNN_DATA, then the user cache)")
    data.add_argument("--augment", action="store_true", help="random crops (and flips on colour images)")
    data.add_argument("--limit-train", type=int, default=0, metavar="N",
                      help="train on the first N images only (0: all)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="optimizer")
    opt.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    opt.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay,
                     help="weight decay (never applied to latent binary weights)")
    opt.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule")
    opt.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                     help="epochs of linear learning-rate warm-up before the schedule")
    opt.add_argument("--epochs", type=int, default=None, help=f"number of epochs (default: {d.epochs})")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    opt.add_argument("--clip-weights", type=float, default=d.clip_weights,
                     help="clip latent binary weights to [-c, c] after each step (0: off)")
    opt.add_argument("--ede-t-min", type=float, default=d.ede_t_min, help="IR-Net EDE schedule start")
    opt.add_argument("--ede-t-max", type=float, default=d.ede_t_max, help="IR-Net EDE schedule end")
    method = parser.add_argument_group("method")
    method.add_argument("--method", default=d.method,
                        help="training method: ce (plain cross-entropy), lcr (LCR-BNN), cmim (CMIM), "
                             "s2bnn (S2-BNN); see each method's options below")
    method.add_argument("--teacher", default=None, metavar="CKPT",
                        help="checkpoint of the real-valued network a method learns from "
                             "(train one with 'minibnn train --real')")
    add_method_arguments(parser)
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=d.seed, help="seed of every random choice")
    run.add_argument("--out", default=None,
                     help="run folder (default: runs/MODEL-binary|real-DATASET-sSEED-TIME)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue the run in RUN_DIR from its last checkpoint (last.npz), "
                          "bit-exactly, after checking it against the folder's record; every "
                          "option comes from the run itself: only --epochs (to extend it), "
                          "--data-dir, --stop-after and --quiet may be given, others are refused")
    run.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                     help="stop after this epoch, >= 1 (the run can be resumed later)")
    run.add_argument("--quiet", action="store_true", help="no progress output")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model, dataset=args.dataset, data_dir=args.data_dir, real=args.real,
        width=args.width, input_quantizer=args.input_quantizer,
        weight_quantizer=args.weight_quantizer, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        epochs=_DEFAULTS.epochs if args.epochs is None else args.epochs,
        batch_size=args.batch_size, seed=args.seed, augment=args.augment,
        clip_weights=args.clip_weights, ede_t_min=args.ede_t_min, ede_t_max=args.ede_t_max,
        limit_train=args.limit_train, method=args.method, teacher=args.teacher,
        method_options=options_from_args(args.method, args),
    )


def _default_out(config: TrainConfig) -> Path:
    kind = "real" if config.real else "binary"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model}-{kind}-{config.dataset}-s{config.seed}-{stamp}"


def report(result, quiet: bool, stop_after: int | None = None) -> int:
    if report_recovery(result, quiet, stop_after):
        best = max(r["val_accuracy"] for r in result.history)
        print(f"validation accuracy {result.val_accuracy:.4f} after epoch "
              f"{result.final['epoch']} (best {best:.4f}); run folder {result.out_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    check_args(args)
    try:
        if args.resume:
            result = resume_training(args.resume, epochs=args.epochs, quiet=args.quiet,
                                     stop_after=args.stop_after, data_dir=args.data_dir)
        else:
            config = config_from_args(args)
            out = Path(args.out) if args.out else _default_out(config)
            if not args.quiet:
                kind = "real-valued" if config.real else "binary"
                print(f"training {kind} {config.model} on {config.dataset} for {config.epochs} "
                      f"epochs (seed {config.seed}) -> {out}")
            result = run_training(config, out, quiet=args.quiet, stop_after=args.stop_after)
    except NonFiniteLossError as err:
        print(f"minibnn train: error: {err}", file=sys.stderr)
        return 1
    return report(result, args.quiet, args.stop_after)

"""`minibnn bench cmim`: what the CMIM contrastive term adds to one training step.

A training step (forward, loss, backward, Adam update) of the default binary CNN is timed with
plain cross-entropy and with each CMIM variant, at the default sizes of `minibnn train --method
cmim` on mnist-t10k (batch 128, M = 8000 memory rows, N = 4096 negatives, d = 128). The variants
run round-robin inside each repeat, so a change in machine load hits all of them alike, and the
median over repeats is reported with the overhead relative to CE and whether it meets the issue's
goal: the contrastive term adds at most 30% to a step. Inputs are random; only time is measured.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import optim
from ..data import transforms
from ..methods import cross_entropy_loss
from ..methods.cmim_recipe import OfficialCMIM, PaperCMIM
from ..models import build_model
from . import clock_for
from .machine import print_machine_report

__all__ = ["add_arguments", "run", "make_variants", "GOAL"]

GOAL = 0.30          # "the contrastive term adds at most 30% to a training step"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="cnn", help="architecture (default: cnn)")
    parser.add_argument("--input-quantizer", default="ede", help="activation binarizer (default: ede)")
    parser.add_argument("--weight-quantizer", default="irnet", help="weight binarizer (default: irnet)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--n-data", type=int, default=8000,
                        help="memory rows M = training-set size (default: 8000, mnist-t10k)")
    parser.add_argument("--negatives", type=int, default=4096, help="negatives N (default: 4096)")
    parser.add_argument("--feat-dim", type=int, default=128, help="head output size d (default: 128)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed steps per variant; the median is reported (default: 7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and weights (default: 0)")
    parser.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                        help="wall clock, or this process's CPU time (steadier on a shared "
                             "machine; counts every BLAS thread) (default: wall)")


def make_variants(args: argparse.Namespace) -> dict:
    """name -> (model, recipe, optimizer) for CE, official (cached / per-step teacher), paper."""
    rng = np.random.default_rng(args.seed)
    labels = rng.integers(0, 10, size=args.n_data)
    images = rng.integers(0, 256, size=(args.n_data, 1, 28, 28), dtype=np.uint8)
    options = {"negatives": args.negatives, "feat_dim": args.feat_dim}

    def student():
        return build_model(args.model, input_quantizer=args.input_quantizer,
                           weight_quantizer=args.weight_quantizer, rng=args.seed)

    teacher = build_model(args.model, binary=False, rng=args.seed + 1).eval()
    variants = {}
    for name in ("ce", "official, cached teacher", "official, teacher every step", "paper"):
        model = student()
        if name == "ce":
            recipe = cross_entropy_loss
        elif name == "paper":
            recipe = PaperCMIM(model, {**options, "form": "paper"}, args.seed)
        else:
            recipe = OfficialCMIM(teacher, labels, model.embedding_dim, options, args.seed,
                                  cache_teacher=name.endswith("cached teacher"))
            recipe.set_train_images(images)
            recipe.train_transform(lambda x, r: transforms.normalize(x, 0.13, 0.31))
            if recipe.cache_teacher:   # a run fills it once (one teacher pass); values don't matter here
                recipe._teacher_features = rng.normal(
                    size=(args.n_data, teacher.embedding_dim)).astype(np.float32)
        extra = recipe.parameters() if hasattr(recipe, "parameters") else []
        params = list(model.parameters()) + list(extra)
        variants[name] = (model, recipe, optim.Adam(params, lr=1e-3))
    return variants


def _step(model, recipe, optimizer, batch) -> None:
    out = recipe(model, batch)
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()


def run(args: argparse.Namespace) -> int:
    if args.negatives >= args.n_data or args.batch > args.n_data or args.repeats < 1:
        raise ValueError(f"need negatives < n-data, batch <= n-data and repeats >= 1, got "
                         f"{args.negatives}, {args.n_data}, {args.batch}, {args.repeats}")
    print_machine_report()
    rng = np.random.default_rng(args.seed + 2)
    variants = make_variants(args)
    clock = clock_for(args.timer)
    times = {name: [] for name in variants}
    for r in range(args.repeats + 1):                    # repeat 0 is the warm-up
        idx = rng.choice(args.n_data, args.batch, replace=False)
        x = rng.normal(size=(args.batch, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, size=args.batch)
        for name, (model, recipe, optimizer) in variants.items():
            if hasattr(recipe, "sampler"):
                y = recipe.sampler.labels[idx]           # labels consistent with the memory's
            start = clock()
            _step(model, recipe, optimizer, (x, y, idx))
            if r:
                times[name].append(clock() - start)
    print(f"one training step of {args.model} ({args.input_quantizer}/{args.weight_quantizer}), "
          f"batch {args.batch}, M={args.n_data}, N={args.negatives}, d={args.feat_dim}; "
          f"median of {args.repeats}, {args.timer} time")
    base = float(np.median(times["ce"]))
    print(f"{'variant':32s} {'s/step':>8s} {'overhead':>9s}  goal (<= {GOAL:.0%})")
    for name, values in times.items():
        t = float(np.median(values))
        if name == "ce":
            print(f"{name:32s} {t:8.3f} {'':>9s}")
            continue
        over = t / base - 1
        print(f"{name:32s} {t:8.3f} {over:+9.1%}  {'meets' if over <= GOAL else 'misses'}")
    return 0

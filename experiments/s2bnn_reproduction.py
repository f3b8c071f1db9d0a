"""S2-BNN reproduction on CPU: the analogue of Table 1 of arXiv:2102.08946 on mnist-t10k.

Rows (all scored by linear evaluation of the frozen backbone, `minibnn linear-eval`):
    MoCo v2, real-valued ReActNet x0.5 (the teacher; twice the student's width, one seed)
    MoCo v2, real-valued ReActNet x0.25 (the student's real twin, as the paper's real row)
    S2-BNN contrastive only           (Adam + linear decay + lite augmentation + two steps)
    S2-BNN contrastive + distillation (1:1)
    S2-BNN distillation only          ("guided learning only")
    supervised BNN                    (the same student trained with labels, cross-entropy)

One teacher (seed 0) serves every student seed, as the paper uses one pretrained teacher. Every
run is a normal run folder under --out; finished runs are reused and interrupted ones resumed,
so the script can be re-run to continue. Writes results.json and results.md into --out.

    python experiments/s2bnn_reproduction.py --seeds 0 1 2
    python experiments/s2bnn_reproduction.py --seeds 0 1 2 --random-init \
        --one-step contrastive contrastive+distill distill        # extra rows, reuses the runs
    python experiments/s2bnn_reproduction.py --out runs/s2bnn-reproduction-long --epochs 15 \
        --no-real-twin                                            # 3x longer (copy the teacher)

Run folders are passed on as folders, so the teacher and each step-2 start are the runs'
best.npz (best kNN epoch); see docs/s2bnn.md section 6 for the numbers this produced.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from minibnn.evaluate import linear_evaluation
from minibnn.data import load_dataset
from minibnn.train import (TrainConfig, build_run, load_model, read_history, resume_training,
                           run_training, s2bnn_config)

VARIANTS = (("contrastive", "S2-BNN contrastive only"),
            ("contrastive+distill", "S2-BNN contrastive + distillation"),
            ("distill", "S2-BNN distillation only"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/s2bnn-reproduction")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--dataset", default="mnist-t10k")
    p.add_argument("--limit-train", type=int, default=2048,
                   help="self-supervised training on the first N training images")
    p.add_argument("--width", type=float, default=0.25, help="student ReActNet width")
    p.add_argument("--teacher-width", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=5, help="epochs per step (two steps)")
    p.add_argument("--teacher-epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr of the S2-BNN students")
    p.add_argument("--teacher-lr", type=float, default=1e-3, help="Adam lr of the MoCo teacher")
    p.add_argument("--queue", type=int, default=1024)
    p.add_argument("--key-momentum", type=float, default=0.99)
    p.add_argument("--knn-bank", type=int, default=1000)
    p.add_argument("--crop-min", type=float, default=0.5,
                   help="random-resized-crop scale (the paper's 0.2 is for 224 px ImageNet)")
    p.add_argument("--flip", type=float, default=0.0, help="flip probability (digits are not "
                   "mirror-symmetric)")
    p.add_argument("--no-real-twin", action="store_true",
                   help="skip the MoCo real-valued twin of the student")
    p.add_argument("--random-init", action="store_true",
                   help="also score the untrained student and its real twin")
    p.add_argument("--one-step", nargs="*", default=[], choices=[v for v, _ in VARIANTS],
                   help="also train these variants in ONE step (binary weights from scratch, "
                        "2 x --epochs), the ablation of progressive binarization")
    p.add_argument("--lincls-epochs", type=int, default=100)
    p.add_argument("--lincls-lr", type=float, default=0.1)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def train(config: TrainConfig, out: Path, quiet: bool) -> Path:
    """Run `config` into `out`, or reuse / resume what is already there."""
    if (out / "last.npz").exists():
        history = read_history(out)
        if len(history) < config.epochs:
            resume_training(out, quiet=quiet)
    else:
        started = time.time()
        run_training(config, out, quiet=quiet)
        print(f"  trained {out.name} in {time.time() - started:.0f}s", flush=True)
    return out


def lincls(run_dir: Path, args, cache: dict) -> dict:
    """Linear evaluation of the last checkpoint of `run_dir` (cached in lincls.json)."""
    path = run_dir / "lincls.json"
    if path.exists():
        return json.loads(path.read_text())
    model, config = load_model(run_dir / "last.npz")
    key = (config.dataset, config.data_dir)
    if key not in cache:
        cache[key] = load_dataset(config.dataset, config.data_dir)
    train_set, val_set = cache[key]
    result = linear_evaluation(model, train_set, val_set, epochs=args.lincls_epochs,
                               lr=args.lincls_lr, seed=0)
    history = read_history(run_dir)
    keep = {"val_accuracy": result["val_accuracy"], "train_accuracy": result["train_accuracy"],
            "best_val_accuracy": result["best_val_accuracy"],
            "knn_accuracy": history[-1].get("val_knn_accuracy"),
            "own_val_accuracy": history[-1].get("val_accuracy"),
            "seconds": sum(r["seconds"] for r in history)}
    path.write_text(json.dumps(keep, indent=2) + "\n")
    print(f"  linear eval {run_dir.name}: val {keep['val_accuracy']:.4f}", flush=True)
    return keep


def lincls_random(config: TrainConfig, path: Path, args, cache: dict) -> dict:
    """Linear evaluation of `config`'s network at its random initialisation (no training)."""
    if path.exists():
        return json.loads(path.read_text())
    run = build_run(config)
    key = (config.dataset, config.data_dir)
    if key not in cache:
        cache[key] = load_dataset(config.dataset, config.data_dir)
    result = linear_evaluation(run.model, *cache[key], epochs=args.lincls_epochs,
                               lr=args.lincls_lr, seed=0)
    keep = {"val_accuracy": result["val_accuracy"], "train_accuracy": result["train_accuracy"],
            "best_val_accuracy": result["best_val_accuracy"],
            "knn_accuracy": run.loss.evaluate(run.model, run.val_loader)["val_accuracy"]}
    path.write_text(json.dumps(keep, indent=2) + "\n")
    print(f"  linear eval {path.stem}: val {keep['val_accuracy']:.4f}", flush=True)
    return keep


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(dataset=args.dataset, limit_train=args.limit_train,
                  batch_size=args.batch_size, queue=args.queue, key_momentum=args.key_momentum,
                  knn_bank=args.knn_bank, crop_min=args.crop_min, flip=args.flip)
    cache: dict = {}
    results: dict = {"args": vars(args), "rows": {}}

    teacher_cfg = s2bnn_config("contrastive", real=True, width=args.teacher_width,
                              epochs=args.teacher_epochs, lr=args.teacher_lr, seed=0,
                              aug="moco_v2", **common)
    teacher = train(teacher_cfg, out / "teacher-moco-real", args.quiet)
    results["rows"][f"MoCo v2, real-valued ReActNet x{args.teacher_width:g} (teacher)"] = {
        0: lincls(teacher, args, cache)}

    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        for variant, label in VARIANTS:
            teacher_path = str(teacher) if "distill" in variant else None
            base = dict(width=args.width, epochs=args.epochs, lr=args.lr, seed=seed,
                        teacher=teacher_path, **common)
            step1 = train(s2bnn_config(variant, step=1, **base),
                          out / f"{variant}-step1-s{seed}", args.quiet)
            step2 = train(s2bnn_config(variant, step=2, init_from=str(step1), **base),
                          out / f"{variant}-step2-s{seed}", args.quiet)
            results["rows"].setdefault(label, {})[seed] = lincls(step2, args, cache)
            after1 = results["rows"].setdefault(label + " (after step 1)", {})
            after1[seed] = lincls(step1, args, cache)
        if args.random_init:
            for kind, real in (("binary", False), ("real-valued", True)):
                cfg = s2bnn_config("contrastive", real=real, width=args.width, seed=seed,
                                  step=2, **common)
                label = f"random init, {kind} ReActNet x{args.width:g} (no training)"
                results["rows"].setdefault(label, {})[seed] = lincls_random(
                    cfg, out / f"random-init-{kind}-s{seed}.json", args, cache)
        for variant in args.one_step:
            label = dict(VARIANTS)[variant] + ", one step"
            teacher_path = str(teacher) if "distill" in variant else None
            one = train(s2bnn_config(variant, step=2, width=args.width, epochs=2 * args.epochs,
                                    lr=args.lr, seed=seed, teacher=teacher_path, **common),
                        out / f"{variant}-onestep-s{seed}", args.quiet)
            results["rows"].setdefault(label, {})[seed] = lincls(one, args, cache)
        if not args.no_real_twin:
            twin = train(s2bnn_config("contrastive", real=True, width=args.width,
                                     epochs=2 * args.epochs, lr=args.lr, seed=seed,
                                     aug="moco_v2", **common),
                         out / f"moco-real-twin-s{seed}", args.quiet)
            results["rows"].setdefault(f"MoCo v2, real-valued ReActNet x{args.width:g} "
                                       f"(student's twin)", {})[seed] = lincls(twin, args, cache)
        sup = TrainConfig(model="reactnet", width=args.width, dataset=args.dataset,
                          limit_train=args.limit_train, epochs=2 * args.epochs,
                          batch_size=args.batch_size, optimizer="adam", lr=args.lr,
                          schedule="linear", augment=True, seed=seed)
        sup_dir = train(sup, out / f"supervised-bnn-s{seed}", args.quiet)
        sup_row = results["rows"].setdefault("supervised BNN (cross-entropy)", {})
        sup_row[seed] = lincls(sup_dir, args, cache)
        write(out, results)
    write(out, results)
    return 0


def _fmt(values: list) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def write(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    a = results["args"]
    lines = [f"S2-BNN on {a['dataset']} (first {a['limit_train']} training images for training the "
             f"networks; linear evaluation on all training images), student ReActNet width "
             f"{a['width']}, {a['epochs']} epochs per step; seeds {a['seeds']}. "
             f"Mean ± std over seeds (sample std).", "",
             "| row | linear eval val acc (%) | kNN acc (%) | own classifier (%) | seeds |",
             "|---|---|---|---|---|"]
    order = ("random init", "(teacher)", "(student's twin)", "contrastive only",
             "contrastive + distillation", "distillation only", "supervised")

    def rank(label):
        late = "after step 1" in label or "one step" in label
        return (late, next((i for i, k in enumerate(order) if k in label), 99))

    for label, per_seed in sorted(results["rows"].items(), key=lambda item: rank(item[0])):
        rows = list(per_seed.values())
        own = [r.get("own_val_accuracy") for r in rows] if label.startswith("supervised") else []
        knn = [r.get("knn_accuracy") for r in rows] if not label.startswith("supervised") else []
        lines.append(f"| {label} | {_fmt([r['val_accuracy'] for r in rows])} | {_fmt(knn)} | "
                     f"{_fmt(own)} | {len(rows)} |")
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

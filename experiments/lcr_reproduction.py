"""LCR-BNN reproduction on a CPU budget: IR-Net vs IR-Net + LCR, clean accuracy and mCE.

    python experiments/lcr_reproduction.py --out runs/lcr-repro --epochs 4 --teacher-epochs 5 \
        --alphas 8 1000                                                      (the docs' table)
    python experiments/lcr_reproduction.py --out /tmp/lcr-smoke --epochs 1 --teacher-epochs 1 \
        --limit-train 500 --seeds 0 --robustness-limit 200 --corruptions contrast  (a smoke run)

Protocol (defaults): the binary `cnn` with IR-Net binarization (EDE activations + irnet
weights, EDE t/k schedule), one real-valued teacher of the same architecture (seed 0, the same
for every student, as the official code's single pretrained FP network), then per seed:
IR-Net (plain CE) and IR-Net + LCR for every --alphas value (official variant, teacher
reference, learnable gammas). Robustness: every corruption of minibnn.data.corruptions at
severities 1-5 on the first --robustness-limit validation images, all models on the same
corrupted images. mCE is reported two ways: against a fixed reference model (the teacher,
as ImageNet-C uses AlexNet) and paired against the IR-Net run of the same seed.
Runs are resumable: finished runs are skipped, interrupted ones resumed.
The teacher alone: minibnn train --real --model cnn --width 0.5 --epochs 5 --seed 0 --out OUT/teacher
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from minibnn.commands.robustness import (RobustnessTable, corruption_accuracy, corruption_errors,
                                         mean_corruption_error, relative_corruption_errors,
                                         write_results)
from minibnn.data import load_dataset
from minibnn.train import TrainConfig, load_model, read_history, resume_training, run_training


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/lcr-repro")
    p.add_argument("--model", default="cnn")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--dataset", default="mnist-t10k")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--alphas", type=float, nargs="+", default=[8.0, 1000.0],
                   help="LCR weights to run (8 = official); 0 is the IR-Net baseline, always run")
    p.add_argument("--variant", default="official", choices=("official", "exact"))
    p.add_argument("--reference", default="teacher", choices=("teacher", "latent"))
    p.add_argument("--robustness-limit", type=int, default=1000)
    p.add_argument("--corruptions", nargs="+", default=None)
    p.add_argument("--only-teacher", action="store_true", help="train the teacher and stop")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train(config: TrainConfig, out: Path) -> Path:
    """Train into `out`, skipping a finished run and resuming an interrupted one."""
    if (out / "last.npz").exists():
        done = len(read_history(out))
        if done >= config.epochs:
            log(f"{out.name}: done ({done} epochs), skipped")
            return out
        log(f"{out.name}: resuming after epoch {done}")
        resume_training(out, quiet=True)
        return out
    started = time.time()
    result = run_training(config, out, quiet=True)
    log(f"{out.name}: val accuracy {result.val_accuracy:.4f} ({time.time() - started:.0f}s)")
    return out


def arm_name(alpha: float) -> str:
    return "irnet" if alpha == 0 else f"lcr-a{alpha:g}"


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    common = dict(model=a.model, dataset=a.dataset, width=a.width, batch_size=a.batch_size,
                  lr=a.lr, limit_train=a.limit_train)
    teacher = train(TrainConfig(**common, real=True, seed=0,
                                epochs=a.teacher_epochs), out / "teacher")
    if a.only_teacher:
        return 0
    arms = [0.0] + [x for x in a.alphas if x != 0]
    runs = {}
    for seed in a.seeds:
        for alpha in arms:
            binary = dict(common, input_quantizer="ede", weight_quantizer="irnet", seed=seed,
                          epochs=a.epochs)
            if alpha == 0:
                config = TrainConfig(**binary)
            else:
                config = TrainConfig(**binary, method="lcr", teacher=str(teacher),
                                     method_options={"alpha": alpha, "variant": a.variant,
                                                     "reference": a.reference})
            runs[(arm_name(alpha), seed)] = train(config, out / f"{arm_name(alpha)}-s{seed}")

    tables = robustness(out, teacher, runs, a)
    report = make_report(out, tables, runs, arms, a)
    (out / "results.md").write_text(report)
    print(report)
    return 0


def robustness(out: Path, teacher: Path, runs: dict, a) -> dict:
    """{name: RobustnessTable}, cached in OUT/robustness_tables.json."""
    cache = out / "robustness_tables.json"
    if cache.exists():
        raw = json.loads(cache.read_text())
        log(f"robustness: read {cache}")
        return {n: RobustnessTable(n, t["corruptions"], t["severities"], t["clean_accuracy"],
                                   np.array(t["accuracy"]), t["num_images"]) for n, t in raw.items()}
    models = {"teacher": load_model(teacher)[0]}
    models.update({f"{arm}-s{seed}": load_model(path)[0] for (arm, seed), path in runs.items()})
    _, val = load_dataset(a.dataset)
    started = time.time()
    tables = corruption_accuracy(models, val, a.corruptions, seed=0, limit=a.robustness_limit,
                                 progress=lambda c, s, acc: log(f"{c} s{s}: " + " ".join(
                                     f"{n} {v:.3f}" for n, v in acc.items())))
    log(f"robustness: {time.time() - started:.0f}s")
    cache.write_text(json.dumps({n: t.to_dict() for n, t in tables.items()}, indent=1))
    return tables


def _stats(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def make_report(out: Path, tables: dict, runs: dict, arms: list, a) -> str:
    ref = tables["teacher"]
    seeds = sorted({seed for _, seed in runs})
    lines = [f"# LCR-BNN reproduction: {a.model} width {a.width} on {a.dataset}",
             "",
             f"{a.epochs} epochs, batch {a.batch_size}, Adam lr {a.lr}, cosine; IR-Net binarization "
             f"(EDE + irnet weights); training images: {a.limit_train or 'all'}; seeds {seeds}; "
             f"LCR variant {a.variant}, reference {a.reference}. Robustness on the first "
             f"{ref.num_images} validation images, {len(ref.corruptions)} corruptions x "
             f"{len(ref.severities)} severities. Teacher (real-valued, seed 0): clean accuracy "
             f"{ref.clean_accuracy:.4f}.",
             "",
             "mCE (teacher) = ImageNet-C mCE with the real-valued teacher as the fixed reference "
             "model; mCE (paired) = against the IR-Net run of the same seed (1 for IR-Net by "
             "definition); rmCE = relative mCE, same pairing. Mean ± std (ddof 1) over seeds.",
             "",
             "| method | clean acc | mean corrupted acc | mCE (teacher) | mCE (paired) | rmCE (paired) |",
             "|---|---|---|---|---|---|"]
    per_seed = ["", "Per seed:", "", "| run | clean acc | mean corrupted acc | mCE (teacher) | "
                "mCE (paired) |", "|---|---|---|---|---|"]
    for alpha in arms:
        arm = arm_name(alpha)
        clean, mean_acc, mce_ref, mce_pair, rmce_pair = [], [], [], [], []
        for seed in seeds:
            t, base = tables[f"{arm}-s{seed}"], tables[f"irnet-s{seed}"]
            clean.append(t.clean_accuracy)
            mean_acc.append(t.accuracy.mean())
            mce_ref.append(mean_corruption_error(corruption_errors(t.errors, ref.errors)))
            mce_pair.append(mean_corruption_error(corruption_errors(t.errors, base.errors)))
            rmce_pair.append(mean_corruption_error(relative_corruption_errors(
                t.errors, t.clean_error, base.errors, base.clean_error)))
            per_seed.append(f"| {arm}-s{seed} | {clean[-1]:.4f} | {mean_acc[-1]:.4f} | "
                            f"{mce_ref[-1]:.4f} | {mce_pair[-1]:.4f} |")
        label = "IR-Net" if alpha == 0 else f"IR-Net + LCR (alpha {alpha:g})"
        lines.append(f"| {label} | {_stats(clean)} | {_stats(mean_acc)} | {_stats(mce_ref)} | "
                     f"{_stats(mce_pair)} | {_stats(rmce_pair)} |")
        if alpha != 0:
            last = f"{arm}-s{seeds[-1]}"
            write_results(out / last / "robustness", tables[last], tables[f"irnet-s{seeds[-1]}"])
    lcr_hist = {arm_name(x): read_history(runs[(arm_name(x), seeds[0])]) for x in arms if x != 0}
    extra = ["", "LCR term at the last epoch (seed %d): unscaled L_LCR train / val, gammas:" % seeds[0], ""]
    for arm, hist in lcr_hist.items():
        row = hist[-1]
        gammas = [f"{row[k]:.3f}" for k in sorted(row) if k.startswith("lcr_gamma")]
        extra.append(f"- {arm}: train_lcr {row['train_lcr']:.3g}, val_lcr {row['val_lcr']:.3g}, "
                     f"train_ce {row['train_ce']:.4f}, gammas {gammas}")
    return "\n".join(lines + per_seed + extra) + "\n"


if __name__ == "__main__":
    sys.exit(main())

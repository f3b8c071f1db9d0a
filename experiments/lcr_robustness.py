"""LCR-BNN reproduction, robustness stage: accuracy under corruptions and the mCE table.

The runs are trained by the sweep spec (the protocol lives there):

    minibnn sweep experiments/lcr_reproduction.toml          # teacher + IR-Net / LCR students
    minibnn report runs/lcr-repro                            # clean accuracy, paired vs IR-Net
    python experiments/lcr_robustness.py --out runs/lcr-repro  # this script: the mCE table

Every corruption of minibnn.data.corruptions at severities 1-5 on the first --robustness-limit
validation images, all models (best checkpoints) on the same corrupted images. mCE is reported
two ways: against a fixed reference model (the teacher, as ImageNet-C uses AlexNet) and paired
against the IR-Net run of the same seed. Writes OUT/results.md and caches the accuracies in
OUT/robustness_tables.json. The runs must have finished (`minibnn sweep` first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from minibnn.data import load_dataset
from minibnn.evaluate import (RobustnessTable, corruption_accuracy, corruption_errors,
                              mean_corruption_error, relative_corruption_errors, write_results)
from minibnn.sweeps.sweep import read_marker
from minibnn.train import load_model, read_history


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/lcr-repro", help="output folder of the sweep")
    p.add_argument("--robustness-limit", type=int, default=1000)
    p.add_argument("--corruptions", nargs="+", default=None)
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def arm_name(alpha: float) -> str:
    return "irnet" if alpha == 0 else f"lcr-a{alpha:g}"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    marker = read_marker(out)
    spec = marker["spec"]
    base = spec["base"]
    arms = [0.0] + [float(o["method_options"]["alpha"]) for name, o in spec["arms"].items()
                    if name != "irnet"]
    runs = {(r["arm"], r["axes"]["seed"]): out / r["name"] for r in marker["runs"] if not r["shared"]}
    unfinished = [p.name for p in runs.values() if not (p / "history.json").exists()]
    if unfinished:
        raise SystemExit(f"runs not trained yet: {', '.join(unfinished)}; run 'minibnn sweep "
                         f"{marker['spec_file']} --out {out}' first")
    a = argparse.Namespace(**vars(args), dataset=base.get("dataset", "mnist-t10k"),
                           model=base["model"], width=base["width"], epochs=base["epochs"],
                           batch_size=base["batch_size"], lr=base["lr"],
                           limit_train=base.get("limit_train", 0),
                           variant=spec["arms"]["lcr-a8"]["method_options"]["variant"],
                           reference=spec["arms"]["lcr-a8"]["method_options"]["reference"])
    teacher = out / "teacher"
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
    if len(v) == 1:
        return f"{v[0]:.4f} (n = 1)"
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"


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

"""CMIM reproduction on the bundled MNIST split: CE baseline vs +CMIM official vs +CMIM paper.

    python experiments/cmim_reproduction.py                      # 3 seeds, the protocol of docs/cmim.md
    python experiments/cmim_reproduction.py --seeds 0 --epochs 1 --limit-train 1000   # a quick look
    python experiments/cmim_reproduction.py --alpha 0.32 --arms official paper         # weight ablation

Defaults: the first 4000 training images and 4 epochs per run (the CPU budget of a shared
2-core machine). Same architecture and binarization for every arm: the small binary CNN with
IR-Net's quantizers (--input-quantizer ede --weight-quantizer irnet) and CMIM's EDE schedule
(t from 1e-2 to 10).
The official arm learns from one real-valued teacher (the CNN's real twin, trained first with
`minibnn train --real`, seed 0); the paper arm needs none. Each run is `run_training` on a
TrainConfig; the equivalent `minibnn train` commands are printed. The script prints a markdown
table of final validation accuracy (mean +- sample std over seeds, and the best epoch's) and
writes it to OUT/cmim_reproduction[-alphaA].md. Finished runs in OUT are reused, unfinished ones resumed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from minibnn.train import TrainConfig, load_state, resume_training, run_training

ARMS = {
    "ce": {"method": "ce"},
    "official": {"method": "cmim", "method_options": {"form": "official"}},
    "paper": {"method": "cmim", "method_options": {"form": "paper"}},
}
LABELS = {"ce": "CE baseline", "official": "+ CMIM official (CRD NCE, teacher)",
          "paper": "+ CMIM paper (InfoNCE binary vs latent)"}


def _finished(folder: Path, epochs: int) -> bool:
    return (folder / "last.npz").exists() and load_state(folder / "last.npz")["epoch"] >= epochs


def train(folder: Path, config: TrainConfig) -> list:
    """Train (or resume, or reuse) one run; returns its history."""
    if not _finished(folder, config.epochs):
        if (folder / "last.npz").exists():
            resume_training(folder, quiet=True)
        else:
            run_training(config, folder, quiet=True)
    return json.loads((folder / "history.json").read_text())


def command(config: TrainConfig, out: Path) -> str:
    """The `minibnn train` command line equivalent to `config`."""
    d, parts = TrainConfig(), ["minibnn train"]
    for key in ("model", "real", "width", "input_quantizer", "weight_quantizer", "epochs",
                "ede_t_min", "limit_train", "method", "teacher", "seed"):
        value = getattr(config, key)
        if value != getattr(d, key):
            flag = "--" + key.replace("_", "-")
            parts.append(flag if value is True else f"{flag} {value}")
    for key, value in config.method_options.items():
        parts.append(f"--cmim-{key.replace('_', '-')} {value}")
    return " ".join(parts + ["--out", str(out)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/cmim_reproduction")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--limit-train", type=int, default=4000,
                        help="first N training images (0: all 8000; default 4000 keeps it CPU-cheap)")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=None,
                        help="weight of the CMIM term for both forms (default: the recipe's, 3.2)")
    args = parser.parse_args()
    out = Path(args.out)
    common = dict(model=args.model, width=args.width, limit_train=args.limit_train)

    teacher_dir = out / "teacher-real-s0"
    teacher = TrainConfig(real=True, epochs=args.teacher_epochs, seed=0, **common)
    print("#", command(teacher, teacher_dir), flush=True)
    t_hist = train(teacher_dir, teacher)
    print(f"teacher val acc {100 * t_hist[-1]['val_accuracy']:.2f}", flush=True)

    results = {arm: [] for arm in args.arms}
    for seed in args.seeds:                      # seed-major, so partial results stay balanced
        for arm in args.arms:
            options = dict(ARMS[arm])
            suffix = ""
            if args.alpha is not None and arm != "ce":
                options["method_options"] = {**options["method_options"], "alpha": args.alpha}
                suffix = f"-a{args.alpha:g}"
            config = TrainConfig(input_quantizer="ede", weight_quantizer="irnet", ede_t_min=1e-2,
                                 epochs=args.epochs, seed=seed,
                                 teacher=str(teacher_dir) if arm == "official" else None,
                                 **common, **options)
            folder = out / f"{arm}{suffix}-s{seed}"
            print("#", command(config, folder), flush=True)
            history = train(folder, config)
            results[arm].append({"final": 100 * history[-1]["val_accuracy"],
                                 "best": 100 * max(r["val_accuracy"] for r in history),
                                 "sec": statistics.mean(r["seconds"] for r in history)})
            print(f"{arm} seed {seed}: val acc {results[arm][-1]['final']:.2f}", flush=True)

    def cell(values):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} +- {std:.2f}"

    lines = ["| arm | final val acc (%) | best-epoch val acc (%) | s/epoch | per seed (final) |",
             "|---|---|---|---|---|"]
    for arm, runs in results.items():
        label = LABELS[arm] + (f", alpha {args.alpha:g}" if args.alpha is not None and arm != "ce" else "")
        lines.append(f"| {label} | {cell([r['final'] for r in runs])} | "
                     f"{cell([r['best'] for r in runs])} | "
                     f"{statistics.mean(r['sec'] for r in runs):.0f} | "
                     + ", ".join(f"{r['final']:.2f}" for r in runs) + " |")
    note = (f"\n\n{args.model} (width {args.width:g}), ede/irnet, EDE t 1e-2 -> 10, "
            f"{args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}, mnist-t10k "
            f"({'first ' + str(args.limit_train) if args.limit_train else '8000'} train / 2000 val); "
            f"teacher: real twin, {args.teacher_epochs} epochs, val acc "
            f"{100 * t_hist[-1]['val_accuracy']:.2f}. std = sample std over seeds.\n")
    name = "cmim_reproduction" + (f"-alpha{args.alpha:g}" if args.alpha is not None else "")
    (out / f"{name}.md").write_text("\n".join(lines) + note)
    print("\n".join(lines) + note)


if __name__ == "__main__":
    main()

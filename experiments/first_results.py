"""First results: binary networks and their real-valued twins on the bundled MNIST split.

    python experiments/first_results.py                 # 3 seeds x (mlp, cnn, vgg_small) x (binary, real)
    python experiments/first_results.py --seeds 0 --models cnn --epochs 2   # a quick look

Every run is `minibnn train` with its defaults except the model (and width for VGG-small); the
script prints a markdown table of validation accuracy (mean +- std over seeds) and seconds per
epoch, and writes it to OUT/first_results.md. Runs already finished in OUT are reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from minibnn.allocator import keep_freed_memory
from minibnn.train import TrainConfig, load_state, resume_training, run_training

# Per-model options. The small CNN gets 4 epochs instead of `minibnn train`'s default 8, and
# VGG-small is narrowed to a quarter of its channels, so that the 18 runs take about half an
# hour on an idle two-core machine (at width 0.25 an epoch of VGG-small costs about three of the
# small CNN's).
MODELS = {"mlp": {}, "cnn": {"epochs": 4}, "vgg_small": {"width": 0.25}}


def one_run(out: Path, model: str, real: bool, seed: int, epochs: int) -> dict:
    epochs = MODELS[model].get("epochs", epochs)
    folder = out / f"{model}-{'real' if real else 'binary'}-s{seed}"
    options = {**MODELS[model], "epochs": epochs}
    config = TrainConfig(model=model, real=real, seed=seed, **options)
    if (folder / "last.npz").exists():
        state = load_state(folder / "last.npz")
        if state["config"] != config.to_dict():            # another protocol: start over
            shutil.rmtree(folder)
        elif state["epoch"] < epochs:                       # interrupted: continue exactly
            resume_training(folder, quiet=True)
    elif folder.exists():
        shutil.rmtree(folder)                               # started but no epoch finished
    if not (folder / "last.npz").exists():
        run_training(config, folder, quiet=True)
    history = json.loads((folder / "history.json").read_text())
    return {"acc": history[-1]["val_accuracy"],
            "sec": statistics.mean(r["seconds"] for r in history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/first_results")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    args = parser.parse_args()
    keep_freed_memory()                                     # as `minibnn train` does
    out = Path(args.out)
    lines = ["| model | binary: val acc | s/epoch | real twin: val acc | s/epoch |",
             "|---|---|---|---|---|"]
    for model in args.models:
        cells = []
        for real in (False, True):
            runs = [one_run(out, model, real, s, args.epochs) for s in args.seeds]
            accs = [100 * r["acc"] for r in runs]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells += [f"{statistics.mean(accs):.2f} +- {std:.2f}",
                      f"{statistics.mean(r['sec'] for r in runs):.1f}"]
            print(model, "real" if real else "binary", [f"{a:.2f}" for a in accs], flush=True)
        width = MODELS[model].get("width", 1.0)
        name = model if width == 1.0 else f"{model} (width {width})"
        if "epochs" in MODELS[model]:
            name += f", {MODELS[model]['epochs']} epochs"
        if "limit_train" in MODELS[model]:
            name += f", first {MODELS[model]['limit_train']} train images"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    note = (f"\n\n{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), {args.epochs} epochs, "
            "mnist-t10k (8k train / 2k validation), `minibnn train` defaults otherwise.\n")
    (out / "first_results.md").write_text(table + note)
    print(table + note)


if __name__ == "__main__":
    main()

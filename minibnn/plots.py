"""All of minibnn's figures. matplotlib is imported here only, lazily.

Where a figure goes (`save_figure`, used by every plot_* function and by the tutorials):
- it is written as a PNG to the path given; tutorials take that path from `figure_dir()`, which
  is `$MINIBNN_FIGURES` when set (the test suite sets it to a temporary folder, so tests never
  write into the source tree), else `figures/` beside the running script (or the working folder);
- inside a Jupyter kernel it is also shown inline (an image/png output of the cell).
Outside a kernel pyplot runs on the Agg backend, so no window ever opens.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .npzio import atomic_write

__all__ = ["plot_history", "plot_curves", "save_figure", "figure_dir", "in_notebook", "pyplot"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel app), where figures display inline."""
    ipython = sys.modules.get("IPython")          # never imported here: only if already running
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def pyplot():
    """matplotlib.pyplot; on the Agg backend unless a Jupyter kernel chose its own (inline)."""
    import matplotlib

    if not in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def figure_dir() -> Path:
    """$MINIBNN_FIGURES if set, else figures/ beside the running script, else ./figures."""
    if os.environ.get("MINIBNN_FIGURES"):
        return Path(os.environ["MINIBNN_FIGURES"])
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script and not in_notebook():
        return Path(script).resolve().parent / "figures"
    return Path.cwd() / "figures"


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG to `path` atomically (folders created; a temporary file, then a
    rename: never a half-written image), show it inline in a Jupyter kernel, close it, and
    return the path."""
    path = Path(path)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=path.suffix[1:].lower() or "png", dpi=110, bbox_inches="tight")
        atomic_write(path, lambda f: f.write(buffer.getvalue()))
        if in_notebook():
            from IPython.display import Image, display   # optional: present whenever a kernel runs

            display(Image(data=buffer.getvalue(), format="png"))
    finally:
        pyplot().close(fig)
    return path


def _series(history: list[dict], key: str) -> tuple[list, list]:
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_history(history: list[dict], out: str | Path, title: str = "") -> Path:
    """Loss terms, accuracy, learning rate (and EDE t) and flip ratio against the epoch."""
    if not history:
        raise ValueError("the history is empty: no epoch has finished yet")
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    keys = list(dict.fromkeys(k for row in history for k in row))
    loss_keys = [k for k in keys if k.startswith(("train_", "val_")) and not k.endswith("accuracy")]
    for key in loss_keys:
        axes[0, 0].plot(*_series(history, key), marker=".", label=key)
    axes[0, 0].set(title="loss terms", xlabel="epoch", yscale="log" if _positive(history, loss_keys) else "linear")
    for key in ("train_accuracy", "val_accuracy"):
        axes[0, 1].plot(*_series(history, key), marker=".", label=key)
    axes[0, 1].set(title="accuracy", xlabel="epoch")
    axes[1, 0].plot(*_series(history, "lr"), marker=".", label="lr")
    if "ede_t" in keys:
        twin = axes[1, 0].twinx()
        twin.plot(*_series(history, "ede_t"), color="tab:red", marker=".", label="EDE t")
        twin.set(yscale="log", ylabel="EDE t")
        twin.legend(loc="center right", fontsize=8)
    axes[1, 0].set(title="schedules", xlabel="epoch", ylabel="learning rate")
    if "flip_ratio" in keys:
        axes[1, 1].plot(*_series(history, "flip_ratio"), marker=".", label="flip ratio")
        axes[1, 1].set(yscale="log")
    axes[1, 1].set(title="binary weights whose sign changed per epoch", xlabel="epoch")
    for ax in axes.ravel():
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)


def _positive(history: list[dict], keys: list[str]) -> bool:
    return all(row.get(k) is None or row[k] > 0 for row in history for k in keys)


def plot_curves(curves: dict[str, Sequence[float]], out: str | Path, title: str = "",
                xlabel: str = "epoch", ylabel: str = "") -> Path:
    """One line per named series (e.g. a binary net and its real twin), against 1, 2, 3, ..."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out)


# ------------------------------------------------------------------ LCR-BNN and robustness
__all__ += ["plot_lcr_estimates", "plot_robustness"]


def plot_lcr_estimates(history: list[dict], out: str | Path, title: str = "") -> Path:
    """LCR-BNN: per pair of stages, the binary and reference spectral-norm estimates per epoch
    (history keys lcr_pair{i}_sigma_bin / _sigma_ref, dashed: lcr_val_...), and the gammas."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    pairs = sorted({int(k[len("lcr_pair"):].split("_")[0]) for k in keys
                    if k.startswith("lcr_pair") and k.endswith("_sigma_bin")})
    if not pairs:
        raise ValueError("the history has no LCR estimates (lcr_pair*_sigma_bin): "
                         "was it trained with --method lcr?")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(pairs) + 1, figsize=(3.6 * (len(pairs) + 1), 3.4))
    for ax, i in zip(axes, pairs):
        for side, color, label in (("bin", "tab:blue", "binary"), ("ref", "tab:orange", "reference")):
            ax.plot(*_series(history, f"lcr_pair{i}_sigma_{side}"), color=color, marker=".",
                    label=f"{label} (train)")
            if f"lcr_val_pair{i}_sigma_{side}" in keys:
                ax.plot(*_series(history, f"lcr_val_pair{i}_sigma_{side}"), color=color,
                        linestyle="--", marker="x", label=f"{label} (val)")
        ax.set(title=f"stages {i}-{i + 1}", xlabel="epoch", ylabel="mean sigma estimate")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    gammas = sorted(k for k in keys if k.startswith("lcr_gamma"))
    for key in gammas:
        axes[-1].plot(*_series(history, key), marker=".", label=key[len("lcr_"):])
    axes[-1].set(title="learnable gamma per stage", xlabel="epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    axes[-1].grid(alpha=0.3)
    if gammas:
        axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_robustness(table, out: str | Path, baseline=None, title: str = "") -> Path:
    """Heatmap of accuracy (%) per corruption (rows) and severity (columns), with the clean
    accuracy in the title; with a baseline, a second panel of the difference model - baseline.

    `table` and `baseline` are minibnn.evaluate.RobustnessTable objects (name,
    corruptions, severities, clean_accuracy, accuracy (C, S))."""
    plt = pyplot()
    panels = [(table.name, 100 * np.asarray(table.accuracy), "viridis", (0, 100))]
    if baseline is not None:
        diff = 100 * (np.asarray(table.accuracy) - np.asarray(baseline.accuracy))
        lim = max(float(np.abs(diff).max()), 1.0)
        panels.append((f"{table.name} - {baseline.name}", diff, "RdBu", (-lim, lim)))
    rows = len(table.corruptions)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 0.38 * rows + 1.6),
                             squeeze=False)
    for ax, (name, values, cmap, (lo, hi)) in zip(axes[0], panels):
        im = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(table.severities)), [str(s) for s in table.severities])
        ax.set_yticks(range(rows), list(table.corruptions))
        ax.set(xlabel="severity", title=name)
        for (r, c), v in np.ndenumerate(values):
            dark = v < 60 if cmap == "viridis" else abs(v) > 0.6 * hi
            ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                     label="accuracy (%)" if cmap == "viridis" else "difference (points)")
    clean = f"clean accuracy {100 * table.clean_accuracy:.1f}%"
    if baseline is not None:
        clean += f" (baseline {100 * baseline.clean_accuracy:.1f}%)"
    fig.suptitle((title + "\n" if title else "") + clean)
    fig.tight_layout()
    return save_figure(fig, out)


__all__ += ["plot_distributions", "plot_bars"]


def plot_distributions(distributions: dict[str, Sequence[float]], out: str | Path,
                       title: str = "", xlabel: str = "embedding dimension") -> Path:
    """Overlaid step plots of probability vectors (e.g. S2-BNN's teacher and student softmaxes
    over the embedding dimensions), sorted by the first vector so the shapes can be compared."""
    plt = pyplot()
    names = list(distributions)
    order = np.argsort(-np.asarray(distributions[names[0]]))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, name in enumerate(names):
        p = np.asarray(distributions[name])[order]
        ax.step(np.arange(len(p)), p, where="mid", lw=2.2 if i == 0 else 1.4,
                ls="-" if i == 0 else "--", label=name)
    ax.set_xlabel(xlabel + " (sorted by the first curve)")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_bars(values: dict[str, Sequence[float]], out: str | Path, title: str = "",
              ylabel: str = "accuracy (%)") -> Path:
    """Horizontal bars of the mean per label, with the standard deviation as an error bar when a
    label has several values (seeds) and each value as a dot."""
    plt = pyplot()
    labels = list(values)
    means = [float(np.mean(values[k])) for k in labels]
    errs = [float(np.std(values[k], ddof=1)) if len(values[k]) > 1 else 0.0 for k in labels]
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(labels) + 1.2))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, means, xerr=errs, color="#7aa6c2", capsize=4)
    for yi, k in zip(y, labels):
        ax.plot(values[k], [yi] * len(values[k]), "k.", ms=5)
        ax.text(float(np.mean(values[k])), yi, f" {np.mean(values[k]):.1f}", va="center",
                ha="left", fontsize=9)
    ax.set_yticks(y, labels)
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, out)


# ------------------------------------------------------------------------------------ CMIM
__all__ += ["plot_cmim_runs"]

_CMIM_TERMS = ("train_cmim_bnn_anchor", "train_cmim_fp_anchor", "train_infonce")


def plot_cmim_runs(histories: dict[str, list], out: str | Path, title: str = "") -> Path:
    """CMIM runs side by side: validation accuracy per run (left) and each run's contrastive
    terms (right: cmim_bnn_anchor / cmim_fp_anchor of the official form, infonce of the paper
    form), against the epoch."""
    plt = pyplot()
    fig, (acc, terms) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        line, = acc.plot(*_series(history, "val_accuracy"), marker=".", label=name)
        for key, style in zip(_CMIM_TERMS, ("-", "--", ":")):
            if any(key in row for row in history):
                terms.plot(*_series(history, key), linestyle=style, marker=".",
                           color=line.get_color(), label=f"{name}: {key[len('train_'):]}")
    acc.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
    terms.set(title="contrastive terms (training mean)", xlabel="epoch", ylabel="loss")
    from matplotlib.ticker import MaxNLocator

    for ax in (acc, terms):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)


# ------------------------------------------------------------------------------- image grids
__all__ += ["plot_image_grid"]


def plot_image_grid(images, out: str | Path, row_labels: Sequence[str] = (),
                    col_labels: Sequence[str] = (), title: str = "") -> Path:
    """A grid of images (R, C, H, W) or (R, C, 3, H, W) in [0, 1] (e.g. one image per
    corruption and severity), with optional row and column labels."""
    images = np.asarray(images)
    if images.ndim not in (4, 5):
        raise ValueError(f"plot_image_grid: expected images (R, C, H, W) or (R, C, 3, H, W), "
                         f"got shape {images.shape}")
    rows, cols = images.shape[:2]
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 1.2, 1.1 * rows + 0.6), squeeze=False)
    for (r, c), ax in np.ndenumerate(axes):
        img = images[r, c]
        ax.imshow(np.moveaxis(img, 0, -1) if img.ndim == 3 else img, cmap="gray", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[])
        if c == 0 and r < len(row_labels):
            ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
        if r == 0 and c < len(col_labels):
            ax.set_title(col_labels[c], fontsize=8)
    fig.suptitle(title)
# ------------------------------------------------------------------------------------ sweeps
__all__ += ["plot_seed_bands"]


def plot_seed_bands(curves: dict[str, list], out: str | Path, title: str = "",
                    ylabel: str = "validation accuracy") -> Path:
    """One line per arm, the mean over its seeds against the epoch, with a band from the lowest
    to the highest seed (no band for one seed). curves: arm -> list of per-seed value lists;
    seeds are cut to the shortest (an unfinished run) so every point averages the same seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, per_seed in curves.items():
        length = min(len(v) for v in per_seed)
        if length == 0:
            continue
        values = np.array([v[:length] for v in per_seed], float)       # (seeds, epochs)
        epochs = np.arange(1, length + 1)
        line, = ax.plot(epochs, values.mean(axis=0), marker=".",
                        label=f"{name} (n = {len(per_seed)})")
        if len(per_seed) > 1:
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0),
                            color=line.get_color(), alpha=0.2)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)

"""All of minibnn's figures. matplotlib is imported here only, lazily, with the Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["plot_history", "plot_curves", "save_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _series(history: list[dict], key: str) -> tuple[list, list]:
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_history(history: list[dict], out: str | Path, title: str = "") -> Path:
    """Loss terms, accuracy, learning rate (and EDE t) and flip ratio against the epoch."""
    if not history:
        raise ValueError("the history is empty: no epoch has finished yet")
    plt = _pyplot()
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out)

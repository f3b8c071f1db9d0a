"""Corruption robustness: accuracy under seeded corruptions, corruption errors and the mCE.

Every corruption c of `minibnn.data.corruptions` is applied at each severity s to the validation
images in [0, 1] (before normalisation); every model compared is evaluated on the very same
corrupted images. With E_{s,c} = 1 - accuracy and a baseline model's E^base_{s,c}, the
ImageNet-C corruption errors are

    CE_c  = sum_s E_{s,c} / sum_s E^base_{s,c}                       mCE = mean_c CE_c
    rCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)
                                                                      relative mCE = mean_c rCE_c

Shapes: accuracies and errors are (C, S) arrays, corruptions by severities; CE and rCE are (C,).
A corruption on which the baseline makes no error (or, for rCE, is no worse than clean) has an
undefined CE; it is NaN and left out of the mean, and `format_table` says so.
Reference: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019, arXiv:1903.12261. Difference from the paper: there
the errors are normalised by AlexNet's on ImageNet-C; here by any baseline model evaluated on
the same corrupted copies (e.g. the real-valued twin, or the method without its regulariser).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import transforms
from ..data.corruptions import CORRUPTIONS, corrupt
from ..npzio import atomic_write_text
from ..plots import plot_robustness
from .accuracy import images_accuracy

__all__ = ["RobustnessTable", "corruption_accuracy", "corruption_errors",
           "relative_corruption_errors", "mean_corruption_error", "summarize", "format_table",
           "write_results", "CHUNK"]

CHUNK = 1000          # images corrupted per generator; fixed so results never depend on batching


@dataclass
class RobustnessTable:
    """Accuracy of one model per corruption (rows) and severity (columns)."""

    name: str
    corruptions: list
    severities: list
    clean_accuracy: float
    accuracy: np.ndarray                       # (len(corruptions), len(severities))
    num_images: int = 0

    @property
    def errors(self) -> np.ndarray:
        return 1.0 - self.accuracy

    @property
    def clean_error(self) -> float:
        return 1.0 - self.clean_accuracy

    def to_dict(self) -> dict:
        return {"name": self.name, "corruptions": list(self.corruptions),
                "severities": [int(s) for s in self.severities],
                "clean_accuracy": float(self.clean_accuracy),
                "accuracy": self.accuracy.tolist(), "num_images": int(self.num_images)}

    @classmethod
    def from_dict(cls, data: dict) -> "RobustnessTable":
        """The table `to_dict` wrote (e.g. read back from JSON)."""
        return cls(data["name"], data["corruptions"], data["severities"],
                   data["clean_accuracy"], np.array(data["accuracy"], float),
                   data["num_images"])


# ---------------------------------------------------------------------------- the math
def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def corruption_errors(errors: np.ndarray, base_errors: np.ndarray) -> np.ndarray:
    """CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}; errors (C, S) -> (C,), NaN where undefined."""
    errors, base_errors = np.asarray(errors, float), np.asarray(base_errors, float)
    if errors.shape != base_errors.shape or errors.ndim != 2:
        raise ValueError(f"errors (corruptions, severities) must match the baseline's, got "
                         f"{errors.shape} and {base_errors.shape}")
    return _ratio(errors.sum(axis=1), base_errors.sum(axis=1))


def relative_corruption_errors(errors: np.ndarray, clean_error: float, base_errors: np.ndarray,
                               base_clean_error: float) -> np.ndarray:
    """rCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean), (C,)."""
    errors, base_errors = np.asarray(errors, float), np.asarray(base_errors, float)
    if errors.shape != base_errors.shape or errors.ndim != 2:
        raise ValueError(f"errors (corruptions, severities) must match the baseline's, got "
                         f"{errors.shape} and {base_errors.shape}")
    return _ratio((errors - clean_error).sum(axis=1), (base_errors - base_clean_error).sum(axis=1))


def mean_corruption_error(ce: np.ndarray) -> float:
    """mCE = mean over the corruptions whose CE is defined (NaN if none is)."""
    ce = np.asarray(ce, float)
    return float(np.mean(ce[np.isfinite(ce)])) if np.isfinite(ce).any() else float("nan")


# ------------------------------------------------------------------------ evaluation
def corruption_accuracy(models: dict, dataset, corruptions: Sequence[str] | None = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5), seed: int = 0,
                        limit: int = 0, batch_size: int = 500, progress=None) -> dict:
    """{name: RobustnessTable} for every model in `models` ({name: model}), all evaluated on
    the same corrupted copies of `dataset` (uint8 (N, C, H, W) images, its mean/std).

    The images of corruption c, severity s, chunk j (CHUNK images) come from the generator
    default_rng([seed, index of c in CORRUPTIONS, s, j]), so they do not depend on which other
    corruptions are chosen, on the batch size, or on the models. limit > 0: first `limit` images.
    """
    names = list(CORRUPTIONS) if not corruptions else list(corruptions)
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; valid names: {', '.join(CORRUPTIONS)}")
    bad = [s for s in severities if s not in (1, 2, 3, 4, 5)]
    if bad or not severities:
        raise ValueError(f"severities must be integers in 1..5, got {list(severities)}")
    x, y = dataset.x, dataset.y
    if limit:
        x, y = x[:limit], y[:limit]
    mean, std = np.array(dataset.mean, np.float32), np.array(dataset.std, np.float32)
    images = transforms.to_float(x)                                   # (N, C, H, W) in [0, 1]
    for model in models.values():
        model.eval()
    clean = {n: images_accuracy(m, images, y, mean, std, batch_size) for n, m in models.items()}
    acc = {n: np.zeros((len(names), len(severities))) for n in models}
    index = {c: i for i, c in enumerate(CORRUPTIONS)}
    for ci, name in enumerate(names):
        for si, s in enumerate(severities):
            bad_images = np.concatenate([
                corrupt(images[j:j + CHUNK], name, int(s),
                        np.random.default_rng([seed, index[name], int(s), j // CHUNK]))
                for j in range(0, len(images), CHUNK)])
            for n, m in models.items():
                acc[n][ci, si] = images_accuracy(m, bad_images, y, mean, std, batch_size)
            if progress is not None:
                progress(name, s, {n: acc[n][ci, si] for n in models})
    return {n: RobustnessTable(n, names, [int(s) for s in severities], clean[n], acc[n], len(y))
            for n in models}


# ------------------------------------------------------------------------------ output
def summarize(table: RobustnessTable, baseline: RobustnessTable | None) -> dict:
    """mean error, and with a baseline CE/rCE per corruption, mCE and relative mCE."""
    out = {"clean_error": table.clean_error, "mean_corruption_error_unnormalised":
           float(table.errors.mean())}
    if baseline is not None:
        ce = corruption_errors(table.errors, baseline.errors)
        rce = relative_corruption_errors(table.errors, table.clean_error, baseline.errors,
                                         baseline.clean_error)
        out.update(ce=ce.tolist(), relative_ce=rce.tolist(), mce=mean_corruption_error(ce),
                   relative_mce=mean_corruption_error(rce),
                   undefined_ce=[c for c, v in zip(table.corruptions, ce) if not np.isfinite(v)],
                   undefined_relative_ce=[c for c, v in zip(table.corruptions, rce)
                                          if not np.isfinite(v)])
    return out


def format_table(table: RobustnessTable, baseline: RobustnessTable | None = None) -> str:
    """Accuracy (%) per corruption and severity, the row mean, and CE/rCE against the baseline."""
    summary = summarize(table, baseline)
    head = f"{'corruption':16s}" + "".join(f"{'s' + str(s):>7s}" for s in table.severities)
    head += f"{'mean':>7s}" + (f"{'base':>7s}{'CE':>7s}{'rCE':>7s}" if baseline else "")
    lines = [f"{table.name}: accuracy (%) on {table.num_images} validation images", head]
    for i, c in enumerate(table.corruptions):
        row = f"{c:16s}" + "".join(f"{100 * a:7.1f}" for a in table.accuracy[i])
        row += f"{100 * table.accuracy[i].mean():7.1f}"
        if baseline is not None:
            row += (f"{100 * baseline.accuracy[i].mean():7.1f}{summary['ce'][i]:7.3f}"
                    f"{summary['relative_ce'][i]:7.3f}")
        lines.append(row)
    lines.append(f"{'clean':16s}{100 * table.clean_accuracy:7.1f}"
                 + (f"   baseline {100 * baseline.clean_accuracy:.1f}" if baseline else ""))
    if baseline is not None:
        lines.append(f"mCE {summary['mce']:.4f}   relative mCE {summary['relative_mce']:.4f}"
                     f"   (vs {baseline.name}; 1 = as robust as the baseline, lower is better)")
        why = {"undefined_ce": "the baseline made no error there",
               "undefined_relative_ce": "the baseline was no worse there than on clean images"}
        for key, reason in why.items():
            if summary[key]:
                lines.append(f"note: {key.replace('_', ' ')} for {', '.join(summary[key])} "
                             f"({reason}); left out of the mean")
    else:
        lines.append(f"mean error over corruptions {summary['mean_corruption_error_unnormalised']:.4f}"
                     " (give --baseline CKPT for the mCE)")
    return "\n".join(lines)


def write_results(out_dir: str | Path, table: RobustnessTable,
                  baseline: RobustnessTable | None = None) -> dict:
    """robustness.json, robustness.csv (long format) and robustness.png in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"model": table.to_dict(), "summary": summarize(table, baseline)}
    if baseline is not None:
        data["baseline"] = baseline.to_dict()
    atomic_write_text(out_dir / "robustness.json", json.dumps(data, indent=2) + "\n")
    rows = ["model,corruption,severity,accuracy,error"]
    for t in [table] + ([baseline] if baseline is not None else []):
        rows.append(f"{t.name},clean,0,{t.clean_accuracy:.6f},{t.clean_error:.6f}")
        for i, c in enumerate(t.corruptions):
            for j, s in enumerate(t.severities):
                rows.append(f"{t.name},{c},{s},{t.accuracy[i, j]:.6f},{t.errors[i, j]:.6f}")
    atomic_write_text(out_dir / "robustness.csv", "\n".join(rows) + "\n")
    png = plot_robustness(table, out_dir / "robustness.png", baseline=baseline)
    return {"json": out_dir / "robustness.json", "csv": out_dir / "robustness.csv", "png": png}

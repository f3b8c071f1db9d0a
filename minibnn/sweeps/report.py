"""The table of a sweep: every arm over its seeds, and paired differences against a baseline.

A row is an arm at one value of the non-seed axes; its replicates are the seeds. Per row:
n, final validation accuracy (last epoch) and best-epoch accuracy as mean +- sample std over
seeds (n = 1 prints the single value and "n = 1", never a made-up +- 0.00), linear-evaluation
accuracy when the runs have one, and seconds per epoch (mean over all epochs and seeds; a wall
time, only comparable between runs that shared the machine alike).

Paired difference against the baseline arm: every arm shares the baseline's seeds, so
d_i = metric(arm, seed i) - metric(baseline, seed i), and the 95 % interval is
mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n) (Student t, scipy.stats.t), over the seeds both
have finished. With n = 1 there is no interval and the cell says so. The metric is linear
evaluation when present, else the final validation accuracy.

Runs with a `robustness` key add a second table (robustness.py): clean and mean corrupted
accuracy on the evaluated images, mCE against the reference run, mCE paired against the
baseline arm's run of the same seed (mean and 95 % t-interval over seeds) and the paired
relative mCE, then mean accuracy per corruption; per-run values go to robustness.csv.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from ..plots import plot_seed_bands
from ..checkpoint import atomic_write_text
from .robustness import load_table, run_measures
from .run import LINCLS_FILE
from .sweep import read_marker

__all__ = ["collect", "summarize", "paired_difference", "render_markdown", "render_csv",
           "write_report", "mean_std", "mean_interval", "render_robustness",
           "robustness_csv"]


def _untrained(run_dir: Path) -> dict | None:
    """An untrained run: its initial network's own validation score and linear evaluation."""
    lincls = run_dir / LINCLS_FILE
    kept = json.loads(lincls.read_text()) if lincls.is_file() else {}
    if not kept.get("untrained"):
        return None
    own = 100 * kept["own_val_accuracy"]
    return {"history": [], "final": own, "best": own, "sec": math.nan, "epochs": 0,
            "linear": 100 * kept["val_accuracy"], "robustness": None}


def _load(run_dir: Path) -> dict | None:
    path = run_dir / "history.json"
    if not path.is_file():
        return _untrained(run_dir)
    history = json.loads(path.read_text())
    if not history:
        return None
    lincls = run_dir / LINCLS_FILE
    return {"history": history,
            "final": 100 * history[-1]["val_accuracy"],
            "best": 100 * max(r["val_accuracy"] for r in history),
            "sec": float(np.mean([r["seconds"] for r in history])),
            "epochs": len(history),
            "linear": (100 * json.loads(lincls.read_text())["val_accuracy"]
                       if lincls.is_file() else None),
            "robustness": load_table(run_dir)}


def _label(run: dict) -> str:
    others = [f"{k.split('.')[-1]}={v}" for k, v in run["axes"].items() if k != "seed"]
    return run["arm"] + (f" ({', '.join(others)})" if others else "")


def collect(sweep_dir: str | Path) -> dict:
    """{row label: {"arm", "axes" (non-seed), "runs": {seed: measurements}}} for finished and
    partly finished runs, in the order of the spec; plus "_missing": names without a history."""
    sweep_dir = Path(sweep_dir)
    marker = read_marker(sweep_dir)
    rows: dict = {}
    missing = []
    tables = {}
    for run in marker["runs"]:
        data = _load(sweep_dir / run["name"])
        if data is None:
            missing.append(run["name"])
            continue
        data["name"] = run["name"]
        data["reference"] = (run.get("robustness") or {}).get("reference")
        tables[run["name"]] = data["robustness"]
        label = _label(run)
        row = rows.setdefault(label, {"arm": run["arm"], "shared": run["shared"], "runs": {},
                                      "axes": {k: v for k, v in run["axes"].items() if k != "seed"}})
        row["runs"][run["axes"].get("seed", len(row["runs"]))] = data
    return {"marker": marker, "rows": rows, "missing": missing, "tables": tables}


def mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n = 1)"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def paired_difference(values: list[float], base: list[float]) -> dict:
    """Mean paired difference and its 95 % Student-t interval (None bounds when n < 2)."""
    return mean_interval(np.asarray(values, float) - np.asarray(base, float))


def mean_interval(values) -> dict:
    """Mean of `values` and its 95 % Student-t interval (None bounds when n < 2)."""
    d = np.asarray(values, float)
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "low": None, "high": None}
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
        out.update(low=out["mean"] - half, high=out["mean"] + half)
    return out


def _metric(data: dict) -> float:
    return data["linear"] if data["linear"] is not None else data["final"]


def summarize(collected: dict, baseline: str | None) -> list[dict]:
    """One dict per row with the statistics the table shows (numbers, not text)."""
    rows = collected["rows"]
    out = []
    for label, row in rows.items():
        runs = row["runs"]
        seeds = list(runs)
        entry = {"row": label, "arm": row["arm"], "n": len(seeds), "seeds": seeds,
                 "final": [runs[s]["final"] for s in seeds], "best": [runs[s]["best"] for s in seeds],
                 "linear": [runs[s]["linear"] for s in seeds if runs[s]["linear"] is not None],
                 "sec": float(np.mean([runs[s]["sec"] for s in seeds])),
                 "epochs": sorted({runs[s]["epochs"] for s in seeds}), "diff": None}
        base = _baseline_row(rows, row, baseline)
        if base is not None and base is not row and not row["shared"]:
            common = [s for s in seeds if s in base["runs"]]
            entry["diff"] = paired_difference([_metric(runs[s]) for s in common],
                                              [_metric(base["runs"][s]) for s in common])
        entry["robust"] = _robust(collected["tables"], runs, None if row["shared"] else base)
        out.append(entry)
    return out


def _robust(tables: dict, runs: dict, base: dict | None) -> list[dict]:
    """Per seed with a robustness table: run_measures against its reference and the baseline's
    run of that seed."""
    out = []
    for seed, data in runs.items():
        if data["robustness"] is None:
            continue
        paired = (base or {"runs": {}})["runs"].get(seed, {}).get("robustness")
        out.append({"seed": seed, "name": data["name"], "reference": data["reference"],
                    **run_measures(data["robustness"], tables.get(data["reference"]), paired)})
    return out


def _baseline_row(rows: dict, row: dict, baseline: str | None):
    if baseline is None:
        return None
    for other in rows.values():
        if other["arm"] == baseline and other["axes"] == row["axes"]:
            return other
    return None


def _diff_cell(diff: dict | None) -> str:
    if diff is None or diff["n"] == 0:
        return "-"
    if diff["low"] is None:
        return f"{diff['mean']:+.2f} (n = 1, no interval)"
    return f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] (n = {diff['n']})"


def render_markdown(summary: list[dict], collected: dict, baseline: str | None) -> str:
    linear = any(e["linear"] for e in summary)
    metric = "linear eval" if linear else "final"
    head = ["row", "n", "final val acc (%)", "best-epoch val acc (%)"]
    head += ["linear eval val acc (%)"] if linear else []
    head += [f"Δ {metric} vs {baseline} (95 % CI)" if baseline else "", "s/epoch", "epochs"]
    head = [h for h in head if h]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["row"], str(e["n"]), mean_std(e["final"]), mean_std(e["best"])]
        cells += [mean_std(e["linear"])] if linear else []
        cells += [_diff_cell(e["diff"])] if baseline else []
        cells += ["-" if math.isnan(e["sec"]) else f"{e['sec']:.1f}",
                  "/".join(map(str, e["epochs"]))]
        lines.append("| " + " | ".join(cells) + " |")
    marker = collected["marker"]
    notes = [f"\nSweep `{marker['name']}` ({marker.get('spec_file', '')}). Mean ± sample std over "
             "seeds; n = number of seeds finished. Δ: paired difference of the "
             f"{metric} accuracy against the same seeds of the baseline, 95 % Student-t "
             "interval. s/epoch: wall seconds per epoch (training + validation)."]
    if any(e["epochs"] == [0] for e in summary):
        notes.append("Epochs 0: an untrained run (the network at its initialisation); its final "
                     "and best-epoch accuracy are the method's own validation score of it.")
    if collected["missing"]:
        notes.append(f"Not finished yet (left out): {', '.join(collected['missing'])}.")
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


def render_csv(summary: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "arm", "n", "seeds", "final_mean", "final_std", "best_mean",
                     "best_std", "linear_mean", "linear_std", "diff_mean", "diff_low",
                     "diff_high", "diff_n", "seconds_per_epoch"])

    def ms(values):
        if not values:
            return "", ""
        return (f"{np.mean(values):.4f}",
                f"{np.std(values, ddof=1):.4f}" if len(values) > 1 else "")

    for e in summary:
        d = e["diff"] or {}
        fmt = (lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
               else f"{v:.4f}")
        writer.writerow([e["row"], e["arm"], e["n"], " ".join(map(str, e["seeds"])),
                         *ms(e["final"]), *ms(e["best"]), *ms(e["linear"]),
                         fmt(d.get("mean")), fmt(d.get("low")), fmt(d.get("high")),
                         d.get("n", ""), fmt(e["sec"])])
    return buffer.getvalue()


def _values(measures: list[dict], key: str) -> list[float]:
    return [m[key] for m in measures if m[key] is not None and math.isfinite(m[key])]


def _interval_cell(values: list[float]) -> str:
    if not values:
        return "-"
    d = mean_interval(values)
    if d["low"] is None:
        return f"{d['mean']:.4f} (n = 1, no interval)"
    return f"{d['mean']:.4f} [{d['low']:.4f}, {d['high']:.4f}] (n = {d['n']})"


def render_robustness(summary: list[dict], collected: dict, baseline: str | None) -> str:
    """The robustness table (see the module docstring), or "" when no run has one."""
    entries = [e for e in summary if e["robust"]]
    if not entries:
        return ""
    refs = sorted({m["reference"] for e in entries for m in e["robust"] if m["reference"]})
    ref = refs[0] if len(refs) == 1 else "reference"
    head = ["row", "n", "clean acc (%)", "mean corrupted acc (%)", f"mCE vs {ref}"]
    head += [f"mCE paired vs {baseline} (95 % CI)", f"rmCE paired vs {baseline}"] if baseline else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        m = e["robust"]
        cells = [e["row"], str(len(m)), mean_std(_values(m, "clean")),
                 mean_std(_values(m, "corrupted")), mean_std(_values(m, "mce_ref"), 4)]
        if baseline:
            own = e["arm"] == baseline
            cells += ["1 (baseline)" if own else _interval_cell(_values(m, "mce_pair")),
                      "1 (baseline)" if own else mean_std(_values(m, "rmce_pair"), 4)]
        lines.append("| " + " | ".join(cells) + " |")
    first = collected["tables"][entries[0]["robust"][0]["name"]]
    names = list(first.corruptions)
    lines += ["", f"Robustness: {len(names)} corruptions x {len(first.severities)} severities "
              f"(s{', s'.join(map(str, first.severities))}) on the first {first.num_images} "
              f"validation images, every run on the same corrupted images. mCE vs {ref}: "
              "CE_c = sum_s E / sum_s E_ref, mean over corruptions; paired: against the "
              f"{baseline} run of the same seed, 95 % Student-t interval of the mean over seeds; "
              "rmCE: relative mCE, same pairing. Mean ± sample std over seeds.", "",
              "Mean accuracy (%) per corruption (over severities and seeds):", "",
              "| row | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for e in entries:
        per = [np.mean([m["per_corruption"][c] for m in e["robust"]]) for c in names]
        lines.append(f"| {e['row']} | " + " | ".join(f"{v:.1f}" for v in per) + " |")
    return "\n".join(lines) + "\n"


def robustness_csv(summary: list[dict]) -> str:
    """One line per run with a robustness table: its measures and accuracy per corruption."""
    runs = [(e, m) for e in summary for m in e["robust"]]
    if not runs:
        return ""
    names = list(runs[0][1]["per_corruption"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "row", "arm", "seed", "reference", "clean_accuracy",
                     "mean_corrupted_accuracy", "mce_reference", "mce_paired", "rmce_paired"]
                    + [f"accuracy_{c}" for c in names])
    fmt = (lambda v: "" if v is None else f"{v:.6f}")
    for e, m in runs:
        writer.writerow([m["name"], e["row"], e["arm"], m["seed"], m["reference"] or "",
                         fmt(m["clean"]), fmt(m["corrupted"]), fmt(m["mce_ref"]),
                         fmt(m["mce_pair"]), fmt(m["rmce_pair"])]
                        + [fmt(m["per_corruption"].get(c)) for c in names])
    return buffer.getvalue()


def write_report(sweep_dir: str | Path, baseline: str | None = None, plots: bool = True) -> dict:
    """Write report.md, report.csv and curves.png into the sweep folder (atomically); returns
    {"markdown", "csv", "files"}. baseline: arm name (default: the spec's `baseline`)."""
    sweep_dir = Path(sweep_dir)
    collected = collect(sweep_dir)
    spec_baseline = collected["marker"]["spec"].get("baseline")
    baseline = baseline or spec_baseline
    arms = {row["arm"] for row in collected["rows"].values()}
    if baseline is not None and baseline not in arms:
        raise ValueError(f"baseline arm {baseline!r} has no finished run in {sweep_dir} "
                         f"(arms with results: {', '.join(sorted(arms)) or 'none'})")
    summary = summarize(collected, baseline)
    markdown = render_markdown(summary, collected, baseline)
    robust = render_robustness(summary, collected, baseline)
    markdown += ("\n" + robust) if robust else ""
    table = render_csv(summary)
    files = [sweep_dir / "report.md", sweep_dir / "report.csv"]
    atomic_write_text(files[0], markdown)
    atomic_write_text(files[1], table)
    if robust:
        files.append(sweep_dir / "robustness.csv")
        atomic_write_text(files[-1], robustness_csv(summary))
    if plots and any(data["history"] for row in collected["rows"].values()
                     for data in row["runs"].values()):
        curves = {label: [[r["val_accuracy"] for r in data["history"]]
                          for data in row["runs"].values() if data["history"]]
                  for label, row in collected["rows"].items()
                  if any(data["history"] for data in row["runs"].values())}
        files.append(plot_seed_bands(curves, sweep_dir / "curves.png",
                                     title=f"sweep {collected['marker']['name']}"))
    return {"markdown": markdown, "csv": table, "files": files}

"""Robustness in a sweep: the `robustness = {...}` key of a run, and the mCE of the report.

    robustness = { limit = 1000, severities = [1, 2, 3, 4, 5], corruptions = ["contrast"],
                   seed = 0, checkpoint = "best", batch_size = 500, reference = "@teacher" }

After a run has trained, its model (best.npz by default, as `minibnn robustness RUN_DIR`; or
last.npz) is evaluated under every corruption c at every severity s on the first `limit`
validation images (`minibnn.evaluate.corruption_accuracy`; all corruptions when none are named)
and the table kept in RUN_DIR/robustness.json, written atomically with the options that made
it: a second sweep reuses it, changed options redo it. The corrupted images depend only on
(seed, c, s, chunk of 1000 images), so runs evaluated one at a time, in any process, see the
very same images, and their tables equal one joint evaluation of all models.

`reference = "@NAME"` (a shared run, or an arm: its run with the same axis values) names the
fixed reference model of the mCE, as ImageNet-C uses AlexNet; it needs the same evaluation
options, and is not a training dependency. With E = 1 - accuracy (`minibnn.evaluate.robustness`):

    CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c},  mCE = mean_c CE_c          against the reference
    mCE_i (paired) = mCE of the arm's run of seed i against the baseline arm's run of seed i
    rmCE_i (paired): the same with rCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^b_{s,c} - E^b_clean)

The report gives mean +- sample std over seeds, and for the paired mCE the 95 % Student-t
interval of its mean over seeds (1 = as robust as the baseline); n = 1 has no interval.
"""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path

from ..checkpoint import atomic_write_text
from ..data import load_dataset
from ..data.corruptions import CORRUPTIONS
from ..evaluate import (RobustnessTable, corruption_accuracy, corruption_errors,
                        mean_corruption_error, relative_corruption_errors)
from ..train import load_model

__all__ = ["ROBUSTNESS_FILE", "ROBUSTNESS_KEYS", "evaluation_options", "check_options",
           "unknown_key", "robustness_step", "load_table", "run_measures"]

ROBUSTNESS_FILE = "robustness.json"
ROBUSTNESS_KEYS = ("limit", "severities", "corruptions", "seed", "checkpoint", "batch_size",
                   "reference")
DEFAULTS = {"limit": 1000, "severities": [1, 2, 3, 4, 5], "corruptions": None, "seed": 0,
            "checkpoint": "best", "batch_size": 500}


def evaluation_options(options: dict) -> dict:
    """The options that decide the table (defaults filled in, corruptions listed, no reference)."""
    full = {**DEFAULTS, **{k: v for k, v in options.items() if k != "reference"}}
    full["corruptions"] = list(full["corruptions"] or CORRUPTIONS)
    full["severities"] = [int(s) for s in full["severities"]]
    return full


def unknown_key(key: str, valid) -> str:
    """"unknown option KEY; did you mean NAME?" (or the valid names when none is close)."""
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"unknown option {key!r}; " + (f"did you mean {near[0]!r}?" if near
                                          else f"valid: {', '.join(valid)}")


def _int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_options(options) -> str | None:
    """What is wrong with a `robustness` table, or None."""
    if not isinstance(options, dict):
        return f"must be a table such as {{limit = 1000}}, got {options!r}"
    for key in options:
        if key not in ROBUSTNESS_KEYS:
            return unknown_key(key, ROBUSTNESS_KEYS)
    o = {**DEFAULTS, **options}
    if not _int(o["limit"], 0):
        return f"limit must be an integer >= 0 (0: every validation image), got {o['limit']!r}"
    sev = o["severities"]
    if not isinstance(sev, list) or not sev or not all(_int(s, 1) and s <= 5 for s in sev):
        return f"severities must be a non-empty list of integers in 1..5, got {sev!r}"
    names = o["corruptions"]
    if names is not None:
        if not isinstance(names, list) or not names:
            return f"corruptions must be a non-empty list of names, got {names!r}"
        unknown = [c for c in names if c not in CORRUPTIONS]
        if unknown:
            return f"unknown corruption {unknown[0]!r}; valid: {', '.join(CORRUPTIONS)}"
    if not _int(o["seed"], 0) or not _int(o["batch_size"], 1):
        return f"seed must be an integer >= 0 and batch_size >= 1, got {o['seed']!r}, " \
               f"{o['batch_size']!r}"
    if o["checkpoint"] not in ("best", "last"):
        return f"checkpoint must be 'best' or 'last', got {o['checkpoint']!r}"
    ref = options.get("reference")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("@") and len(ref) > 1):
        return f"reference must name a run of the sweep as \"@NAME\", got {ref!r}"
    return None


def load_table(run_dir: Path) -> RobustnessTable | None:
    """The table kept in run_dir/robustness.json, or None."""
    path = Path(run_dir) / ROBUSTNESS_FILE
    if not path.is_file():
        return None
    return RobustnessTable.from_dict(json.loads(path.read_text())["table"])


def robustness_step(run_dir: Path, options: dict) -> dict:
    """Evaluate run_dir's model under corruptions (see the module docstring); kept in
    robustness.json, reused when it was made with the same options."""
    run_dir = Path(run_dir)
    wanted = evaluation_options(options)
    path = run_dir / ROBUSTNESS_FILE
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("options") == wanted:
            return kept
    checkpoint = run_dir if wanted["checkpoint"] == "best" else run_dir / "last.npz"
    model, config = load_model(checkpoint)            # a folder: best.npz (else last.npz)
    _, val_set = load_dataset(config.dataset, config.data_dir)
    started = time.perf_counter()
    table = corruption_accuracy({run_dir.name: model}, val_set, wanted["corruptions"],
                                wanted["severities"], seed=wanted["seed"],
                                limit=wanted["limit"],
                                batch_size=wanted["batch_size"])[run_dir.name]
    kept = {"table": table.to_dict(), "options": wanted,
            "seconds": time.perf_counter() - started}
    atomic_write_text(path, json.dumps(kept, indent=1) + "\n")
    return kept


def _comparable(a: RobustnessTable, b: RobustnessTable | None) -> bool:
    return (b is not None and list(a.corruptions) == list(b.corruptions)
            and list(a.severities) == list(b.severities) and a.num_images == b.num_images)


def run_measures(table: RobustnessTable, reference: RobustnessTable | None,
                 base: RobustnessTable | None) -> dict:
    """One run's numbers: clean and mean corrupted accuracy (%), mCE against the reference,
    mCE and relative mCE paired against the baseline's run (None where there is no table)."""
    out = {"clean": 100 * table.clean_accuracy, "corrupted": 100 * float(table.accuracy.mean()),
           "per_corruption": {c: 100 * float(a) for c, a in
                              zip(table.corruptions, table.accuracy.mean(axis=1))},
           "mce_ref": None, "mce_pair": None, "rmce_pair": None}
    if _comparable(table, reference):
        out["mce_ref"] = mean_corruption_error(corruption_errors(table.errors, reference.errors))
    if _comparable(table, base):
        out["mce_pair"] = mean_corruption_error(corruption_errors(table.errors, base.errors))
        out["rmce_pair"] = mean_corruption_error(relative_corruption_errors(
            table.errors, table.clean_error, base.errors, base.clean_error))
    return out

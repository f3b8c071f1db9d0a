"""A run folder whose files change together: one transaction, and one commit point, per epoch.

After every epoch a run folder gets a new `last.npz`, perhaps a new `best.npz`, new
`history.json` / `history.csv`, `config.json` and the record `run.json` (run id, epochs done,
SHA-256 of each file). Written one by one, a kill between two of them would leave a folder whose
`last.npz` says "finished" while `best.npz` or the history lag an epoch behind. So an epoch is
written like a database transaction with a redo log:

1. stage: every file of the epoch is written, flushed and fsynced into `.epoch-N.staging/`;
2. commit: that folder is renamed to `.epoch-N.commit/` (one atomic rename, then the parent
   folder is fsynced): from here on the epoch counts as written;
3. apply: each staged file is renamed over its name in the run folder, then the commit folder
   is removed.

`recover(run_dir)` (run before a resume or a new run writes anything) rolls a committed epoch
forward by finishing step 3 (renames are idempotent: what was moved already is not in the commit
folder any more), discards a staging folder that never committed (the previous epoch's files are
still whole, so the resume repeats the epoch bit-exactly), and deletes stale `*.tmp` files of
interrupted atomic writes. Readers that must not write (`minibnn eval RUN`, `plot`) call
`minibnn.checkpoint.resolve(run_dir, name)`, which looks into a committed but unapplied folder
first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from ..checkpoint import COMMIT_PATTERN, resolve
from ..npzio import atomic_write, fsync_dir

__all__ = ["EpochTransaction", "recover", "read_record", "sha256_file", "RECORD", "RECORD_FORMAT",
           "RunFolderError"]

RECORD = "run.json"
RECORD_FORMAT = "minibnn-run-1"
_STAGING = re.compile(r"^\.epoch-(\d+)\.staging$")
_COMMIT = COMMIT_PATTERN


class RunFolderError(ValueError):
    """A run folder is inconsistent (its record and its files disagree) or not a run folder."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class EpochTransaction:
    """Stage the files of one epoch, then `commit()` them as one unit.

        tx = EpochTransaction(run_dir, epoch)
        tx.write("last.npz", lambda f: ...)      # any number of files
        tx.commit(record)                        # writes run.json, renames, applies
    """

    def __init__(self, run_dir: str | os.PathLike, epoch: int):
        self.run_dir, self.epoch = Path(run_dir), int(epoch)
        self.staging = self.run_dir / f".epoch-{self.epoch}.staging"
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.files: dict[str, str] = {}          # name -> sha256

    def write(self, name: str, write) -> None:
        """write(f) fills the staged file `name` (binary); flushed and fsynced before returning."""
        path = self.staging / name
        atomic_write(path, write)
        self.files[name] = sha256_file(path)

    def write_text(self, name: str, text: str) -> None:
        self.write(name, lambda f: f.write(text.encode("utf-8")))

    def commit(self, record: dict) -> None:
        """Write run.json (naming every file of the epoch and its SHA-256), commit, apply."""
        record = {**record, "format": RECORD_FORMAT, "epoch": self.epoch,
                  "files": {**record.get("files", {}), **self.files}}
        atomic_write(self.staging / RECORD,
                     lambda f: f.write((json.dumps(record, indent=1) + "\n").encode("utf-8")))
        fsync_dir(self.staging)
        committed = self.run_dir / f".epoch-{self.epoch}.commit"
        os.rename(self.staging, committed)       # the commit point
        fsync_dir(self.run_dir)
        _apply(committed, self.run_dir)


def _apply(committed: Path, run_dir: Path) -> None:
    """Move every file of a committed epoch into the run folder; run.json goes last."""
    names = sorted(p.name for p in committed.iterdir() if not p.name.endswith(".tmp"))
    for name in sorted(names, key=lambda n: n == RECORD):
        os.replace(committed / name, run_dir / name)
    fsync_dir(run_dir)
    shutil.rmtree(committed)


def recover(run_dir: str | os.PathLike) -> list[str]:
    """Repair `run_dir` after an interruption; returns one line per action taken (maybe none).

    A committed epoch is finished (the newest one if, against all odds, there are several), an
    uncommitted staging folder is removed, and stale `.NAME.XXXX.tmp` files are deleted.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    actions = []
    entries = sorted(run_dir.iterdir(), key=lambda p: p.name)
    commits = sorted((int(m.group(1)), p) for p in entries if (m := _COMMIT.match(p.name)))
    for epoch, path in commits:
        _apply(path, run_dir)
        actions.append(f"finished writing epoch {epoch} (committed before the interruption)")
    for path in entries:
        if (m := _STAGING.match(path.name)) and path.exists():
            shutil.rmtree(path)
            actions.append(f"discarded the unfinished epoch {m.group(1)} (it will be trained again)")
        elif path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file():
            path.unlink()
            actions.append(f"removed the stale temporary file {path.name}")
    return actions


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The run folder's record (run.json) checked field by field, or None when there is none
    (a folder written before records existed, or whose first epoch never finished)."""
    path = resolve(run_dir, RECORD)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path}: not a readable run record ({err})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RunFolderError(f"{path}: expected a run record of format {RECORD_FORMAT!r}, "
                             f"found {found!r}")
    checks = (("run_id", str), ("epoch", int), ("files", dict))
    for key, kind in checks:
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise RunFolderError(f"{path}: field {key!r} must be a {kind.__name__}, "
                                 f"found {record.get(key)!r}")
    return record

"""Continue a run folder bit-exactly, and load a trained model from a checkpoint.

`resume_training(run_dir)` first repairs the folder after an interruption (runfolder.recover),
then checks that its checkpoint belongs to it before training anything:

- last.npz must be a training checkpoint whose header fields have the expected types;
- its run id, epoch and SHA-256 must be those the folder's record run.json names (a checkpoint
  copied in from another run, or an old one copied back, is refused);
- its config must equal config.json field by field (an edited config.json is refused, not
  silently ignored).

What may change on resume: `epochs` (only upward: a run is extended, never cut short) and
`data_dir` (where the same, MD5-checked files are found). Everything else is fixed by the run;
to change it, start a new run. A folder whose first epoch never finished (killed early) has a
config.json but no checkpoint: resuming it starts the run from the beginning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..checkpoint import CheckpointError, check_header, checkpoint_file, load_state, resolve
from ..methods import TrainedModel
from ..methods.base import model_from_state
from .config import TrainConfig
from .runfolder import RunFolderError, read_record, recover, sha256_file
from .runner import RunResult, _train, build_run, new_record

__all__ = ["resume_training", "load_model", "load_trained", "check_state", "read_config",
           "RESUMABLE"]

RESUMABLE = ("epochs", "data_dir")   # the options a resumed run may change


def read_config(run_dir: Path) -> TrainConfig:
    """RUN/config.json as a TrainConfig; one line naming the file and the field on error."""
    path = resolve(run_dir, "config.json")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a minibnn run folder, or "
                                f"its run was interrupted before it began (start it again)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ValueError(f"expected an object of options, found {type(values).__name__}")
        return TrainConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        raise RunFolderError(f"{path}: {err}") from None


def check_state(state: dict, path: Path) -> dict:
    """Check a checkpoint's header fields (format, epoch, config, history, model); returns it."""
    check_header(state, path)
    try:
        TrainConfig.from_dict(state["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: header field 'config': {err}") from None
    return state


def _check_belongs(state: dict, path: Path, record: dict | None, config: TrainConfig) -> None:
    """The checkpoint must be the one the run folder's record names, with the folder's config."""
    if record is not None:
        want = (record["run_id"], record["epoch"], record["files"].get("last.npz"))
        found = (state.get("run_id"), state["epoch"], sha256_file(path))
        if want != found:
            raise RunFolderError(
                f"{path} does not belong to this run folder: run.json records run {want[0]} at "
                f"epoch {want[1]}, the checkpoint is run {found[0]} at epoch {found[1]}"
                + (" with different contents" if want[:2] == found[:2] else "")
                + "; put the run's own last.npz back or start a new run")
    saved = TrainConfig.from_dict(state["config"]).to_dict()
    for key, value in config.to_dict().items():
        if saved[key] != value and not (_both_nan(saved[key], value)):
            raise RunFolderError(
                f"{path.parent / 'config.json'} says {key}={value!r} but the checkpoint was "
                f"trained with {key}={saved[key]!r}: config.json was edited or the checkpoint is "
                f"another run's; only --epochs and --data-dir may change on resume, start a new "
                f"run to change anything else")


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def resume_training(out_dir: str | Path, epochs: int | None = None, quiet: bool = False,
                    stop_after: int | None = None, data_dir: str | None = None) -> RunResult:
    """Continue the run in `out_dir` from last.npz, bit-exactly; `epochs` may extend it.

    The result's `notes` list what recovery repaired after an interruption."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"run folder {out_dir} does not exist")
    notes = recover(out_dir)
    config = read_config(out_dir)
    record = read_record(out_dir)
    path = out_dir / "last.npz"
    if not path.exists():
        if record is not None:
            raise RunFolderError(f"{out_dir / 'run.json'} records epoch {record['epoch']} but "
                                 f"{path} is missing")
        state = None                 # killed before its first epoch: start from the beginning
        notes.append("no epoch had finished: the run starts from the beginning")
    else:
        state = check_state(load_state(path), path)
        _check_belongs(state, path, record, config)
    done = state["epoch"] if state else 0
    if epochs is not None:
        if epochs < done:
            raise ValueError(f"--epochs {epochs} is fewer than the {done} epochs {out_dir} has "
                             f"already trained; a resumed run can only be extended")
        config.epochs = epochs
    if data_dir is not None:
        config.data_dir = data_dir
    config = TrainConfig.from_dict(config.to_dict())          # validate the changed values
    run = build_run(config)
    if state is None:
        return _with_notes(_train(run, out_dir, 0, [], quiet, stop_after, new_record()), notes)
    _load_run_state(run, state, path)
    record = record or {"run_id": state.get("run_id") or new_record()["run_id"], "files": {}}
    record = {key: value for key, value in record.items() if key not in ("format", "epoch")}
    result = _train(run, out_dir, done, list(state["history"]), quiet, stop_after, record)
    return _with_notes(result, notes)


def _load_run_state(run, state: dict, path: Path) -> None:
    """Optimizer, loader and method state of last.npz into a freshly built run (one line on error)."""
    for key in ("optimizer", "loader", "method"):
        if not isinstance(state.get(key), dict):
            raise CheckpointError(f"{path}: header field {key!r} must be a dict, found "
                                  f"{state.get(key)!r:.60}")
    try:
        run.load(state)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the saved state does not fit this run "
                              f"({type(err).__name__}: {err})") from None


def _with_notes(result: RunResult, notes: list) -> RunResult:
    result.notes = list(notes)
    return result


def load_trained(path: str | Path) -> tuple[TrainedModel, TrainConfig]:
    """(TrainedModel: model in eval mode, dataset info, checkpoint; TrainConfig) of a checkpoint
    (last.npz / best.npz) or run folder (best.npz, else last.npz). No dataset is read: the
    checkpoint describes its model (one of 0.1.0 is described from the dataset's metadata)."""
    path = checkpoint_file(path)
    state = check_state(load_state(path), path)
    return model_from_state(state, path), TrainConfig.from_dict(state["config"])


def load_model(path: str | Path):
    """(model in eval mode, TrainConfig) from a checkpoint (last.npz / best.npz) or run folder.

    A run folder is read as it stands after its last committed epoch, without writing to it."""
    trained, config = load_trained(path)
    return trained.model, config

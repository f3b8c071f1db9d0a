"""Run folders as transactions: one commit point per epoch, recovery after a kill, the record
checked on resume, and a kill -9 sweep over every file-system step of the last epoch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minibnn.checkpoint import load_state, resolve
from minibnn.methods import base as methods_base
from minibnn.train import (NonFiniteLossError, TrainConfig, load_model, read_history, recover,
                           resume_training, run_training)
from minibnn.train.runfolder import EpochTransaction, read_record, sha256_file

HARNESS = Path(__file__).with_name("kill_harness.py")
FILES = ["best.npz", "config.json", "history.csv", "history.json", "last.npz", "run.json"]


def tiny(**kw):
    values = dict(model="mlp", dataset="synthetic", width=0.25, epochs=2, limit_train=160,
                  batch_size=32)
    values.update(kw)
    return TrainConfig(**values)


# --------------------------------------------------------------------- the transaction
def test_an_epoch_commits_all_its_files_and_the_record(tmp_path):
    result = run_training(tiny(), tmp_path / "run", quiet=True)
    assert sorted(p.name for p in result.out_dir.iterdir()) == FILES
    record = read_record(result.out_dir)
    assert record["epoch"] == 2 and record["best_epoch"] in (1, 2)
    for name, digest in record["files"].items():
        assert sha256_file(result.out_dir / name) == digest
    assert load_state(result.out_dir / "last.npz")["run_id"] == record["run_id"]


def test_recover_rolls_a_committed_epoch_forward(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.txt").write_text("old")
    tx = EpochTransaction(run, 1)
    tx.write_text("a.txt", "new")
    tx.write_text("b.txt", "new")
    os.rename(tx.staging, run / ".epoch-1.commit")          # killed right after the commit
    os.replace(run / ".epoch-1.commit" / "a.txt", run / "a.txt")   # ... and one move
    assert resolve(run, "b.txt") == run / ".epoch-1.commit" / "b.txt"   # readers see it
    assert recover(run) == ["finished writing epoch 1 (committed before the interruption)"]
    assert sorted(p.name for p in run.iterdir()) == ["a.txt", "b.txt"]
    assert (run / "a.txt").read_text() == (run / "b.txt").read_text() == "new"


def test_recover_discards_an_uncommitted_epoch_and_stale_temp_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.npz").write_text("epoch 1")
    tx = EpochTransaction(run, 2)
    tx.write_text("last.npz", "epoch 2")                    # killed before the commit
    (run / ".last.npz.abc123.tmp").write_bytes(b"half")
    actions = recover(run)
    assert len(actions) == 2 and "discarded the unfinished epoch 2" in actions[0]
    assert [p.name for p in run.iterdir()] == ["last.npz"]
    assert (run / "last.npz").read_text() == "epoch 1"


# ---------------------------------------------------------------------------- guards
def test_a_nan_validation_loss_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    calls = []

    def evaluate(model, loader):
        calls.append(1)
        return {"val_loss": float("nan") if len(calls) == 2 else 1.0, "val_accuracy": 0.5}

    monkeypatch.setattr(methods_base, "evaluate", evaluate)     # what the "ce" recipe validates with
    with pytest.raises(NonFiniteLossError, match=r"val_loss became nan at epoch 2.*last\.npz "
                                                 r"\(epoch 1\)"):
        run_training(tiny(epochs=3), tmp_path / "run", quiet=True)
    assert load_state(tmp_path / "run" / "last.npz")["epoch"] == 1
    assert load_state(tmp_path / "run" / "best.npz")["epoch"] == 1
    text = (tmp_path / "run" / "history.json").read_text()
    assert "NaN" not in text and len(json.loads(text)) == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == FILES


def test_a_run_killed_before_its_first_epoch_starts_again(tmp_path):
    reference = run_training(tiny(), tmp_path / "ref", quiet=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tiny().to_dict()))
    EpochTransaction(run, 1).write_text("last.npz", "half")      # an uncommitted first epoch
    result = resume_training(run, quiet=True)
    assert "no epoch had finished" in result.notes[-1]
    a, b = load_state(run / "last.npz"), load_state(reference.out_dir / "last.npz")
    for key in b["model"]:
        assert np.array_equal(a["model"][key], b["model"][key])


def test_the_same_command_restarts_a_folder_without_epochs_but_not_another_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tiny().to_dict()))
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(tiny(lr=0.5), run, quiet=True)
    assert run_training(tiny(), run, quiet=True).trained == 2
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(tiny(), run, quiet=True)


def test_readers_see_the_committed_state_without_writing(tmp_path):
    result = run_training(tiny(), tmp_path / "run", quiet=True)
    model, config = load_model(result.out_dir)
    assert config.epochs == 2 and len(read_history(result.out_dir)) == 2


def test_resume_extends_a_run_and_records_the_new_epoch_count(tmp_path):
    run_training(tiny(), tmp_path / "run", quiet=True)
    result = resume_training(tmp_path / "run", epochs=3, quiet=True)
    assert result.trained == 1 and len(result.history) == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 3
    assert resume_training(tmp_path / "run", quiet=True).trained == 0


# ------------------------------------------------------------------------ kill -9 sweep
def _sweep(tmp_path, seeded):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(HARNESS), str(tmp_path), "--seeded", str(seeded)],
                          capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")
def test_kill_9_at_every_write_of_the_last_epoch_then_resume_is_bit_exact(tmp_path):
    report = _sweep(tmp_path, seeded=3)
    assert report["best_epoch"] == 3            # so the last epoch writes best.npz too
    kinds = [r["kind"] for r in report["results"]]
    assert kinds.count("last-epoch") == report["last_epoch_ops"] >= 30
    assert kinds.count("whole-run") == 3
    failures = [r for r in report["results"] if r["problems"]]
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")
def test_kill_9_at_many_seeded_points_of_a_whole_run(tmp_path):
    report = _sweep(tmp_path, seeded=40)
    failures = [r for r in report["results"] if r["problems"]]
    assert not failures, failures

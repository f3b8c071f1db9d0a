"""Fault injection through the command line: every bad value, damaged file or misuse gives ONE
line saying what was expected and what was found, and a non-zero exit; nothing is half-written.

Each case runs `minibnn.cli.main` in-process on a tiny run (binary MLP, synthetic data).
"""

import json
import os
import shutil

import numpy as np
import pytest

from minibnn.cli import main
from minibnn.checkpoint import load_state, save_state

TINY = ["--model", "mlp", "--dataset", "synthetic", "--width", "0.25", "--limit-train", "160",
        "--batch-size", "32", "--quiet"]


def fails(capsys, *argv, code=1):
    """Run the CLI, assert the exit code and a one-line error; returns that line."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"minibnn {argv[0]}: error: "), err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 2-epoch run; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("faults") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


# ------------------------------------------------------------------ values refused up front
@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--stop-after", "0"], "--stop-after must be at least 1, got 0"),
    (["--stop-after", "-1"], "--stop-after must be at least 1, got -1"),
    (["--lr", "inf"], "lr must be a finite number, got inf"),
    (["--lr", "nan"], "lr must be a finite number, got nan"),
    (["--clip-weights", "nan"], "clip_weights must be a finite number, got nan"),
    (["--width", "inf"], "width must be a finite number, got inf"),
    (["--lcr-alpha", "3"], "--lcr-alpha is an option of --method lcr, but this run uses "
                           "--method ce"),
    (["--method", "lcr", "--cmim-tau", "0.5"], "--cmim-tau is an option of --method cmim"),
    (["--teacher", "t.npz"], "--teacher is used by --method lcr, cmim or s2bnn"),
    (["--batch-size", "53"], "batch size 53 leaves a last training batch of one image "
                             "(160 images = 3 x 53 + 1)"),
])
def test_train_refuses_values_up_front(capsys, tmp_path, argv, message):
    out = tmp_path / "never"
    err = fails(capsys, "train", *TINY, *argv, "--out", out)
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--stop-after", "0"], "--stop-after must be at least 1"),
])
def test_pretrain_refuses_zero_epochs(capsys, tmp_path, argv, message):
    assert message in fails(capsys, "pretrain", *argv, "--out", tmp_path / "never")


@pytest.mark.parametrize("argv", [["--model", "nope"], ["--dataset", "cifar10"]])
def test_a_failed_run_leaves_no_folder(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.setenv("MINIBNN_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "nothing"))
    out = tmp_path / "run"
    assert main(["train", *TINY, *argv, "--data-dir", str(tmp_path / "nothing"),
                 "--out", str(out)]) == 1
    assert not out.exists()


def test_pretrain_divergence_is_one_line(capsys, tmp_path, monkeypatch):
    from minibnn.commands import pretrain
    from minibnn.train import NonFiniteLossError

    def diverge(*args, **kwargs):
        raise NonFiniteLossError("the loss became nan at epoch 1, step 3")

    monkeypatch.setattr(pretrain, "run_training", diverge)
    assert "the loss became nan" in fails(capsys, "pretrain", "--out", tmp_path / "p")


# ------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("option", [["--lr", "0.1"], ["--model", "cnn"], ["--out", "x"],
                                    ["--seed", "3"], ["--lcr-alpha", "2"]])
def test_resume_refuses_options_it_would_ignore(capsys, run_copy, option):
    err = fails(capsys, "train", "--resume", run_copy, *option)
    assert f"{option[0]} cannot be given with --resume" in err


def test_resume_cannot_shorten_a_run(capsys, run_copy):
    err = fails(capsys, "train", "--resume", run_copy, "--epochs", "1")
    assert "--epochs 1 is fewer than the 2 epochs" in err


def test_resume_of_a_finished_run_says_nothing_to_do(capsys, run_copy):
    assert main(["train", "--resume", str(run_copy), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("nothing to do")


def test_resume_refuses_a_checkpoint_of_another_run(capsys, run_copy, tmp_path):
    other = tmp_path / "other"
    assert main(["train", *TINY, "--epochs", "2", "--seed", "1", "--out", str(other)]) == 0
    shutil.copy(other / "last.npz", run_copy / "last.npz")
    before = (run_copy / "best.npz").read_bytes()
    err = fails(capsys, "train", "--resume", run_copy, "--epochs", "3")
    assert "last.npz does not belong to this run folder" in err
    assert (run_copy / "best.npz").read_bytes() == before


def test_resume_refuses_an_edited_config(capsys, run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    config["lr"] = 0.5
    (run_copy / "config.json").write_text(json.dumps(config))
    err = fails(capsys, "train", "--resume", run_copy, "--epochs", "3")
    assert "config.json says lr=0.5 but the checkpoint was trained with lr=0.002" in err


@pytest.mark.parametrize("text, message", [
    ("{", "config.json: Expecting"), ("[1, 2]", "expected an object of options, found list"),
    ('{"lr": "fast"}', "lr must be a number, got 'fast'"),
])
def test_resume_names_a_damaged_config(capsys, run_copy, text, message):
    (run_copy / "config.json").write_text(text)
    assert message in fails(capsys, "train", "--resume", run_copy, "--epochs", "3")


# ------------------------------------------------------------------- damaged checkpoints
def edited_checkpoint(run_dir, tmp_path, edit):
    state = load_state(run_dir / "best.npz")
    edit(state)
    path = tmp_path / "edited.npz"
    save_state(path, state)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("epoch"), "header field 'epoch' must be a int, found None"),
    (lambda s: s.update(epoch="2"), "header field 'epoch' must be a int, found '2'"),
    (lambda s: s.update(history=3), "header field 'history' must be a list, found 3"),
    (lambda s: s.update(config=[1]), "header field 'config' must be a dict"),
    (lambda s: s["config"].update(width="wide"), "width must be a number, got 'wide'"),
    (lambda s: s.update(format="x"), "is not a minibnn training checkpoint"),
    (lambda s: next(iter(s["model"].values())).fill(np.nan), "holds NaN or infinite values"),
])
@pytest.mark.parametrize("command", ["eval", "export", "robustness"])
def test_damaged_checkpoint_headers_and_nan_weights(capsys, run_dir, tmp_path, edit, message,
                                                   command):
    path = edited_checkpoint(run_dir, tmp_path, edit)
    extra = {"eval": [], "export": [tmp_path / "packed.npz"], "robustness": ["--limit", "8"]}
    err = fails(capsys, command, path, *extra[command])
    assert str(path) in err and message in err
    assert not (tmp_path / "packed.npz").exists()


@pytest.mark.parametrize("text, message", [
    ("[{\"epoch\": 1, \"val_loss\": NaN}]", "not valid JSON (NaN is not JSON)"),
    ("{\"epoch\": 1}", "expected a list of per-epoch rows, found dict"),
    ("[{\"epoch\": 1, \"val_accuracy\": \"high\"}]", "field 'val_accuracy' must be a number"),
    ("[3]", "row 0 must be an object"),
    ("[{\"val_loss\": 1.0}]", "field 'epoch' must be an integer"),
])
def test_plot_names_a_damaged_history(capsys, run_copy, text, message):
    (run_copy / "history.json").write_text(text)
    err = fails(capsys, "plot", run_copy)
    assert "history.json" in err and message in err


def test_plot_accepts_a_run_folder_whose_name_is_not_utf8(capsys, run_dir, tmp_path):
    odd = tmp_path / os.fsdecode(b"run-\xff")
    shutil.copytree(run_dir, odd)
    assert main(["plot", str(odd)]) == 0
    assert (odd / "curves.png").is_file()


def test_packed_model_header_with_wrong_types(capsys, run_dir, tmp_path):
    from minibnn.engine.runtime import HEADER_KEY
    from minibnn.npzio import load_npz, save_npz

    packed = tmp_path / "packed.npz"
    assert main(["export", str(run_dir), str(packed), "--check", "0"]) == 0
    capsys.readouterr()
    header, arrays = load_npz(packed, HEADER_KEY, ValueError, "packed")
    for edit, message in [(lambda h: h.update(nodes={}), "header field 'nodes' must be a list"),
                          (lambda h: h["nodes"][0].update(attrs=[]), "field 'attrs' must be a dict"),
                          (lambda h: h["nodes"].__setitem__(0, 7), "node 0 must be an object")]:
        bad = json.loads(json.dumps(header))
        edit(bad)
        save_npz(tmp_path / "bad.npz", HEADER_KEY, bad, arrays)
        assert message in fails(capsys, "eval", "--packed", tmp_path / "bad.npz")

"""Files written by minibnn 0.1.0 (tests/fixtures/checkpoint_v0_1) keep working.

The fixture is a 2-epoch run of the small CNN at width 0.25 (run folder with best.npz, last.npz,
history, config and record), the packed model exported from it, and the logits both gave on 16
normalised validation images. A change to the checkpoint or packed format that breaks any of
these fails here; make_checkpoint_fixture.py says how the files were made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from minibnn import cli
from minibnn.autograd import Tensor, no_grad
from minibnn.engine import PackedModel, export
from minibnn.train import load_model, read_history, resume_training

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "checkpoint_v0_1"


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURE / "expected.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("which", ["run", "run/best.npz"])
def test_old_checkpoint_loads_and_gives_the_same_logits(which, expected):
    model, config = load_model(FIXTURE / which)
    assert (config.model, config.width, config.epochs) == ("cnn", 0.25, 2)
    with no_grad():
        logits = model(Tensor(expected["x"])).data
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=1e-5)


def test_old_checkpoint_exports_to_the_same_packed_model(expected):
    model, _ = load_model(FIXTURE / "run")
    got = export(model)(expected["x"])
    np.testing.assert_allclose(got, expected["packed_logits"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), expected["packed_logits"].argmax(1))


def test_old_packed_file_loads_and_runs(expected):
    packed = PackedModel.load(FIXTURE / "packed.npz")
    np.testing.assert_array_equal(packed(expected["x"]), expected["packed_logits"])


def test_old_run_folder_evaluates_from_the_command_line(capsys):
    assert cli.main(["eval", str(FIXTURE / "run")]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_old_run_folder_resumes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    result = resume_training(run, epochs=3, quiet=True)
    history = read_history(run)
    assert result.trained == 1 and len(history) == 3
    assert history[:2] == read_history(FIXTURE / "run")

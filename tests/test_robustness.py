"""`minibnn robustness`: the mCE arithmetic, seeded corruption evaluation, and the command."""

import json

import numpy as np
import pytest

from minibnn.cli import main
from minibnn.data import load_dataset
from minibnn.evaluate import (RobustnessTable, corruption_accuracy, corruption_errors,
                              format_table, mean_corruption_error, relative_corruption_errors)
from minibnn.train import TrainConfig, load_model, run_training


# ------------------------------------------------------------------------------ the math
def test_a_baseline_equal_to_the_model_gives_mce_exactly_one(rng):
    errors = rng.uniform(0.05, 0.9, size=(11, 5))
    ce = corruption_errors(errors, errors)
    np.testing.assert_array_equal(ce, np.ones(11))
    assert mean_corruption_error(ce) == 1.0
    assert mean_corruption_error(relative_corruption_errors(errors, 0.01, errors, 0.01)) == 1.0


def test_a_perfect_model_gives_mce_zero(rng):
    base = rng.uniform(0.05, 0.9, size=(4, 5))
    assert mean_corruption_error(corruption_errors(np.zeros((4, 5)), base)) == 0.0


def test_mce_by_hand():
    errors = np.array([[0.1, 0.2], [0.3, 0.5]])
    base = np.array([[0.2, 0.4], [0.4, 0.4]])
    np.testing.assert_allclose(corruption_errors(errors, base), [0.3 / 0.6, 0.8 / 0.8])
    assert mean_corruption_error(corruption_errors(errors, base)) == pytest.approx(0.75)
    # relative: sum_s (E - E_clean) / sum_s (E_base - E_base_clean)
    rce = relative_corruption_errors(errors, 0.05, base, 0.1)
    np.testing.assert_allclose(rce, [(0.05 + 0.15) / (0.1 + 0.3), (0.25 + 0.45) / (0.3 + 0.3)])


def test_undefined_ce_is_nan_and_left_out_of_the_mean():
    errors = np.array([[0.1, 0.2], [0.3, 0.5]])
    base = np.array([[0.0, 0.0], [0.4, 0.4]])              # the baseline never errs on row 0
    ce = corruption_errors(errors, base)
    assert np.isnan(ce[0]) and ce[1] == pytest.approx(1.0)
    assert mean_corruption_error(ce) == pytest.approx(1.0)
    assert np.isnan(mean_corruption_error(np.array([np.nan])))
    with pytest.raises(ValueError, match=r"must match the baseline's, got \(2, 2\) and \(2, 3\)"):
        corruption_errors(errors, np.zeros((2, 3)))


def test_format_table_reports_ce_and_mce():
    acc = np.array([[0.9, 0.8], [0.7, 0.6]])
    model = RobustnessTable("m", ["gaussian_noise", "contrast"], [1, 2], 0.95, acc, 10)
    text = format_table(model, RobustnessTable("b", model.corruptions, [1, 2], 0.95, acc, 10))
    assert "mCE 1.0000" in text and "relative mCE 1.0000" in text
    assert "give --baseline" in format_table(model)


# ------------------------------------------------------------- evaluation of a model
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    runs = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"run{seed}")
        run_training(TrainConfig(model="cnn", dataset="synthetic", width=0.25, epochs=1,
                                 batch_size=64, seed=seed), out, quiet=True)
        runs.append(out)
    return runs


def test_evaluation_is_seeded_and_independent_of_the_corruption_subset(two_runs):
    model = load_model(two_runs[0])[0]
    _, val = load_dataset("synthetic")
    full = corruption_accuracy({"m": model}, val, ["gaussian_noise", "impulse_noise"], (1, 5),
                               seed=3, limit=96, batch_size=40)["m"]
    again = corruption_accuracy({"m": model}, val, ["impulse_noise"], (5,), seed=3, limit=96,
                                batch_size=96)["m"]
    assert full.accuracy.shape == (2, 2) and full.num_images == 96
    assert again.accuracy[0, 0] == full.accuracy[1, 1]
    assert full.clean_accuracy == again.clean_accuracy
    other = corruption_accuracy({"m": model}, val, ["impulse_noise"], (5,), seed=4, limit=96)["m"]
    assert 0 <= other.accuracy[0, 0] <= 1
    with pytest.raises(ValueError, match="unknown corruption"):
        corruption_accuracy({"m": model}, val, ["fog"], (1,))
    with pytest.raises(ValueError, match=r"severities must be integers in 1..5, got \[0, 6\]"):
        corruption_accuracy({"m": model}, val, ["contrast"], (0, 6))


def test_cli_writes_table_json_csv_and_heatmap(two_runs, tmp_path, capsys):
    out = tmp_path / "rob"
    assert main(["robustness", str(two_runs[0]), "--baseline", str(two_runs[1]), "--corruptions",
                 "gaussian_noise", "contrast", "--severities", "1", "5", "--limit", "64",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gaussian_noise" in printed and "mCE" in printed
    data = json.loads((out / "robustness.json").read_text())
    assert set(data) == {"model", "summary", "baseline"}
    assert data["model"]["severities"] == [1, 5] and len(data["summary"]["ce"]) == 2
    lines = (out / "robustness.csv").read_text().splitlines()
    assert lines[0] == "model,corruption,severity,accuracy,error" and len(lines) == 1 + 2 * 5
    assert (out / "robustness.png").stat().st_size > 0


def test_cli_baseline_equal_to_the_model_gives_mce_one(two_runs, tmp_path, capsys):
    ckpt = str(two_runs[0] / "best.npz")
    assert main(["robustness", ckpt, "--baseline", ckpt, "--corruptions", "brightness",
                 "--severities", "3", "--limit", "32", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert data["summary"]["mce"] == 1.0 or data["summary"]["undefined_ce"] == ["brightness"]
    assert "(baseline)" in data["baseline"]["name"]


def test_cli_bad_arguments_are_one_line_errors(two_runs, capsys):
    assert main(["robustness", str(two_runs[0]), "--corruptions", "fog", "--limit", "8"]) == 1
    err = capsys.readouterr().err
    assert "unknown corruption(s) ['fog']" in err and len(err.strip().splitlines()) == 1
    assert main(["robustness", str(two_runs[0]), "--severities", "7", "--limit", "8"]) == 1
    assert "severities must be integers in 1..5" in capsys.readouterr().err

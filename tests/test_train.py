"""Training: checkpoints (round trip, atomic writes, damage), bit-exact resume, NaN stop, learning."""

import numpy as np
import pytest

from minibnn import Tensor, no_grad
from minibnn import checkpoint as checkpoint_module
from minibnn.checkpoint import CheckpointError, load_state, save_state
from minibnn.methods import base as methods_base
from minibnn.train import (NonFiniteLossError, TrainConfig, load_model, read_history,
                           resume_training, run_training)
from minibnn.train import runner as runner_module


def tiny_config(**overrides):
    values = dict(model="cnn", dataset="synthetic", width=0.25, epochs=4, batch_size=64,
                  lr=5e-3, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def test_save_and_load_state_round_trip_nested_structures(tmp_path):
    rng = np.random.default_rng(1)
    state = {"a": np.arange(5, dtype=np.int64), "nested": {"w.0": rng.normal(size=(2, 3)),
             "list": [1, 2.5, "x", np.float32(3)]}, "rng": rng.bit_generator.state, "none": None}
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(back["a"], state["a"])
    np.testing.assert_array_equal(back["nested"]["w.0"], state["nested"]["w.0"])
    assert back["nested"]["list"] == [1, 2.5, "x", 3.0]
    assert back["rng"] == state["rng"] and back["none"] is None


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    save_state(path, {"value": np.ones(3)})

    def exploding_savez(f, **arrays):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        save_state(path, {"value": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_state(path)["value"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]      # no temporary file left


def test_damaged_or_foreign_checkpoints_give_clear_errors(tmp_path):
    path = tmp_path / "last.npz"
    save_state(path, {"value": np.ones(1000)})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_state(path)
    np.savez(tmp_path / "other.npz", x=np.ones(2))
    with pytest.raises(CheckpointError, match="not a minibnn checkpoint"):
        load_state(tmp_path / "other.npz")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state(tmp_path / "missing.npz")


@pytest.fixture(scope="module")
def four_epoch_run(tmp_path_factory):
    return run_training(tiny_config(), tmp_path_factory.mktemp("full"), quiet=True)


def test_resume_is_bit_exact(four_epoch_run, tmp_path):
    first = run_training(tiny_config(), tmp_path, quiet=True, stop_after=2)
    assert len(first.history) == 2
    resumed = resume_training(tmp_path, quiet=True)
    full = load_state(four_epoch_run.out_dir / "last.npz")
    again = load_state(tmp_path / "last.npz")
    assert again["epoch"] == full["epoch"] == 4
    for name, value in full["model"].items():
        np.testing.assert_array_equal(again["model"][name], value, err_msg=name)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in four_epoch_run.history]


def test_training_learns_well_above_chance(four_epoch_run):
    assert four_epoch_run.val_accuracy > 0.6          # 4 classes: chance is 0.25
    history = read_history(four_epoch_run.out_dir)
    assert {"train_loss", "val_accuracy", "lr", "flip_ratio", "seconds"} <= set(history[0])
    assert (four_epoch_run.out_dir / "history.csv").read_text().startswith("epoch,")


def test_reloaded_binary_model_gives_bit_identical_outputs(four_epoch_run):
    model, config = load_model(four_epoch_run.out_dir / "last.npz")
    state = load_state(four_epoch_run.out_dir / "last.npz")
    twin = runner_module.build_run(TrainConfig.from_dict(state["config"])).model
    twin.load_state_dict(state["model"])
    twin.eval()
    x = Tensor(np.random.default_rng(0).normal(size=(5, 1, 16, 16)).astype(np.float32))
    with no_grad():
        np.testing.assert_array_equal(model(x).data, twin(x).data)
    assert config.model == "cnn" and not config.real


def test_starting_over_an_existing_run_is_refused(four_epoch_run):
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        run_training(tiny_config(), four_epoch_run.out_dir, quiet=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = methods_base.cross_entropy_loss

    def loss_that_breaks(model, batch):
        calls["n"] += 1
        out = real_loss(model, batch)
        if calls["n"] == 12:                       # epoch 2 (8 steps per epoch), step 4
            out.loss = out.loss * np.float32("nan")
        return out

    monkeypatch.setattr(methods_base, "cross_entropy_loss", loss_that_breaks)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, step 4.*last\.npz \(epoch 1\)"):
        run_training(tiny_config(), tmp_path, quiet=True)
    assert load_state(tmp_path / "last.npz")["epoch"] == 1


def test_config_rejects_bad_values_naming_them():
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        tiny_config(epochs=0)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, adamw"):
        tiny_config(optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"unknown training options \['colour'\]"):
        TrainConfig.from_dict({"colour": 1})


@pytest.mark.parametrize("field, value, message", [
    ("input_quantizer", "stee", "unknown input quantizer 'stee'; closest valid name: 'ste'"),
    ("input_quantizer", "xnor", "quantizer 'xnor' applies to weights only, not to inputs"),
    ("weight_quantizer", "irnt", "unknown weight quantizer 'irnt'; closest valid name: 'irnet'"),
])
def test_config_rejects_quantizer_names_before_anything_is_built(field, value, message):
    with pytest.raises(ValueError, match=f"{field}: {message}"):
        tiny_config(**{field: value})
    tiny_config(input_quantizer="ede", weight_quantizer="irnet")     # valid names pass

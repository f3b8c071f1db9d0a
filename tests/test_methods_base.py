"""Methods on their own (methods/base.py): "ce" is a registered method like the others, and
checkpoints describe their model, so loading one (a run's model, a teacher, an export) never
reads a dataset; checkpoints of 0.1.0 are described from the dataset's static metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import minibnn.data
import minibnn.data.datasets
import minibnn.train.runner
from minibnn import cli
from minibnn.checkpoint import load_state
from minibnn.data import dataset_info, load_dataset
from minibnn.methods import (METHODS, CrossEntropy, load_teacher, load_trained_model,
                             make_recipe, method)
from minibnn.methods import base as methods_base
from minibnn.methods.s2bnn_teacher import load_teacher as s2bnn_teacher
from minibnn.train import TrainConfig, load_model, load_trained, run_training

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "checkpoint_v0_1"


def _no_dataset(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a dataset was loaded")

    for module in (minibnn.data, minibnn.data.datasets, minibnn.train.runner):
        monkeypatch.setattr(module, "load_dataset", refuse)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    config = TrainConfig(model="cnn", dataset="synthetic", width=0.25, real=True, epochs=1,
                         batch_size=64, limit_train=128, seed=2)
    return run_training(config, tmp_path_factory.mktemp("real") / "run", quiet=True).out_dir


def test_ce_is_a_registered_method_like_the_others():
    assert list(METHODS)[:1] == ["ce"] and {"lcr", "cmim", "s2bnn"} <= set(METHODS)
    config = TrainConfig(method="ce")
    assert isinstance(make_recipe(config, None, None), CrossEntropy)
    assert method("ce").options_from_args(None) == {}
    with pytest.raises(ValueError, match="unknown method 'sgd'; choose one of ce, lcr"):
        method("sgd")


def test_a_checkpoint_describes_its_model_and_data(real_run):
    state = load_state(real_run / "last.npz")
    info = load_dataset("synthetic").train
    assert state["data"] == {"dataset": "synthetic", "input_shape": [1, 16, 16],
                             "num_classes": 4, "mean": list(info.mean), "std": list(info.std)}
    assert state["architecture"] == {
        "name": "cnn", "binary": False, "in_channels": 1, "image_size": 16, "num_classes": 4,
        "width": 0.25, "input_quantizer": None, "weight_quantizer": None, "kwargs": {}}


def test_loading_a_new_checkpoint_reads_no_dataset(real_run, monkeypatch):
    reference, _ = load_model(real_run)
    _no_dataset(monkeypatch)
    monkeypatch.setattr(methods_base, "dataset_info", lambda name: 1 / 0)   # no fallback either
    model, config = load_model(real_run)
    trained = load_trained_model(real_run / "best.npz")
    assert config.dataset == "synthetic" and trained.data.input_shape == (1, 16, 16)
    for name, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value)
        np.testing.assert_array_equal(trained.model.state_dict()[name], value)
    teacher = load_teacher(real_run, (1, 16, 16), "test")
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training
    project, info = s2bnn_teacher(real_run, (1, 16, 16), dim=4)
    assert "supervised logits" in info


def test_a_teacher_for_other_inputs_is_refused_in_one_line(real_run):
    with pytest.raises(ValueError, match=r"cmim: the teacher .* takes inputs \(1, 16, 16\), "
                                         r"the student \(3, 32, 32\)"):
        load_teacher(real_run, (3, 32, 32), "cmim")


def test_checkpoints_of_0_1_are_described_from_static_metadata(monkeypatch):
    assert "architecture" not in load_state(FIXTURE / "run" / "last.npz")
    _no_dataset(monkeypatch)
    trained, config = load_trained(FIXTURE / "run")
    assert trained.data == dataset_info("mnist-t10k")
    assert tuple(trained.model.input_shape) == (1, 28, 28) and config.model == "cnn"


@pytest.mark.parametrize("name", ["mnist-t10k", "synthetic"])
def test_dataset_info_agrees_with_the_loaded_dataset(name):
    info, train = dataset_info(name), load_dataset(name).train
    assert info.input_shape == train.x.shape[1:] and info.num_classes == train.num_classes
    assert (info.mean, info.std) == (tuple(train.mean), tuple(train.std))


def test_export_loads_the_dataset_only_to_check_predictions(real_run, tmp_path, monkeypatch,
                                                            capsys):
    _no_dataset(monkeypatch)
    assert cli.main(["export", str(real_run), str(tmp_path / "p.npz"), "--check", "0"]) == 0
    assert "exported cnn" in capsys.readouterr().out

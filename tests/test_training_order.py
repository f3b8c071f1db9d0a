"""Every method's gradients in the order training runs, against finite differences.

Each test builds a run with `build_run` (the recipe, model and loaders `minibnn train` uses),
converts model and method state to float64, takes one warm-up step exactly as
`train.loop.train_epoch` does (loss call, zero_grad, backward, optimizer step, after_step) so
that queues, banks and normalisers hold real state, and then the checked step: the recipe's
loss call (which updates banks, queues, samplers and running statistics before backward) and
backward, under anomaly detection. The gradient of every trainable tensor (model and method) is
compared with central differences of the same loss call on copies of the state as it was
before the step. Networks here are smooth (real twins, or binary layers with identity
quantizers), and S2-BNN runs on the small CNN rather than ReActNet: the sign estimators'
pseudo-gradients have tests of their own, and what is checked here is the method's state
handling, which depends on neither.
"""

import copy

import numpy as np
import pytest

from minibnn.autograd import Tensor, detect_anomaly, no_grad
from minibnn.train import s2bnn_config
from minibnn.nn import Module
from minibnn.train import TrainConfig, build_run, run_training

BASE = dict(dataset="synthetic", width=0.25, batch_size=16, limit_train=64, epochs=1, seed=0,
            augment=False)
SMOOTH = dict(input_quantizer="identity", weight_quantizer="none")
EPS, SAMPLES = 1e-6, 3


# --------------------------------------------------------------------------- harness
def _float64(obj, seen: set) -> None:
    """Convert every float32 array reachable from obj (modules, tensors, minibnn objects)."""
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type(None), np.generic)):
        return
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        obj.data = obj.data.astype(np.float64) if obj.data.dtype == np.float32 else obj.data
        return
    if isinstance(obj, Module):
        for m in obj.modules():
            for name, b in list(m._buffers.items()):
                if isinstance(b, np.ndarray) and b.dtype == np.float32:
                    m._buffers[name] = b.astype(np.float64)
    if isinstance(obj, (list, tuple, set)):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    elif type(obj).__module__.startswith("minibnn") and hasattr(obj, "__dict__"):
        for name, value in list(vars(obj).items()):
            if isinstance(value, np.ndarray) and value.dtype == np.float32:
                setattr(obj, name, value.astype(np.float64))
        items = vars(obj).values()
    else:
        return
    for item in list(items):
        _float64(item, seen)


def _batch64(batch):
    def conv(a):
        if isinstance(a, (tuple, list)):
            return type(a)(conv(v) for v in a)
        return a.astype(np.float64) if getattr(a, "dtype", None) == np.float32 else a
    return conv(batch)


def _trainables(model, recipe) -> list:
    return list(model.named_parameters()) + [(f"method.{i}", p)
                                             for i, p in enumerate(recipe.parameters())]


def _step(run, batch) -> None:
    """train_epoch's body, verbatim in order."""
    out = run.loss(run.model, batch)
    run.optimizer.zero_grad()
    out.loss.backward()
    run.optimizer.step()
    run.loss.after_step()


def check_training_order(config: TrainConfig, samples: int = SAMPLES) -> dict:
    """Warm-up step, then the checked step; returns {name: max |analytic - fd|} (asserted).
    `samples` elements of every trainable tensor are checked."""
    run = build_run(config)
    _float64((run.model, run.loss, run.optimizer), set())
    batches = iter(run.train_loader)
    _step(run, _batch64(next(batches)))
    batch = _batch64(next(batches))
    before = copy.deepcopy((run.model, run.loss))
    with detect_anomaly():
        out = run.loss(run.model, batch)
        run.optimizer.zero_grad()
        out.loss.backward()
    analytic = {name: (np.zeros_like(p.data) if p.grad is None else p.grad.copy())
                for name, p in _trainables(run.model, run.loss) if p.requires_grad}
    assert analytic, "nothing to check"
    rng = np.random.default_rng(0)
    errors = {}
    for name, grad in analytic.items():
        worst = 0.0
        for i in rng.choice(grad.size, min(samples, grad.size), replace=False):
            values = []
            for step in (EPS, -EPS):
                model, recipe = copy.deepcopy(before)
                p = dict(_trainables(model, recipe))[name]
                p.data.reshape(-1)[i] += step
                with no_grad():
                    values.append(recipe(model, batch).loss.item())
            fd = (values[0] - values[1]) / (2 * EPS)
            worst = max(worst, abs(fd - grad.reshape(-1)[i]))
        errors[name] = worst
        scale = max(1.0, float(np.max(np.abs(grad))))
        assert worst <= 1e-6 * scale, (name, worst, scale)
    return errors


# ----------------------------------------------------------------------------- teachers
@pytest.fixture(scope="module")
def supervised_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_training(TrainConfig(model="cnn", real=True, **BASE), out, quiet=True)
    return str(out)


@pytest.fixture(scope="module")
def moco_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("moco")
    run_training(s2bnn_config("contrastive", real=True, model="cnn", queue=32, knn_bank=32,
                              **BASE), out, quiet=True)
    return str(out)


# -------------------------------------------------------------------------------- tests
def test_ce_baseline():
    check_training_order(TrainConfig(model="cnn", method="ce", **SMOOTH, **BASE))


@pytest.mark.filterwarnings("ignore:LCR-BNN trains IR-Net binarization")
@pytest.mark.parametrize("variant", ["official", "exact"])
def test_lcr(variant, supervised_teacher):
    options = {"variant": variant, "alpha": 2e4}
    if variant == "exact":
        options["persistent"] = True                   # state written before backward, too
    check_training_order(TrainConfig(model="cnn", method="lcr", teacher=supervised_teacher,
                                     method_options=options, **SMOOTH, **BASE))


def test_cmim_official(supervised_teacher):
    check_training_order(TrainConfig(model="cnn", method="cmim", teacher=supervised_teacher,
                                     method_options={"form": "official", "negatives": 16,
                                                     "train_heads": True}, **SMOOTH, **BASE))


def test_cmim_paper_with_queues():
    check_training_order(TrainConfig(model="cnn", method="cmim",
                                     method_options={"form": "paper", "queue": 24}, **SMOOTH,
                                     **BASE))


@pytest.mark.parametrize("variant", ["contrastive", "contrastive+distill", "distill"])
def test_s2bnn(variant, moco_teacher):
    teacher = {} if variant == "contrastive" else {"teacher": moco_teacher}
    check_training_order(s2bnn_config(variant, real=True, model="cnn", queue=32, knn_bank=32,
                                      **teacher, **BASE))

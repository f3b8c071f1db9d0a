"""S2-BNN: the distribution loss, MoCo v2 (InfoNCE, queue, momentum encoder), the ReActNet student's
binarizers, two-step training, linear evaluation, and the errors for bad input (docs/methods.md §5)."""

import json
import math

import numpy as np
import pytest

from minibnn import functional as F
from minibnn.autograd import Tensor, gradcheck, no_grad
from minibnn.cli import build_parser, main
from minibnn.evaluate import linear_evaluation, train_linear
from minibnn.data import load_dataset
from minibnn.methods import s2bnn_recipe
from minibnn.methods.s2bnn import (MoCoQueue, distribution_loss, knn_predict, moco_infonce,
                                   moco_logits, momentum_update)
from minibnn.methods.s2bnn_augment import S2BNNAugment
from minibnn.methods.s2bnn_teacher import load_teacher
from minibnn.models import build_model
from minibnn.nn import binary as nnb
from minibnn.checkpoint import load_state
from minibnn.train import (TrainConfig, build_run, load_model, resume_training, run_training,
                           s2bnn_config)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def entropy(p):
    return float(np.mean(-np.sum(p * np.log(p), axis=1)))


# ------------------------------------------------------------------- distribution loss
def test_distribution_loss_of_constant_logits_is_log_128():
    z = np.full((4, 128), 0.37)
    got = distribution_loss(Tensor(z), z, tau=0.2).item()
    assert got == pytest.approx(math.log(128), abs=1e-6)
    assert got == pytest.approx(4.852030, abs=1e-6)


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_distribution_loss_to_itself_is_the_teacher_entropy(rng, tau):
    t = rng.normal(size=(5, 16))
    got = distribution_loss(Tensor(t), t, tau).item()
    assert got == pytest.approx(entropy(softmax(t / tau)), rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_distribution_loss_is_at_least_the_entropy_with_equality_iff_equal(seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(6, 10))
    h = entropy(softmax(t / 0.2))
    s = rng.normal(size=(6, 10))
    assert distribution_loss(Tensor(s), t, 0.2).item() > h + 1e-4
    shifted = t + rng.normal(size=(6, 1))          # same softmax, different logits
    assert distribution_loss(Tensor(shifted), t, 0.2).item() == pytest.approx(h, rel=1e-5)


@pytest.mark.parametrize("tau", [1.0, 0.2])
def test_distribution_loss_gradient_is_softmax_difference_over_batch(rng, tau):
    s, t = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    st = Tensor(s, requires_grad=True)
    distribution_loss(st, t, tau).backward()
    expected = (softmax(s / tau) - softmax(t / tau)) / 4      # w.r.t. the tau-scaled logits
    np.testing.assert_allclose(st.grad, expected / tau, atol=1e-9)   # 1/tau chain factor


def test_distribution_loss_gradcheck_and_frozen_teacher(rng):
    t = Tensor(rng.normal(size=(3, 5)), requires_grad=True)
    gradcheck(lambda s: distribution_loss(s, t, 0.2), Tensor(rng.normal(size=(3, 5)),
                                                               requires_grad=True))
    s = Tensor(rng.normal(size=(3, 5)), requires_grad=True)
    distribution_loss(s, t, 0.2).backward()
    assert t.grad is None                                     # the teacher gets no gradient


def test_distribution_loss_rejects_different_embedding_sizes(rng):
    with pytest.raises(ValueError, match="same D"):
        distribution_loss(Tensor(rng.normal(size=(4, 128))), rng.normal(size=(4, 64)))


# --------------------------------------------------------------------------- MoCo
def test_infonce_with_equal_logits_is_log_one_plus_k():
    for k_size in (7, 65536):
        v = np.zeros((3, 4), np.float32)
        v[:, 0] = 1.0
        queue = np.tile(v[:1], (k_size, 1))
        got = moco_infonce(Tensor(v), v, queue, tau=0.2).item()
        assert got == pytest.approx(math.log(1 + k_size), rel=1e-6)
    assert math.log(65537) == pytest.approx(11.090370, abs=1e-6)


def test_infonce_matches_the_formula_and_has_the_positive_at_index_0(rng):
    q = F.normalize(Tensor(rng.normal(size=(5, 8))), axis=1)
    k = F.normalize(Tensor(rng.normal(size=(5, 8))), axis=1).data
    queue = rng.normal(size=(12, 8))
    logits = moco_logits(q, k, queue, 0.2).data
    np.testing.assert_allclose(logits[:, 0], np.sum(q.data * k, axis=1) / 0.2, rtol=1e-6)
    np.testing.assert_allclose(logits[:, 1:], q.data @ queue.T / 0.2, rtol=1e-5)
    expected = np.mean(-np.log(softmax(logits)[:, 0]))
    assert moco_infonce(q, k, queue, 0.2).item() == pytest.approx(expected, rel=1e-5)
    gradcheck(lambda x: moco_infonce(x, k, queue, 0.2), Tensor(q.data.astype(np.float64),
                                                                 requires_grad=True))


def test_queue_pointer_arithmetic_and_enqueue(rng):
    queue = MoCoQueue(dim=4, size=8, batch_size=2, rng=0)
    np.testing.assert_allclose(np.linalg.norm(queue.keys, axis=1), 1.0, rtol=1e-6)
    pointers = []
    for step in range(5):
        keys = np.full((2, 4), float(step), np.float32)
        start = queue.ptr
        queue.enqueue(keys)
        np.testing.assert_array_equal(queue.keys[start:start + 2], keys)
        pointers.append(queue.ptr)
    assert pointers == [2, 4, 6, 0, 2]                       # + B mod K
    np.testing.assert_array_equal(queue.keys[0:2], 4.0)      # step 4 overwrote the oldest
    np.testing.assert_array_equal(queue.keys[2:4], 1.0)
    state = queue.state_dict()
    other = MoCoQueue(4, 8, 2, rng=1)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.keys, queue.keys)
    assert other.ptr == 2


def test_queue_size_must_be_a_multiple_of_the_batch():
    with pytest.raises(ValueError, match="multiple of the batch"):
        MoCoQueue(dim=4, size=100, batch_size=64)
    queue = MoCoQueue(dim=4, size=8, batch_size=2)
    with pytest.raises(ValueError, match="does not fit"):
        queue.enqueue(np.zeros((3, 4)))


def test_momentum_update_formula_and_buffers_untouched():
    key = build_model("reactnet", image_size=16, width=0.125, rng=0)
    query = build_model("reactnet", image_size=16, width=0.125, rng=1)
    query.blocks[0].bn3.running_mean[...] = 5.0
    before = {n: p.data.copy() for n, p in key.named_parameters()}
    buffers = {n: b.copy() for n, b in key.named_buffers()}
    momentum_update(key, query, m=0.9)
    for name, p in key.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(query.named_parameters())[name].data
        np.testing.assert_allclose(p.data, expected, rtol=1e-6, atol=1e-7)
    for name, b in key.named_buffers():
        np.testing.assert_array_equal(b, buffers[name])
    with pytest.raises(ValueError, match="different parameters"):
        momentum_update(key, build_model("cnn", image_size=16, rng=0))


def test_knn_predict_votes_for_the_nearest_class():
    bank = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    pred = knn_predict(bank, labels, np.array([[1.0, 0.05], [0.05, 1.0]]), 2, k=2)
    np.testing.assert_array_equal(pred, [0, 1])


# ------------------------------------------------------------ the student's binarizers
def test_approx_sign_table_through_the_students_rsign():
    student = build_model("reactnet", image_size=16, width=0.125, rng=0, mlp_head=True)
    rsign = student.blocks[0].sign3                           # bias 0 at init
    x = np.array([-1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 1.5])
    c = rsign.shift.channels
    xt = Tensor(np.tile(x.reshape(1, 1, 1, -1), (1, c, 1, 1)), requires_grad=True)
    y = rsign(xt)
    np.testing.assert_array_equal(y.data[0, 0, 0], np.where(x >= 0, 1.0, -1.0))  # sign(0)=+1
    y.sum().backward()
    np.testing.assert_array_equal(xt.grad[0, 0, 0], [0, 0, 1, 1.5, 2, 1.5, 1, 0, 0])


def test_reactnet_weight_binarizer_example_through_the_students_conv():
    student = build_model("reactnet", image_size=16, width=0.125, rng=0, mlp_head=True)
    layer = student.blocks[0].convs1[0]
    assert layer.weight_quantizer.name == "reactnet"
    conv = nnb.BinaryConv2d(3, 2, 1, input_quantizer="identity",
                            weight_quantizer=layer.weight_quantizer)
    conv.weight.data[...] = np.array([[0.5, -2, 0.1], [-0.3, 0.3, 1.0]]).reshape(2, 3, 1, 1)
    out = conv(Tensor(np.ones((1, 3, 1, 1), np.float32)))
    np.testing.assert_allclose(out.data.ravel(), [0.866667, 0.533333], atol=1e-6)
    out.sum().backward()
    np.testing.assert_array_equal(conv.weight.grad.ravel(), [1, 0, 1, 1, 1, 1])


# ------------------------------------------------------------------- recipe and runs
TINY = dict(dataset="synthetic", width=0.125, limit_train=128, batch_size=64, epochs=1,
            queue=128, knn_bank=128, key_momentum=0.99)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A MoCo teacher (real ReActNet) and a step-1 contrastive+distill student, one epoch each."""
    root = tmp_path_factory.mktemp("s2bnn")
    run_training(s2bnn_config("contrastive", real=True, **TINY), root / "teacher", quiet=True)
    run_training(s2bnn_config("contrastive+distill", step=1, teacher=str(root / "teacher"),
                             **TINY), root / "step1", quiet=True)
    return root


def test_step1_has_real_weights_and_step2_binary_weights(runs):
    model, config = load_model(runs / "step1")
    assert config.weight_quantizer == "none"
    assert all(layer.weight_quantizer.name == "none" for _, layer in nnb.binary_layers(model))
    assert all(layer.input_quantizer.name == "identity" for _, layer in nnb.binary_layers(model))
    assert all(b.quantizer.name == "approx" for b in model.modules() if isinstance(b, nnb.RSign))
    step2 = s2bnn_config("contrastive", step=2, **TINY)
    assert step2.weight_quantizer is None and step2.optimizer == "adam"
    assert step2.schedule == "linear"


def test_step2_initialisation_copies_every_shared_weight(runs):
    config = s2bnn_config("contrastive+distill", step=2, init_from=str(runs / "step1"),
                         teacher=str(runs / "teacher"), **TINY)
    run = build_run(config)
    saved = load_state(runs / "step1" / "best.npz")
    state = run.model.state_dict()
    assert set(state) == set(saved["model"])
    for name, value in saved["model"].items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    keys = run.loss.key_encoder.state_dict()
    for name, value in saved["method"]["key_encoder"].items():
        np.testing.assert_array_equal(keys[name], value, err_msg=name)
    np.testing.assert_array_equal(run.loss.queue.keys, saved["method"]["queue"]["keys"])
    assert all(layer.weight_quantizer.name == "reactnet"
               for _, layer in nnb.binary_layers(run.model))


def test_step2_from_another_architecture_is_an_error(runs):
    config = s2bnn_config("contrastive", step=2, init_from=str(runs / "step1"),
                         **{**TINY, "width": 0.25})
    with pytest.raises(ValueError, match="another architecture"):
        build_run(config)


def test_teacher_with_another_projection_size_is_an_error(runs):
    with pytest.raises(ValueError, match="set --s2bnn-dim 128"):
        load_teacher(runs / "teacher", (1, 16, 16), dim=64)
    project, info = load_teacher(runs / "teacher", (1, 16, 16), dim=128)
    assert "MoCo projection" in info
    with no_grad():
        assert project(Tensor(np.zeros((2, 1, 16, 16), np.float32))).shape == (2, 128)


def test_queue_not_divisible_by_batch_and_missing_teacher_are_errors(runs):
    with pytest.raises(ValueError, match="multiple of the batch"):
        build_run(s2bnn_config("contrastive", **{**TINY, "queue": 100}))
    with pytest.raises(ValueError, match="needs a teacher"):
        build_run(s2bnn_config("distill", **TINY))
    with pytest.raises(ValueError, match="REAL weights"):
        build_run(s2bnn_config("contrastive", step=1, **TINY, weight_quantizer="reactnet"))


def test_cli_step1_selects_real_weights():
    parser = build_parser()
    args = parser.parse_args(["train", "--method", "s2bnn", "--s2bnn-step", "1",
                              "--s2bnn-variant", "contrastive"])
    assert args.weight_quantizer == "none"
    assert s2bnn_recipe.options_from_args(args)["step"] == 1
    args = parser.parse_args(["train", "--method", "s2bnn", "--s2bnn-step", "1",
                              "--weight-quantizer", "reactnet"])
    with pytest.raises(ValueError, match="REAL weights"):
        s2bnn_recipe.options_from_args(args)


def test_resume_is_bit_exact(runs, tmp_path):
    config = s2bnn_config("contrastive+distill", step=2, teacher=str(runs / "teacher"),
                         **{**TINY, "epochs": 2})
    full = run_training(config, tmp_path / "full", quiet=True)
    run_training(config, tmp_path / "half", quiet=True, stop_after=1)
    resumed = resume_training(tmp_path / "half", quiet=True)
    assert resumed.final["train_loss"] == full.final["train_loss"]
    a, b = load_state(tmp_path / "full" / "last.npz"), load_state(tmp_path / "half" / "last.npz")
    for name, value in a["method"]["key_encoder"].items():
        np.testing.assert_array_equal(value, b["method"]["key_encoder"][name])
    np.testing.assert_array_equal(a["method"]["queue"]["keys"], b["method"]["queue"]["keys"])


def test_recipe_owned_head_for_models_without_an_mlp_option(tmp_path):
    config = s2bnn_config("contrastive", real=True, **{**TINY, "model": "cnn", "width": 0.25})
    run_training(config, tmp_path / "cnn", quiet=True)
    project, info = load_teacher(tmp_path / "cnn", (1, 16, 16), dim=128)
    assert "recipe head" in info


def test_supervised_teacher_gives_class_logits(tmp_path):
    config = TrainConfig(model="reactnet", real=True, dataset="synthetic", width=0.125,
                         limit_train=128, batch_size=64, epochs=1)
    run_training(config, tmp_path / "sup", quiet=True)
    project, info = load_teacher(tmp_path / "sup", (1, 16, 16), dim=4)   # 4 synthetic classes
    assert "supervised" in info
    with pytest.raises(ValueError, match="set --s2bnn-dim 4"):
        load_teacher(tmp_path / "sup", (1, 16, 16), dim=128)


def test_pretrain_and_linear_eval_commands(tmp_path, capsys):
    out = tmp_path / "moco"
    assert main(["pretrain", "--method", "moco", "--real", "--dataset", "synthetic",
                 "--width", "0.125", "--limit-train", "128", "--batch-size", "64",
                 "--moco-k", "128", "--knn-bank", "128", "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 0
    model, config = load_model(out)
    assert config.real and config.method == "s2bnn"
    assert config.method_options["variant"] == "contrastive"
    assert main(["linear-eval", str(out), "--epochs", "2", "--quiet",
                 "--out", str(tmp_path / "lincls.json")]) == 0
    result = json.loads((tmp_path / "lincls.json").read_text())
    assert result["backbone_unchanged"] and 0 <= result["val_accuracy"] <= 1
    assert "backbone unchanged" in capsys.readouterr().out


def test_two_view_augmentation_on_gray_images(rng):
    x = rng.uniform(size=(6, 1, 16, 16)).astype(np.float32)
    aug = S2BNNAugment(1, (0.5,), (0.25,))
    v1, v2 = aug(x, np.random.default_rng(3))
    assert v1.shape == x.shape and v1.dtype == np.float32 and not np.allclose(v1, v2)
    again = aug(x, np.random.default_rng(3))
    np.testing.assert_array_equal(again[0], v1)
    assert len(S2BNNAugment(3, (0.5,) * 3, (0.25,) * 3, views=1)(
        rng.uniform(size=(2, 3, 16, 16)).astype(np.float32), rng)) == 1


# ------------------------------------------------------------------- linear evaluation
def test_linear_evaluation_leaves_the_backbone_bit_identical(runs):
    model, _ = load_model(runs / "step1")
    model.train()                                 # even when handed over in train mode
    before = {k: v.copy() for k, v in model.state_dict().items()}
    train, val = load_dataset("synthetic")
    result = linear_evaluation(model, train.subset(np.arange(128)), val, epochs=3, lr=0.1)
    after = model.state_dict()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert result["backbone_unchanged"] and 0 <= result["val_accuracy"] <= 1


def test_linear_classifier_step_decay_and_separable_data(rng):
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    result = train_linear(x, y, x, y, 2, epochs=10, lr=0.1, batch_size=50)
    lrs = [r["lr"] for r in result["history"]]
    assert lrs == pytest.approx([0.1] * 6 + [0.01] * 2 + [0.001] * 2)
    assert result["train_accuracy"] > 0.9


# ------------------------------------------------------------------- PyTorch parity
def test_losses_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    s, t = rng.normal(size=(6, 128)), rng.normal(size=(6, 128))
    st = Tensor(s, requires_grad=True)
    loss = distribution_loss(st, t, 0.2)
    loss.backward()
    ts = torch.tensor(s, requires_grad=True)
    p_t = torch.softmax(torch.tensor(t) / 0.2, 1)
    ref = torch.sum(-p_t * torch.log_softmax(ts / 0.2, 1), 1).mean()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    np.testing.assert_allclose(st.grad, ts.grad.numpy(), atol=1e-12)

    q = rng.normal(size=(4, 16))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = rng.normal(size=(4, 16))
    queue = rng.normal(size=(32, 16))
    qt = Tensor(q, requires_grad=True)
    loss = moco_infonce(qt, k, queue, 0.2)
    loss.backward()
    tq = torch.tensor(q, requires_grad=True)
    logits = torch.cat([(tq * torch.tensor(k)).sum(1, keepdim=True), tq @ torch.tensor(queue).T], 1)
    ref = torch.nn.functional.cross_entropy(logits / 0.2, torch.zeros(4, dtype=torch.long))
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    np.testing.assert_allclose(qt.grad, tq.grad.numpy(), atol=1e-12)

"""minibnn.evaluate: float and packed accuracy, the agreement check, robustness tables, and the
linear-evaluation guards, each against a closed form or an independent computation."""

import numpy as np
import pytest

from minibnn import Tensor, no_grad
from minibnn.data import load_dataset, transforms
from minibnn.engine import PackedModel, export
from minibnn.evaluate import (Agreement, RobustnessTable, corruption_accuracy, evaluate_packed,
                              evaluate_split, extract_embeddings, format_table, images_accuracy,
                              linear_evaluation, packed_agreement, packed_normalisation,
                              summarize)
from minibnn.models import build_model


@pytest.fixture(scope="module")
def val():
    return load_dataset("synthetic").val                 # 256 images (1, 16, 16), 4 classes


@pytest.fixture(scope="module")
def model(val):
    """A binary CNN whose batch norms hold real statistics (forward passes in train mode)."""
    net = build_model("cnn", in_channels=1, image_size=16, num_classes=4, width=0.25, rng=0)
    x = transforms.normalize(transforms.to_float(val.x), val.mean, val.std)
    net.train()
    with no_grad():
        for i in range(0, len(x), 64):
            net(Tensor(x[i:i + 64]))
    return net.eval()


@pytest.fixture(scope="module")
def packed(model, val, tmp_path_factory):
    meta = {"model_name": "cnn", "dataset": "synthetic", "mean": list(val.mean),
            "std": list(val.std)}
    path = tmp_path_factory.mktemp("packed") / "cnn.npz"
    export(model, meta=meta).save(path)
    return PackedModel.load(path)


def _reference(model, val):
    """Accuracy and mean cross-entropy written out with NumPy in float64, all images at once."""
    x = transforms.normalize(transforms.to_float(val.x), val.mean, val.std)
    with no_grad():
        z = model(Tensor(x)).data.astype(np.float64)                          # (N, K)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return float(np.mean(z.argmax(1) == val.y)), float(-logp[np.arange(len(val.y)), val.y].mean())


# ----------------------------------------------------------------------- float accuracy
def test_evaluate_split_equals_the_numpy_formula(model, val):
    accuracy, loss = _reference(model, val)
    result = evaluate_split(model, val, batch_size=100)
    assert result["val_accuracy"] == accuracy
    assert result["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert evaluate_split(model, val, batch_size=7, limit=50)["val_accuracy"] == \
        evaluate_split(model, val.subset(np.arange(50)), batch_size=50)["val_accuracy"]


def test_images_accuracy_matches_evaluate_split(model, val):
    images = transforms.to_float(val.x)                                     # [0, 1]
    got = images_accuracy(model, images, val.y, val.mean, val.std, batch_size=33)
    assert got == evaluate_split(model, val)["val_accuracy"]


# ---------------------------------------------------------------------- packed accuracy
def test_packed_accuracy_and_loss_equal_the_float_model(model, packed, val):
    float_result = evaluate_split(model, val)
    packed_result = evaluate_packed(packed, val, batch_size=64)
    assert packed_result["num_images"] == len(val)
    assert packed_result["val_accuracy"] == float_result["val_accuracy"]
    assert packed_result["val_loss"] == pytest.approx(float_result["val_loss"], rel=1e-4)


def test_packed_agreement_is_exact_and_counts_limit(model, packed, val):
    agreement = packed_agreement(packed, model, val, limit=100, batch_size=30)
    assert agreement == Agreement(100, 100) and agreement.exact and agreement.rate == 1.0
    assert packed_agreement(packed, model, val).total == len(val)


def test_packed_agreement_sees_a_different_model(packed, val):
    other = build_model("cnn", in_channels=1, image_size=16, num_classes=4, width=0.25, rng=1)
    agreement = packed_agreement(packed, other.eval(), val)
    assert not agreement.exact and 0 <= agreement.same < agreement.total


def test_packed_normalisation_uses_the_file_only_for_its_own_dataset(packed, val):
    packed.meta["mean"], packed.meta["std"] = [0.25], [0.5]
    try:
        assert packed_normalisation(packed, "synthetic", val) == ([0.25], [0.5])
        assert packed_normalisation(packed, "mnist-t10k", val) == (val.mean, val.std)
    finally:
        packed.meta["mean"], packed.meta["std"] = list(val.mean), list(val.std)


def test_evaluate_packed_refuses_an_empty_split(packed, val):
    with pytest.raises(ValueError, match="at least one image"):
        evaluate_packed(packed, val.subset(np.arange(0)))


# -------------------------------------------------------------------------- robustness
class _Constant:
    """A model that ignores its input and always predicts class k."""

    def __init__(self, k: int, classes: int = 4):
        self.logits = np.eye(classes, dtype=np.float32)[k]

    def eval(self):
        return self

    def __call__(self, x):
        return Tensor(np.tile(self.logits, (x.shape[0], 1)))


def test_corruption_accuracy_of_an_input_blind_model_is_its_label_frequency(val):
    tables = corruption_accuracy({"zero": _Constant(0), "two": _Constant(2)}, val,
                                 ["gaussian_noise", "contrast"], (1, 3), limit=100)
    for name, k in (("zero", 0), ("two", 2)):
        share = float(np.mean(val.y[:100] == k))
        assert tables[name].clean_accuracy == share
        np.testing.assert_array_equal(tables[name].accuracy, np.full((2, 2), share))


def test_mce_of_a_two_corruption_table_by_hand():
    # model errors 1 - acc: rows [0.2, 0.4], [0.5, 0.7]; clean error 0.1
    model = RobustnessTable("m", ["gaussian_noise", "contrast"], [1, 2], 0.9,
                            np.array([[0.8, 0.6], [0.5, 0.3]]), 10)
    # baseline errors rows [0.3, 0.5], [0.5, 0.5]; clean error 0.2
    base = RobustnessTable("b", model.corruptions, [1, 2], 0.8,
                           np.array([[0.7, 0.5], [0.5, 0.5]]), 10)
    s = summarize(model, base)
    ce = [(0.2 + 0.4) / (0.3 + 0.5), (0.5 + 0.7) / (0.5 + 0.5)]            # 0.75, 1.2
    rce = [(0.1 + 0.3) / (0.1 + 0.3), (0.4 + 0.6) / (0.3 + 0.3)]           # 1.0, 5/3
    np.testing.assert_allclose(s["ce"], ce)
    np.testing.assert_allclose(s["relative_ce"], rce)
    assert s["mce"] == pytest.approx(0.975)
    assert s["relative_mce"] == pytest.approx((1.0 + 5 / 3) / 2)
    assert s["mean_corruption_error_unnormalised"] == pytest.approx(0.45)
    text = format_table(model, base)
    assert "mCE 0.9750" in text and "relative mCE 1.3333" in text and "note:" not in text


# ---------------------------------------------------------------------- linear evaluation
def test_extract_embeddings_is_the_models_embedding_in_any_batching(model, val):
    x = transforms.normalize(transforms.to_float(val.x[:40]), val.mean, val.std)
    with no_grad():
        want = model.embedding(Tensor(x)).data
    small = val.subset(np.arange(40))
    got = extract_embeddings(model, small, batch_size=7)
    assert got.shape == want.shape and got.dtype == np.float32
    # float32 BLAS sums in a batch-dependent order: equal to rounding
    np.testing.assert_allclose(got, extract_embeddings(model, small, batch_size=40),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_linear_evaluation_refuses_a_backbone_that_changed(val):
    net = build_model("cnn", in_channels=1, image_size=16, num_classes=4, width=0.25, rng=0)
    embed = net.embedding

    def drifting(x):                                   # a backbone that updates itself
        first = next(iter(net.parameters()))
        first.data[...] += 1.0
        return embed(x)

    net.embedding = drifting
    small = val.subset(np.arange(32))
    with pytest.raises(RuntimeError, match="changed the frozen backbone"):
        linear_evaluation(net, small, small, epochs=1)

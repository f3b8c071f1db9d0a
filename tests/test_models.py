"""Models: shapes, stage features, gradients to every parameter, determinism, registry errors."""

import numpy as np
import pytest

from minibnn import Tensor, functional as F, no_grad
from minibnn.models import (MODELS, Backbone, MLPHead, ProjectionHead, build_model, list_models,
                            option_names)
from minibnn.models.reactnet import REACTNET_A, AvgDown2
from minibnn.models.resnet import ShortcutA
from minibnn.nn import Conv2d
from minibnn.nn.binary import BinaryConv2d, binary_layers, set_ede

# small widths keep every model at a few ms per batch of 2
WIDTHS = {"mlp": 0.125, "cnn": 0.25, "vgg_small": 0.125, "resnet20": 0.5, "resnet18": 0.0625,
          "reactnet": 0.125, "reactnet_a": 0.0625}
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
NUM_CLASSES = {"mnist": 10, "cifar": 7}


def make(name, binary=True, data="mnist", seed=0, **options):
    c, s, _ = SHAPES[data]
    return build_model(name, binary=binary, in_channels=c, image_size=s,
                       num_classes=NUM_CLASSES[data], width=WIDTHS[name], rng=seed, **options)


def batch(data="mnist", n=2, seed=0):
    return Tensor(np.random.default_rng(seed).normal(size=(n,) + SHAPES[data]).astype(np.float32))


CASES = [(name, binary, data) for name in MODELS for binary in (True, False)
         for data in ("mnist", "cifar")]


@pytest.mark.parametrize("name, binary, data", CASES)
def test_shapes_features_and_gradients_reach_every_parameter(name, binary, data):
    model = make(name, binary, data)
    x = batch(data)
    logits, features, emb = model.forward_all(x)
    assert logits.shape == (2, NUM_CLASSES[data])
    assert emb.shape == (2, model.embedding_dim)
    assert len(features) >= 2 and all(f.shape[0] == 2 for f in features)
    spatial = [f.shape[2:] for f in features]
    assert all(a >= b for a, b in zip(spatial[:-1], spatial[1:])), spatial   # non-increasing
    (F.cross_entropy(logits, np.array([0, 1])) + emb.mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reached {pname}"
        assert p.grad.shape == p.shape and np.all(np.isfinite(p.grad)), pname


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_family_agrees_in_one_pass(name):
    model = make(name).eval()
    x = batch()
    with no_grad():
        out = model.forward_all(x)
        logits, feats = model.forward_with_features(x)
        tol = dict(rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(model(x).data, out.logits.data, **tol)
        np.testing.assert_allclose(logits.data, out.logits.data, **tol)
        np.testing.assert_allclose(model.embedding(x).data, out.embedding.data, **tol)
        np.testing.assert_allclose(model.penultimate(x).data, out.embedding.data, **tol)
        assert [f.shape for f in feats] == [f.shape for f in model.forward_features(x)]


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_network_and_twins_share_keys(name):
    a, b, c = make(name, seed=3), make(name, seed=3), make(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert list(sa) == list(sb)
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa)
    real = make(name, binary=False, seed=3)                # the twin loads the BNN's weights
    assert {k: v.shape for k, v in real.state_dict().items()} == {k: v.shape for k, v in sa.items()}
    real.load_state_dict(sa)


def test_generator_and_int_seed_build_the_same_network():
    a = build_model("cnn", rng=5)
    b = build_model("cnn", rng=np.random.default_rng(5))
    assert all(np.array_equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_registry_lists_models_and_rejects_unknown_names_and_options():
    assert list_models() == list(MODELS)
    assert {"mlp", "cnn", "vgg_small", "resnet20", "resnet18", "reactnet"} <= set(list_models())
    with pytest.raises(ValueError, match="valid names: mlp, cnn, vgg_small"):
        build_model("alexnet")
    with pytest.raises(ValueError, match="unknown model 'resnet19'; closest valid name: "
                                         "'resnet18'"):
        build_model("resnet19")
    with pytest.raises(ValueError, match="unknown option.*'depth'.*valid options: activation"):
        build_model("cnn", depth=3)
    with pytest.raises(ValueError, match="binary model only"):
        build_model("cnn", binary=False, input_quantizer="ste")
    assert "stage_channels" in option_names("reactnet")
    assert type(build_model("vgg-small", width=0.125, rng=0)).__name__ == "VGGSmall"


@pytest.mark.parametrize("name", list(MODELS))
def test_wrong_input_shape_names_the_expected_shape(name):
    model = make(name, data="cifar")
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\), got \(2, 1, 28, 28\)"):
        model(batch("mnist"))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        model(Tensor(np.zeros((3, 32, 32), np.float32)))


@pytest.mark.parametrize("name, expected", [("mlp", ("ste", "xnor")), ("cnn", ("ste", "xnor")),
                                            ("vgg_small", ("ede", "irnet")),
                                            ("resnet20", ("ede", "irnet")),
                                            ("resnet18", ("ede", "irnet"))])
def test_default_quantizers_and_overrides(name, expected):
    layers = [m for _, m in binary_layers(make(name))]
    names = {(m.input_quantizer.name, m.weight_quantizer.name) for m in layers}
    assert layers and names == {expected}
    override = make(name, input_quantizer="approx", weight_quantizer="sign")
    assert {(m.input_quantizer.name, m.weight_quantizer.name)
            for _, m in binary_layers(override)} == {("approx", "sign")}
    assert not list(binary_layers(make(name, binary=False)))


DOCUMENTED_DEFAULTS = {"mlp": ("ste", "xnor"), "cnn": ("ste", "xnor"),
                       "vgg_small": ("ede", "irnet"), "resnet20": ("ede", "irnet"),
                       "resnet18": ("ede", "irnet"), "reactnet": ("approx", "reactnet"),
                       "reactnet_a": ("approx", "reactnet")}


def test_prologue_defaults_are_the_documented_ones_and_the_twin_has_none():
    assert set(DOCUMENTED_DEFAULTS) == set(MODELS)
    for name, expected in DOCUMENTED_DEFAULTS.items():
        assert MODELS[name].default_quantizers == expected
        assert make(name).quantizers == expected and make(name).binary
        assert make(name, weight_quantizer="none").quantizers == (expected[0], "none")
        assert make(name, binary=False).quantizers == (None, None)
        assert make(name).input_shape == (1, 28, 28)


def test_prologue_gives_layers_from_one_generator_in_build_order():
    class Tiny(Backbone):
        def __init__(self, binary=True, rng=None, **quantizers):
            super().__init__()
            p = self.prologue(("approx", "sign"), 2, 4, 0.5, binary, quantizers.get("qin"),
                              quantizers.get("qw"), rng)
            self.conv = p.conv(2, p.channels([8])[0], 3, 1, 1)
            self.act = p.act()
            self.fc = p.linear(4, 3)
            self.rng = p.rng

    gen = np.random.default_rng(7)
    tiny = Tiny(rng=gen)
    assert tiny.rng is gen and tiny.input_shape == (2, 4, 4)
    assert tiny.quantizers == ("approx", "sign")
    assert tiny.conv.weight.shape == (4, 2, 3, 3) and type(tiny.act).__name__ == "Hardtanh"
    assert (tiny.fc.input_quantizer.name, tiny.fc.weight_quantizer.name) == ("approx", "sign")
    twin = Tiny(binary=False, rng=7)                    # same draws, in the same order
    assert type(twin.act).__name__ == "ReLU" and not list(binary_layers(twin))
    np.testing.assert_array_equal(twin.conv.weight.data, tiny.conv.weight.data)
    np.testing.assert_array_equal(twin.fc.weight.data, tiny.fc.weight.data)
    with pytest.raises(ValueError, match="Tiny: input_quantizer/weight_quantizer apply to the "
                                         "binary model only"):
        Tiny(binary=False, qin="ste")
    with pytest.raises(ValueError, match="applies to weights only.*closest valid name: 'ste'"):
        Tiny(qin="xnor")


def test_irnet_models_respond_to_set_ede():
    assert set_ede(make("resnet20"), 0.5, 2.0) > 0


def test_first_and_last_layers_stay_full_precision():
    for name in MODELS:
        model = make(name)
        names = [n for n, _ in binary_layers(model)]
        assert not any(n.startswith(("stem", "classifier", "input_layer")) for n in names), names
        assert not any(n in ("stages.0.0", "layers.0.0") for n in names), (name, names)


def test_vgg_small_classifier_input_follows_image_size():
    assert build_model("vgg_small", width=0.25, image_size=28, rng=0).embedding_dim == 128 * 3 * 3
    cifar = build_model("vgg_small", in_channels=3, image_size=32, rng=0)
    assert cifar.classifier.weight.shape == (10, 512 * 4 * 4)


def test_resnet_shortcut_options_and_cmim_variant():
    default = build_model("resnet18", width=0.0625, rng=0)
    assert isinstance(default.stages[1][0].downsample[0], Conv2d)           # FP 1x1 (IR-Net)
    cmim = build_model("resnet18", width=0.0625, rng=0, shortcut="binary", stem_activation=False)
    assert isinstance(cmim.stages[1][0].downsample[0], BinaryConv2d)        # binary 1x1 (CMIM)
    assert len(cmim.stem) == 2                                              # conv + BN only
    r20 = build_model("resnet20", width=1.0, rng=0)
    assert isinstance(r20.stages[1][0].downsample, ShortcutA)
    assert sum(isinstance(m, BinaryConv2d) for m in r20.modules()) == 18     # 3 stages x 3 x 2
    with pytest.raises(ValueError, match="shortcut must be one of"):
        build_model("resnet20", shortcut="b")


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    x = np.arange(2 * 3 * 5 * 5, dtype=np.float32).reshape(2, 3, 5, 5)
    y = ShortcutA(3, 6, 2)(Tensor(x)).data                                  # (2, 6, 3, 3)
    assert y.shape == (2, 6, 3, 3)
    np.testing.assert_array_equal(y[:, 1:4], x[:, :, ::2, ::2])
    assert not y[:, 0].any() and not y[:, 4:].any()


def test_avg_down_matches_ceil_mode_average_on_odd_and_even_maps():
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 4)).astype(np.float32)
    y = AvgDown2()(Tensor(x)).data                                          # (1, 2, 3, 2)
    expected = np.zeros((1, 2, 3, 2), np.float32)
    for i in range(3):
        for j in range(2):
            expected[..., i, j] = x[..., 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(2, 3))
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_reactnet_a_full_config_and_its_block_structure():
    model = build_model("reactnet_a", in_channels=3, image_size=32, width=0.0625, rng=0)
    assert len(model.blocks) == 13 and model.embedding_dim == 64               # 1024 / 16
    feats = model.forward_features(batch("cifar"))
    assert [f.shape[1:] for f in feats] == [(4, 16, 16), (8, 8, 8), (16, 4, 4), (32, 2, 2),
                                            (64, 1, 1)]
    layers = dict(binary_layers(model))
    assert len(layers) == 13 + 13 + 5                # a 3x3 per block, 1x1s doubled in 5 blocks
    assert {(m.input_quantizer.name, m.weight_quantizer.name) for m in layers.values()} == {
        ("identity", "reactnet")}                   # the RSign in front binarizes
    assert all(b.sign3.quantizer.name == "approx" for b in model.blocks)
    assert len(REACTNET_A) == 14


def test_reactnet_step1_mlp_head_and_hardbinary_init():
    step1 = build_model("reactnet", width=0.125, rng=0, weight_quantizer="none", mlp_head=True)
    assert {m.weight_quantizer.name for _, m in binary_layers(step1)} == {"none"}
    assert step1(batch()).shape == (2, 128)
    assert isinstance(step1.classifier, MLPHead)
    hard = build_model("reactnet", width=0.125, rng=0, weight_init="hardbinary")
    for _, m in binary_layers(hard):
        assert 0 <= m.weight.data.min() and m.weight.data.max() < 1e-3
    with pytest.raises(ValueError, match="weight_init"):
        build_model("reactnet", weight_init="zeros")
    with pytest.raises(ValueError, match="out_channels must be in_channels or twice"):
        build_model("reactnet", stage_channels=(32, 48), rng=0)


def test_heads_shapes_and_unit_norm():
    x = batch().flatten(1)                                            # (2, 784)
    z = ProjectionHead(784, 16, rng=0)(x)
    assert z.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(z.data, axis=1), 1.0, rtol=1e-5)
    assert MLPHead(784, 32, 8, rng=0)(x).shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(MLPHead(784, 32, 8, normalize=True, rng=0)(x).data,
                                              axis=1), 1.0, rtol=1e-5)


def test_mlp_layout_and_width():
    model = build_model("mlp", rng=0)
    assert model.input_layer[0].weight.shape == (512, 784)
    assert [m.weight.shape for _, m in binary_layers(model)] == [(512, 512), (512, 512)]
    assert model.classifier.weight.shape == (10, 512)
    assert build_model("mlp", width=0.5, hidden_sizes=(100, 60), rng=0).embedding_dim == 30


def test_real_twin_uses_relu_unless_told_otherwise():
    from minibnn.nn import Hardtanh, ReLU
    kinds = lambda m: {type(x) for x in m.modules()} & {Hardtanh, ReLU}     # noqa: E731
    assert kinds(make("resnet20")) == {Hardtanh}
    assert kinds(make("resnet20", binary=False)) == {ReLU}
    assert kinds(make("resnet20", binary=False, activation="hardtanh")) == {Hardtanh}

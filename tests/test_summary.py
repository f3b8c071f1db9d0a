"""summary(): per-layer counts checked by hand on tiny models, totals, OPs, clean restoration."""

import pytest

from minibnn.models import MODELS, build_model
from minibnn.models.mlp import MLP
from minibnn.nn import Conv2d, Flatten, Sequential
from minibnn.nn.binary import BinaryConv2d, BinaryLinear, binary_layers
from minibnn.summary import human_bytes, human_count, summary


def test_tiny_mlp_counts_by_hand():
    # 1x4x4 -> FP Linear 16->8 (no bias) -> BN1d(8) -> Hardtanh -> binary 8->6 (xnor) -> BN1d(6)
    #       -> Hardtanh -> FP Linear 6->3 (+bias)
    model = MLP(in_channels=1, image_size=4, num_classes=3, hidden_sizes=(8, 6), rng=0)
    s = summary(model)
    rows = {r.name: r for r in s.layers}
    assert (rows["input_layer.0"].real_params, rows["input_layer.0"].flops) == (128, 128)
    assert rows["input_layer.1"].real_params == 16                       # gamma, beta of 8
    hidden = rows["hidden.0.0"]
    assert (hidden.real_params, hidden.binary_params, hidden.scales) == (0, 48, 6)
    assert (hidden.flops, hidden.bops, hidden.output_shape) == (0, 48, (6,))
    assert hidden.bits == 48 + 6 * 32
    assert rows["classifier"].real_params == 18 + 3
    assert s.real_params == 128 + 16 + 12 + 21 == 177
    assert s.binary_params == 48 and s.scales == 6
    assert s.bits == 177 * 32 + 48 + 6 * 32 == 5904
    assert s.packed_bytes == 738 and s.float32_bytes == (177 + 48) * 4 == 900
    assert s.compression == pytest.approx(900 / 738)
    assert (s.flops, s.bops) == (128 + 18, 48)
    assert s.ops == pytest.approx(146 + 48 / 64)


def test_tiny_conv_net_counts_by_hand_with_every_weight_rule():
    model = Sequential(
        Conv2d(1, 2, 3, padding=1, rng=0),                              # FP: 18 + 2 params
        BinaryConv2d(2, 4, 3, stride=2, padding=1, weight_quantizer="sign", rng=0),  # no scale
        BinaryConv2d(4, 4, 1, weight_quantizer="none", rng=0),          # real weights: FLOPs
        Flatten(),
        BinaryLinear(36, 3, bias=True, input_quantizer="identity", weight_quantizer="reactnet",
                     rng=0))                                            # real inputs: FLOPs
    s = summary(model, (1, 5, 5))
    rows = {r.name: r for r in s.layers}
    assert [r.output_shape for r in s.layers] == [(2, 5, 5), (4, 3, 3), (4, 3, 3), (36,), (3,)]
    assert (rows["0"].real_params, rows["0"].flops, rows["0"].bops) == (20, 2 * 25 * 9, 0)
    assert (rows["1"].binary_params, rows["1"].scales, rows["1"].bops) == (72, 0, 36 * 18)
    assert (rows["2"].real_params, rows["2"].binary_params, rows["2"].flops) == (16, 0, 36 * 4)
    assert (rows["4"].real_params, rows["4"].binary_params, rows["4"].scales) == (3, 108, 3)
    assert (rows["4"].flops, rows["4"].bops) == (108, 0)
    assert (s.real_params, s.binary_params, s.scales) == (39, 180, 3)
    assert (s.flops, s.bops) == (450 + 144 + 108, 648)
    assert s.bits == 39 * 32 + 180 + 3 * 32 == 1524
    assert s.packed_bytes == 191 and s.float32_bytes == 219 * 4
    assert s.ops == pytest.approx(702 + 648 / 64)


def test_small_cnn_counts_by_hand():
    # width 0.125 on 1x8x8: channels 4, 8, 8, 16; spatial 8 -> 4 -> 2 -> 2 -> 1
    s = summary(build_model("cnn", image_size=8, width=0.125, rng=0))
    assert s.real_params == 36 + 8 + 16 + 16 + 32 + (16 * 10 + 10)      # stem, 4 BNs, classifier
    assert s.binary_params == 4 * 8 * 9 + 8 * 8 * 9 + 8 * 16 * 9 == 2016
    assert s.scales == 8 + 8 + 16
    assert s.flops == 4 * 64 * 9 + 160                                   # stem + classifier
    assert s.bops == 8 * 16 * 36 + 8 * 4 * 72 + 16 * 4 * 72 == 11520
    assert s.ops == pytest.approx(2464 + 11520 / 64)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_totals_are_consistent(name):
    model = build_model(name, width=0.125, rng=0)
    s = summary(model)
    assert s.real_params + s.binary_params == model.num_parameters()
    assert s.binary_params == sum(m.weight.size for _, m in binary_layers(model))
    assert s.ops == s.flops + s.bops / 64
    assert s.bops > 0 and s.flops > 0
    assert all(r.output_shape is not None for r in s.layers)             # every layer ran
    assert "OPs = FLOPs + BOPs/64" in str(s)


def test_reactnet_step1_counts_real_weights_and_flops():
    s = summary(build_model("reactnet", width=0.125, rng=0, weight_quantizer="none"))
    assert s.binary_params == 0 and s.bops == 0 and s.scales == 0


def test_summary_restores_forward_and_modes_even_on_error():
    model = build_model("resnet20", width=0.25, rng=0)
    model.train()
    summary(model)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        summary(model, (1, 27, 27))
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(m.training for m in model.modules())


def test_table_is_aligned_and_readable():
    text = str(summary(build_model("cnn", rng=0)))
    lines = text.splitlines()
    table = [ln for ln in lines if ln.startswith(("Layer", "stages", "classifier", "total", "---"))]
    assert len(table) == 1 + 16 + 1 + 4                     # header, 16 layers, total, 4 rules
    assert len({len(ln) for ln in table}) == 1              # right-aligned numbers: one width
    assert "packed vs" in text and "x smaller" in text


def test_human_units():
    assert [human_count(n) for n in (0, 999, 1000, 12345, 2.5e6, 3e9)] == [
        "0", "999", "1K", "12.3K", "2.5M", "3G"]
    assert [human_bytes(n) for n in (12, 2048, 3 * 2**20)] == ["12 B", "2.0 KiB", "3.0 MiB"]


def test_summary_needs_an_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        summary(Sequential(Flatten()))


def test_reactnet_a_at_224_matches_the_published_flops_and_ops():
    # S2-BNN / ReActNet README: 0.12 x 10^8 FLOPs and 0.87 x 10^8 OPs for ReActNet-A on ImageNet
    s = summary(build_model("reactnet_a", in_channels=3, image_size=224, num_classes=1000, rng=0))
    assert round(s.flops / 1e8, 2) == 0.12 and round(s.ops / 1e8, 2) == 0.87
    assert s.flops == 112 * 112 * 32 * 27 + 1024 * 1000                 # FP stem + FP fc

"""engine export/runtime: PackedModel == model.eval() on every architecture; accumulators exact;
the fused stage == its NumPy twin; file round trip and damaged files; size report; bad input;
the `minibnn export` / `minibnn eval --packed` commands."""

import json

import numpy as np
import pytest

from minibnn import cli
from minibnn.autograd import Tensor, no_grad
from minibnn.data import load_dataset, transforms
from minibnn.engine import bitpack, conv, gemm, stage
from minibnn.engine.export import ExportError, export
from minibnn.engine.graph import Stage
from minibnn.engine.runtime import PackedFormatError, PackedModel
from minibnn.models import build_model
from minibnn.nn import BatchNorm1d, BatchNorm2d, Tanh, binary_layers

ARCHS = ["mlp", "cnn", "vgg_small", "resnet20", "resnet18", "reactnet"]
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}


def perturb_batchnorm(model, rng):
    """Move every BN away from its init (mean 0, var 1, gamma 1, beta 0) so folding is tested."""
    for m in model.modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            c = m.num_features
            m.running_mean[:] = rng.normal(0, 2, c)
            m.running_var[:] = rng.uniform(0.5, 4, c)
            m.weight.data[:] = rng.normal(1, 0.5, c)      # some gammas negative
            m.bias.data[:] = rng.normal(0, 0.5, c)


def make(name, shape, seed=0, **kw):
    model = build_model(name, in_channels=shape[0], image_size=shape[1], width=0.25, rng=seed, **kw)
    perturb_batchnorm(model, np.random.default_rng(seed))
    return model.eval()


def record_binary_inputs(model) -> dict:
    """Wrap each binary layer's forward to keep the input it receives (the eval model's)."""
    store = {}
    for name, layer in binary_layers(model):
        def forward(x, _f=layer.forward, _n=name):
            store[_n] = x.data.copy()
            return _f(x)
        layer.forward = forward
    return store


def check_against_model(model, packed, x):
    """Predictions equal, logits close, every binary layer's input signs and int32
    accumulators equal the float64 simulation from the eval model's own layer inputs."""
    store = record_binary_inputs(model)
    with no_grad():
        ref = model(Tensor(x)).data
    trace = packed.trace(x)
    out = packed(x)
    np.testing.assert_array_equal(out, trace.output)           # in-kernel thresholds == stages
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    layers = dict(binary_layers(model))
    assert set(trace.accumulators) == set(layers)
    for node in packed.nodes:
        for name, _, _ in getattr(node, "sources", []):
            xin, layer = store[name], layers[name]
            s, w = np.where(xin < 0, -1.0, 1.0), np.where(layer.binary_weight() < 0, -1.0, 1.0)
            if xin.ndim == 4:
                expected = conv.binary_conv2d_reference(s, w, layer.stride, layer.padding)
                expected, signs = expected.transpose(0, 2, 3, 1), bitpack.pack_nhwc(xin)
            else:
                expected, signs = gemm.xnor_gemm_reference(s, w), bitpack.pack_rows(xin)
            np.testing.assert_array_equal(trace.registers[node.src], signs, err_msg=name)
            np.testing.assert_array_equal(trace.accumulators[name], expected, err_msg=name)


@pytest.fixture(scope="module")
def mnist_val():
    _, val = load_dataset("mnist-t10k")
    x = transforms.normalize(val.x[:120].astype(np.float32) / 255, val.mean, val.std)
    return x.astype(np.float32)


# ------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("data", ["mnist", "cifar"])
@pytest.mark.parametrize("name", ARCHS)
def test_export_equals_eval_model_on_random_inputs(name, data):
    shape = SHAPES[data]
    model = make(name, shape)
    x = np.random.default_rng(1).normal(size=(3,) + shape).astype(np.float32)
    check_against_model(model, export(model), x)


@pytest.mark.parametrize("name", ARCHS)
def test_export_equals_eval_model_on_mnist_validation_images(name, mnist_val):
    model = make(name, SHAPES["mnist"], seed=2)
    check_against_model(model, export(model), mnist_val[:40])
    with no_grad():
        ref = model(Tensor(mnist_val)).data.argmax(1)
    np.testing.assert_array_equal(export(model).predict(mnist_val, batch_size=100), ref)


@pytest.mark.parametrize("options", [dict(shortcut="binary", stem_activation=False),
                                     dict(activation="relu")])
def test_resnet_variants_export_exactly(options):
    model = make("resnet18", SHAPES["cifar"], **options)
    x = np.random.default_rng(3).normal(size=(2,) + SHAPES["cifar"]).astype(np.float32)
    check_against_model(model, export(model), x)


def test_reactnet_mlp_head_exports():
    model = make("reactnet", SHAPES["mnist"], mlp_head=True)
    x = np.random.default_rng(4).normal(size=(2,) + SHAPES["mnist"]).astype(np.float32)
    check_against_model(model, export(model), x)


def test_exact_ties_use_sign_zero_is_plus_one():
    """Untouched BN (mean 0, beta 0) puts a threshold exactly at acc = 0; with unscaled sign
    weights the float model's conv is exact too, and both give sign(0) = +1."""
    model = build_model("cnn", width=0.25, weight_quantizer="sign", rng=5).eval()
    x = np.random.default_rng(5).normal(size=(4, 1, 28, 28)).astype(np.float32)
    check_against_model(model, export(model), x)


# ------------------------------------------------------------------------ the fused stage
@pytest.mark.parametrize("case", range(6))
def test_stage_kernel_equals_numpy_twin(case):
    rng = np.random.default_rng(case)
    m = [5, 64, 70, 130, 8, 16][case]
    x = rng.integers(-40, 40, size=(2, 5, 6, m)).astype(np.int32)
    if case % 2:
        x = x.astype(np.float32) * np.float32(0.37)
    v = {k: rng.normal(size=m).astype(np.float32) for k in
         ("alpha", "mean", "gamma", "beta", "b_in", "slope", "b_out", "sign_bias")}
    v["alpha"], v["inv_std"] = np.abs(v["alpha"]), rng.uniform(0.2, 2, m).astype(np.float32)
    act = ["identity", "hardtanh", "relu", "rprelu"][case % 4]
    pool = 2 if case in (1, 4) else 1
    cr, off, reps, stride = [(m, 0, 1, 1), (m, 0, 1, 1), (m // 2, m // 4, 1, 2),
                             (m // 2, 0, 2, 1), (m // 2, 0, 2, 1), (1, 3, 1, 1)][case]
    res = rng.normal(size=(2, 5 // pool * stride, 6 // pool * stride, cr)).astype(np.float32)
    args = (x, pool, v["alpha"], v["mean"], v["inv_std"], v["gamma"], v["beta"], res, stride,
            off, reps, act, -1.0, 1.0, v["b_in"], v["slope"], v["b_out"], v["sign_bias"])
    out, bits = stage.stage(*args, want_out=True, want_bits=True)
    ref_out, ref_bits = stage.stage_reference(*args)
    np.testing.assert_array_equal(out, ref_out)                # bit for bit: same float32 ops
    np.testing.assert_array_equal(bits, ref_bits)


@pytest.mark.parametrize("sign_bias", [None, "zeros", "negative zeros", "float64 underflow"])
def test_stage_without_sign_bias_packs_exactly_as_the_twin(sign_bias):
    """A zero sign bias is skipped inside the kernel; relu's exact zeros and -0.0 outputs
    (beta = -0.0 on a zeroed channel) must still pack as +1."""
    rng = np.random.default_rng(3)
    m = 70
    x = rng.integers(-40, 40, size=(2, 3, 4, m)).astype(np.int32)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    gamma, beta = rng.normal(size=m).astype(np.float32), rng.normal(size=m).astype(np.float32)
    gamma[:5], beta[:5] = 0.0, -0.0                             # t = 0 * ... + -0.0
    sb = {None: None, "zeros": zeros, "negative zeros": -zeros}.get(sign_bias)
    if sign_bias == "zeros":
        sb = sb.astype(np.float64)                               # cast to float32 by both
    for act in ("relu", "identity"):
        args = (x, 1, ones, zeros, ones, gamma, beta)
        out, bits = stage.stage(*args, act=act, sign_bias=sb, want_out=True, want_bits=True)
        ref_out, ref_bits = stage.stage_reference(*args, act=act, sign_bias=sb)
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(bits, ref_bits)
        assert (out == 0).any()
    if sign_bias == "float64 underflow":                         # t + sb < 0 only in float64:
        beta = np.full(1, 1.4e-45, np.float32)                   # both sides compare in float32
        sb = -beta.astype(np.float64) * (1 + 2.0 ** -30)
        args = (np.zeros((1, 1, 1, 1), np.int32), 1, ones[:1], zeros[:1], ones[:1], ones[:1],
                beta)
        _, bits = stage.stage(*args, sign_bias=sb, want_out=False, want_bits=True)
        _, ref_bits = stage.stage_reference(*args, sign_bias=sb)
        np.testing.assert_array_equal(bits, ref_bits)


@pytest.mark.parametrize("slope", [0.25, -0.5])
def test_integer_threshold_reproduces_the_stage(slope):
    rng = np.random.default_rng(7)
    m, k = 9, 40
    arrays = dict(alpha=rng.uniform(0.1, 1, m), mean=rng.normal(0, 5, m), beta=rng.normal(0, 1, m),
                  inv_std=rng.uniform(0.5, 2, m), gamma=rng.normal(0, 1, m))
    arrays["gamma"][0], arrays["alpha"][1] = 0.0, 0.0          # constant channels
    b_out = rng.normal(0, 0.1, m)
    arrays["mean"][2], arrays["beta"][2], b_out[2] = 0.0, 0.0, -0.05   # -1 only near u = 0
    st = Stage(m, act="rprelu", bits="b", b_in=np.zeros(m), slope=np.full(m, slope),
               b_out=b_out, **arrays)
    folded = st.integer_threshold(k)
    if slope < 0:                          # PReLU with a negative slope is not monotone
        assert folded is None
        return
    acc = np.arange(-k, k + 1, dtype=np.int32)[:, None].repeat(m, axis=1)      # (2k+1, M)
    regs = {}
    st.apply(acc, regs)
    np.testing.assert_array_equal(gemm.threshold_reference(acc, *folded), regs["b"])


# ------------------------------------------------------------------------ files and report
def test_save_load_round_trip(tmp_path):
    model = make("reactnet", SHAPES["mnist"])
    packed = export(model, meta={"dataset": "mnist-t10k", "mean": [0.1307], "std": [0.3081]})
    path = tmp_path / "model.npz"
    packed.save(path)
    loaded = PackedModel.load(path)
    x = np.random.default_rng(8).normal(size=(3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), packed(x))
    assert loaded.meta == packed.meta and str(loaded.size_report()) == str(packed.size_report())
    with np.load(path, allow_pickle=False) as npz:                # no pickled objects inside
        assert all(npz[k].dtype != object for k in npz.files)


def test_damaged_or_foreign_files_give_clear_errors(tmp_path):
    packed = export(make("cnn", SHAPES["mnist"]))
    good = tmp_path / "good.npz"
    packed.save(good)
    cases = {"missing.npz": None, "text.npz": b"not a zip file",
             "truncated.npz": good.read_bytes()[:300]}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(PackedFormatError, match="does not exist|damaged"):
            PackedModel.load(tmp_path / name)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(PackedFormatError, match="not a packed minibnn model"):
        PackedModel.load(tmp_path / "other.npz")
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays["__minibnn_packed__"]))
    for edit, pattern in [(lambda h: h.update(version=99), "format version 99"),
                          (lambda h: h["nodes"][1].update(kind="warp"), "node 1 .*damaged")]:
        h = json.loads(json.dumps(header))
        edit(h)
        arrays["__minibnn_packed__"] = np.array(json.dumps(h))
        np.savez(tmp_path / "edited.npz", **arrays)
        with pytest.raises(PackedFormatError, match=pattern):
            PackedModel.load(tmp_path / "edited.npz")
    arrays["__minibnn_packed__"] = np.array(json.dumps(header))
    del arrays["n1.w_words"]
    np.savez(tmp_path / "missing_array.npz", **arrays)
    with pytest.raises(PackedFormatError, match="missing arrays"):
        PackedModel.load(tmp_path / "missing_array.npz")


def test_size_report_by_hand():
    model = build_model("mlp", image_size=4, num_classes=3, hidden_sizes=(100, 70), rng=0)
    rows = {r.name: r for r in export(model).size_report().rows}
    bn = lambda m: 4 * m * 4                                     # noqa: E731 - 4 float32 vectors
    assert (rows["input_layer.0"].packed_bytes, rows["input_layer.0"].float32_bytes) == \
        (16 * 100 * 4 + bn(100), 16 * 100 * 4 + bn(100))
    # 70 rows x ceil(100/64) = 2 words x 8 bytes, alpha + 4 BN vectors of 70 float32
    assert rows["hidden.0.0"].packed_bytes == 70 * 2 * 8 + 70 * 4 + bn(70)
    assert rows["hidden.0.0"].float32_bytes == 70 * 100 * 4 + bn(70)
    assert rows["classifier"].packed_bytes == rows["classifier"].float32_bytes == (70 * 3 + 3) * 4
    report = export(model).size_report()
    assert report.packed_bytes == sum(r.packed_bytes for r in rows.values())
    assert "total" in str(report) and set(rows) == {"input_layer.0", "hidden.0.0", "classifier"}


# ------------------------------------------------------------------------ errors
def test_bad_inputs_name_expected_and_found():
    packed = export(make("vgg_small", SHAPES["cifar"]))
    x = np.zeros((2, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match="float32.*found dtype float64"):
        packed(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\), found \(2, 1, 32, 32\)"):
        packed(x[:, :1])
    with pytest.raises(ValueError, match="found"):
        packed(x[0])
    with pytest.raises(TypeError, match="ndarray"):
        packed(x.tolist())
    node = next(n for n in packed.nodes if n.kind == "binary_conv")
    regs = {node.src: np.zeros((1, 8, 8, 5), np.uint64)}
    with pytest.raises(ValueError, match=f"{node.name}.*holding {node.c} channels.*found"):
        node.run(regs)


def test_unsupported_layers_are_named():
    with pytest.raises(ExportError, match="hidden.0.0.*binary_weight"):
        export(build_model("mlp", weight_quantizer="none", rng=0))       # real weights
    with pytest.raises(ExportError, match="sign3.*RSign does not binarize"):
        export(build_model("reactnet", binary=False, in_channels=1, image_size=28, width=0.25))
    model = build_model("cnn", width=0.25, rng=0)
    model.stages[1]._modules["3"] = Tanh()
    with pytest.raises(ExportError, match="stages.1.3.*Tanh"):
        export(model)
    with pytest.raises(ExportError, match="export supports"):
        export(BatchNorm1d(3))


# ------------------------------------------------------------------------ command line
def test_cli_export_and_eval_packed_on_a_short_run(tmp_path, capsys):
    from minibnn.train import TrainConfig, load_model, run_training

    run_training(TrainConfig(model="cnn", dataset="synthetic", width=0.25, epochs=1),
                 tmp_path / "run", quiet=True)
    out = tmp_path / "cnn.npz"
    assert cli.main(["export", str(tmp_path / "run"), str(out)]) == 0
    text = capsys.readouterr().out
    assert "binary_conv" in text and "total" in text and "on 256/256 validation" in text
    assert cli.main(["eval", "--packed", str(out)]) == 0
    packed_line = capsys.readouterr().out
    assert cli.main(["eval", str(tmp_path / "run")]) == 0
    float_line = capsys.readouterr().out
    assert "synthetic" in packed_line and packed_line.split("accuracy")[1] == \
        float_line.split("accuracy")[1]                            # same accuracy and loss
    model, _ = load_model(tmp_path / "run")                         # the trained model itself
    _, val = load_dataset("synthetic")
    x = transforms.normalize(val.x[:40].astype(np.float32) / 255, val.mean, val.std)
    check_against_model(model, PackedModel.load(out), x)
    assert cli.main(["eval", "--packed", str(tmp_path / "nothing.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bench_model_smoke(capsys):
    args = ["bench", "model", "--models", "cnn", "--width", "0.25", "--image-size", "28",
            "--in-channels", "1", "--batch", "2", "--repeats", "1"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "packed==model argmax 100%" in text and ("PASS" in text or "MISS" in text
                                                     or "no torch" in text)
    if "torch twin" in text:                                      # same graph in PyTorch
        assert float(text.split("max|dlogit| ")[1].split("]")[0]) < 1e-4

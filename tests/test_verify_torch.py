"""The PyTorch adapter (minibnn.verify.torch) on a port of every case family (tests/torch_port.py):
functions and modules, layouts, buffers read back, captured intermediates, detached zeros,
half-precision ports at the documented scales, and the sign0=zero convention on a port that
binarises with torch.sign as the official code does."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minibnn import golden                                          # noqa: E402
from minibnn.golden.compare import PRECISION_SCALES                 # noqa: E402
from minibnn.golden.fdcheck import finite_difference_check          # noqa: E402
from minibnn.verify import CHANNEL_BIAS, QUEUE_COLUMNS              # noqa: E402
from minibnn.verify.torch import TorchPort, argument_of, output_of, result_of  # noqa: E402
from torch_port import LearnableBias, RSign, make_port              # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cases():
    """Every case the port implements whose reference agrees with finite differences (a case
    with an inconsistent reference is the reference's problem, measured elsewhere)."""
    built = [c for c in golden.build_cases() if not c.name.startswith("engine.")]
    return [c for c in built if finite_difference_check(c).ok]


@pytest.fixture(scope="module")
def all_cases():
    return {c.name: c for c in golden.build_cases()}


def test_float32_port_of_every_family_passes(cases):
    result = golden.verify(cases, make_port())
    assert result.ok, str(result)
    assert result.counts()["OK"] == len(cases) >= 25
    assert result.required_scale() < 0.1          # float32 uses < 10 % of the tolerance


@pytest.mark.parametrize("precision, dtype", [("float16", torch.float16),
                                              ("bfloat16", torch.bfloat16)])
def test_half_precision_ports_need_and_pass_the_documented_scale(cases, precision, dtype):
    result = golden.verify(cases, make_port(dtype), tolerance_scale=PRECISION_SCALES[precision])
    assert result.ok, str(result)
    strict = golden.verify(cases, make_port(dtype))
    assert not strict.ok                            # the scale is needed, not decoration
    assert PRECISION_SCALES[precision] / 4 < strict.required_scale() <= \
        PRECISION_SCALES[precision]


def test_torch_sign_port_fails_strict_and_passes_with_the_declared_convention(cases):
    official = make_port(torch_sign=True)
    strict = golden.verify(cases, official)
    failing = {r.case for r in strict.reports if not r.ok}
    assert {"quantizer.ste", "weight.xnor", "layer.rsign",
            "layer.binary_conv2d.reactnet_approx"} <= failing
    assert all(c.startswith(("quantizer.", "weight.", "layer.binary", "layer.rsign"))
               for c in failing)
    declared = golden.verify(cases, official, conventions=["sign0=zero"])
    assert declared.ok, str(declared)
    report = declared["layer.binary_conv2d.xnor_ste"]
    conv_rows = [r for r in report.rows if r.convention == "sign0=zero"]
    assert {r.tensor for r in conv_rows} >= {"y [sign0=zero]", "grad_weight [sign0=zero]"}
    y, y_conv = report.row("y"), report.row("y [sign0=zero]")
    assert y.elements + y_conv.elements == report_size(cases, "layer.binary_conv2d.xnor_ste")
    assert "judged by the declared convention" in y.note and "sign0=zero" in str(report)


def report_size(cases, name):
    return next(c for c in cases if c.name == name).expected["y"].size


def test_strict_port_declaring_sign0_zero_fails_exactly_the_affected_rows(cases):
    result = golden.verify(cases, make_port(), conventions=["sign0=zero"])
    report = result["quantizer.ste"]
    assert report.row("y").status == "OK"                   # the 28 other elements
    row = report.row("y [sign0=zero]")
    assert row.status == "NOT OK" and row.elements == 2 and "got 1, want 0" in row.note
    assert result["s2bnn.distribution_loss"].ok            # no sign: nothing changes


def test_module_entries_load_state_layouts_buffers_and_captures(all_cases):
    port = TorchPort()
    port.module("layer.rsign", lambda a: RSign(a["channels"], False),
                layout={"shift.bias": CHANNEL_BIAS}, capture={"shifted": output_of("move")})
    port.module("layer.batch_norm2d.train", lambda a: torch.nn.BatchNorm2d(3, a["eps"],
                                                                          a["momentum"]))
    port.module("layer.batch_norm2d.eval", torch.nn.BatchNorm2d(3))       # an instance
    case = all_cases["layer.rsign"]
    got = port(case.name, case.inputs, case.params, case.upstream, case.attrs)
    assert got["grad_shift.bias"].shape == (3,)                # back in the case's layout
    np.testing.assert_allclose(got["shifted"], case.inputs["x"] + case.params["shift.bias"]
                               .reshape(1, 3, 1, 1), rtol=1e-6)
    assert golden.compare(case, got).ok
    case = all_cases["layer.batch_norm2d.train"]
    got = port(case.name, case.inputs, case.params, case.upstream, case.attrs)
    assert {"running_mean", "running_var"} <= set(got)          # updated in place, read back
    assert golden.compare(case, got).ok
    case = all_cases["layer.batch_norm2d.eval"]
    got = port(case.name, case.inputs, case.params, case.upstream, case.attrs)
    assert "running_mean" not in got and golden.compare(case, got).ok   # unchanged: not returned
    assert port(case.name, case.inputs, case.params, case.upstream, case.attrs).keys() == \
        got.keys()                                               # the instance is reloaded


def test_function_captures_detached_zeros_and_queue_layout(all_cases):
    seen = {}
    port = TorchPort()

    def moco(i, p, a):
        seen["queue"] = tuple(i["queue"].shape)
        q, k = i["q"], i["k"].detach()
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ i["queue"].detach()], 1) / a["tau"]
        return torch.nn.functional.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))

    port.function("s2bnn.moco_infonce", moco, layout={"queue": QUEUE_COLUMNS},
                  capture={"logits": argument_of(torch.nn.functional.cross_entropy, 0)})
    case = all_cases["s2bnn.moco_infonce"]
    got = port(case.name, case.inputs, case.params, case.upstream, case.attrs)
    assert seen["queue"] == (16, 8)                              # (D, K) columns
    assert not got["grad_k"].any() and not got["grad_queue"].any()
    assert got["grad_queue"].shape == (8, 16)
    report = golden.compare(case, got)
    assert report.ok and report.row("logits").status == "OK"     # captured intermediate
    port.function("quantizer.ste", lambda i, p, a: torch.where(i["x"] < 0, -1.0, 1.0) +
                  0 * i["x"], capture={"s": result_of(torch.where)})
    case = all_cases["quantizer.ste"]
    got = port(case.name, case.inputs, case.params, case.upstream, case.attrs)
    np.testing.assert_array_equal(got["s"], case.expected["y"])


def test_adapter_errors_name_the_case_and_the_fix(all_cases):
    port = TorchPort()
    port.module("layer.rprelu", lambda a: torch.nn.Sequential(LearnableBias(3), torch.nn.PReLU(3),
                                                              LearnableBias(3)),
                layout={"shift_in.bias": CHANNEL_BIAS, "shift_out.bias": CHANNEL_BIAS})
    port.module("layer.rsign", lambda a: RSign(3, False))                  # no layout declared
    port.function("op.conv2d.s1p0", lambda i, p, a: torch.nn.functional.conv2d(
        i["x"], p["weight"].transpose(2, 3)[:, :2], p["bias"]))         # a shape error
    port.function("quantizer.ste", lambda i, p, a: i["x"], capture={"wb": output_of("conv")})
    result = golden.verify([all_cases[n] for n in ("layer.rprelu", "layer.rsign",
                                                   "op.conv2d.s1p0", "quantizer.ste")], port)
    assert "cannot place parameter 'shift_in.bias'" in result["layer.rprelu"].error
    assert "several candidates" in result["layer.rprelu"].error
    assert "names={'shift_in.bias'" in result["layer.rprelu"].error
    assert "'shift.bias' (3,)" in result["layer.rsign"].error or \
        "declare layout" in result["layer.rsign"].error
    assert result["op.conv2d.s1p0"].status() == "WRONG SHAPE"
    assert result["quantizer.ste"].status() == "ERROR"
    assert "names a submodule" in result["quantizer.ste"].error
    with pytest.raises(ValueError, match="already declared"):
        port.function("quantizer.ste", lambda i, p, a: i["x"])


def test_wrong_output_shape_is_wrong_shape_not_error(all_cases):
    port = TorchPort()
    port.function("quantizer.ste", lambda i, p, a: torch.sign(i["x"]).T)
    report = golden.verify([all_cases["quantizer.ste"]], port)["quantizer.ste"]
    assert report.status() == "WRONG SHAPE"


def test_memory_banks_updated_in_place_are_read_back(all_cases):
    case = all_cases["cmim.official_first_call"]
    got = make_port()(case.name, case.inputs, case.params, case.upstream, case.attrs)
    assert {"memory_bnn", "memory_fp", "z_bnn", "z_fp"} <= set(got)
    report = golden.compare(case, got)
    values = [r for r in report.rows if not r.tensor.startswith("grad_")]
    assert len(values) == 8 and all(r.status == "OK" for r in values), str(report)
    assert not np.array_equal(got["memory_bnn"], case.params["memory_bnn"])   # it did move

"""Whole-model comparison (minibnn.verify.models): a minibnn ReActNet block against a PyTorch port
written with its own names and (1, C, 1, 1) biases; a faithful port agrees everywhere, and each
deliberately broken port is located at the layer where it first diverges."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minibnn.models.reactnet import ReActBlock                    # noqa: E402
from minibnn.verify.models import compare_models, map_state        # noqa: E402
from torch_reactnet import ReActBlockPort                          # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def block():
    rng = np.random.default_rng(0)
    mini = ReActBlock(4, 8, 2, binary=True, input_quantizer="approx",
                      weight_quantizer="reactnet", rng=rng)
    for _, p in mini.named_parameters():            # move the zero/one inits off their defaults
        p.data[...] += rng.normal(0, 0.1, p.shape).astype(p.data.dtype)
    return mini, rng.normal(0, 1, (2, 4, 6, 6))


def test_faithful_port_agrees_layer_by_layer(block):
    mini, x = block
    before = {k: v.copy() for k, v in mini.state_dict().items()}
    report = compare_models(mini, ReActBlockPort(4, 8, 2), x)
    assert report.ok, str(report)
    assert report.mapping["sign3.shift.bias"] == "move11.bias"        # (C,) -> (1, C, 1, 1)
    assert report.mapping["bns1.1.running_var"] == "bn2.1.running_var"
    kinds = {r.kind for r in report.rows}
    assert kinds == {"output", "output grad", "param grad", "input grad"}
    assert sum(r.kind == "output" for r in report.rows) == 15         # 14 layers + the model
    assert "forward: every paired layer agrees" in str(report)
    for k, v in mini.state_dict().items():                            # the model is untouched
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("bug, forward, backward", [
    ("no_sign", "convs1.0", "act1.shift_in"),     # the 1x1 convs see real values
    ("no_shift_out", "act1.shift_out", None),     # a layer the port never calls
])
def test_broken_port_is_located(block, bug, forward, backward):
    mini, x = block
    report = compare_models(mini, ReActBlockPort(4, 8, 2, bug), x)
    assert not report.ok
    assert report.first_forward.minibnn == forward
    earlier = [r for r in report.rows if r.kind == "output"]
    assert all(r.ok for r in earlier[:earlier.index(report.first_forward)])
    if backward is not None:
        assert report.first_backward.minibnn == backward
    assert f"first diverges at {forward}" in str(report)


def test_a_port_that_raises_is_located_by_shape(block):
    mini, x = block
    report = compare_models(mini, ReActBlockPort(4, 8, 2, "padding"), x)
    assert report.error and "must match the size" in report.error
    assert report.first_forward.minibnn == "conv3"
    assert "shapes (2, 4, 3, 3) vs (2, 4, 4, 4)" in report.first_forward.note
    assert "backward: not compared" in str(report)


def test_state_mapping_overrides_and_errors(block):
    mini, _ = block
    port = ReActBlockPort(4, 8, 2)
    mapping = map_state(mini, port, {"sign3.shift.bias": "move21.bias",
                                     "sign1.shift.bias": "move11.bias"})
    assert mapping["sign3.shift.bias"] == "move21.bias" and mapping["act3.shift_in.bias"] == \
        "move12.bias"
    with pytest.raises(ValueError, match="not a float parameter or buffer"):
        map_state(mini, port, {"sign3.shift.bias": "nope"})
    with pytest.raises(ValueError, match="no torch entry left for minibnn's 'convs1.1.weight'"):
        map_state(mini, ReActBlockPort(4, 4, 1), None)

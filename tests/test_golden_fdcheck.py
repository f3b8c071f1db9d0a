"""finite_difference_check: the reference gradients of the golden cases against central
differences of minibnn's forward (sign Functions replaced by their frozen surrogates)."""

import numpy as np
import pytest

from minibnn import golden
from minibnn.golden.fdcheck import NOT_DIFFERENTIABLE, finite_difference_check, surrogate_signs
from minibnn.quantizers import SignSTE, ste_sign
from minibnn.autograd import Tensor

@pytest.mark.parametrize("name", golden.case_names())
def test_reference_gradients_match_finite_differences(name):
    report = finite_difference_check(golden.build_case(name), max_elements=24)
    assert report.ok, str(report)
    for row in report.rows:
        assert row.status in ("OK", "NOT CHECKED")
        if row.status == "OK":
            assert row.elements and row.used < 0.5 and "finite differences on" in row.note


def test_a_wrong_gradient_is_caught_and_located():
    case = golden.build_case("layer.binary_conv2d.irnet_ede")
    case.expected["grad_weight"][2, 1, 0, 2] *= 1.01            # a 1 % error in one element
    report = finite_difference_check(case, max_elements=200)
    row = report.row("grad_weight")
    assert not report.ok and row.status == "NOT OK"
    assert "1 of 108 elements off" in row.note and "worst at (2, 1, 0, 2)" in row.note
    assert report.row("grad_x").status == "OK"


def test_detached_and_exempt_gradients_are_not_checked():
    report = finite_difference_check(golden.build_case("s2bnn.moco_infonce"))
    assert report.row("grad_k").status == "NOT CHECKED" and "detached" in report.row("grad_k").note
    report = finite_difference_check(golden.build_case("weight.xnor_detached"))
    assert report.row("grad_w").note == NOT_DIFFERENTIABLE["weight.xnor_detached"]
    with pytest.raises(ValueError, match="does not define"):
        case = golden.build_case("quantizer.ste")
        case.name = "someone.elses"
        finite_difference_check(case)


def test_surrogates_are_frozen_at_the_base_point_and_restored():
    x = np.array([-1.5, -0.0, 0.0, 0.5, 1.0])
    with surrogate_signs() as recorder:
        base = ste_sign(Tensor(x)).data
        recorder.recording = False
        recorder.position = 0
        moved = ste_sign(Tensor(x + 1e-3)).data
    np.testing.assert_array_equal(base, [-1, 1, 1, 1, 1])
    np.testing.assert_allclose(moved - base, [0, 1e-3, 1e-3, 1e-3, 1e-3])   # edges pass
    assert SignSTE.forward.__qualname__ == "SignSTE.forward"                # restored
    np.testing.assert_array_equal(ste_sign(Tensor(x + 1e-3)).data, [-1, 1, 1, 1, 1])


def test_sign_zero_switches_the_convention_for_a_block_only():
    from minibnn.quantizers import sign, sign_zero

    x = np.array([-2.0, -0.0, 0.0, 3.0])
    with pytest.raises(RuntimeError):
        with sign_zero():
            np.testing.assert_array_equal(sign(x), [-1, 0, 0, 1])
            raise RuntimeError("restored even so")
    np.testing.assert_array_equal(sign(x), [-1, 1, 1, 1])

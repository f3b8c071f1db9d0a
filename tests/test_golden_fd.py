"""Golden gradients are checked by finite differences before they are written, and in CI."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from minibnn import golden
from minibnn.golden import GoldenCheckError, finite_difference_check
from minibnn.golden.spec import SPECS

COMMITTED = Path(__file__).resolve().parent / "golden"
COMMITTED_NAMES = list(json.loads((COMMITTED / "manifest.json").read_text())["cases"])


@pytest.mark.parametrize("name", COMMITTED_NAMES)
def test_every_committed_gradient_agrees_with_finite_differences(name):
    results = finite_difference_check(golden.load_case(COMMITTED, name))
    assert all(r.ok for r in results), "\n".join(map(str, results))


@pytest.mark.parametrize("name", [n for n in SPECS if n not in COMMITTED_NAMES])
def test_every_other_case_agrees_with_finite_differences(name):
    results = finite_difference_check(golden.build_case(name))
    assert all(r.ok for r in results), "\n".join(map(str, results))


def test_every_smooth_gradient_is_checked_and_only_sign_estimators_are_skipped():
    for name, spec in SPECS.items():
        assert set(spec.pseudo) <= set(spec.grads) - set(spec.detached), name
        for why in spec.pseudo.values():
            assert "sign" in why.lower() or "approxsign" in why.lower(), (name, why)


def test_a_gradient_taken_after_the_state_update_fails_the_check():
    """The CMIM bug as it was locked into the golden files: gradients against updated banks."""
    case = golden.build_case("cmim.official")
    wrong = dict(case.expected)
    wrong["grad_f_bnn"] = case.expected["grad_f_bnn"] * 1.01
    results = finite_difference_check(dataclasses.replace(case, expected=wrong))
    failed = [r.grad for r in results if not r.ok]
    assert failed == ["f_bnn"]


def test_write_golden_refuses_a_case_whose_gradient_is_wrong(tmp_path, monkeypatch):
    spec = SPECS["cmim.nce_loss"]

    def doubled(i, p, a):                  # forward unchanged, gradient doubled
        out = spec.op(i, p, a)["loss"]
        return {"loss": out * 2.0 - out.detach()}
    monkeypatch.setitem(SPECS, "cmim.nce_loss", dataclasses.replace(spec, op=doubled))
    with pytest.raises(GoldenCheckError, match=r"cmim\.nce_loss: grad_x FAILED"):
        golden.write_golden(tmp_path / "out", only="cmim.nce_loss")
    assert not (tmp_path / "out").exists()


def test_pseudo_gradients_are_reported_as_skipped_with_their_reason():
    results = finite_difference_check(golden.build_case("quantizer.ste"))
    assert [(r.grad, r.checked) for r in results] == [("x", 0)]
    assert "skipped" in str(results[0]) and results[0].ok


def test_large_tensors_are_sampled():
    results = finite_difference_check(golden.build_case("op.conv2d.s2p1"), samples=5)
    assert {r.grad: r.checked for r in results}["x"] == 5
    assert np.all([r.ok for r in results])

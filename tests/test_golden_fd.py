"""The committed golden files are checked by finite differences, and a case whose gradients
disagree with them is never written (the CMIM files once held post-update gradients)."""

import dataclasses
import json
from pathlib import Path

import pytest

from minibnn import functional as F
from minibnn import golden
from minibnn.autograd import Tensor
from minibnn.golden import GoldenCheckError, finite_difference_check
from minibnn.golden.spec import SPECS
from minibnn.methods import s2bnn

COMMITTED = Path(__file__).resolve().parent / "golden"
COMMITTED_NAMES = list(json.loads((COMMITTED / "manifest.json").read_text())["cases"])


@pytest.mark.parametrize("name", COMMITTED_NAMES)
def test_every_committed_gradient_agrees_with_finite_differences(name):
    report = finite_difference_check(golden.load_case(COMMITTED, name), max_elements=24)
    assert report.ok, str(report)


def test_a_gradient_taken_after_the_state_update_fails_the_check():
    """What the old CMIM files held: the loss right, the gradients those of the updated banks."""
    case = golden.build_case("cmim.official")
    wrong = dict(case.expected, grad_f_bnn=case.expected["grad_f_bnn"] * 1.01)
    report = finite_difference_check(dataclasses.replace(case, expected=wrong), max_elements=24)
    assert [row.tensor for row in report.failures] == ["grad_f_bnn"]


def test_write_golden_refuses_a_case_whose_gradient_is_wrong(tmp_path, monkeypatch):
    spec = SPECS["cmim.nce_loss"]

    def doubled(i, p, a):                  # forward unchanged, gradient doubled
        out = spec.op(i, p, a)["loss"]
        return {"loss": out * 2.0 - out.detach()}
    monkeypatch.setitem(SPECS, "cmim.nce_loss", dataclasses.replace(spec, op=doubled))
    with pytest.raises(GoldenCheckError, match=r"cmim\.nce_loss \(grad_x\)"):
        golden.write_golden(tmp_path / "out", only="cmim.nce_loss")
    assert not (tmp_path / "out").exists()


def test_the_moco_training_order_case_catches_a_live_queue(monkeypatch):
    """s2bnn.moco_step: a reference that scored the live queue would fail its own check."""
    original = s2bnn.moco_logits

    def live(q, k, queue, tau=s2bnn.DEFAULT_TAU):     # the old bug: keeps the caller's buffer
        l_pos = F.sum(q * Tensor(k), axis=1, keepdims=True)
        return F.concatenate([l_pos, q @ Tensor(queue.T)], axis=1) / tau
    case = golden.build_case("s2bnn.moco_step")
    assert finite_difference_check(case, max_elements=24).ok
    monkeypatch.setattr(s2bnn, "moco_logits", live)
    bad = golden.build_case("s2bnn.moco_step")
    monkeypatch.setattr(s2bnn, "moco_logits", original)
    assert finite_difference_check(bad, max_elements=24).row("grad_q").status == "NOT OK"

"""Anomaly mode: saved arrays modified before backward raise, NaN/inf producers are named."""

import numpy as np
import pytest

from minibnn import functional as F
from minibnn.autograd import SavedArrayModifiedError, Tensor, detect_anomaly, is_anomaly_enabled
from minibnn.methods import cmim, s2bnn


def test_off_by_default_and_restored_after_the_block():
    assert not is_anomaly_enabled()
    with detect_anomaly():
        assert is_anomaly_enabled()
        with detect_anomaly(enabled=False):
            assert not is_anomaly_enabled()
        assert is_anomaly_enabled()
    assert not is_anomaly_enabled()


def test_a_plain_op_whose_saved_operand_changes_raises_naming_the_function(rng):
    a = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
    b = rng.normal(size=(4, 2))
    with detect_anomaly():
        y = (a @ Tensor(b)).sum()
        b[0, 0] += 1.0
        with pytest.raises(SavedArrayModifiedError, match=r"MatMul\.backward: the array "
                                                          r"saved_tensors\[1\] \(4, 2\)"):
            y.backward()


def test_the_same_modification_without_anomaly_mode_goes_unnoticed(rng):
    a = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
    b = rng.normal(size=(4, 2))
    y = (a @ Tensor(b)).sum()
    b[0, 0] += 1.0
    y.backward()                                         # silently uses the new b
    np.testing.assert_allclose(a.grad, np.broadcast_to(b.sum(axis=1), (3, 4)))


def test_memory_scores_copy_the_rows_so_a_bank_update_before_backward_is_harmless(rng):
    bank = cmim.MemoryBank(10, 4, rng, np.float64)
    e = Tensor(cmim.MemoryBank(3, 4, rng, np.float64).weight, requires_grad=True)
    index = rng.integers(0, 10, (3, 5))
    want = np.einsum("bj,bjd->bd", np.ones((3, 5)), bank.weight[index])      # before the update
    for method in ("dense", "gather"):
        e.grad = None
        with detect_anomaly():
            s = cmim.memory_scores(e, bank.weight, index, method=method).sum()
            bank.update(np.arange(3), rng.normal(size=(3, 4)), 0.5)        # in place, pre-backward
            s.backward()                                                    # no error: a copy
        np.testing.assert_allclose(e.grad, want, rtol=1e-12)
        want = np.einsum("bj,bjd->bd", np.ones((3, 5)), bank.weight[index])


def test_a_function_that_keeps_the_live_bank_is_caught(rng):
    """The shape of the CMIM bug: a Function holding the bank itself, updated before backward."""
    bank = cmim.MemoryBank(10, 4, rng, np.float64)
    e = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
    with detect_anomaly():
        s = (e @ Tensor(bank.weight.T)).sum()                                # saves the live bank
        bank.update(np.arange(3), rng.normal(size=(3, 4)), 0.5)
        with pytest.raises(SavedArrayModifiedError, match="MatMul"):
            s.backward()


def test_moco_logits_snapshot_the_queue_and_a_live_queue_is_caught(rng):
    queue = s2bnn.MoCoQueue(8, 6, 3, rng)
    queue.keys = queue.keys.astype(np.float64)                               # q's dtype: no cast
    q = Tensor(rng.normal(size=(3, 8)), requires_grad=True)
    k = rng.normal(size=(3, 8))
    with detect_anomaly():
        loss = F.cross_entropy(s2bnn.moco_logits(q, k, queue.keys), np.zeros(3, np.int64))
        queue.enqueue(k)
        loss.backward()                                                      # snapshot: fine
        live = (q @ Tensor(queue.keys.T)).sum()
        queue.enqueue(k)
        with pytest.raises(SavedArrayModifiedError):
            live.backward()


def test_the_first_op_to_produce_nan_is_named_in_forward_and_backward():
    x = Tensor(np.array([-1.0, 4.0]), requires_grad=True)
    with detect_anomaly(), np.errstate(invalid="ignore", divide="ignore"):
        with pytest.raises(FloatingPointError, match=r"Log\.forward produced 1 NaN/inf"):
            F.log(x)
        y = F.sqrt(Tensor(np.array([0.0, 4.0]), requires_grad=True)).sum()
        with pytest.raises(FloatingPointError, match=r"Sqrt\.backward produced NaN/inf"):
            y.backward()

"""Schedules: torch.optim.lr_scheduler parity, the papers' tables, LRScheduler/ParamSchedule."""

import numpy as np
import pytest

from minibnn import Tensor
from minibnn.optim import (SGD, LRScheduler, ParamSchedule, Schedule, constant, cosine, ede_schedule,
                           ede_tk, linear_decay, linear_warmup, multistep, step_decay)

EPOCHS = 20


def torch_lrs(torch, make_scheduler, base=0.1, epochs=EPOCHS):
    """lr seen during each epoch with torch's per-epoch stepping."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(lrs)


@pytest.mark.torch
@pytest.mark.parametrize("ours, theirs, epochs", [
    (cosine(0.1, 20), lambda S, o: S.CosineAnnealingLR(o, T_max=20), EPOCHS),
    (cosine(0.1, 12, min_value=1e-3), lambda S, o: S.CosineAnnealingLR(o, T_max=12, eta_min=1e-3), 30),
    (step_decay(0.1, 7, gamma=0.5), lambda S, o: S.StepLR(o, step_size=7, gamma=0.5), EPOCHS),
    (multistep(0.1, [12, 5, 12], 0.1), lambda S, o: S.MultiStepLR(o, [5, 12, 12], gamma=0.1), EPOCHS),
])
def test_schedule_matches_torch_lr_scheduler(ours, theirs, epochs):
    torch = pytest.importorskip("torch")
    expected = torch_lrs(torch, lambda o: theirs(torch.optim.lr_scheduler, o), epochs=epochs)
    np.testing.assert_allclose([ours(e) for e in range(epochs)], expected, rtol=1e-10, atol=1e-15)


@pytest.mark.torch
def test_lr_scheduler_keeps_group_ratios_like_torch():
    torch = pytest.importorskip("torch")
    tp = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    topt = torch.optim.SGD([{"params": [tp[0]]}, {"params": [tp[1]], "lr": 0.01}], lr=0.1)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=EPOCHS)
    ps = [Tensor(np.zeros(1), requires_grad=True) for _ in range(2)]
    opt = SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.01}], lr=0.1)
    sched = LRScheduler(opt, cosine(1.0, EPOCHS))
    for epoch in range(EPOCHS):
        sched.step(epoch)
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups],
                                   [g["lr"] for g in topt.param_groups], rtol=1e-10, atol=1e-15)
        topt.step()
        tsched.step()


# ------------------------------------------------------------------------- paper tables
@pytest.mark.parametrize("t_min, t_max, total, table", [
    # epoch: (t, decimals quoted in docs/methods.md)
    (1e-3, 10, 100, {0: (1e-3, 12), 25: (0.01, 12), 50: (0.1, 12), 99: (9.120, 3)}),  # LCR
    (1e-2, 10, 400, {0: (0.01, 12), 200: (0.3162, 4), 399: (9.829, 3)}),             # CMIM
])
def test_ede_t_matches_the_reference_tables(t_min, t_max, total, table):
    for epoch, (expected, decimals) in table.items():
        t, k = ede_tk(epoch, total, t_min, t_max)
        assert round(t, decimals) == expected
        assert k == max(1 / t, 1.0)
    assert ede_tk(total - 1, total, t_min, t_max)[0] < t_max          # t never reaches Tmax


def test_ede_k_is_one_over_t_below_one_and_one_above():
    ts, ks = zip(*(ede_tk(e, 100, 1e-3, 10) for e in range(100)))
    ts, ks = np.array(ts), np.array(ks)
    assert np.all(np.diff(ts) > 0)
    np.testing.assert_allclose(ks[ts < 1], 1 / ts[ts < 1], rtol=1e-15)
    np.testing.assert_array_equal(ks[ts >= 1], 1.0)
    np.testing.assert_allclose(ks * ts, np.maximum(ts, 1.0), rtol=1e-15)  # k*t = 1 early: plain STE
    assert ede_tk(0, 100, 1e-3, 10) == (pytest.approx(1e-3, rel=1e-12), pytest.approx(1000, rel=1e-12))


def test_linear_decay_is_s2bnn_cos_option():
    lr = linear_decay(3e-4, 200)
    np.testing.assert_allclose([lr(0), lr(100), lr(199)], [3e-4, 1.5e-4, 1.5e-6], rtol=1e-12)
    assert lr(200) == 0.0 and lr(250) == 0.0                           # clamped, never negative


def test_multistep_is_s2bnn_linear_eval():
    lr = multistep(0.1, [60, 80])
    values = np.array([lr(e) for e in range(100)])
    np.testing.assert_allclose(values[:60], 0.1)
    np.testing.assert_allclose(values[60:80], 0.01, rtol=1e-12)
    np.testing.assert_allclose(values[80:], 0.001, rtol=1e-12)


def test_linear_warmup_is_lcr_warm_up_then_the_wrapped_cosine():
    epochs = 100
    inner = cosine(0.1, epochs - 4)
    lr = linear_warmup(inner, 5)
    np.testing.assert_allclose([lr(e) for e in range(5)], [0.02, 0.04, 0.06, 0.08, 0.1], rtol=1e-15)
    for e in range(5, epochs):
        assert lr(e) == inner(e - 4)
    assert lr(4.5) == inner(0.5)                                       # continuous between epochs
    assert lr.base == 0.1 and linear_warmup(inner, 1)(7) == inner(7)


def test_per_step_cosine_equals_cosine_of_the_fractional_epoch():
    steps_per_epoch, epochs = 7, 10
    per_step = cosine(0.1, epochs * steps_per_epoch)
    per_epoch = cosine(0.1, epochs)
    for epoch in range(epochs):
        for step in range(steps_per_epoch):
            assert per_step(epoch * steps_per_epoch + step) == pytest.approx(
                per_epoch(epoch + step / steps_per_epoch), rel=1e-12, abs=1e-16)


# -------------------------------------------------------------- applying schedules
def two_group_sgd():
    a, b = Tensor(np.zeros(1), requires_grad=True), Tensor(np.zeros(1), requires_grad=True)
    return SGD([{"params": [a]}, {"params": [b], "lr": 0.02}], lr=0.2, momentum=0.9)


def test_lr_scheduler_scales_every_group_from_its_initial_lr():
    opt = two_group_sgd()
    sched = LRScheduler(opt, step_decay(123.0, 3, gamma=0.5))         # only the shape matters
    assert sched.step(7) == 123.0 * 0.25
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.005]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.2, 0.02]
    sched.step(0)                                                      # not incremental
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.02]


def test_lr_scheduler_resumes_exactly_from_the_optimizer_state_dict():
    opt = two_group_sgd()
    sched = LRScheduler(opt, cosine(0.2, 50))
    for epoch in range(13):
        sched.step(epoch)
    saved = opt.state_dict()                                           # carries initial_lr
    sched.step(13)
    expected = [g["lr"] for g in opt.param_groups]

    fresh = two_group_sgd()
    fresh.load_state_dict(saved)                                       # lr is mid-schedule here,
    LRScheduler(fresh, cosine(0.2, 50)).step(13)                       # but initial_lr is the base
    assert [g["lr"] for g in fresh.param_groups] == expected


def test_lr_scheduler_can_drive_another_group_hyperparameter():
    opt = two_group_sgd()
    LRScheduler(opt, linear_decay(1.0, 10), key="momentum").step(5)
    assert [g["momentum"] for g in opt.param_groups] == [0.45, 0.45]
    assert opt.param_groups[0]["lr"] == 0.2


def test_param_schedule_applies_ede_t_and_k_to_any_object():
    class Quantizer:
        t, k = 0.1, 10.0                                               # IR-Net's constructor values

    layers = [Quantizer(), Quantizer()]

    def set_tk(tk):
        for q in layers:
            q.t, q.k = tk

    ede = ParamSchedule(ede_schedule(100, 1e-3, 10), apply=set_tk)
    assert ede.step(50) == ede_tk(50, 100, 1e-3, 10)
    assert all((q.t, q.k) == ede.value for q in layers) and ede.t == 50
    assert layers[0].t == pytest.approx(0.1, rel=1e-12) and layers[0].k == pytest.approx(10, rel=1e-12)


def test_custom_and_constant_schedules():
    half_life = Schedule(lambda t: 0.5 ** (t / 10), name="half_life")
    assert half_life(10) == 0.5 and repr(half_life) == "half_life"
    assert constant(3e-4)(123) == 3e-4
    assert repr(cosine(0.1, 20)) == "cosine(base=0.1, total=20, min_value=0.0)"


@pytest.mark.parametrize("make, message", [
    (lambda: cosine(0.1, 0), r"cosine: total must be > 0, got 0"),
    (lambda: linear_decay(0.1, -5), r"linear_decay: total must be > 0"),
    (lambda: step_decay(0.1, 0), r"step_size must be > 0"),
    (lambda: linear_warmup(cosine(0.1, 10), 0), r"warmup must be an int >= 1, got 0"),
    (lambda: cosine(0.1, 10)(-1), r"t must be >= 0, got -1"),
    (lambda: ede_tk(0, 100, 0.0, 10), r"t_min must be > 0"),
    (lambda: ede_tk(-1, 100, 1e-3, 10), r"epoch must be >= 0"),
    (lambda: ede_schedule(0, 1e-3, 10), r"total_epochs must be > 0"),
    (lambda: LRScheduler(two_group_sgd(), constant(0.0)), r"base of 0"),
])
def test_bad_schedule_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()

"""Hyperparameter schedules as pure functions of a counter, and the objects that apply them.

A `Schedule` maps t -> value. t is whatever the caller counts: the epoch (like torch's per-epoch
scheduler), the global step `epoch * steps_per_epoch + step` (build the schedule with
total = epochs * steps_per_epoch), or a fractional epoch. Schedules keep no state, so resuming
at epoch e is `scheduler.step(e)`. `ParamSchedule` hands each value to any callback (IR-Net's
EDE t/k on the quantizers); `LRScheduler` scales every group's lr.

Closed forms follow torch.optim.lr_scheduler (CosineAnnealingLR, StepLR, MultiStepLR). The EDE
schedule is IR-Net's (Qin et al., arXiv:1909.10788) as used by LCR-BNN (arXiv:2207.06540) and
CMIM (arXiv:2207.02970); `linear_decay` is S2-BNN's "--cos" (arXiv:2102.08946).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Callable, Sequence

__all__ = ["Schedule", "constant", "cosine", "linear_decay", "step_decay", "multistep",
           "linear_warmup", "ede_tk", "ede_schedule", "ParamSchedule", "LRScheduler"]


class Schedule:
    """A value as a pure function of a counter t >= 0: `value = schedule(t)`.

    `base` is the schedule's reference value (the peak of the lr schedules below); LRScheduler
    multiplies each group's initial lr by schedule(t) / base. A custom schedule is
    `Schedule(lambda t: ..., base=...)`.
    """

    def __init__(self, fn: Callable[[float], Any], base: float = 1.0, name: str = "Schedule"):
        self.fn, self.base, self.name = fn, base, name

    def __call__(self, t: float) -> Any:
        if not t >= 0:
            raise ValueError(f"{self.name}: t must be >= 0, got {t}")
        return self.fn(t)

    def __repr__(self) -> str:
        return self.name


def _require_positive(where: str, **values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{where}: {key} must be > 0, got {value}")


def constant(value: float) -> Schedule:
    """value for every t."""
    return Schedule(lambda t: value, base=value, name=f"constant({value})")


def cosine(base: float, total: float, min_value: float = 0.0) -> Schedule:
    """min_value + (base - min_value) * (1 + cos(pi * t / total)) / 2.

    torch's CosineAnnealingLR closed form with T_max = total, eta_min = min_value. As in torch the
    curve is periodic: past `total` it rises again. Per step: total = epochs * steps_per_epoch.
    """
    _require_positive("cosine", total=total)

    def fn(t: float) -> float:
        return min_value + (base - min_value) * (1 + math.cos(math.pi * t / total)) / 2

    return Schedule(fn, base, f"cosine(base={base}, total={total}, min_value={min_value})")


def linear_decay(base: float, total: float) -> Schedule:
    """base * (1 - t / total), and 0 after `total`.

    S2-BNN's "--cos" option is this linear decay, per epoch: base 3e-4, total 200 gives
    3e-4 at t=0, 1.5e-4 at t=100 and 1.5e-6 at t=199 (see docs/methods.md §4.4).
    """
    _require_positive("linear_decay", total=total)
    return Schedule(lambda t: base * max(1 - t / total, 0.0), base,
                    f"linear_decay(base={base}, total={total})")


def step_decay(base: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """base * gamma ** floor(t / step_size)   (torch StepLR)."""
    _require_positive("step_decay", step_size=step_size)
    return Schedule(lambda t: base * gamma ** (t // step_size), base,
                    f"step_decay(base={base}, step_size={step_size}, gamma={gamma})")


def multistep(base: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """base * gamma ** (number of milestones <= t)   (torch MultiStepLR; a repeated milestone counts twice).

    S2-BNN linear evaluation: multistep(0.1, [60, 80]) over 100 epochs.
    """
    marks = sorted(milestones)
    return Schedule(lambda t: base * gamma ** bisect_right(marks, t), base,
                    f"multistep(base={base}, milestones={marks}, gamma={gamma})")


def linear_warmup(schedule: Schedule, warmup: int) -> Schedule:
    """Ramp linearly to the schedule's start over `warmup` epochs, then follow it.

        value(t) = schedule(0) * (t + 1) / warmup      for t < warmup - 1
                 = schedule(t - (warmup - 1))           otherwise

    At t = warmup - 1 both lines give schedule(0), so the curve is continuous; LCR's warm-up is
    linear_warmup(cosine(lr, epochs - 4), 5): lr*(e+1)/5 for e < 5, then a cosine over
    epochs - 4 (T_max = epochs - 4*warm_up). Differences from the reference code: LCR drives
    CosineAnnealingLR from a shifted last_epoch, so its post-warm-up values differ slightly.
    """
    if not (isinstance(warmup, int) and warmup >= 1):
        raise ValueError(f"linear_warmup: warmup must be an int >= 1, got {warmup}")
    peak = schedule(0)

    def fn(t: float) -> float:
        return peak * (t + 1) / warmup if t < warmup - 1 else schedule(t - (warmup - 1))

    return Schedule(fn, schedule.base, f"linear_warmup({schedule}, warmup={warmup})")


def ede_tk(epoch: float, total_epochs: int, t_min: float, t_max: float) -> tuple[float, float]:
    """IR-Net's Error Decay Estimator parameters (t, k) for an epoch in 0 .. total_epochs-1.

        t(e) = 10 ** (log10 t_min + (log10 t_max - log10 t_min) / E * e),   k(e) = max(1/t(e), 1)

    t grows log-linearly from t_min and never reaches t_max (the last epoch is E - 1). The
    backward of the sign is then k * t * (1 - tanh(t*x)^2). LCR: (1e-3, 10, E=100) gives
    t = 1e-3, 0.01, 0.1, 9.120 at e = 0, 25, 50, 99; CMIM: (1e-2, 10, E=400).
    Differences from the reference code (`cpt_tk` in LCR/CMIM): it computes in float32, we in
    float64 (the values agree to ~1e-7 relative).
    """
    _require_positive("ede_tk", total_epochs=total_epochs, t_min=t_min, t_max=t_max)
    if not epoch >= 0:
        raise ValueError(f"ede_tk: epoch must be >= 0, got {epoch}")
    log_min, log_max = math.log10(t_min), math.log10(t_max)
    t = 10.0 ** (log_min + (log_max - log_min) / total_epochs * epoch)
    return t, max(1.0 / t, 1.0)


def ede_schedule(total_epochs: int, t_min: float, t_max: float) -> Schedule:
    """The schedule e -> (t, k) of `ede_tk`, to drive with a ParamSchedule."""
    _require_positive("ede_schedule", total_epochs=total_epochs, t_min=t_min, t_max=t_max)
    return Schedule(lambda e: ede_tk(e, total_epochs, t_min, t_max), base=1.0,
                    name=f"ede_schedule(total_epochs={total_epochs}, t_min={t_min}, t_max={t_max})")


class ParamSchedule:
    """Applies `schedule(t)` through `apply(value)` each time `step(t)` is called.

        ede = ParamSchedule(ede_schedule(400, 1e-3, 10), apply=lambda tk: set_ede(model, *tk))
        for epoch in range(400):
            ede.step(epoch)          # before the epoch's first batch
            ...

    `step(t)` is not incremental: it sets the value for t, so resuming needs no saved state.
    `t` and `value` keep the last ones applied, for logging.
    """

    def __init__(self, schedule: Schedule, apply: Callable[[Any], None]):
        self.schedule, self.apply = schedule, apply
        self.t: float | None = None
        self.value: Any = None

    def step(self, t: float) -> Any:
        value = self.schedule(t)
        self.apply(value)
        self.t, self.value = t, value
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule}, t={self.t}, value={self.value})"


class LRScheduler(ParamSchedule):
    """Sets group[key] = group["initial_" + key] * schedule(t) / schedule.base for every group.

    The optimizer's lr gives the scale and the schedule the shape, so groups keep their lr
    ratios: LRScheduler(opt, cosine(1.0, 200)) and LRScheduler(opt, cosine(0.1, 200)) are the
    same. Each group's starting value is stored in the group as "initial_lr" (as torch does), so
    it travels with the optimizer's state_dict and a resumed run rescales from the right base.
    With a single group whose lr equals schedule.base, group["lr"] is schedule(t) itself.
    """

    def __init__(self, optimizer: Any, schedule: Schedule, key: str = "lr"):
        if not schedule.base:
            raise ValueError(f"LRScheduler: {schedule} has base {schedule.base}; a base of 0 "
                             "cannot be used as the reference value")
        self.optimizer, self.key = optimizer, key
        for group in optimizer.param_groups:
            group.setdefault(f"initial_{key}", group[key])
        super().__init__(schedule, apply=self._set_groups)

    def _set_groups(self, value: float) -> None:
        factor = value / self.schedule.base
        for group in self.optimizer.param_groups:
            initial = group.setdefault(f"initial_{self.key}", group[self.key])  # groups added later
            group[self.key] = initial * factor

"""First-order optimizers for the latent (real-valued) weights: SGD, Adam, AdamW.

Each reproduces the update of its torch.optim namesake (the single-tensor CPU path of torch 2.x),
computed in the parameter's dtype, so float32 trajectories match PyTorch to rounding. With g the
gradient, p the parameter and t = 1, 2, ... the per-parameter step count:

    SGD    g <- g + wd*p;   b <- g on the first step (no dampening), else mu*b + (1 - dampening)*g;
           d <- g + mu*b if nesterov else b;   p <- p - lr*d                  (d = g when mu = 0)
    Adam   g <- g + wd*p;   m <- b1*m + (1 - b1)*g;   v <- b2*v + (1 - b2)*g^2
           p <- p - lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
    AdamW  p <- p*(1 - lr*wd) first (decoupled decay), then the Adam step without the wd*p term.

Reference: torch.optim.SGD / Adam / AdamW documentation; Kingma & Ba, "Adam", arXiv:1412.6980;
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101.
Left out: amsgrad, maximize, closures, sparse gradients, foreach/fused kernels.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..autograd import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Parameter groups, per-parameter state, `zero_grad`, `step` and a plain-data state_dict.

    `params` is an iterable of tensors, or a list of dicts {"params": [...], "lr": ..., ...}
    whose missing hyperparameters fall back to `defaults`. `param_groups` is that list of dicts;
    schedules write `group["lr"]` directly. `state[p]` holds p's buffers in p's dtype. `step()`
    updates `p.data` in place (models hold references to it) and skips parameters whose grad is
    None. Subclasses set `_ARRAY_STATE`/`_SCALAR_STATE` and define `_check_group` and `_update`.
    """

    _ARRAY_STATE: tuple[str, ...] = ()   # per-parameter arrays, shaped like the parameter
    _SCALAR_STATE: tuple[str, ...] = ()  # per-parameter integers (Adam's step counter)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self._check_group(self.defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}  # Tensor hashes by identity
        if isinstance(params, (Tensor, dict)):
            raise TypeError(f"params must be an iterable of tensors or of param-group dicts, got a "
                            f"single {type(params).__name__}; wrap it in a list")
        params = list(params)
        if not params:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if any(isinstance(p, dict) for p in params):
            for group in params:
                self.add_param_group(group)
        else:
            self.add_param_group({"params": params})

    @property
    def _name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{self._name}({len(self.param_groups)} group(s), {len(self._params())} params, {hyper})"

    def _params(self) -> list[Tensor]:
        """All parameters in group order; a parameter's position here is its state_dict index."""
        return [p for group in self.param_groups for p in group["params"]]

    # --------------------------------------------------------------------------- groups
    def add_param_group(self, group: dict[str, Any]) -> None:
        """Append a group; hyperparameters it does not set are taken from `defaults`."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a param group must be a dict with a 'params' entry, got {group!r:.80}")
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError("a param group's params must be an ordered sequence, not a set "
                            "(state_dict indexes parameters by position)")
        params = [params] if isinstance(params, Tensor) else list(params)
        where = f"{self._name} param group {len(self.param_groups)}"
        seen = {id(p) for p in self._params()}
        for i, p in enumerate(params):
            _check_param(p, f"{where}, parameter {i}")
            if id(p) in seen:
                raise ValueError(f"{where}, parameter {i} (shape {p.shape}) appears more than once "
                                 "in this optimizer")
            seen.add(id(p))
        full = {**self.defaults, **group, "params": params}
        self._check_group(full)
        self.param_groups.append(full)

    def _check_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _require_nonnegative(self, group: dict[str, Any], *keys: str) -> None:
        for key in keys:
            if not group[key] >= 0:  # also rejects NaN
                raise ValueError(f"{self._name}: {key} must be >= 0, got {group[key]}")

    # ----------------------------------------------------------------------------- step
    def zero_grad(self) -> None:
        """Forget every parameter's gradient (`grad = None`, as torch's default set_to_none)."""
        for p in self._params():
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                grad = np.asarray(p.grad, dtype=p.data.dtype)
                if grad.shape != p.data.shape:
                    raise ValueError(f"{self._name} param group {gi}, parameter {pi}: grad has shape "
                                     f"{grad.shape}, the parameter has shape {p.data.shape}")
                self._update(p, grad, self.state.setdefault(p, {}), group)

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update p.data in place. `grad` may be p.grad itself: never modify it."""
        raise NotImplementedError

    # ----------------------------------------------------------------------- state_dict
    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: {name: array or int}}, "param_groups": [{hyper..., "params": [index]}]}.

        Indices count parameters across groups in order, as torch does. Arrays are copies, so the
        result is a snapshot; hyperparameters are plain Python values (JSON-able).
        """
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        state = {index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for p, s in self.state.items() if s}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and buffers saved by `state_dict()` (keys may be str, as after JSON).

        The saved groups must match this optimizer's groups in number and size; every buffer must
        have its parameter's shape. Nothing is changed if any check fails.
        """
        missing = [k for k in ("state", "param_groups") if k not in state_dict]
        if missing:
            raise ValueError(f"{self._name}.load_state_dict: the state_dict lacks {missing}; "
                             f"expected the output of state_dict(), got keys {sorted(state_dict)}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{self._name}.load_state_dict: the state_dict has {len(saved_groups)} "
                             f"param group(s), this optimizer has {len(self.param_groups)}")
        by_index: dict[int, Tensor] = {}
        for gi, (saved, own) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"{self._name}.load_state_dict: param group {gi} has "
                                 f"{len(saved['params'])} parameter(s) in the state_dict, "
                                 f"{len(own['params'])} in this optimizer")
            by_index.update(zip((int(i) for i in saved["params"]), own["params"]))
        new_state = self._restore_state(state_dict["state"], by_index)
        new_groups = [self._restore_group(saved, own) for saved, own in zip(saved_groups, self.param_groups)]
        self.param_groups = new_groups
        self.state = new_state

    def _restore_group(self, saved: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        group = {**self.defaults, **saved, "params": own["params"]}
        for key, default in self.defaults.items():  # JSON turns tuples (betas) into lists
            if isinstance(default, tuple):
                group[key] = tuple(group[key])
        self._check_group(group)
        return group

    def _restore_state(self, saved: dict[Any, dict[str, Any]],
                       by_index: dict[int, Tensor]) -> dict[Tensor, dict[str, Any]]:
        expected = set(self._ARRAY_STATE) | set(self._SCALAR_STATE)
        state, problems = {}, []
        for key, entry in saved.items():
            i = int(key)
            if i not in by_index:
                problems.append(f"state for parameter {i}, which is in no param group")
                continue
            p = by_index[i]
            if set(entry) != expected:
                problems.append(f"parameter {i}: state has {sorted(entry)}, "
                                f"{self._name} expects {sorted(expected)}")
                continue
            arrays = {k: np.array(entry[k], dtype=p.data.dtype) for k in self._ARRAY_STATE}
            problems += [f"parameter {i}: {k!r} has shape {a.shape}, the parameter has shape {p.shape}"
                         for k, a in arrays.items() if a.shape != p.data.shape]
            state[p] = {**arrays, **{k: int(entry[k]) for k in self._SCALAR_STATE}}
        if problems:
            raise ValueError(f"{self._name}.load_state_dict: " + "; ".join(problems))
        return state


def _check_param(p: Any, where: str) -> None:
    if not isinstance(p, Tensor):
        raise TypeError(f"{where}: expected a Tensor or Parameter, got {type(p).__name__}")
    if not np.issubdtype(p.data.dtype, np.floating):
        raise TypeError(f"{where}: only floating-point parameters can be optimized, got dtype {p.dtype}")
    if not p.requires_grad:
        raise ValueError(f"{where}: requires_grad is False, so it would never get a gradient; "
                         "leave it out of the optimizer or make it a Parameter")
    if not p.is_leaf:
        raise ValueError(f"{where}: is the result of an operation (not a leaf); optimize the "
                         "tensors it was computed from")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Update (torch.optim.SGD): see the module docstring. The momentum buffer is created on the
    first step as a copy of the (decayed) gradient. nesterov=True needs momentum > 0 and
    dampening = 0.
    """

    _ARRAY_STATE = ("momentum_buffer",)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _check_group(self, group: dict[str, Any]) -> None:
        self._require_nonnegative(group, "lr", "momentum", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        if wd != 0:
            grad = grad + wd * p.data
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= mu
                buf += (1 - float(group["dampening"])) * grad
            grad = grad + mu * buf if group["nesterov"] else buf
        p.data -= lr * grad


class Adam(Optimizer):
    """Adam with bias correction and L2 weight decay added to the gradient (torch.optim.Adam).

    State per parameter: "step" (int), "exp_avg" m and "exp_avg_sq" v (the parameter's dtype).
    The bias corrections are computed in Python floats, the rest in the parameter's dtype:
        denom = sqrt(v) / sqrt(1 - b2^t) + eps,   p <- p - (lr / (1 - b1^t)) * m / denom
    """

    _ARRAY_STATE = ("exp_avg", "exp_avg_sq")
    _SCALAR_STATE = ("step",)
    _decoupled_weight_decay = False

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_group(self, group: dict[str, Any]) -> None:
        self._require_nonnegative(group, "lr", "eps", "weight_decay")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"{self._name}: betas must be a pair (beta1, beta2), got {betas}")
        for i, beta in enumerate(betas):
            if not 0 <= beta < 1:
                raise ValueError(f"{self._name}: betas[{i}] must be in [0, 1), got {beta}")

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        b1, b2 = (float(b) for b in group["betas"])
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if wd != 0 and self._decoupled_weight_decay:
            p.data *= 1 - lr * wd
        elif wd != 0:
            grad = grad + wd * p.data
        m += (1 - b1) * (grad - m)  # = b1*m + (1 - b1)*g, in torch's lerp form
        v *= b2
        v += (1 - b2) * grad * grad
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        p.data -= lr / (1 - b1**t) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): p <- p*(1 - lr*wd) before the Adam step.

    Defaults as torch: lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2.
    """

    _decoupled_weight_decay = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

"""Bop, the binary optimizer: flip a binary weight when its gradient has pointed the same way long
enough, with no latent real-valued weight at all; and `Combined`, which hands every other
parameter (batch norm, real first and last layers, biases) to an ordinary optimizer.

Per binary weight w in {-1, +1}, with g the (pseudo-)gradient of the loss w.r.t. w:

    m <- (1 - gamma) m + gamma g                          exponential moving average, m_0 = 0
    w <- -w   where |m| > tau and sign(m) == sign(w)      else w unchanged

gamma (the adaptivity rate) sets how many steps of gradient m remembers (about 1/gamma); tau
(the threshold) how consistent that gradient must be before a flip. A step that would move w in
the direction of its sign (g has w's sign, so -lr g points towards -w) is what triggers a flip.

Reference: Helwegen, Widdicombe, Geiger, Liu, Cheng, Nusselder, "Latent Weights Do Not Exist:
    Rethinking Binarized Neural Network Optimization", NeurIPS 2019, arXiv:1906.02107
    (Algorithm 1; the paper's defaults for CIFAR-10: gamma = 1e-4, tau = 1e-8).
Differences from the paper: weights that are not exactly +-1 when the first step comes (a
    model built with real-valued initial weights) are replaced by sign(w) (sign(0) = +1) at that
    step, flips included, so after one step every Bop weight is exactly +-1. The paper's
    schedule for gamma (decay by 10x every 100 epochs) is left to the caller (`group["gamma"]`).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..autograd import Tensor
from ..nn import binary as binary_nn
from .optimizers import Optimizer

__all__ = ["Bop", "Combined", "split_binary_parameters"]


class Bop(Optimizer):
    """Flip binary weights whose gradient moving average exceeds tau with the weight's sign.

    State per parameter: "exp_avg" m (the parameter's dtype). After `step()`, `last_flips` is
    the number of weights the step flipped (summed over all parameters).
    """

    _ARRAY_STATE = ("exp_avg",)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], threshold: float = 1e-8,
                 gamma: float = 1e-4):
        super().__init__(params, dict(threshold=threshold, gamma=gamma))
        self.last_flips = 0

    def _check_group(self, group: dict[str, Any]) -> None:
        self._require_nonnegative(group, "threshold")
        if not 0 < group["gamma"] <= 1:
            raise ValueError(f"Bop: gamma (the adaptivity rate) must be in (0, 1], got {group['gamma']}")

    def step(self) -> None:
        self.last_flips = 0
        super().step()

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        gamma, tau = float(group["gamma"]), float(group["threshold"])
        if not state:
            state["exp_avg"] = np.zeros_like(p.data)
        m = state["exp_avg"]
        m += gamma * (grad - m)                                # = (1 - gamma) m + gamma g
        w_sign = np.where(p.data < 0, -1, 1).astype(p.data.dtype)      # sign(0) = +1
        flip = (np.abs(m) > tau) & (np.where(m < 0, -1, 1) == w_sign)
        self.last_flips += int(np.count_nonzero(flip))
        p.data[...] = np.where(flip, -w_sign, w_sign)


def split_binary_parameters(model) -> tuple[list[Tensor], list[Tensor]]:
    """(the weights of binarized layers, every other parameter) of a model, in model order.

    Binarized layers are those whose weight quantizer is binary (weight_quantizer "none", the
    real-weight variant of a binary layer, counts as real)."""
    latent = {id(layer.weight) for _, layer in binary_nn.binary_layers(model)
              if layer.weight_quantizer.binary}
    params = list(model.parameters())
    return [p for p in params if id(p) in latent], [p for p in params if id(p) not in latent]


class Combined:
    """Several optimizers stepping disjoint parameter sets as one (larq calls this a case
    optimizer): `Combined(Bop(binary), Adam(other, lr=1e-3))`.

    zero_grad/step call each member in order; `param_groups` lists all members' groups. Give a
    schedule to the member it is meant for (`LRScheduler(combined.optimizers[1], ...)` for
    Adam's lr, a `ParamSchedule` that writes group["gamma"] for Bop): Bop's groups have no "lr"."""

    def __init__(self, *optimizers: Optimizer):
        if not optimizers:
            raise ValueError("Combined: give at least one optimizer")
        seen: dict[int, int] = {}
        for i, opt in enumerate(optimizers):
            for p in opt._params():
                if id(p) in seen:
                    raise ValueError(f"Combined: a parameter of shape {p.shape} is in optimizer "
                                     f"{seen[id(p)]} and optimizer {i}; each may have only one")
                seen[id(p)] = i
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad()

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("optimizers")
        if not isinstance(saved, list) or len(saved) != len(self.optimizers):
            found = len(saved) if isinstance(saved, list) else type(saved).__name__
            raise ValueError(f"Combined.load_state_dict: expected {len(self.optimizers)} "
                             f"optimizer states under 'optimizers', found {found}")
        for opt, state in zip(self.optimizers, saved):
            opt.load_state_dict(state)

    def __repr__(self) -> str:
        return "Combined(" + ", ".join(repr(o) for o in self.optimizers) + ")"

"""Optimizer and learning-rate schedule of a TrainConfig.

Binary networks follow the usual practice of the BNN papers: no weight decay on the latent
binary weights (decay pulls them towards 0, where their signs flip back and forth), the
configured decay on every other parameter.
"""

from __future__ import annotations

from typing import Callable

from .. import optim
from ..nn import binary as binary_nn
from .config import TrainConfig

__all__ = ["make_optimizer", "make_lr_schedule", "parameter_groups"]


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """Two groups: latent binary weights (no decay) and everything else (weight_decay)."""
    latent = {id(layer.weight) for _, layer in binary_nn.binary_layers(model)}
    binary_params = [p for p in model.parameters() if id(p) in latent]
    other = [p for p in model.parameters() if id(p) not in latent]
    groups = [{"params": other, "weight_decay": weight_decay}]
    if binary_params:
        groups.append({"params": binary_params, "weight_decay": 0.0})
    return groups


def make_optimizer(config: TrainConfig, model, extra_params: list = ()):
    """The configured optimizer over the model's parameters and a method's own (extra_params)."""
    groups = parameter_groups(model, config.weight_decay)
    if extra_params:
        groups.append({"params": list(extra_params), "weight_decay": config.weight_decay})
    if config.optimizer == "sgd":
        return optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return optim.Adam(groups, lr=config.lr)
    return optim.AdamW(groups, lr=config.lr)


def make_lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """lr as a function of the epoch index (0-based), with an optional linear warm-up."""
    s = optim.schedules
    # linear_warmup hands epoch t to the wrapped schedule as t - (warmup - 1), so the decay
    # spans epochs - warmup + 1 steps and only reaches its end after the last epoch.
    decay_epochs = max(config.epochs - config.warmup_epochs + (1 if config.warmup_epochs else 0), 1)
    schedule = {
        "cosine": lambda: s.cosine(config.lr, decay_epochs),
        "linear": lambda: s.linear_decay(config.lr, decay_epochs),
        "step": lambda: s.multistep(config.lr, [int(decay_epochs * 0.6), int(decay_epochs * 0.8)]),
        "constant": lambda: s.constant(config.lr),
    }[config.schedule]()
    if config.warmup_epochs:
        schedule = s.linear_warmup(schedule, config.warmup_epochs)
    return lambda epoch: float(schedule(epoch))

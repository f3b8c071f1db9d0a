"""Training methods from the papers, and the recipes that plug them into `minibnn train`.

Each method has a math module of functions of tensors (lcr.py, cmim.py, s2bnn.py: no model
classes, no training loop) and a recipe module (`<name>_recipe.py`) with:

    add_arguments(group)            the method's command-line options (--lcr-alpha, ...)
    options_from_args(args) -> dict  those options as TrainConfig.method_options
    make_recipe(config, model, train_set) -> Recipe

A Recipe is the loss function of the loop plus the hooks a method needs; the base class below
documents each hook and gives the do-nothing default, so a recipe overrides only what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

__all__ = ["Recipe", "METHODS", "make_loss", "add_method_arguments", "options_from_args",
           "available_methods", "with_defaults"]

METHODS = {
    "lcr": "minibnn.methods.lcr_recipe",
    "cmim": "minibnn.methods.cmim_recipe",
    "s2bnn": "minibnn.methods.s2bnn_recipe",
}


class Recipe:
    """The loss of a method and its hooks into the training loop (defaults do nothing)."""

    def __call__(self, model, batch):
        """(model, (x, y, idx)) -> train.loop.LossOutput(loss, logits or None, terms)."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__")

    def parameters(self) -> list:
        """Extra trainable Parameters owned by the method (LCR's gammas, trainable heads)."""
        return []

    def state_dict(self) -> dict:
        """Everything a resumed run needs (memory banks, queues, samplers' generators, ...)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> dict:
        """Called before each epoch; returns values to log."""
        return {}

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        """Called after each epoch with its history row; may add entries to it."""

    def after_step(self) -> None:
        """Called after every optimizer step (e.g. a momentum encoder's update)."""

    def evaluate(self, model, val_loader) -> dict | None:
        """Validation metrics with "val_"-prefixed keys, or None for plain CE + accuracy."""
        return None

    def train_transform(self, transform):
        """Wrap the loader's per-batch transform (x, rng) -> x, e.g. to return two views."""
        return transform


def with_defaults(method: str, options: dict, defaults: dict) -> dict:
    """A method's options merged over its defaults; unknown keys are an error naming them."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {method} options {unknown}; known: {sorted(defaults)}")
    return {**defaults, **options}


def available_methods() -> list[str]:
    names = []
    for name, module in METHODS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                names.append(name)
        except ModuleNotFoundError:
            pass
    return names


def _module(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of ce, {', '.join(METHODS)}")
    if name not in available_methods():
        raise ValueError(f"method {name!r} is not part of this installation")
    return importlib.import_module(METHODS[name])


def make_loss(config, model, train_set) -> Recipe:
    return _module(config.method).make_recipe(config, model, train_set)


def model_options(config) -> dict:
    """Extra keyword arguments for build_model that a method asks for (e.g. an MLP head)."""
    if config.method == "ce":
        return {}
    module = _module(config.method)
    return module.model_options(config) if hasattr(module, "model_options") else {}


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    for name in available_methods():
        group = parser.add_argument_group(f"method {name}")
        importlib.import_module(METHODS[name]).add_arguments(group)


def options_from_args(method: str, args: argparse.Namespace) -> dict:
    return {} if method == "ce" else _module(method).options_from_args(args)

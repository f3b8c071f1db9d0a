"""Training methods from the papers, and the recipes that plug them into `minibnn train`.

Each method has a math module of functions of tensors (lcr.py, cmim.py, s2bnn.py: no model
classes, no training loop) and a recipe module (`<name>_recipe.py`) with:

    add_arguments(group)            the method's command-line options (--lcr-alpha, ...)
    options_from_args(args) -> dict  those options as TrainConfig.method_options
    make_recipe(config, model, train_set) -> Recipe

base.py holds what they share: the Recipe interface (each hook documented, with a do-nothing
default), LossOutput, the plain cross-entropy baseline (method "ce"), the registry below, and
the loader of trained models and teachers from checkpoints.
"""

from . import cmim_recipe, lcr_recipe, s2bnn_recipe
from .base import (METHODS, CrossEntropy, LossOutput, Recipe, TrainedModel, add_method_arguments,
                   available_methods, cross_entropy_loss, evaluate, load_teacher,
                   load_trained_model, make_recipe, method, model_kwargs, options_from_args,
                   register, uses_teacher, with_defaults)

register("lcr", lcr_recipe)
register("cmim", cmim_recipe)
register("s2bnn", s2bnn_recipe)

__all__ = ["Recipe", "LossOutput", "CrossEntropy", "cross_entropy_loss", "evaluate", "METHODS",
           "register", "method", "make_recipe", "model_kwargs", "uses_teacher",
           "add_method_arguments", "options_from_args", "available_methods", "with_defaults",
           "TrainedModel", "load_trained_model", "load_teacher"]

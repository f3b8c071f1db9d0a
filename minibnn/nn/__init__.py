"""minibnn.nn: Module, Parameter, real-valued layers, binary layers, initialisers."""

from . import binary, init
from .binary import (BinaryConv2d, BinaryLinear, FlipRatio, LearnableBias, RPReLU, RSign,
                     binary_layers, clip_latent_weights, set_ede)
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout,
                     Flatten, Hardtanh, Identity, LeakyReLU, Linear, MaxPool2d, PReLU, ReLU,
                     Sigmoid, Tanh, as_generator)
from .module import Module, ModuleList, Parameter, Sequential, StateDictError

__all__ = [
    "init", "Module", "ModuleList", "Parameter", "Sequential", "StateDictError", "Identity",
    "Flatten", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "PReLU",
    "Hardtanh", "Tanh", "Sigmoid", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout",
    "as_generator", "binary", "BinaryConv2d", "BinaryLinear", "LearnableBias", "RSign", "RPReLU",
    "binary_layers", "set_ede", "clip_latent_weights", "FlipRatio",
]

"""minibnn.models: the architectures, each as a binary network and its real-valued twin.

    build_model("cnn")                                  binary SmallCNN for 1x28x28 MNIST
    build_model("resnet20", binary=False, in_channels=3, image_size=32)   real twin for CIFAR

Every model is a `Backbone`: forward(x) -> logits, forward_features(x) -> stage outputs,
forward_all(x) -> (logits, features, embedding) in one pass, embedding(x) -> (N, D).
A real twin has the same skeleton and the same state_dict keys as its BNN, with real convs and
ReLU (pass activation="hardtanh" to keep the BNN's activation). Default quantizers per model
(input, weight), used when binary=True and none are given:

    mlp, cnn                      ("ste", "xnor")      BNN clipped STE, XNOR-Net scaled weights
    vgg_small, resnet20, resnet18 ("ede", "irnet")     IR-Net, as LCR-BNN and CMIM train them
    reactnet, reactnet_a          ("approx", "reactnet")  ReActNet / S2-BNN; "none" = step 1
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from ..nn import Module
from . import base, cnn, heads, mlp, reactnet, resnet, vgg
from .base import Backbone, ModelOutput
from .cnn import SmallCNN
from .heads import MLPHead, ProjectionHead
from .mlp import MLP
from .reactnet import ReActNet, reactnet_a
from .resnet import ResNet, resnet18, resnet20
from .vgg import VGGSmall

__all__ = ["ModelSpec", "MODELS", "list_models", "option_names", "build_model", "Backbone",
           "ModelOutput", "MLP", "SmallCNN", "VGGSmall", "ResNet", "ReActNet", "resnet20", "resnet18",
           "reactnet_a", "ProjectionHead", "MLPHead", "base", "cnn", "heads", "mlp", "reactnet",
           "resnet", "vgg"]


@dataclass(frozen=True)
class ModelSpec:
    builder: Callable[..., Module]
    default_quantizers: tuple       # (input, weight) names used when none are given
    option_names: tuple             # model-specific keyword options build_model passes on
    description: str


_RESNET_OPTIONS = ("shortcut", "stem_activation", "activation")
_REACT_OPTIONS = ("stem_stride", "mlp_head", "head_dim", "weight_init")
MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(MLP, mlp.DEFAULT_QUANTIZERS, ("hidden_sizes", "activation"),
                     "MLP: FP 784->512, binary 512->512 x2, FP classifier (BNN, arXiv:1602.02830)"),
    "cnn": ModelSpec(SmallCNN, cnn.DEFAULT_QUANTIZERS, ("activation",),
                     "small binary CNN, FP stem + 3 binary 3x3 convs (default of `minibnn train`)"),
    "vgg_small": ModelSpec(VGGSmall, vgg.DEFAULT_QUANTIZERS, ("activation",),
                           "VGG-small 128-128-256-256-512-512 (IR-Net, arXiv:1909.10788)"),
    "resnet20": ModelSpec(resnet20, resnet.DEFAULT_QUANTIZERS, _RESNET_OPTIONS,
                          "CIFAR ResNet-20, shortcut per binary conv, option A (IR-Net)"),
    "resnet18": ModelSpec(resnet18, resnet.DEFAULT_QUANTIZERS, _RESNET_OPTIONS,
                          "CIFAR ResNet-18, shortcut per binary conv, FP 1x1 downsample (IR-Net)"),
    "reactnet": ModelSpec(ReActNet, reactnet.DEFAULT_QUANTIZERS,
                          ("stage_channels",) + _REACT_OPTIONS,
                          "ReActNet-A, first 7 blocks by default (arXiv:2003.03488, S2-BNN)"),
    "reactnet_a": ModelSpec(reactnet_a, reactnet.DEFAULT_QUANTIZERS, _REACT_OPTIONS,
                            "full 13-block ReActNet-A (arXiv:2003.03488)"),
}

def list_models() -> list[str]:
    return list(MODELS)


def option_names(name: str) -> tuple:
    """The model-specific keyword options of `name` (beyond build_model's common arguments)."""
    return _spec(name).option_names


def _spec(name: str) -> ModelSpec:
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        close = difflib.get_close_matches(key, list(MODELS), n=1, cutoff=0.0)
        raise ValueError(f"unknown model {name!r}; closest valid name: {close[0]!r}; "
                         f"valid names: {', '.join(MODELS)}")
    return MODELS[key]


def build_model(name: str, *, binary: bool = True, in_channels: int = 1, image_size: int = 28,
                num_classes: int = 10, width: float = 1.0, input_quantizer: str | None = None,
                weight_quantizer: str | None = None, rng=None, **options) -> Module:
    """Build model `name` (hyphens allowed: "vgg-small") as a BNN or, binary=False, its real twin.

    Quantizer names default per model (see the module docstring); rng is a Generator or an int
    seed, and one generator initialises every layer, so the same seed gives the same weights.
    `options` are model-specific (option_names(name) lists them), e.g. hidden_sizes for mlp,
    shortcut for resnet18, stage_channels / mlp_head / weight_init for reactnet.
    """
    spec = _spec(name)
    unknown = sorted(set(options) - set(spec.option_names))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; "
                         f"valid options: {', '.join(spec.option_names) or 'none'}")
    return spec.builder(in_channels=in_channels, image_size=image_size, num_classes=num_classes,
                        width=width, binary=binary, input_quantizer=input_quantizer,
                        weight_quantizer=weight_quantizer, rng=rng, **options)

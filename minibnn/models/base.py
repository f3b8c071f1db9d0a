"""What every model shares: the `Backbone` interface, its constructor prologue, layer factories.

A Backbone maps images (N, C, H, W) to stage features, then to a pooled embedding (N, D), then
to logits through `classifier`; `forward_all` computes all three in one pass. Constructors call
`Backbone.prologue` once with the arguments every model takes (channels, image size, width,
binary or real twin, quantizer names, generator) and build their layers with the returned
`Prologue`, so a model states only what is specific to it. The packed engine's export protocol
(`export_packed`) is described on the Backbone as well; models never import the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from ..autograd import Tensor
from ..nn import Conv2d, Hardtanh, Identity, Linear, Module, ReLU, as_generator
from ..nn import binary as nn_binary

__all__ = ["ModelOutput", "Backbone", "Prologue", "scale_channels", "make_conv", "make_linear",
           "make_activation", "resolve_quantizers"]


class ModelOutput(NamedTuple):
    logits: Tensor          # (N, num_classes), or (N, head_dim) with an MLP head
    features: list          # stage outputs, spatial size non-increasing
    embedding: Tensor       # (N, D): the classifier's input


class Backbone(Module):
    """Base class of the models: input check plus the forward family, built on two hooks.

    Subclass constructors call `self.prologue(...)` once with the common arguments (it sets
    `input_shape = (C, H, W)`, `binary` and `quantizers`), then set `embedding_dim` and
    `classifier`, and implement `_stages(x) -> list[Tensor]` (stage outputs) and
    `_pool(last_stage) -> (N, D)`.
    To evaluate linearly, replace `model.classifier` by a fresh Linear(embedding_dim, classes).
    """

    input_shape: tuple = ()
    binary: bool = True
    quantizers: tuple = (None, None)
    embedding_dim: int = 0

    def prologue(self, defaults: tuple, in_channels: int, image_size: int, width: float,
                 binary: bool, input_quantizer, weight_quantizer, rng,
                 activation: str | None = None) -> "Prologue":
        """The constructor arguments every model shares -> a Prologue (layer factories).

        Resolves the (input, weight) quantizer names (the model's `defaults` unless given; None
        for the real twin, which refuses explicit ones), the activation ("hardtanh" for a BNN,
        "relu" for its twin, unless given) and the generator (`rng`: Generator, int seed or
        None); sets input_shape = (in_channels, image_size, image_size), binary and quantizers.
        """
        qin, qw = resolve_quantizers(type(self).__name__, binary, input_quantizer,
                                     weight_quantizer, defaults)
        self.input_shape = (in_channels, image_size, image_size)
        self.binary, self.quantizers = binary, (qin, qw)
        return Prologue(binary, qin, qw, activation or ("hardtanh" if binary else "relu"),
                        width, as_generator(rng))

    def check_input(self, x: Tensor) -> None:
        if (not isinstance(x, Tensor) or x.ndim != 4
                or tuple(x.shape[1:]) != tuple(self.input_shape)):
            got = x.shape if hasattr(x, "shape") else type(x).__name__
            c, h, w = self.input_shape
            raise ValueError(f"{type(self).__name__}: expected a Tensor of shape (N, C, H, W) = "
                             f"(N, {c}, {h}, {w}), got {got}")

    def _stages(self, x: Tensor) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pool(self, last: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> list:
        """Stage outputs [(N, C_1, H_1, W_1), ...], H_1 >= H_2 >= ... (what LCR pairs up).

        The MLP's stages are its hidden layers, (N, D_i) without spatial axes.
        """
        self.check_input(x)
        return self._stages(x)

    def forward_all(self, x: Tensor) -> ModelOutput:
        """Logits, stage features and embedding from ONE forward pass."""
        features = self.forward_features(x)
        emb = self._pool(features[-1])                    # (N, D)
        return ModelOutput(self.classifier(emb), features, emb)

    def forward_with_features(self, x: Tensor) -> tuple:
        out = self.forward_all(x)
        return out.logits, out.features

    def embedding(self, x: Tensor) -> Tensor:
        """The pooled feature (N, D) that the classifier reads; used by linear evaluation."""
        return self._pool(self.forward_features(x)[-1])

    def penultimate(self, x: Tensor) -> Tensor:
        """The penultimate feature that CMIM contrasts: the same (N, D) as `embedding`."""
        return self.embedding(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_all(x).logits

    # ------------------------------------------------------------------ packed export
    def export_packed(self, builder, x):
        """The packed engine's export protocol (minibnn.engine.export): the order of
        forward_all, stages -> pooling -> classifier, through the builder it is given."""
        x = self._export_pool(builder, self._export_stages(builder, x))
        return builder.chain([self.classifier], x)

    def _export_stages(self, builder, x):
        """Export `_stages` (the hook a subclass implements to be exportable)."""
        builder.fail(self, "this architecture does not describe its packed export "
                           "(_export_stages / _export_pool)")

    def _export_pool(self, builder, x):
        """Export `_pool`."""
        builder.fail(self, "this architecture does not describe its packed export "
                           "(_export_stages / _export_pool)")


# ------------------------------------------------------------------------- factories
def scale_channels(channels: int, width: float) -> int:
    """round(channels * width), at least 1: the width multiplier of every model."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, int(round(channels * width)))


def resolve_quantizers(model: str, binary: bool, input_quantizer, weight_quantizer,
                       defaults: tuple) -> tuple:
    """(input, weight) quantizer names: the model's defaults unless given; None for real twins."""
    if not binary:
        if input_quantizer is not None or weight_quantizer is not None:
            raise ValueError(f"{model}: input_quantizer/weight_quantizer apply to the binary "
                             f"model only; leave them None when binary=False")
        return None, None
    return (input_quantizer or defaults[0], weight_quantizer or defaults[1])


def make_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
              padding: int = 0, *, binary: bool, input_quantizer=None, weight_quantizer=None,
              rng: np.random.Generator) -> Module:
    """A bias-free BinaryConv2d (binary=True) or Conv2d (the real twin) of the same shape."""
    if binary:
        return nn_binary.BinaryConv2d(in_channels, out_channels, kernel_size, stride, padding,
                                      bias=False, input_quantizer=input_quantizer,
                                      weight_quantizer=weight_quantizer, rng=rng)
    return Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, rng=rng)


def make_linear(in_features: int, out_features: int, *, binary: bool, input_quantizer=None,
                weight_quantizer=None, rng: np.random.Generator) -> Module:
    if binary:
        return nn_binary.BinaryLinear(in_features, out_features, bias=False,
                                      input_quantizer=input_quantizer,
                                      weight_quantizer=weight_quantizer, rng=rng)
    return Linear(in_features, out_features, bias=False, rng=rng)


ACTIVATIONS = {"hardtanh": Hardtanh, "relu": ReLU, "identity": Identity}


def make_activation(name: str) -> Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


@dataclass(frozen=True)
class Prologue:
    """What a model constructor needs from the common arguments (made by Backbone.prologue).

    One generator `rng` initialises every layer in construction order, so the same seed gives
    the same weights. `conv` / `linear` give binary layers with the model's quantizers, or the
    real twin's layers of the same shape; binary=False keeps one layer full precision.
    """

    binary: bool
    input_quantizer: str | None       # None for the real twin
    weight_quantizer: str | None
    activation: str                   # "hardtanh", "relu" or "identity"
    width: float
    rng: np.random.Generator

    def channels(self, base: Sequence[int]) -> list:
        """Each of `base` scaled by the width multiplier: round(c * width), at least 1."""
        return [scale_channels(c, self.width) for c in base]

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0, *, binary: bool = True) -> Module:
        return make_conv(in_channels, out_channels, kernel_size, stride, padding,
                         binary=self.binary and binary, input_quantizer=self.input_quantizer,
                         weight_quantizer=self.weight_quantizer, rng=self.rng)

    def linear(self, in_features: int, out_features: int) -> Module:
        return make_linear(in_features, out_features, binary=self.binary,
                           input_quantizer=self.input_quantizer,
                           weight_quantizer=self.weight_quantizer, rng=self.rng)

    def act(self) -> Module:
        """A fresh instance of the model's activation."""
        return make_activation(self.activation)

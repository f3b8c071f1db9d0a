"""A binary multilayer perceptron for small images (MNIST), and its real-valued twin.

    x (N, C, H, W) -> flatten (N, C*H*W) -> FP Linear -> BN1d -> act        hidden[0]
                   -> [binary Linear -> BN1d -> act] * (len(hidden_sizes) - 1)
                   -> FP Linear -> logits (N, num_classes)

Reference: Hubara, Courbariaux et al., "Binarized Neural Networks", arXiv:1602.02830 (MLP with
batch norm after every layer, Hardtanh as the activation whose sign is taken).
Differences from the paper: the first and last layers are full precision (as in most later
BNNs and docs/methods.md §1.3), the default is 3 hidden layers of 512 rather than 3 x 4096, and there
is no dropout. The real twin uses ReLU unless `activation` says otherwise.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..autograd import Tensor
from ..nn import BatchNorm1d, Linear, ModuleList, Sequential
from .base import Backbone

__all__ = ["MLP", "DEFAULT_QUANTIZERS"]

DEFAULT_QUANTIZERS = ("ste", "xnor")   # BNN's clipped STE on inputs, XNOR-Net scaled weights


class MLP(Backbone):
    """Stage features are the hidden layers' outputs (N, D_i); the embedding is the last one.

    width scales every hidden size. Binary layers take the sign of the previous activation
    (Hardtanh by default, so the sign's STE window matches the clip).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
                 weight_quantizer: str | None = None, hidden_sizes: Sequence[int] = (512, 512, 512),
                 activation: str | None = None, rng=None):
        super().__init__()
        if len(hidden_sizes) < 1:
            raise ValueError("MLP: hidden_sizes needs at least one layer")
        p = self.prologue(DEFAULT_QUANTIZERS, in_channels, image_size, width, binary,
                          input_quantizer, weight_quantizer, rng, activation)
        sizes = p.channels(hidden_sizes)
        self.embedding_dim = sizes[-1]

        d_in = in_channels * image_size * image_size
        self.input_layer = Sequential(Linear(d_in, sizes[0], bias=False, rng=p.rng),   # FP
                                      BatchNorm1d(sizes[0]), p.act())
        self.hidden = ModuleList([Sequential(p.linear(a, b), BatchNorm1d(b), p.act())
                                  for a, b in zip(sizes[:-1], sizes[1:])])
        self.classifier = Linear(sizes[-1], num_classes, rng=p.rng)                    # FP

    def _stages(self, x: Tensor) -> list:
        h = self.input_layer(x.flatten(1))          # (N, C*H*W) -> (N, D_0)
        features = [h]
        for layer in self.hidden:
            h = layer(h)                            # (N, D_i)
            features.append(h)
        return features

    def _pool(self, last: Tensor) -> Tensor:
        return last                                 # already (N, D)

    def _export_stages(self, builder, x):
        x = builder.flatten(x, math.prod(self.input_shape))            # (N, C*H*W)
        return builder.chain([self.input_layer, *self.hidden], x)

    def _export_pool(self, builder, x):
        return x

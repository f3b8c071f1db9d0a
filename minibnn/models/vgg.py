"""VGG-small as binarised by IR-Net, and its real-valued twin.

    conv0  FP conv C->128 3x3 p1 -> BN -> act                         (N, 128, S, S)
    conv1  binary 128->128 -> maxpool 2 -> BN -> act                  (N, 128, S/2, S/2)   stage 1
    conv2  binary 128->256 -> BN -> act
    conv3  binary 256->256 -> maxpool 2 -> BN -> act                  (N, 256, S/4, S/4)   stage 2
    conv4  binary 256->512 -> BN -> act
    conv5  binary 512->512 -> maxpool 2 -> BN -> act                  (N, 512, S/8, S/8)   stage 3
    flatten -> FP Linear(512 * (S/8)^2, classes)

All convs are 3x3, stride 1, padding 1, no bias; channels are multiplied by `width` (0.25 keeps
the net CPU-friendly). S/8 is floor-halved three times: 32 -> 4, 28 -> 3.

Reference: VGG-small of Zhang et al. (LQ-Nets, arXiv:1807.10029) in the 1W1A form of IR-Net,
Qin et al., "Forward and Backward Information Retention for Accurate Binary Neural Networks",
arXiv:1909.10788 (order conv -> pool -> BN -> Hardtanh; docs/methods.md §1.4).
Differences from the paper: the width multiplier and input sizes other than 32 are ours; the
real twin uses ReLU (the usual FP VGG-small) unless `activation="hardtanh"` is passed.
"""

from __future__ import annotations

from ..autograd import Tensor
from ..nn import BatchNorm2d, Linear, MaxPool2d, ModuleList, Sequential
from .base import Backbone

__all__ = ["VGGSmall", "DEFAULT_QUANTIZERS", "LAYERS"]

DEFAULT_QUANTIZERS = ("ede", "irnet")     # IR-Net: EDE pseudo-gradient, Libra-PB weights
# (out_channels, maxpool after, ends a stage) per conv; conv0 is the full-precision stem.
LAYERS = ((128, False, False), (128, True, True), (256, False, False), (256, True, True),
          (512, False, False), (512, True, True))


class VGGSmall(Backbone):
    """Stage features: the pooled outputs of conv1, conv3 and conv5."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
                 width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
                 weight_quantizer: str | None = None, activation: str | None = None, rng=None):
        super().__init__()
        p = self.prologue(DEFAULT_QUANTIZERS, in_channels, image_size, width, binary,
                          input_quantizer, weight_quantizer, rng, activation)
        layers, self.stage_ends = [], []
        c_in, size = in_channels, image_size
        widths = p.channels([c for c, _, _ in LAYERS])
        for i, ((_, pool, ends), c_out) in enumerate(zip(LAYERS, widths)):
            conv = p.conv(c_in, c_out, 3, 1, 1, binary=i > 0)                    # conv0 is FP
            layers.append(Sequential(conv, *([MaxPool2d(2)] if pool else []),
                                     BatchNorm2d(c_out), p.act()))
            if ends:
                self.stage_ends.append(i)
            c_in, size = c_out, (size // 2 if pool else size)
        if size < 1:
            raise ValueError(f"VGGSmall: image_size {image_size} is too small for 3 poolings")
        self.layers = ModuleList(layers)
        self.embedding_dim = c_in * size * size
        self.classifier = Linear(self.embedding_dim, num_classes, rng=p.rng)       # FP

    def _stages(self, x: Tensor) -> list:
        features = []
        for i, layer in enumerate(self.layers):
            x = layer(x)                         # (N, C_i, H_i, W_i)
            if i in self.stage_ends:
                features.append(x)
        return features

    def _pool(self, last: Tensor) -> Tensor:
        return last.flatten(1)                   # (N, 512w * (S/8)^2), as IR-Net's fc input

    def _export_stages(self, builder, x):
        return builder.chain(list(self.layers), x)

    def _export_pool(self, builder, x):
        return builder.flatten(x, self.embedding_dim)

"""A small binary CNN: the default model of `minibnn train`, sized for MNIST on a laptop CPU.

Layout at width 1 on 1x28x28 (IR-Net order conv -> [pool] -> BN -> act, arXiv:1909.10788):

    stem    FP conv 1->32 3x3 p1 -> maxpool 2 -> BN -> act          (N, 32, 14, 14)
    block1  binary conv 32->64 3x3 p1 -> maxpool 2 -> BN -> act     (N, 64, 7, 7)
    block2  binary conv 64->64 3x3 p1 -> BN -> act                  (N, 64, 7, 7)
    block3  binary conv 64->128 3x3 p1 -> maxpool 2 -> BN -> act    (N, 128, 3, 3)
    flatten (N, 1152) -> FP Linear -> logits

Design: the real stem keeps the pixel values (binarising raw MNIST pixels loses most of the
signal); pooling comes before BN so BN sees the pooled statistics, as in VGG-small; three binary
convs give the network depth at a cost of about 9.3 M MACs per 28x28 image (3.6 + 1.8 + 3.6 M
binary, 0.24 M real), small enough for NumPy im2col training; the classifier reads the whole
3x3 map (no global pool) because at this size position still carries class information.
Reference: no single paper; it is a shrunk VGG-small (IR-Net, arXiv:1909.10788).
Differences from the paper: this architecture is ours, chosen for speed on a CPU.
"""

from __future__ import annotations

from ..autograd import Tensor
from ..nn import BatchNorm2d, Linear, MaxPool2d, ModuleList, Sequential
from .base import Backbone

__all__ = ["SmallCNN", "DEFAULT_QUANTIZERS", "CHANNELS"]

DEFAULT_QUANTIZERS = ("ste", "xnor")
CHANNELS = (32, 64, 64, 128)          # stem, block1, block2, block3 at width 1
POOL_AFTER = (True, True, False, True)


class SmallCNN(Backbone):
    """Stage features: the outputs of the stem and of the three blocks (spatial 14, 7, 7, 3)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
                 weight_quantizer: str | None = None, activation: str | None = None, rng=None):
        super().__init__()
        p = self.prologue(DEFAULT_QUANTIZERS, in_channels, image_size, width, binary,
                          input_quantizer, weight_quantizer, rng, activation)
        stages, size, c_in = [], image_size, in_channels
        for i, (c_out, pool) in enumerate(zip(p.channels(CHANNELS), POOL_AFTER)):
            conv = p.conv(c_in, c_out, 3, 1, 1, binary=i > 0)                 # stem stays FP
            layers = [conv] + ([MaxPool2d(2)] if pool else [])
            stages.append(Sequential(*layers, BatchNorm2d(c_out), p.act()))
            size, c_in = (size // 2 if pool else size), c_out
        if size < 1:
            raise ValueError(f"SmallCNN: image_size {image_size} is too small for 3 poolings")
        self.stages = ModuleList(stages)
        self.embedding_dim = c_in * size * size
        self.classifier = Linear(self.embedding_dim, num_classes, rng=p.rng)        # FP

    def _stages(self, x: Tensor) -> list:
        features = []
        for stage in self.stages:
            x = stage(x)                 # (N, C_i, H_i, W_i)
            features.append(x)
        return features

    def _pool(self, last: Tensor) -> Tensor:
        return last.flatten(1)           # (N, C * H * W)

    def _export_stages(self, builder, x):
        return builder.chain(list(self.stages), x)

    def _export_pool(self, builder, x):
        return builder.flatten(x, self.embedding_dim)

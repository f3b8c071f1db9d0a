"""CIFAR ResNet-20 and ResNet-18 with a shortcut around every binary conv (Bi-Real / IR-Net).

Block (in C -> out M, stride s), "act" = Hardtanh in the BNN:

    h   = act(BN1(conv3x3_s(x)) + D(x))          (N, M, H/s, W/s)
    out = act(BN2(conv3x3(h)) + h)               (N, M, H/s, W/s)

D = identity when shape is kept; otherwise "a" (option A, parameter-free: x[:, :, ::s, ::s] and
zero channels padded on both sides), "fp" (full-precision 1x1 conv stride s + BN) or "binary"
(binary 1x1 conv + BN, the CMIM choice).

    resnet20:  FP stem 3x3 C->16 + BN + act; stages 16/32/64 x 3 blocks (strides 1, 2, 2),
               shortcut "a"; global avg pool; BN1d(64); FP Linear.
    resnet18:  FP stem 3x3 C->64 stride 1 + BN + act; stages 64/128/256/512 x 2 blocks
               (strides 1, 2, 2, 2), shortcut "fp"; global avg pool; BN1d(512); FP Linear.

References: He et al., "Deep Residual Learning", arXiv:1512.03385 (CIFAR ResNet-20, option A);
Liu et al., "Bi-Real Net", arXiv:1808.00278 (a shortcut per binary conv); Qin et al., IR-Net,
arXiv:1909.10788 (these CIFAR ResNet-18/20 in 1W1A form, docs/methods.md §1.4).
Differences from the paper: channels scale with `width`; the real twin keeps the per-conv
shortcut skeleton (with ReLU) instead of the original two-conv block. CMIM's ResNet-18 uses a
binary 1x1 shortcut and no activation after the stem: pass shortcut="binary",
stem_activation=False to get it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..nn import (BatchNorm1d, BatchNorm2d, Conv2d, Identity, Linear, Module, ModuleList,
                  Sequential)
from .base import Backbone, make_activation, make_conv

__all__ = ["ResNet", "BiRealBlock", "ShortcutA", "resnet20", "resnet18", "DEFAULT_QUANTIZERS"]

DEFAULT_QUANTIZERS = ("ede", "irnet")     # IR-Net's binarizer, as LCR and CMIM use
SHORTCUTS = ("a", "fp", "binary")


class ShortcutA(Module):
    """Option A: subsample by `stride`, then zero-pad channels C -> M (half each side)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ShortcutA cannot reduce channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.pad = ((out_channels - in_channels) // 2, out_channels - in_channels
                    - (out_channels - in_channels) // 2)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]             # (N, C, ceil(H/s), ceil(W/s))
        lo, hi = self.pad
        if lo == hi == 0:
            return x
        n, _, h, w = x.shape
        parts = [Tensor(np.zeros((n, lo, h, w), x.dtype)), x,
                 Tensor(np.zeros((n, hi, h, w), x.dtype))]
        return F.concatenate([p for p in parts if p.shape[1] > 0], axis=1)   # (N, M, H', W')


class BiRealBlock(Module):
    """Two 3x3 convs, each with its own shortcut (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, binary: bool,
                 input_quantizer, weight_quantizer, shortcut: str, activation: str,
                 rng: np.random.Generator):
        super().__init__()
        q = dict(binary=binary, input_quantizer=input_quantizer,
                 weight_quantizer=weight_quantizer, rng=rng)
        self.conv1 = make_conv(in_channels, out_channels, 3, stride, 1, **q)
        self.bn1 = BatchNorm2d(out_channels)
        self.act1 = make_activation(activation)
        self.conv2 = make_conv(out_channels, out_channels, 3, 1, 1, **q)
        self.bn2 = BatchNorm2d(out_channels)
        self.act2 = make_activation(activation)
        if stride == 1 and in_channels == out_channels:
            self.downsample = Identity()
        elif shortcut == "a":
            self.downsample = ShortcutA(in_channels, out_channels, stride)
        elif shortcut == "fp":
            self.downsample = Sequential(Conv2d(in_channels, out_channels, 1, stride, bias=False,
                                                rng=rng), BatchNorm2d(out_channels))
        else:                                                        # "binary" (CMIM)
            self.downsample = Sequential(make_conv(in_channels, out_channels, 1, stride, **q),
                                         BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        h = self.act1(self.bn1(self.conv1(x)) + self.downsample(x))   # (N, M, H/s, W/s)
        return self.act2(self.bn2(self.conv2(h)) + h)                 # (N, M, H/s, W/s)

    def export_packed(self, builder, x):
        """Packed export (minibnn.engine.export's protocol): each shortcut is added in its
        conv's output stage. Option A reads x at stride s into the middle channels."""
        ds = self.downsample
        if isinstance(ds, ShortcutA):                # x[:, :, ::s, ::s] into channels lo..
            builder.absorb(ds)
            res = builder.residual(x, stride=ds.stride, offset=ds.pad[0])
        else:                                        # identity, or 1x1 conv + BN
            res = builder.chain([ds], x)
        h = builder.layer(self.conv1, x, bns=[self.bn1], act=self.act1, residual=res)
        return builder.layer(self.conv2, h, bns=[self.bn2], act=self.act2, residual=h)


class ResNet(Backbone):
    """Stem, stages of BiRealBlocks, global pool; classifier = BN1d -> FP Linear.

    Stage features: the output of each stage. The embedding is the pooled (N, C_last) vector
    before BN1d, so replacing `classifier` for linear evaluation also drops the BN1d.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
                 width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
                 weight_quantizer: str | None = None, *,
                 stage_channels: Sequence[int] = (16, 32, 64), blocks_per_stage: Sequence[int] = (3, 3, 3), shortcut: str = "a",
                 stem_activation: bool = True, activation: str | None = None, rng=None):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"ResNet: shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if len(stage_channels) != len(blocks_per_stage):
            raise ValueError("ResNet: stage_channels and blocks_per_stage differ in length")
        p = self.prologue(DEFAULT_QUANTIZERS, in_channels, image_size, width, binary,
                          input_quantizer, weight_quantizer, rng, activation)
        ch = p.channels(stage_channels)
        self.embedding_dim = ch[-1]

        self.stem = Sequential(Conv2d(in_channels, ch[0], 3, 1, 1, bias=False, rng=p.rng),  # FP
                               BatchNorm2d(ch[0]), *([p.act()] if stem_activation else []))
        stages, c_in = [], ch[0]
        for i, (c, n) in enumerate(zip(ch, blocks_per_stage)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BiRealBlock(c_in, c, stride, binary=p.binary,
                                          input_quantizer=p.input_quantizer,
                                          weight_quantizer=p.weight_quantizer, shortcut=shortcut,
                                          activation=p.activation, rng=p.rng))
                c_in = c
            stages.append(Sequential(*blocks))
        self.stages = ModuleList(stages)
        self.classifier = Sequential(BatchNorm1d(ch[-1]), Linear(ch[-1], num_classes, rng=p.rng))

    def _stages(self, x: Tensor) -> list:
        x = self.stem(x)                          # (N, C_0, H, W)
        features = []
        for stage in self.stages:
            x = stage(x)                          # (N, C_i, H / 2^i, W / 2^i), rounded up
            features.append(x)
        return features

    def _pool(self, last: Tensor) -> Tensor:
        return last.mean(axis=(2, 3))             # (N, C_last)

    def _export_stages(self, builder, x):
        return builder.chain([self.stem, *self.stages], x)

    def _export_pool(self, builder, x):
        return builder.global_avg_pool(x)


def resnet20(in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
             width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
             weight_quantizer: str | None = None, *, shortcut: str = "a", rng=None,
             **options) -> ResNet:
    """IR-Net's CIFAR ResNet-20: 16/32/64 x 3 blocks, option-A shortcuts, BN1d(64) + FP fc."""
    return ResNet(in_channels, image_size, num_classes, width, binary, input_quantizer,
                  weight_quantizer, stage_channels=(16, 32, 64), blocks_per_stage=(3, 3, 3),
                  shortcut=shortcut, rng=rng, **options)


def resnet18(in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
             width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
             weight_quantizer: str | None = None, *, shortcut: str = "fp", rng=None,
             **options) -> ResNet:
    """IR-Net's CIFAR ResNet-18: 64/128/256/512 x 2 blocks, FP 1x1 downsample, BN1d(512) + fc.

    shortcut="binary" (with stem_activation=False) gives CMIM's resnet18_1w1a skeleton.
    """
    return ResNet(in_channels, image_size, num_classes, width, binary, input_quantizer,
                  weight_quantizer, stage_channels=(64, 128, 256, 512),
                  blocks_per_stage=(2, 2, 2, 2), shortcut=shortcut, rng=rng, **options)

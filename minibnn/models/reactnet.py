"""ReActNet-A (the S2-BNN student), with a width multiplier and a configurable block list.

    stem   FP conv C->c_0 3x3 stride `stem_stride` p1 -> BN              (N, c_0, H/2, W/2)
    block  (C -> M, stride s; M = C or 2C):
        y = RPReLU(BN(bconv3x3_s(RSign(x))) + pool(x))   pool: 2x2 avg if s = 2   (N, C, H/s, W/s)
        z = RSign(y)
        M = C:   out = RPReLU(BN(bconv1x1(z)) + y)                             (N, C, H/s, W/s)
        M = 2C:  out = RPReLU(concat[BN(bconv1x1_a(z)) + y, BN(bconv1x1_b(z)) + y])  (N, 2C, ..)
    global avg pool (N, c_last) -> FP Linear (or the MoCo MLP head, `mlp_head=True`)

The block's channel list is `stage_channels` = [c_0, c_1, ..., c_B] (c_0 = stem output); block
i maps c_{i-1} -> c_i with stride 2 where the channel count changes, except into 64 channels,
as in the official code. REACTNET_A is the full 13-block ImageNet net; the default REACTNET_SMALL
keeps its first 7 blocks, which trains on a CPU at 28x28/32x32 (with width <= 0.5).

Modes: binary=True, weight_quantizer="reactnet" is the BNN; weight_quantizer="none" keeps real
weights behind binary activations (S2-BNN step 1); binary=False is the real twin (same skeleton,
real convs, the RSign's learnable bias kept but no sign). `weight_init="hardbinary"` draws the
binary convs' latent weights from U[0, 0.001), as the official HardBinaryConv does.

Reference: Liu et al., "ReActNet", arXiv:2003.03488 (ReActNet-A, RSign, RPReLU); Bi-Real Net
ApproxSign, arXiv:1808.00278; Shen et al., S2-BNN, arXiv:2102.08946 (MLP head, two steps).
Differences from the paper: width multiplier, shorter default block list, configurable stem
stride; no distributional loss here (that lives in methods/).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..nn import BatchNorm2d, Conv2d, Identity, Linear, Module, ModuleList, init
from ..nn import binary as nnb
from .base import Backbone
from .heads import MLPHead

__all__ = ["ReActNet", "ReActBlock", "AvgDown2", "hardbinary_init", "reactnet_a", "REACTNET_A",
           "REACTNET_SMALL", "DEFAULT_QUANTIZERS"]

DEFAULT_QUANTIZERS = ("approx", "reactnet")    # ApproxSign activations, mean|W| scaled weights
REACTNET_A = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
REACTNET_SMALL = REACTNET_A[:8]
WEIGHT_INITS = ("default", "hardbinary")


class AvgDown2(Module):
    """2x2 average pooling, stride 2, that also accepts odd sizes: (N, C, H, W) -> ceil halves.

    Odd maps get their last row/column repeated first, which equals torch's
    AvgPool2d(2, ceil_mode=True, count_include_pad=False) and matches the 3x3 stride-2 conv's
    output size; even maps are pooled exactly as AvgPool2d(2).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] % 2:
            x = F.concatenate([x, x[:, :, -1:, :]], axis=2)        # (N, C, H + 1, W)
        if x.shape[3] % 2:
            x = F.concatenate([x, x[:, :, :, -1:]], axis=3)        # (N, C, H', W + 1)
        return F.avg_pool2d(x, 2, 2)                              # (N, C, ceil(H/2), ceil(W/2))

    def export_packed(self, builder, x):
        """Packed export (minibnn.engine.export's protocol): the engine's avg_down2 step."""
        return builder.avg_down2(x, self)


def hardbinary_init(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """U[0, 0.001): the official HardBinaryConv initialisation (all latent weights positive)."""
    return init.uniform(shape, rng, 0.0, 1e-3)


_INIT_FUNCTIONS = {"default": None, "hardbinary": hardbinary_init}   # WEIGHT_INITS -> function


class ReActBlock(Module):
    """One ReActNet-A block: 3x3 part, then 1x1 part (one or two convs); see module docstring.

    weight_init names the binary convs' initialisation, as in ReActNet: "default" or "hardbinary".
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, binary: bool,
                 input_quantizer, weight_quantizer, rng: np.random.Generator,
                 weight_init: str = "default"):
        super().__init__()
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"ReActBlock: weight_init must be one of {WEIGHT_INITS}, "
                             f"got {weight_init!r}")
        if out_channels not in (in_channels, 2 * in_channels):
            raise ValueError(f"ReActBlock: out_channels must be in_channels or twice it, got "
                             f"{in_channels} -> {out_channels} (pick a width that keeps the "
                             f"ratios)")

        def conv(k: int, s: int) -> Module:
            if binary:       # activations already signed by the RSign in front
                return nnb.BinaryConv2d(in_channels, in_channels, k, s, k // 2, bias=False,
                                        input_quantizer="identity",
                                        weight_quantizer=weight_quantizer, rng=rng,
                                        weight_init=_INIT_FUNCTIONS[weight_init])
            return Conv2d(in_channels, in_channels, k, s, k // 2, bias=False, rng=rng)

        # the real twin keeps RSign's learnable bias but not the sign, so state_dict keys match
        q = input_quantizer if binary else "identity"
        self.sign3 = nnb.RSign(in_channels, quantizer=q)
        self.conv3 = conv(3, stride)
        self.bn3 = BatchNorm2d(in_channels)
        self.pool = AvgDown2() if stride == 2 else Identity()
        self.act3 = nnb.RPReLU(in_channels)
        self.sign1 = nnb.RSign(in_channels, quantizer=q)
        n_pw = out_channels // in_channels
        self.convs1 = ModuleList([conv(1, 1) for _ in range(n_pw)])
        self.bns1 = ModuleList([BatchNorm2d(in_channels) for _ in range(n_pw)])
        self.act1 = nnb.RPReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn3(self.conv3(self.sign3(x))) + self.pool(x)   # (N, C, H/s, W/s)
        y = self.act3(y)
        z = self.sign1(y)                                          # (N, C, H/s, W/s) in {-1, +1}
        parts = [bn(conv(z)) + y for conv, bn in zip(self.convs1, self.bns1)]
        out = parts[0] if len(parts) == 1 else F.concatenate(parts, axis=1)   # (N, M, H/s, W/s)
        return self.act1(out)

    def export_packed(self, builder, x):
        """Packed export (minibnn.engine.export's protocol): each RSign's bias becomes the
        bias of the packed sign, the shortcuts are added in the output stages, and the 1x1
        convs run as one conv with all their outputs (y tiled over them as the shortcut)."""
        r = builder.chain([self.pool], x)            # AvgDown2, or Identity
        y = builder.layer(self.conv3, x, bns=[self.bn3], act=self.act3, residual=r,
                          rsign=self.sign3)
        convs = list(self.convs1)
        return builder.layer(convs, y, bns=list(self.bns1), act=self.act1, rsign=self.sign1,
                             residual=builder.residual(y, repeats=len(convs)))


class ReActNet(Backbone):
    """Stage features: the output of the last block at each resolution (and the final block)."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
                 width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
                 weight_quantizer: str | None = None, *,
                 stage_channels: Sequence[int] = REACTNET_SMALL, stem_stride: int = 2,
                 mlp_head: bool = False, head_dim: int = 128, weight_init: str = "default",
                 rng=None):
        super().__init__()
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"ReActNet: weight_init must be one of {WEIGHT_INITS}, "
                             f"got {weight_init!r}")
        if len(stage_channels) < 2:
            raise ValueError("ReActNet: stage_channels needs the stem width and at least one block")
        p = self.prologue(DEFAULT_QUANTIZERS, in_channels, image_size, width, binary,
                          input_quantizer, weight_quantizer, rng)
        base = list(stage_channels)
        # official rule, on the unscaled widths: stride 2 where channels change, except into 64
        strides = [2 if (a != b and b != 64) else 1 for a, b in zip(base[:-1], base[1:])]
        ch = p.channels(base)
        self.embedding_dim = ch[-1]

        rng = p.rng
        self.stem_conv = Conv2d(in_channels, ch[0], 3, stem_stride, 1, bias=False, rng=rng)  # FP
        self.stem_bn = BatchNorm2d(ch[0])
        self.blocks = ModuleList([
            ReActBlock(a, b, s, binary=p.binary, input_quantizer=p.input_quantizer,
                       weight_quantizer=p.weight_quantizer, rng=rng,
                       weight_init=weight_init)
            for a, b, s in zip(ch[:-1], ch[1:], strides)])
        # a stage ends where the next block downsamples, and at the last block
        self.stage_ends = [i for i in range(len(strides))
                           if i == len(strides) - 1 or strides[i + 1] == 2]
        self.classifier = (MLPHead(ch[-1], ch[-1], head_dim, rng=rng) if mlp_head   # FP
                           else Linear(ch[-1], num_classes, rng=rng))

    def _stages(self, x: Tensor) -> list:
        x = self.stem_bn(self.stem_conv(x))      # (N, c_0, H / stem_stride, W / stem_stride)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)                         # (N, c_i, H_i, W_i)
            if i in self.stage_ends:
                features.append(x)
        return features

    def _pool(self, last: Tensor) -> Tensor:
        return last.mean(axis=(2, 3))            # (N, c_last)

    def _export_stages(self, builder, x):
        return builder.chain([self.stem_conv, self.stem_bn, *self.blocks], x)

    def _export_pool(self, builder, x):
        return builder.global_avg_pool(x)


def reactnet_a(in_channels: int = 3, image_size: int = 224, num_classes: int = 1000,
               width: float = 1.0, binary: bool = True, input_quantizer: str | None = None,
               weight_quantizer: str | None = None, *, rng=None, **options) -> ReActNet:
    """The full 13-block ReActNet-A (stage_channels=REACTNET_A, stem stride 2)."""
    return ReActNet(in_channels, image_size, num_classes, width, binary, input_quantizer,
                    weight_quantizer, stage_channels=REACTNET_A, rng=rng, **options)

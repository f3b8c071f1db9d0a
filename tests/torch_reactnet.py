"""A PyTorch ReActNet-A block written as ordinary PyTorch code (own names and layouts: (1, C, 1,
1) biases, the weight binarised inside forward), used by the whole-model comparison tests and
mirrored by the quick start of docs/golden.md. `bug` breaks one thing on purpose."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as TF


class SignApprox(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * torch.clamp(2 - 2 * x.abs(), min=0)


class Shift(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return x + self.bias


class BinConv(nn.Module):
    """alpha * sign(W) with alpha = mean |W| detached, straight-through clip in the backward."""

    def __init__(self, c_in, c_out, k, stride, padding):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k) * 0.01)

    def forward(self, x):
        w = self.weight
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        hard = alpha * torch.where(w < 0, -1.0, 1.0).to(w.dtype)
        clipped = torch.clamp(w, -1, 1)
        wb = hard.detach() - clipped.detach() + clipped
        return TF.conv2d(x, wb, stride=self.stride, padding=self.padding)


class ReActBlockPort(nn.Module):
    """in C -> out C or 2C, stride 1 or 2, as ReActNet-A's basic block."""

    def __init__(self, c_in, c_out, stride, bug=""):
        super().__init__()
        self.bug = bug
        self.move11 = Shift(c_in)
        self.binary_3x3 = BinConv(c_in, c_in, 3, stride, 2 if bug == "padding" else 1)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.move12, self.prelu1, self.move13 = Shift(c_in), nn.PReLU(c_in), Shift(c_in)
        self.move21 = Shift(c_in)
        self.pw = nn.ModuleList([BinConv(c_in, c_in, 1, 1, 0) for _ in range(c_out // c_in)])
        self.bn2 = nn.ModuleList([nn.BatchNorm2d(c_in) for _ in range(c_out // c_in)])
        self.move22, self.prelu2, self.move23 = Shift(c_out), nn.PReLU(c_out), Shift(c_out)
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()

    def forward(self, x):
        s = SignApprox.apply(self.move11(x))
        y = self.bn1(self.binary_3x3(s)) + self.pool(x)
        y = self.move13(self.prelu1(self.move12(y)))
        z = SignApprox.apply(self.move21(y))
        if self.bug == "no_sign":
            z = self.move21(y)
        out = torch.cat([bn(conv(z)) + y for conv, bn in zip(self.pw, self.bn2)], dim=1)
        out = self.prelu2(self.move22(out))
        return out if self.bug == "no_shift_out" else self.move23(out)

"""Solutions to the exercises of tutorial 10 (scaling, RSign/RPReLU, shortcuts); each ends with its check."""

import numpy as np

from minibnn import Tensor, nn
from minibnn.nn.binary import BinaryConv2d, RSign
from minibnn.optim import SGD

rng = np.random.default_rng(0)

# 1. With B = sign(W), sum |W_i - alpha B_i| = sum | |W_i| - alpha |, minimised by the median of |W|.
w = rng.normal(size=101)
grid = np.linspace(0, 2, 20001)
l1 = [np.sum(np.abs(np.abs(w) - a)) for a in grid]
best = grid[int(np.argmin(l1))]
print(f"1. grid minimum {best:.4f}, median |W| {np.median(np.abs(w)):.4f}, mean |W| {np.mean(np.abs(w)):.4f}")
assert abs(best - np.median(np.abs(w))) <= grid[1] - grid[0]

# 2. Gradient descent on the shift alone: (mean ApproxSign(x + b))^2 is 0 when the bit is balanced.
x = Tensor((0.7 + rng.normal(size=(256, 1, 4, 4))).astype(np.float64))
rsign = RSign(1)
opt = SGD([rsign.shift.bias], lr=0.5)
for _ in range(100):
    loss = rsign(x).mean() ** 2
    opt.zero_grad()
    loss.backward()
    opt.step()
shift = float(rsign.shift.bias.data[0])
print(f"2. learnt shift {shift:.3f} (the channel's median is about 0.7)")
assert abs(shift + 0.7) < 0.1


# 3. The gradient that survives a plain stack shrinks with depth; shortcuts keep it.
def stack_gradient(shortcut: bool, depth: int) -> float:
    layers = [(BinaryConv2d(16, 16, 3, padding=1, rng=i), nn.BatchNorm2d(16)) for i in range(depth)]
    x = Tensor(rng.normal(size=(4, 16, 8, 8)), requires_grad=True)
    h = x
    for conv, norm in layers:
        y = norm(conv(h))
        h = y + h if shortcut else nn.Hardtanh()(y)
    (h * Tensor(rng.normal(size=h.shape))).sum().backward()
    return float(np.linalg.norm(x.grad))


ratios = [stack_gradient(True, d) / stack_gradient(False, d) for d in (2, 4, 16)]
print("3. with / without shortcuts at depth 2, 4, 16:", [f"{r:.3g}" for r in ratios])
assert ratios[0] < ratios[1] < ratios[2]

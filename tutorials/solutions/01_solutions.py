"""Solutions to the exercises of tutorial 01 (autograd from scratch); each ends with its check."""

import numpy as np

from minibnn import Tensor, functional as F, nn, no_grad, optim
from minibnn.autograd import Function, gradcheck

rng = np.random.default_rng(0)


# 1. Tanh as a Function whose backward reuses the saved output.
class Tanh(Function):
    """y = tanh(x);  dx = dy * (1 - y^2)."""

    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return dy * (1 - y * y)


x = Tensor(rng.normal(size=(5,)), requires_grad=True)
assert gradcheck(lambda t: Tanh.apply(t), x)
print("1. Tanh passes gradcheck")

# 2. By hand: d = a b + c = 4, L = d f. dL/df = d = 4, dL/dd = f = -2, dL/dc = -2,
#    dL/da = f b = 6, dL/db = f a = -4.
a, b, c, f = (Tensor(np.array(v), requires_grad=True) for v in (2.0, -3.0, 10.0, -2.0))
((a * b + c) * f).backward()
assert (a.grad, b.grad, c.grad, f.grad) == (6.0, -4.0, -2.0, 4.0)
#    L2 = a a b: Mul receives `a` twice and returns one gradient per input (a b and a b); the
#    engine adds them, 2 a b.
a = Tensor(np.array(2.0), requires_grad=True)
(a * a * Tensor(np.array(-3.0))).backward()
assert a.grad == 2 * 2.0 * -3.0
print("2. hand-derived gradients match")

# 3. Width and depth on the XOR-like data of section 5.
data_rng = np.random.default_rng(0)
points = data_rng.normal(size=(256, 2)).astype(np.float32)
labels = (points[:, 0] * points[:, 1] > 0).astype(np.int64)


def train(net, steps=300):
    opt = optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        loss = F.cross_entropy(net(Tensor(points)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with no_grad():
        return float(np.mean(np.argmax(net(Tensor(points)).data, axis=1) == labels))


small = train(nn.Sequential(nn.Linear(2, 4, rng=rng), nn.ReLU(), nn.Linear(4, 2, rng=rng)))
linear = train(nn.Linear(2, 2, rng=rng))
print(f"3. 4 hidden units: {small:.3f}, linear: {linear:.3f}")
assert small > 0.9 and linear < 0.75

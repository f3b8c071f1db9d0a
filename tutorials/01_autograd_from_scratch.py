# %% [markdown]
# # 1. An autograd engine you can read
#
# **Goal.** See how minibnn computes gradients: a `Tensor` records the `Function` that made it, and
# `backward()` walks that record in reverse, calling each function's hand-written backward on
# plain NumPy arrays. We check every gradient against finite differences, then train a tiny
# network with it. **Prerequisites.** NumPy, the chain rule. **Runtime.** A few seconds.

# %%
import numpy as np

from minibnn import Tensor, functional as F, nn, no_grad, optim
from minibnn.autograd import Function, gradcheck

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A Tensor remembers where it came from
# `y = (a * b).sum()` builds a small graph: `Mul` then `Sum`. `backward()` starts from
# dy/dy = 1 and applies the chain rule node by node: d sum / d(a*b) is all ones, and
# d(a*b)/da = b. So `a.grad` must equal `b`.

# %%
a = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
b = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
y = (a * b).sum()
y.backward()
print("y =", y.item())
assert np.allclose(a.grad, b.data) and np.allclose(b.grad, a.data)

# %% [markdown]
# ## 2. Writing an operation
# An operation is a `Function` with `forward(ctx, ...)` and `backward(ctx, dy)` on ndarrays.
# Here is the softplus, log(1 + e^x), whose derivative is the sigmoid. (minibnn composes
# softplus-like functions from primitives; writing one by hand shows the mechanism.) The
# gradcheck compares the backward with central differences in float64.

# %%
class Softplus(Function):
    """y = log(1 + exp(x));  dx = dy * sigmoid(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.logaddexp(0, x)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy / (1 + np.exp(-x))


x = Tensor(rng.normal(size=(5,)), requires_grad=True)
assert gradcheck(lambda t: Softplus.apply(t), x)
print("softplus backward agrees with finite differences")

# %% [markdown]
# ## 3. Broadcasting and shared inputs
# When an input is broadcast, its gradient must be summed back over the broadcast axes; when a
# tensor is used twice, the two gradients add. minibnn does the first once, in
# `Function.apply`, and the second in `backward()`.

# %%
w = Tensor(rng.normal(size=(4,)), requires_grad=True)          # broadcast over 3 rows
m = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
assert gradcheck(lambda m, w: (m * w + w * w).sum(axis=0), m, w)
print("broadcast gradient summed back to shape", w.grad.shape)

# %% [markdown]
# ## 4. Convolution is one matrix product
# `F.conv2d` copies the input's 3x3 windows into a matrix (im2col) and multiplies it with the
# flattened filters. Its backward is two more matrix products and a scatter of the window
# gradients back onto the image (col2im). We check it on a small odd-sized input, stride 2,
# padding 1. For speed, minibnn does this a few images at a time, channels last, with Numba
# kernels for the two copies; `minibnn/autograd/kernels.py` keeps a NumPy twin of each, a
# strided window view and one strided add per kernel tap, which the tests hold them to.

# %%
x = Tensor(rng.normal(size=(2, 3, 7, 5)), requires_grad=True)
k = Tensor(rng.normal(size=(4, 3, 3, 3)), requires_grad=True)
assert gradcheck(lambda x, k: F.conv2d(x, k, stride=2, padding=1), x, k)
print("conv2d output shape:", F.conv2d(x, k, stride=2, padding=1).shape)

# %% [markdown]
# ## 5. Train something
# Modules hold parameters; an optimizer updates them in place. A two-layer network learns
# XOR-like data (the label is whether x1 and x2 have the same sign) that no linear model can
# fit.

# %%
points = rng.normal(size=(256, 2)).astype(np.float32)
labels = (points[:, 0] * points[:, 1] > 0).astype(np.int64)
net = nn.Sequential(nn.Linear(2, 32, rng=rng), nn.ReLU(), nn.Linear(32, 2, rng=rng))
opt = optim.Adam(net.parameters(), lr=0.02)
for step in range(300):
    loss = F.cross_entropy(net(Tensor(points)), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
with no_grad():
    accuracy = np.mean(np.argmax(net(Tensor(points)).data, axis=1) == labels)
print(f"final loss {loss.item():.3f}, training accuracy {accuracy:.3f}")
assert accuracy > 0.95

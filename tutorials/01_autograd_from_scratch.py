# %% [markdown]
# # 1. An autograd engine you can read
#
# **Goal.** See how minibnn computes gradients: a `Tensor` records the `Function` that made it, and
# `backward()` walks that record in reverse, calling each function's hand-written backward on
# plain NumPy arrays. We check every gradient against finite differences, then train a tiny
# network with it. **Prerequisites.** NumPy, the chain rule. **Runtime.** About 3 seconds of CPU
# time (the same with `MINIBNN_FAST=1`: nothing here needs shrinking).

# %%
import numpy as np

from minibnn import Tensor, functional as F, nn, no_grad, optim
from minibnn.autograd import Function, SavedArrayModifiedError, detect_anomaly, gradcheck
from minibnn.plots import figure_dir, pyplot, save_figure

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
# ## 1b. Look at the graph
# A smaller expression with scalars, so every value fits in a box: L = (a·b + c)·f. Each box is
# a Tensor with its value and, after `backward()`, its gradient dL/d(box); the arrow into a box
# is labelled with the `Function` that made it (`_ctx.function`). We find the boxes the way
# `backward()` does, by following `_ctx.inputs` back from L. Read the gradients right to left:
# dL/dL = 1; dL/dd = f; dL/df = d; dL/dc = dL/dd · 1; dL/da = dL/dd · b.

# %%
def graph(root):
    """Tensors reachable from root through _ctx.inputs, and (input, output, op name) edges."""
    nodes, edges, stack = {}, [], [root]
    while stack:
        t = stack.pop()
        if id(t) in nodes:
            continue
        nodes[id(t)] = t
        for inp in (t._ctx.inputs if t._ctx is not None else ()):
            if isinstance(inp, Tensor):
                edges.append((inp, t, t._ctx.function.__name__))
                stack.append(inp)
    return list(nodes.values()), edges


def draw(root, names):
    """Boxes placed by depth (leaves at x = 0), one arrow per edge labelled with its Function."""
    nodes, edges = graph(root)
    depth = {}
    for t in reversed(nodes):                     # inputs are found after their outputs
        ins = [src for src, dst, _ in edges if dst is t]
        depth[id(t)] = 1 + max((depth[id(i)] for i in ins), default=-1)
    pos, used = {}, {}
    for t in sorted(nodes, key=lambda t: names[id(t)]):
        x = depth[id(t)]
        used[x] = used.get(x, 0) + 1
        pos[id(t)] = (x, used[x])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for t in nodes:
        x, y = pos[id(t)]
        ax.text(x, y, f"{names[id(t)]} = {t.item():g}\ngrad {t.grad.item():g}", ha="center",
                va="center", fontsize=10,
                bbox=dict(boxstyle="round", fc="#dbe9f6" if t._ctx is None else "#fde2c4"))
    for src, dst, op in edges:
        (x0, y0), (x1, y1) = pos[id(src)], pos[id(dst)]
        ax.annotate("", (x1 - 0.25, y1), (x0 + 0.25, y0), arrowprops=dict(arrowstyle="->"))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, op, fontsize=8, color="tab:red", ha="center")
    ax.set(xlim=(-0.5, max(x for x, _ in pos.values()) + 0.5),
           ylim=(0.3, max(y for _, y in pos.values()) + 0.7))
    ax.axis("off")
    ax.set_title("L = (a·b + c)·f: values and gradients (blue: leaves, orange: computed)")
    return fig


sa, sb, sc, sf = (Tensor(np.array(v), requires_grad=True) for v in (2.0, -3.0, 10.0, -2.0))
e = sa * sb
d = e + sc
L = d * sf
for t in (e, d, L):
    t.retain_grad()                               # keep intermediate gradients for the picture
L.backward()
names = {id(sa): "a", id(sb): "b", id(sc): "c", id(sf): "f", id(e): "e=a·b", id(d): "d=e+c", id(L): "L"}
print("saved", save_figure(draw(L, names), figure_dir() / "01_computation_graph.png"))
assert (sa.grad, sb.grad, sc.grad, sf.grad) == (6.0, -4.0, -2.0, 4.0)   # f·b, f·a, f, a·b + c

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
# kernels for the two copies; `minibnn/functional/training_kernels.py` keeps a NumPy twin of
# each, a strided window view and one strided add per kernel tap, which the tests hold them to.

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

# %% [markdown]
# ## 6. When the graph goes stale: anomaly mode
# Backward reads the arrays its forward saved, not copies. Change one in place between forward
# and backward (a memory bank or a queue updated by the loss, say) and the gradients silently
# follow the new values. NumPy has no version counter, so minibnn's anomaly mode fingerprints
# every saved array and checks it before backward (docs/debugging.md; it costs about 1.4-3x).

# %%
a = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
bank = rng.normal(size=(4, 2))                       # state a loss might update in place
with detect_anomaly():
    loss = (a @ Tensor(bank)).sum()
    bank[0, 0] += 1.0                                # the update, before backward
    try:
        loss.backward()
        caught = None
    except SavedArrayModifiedError as err:
        caught = str(err)
print(caught)
assert caught is not None and "MatMul.backward" in caught

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/01_solutions.py` (it runs every check below).
# 1. **Write `Tanh`.** A `Function` with forward `np.tanh(x)` and a backward that reuses the saved
#    *output* y: dx = dy·(1 − y²). Check: `assert gradcheck(lambda t: Tanh.apply(t), x)` on a
#    random float64 x of shape (5,).
# 2. **Gradients by hand.** For L = (a·b + c)·f at a = 2, b = −3, c = 10, f = −2, write down
#    dL/da, dL/db, dL/dc, dL/df with the chain rule before running anything, then check them
#    against `.grad` as section 1b does. Then compute L2 = a·a·b: why must `a.grad` be 2ab
#    although `a` appears in one `Mul` twice? Check: `assert a.grad == 2 * 2.0 * -3.0`.
# 3. **Width and depth.** Train section 5's network with 4 hidden units instead of 32 (same
#    data, lr and steps), then a purely linear model `nn.Linear(2, 2)`. Check: the 4-unit
#    network still reaches training accuracy > 0.9; the linear one stays below 0.75 (a line
#    cannot separate the quadrants of XOR).

# %% [markdown]
# # 02 · sign and its pseudo-gradients
#
# Goal: see why a binary network cannot be trained with the true gradient of `sign`, and how
# the three pseudo-gradients minibnn implements (the straight-through estimator of BNN, Bi-Real's
# ApproxSign, IR-Net's EDE with its t/k schedule) replace it; each section checks the
# library's numbers against the closed forms and the verified tables of docs/methods.md §1.
# Prerequisites: tutorial 01 (Tensor, Function, backward) or any autograd; NumPy.
# Runtime: about 3 seconds of CPU time, fast mode or not (one figure: shown inline in a notebook,
# saved as figures/02_pseudo_gradients.png beside the script, or under $MINIBNN_FIGURES).

# %%
import numpy as np

from minibnn import Tensor
from minibnn.nn.binary import BinaryConv2d, set_ede
from minibnn.plots import figure_dir, pyplot, save_figure
from minibnn.quantizers import approx_sign, ede_sign, make_quantizer, sign, ste_sign


def grad(fn, x: np.ndarray) -> np.ndarray:
    """d sum(fn(x)) / dx through minibnn's autograd: the pseudo-gradient at each point."""
    t = Tensor(x, requires_grad=True)
    fn(t).sum().backward()
    return t.grad


# %% [markdown]
# ## 1. sign, with sign(0) = +1
# A binary value is one bit. The packed engine stores `bit = x < 0` (bit 1 means −1) and
# reads back `1 − 2·bit`, so minibnn defines sign the same way: +1 for x ≥ 0, −1 otherwise.
# Zero (and −0.0) becomes +1. PyTorch's `torch.sign(0) = 0`, which the official LCR-BNN, CMIM
# and S2-BNN code use, would need a third value that no bit can hold; the price is that our
# float simulation differs from theirs exactly where a pre-activation is exactly 0.

# %%
x = np.array([-2.0, -0.5, -0.0, 0.0, 0.5, 2.0], dtype=np.float32)
bits = x < 0                                      # the engine's packing rule
print("x       ", x)
print("sign(x) ", sign(x))
print("np.sign ", np.sign(x), "  <- a third value, 0")
assert np.array_equal(sign(x), 1 - 2 * bits.astype(np.float32))
assert sign(np.zeros(1))[0] == 1 and sign(-np.zeros(1))[0] == 1
assert sign(x).dtype == x.dtype

# %% [markdown]
# ## 2. The true gradient of sign is useless
# sign is flat everywhere except at 0, where it jumps: its derivative is 0 almost everywhere
# (and undefined at 0). Backpropagating it stops every update. Take the smallest learning
# problem there is: one latent weight w, inputs x ∈ (−1, 1), targets y = sign(x), prediction
# sign(w·x). Starting from w = −0.5 every prediction is wrong, yet central differences say the
# loss does not change when w moves.

# %%
rng = np.random.default_rng(0)
xs = rng.uniform(-1, 1, size=64)
ys = sign(xs)


def loss_at(w: float) -> float:
    return float(np.mean((sign(w * xs) - ys) ** 2))


w0, eps = -0.5, 1e-4
true_grad = (loss_at(w0 + eps) - loss_at(w0 - eps)) / (2 * eps)
print(f"loss at w = {w0}: {loss_at(w0):.1f};  true d loss / dw = {true_grad}")
assert loss_at(w0) == 4.0 and true_grad == 0.0

# %% [markdown]
# With a **pseudo-gradient** the backward pass pretends sign was a smooth function. The
# straight-through estimator (STE) passes the upstream gradient unchanged where |x| ≤ 1.
# Gradient descent on the same problem now finds the right sign in a few steps.

# %%
w = Tensor(np.array(w0), requires_grad=True)
for step in range(20):
    w.grad = None
    pred = ste_sign(w * Tensor(xs))               # sign forward, identity-on-[-1,1] backward
    loss = ((pred - Tensor(ys)) ** 2).mean()
    loss.backward()
    w.data -= 0.1 * w.grad
    if loss.item() == 0:
        break
print(f"step {step}: w = {w.item():.3f}, loss = {loss.item():.1f}")
assert w.item() > 0 and loss_at(w.item()) == 0.0

# %% [markdown]
# ## 3. STE: dx = dy · 1[|x| ≤ clip]
# The BNN paper (Courbariaux, Hubara et al., arXiv:1602.02830) differentiates hardtanh
# instead of sign. Both edges pass: at |x| = 1 the gradient is still dy. Outside, it is 0,
# which stops latent values from drifting far from the decision boundary.

# %%
x = np.array([-2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0])
print("x          ", x)
print("STE grad   ", grad(ste_sign, x))
assert np.array_equal(grad(ste_sign, x), (np.abs(x) <= 1.0).astype(float))
assert np.array_equal(grad(lambda t: ste_sign(t, clip=np.inf), x), np.ones_like(x))

# %% [markdown]
# ## 4. ApproxSign: a triangle instead of a box
# Bi-Real Net (arXiv:1808.00278), also ReActNet's and S2-BNN's activation, differentiates a
# piecewise quadratic that hugs sign more closely than hardtanh does:
# F(x) = 2x + x² on [−1, 0), 2x − x² on [0, 1), ±1 outside, so F'(x) = 2 + 2x, 2 − 2x, 0.
# The table below is the one docs/methods.md §1.2 verified against the official code (0 at x = −1).

# %%
x = np.array([-1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 1.5])
g = grad(approx_sign, x)
print("x            ", x)
print("ApproxSign'  ", g)
closed_form = np.select([(x >= -1) & (x < 0), (x >= 0) & (x < 1)], [2 + 2 * x, 2 - 2 * x], 0)
assert np.array_equal(g, [0, 0, 1, 1.5, 2, 1.5, 1, 0, 0]) and np.array_equal(g, closed_form)

# %% [markdown]
# ## 5. EDE: a pseudo-gradient that changes during training
# IR-Net (arXiv:1909.10788) differentiates k·tanh(t·x): dx = dy · k·t·(1 − tanh²(t·x)). Early
# in training t is small and k = 1/t, so the gradient is ≈ 1 everywhere (a plain, unclipped
# STE: every weight can still move). t then grows log-linearly to t_max, and the pseudo-gradient
# sharpens into a bump of height t around 0, closer to sign's true derivative:
#
#     t(e) = 10^(log10 t_min + (log10 t_max − log10 t_min) · e / E),   k(e) = max(1/t(e), 1)
#
# for epochs e = 0 … E − 1 (t never quite reaches t_max). LCR-BNN uses t_min = 1e−3,
# t_max = 10, E = 100. We take the schedule from `minibnn.optim.schedules.ede_tk` when it is
# there, and otherwise compute the same formula here (it mirrors the library's).

# %%
try:
    from minibnn.optim.schedules import ede_tk
except ImportError:                               # the formula above, as the library has it
    def ede_tk(epoch, total_epochs, t_min, t_max):
        lo, hi = np.log10(t_min), np.log10(t_max)
        t = 10.0 ** (lo + (hi - lo) / total_epochs * epoch)
        return t, max(1.0 / t, 1.0)

E, T_MIN, T_MAX = 100, 1e-3, 10.0
for e in (0, 25, 50, 75, 99):
    t, k = ede_tk(e, E, T_MIN, T_MAX)
    print(f"epoch {e:2d}: t = {t:8.4f}  k = {k:8.3f}  k*t = {k * t:.3f}")
assert np.allclose([ede_tk(e, E, T_MIN, T_MAX)[0] for e in (0, 25, 50, 99)],
                   [1e-3, 0.01, 0.1, 9.120], rtol=1e-3)            # docs/methods.md §1.1 [verified]

# %% [markdown]
# The gradient at x = [−2, −0.5, 0, 0.5, 2] for four (t, k) pairs, against the table docs/methods.md
# §1.1 verified on the official `BinaryQuantize`:

# %%
x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
table = {(1e-3, 1000): [1, 1, 1, 1, 1], (0.1, 10): [0.9610, 0.9975, 1, 0.9975, 0.9610],
         (1, 1): [0.0707, 0.7864, 1, 0.7864, 0.0707], (10, 1): [0, 0.001816, 10, 0.001816, 0]}
for (t, k), expected in table.items():
    g = grad(lambda v: ede_sign(v, t, k), x)
    print(f"t = {t:<6g} k = {k:<5g} grad = {np.round(g, 6)}")
    assert np.allclose(g, expected, rtol=1e-3, atol=1e-6)
    assert np.allclose(g, k * t * (1 - np.tanh(t * x) ** 2), rtol=1e-12)

# %% [markdown]
# ## 6. All of them in one picture
# Top row: sign (black) and the smooth function whose derivative each estimator borrows.
# Bottom row: the pseudo-gradient minibnn's backward actually returns (computed through
# autograd, not from the formulas).

# %%
plt = pyplot()                                    # Agg as a script, inline in a notebook
grid = np.linspace(-2, 2, 801)
epochs = (0, 60, 75, 90, 99)
fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True)
for ax in axes[0]:
    ax.step(grid, sign(grid), where="post", color="black", lw=1.2, label="sign (forward)")
axes[0, 0].plot(grid, np.clip(grid, -1, 1), label="hardtanh")
axes[1, 0].plot(grid, grad(ste_sign, grid), label="STE, clip = 1")
quadratic = np.where(grid < 0, 2 * grid + grid ** 2, 2 * grid - grid ** 2)
approx_proxy = np.where(np.abs(grid) >= 1, sign(grid), quadratic)
axes[0, 1].plot(grid, approx_proxy, label="2x ± x² on [-1, 1], sign outside")
axes[1, 1].plot(grid, grad(approx_sign, grid), label="ApproxSign")
for e in epochs:
    t, k = ede_tk(e, E, T_MIN, T_MAX)
    axes[0, 2].plot(grid, k * np.tanh(t * grid), label=f"e = {e}: k tanh(t x)")
    axes[1, 2].plot(grid, grad(lambda v: ede_sign(v, t, k), grid), label=f"e = {e}: t = {t:.3g}")
axes[0, 2].set_ylim(-1.6, 1.6)
axes[1, 2].set_yscale("log")
axes[1, 2].set_ylim(1e-3, 20)
titles = ["BNN straight-through (1602.02830)", "Bi-Real ApproxSign (1808.00278)",
          f"IR-Net EDE, LCR schedule E = {E} (1909.10788)"]
for col, title in enumerate(titles):
    axes[0, col].set_title(title, fontsize=10)
    axes[1, col].set_xlabel("x")
    for ax in axes[:, col]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
axes[0, 0].set_ylabel("forward")
axes[1, 0].set_ylabel("pseudo-gradient dy/dx")
fig.suptitle("sign(x) forward, and the gradient each estimator uses in its place")
fig.tight_layout()
out = save_figure(fig, figure_dir() / "02_pseudo_gradients.png")
print(f"saved {out}")
assert out.stat().st_size > 10_000

# %% [markdown]
# ## 7. Quantizers by name, and one (t, k) per IR-Net layer
# Layers name their quantizers: `"ste"`, `"approx"`, `"ede"`, `"identity"` for activations and
# `"xnor"`, `"irnet"`, `"reactnet"`, `"sign"`, `"none"` for weights. An IR-Net layer binarizes
# weights and activations with the *same* EDE, so `set_ede(model, t, k)`, which training calls
# at the start of every epoch, moves both at once.

# %%
layer = BinaryConv2d(3, 8, 3, padding=1, input_quantizer="ede", weight_quantizer="irnet", rng=0)
print(layer)
for e in (0, 99):
    t, k = ede_tk(e, E, T_MIN, T_MAX)
    n = set_ede(layer, t, k)
    print(f"epoch {e}: set {n} EDE quantizer -> {layer.input_quantizer}")
assert layer.weight_quantizer.quantizer is layer.input_quantizer
assert (layer.input_quantizer.t, layer.input_quantizer.k) == ede_tk(99, E, T_MIN, T_MAX)
assert np.array_equal(np.abs(layer.binary_weight()), np.ones((8, 3, 3, 3)))  # IR-Net scale 1
try:
    make_quantizer("tanh")
except ValueError as err:
    print("make_quantizer('tanh') ->", err)

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/02_solutions.py` (it runs every check below).
# 1. **Your own estimator.** Write a `Function` `SignTanh` whose forward is sign (sign(0) = +1)
#    and whose backward is dy·(1 − tanh²(x)). Check: its gradient on `np.linspace(-3, 3, 61)`
#    equals that of `ede_sign(x, 1.0, 1.0)`.
# 2. **When does EDE stop passing gradient?** With the LCR schedule (t from 1e−3 to 10 over
#    E = 100 epochs), at which epoch does the EDE gradient at x = 0.5 first drop below 0.5?
#    Predict roughly from the picture of section 6, then compute it with `ede_tk`. Check: epoch
#    88 (and the gradient is not monotone before it: k switches from 1/t to 1 where t crosses 1).
# 3. **Where sign(0) matters.** A dot product of K values in {−1, +1} has the parity of K. Run a
#    `BinaryConv2d(c, 4, 3, weight_quantizer="sign")` on random inputs with c = 1 (K = 9) and
#    c = 2 (K = 18) and count exact zeros in the output. Check: none for K = 9, some for K = 18.

# %% [markdown]
# # 10. The design of a binary layer: scaling factors, RSign/RPReLU, shortcuts, real ends
#
# **Goal.** Derive the pieces every modern BNN layer is made of, each checked against minibnn:
# XNOR-Net's weight scale alpha = mean|W| (the least-squares solution) and its activation scale
# K; ReActNet's learnable thresholds (RSign) and activations (RPReLU), looking at activation
# histograms before and after; Bi-Real Net's real-valued shortcuts; and why the first and last
# layers stay real. **Prerequisites.** Tutorial 2 (sign, pseudo-gradients); read it before
# tutorial 3. **Runtime.** About 5 seconds of CPU time (the same with `MINIBNN_FAST=1`).

# %%
import itertools

import numpy as np

from minibnn import Tensor, functional as F, nn, no_grad
from minibnn.data import load_dataset, transforms
from minibnn.models import build_model
from minibnn.nn.binary import BinaryConv2d, RPReLU, RSign
from minibnn.plots import figure_dir, pyplot, save_figure
from minibnn.quantizers import make_quantizer, sign
from minibnn.summary import summary

rng = np.random.default_rng(0)
plt = pyplot()

# %% [markdown]
# ## 1. The weight scale: alpha = mean |W| is the least-squares solution
# XNOR-Net (Rastegari et al., arXiv:1603.05279) approximates a filter W (n numbers) by alpha·B,
# B in {−1, +1}^n, alpha > 0, choosing both to minimise the squared error:
#
#     J(alpha, B) = ||W − alpha B||² = ||W||² − 2 alpha W·B + alpha² n      (B·B = n)
#
# For any alpha > 0, only −2 alpha W·B depends on B, and W·B = Σ W_i B_i is largest when every
# B_i has the sign of W_i: B* = sign(W), W·B* = Σ|W_i|. Then dJ/dalpha = −2 Σ|W_i| + 2 alpha n = 0
# gives alpha* = Σ|W_i| / n = mean |W|. We check it twice: by brute force over all 2^n sign
# patterns of a small filter, and against minibnn's `xnor` weight binarizer.

# %%
w = rng.normal(size=10)
best = min((np.sum((w - a * np.array(b)) ** 2), a, b)
           for b in itertools.product((-1.0, 1.0), repeat=w.size)
           for a in [np.dot(w, b) / w.size] if a > 0)    # for each B the best alpha is W·B / n
print(f"brute force: alpha = {best[1]:.6f}, B = sign(W): {np.array_equal(best[2], np.sign(w))}; "
      f"mean|W| = {np.mean(np.abs(w)):.6f}")
assert np.isclose(best[1], np.mean(np.abs(w))) and np.array_equal(best[2], np.sign(w))

filters = rng.normal(size=(4, 3, 3, 3))                     # (M, C, kh, kw)
wb = make_quantizer("xnor", "weight")(Tensor(filters)).data
assert np.allclose(wb, np.mean(np.abs(filters), axis=(1, 2, 3), keepdims=True) * np.sign(filters))
errors = {a: np.sum((filters[0] - a * np.sign(filters[0])) ** 2) for a in np.linspace(0.3, 1.3, 101)}
assert min(errors, key=errors.get) == min(errors, key=lambda a: abs(a - np.abs(filters[0]).mean()))

# %% [markdown]
# ## 2. The activation scale K, and why batch norm makes both scales optional
# XNOR-Net also binarizes the input I of a conv. At each position the best scale of the sign is
# the mean |I| over the window, for every output channel the same, so the paper computes it
# once: A = mean over channels of |I| (an H x W map), K = A convolved with a box filter of the
# kernel's size (the mean over each window). Then
#
#     conv(I, W) ≈ (conv(sign I, sign W)) ⊙ K · alpha.
#
# Measure the relative error of three approximations on a random input:

# %%
img = rng.normal(size=(1, 8, 10, 10)) * rng.uniform(0.2, 2, size=(1, 1, 10, 10))   # uneven scale
ker = rng.normal(size=(6, 8, 3, 3))
exact = F.conv2d(Tensor(img), Tensor(ker), padding=1).data
binary = F.conv2d(Tensor(sign(img)), Tensor(sign(ker)), padding=1).data
alpha = np.abs(ker).mean(axis=(1, 2, 3))[None, :, None, None]                       # (1, M, 1, 1)
a_map = np.abs(img).mean(axis=1, keepdims=True)                                      # (1, 1, H, W)
k_map = F.conv2d(Tensor(a_map), Tensor(np.full((1, 1, 3, 3), 1 / 9)), padding=1).data
approximations = {"sign * sign": binary, "... x alpha": binary * alpha,
                  "... x alpha x K": binary * alpha * k_map}
rel = {name: np.linalg.norm(approx - exact) / np.linalg.norm(exact)
       for name, approx in approximations.items()}
for name, r in rel.items():
    print(f"{name:17s} relative error {r:.3f}")
assert rel["... x alpha x K"] < rel["... x alpha"] < rel["sign * sign"]

# %% [markdown]
# The errors stay large (a sign keeps one bit of each number) but the scales help. In a network,
# though, a binary conv is followed by batch norm, which divides each channel by its own batch
# standard deviation: a per-channel alpha cancels exactly. K varies over positions and would
# survive, but it costs a float conv per layer, so later BNNs (Bi-Real Net, ReActNet, IR-Net)
# drop K and keep at most alpha (it still matters for the *gradient*, tutorial 2 and XnorWeight).

# %%
bn = nn.BatchNorm2d(6)
with no_grad():
    y1 = bn(Tensor(binary)).data
    y2 = bn(Tensor(binary * alpha)).data
print(f"max |BN(y) − BN(alpha·y)| = {np.abs(y1 - y2).max():.2e}")
assert np.allclose(y1, y2, atol=1e-4)

# %% [markdown]
# ## 3. ReActNet: learn where the threshold is (RSign) and how the activation bends (RPReLU)
# A sign is most informative when its two outcomes are equally likely (one full bit). The
# pre-activations a layer receives are rarely centred at 0 per channel, so a fixed threshold
# wastes bits. ReActNet (Liu et al., arXiv:2003.03488) gives every channel a learnable shift:
# RSign(x) = sign(x + b_c). Its RPReLU(x) = PReLU_c(x + g_c) + z_c, a per-channel shifted
# PReLU, reshapes the real-valued signal the next block receives. Below: the default CNN's stem
# on MNIST digits, conv -> max-pool -> batch norm with its initial running statistics, before
# the activation. Nothing centres these values per channel: the blank background gives one value
# repeated thousands of times, on one side of 0, so many channels' signs are far from balanced.
# We set each RSign shift to the value that balances the channel's bit best (minus a threshold
# between two observed values with about half of the values above it; with the background's
# repeated value exact balance is not always possible), the kind of value training has to find,
# and compare the bits' entropy.

# %%
_, val = load_dataset("mnist-t10k")
x = transforms.normalize(transforms.to_float(val.x[:64]), val.mean, val.std)
cnn = build_model("cnn", rng=0).eval()
conv, pool, norm, _ = cnn.stages[0]                          # stem: conv, max-pool, BN, Hardtanh
with no_grad():
    pre = norm(pool(conv(Tensor(x)))).data                   # (64, 32, 14, 14)
def balancing_threshold(values: np.ndarray) -> float:
    """The midpoint between consecutive distinct values with P(value >= t) closest to 1/2."""
    v = np.sort(values.ravel())
    u = np.unique(v)
    mids = (u[:-1] + u[1:]) / 2
    above = 1 - np.searchsorted(v, mids) / v.size
    return float(mids[np.argmin(np.abs(above - 0.5))])


thresholds = np.array([balancing_threshold(pre[:, c]) for c in range(32)])
rsign = RSign(32)
rsign.shift.bias.data[...] = -thresholds


def entropy_bits(bits: np.ndarray) -> float:
    """Mean over channels of the binary entropy (in bits) of P(+1)."""
    p = np.clip(np.mean(bits > 0, axis=(0, 2, 3)), 1e-12, 1 - 1e-12)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


with no_grad():
    after = rsign(Tensor(pre)).data
    prelu = RPReLU(32)
    prelu.shift_in.bias.data[...] = -thresholds
    bent = prelu(Tensor(pre)).data
h_before, h_after = entropy_bits(sign(pre)), entropy_bits(after)
print(f"entropy of the bits: sign(x) {h_before:.3f} bit/channel, RSign(x) {h_after:.3f}")
assert h_after > h_before + 0.1 and h_after > 0.9

fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for c, color in ((0, "tab:blue"), (5, "tab:orange"), (9, "tab:green")):
    axes[0].hist(pre[:, c].ravel(), bins=60, alpha=0.5, color=color, label=f"channel {c}")
    axes[1].hist((pre[:, c] + rsign.shift.bias.data[c]).ravel(), bins=60, alpha=0.5, color=color)
axes[2].hist(pre.ravel(), bins=80, alpha=0.5, label="RPReLU input")
axes[2].hist(bent.ravel(), bins=80, alpha=0.5, label="RPReLU output")
titles = ["before: x (threshold at 0)", "after RSign's shift: x + b", "RPReLU bends each channel"]
for ax, title in zip(axes, titles):
    ax.axvline(0, color="black", lw=1)
    ax.set(title=title, xlabel="activation", yscale="log", ylabel="count (log)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
print("saved", save_figure(fig, figure_dir() / "10_rsign_rprelu_histograms.png"))

# %% [markdown]
# ## 4. Bi-Real Net: a real-valued shortcut around every binary conv
# Bi-Real Net (Liu et al., arXiv:1808.00278) adds the block's real-valued input to its output:
# out = BN(binary_conv(x)) + x. Two effects: the real values before each sign are carried
# forward instead of being thrown away, and the gradient has a path that skips every sign's
# pseudo-gradient (which is 0 wherever |x| > 1). Compare the gradient that reaches the input of
# a stack of 8 binary convs with and without shortcuts.

# %%
def stack_gradient(shortcut: bool, depth: int = 8) -> float:
    layers = [(BinaryConv2d(16, 16, 3, padding=1, rng=i), nn.BatchNorm2d(16)) for i in range(depth)]
    x = Tensor(rng.normal(size=(4, 16, 8, 8)), requires_grad=True)
    h = x
    for conv, norm in layers:
        y = norm(conv(h))
        h = y + h if shortcut else nn.Hardtanh()(y)
    (h * Tensor(rng.normal(size=h.shape))).sum().backward()
    return float(np.linalg.norm(x.grad))


plain, bireal = stack_gradient(False), stack_gradient(True)
print(f"gradient norm at the input of 8 binary convs: plain {plain:.3g}, with shortcuts {bireal:.3g}")
assert bireal > 10 * plain

# %% [markdown]
# ## 5. Why the first and last layers stay real
# *First layer.* Its input is the image: 1 channel here (3 for colour), so a binary first
# layer would see one bit per pixel, sign(normalised pixel), before doing anything. *Last
# layer.* Its outputs are the logits; with binary weights and inputs each logit is an integer in
# [−K, K] and a class differs from another only by whole counts. And both are cheap: in the
# default CNN the real stem and classifier are a small share of the multiply-adds.

# %%
table = summary(cnn, (1, 28, 28))
real_macs, binary_macs = table.totals["flops"], table.totals["bops"]
print(f"default CNN: {real_macs / 1e6:.2f} M real MACs (stem + classifier), "
      f"{binary_macs / 1e6:.2f} M binary MACs")
assert real_macs < 0.05 * binary_macs
fig, axes = plt.subplots(1, 4, figsize=(8, 2.4))
for i, ax in enumerate(axes):
    ax.imshow(x[i // 2, 0] if i % 2 == 0 else sign(x[i // 2, 0]), cmap="gray")
    ax.set(xticks=[], yticks=[], title="normalised" if i % 2 == 0 else "sign (1 bit)")
fig.suptitle("what a binary first layer would see")
print("saved", save_figure(fig, figure_dir() / "10_binary_input.png"))

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/10_solutions.py` (it runs every check below).
# 1. **The L1 scale.** If you minimise the *absolute* error Σ|W_i − alpha B_i| instead, with
#    B = sign(W), the best alpha is the *median* of |W|, not the mean. Show it numerically by a
#    grid search over alpha. Check: the grid minimum is within the grid step of np.median(|W|).
# 2. **RSign learns the shift.** Make a channel whose values are N(0.7, 1), put an RSign(1) in
#    front of a loss that rewards a balanced bit, e.g. (mean of the ApproxSign output)², and run
#    100 steps of SGD (lr 0.5) on the shift alone. Check: the shift ends within 0.1 of −0.7.
# 3. **Shortcuts and depth.** Repeat section 4 with depth 2, 4 and 16. Check: the ratio
#    with / without shortcuts grows with depth.

# %% [markdown]
# # 11. Latent weights, clipping, flip ratio, and Bop
#
# **Goal.** Understand what the real-valued "latent" weight behind each binary weight really
# does: it is a counter of evidence, an *inertia* against flipping the sign; see what clipping
# it to [−1, 1] changes; measure the flip ratio over training; and train the default CNN with
# **Bop** (Helwegen et al., "Latent Weights Do Not Exist", arXiv:1906.02107), an optimizer
# with no latent weights at all, against Adam. **Prerequisites.** Tutorials 2 and 3.
# **Runtime.** About 2 minutes of CPU time (seed 0: one epoch on all 8,000 training images
# per optimizer); about 40 s of CPU time with `MINIBNN_FAST=1` (1,500 images).

# %%
import os

import numpy as np

from minibnn import Tensor, functional as F, no_grad
from minibnn.data import BatchLoader, load_dataset, transforms
from minibnn.models import build_model
from minibnn.nn import binary as binary_nn
from minibnn.optim import Adam, Bop, Combined, split_binary_parameters
from minibnn.plots import figure_dir, pyplot, save_figure

FAST = os.environ.get("MINIBNN_FAST") == "1"
LIMIT = 1500 if FAST else 8000
BATCH = 32 if FAST else 64
WIDTH = 0.5                            # channels 16-32-32-64: half the default width
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A latent weight is inertia
# The forward pass of a binary layer sees only sign(w). An optimizer step changes the latent w,
# but the network only changes when w crosses 0. So |w| measures how much gradient, pointing the
# same way, it takes to flip the weight: a large |w| is a confident weight. Simulate one weight
# under noisy gradients whose mean points towards flipping (SGD, lr 0.01, gradient N(0.1, 1)):
# the further from 0 it starts, the later it flips. (Once near 0, noise flips it back and forth
# whatever it started from: a weight with no evidence either way has no inertia.)

# %%
def simulate(w0: float, steps: int = 2000, lr: float = 0.01, clip: float | None = None,
             mean: float = 0.1, noise: float = 1.0, seed: int = 0) -> tuple[int, int]:
    """(first step at which sign(w) flipped or -1, number of flips) for g ~ N(mean, noise)."""
    r = np.random.default_rng(seed)
    w, first, flips = w0, -1, 0
    for t in range(steps):
        new = w - lr * r.normal(mean, noise)
        if clip is not None:
            new = float(np.clip(new, -clip, clip))
        if np.sign(new) != np.sign(w):
            flips += 1
            first = t if first < 0 else first
        w = new
    return first, flips


for w0 in (0.01, 0.1, 0.5):
    first, flips = simulate(w0)
    print(f"w0 = {w0:4.2f}: first flip at step {first:4d}, {flips:3d} flips in 2000 steps")
firsts = [simulate(w0)[0] for w0 in (0.01, 0.1, 0.5)]
assert firsts[0] < firsts[1] < firsts[2]

# %% [markdown]
# ## 2. Clipping bounds the inertia
# Without clipping, a weight that received consistent gradient for a long time drifts far from
# 0 and can no longer change its mind: it would need as long again to come back. BNN training
# clips latent weights to [−1, 1] after every step (`clip_weights=1.0`, the default of
# `minibnn train`; BinaryConnect, arXiv:1511.00363). Below: 300 steps of gradient pushing w
# up, then the gradient reverses. How long until the sign follows?

# %%
def steps_to_follow(clip: float | None, lr: float = 0.01) -> int:
    w = 0.1
    for _ in range(300):                                   # phase 1: gradient -1 (w grows)
        w = w + lr if clip is None else min(w + lr, clip)
    for t in range(10_000):                                # phase 2: gradient +1 (w shrinks)
        w -= lr
        if w < 0:
            return t + 1
    return -1


unclipped, clipped = steps_to_follow(None), steps_to_follow(1.0)
print(f"steps until the sign follows the reversed gradient: unclipped {unclipped}, clipped {clipped}")
assert clipped < unclipped

# %% [markdown]
# ## 3. Bop: keep the evidence, drop the weight
# If the latent weight is only a counter of evidence, keep the evidence explicitly. Bop keeps,
# per binary weight w in {−1, +1}, an exponential moving average m of its gradient and flips w
# when the evidence is strong enough and points the right way:
#
#     m ← (1 − γ) m + γ g                               γ: adaptivity rate
#     w ← −w   where |m| > τ and sign(m) = sign(w)      τ: threshold
#
# (A gradient with w's sign means the loss falls if w decreases, i.e. flips.) `minibnn.optim.Bop`
# is this rule; `Combined` pairs it with Adam for every real parameter (batch norm, the real stem
# and classifier), as larq's case optimizer does. One step by hand, γ = 0.5, τ = 0.2:

# %%
w = Tensor(np.array([1.0, 1.0, -1.0, -1.0]), requires_grad=True)
opt = Bop([w], threshold=0.2, gamma=0.5)
w.grad = np.array([0.6, -0.6, -0.6, 0.3])                  # m = g / 2 = 0.3, -0.3, -0.3, 0.15
opt.step()
print("m =", opt.state[w]["exp_avg"], " w =", w.data)
assert np.array_equal(w.data, [-1.0, 1.0, 1.0, -1.0])     # flips where |m| > 0.2 and signs agree

# %% [markdown]
# ## 4. Adam on latent weights vs Bop, on the default CNN
# Same model (the default CNN at half width), same data order, same seed. Adam (lr 2e-3)
# updates the latent weights, which are
# clipped to [−1, 1] after each step; Bop (γ = 1e-3, τ = 1e-6) flips the binary weights and Adam
# (lr 2e-3) updates everything else. Every 5 steps we record the flip ratio: the fraction of
# binary weights whose sign changed since the last record.

# %%
train, val = load_dataset("mnist-t10k")
mean, std = np.array(train.mean, np.float32), np.array(train.std, np.float32)
norm = lambda x, r: transforms.normalize(x, mean, std)                     # noqa: E731
x_val = norm(val.x[:1000].astype(np.float32) / 255, None)


def accuracy(model) -> float:
    with no_grad():
        return float(np.mean(np.argmax(model.eval()(Tensor(x_val)).data, axis=1) == val.y[:1000]))


def train_with(kind: str) -> dict:
    model = build_model("cnn", width=WIDTH, rng=0)
    binary, other = split_binary_parameters(model)
    if kind == "Adam":
        opt = Adam(binary + other, lr=2e-3)
    else:
        opt = Combined(Bop(binary, threshold=1e-6, gamma=1e-3), Adam(other, lr=2e-3))
    flips = binary_nn.FlipRatio(model)
    flips.update()
    log = {"step": [], "flip_ratio": [], "loss": []}
    loader = BatchLoader(train.x[:LIMIT], train.y[:LIMIT], BATCH, rng=0, transform=norm)
    for step, (xb, yb, _) in enumerate(loader, start=1):
        model.train()
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if kind == "Adam":
            binary_nn.clip_latent_weights(model, 1.0)
        if step % 5 == 0:
            log["step"].append(step)
            log["flip_ratio"].append(flips.update())
            log["loss"].append(loss.item())
    log["accuracy"] = accuracy(model)
    log["binary_values"] = np.unique(np.concatenate([p.data.ravel() for p in binary]))
    return log


runs = {kind: train_with(kind) for kind in ("Adam", "Bop")}
for kind, log in runs.items():
    print(f"{kind:4s}: val accuracy {log['accuracy']:.3f}, flip ratio first/last record "
          f"{log['flip_ratio'][0]:.4f} / {log['flip_ratio'][-1]:.4f}")

# %%
plt = pyplot()
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
for kind, log in runs.items():
    ax0.plot(log["step"], log["loss"], label=f"{kind} (val acc {log['accuracy']:.3f})")
    ax1.plot(log["step"], np.maximum(log["flip_ratio"], 1e-6), label=kind)
ax0.set(title="training loss", xlabel="step", yscale="log")
ax1.set(title="flip ratio per 5 steps", xlabel="step", yscale="log")
for ax in (ax0, ax1):
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
print("saved", save_figure(fig, figure_dir() / "11_adam_vs_bop.png"))

# %% [markdown]
# What to look at: both optimizers learn; Bop's weights are exactly ±1 throughout (there is
# nothing else to store), and its flip ratio is governed by γ and τ instead of by a learning
# rate and the distance of latent weights from 0. Printed numbers depend on the run; the checks
# only ask for what must hold.

# %%
assert set(runs["Bop"]["binary_values"]) == {-1.0, 1.0}
assert all(log["accuracy"] > (0.6 if FAST else 0.8) for log in runs.values())
assert all(0 <= f <= 1 for log in runs.values() for f in log["flip_ratio"])

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/11_solutions.py` (it runs every check below).
# 1. **Bop's memory.** With g = 1 at every step and m_0 = 0, m_t = 1 − (1 − γ)^t. For γ = 1e-3
#    and τ = 0.5, after how many steps does a +1 weight flip? Derive it, then check with
#    `Bop` on a single weight (expected: the smallest t with 1 − 0.999^t > 0.5, which is 693).
# 2. **Threshold and flips.** Train the CNN of section 4 with Bop for 30 steps at τ = 1e-6 and
#    τ = 1e-3 (γ = 1e-3, 1,000 images). Check: the larger threshold flips fewer weights.
# 3. **Inertia without clipping.** In `simulate`, compare clip = None and clip = 0.2 for
#    w0 = 0.5 and mean = 0 (pure noise). Check: the clipped weight flips more often.

# %% [markdown]
# # 3. Train a binary network
#
# **Goal.** Train a binary multilayer perceptron and its real-valued twin on the bundled MNIST
# data, watch both learn, and see what binarization costs in accuracy and what it saves in bits.
# **Prerequisites.** Tutorial 2 (sign and pseudo-gradients). **Runtime.** About 3 minutes of CPU
# time (seed 0, 6 epochs on all 8,000 images); about 13 s of CPU time with `MINIBNN_FAST=1` (2
# epochs on 2,000 images; what the test suite uses).
#
# The bundled dataset `mnist-t10k` is the original MNIST *test* set split 8,000 / 2,000 into
# train and validation images. It ships inside the package so everything here runs offline; it
# is **not** the standard 60k/10k protocol, so do not compare its numbers with published ones.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np

from minibnn.models import build_model
from minibnn.plots import figure_dir, plot_curves, plot_history
from minibnn.summary import summary
from minibnn.train import TrainConfig, load_model, run_training

FAST = os.environ.get("MINIBNN_FAST") == "1"
FIGURES = figure_dir()                  # $MINIBNN_FIGURES, else figures/ beside the script
EPOCHS = 2 if FAST else 6
LIMIT = 2000 if FAST else 0            # 0: all 8,000 training images
workdir = Path(tempfile.mkdtemp(prefix="minibnn-tutorial-03-"))

# %% [markdown]
# ## 1. Two networks with one skeleton
# `build_model("mlp")` is a binary MLP: the first and last layers stay real-valued (binarizing the
# raw pixels or the logits destroys too much), the hidden layers binarize both their inputs and
# their weights. `binary=False` gives the twin with the same layers in floating point. The summary
# counts what each costs at inference: a binary weight is one bit, a real one 32.

# %%
bnn = build_model("mlp", rng=0)
twin = build_model("mlp", binary=False, rng=0)
bnn_summary, twin_summary = summary(bnn, (1, 28, 28)), summary(twin, (1, 28, 28))
print(bnn_summary)
print(f"binary MLP: {bnn_summary.packed_bytes / 1024:.0f} KiB packed; "
      f"real twin: {twin_summary.packed_bytes / 1024:.0f} KiB")
# The real first layer (784 x 512 weights) dominates the binary MLP's memory, so it is only
# about 2x smaller than its twin: keeping first and last layers real has a price.
assert bnn_summary.packed_bytes < twin_summary.packed_bytes / 2

# %% [markdown]
# ## 2. Train both with the same recipe
# `run_training` does what `minibnn train` does: it loads the data, builds the model, trains
# with Adam and a cosine learning-rate schedule, and writes a run folder with checkpoints and the
# per-epoch history. For the BNN the optimizer updates real-valued *latent* weights; the forward
# pass only ever sees their signs (times a per-channel scale), and the latent weights are clipped
# to [-1, 1] after each step so they stay where a sign flip is reachable.

# %%
results = {}
for name, real in (("binary MLP", False), ("real-valued MLP", True)):
    config = TrainConfig(model="mlp", real=real, epochs=EPOCHS, limit_train=LIMIT, lr=2e-3, seed=0)
    results[name] = run_training(config, workdir / name.replace(" ", "-"), quiet=True)
    print(f"{name:16s} validation accuracy per epoch:",
          [f"{row['val_accuracy']:.3f}" for row in results[name].history])

# %% [markdown]
# ## 3. Look at the curves
# The binary network learns more slowly and ends a little lower. The second picture is the
# binary run's own history (what `minibnn plot RUN_DIR` draws): loss terms, accuracy, the
# learning-rate schedule, and the **flip ratio**, the fraction of binary weights whose sign
# changed during an epoch. A latent weight is a real number behind each sign: the further it is
# from 0, the more gradient it takes to flip it (its *inertia*). As the learning rate decays and
# latent weights settle away from 0 the flip ratio falls; tutorial 11 looks at this closely and
# trains the same kind of network with Bop, an optimizer that keeps no latent weights at all.

# %%
curves = {name: [row["val_accuracy"] for row in r.history] for name, r in results.items()}
path = plot_curves(curves, FIGURES / "03_binary_vs_real.png",
                   title="validation accuracy on mnist-t10k", ylabel="accuracy")
print("saved", path)
print("saved", plot_history(results["binary MLP"].history, FIGURES / "03_binary_history.png",
                            title="binary MLP: loss, accuracy, lr and flip ratio per epoch"))
flips = [row["flip_ratio"] for row in results["binary MLP"].history]
print("flip ratio per epoch:", [f"{f:.4f}" for f in flips])
assert 0 < flips[-1] < 0.5

# %% [markdown]
# ## 4. Checks
# Both networks must be far above chance (10 %), the real twin at least as good as the BNN up to
# a small margin, and a checkpoint reloaded from disk must give bit-identical predictions.

# %%
bnn_acc = results["binary MLP"].val_accuracy
real_acc = results["real-valued MLP"].val_accuracy
assert bnn_acc > (0.80 if FAST else 0.93), bnn_acc
assert real_acc > (0.85 if FAST else 0.95), real_acc
assert real_acc > bnn_acc - 0.02

reloaded, _ = load_model(results["binary MLP"].out_dir / "last.npz")
from minibnn import Tensor, no_grad  # noqa: E402

x = Tensor(np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32))
with no_grad():
    bnn.load_state_dict(reloaded.state_dict())
    assert np.array_equal(bnn.eval()(x).data, reloaded(x).data)
print(f"binary MLP {bnn_acc:.4f} vs real twin {real_acc:.4f}: checks passed")

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/03_solutions.py` (it runs every check below).
# 1. **What clipping does.** Train the binary MLP for one epoch on 2,000 images (lr 0.1) with
#    `clip_weights=0` (no clipping) and once with the default 1.0, then count the latent hidden
#    weights with |w| > 1. Check: some without clipping, none with it. Why does a latent weight
#    beyond ±1 never come back under the clipped STE (its pseudo-gradient there is 0)?
# 2. **Where the bytes are.** From `summary(bnn, (1, 28, 28))`, check that the real first layer
#    alone (784·512 float32 weights) takes more than half of the binary MLP's packed bytes.

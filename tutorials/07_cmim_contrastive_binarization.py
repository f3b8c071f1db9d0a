# %% [markdown]
# # 7. CMIM: keeping information through binarization with a contrastive loss
#
# **Goal.** Understand CMIM (Shang et al., "Network Binarization via Contrastive Learning",
# ECCV 2022, arXiv:2207.02970): what mutual information (MI) is and how InfoNCE bounds it from
# below, why the sign function throws information away, and the two things "CMIM" means in
# minibnn: the *paper* form (which activations the paper contrasts: a BNN's binary activations
# against its own pre-sign ones; the estimator is our reconstruction, see 3b) and the *official*
# form (what the released code computes: CRD-style NCE against a real-valued teacher, with
# memory banks). Each section checks minibnn against a closed form, then we train a binary CNN
# three ways and plot the curves.
# **Prerequisites.** Tutorials 2-3 (sign and its pseudo-gradients, training a BNN).
# **Runtime.** Three modes. `MINIBNN_FAST=1`: about 30 s of CPU time (a synthetic set). Default,
# seed 0: about 2.3 minutes of CPU time (the CNN at width 0.5, 2 epochs on 2,000 MNIST images per
# arm). `MINIBNN_FULL=1`: seed 0 of docs/cmim.md's protocol (width 1, 4 epochs on 4,000 images;
# not timed here). Numbers printed below depend on the run; the text never quotes them.

# %%
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy.special import ndtr                    # the standard normal CDF

from minibnn import Tensor, no_grad
from minibnn import functional as F
from minibnn.data import load_dataset, transforms
from minibnn.methods import cmim
from minibnn.methods.cmim_recipe import record_binary_inputs
from minibnn.models import build_model
from minibnn.nn.binary import binary_layers
from minibnn.plots import figure_dir, plot_cmim_runs
from minibnn.train import TrainConfig, run_training

FAST = os.environ.get("MINIBNN_FAST") == "1"
FIGURES = figure_dir()                  # $MINIBNN_FIGURES, else figures/ beside the script
rng = np.random.default_rng(0)
workdir = Path(tempfile.mkdtemp(prefix="minibnn-tutorial-07-"))

# %% [markdown]
# ## 1. Mutual information, and InfoNCE as a lower bound
# I(X; Y) = E log p(x, y) / (p(x) p(y)) measures how much knowing Y tells about X. It is hard
# to estimate in high dimension, but it has a cheap lower bound. Draw a batch of B pairs
# (x_i, y_i); for each x_i, let a critic f score the B candidates y_j and ask it to pick the
# true partner with a softmax. The cross-entropy of that choice is InfoNCE, and
#
#     I(X; Y) >= log B - L_InfoNCE            (van den Oord et al., arXiv:1807.03748)
#
# with equality approached by the critic f = log p(y|x)/p(y) when B is large. Check it on
# correlated Gaussians, where the MI is known: y = rho x + sqrt(1 - rho^2) noise in d
# dimensions has I = -d/2 log(1 - rho^2). The best critic is, up to terms that cancel in the
# softmax, [rho x.y - rho^2 |y|^2 / 2] / (1 - rho^2); a plain dot product x.y / tau (what
# minibnn's `info_nce` uses on embeddings) gives a looser, still valid bound. Any critic gives
# a lower bound: a bad one only makes it useless (with tau = 0.45 here it is even negative).

# %%
d, rho, batch = 4, 0.8, 256
true_mi = -d / 2 * np.log(1 - rho**2)
bounds_best, bounds_dot = [], []
for _ in range(20):
    x = rng.normal(size=(batch, d))
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=(batch, d))
    logits = (rho * x @ y.T - rho**2 * np.sum(y * y, axis=1)[None, :] / 2) / (1 - rho**2)
    best = F.cross_entropy(Tensor(logits), np.arange(batch)).item()
    dot = cmim.info_nce(Tensor(x), Tensor(y), tau=1.0).item()
    bounds_best.append(np.log(batch) - best)
    bounds_dot.append(np.log(batch) - dot)
print(f"true MI {true_mi:.3f} nats;  log B = {np.log(batch):.3f}")
print(f"InfoNCE bound, best critic  {np.mean(bounds_best):.3f}")
print(f"InfoNCE bound, x.y / 1.0    {np.mean(bounds_dot):.3f}")
assert 0 < np.mean(bounds_dot) < np.mean(bounds_best) < true_mi + 0.05
assert np.mean(bounds_best) > 0.8 * true_mi

# %% [markdown]
# With equal logits the softmax cannot tell the candidates apart and InfoNCE is log(number of
# candidates): the bound is 0. MoCo's 65,536-key queue gives log 65,537 = 11.090370
# (docs/methods.md §5), the largest MI such a bound can ever certify.

# %%
k = 65536
moco = cmim.info_nce(Tensor(np.zeros((2, 8))), Tensor(np.ones((2, 8))), np.ones((k, 8)),
                     tau=0.2, in_batch=False).item()
print(f"InfoNCE with {k} equal negatives: {moco:.6f}  (log(1 + K) = {math.log(1 + k):.6f})")
assert abs(moco - 11.090370) < 5e-7

# %% [markdown]
# ## 2. Binarization loses information
# The data-processing inequality says no function of Y can know more about X than Y does:
# I(X; sign(Y)) <= I(X; Y). And a sign is one bit, so I(X; sign(Y)) <= log 2 no matter how
# clean Y is. Take X ~ N(0, 1) and a latent activation Y = X + sigma * noise. Then
# I(X; Y) = 1/2 log(1 + 1/sigma^2) grows without limit as sigma -> 0, while
# I(X; sign Y) = log 2 - E_x[ H_b(Phi(x / sigma)) ] (H_b the binary entropy) saturates.

# %%
def binary_entropy(p):
    p = np.clip(p, 1e-300, 1)
    q = np.clip(1 - p, 1e-300, 1)
    return -(p * np.log(p) + q * np.log(q))


grid = np.linspace(-8, 8, 20001)
weights = np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi) * (grid[1] - grid[0])  # N(0,1) quadrature
print(" sigma   I(X;Y)   I(X;sign Y)   (nats; log 2 = 0.693)")
for sigma in (0.05, 0.2, 0.5, 1.0, 2.0):
    mi_real = 0.5 * np.log(1 + 1 / sigma**2)
    mi_sign = np.log(2) - np.sum(weights * binary_entropy(ndtr(grid / sigma)))
    print(f"{sigma:6.2f}  {mi_real:7.3f}  {mi_sign:9.3f}")
    assert mi_sign <= min(mi_real, np.log(2)) + 1e-9

# %% [markdown]
# A binary layer with C channels on an H x W map keeps at most C H W bits per image, and
# which bits it keeps depends on where the latent activations sit relative to 0. CMIM's idea:
# make the binary activations carry as much as possible of what the real-valued ones know, by
# maximising a contrastive lower bound on their MI during training.

# %% [markdown]
# ## 3. The two forms side by side
#
# | | paper form, reconstructed (`--cmim-form paper`) | official form (`--cmim-form official`) |
# |---|---|---|
# | real side | the BNN's own pre-sign activations a | a separately trained real network (teacher) |
# | binary side | sign(a) at several binary layers | the BNN's penultimate feature |
# | pairs | the last three binary layers | one |
# | objective | softmax InfoNCE (ours; the paper's is an NCE with a memory bank) | CRD NCE (binary classification, fixed Z) |
# | negatives | other samples of the batch (+ a queue) | 4096 from a memory bank, other classes only |
# | heads | trained | random, frozen |
#
# ### 3a. Official: NCE against memory banks
# Each training image has a row in two memory banks (BNN and teacher embeddings, updated by
# momentum). For an anchor the code scores its positive row and N = 4096 rows of *other
# classes*, x = exp(<row, e>/tau) / Z with Z fixed at the first batch, and classifies "data
# or noise" with a uniform noise prior 1/M. With every score equal to 1/M the loss is
# log(N+1) + N log(1 + 1/N) + (about M eps): 9.322888 for N = 4096, M = 50,000.

# %%
n_noise, n_data = 4096, 50000
uniform = cmim.nce_loss(Tensor(np.full((2, n_noise + 1), 1 / n_data)), n_noise, n_data).item()
print(f"NCE on uniform scores: {uniform:.6f}")
assert abs(uniform - 9.322888) < 5e-7

labels = np.arange(400) % 10
sampler = cmim.NegativeSampler(labels, 64, rng=0)
mem_bnn, mem_fp = cmim.MemoryBank(400, 16, rng=1), cmim.MemoryBank(400, 16, rng=2)
z_bnn, z_fp = cmim.Normaliser(400), cmim.Normaliser(400)
idx = rng.choice(400, 8, replace=False)
e_bnn = F.normalize(Tensor(rng.normal(size=(8, 16)).astype(np.float32)))
e_fp = F.normalize(Tensor(rng.normal(size=(8, 16)).astype(np.float32)))
before = mem_bnn.weight.copy()
sample_idx = sampler.sample(idx)
terms = cmim.official_loss(e_bnn, e_fp, idx, sample_idx, mem_bnn, mem_fp, z_bnn, z_fp)
print(f"BNN-anchored {terms.bnn_anchor.item():.3f}, FP-anchored {terms.fp_anchor.item():.3f}, "
      f"Z_B = {z_bnn.value:.1f}")
assert not np.any(labels[sample_idx[:, 1:]] == labels[idx][:, None])     # other classes only
untouched = np.setdiff1d(np.arange(400), idx)
assert np.array_equal(mem_bnn.weight[untouched], before[untouched])     # only batch rows move

# %% [markdown]
# ### 3b. Paper: the BNN against itself
# What the paper contrasts is clear from its abstract and figure: the binary activations of a
# layer against the same layer's latent real activations, for a few layers. How it scores them
# is not the in-batch softmax below: the paper's own objective is an NCE against a memory bank
# (the family the official code uses, 3a), whose exact equations we could not retrieve. So
# minibnn's "paper form" is a *reconstruction*: the paper's pairs with a plain InfoNCE over the
# batch (optionally plus a queue of earlier latent embeddings), the estimator of section 1.
# Treat its numbers as those of that reconstruction, not of the paper.
#
# Every binary layer computes q = sign(a) of its input a. `record_binary_inputs` swaps each
# chosen layer's input quantizer for a recorder during one forward, so we get both a and
# sign(a) without touching the model's code. Average-pool each, embed (here with one random
# head per layer; training uses two trained heads), and InfoNCE pairs an image's binary
# embedding with its own latent one against the rest of the batch.

# %%
train_set, _ = load_dataset("mnist-t10k")
images = transforms.normalize(train_set.x[:64].astype(np.float32) / 255, train_set.mean, train_set.std)
model = build_model("cnn", input_quantizer="ede", weight_quantizer="irnet", rng=0)
layers = [layer for _, layer in binary_layers(model)]
with no_grad(), record_binary_inputs(layers) as recorders:
    model(Tensor(images))
pairs = [rec.records[0] for rec in recorders]
for (a, ab), layer in zip(pairs, layers):
    print(f"{type(layer).__name__} input {a.shape}: {np.mean(ab.data > 0):.2f} of the signs are +1")
    assert np.array_equal(ab.data, np.where(a.data >= 0, 1.0, -1.0))
head_weights = [Tensor(rng.normal(size=(16, a.shape[1])).astype(np.float32)) for a, _ in pairs]
z_b = [cmim.embed(cmim.pool_activation(ab), w) for (_, ab), w in zip(pairs, head_weights)]  # (64, 16)
z_l = [cmim.embed(cmim.pool_activation(a), w) for (a, _), w in zip(pairs, head_weights)]
losses = cmim.paper_loss(z_b, z_l, tau=0.1)
print("InfoNCE per layer pair (random heads, untrained):", [f"{l.item():.3f}" for l in losses],
      f" log B = {np.log(64):.3f}")
assert all(0 < l.item() for l in losses)

# %% [markdown]
# These untrained losses can come out *above* log B, so the bound log B − L is negative. That
# is not a contradiction: the bound holds for every critic, and a random one is a bad critic.
# InfoNCE is logsumexp_j(s_j) − s_positive, and logsumexp_j(s_j) ≥ mean_j(s_j) + log B with
# equality only when all logits are equal (Jensen). With τ = 0.1 random heads spread the logits
# over about ±10, so the logsumexp sits well above the mean while the positive's logit is just
# one more random draw: on average L > log B. Training the heads (and the BNN) is what pushes
# the positive's logit up and L below log B. Check the inequality on these very logits:

# %%
zb, zl = z_b[0].data, z_l[0].data
logits = zb @ zl.T / 0.1                                       # (64, 64), positives on the diagonal
lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
assert np.all(lse >= logits.mean(1) + np.log(64) - 1e-9)
print(f"mean logsumexp - mean logit = {np.mean(lse - logits.mean(1)):.3f} >= log B = {np.log(64):.3f}")
assert abs(np.mean(lse - np.diag(logits)) - losses[0].item()) < 1e-4

# %% [markdown]
# ## 4. Training: CE vs + CMIM official vs + CMIM paper
# Same binary CNN, same IR-Net binarization (EDE pseudo-gradient, Libra-PB weights), same
# seed; only the loss changes. The official form needs the real twin as its teacher, trained
# first. (Fast mode trains on the synthetic stripes dataset, the default run on 2,000 MNIST
# images, `MINIBNN_FULL=1` on 4,000. docs/cmim.md has the 3-seed reproduction.)

# %%
if FAST:
    data = dict(dataset="synthetic", width=0.5, batch_size=64, epochs=3)
elif os.environ.get("MINIBNN_FULL") == "1":     # seed 0 of docs/cmim.md's reproduction
    data = dict(dataset="mnist-t10k", limit_train=4000, epochs=4)
else:                                            # the default seed-0 run
    data = dict(dataset="mnist-t10k", limit_train=2000, epochs=2, width=0.5)
teacher = run_training(TrainConfig(model="cnn", real=True, seed=0, **data), workdir / "teacher",
                       quiet=True)
print(f"teacher (real twin) val acc {teacher.val_accuracy:.3f}")
common = dict(model="cnn", input_quantizer="ede", weight_quantizer="irnet", ede_t_min=1e-2,
              seed=0, **data)
arms = {"CE": dict(method="ce"),
        "CMIM official": dict(method="cmim", teacher=str(workdir / "teacher"),
                              method_options={"form": "official"}),
        "CMIM paper": dict(method="cmim", method_options={"form": "paper"})}
histories = {}
for name, extra in arms.items():
    result = run_training(TrainConfig(**common, **extra), workdir / name.replace(" ", "-"), quiet=True)
    histories[name] = result.history
    print(f"{name:14s} val acc per epoch: " +
          " ".join(f"{r['val_accuracy']:.3f}" for r in result.history))
path = plot_cmim_runs(histories, FIGURES / "07_cmim_training.png",
                      title=f"binary CNN (IR-Net) on {data['dataset']}: CE vs CMIM")
print("figure:", path)
official, paper = histories["CMIM official"][-1], histories["CMIM paper"][-1]
assert {"train_ce", "train_cmim_bnn_anchor", "train_cmim_fp_anchor"} <= set(official)
assert {"train_ce", "train_infonce"} <= set(paper)
chance = 1 / (4 if FAST else 10)
assert all(h[-1]["val_accuracy"] > chance + 0.1 for h in histories.values())
# the term CMIM trains the BNN with goes down; the FP-anchored one only moves via memories
assert histories["CMIM official"][-1]["train_cmim_bnn_anchor"] < histories["CMIM official"][0]["train_cmim_bnn_anchor"]
assert histories["CMIM paper"][-1]["train_infonce"] < histories["CMIM paper"][0]["train_infonce"]

# %% [markdown]
# What to take away. The official form is contrastive *distillation*: the BNN's embedding is
# pulled towards the teacher's embedding of the same image and away from other classes'
# memory rows; half of its loss (the FP-anchored term) trains nothing with frozen heads. The
# paper form asks a BNN to keep, in its signs, what its own latent activations know. Both are
# a regulariser on top of cross-entropy; on MNIST the accuracy differences are small, and
# docs/cmim.md reports what 3 seeds show.

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/07_solutions.py` (it runs every check below).
# 1. **The NCE value on uniform scores.** Compute by hand −log((1/M)/((N+1)/M + ε)) −
#    N·log((N/M)/((N+1)/M + ε)) for N = 10, M = 100, ε = 1e−7. Check: 3.351007, equal to
#    `cmim.nce_uniform_value(10, 100)`.
# 2. **A perfect critic.** Use B = 16 orthogonal unit embeddings as both anchors and
#    positives. Derive InfoNCE as a function of tau. Check: log(1 + (B − 1)·e^(−1/τ)) for
#    τ = 1, 0.1, 0.01, and below 1e−3 at τ = 0.01.
# 3. **Equal logits.** Check: identical embeddings for every sample give exactly log B.

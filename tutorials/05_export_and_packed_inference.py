# %% [markdown]
# # 05 · Export and packed inference
# Goal: turn a trained binary CNN into a `PackedModel` that runs on bits, and convince ourselves
# that it computes *exactly* what the float model computes: the same predictions, the same
# integer accumulators in every binary layer, at a fraction of the memory and time. We look at
# how batch norm and the weight scale fold into each layer's output stage, at the size report,
# at a timing, and at the file round trip the `minibnn export` / `minibnn eval --packed`
# commands use. Prerequisites: tutorial 03 (training a BNN) and tutorial 04 (XOR-popcount,
# packing, the kernels' output stages). Runtime: about 1.5 minutes of CPU time (seed 0), about
# 10 s with MINIBNN_FAST=1 (what the test suite uses).

# %%
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from minibnn import cli
from minibnn.autograd import Tensor, no_grad
from minibnn.data import load_dataset, transforms
from minibnn.engine import PackedModel, bitpack, conv, export
from minibnn.nn import binary_layers
from minibnn.plots import figure_dir, plot_bars
from minibnn.train import TrainConfig, load_model, run_training

FAST = os.environ.get("MINIBNN_FAST") == "1"
FIGURES = figure_dir()                  # $MINIBNN_FIGURES, else figures/ beside the script
workdir = Path(tempfile.mkdtemp(prefix="minibnn-tutorial-05-"))

# %% [markdown]
# ## 1. A trained binary CNN
# The default model of `minibnn train`: a real-valued stem conv, three binary 3x3 convs (each
# conv -> [max-pool] -> BN -> hardtanh, the next layer taking the sign), and a real classifier.
# A short run on the bundled MNIST split is enough: export does not care how good the weights
# are, only that batch norm has real statistics to fold.

# %%
config = TrainConfig(model="cnn", width=0.25 if FAST else 0.5, epochs=1 if FAST else 2,
                     limit_train=2000 if FAST else 0, seed=0)
run_training(config, workdir / "run", quiet=True)
model, config = load_model(workdir / "run")                    # eval mode
_, val = load_dataset(config.dataset)
x = transforms.normalize(val.x.astype(np.float32) / 255, val.mean, val.std)   # (2000, 1, 28, 28)
with no_grad():
    float_logits = model(Tensor(x)).data
accuracy = float((float_logits.argmax(1) == val.y).mean())
print(f"float model: validation accuracy {accuracy:.3f} on {len(x)} images")
assert accuracy > (0.3 if FAST else 0.5)   # far above chance (0.1); fast mode gets ~0.5 +- 0.05

# %% [markdown]
# ## 2. Export: what each layer becomes
# For a binary conv the exporter packs sign(binary_weight()) (bit 1 means -1) and keeps the
# per-channel magnitude alpha. Everything up to the next sign folds into the conv's *stage*,
# per output channel m and on the integer accumulator a = conv(sign(x), sign(W)):
#
#     t = ((float32(max-pool(a)) * alpha_m - mu_m) * inv_std_m) * gamma_m + beta_m -> hardtanh
#
# Max-pooling runs on the integers (exact, alpha >= 0); BN keeps the float model's own float32
# operation order, so where the model's float accumulator is exact the two agree bit for bit.
# When a stage only feeds the next layer's sign, the exporter evaluates it on every possible
# accumulator and finds the integer where the sign changes: the kernel then compares integers.

# %%
packed = export(model, meta={"dataset": config.dataset, "mean": list(val.mean),
                             "std": list(val.std)})
print(packed)
bconv = next(n for n in packed.nodes if n.kind == "binary_conv" and n.stage.pool == 1)
scale, bias = bconv.stage.integer_threshold(bconv.k)
rules = [f"a < {-b:.0f}" if s > 0 else f"a >= {b + 1:.0f}" if s < 0 else
         ("always" if b < 0 else "never") for s, b in zip(scale[:4], bias[:4])]
print(f"{bconv.name}: a in [-{bconv.k}, {bconv.k}]; sign -1 for channels 0-3 where: {rules}")
# The thresholds reproduce BN -> hardtanh -> sign on every integer the conv can produce.
a = np.arange(-bconv.k, bconv.k + 1, dtype=np.int32)[:, None].repeat(bconv.stage.m, axis=1)
regs = {}
bconv.stage.apply(a, regs)                                          # the float stage, bits only
via_threshold = bitpack.pack_bits(a.astype(np.float32) * scale + bias)
assert np.array_equal(regs[bconv.stage.bits], via_threshold)

# %% [markdown]
# ## 3. Same predictions, same integers
# `trace(x)` runs the packed model and keeps each binary layer's int32 accumulators. The oracle
# is the float model itself: we record the input each binary layer receives in `model(x)` and
# compute conv(sign(input), sign(W)) in float64. Every accumulator must match exactly, and so
# must the packed signs the engine fed to each layer.

# %%
recorded = {}
for name, layer in binary_layers(model):
    def keep(inp, _forward=layer.forward, _name=name):
        recorded[_name] = inp.data.copy()
        return _forward(inp)
    layer.forward = keep

n_check = 200 if FAST else 500
with no_grad():
    model(Tensor(x[:n_check]))
trace = packed.trace(x[:n_check])
layers, flips = dict(binary_layers(model)), 0
for node in packed.nodes:
    if node.kind != "binary_conv":
        continue
    (name, _, _), layer, inp = node.sources[0], layers[node.name], recorded[node.name]
    s, w = np.where(inp < 0, -1.0, 1.0), np.where(layer.binary_weight() < 0, -1.0, 1.0)
    oracle = conv.binary_conv2d_reference(s, w, layer.stride, layer.padding)
    assert np.array_equal(trace.accumulators[name], oracle.transpose(0, 2, 3, 1))
    flips += int(np.unpackbits((trace.registers[node.src] ^ bitpack.pack_nhwc(inp))
                               .view(np.uint8)).sum())
    print(f"{name}: accumulators {trace.accumulators[name].shape} equal the float64 oracle")
packed_pred = packed.predict(x)
agree = int((packed_pred == float_logits.argmax(1)).sum())
print(f"sign flips at binary-layer inputs: {flips}; predictions equal on {agree}/{len(x)}; "
      f"max |logit difference| {np.abs(packed(x) - float_logits).max():.1e}")
assert flips == 0 and agree == len(x)

# %% [markdown]
# ## 4. How much smaller
# The size report compares what each packed node stores (packed words plus float32 vectors:
# alpha and four BN vectors per channel) with the float32 parameters and buffers of the same
# layers in the model. The real stem and classifier stay float32, so the whole network shrinks
# less than the binary layers do; at this small width the per-channel vectors also count.

# %%
report = packed.size_report()
print(report)
bars = {f"{r.name} ({r.kind.split('_')[0]})": [r.float32_bytes / r.packed_bytes]
        for r in report.rows}
print("saved", plot_bars(bars, FIGURES / "05_size_ratio.png", title="float32 bytes / packed bytes",
                         ylabel="compression (x)"))
binary_rows = [r for r in report.rows if r.kind == "binary_conv"]
assert all(r.float32_bytes > 3 * r.packed_bytes for r in binary_rows) and report.ratio > 2

# %% [markdown]
# ## 5. How much faster
# Median of a few runs on 500 images: the float model's NumPy forward (im2col + BLAS matmul in
# float32) against the packed model. On a busy machine the numbers move; the ratio is what
# matters. `minibnn bench model` does this properly for VGG-small and ResNet-18, with PyTorch.


# %%
def median_seconds(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


xb = x[:500]
with no_grad():
    t_float = median_seconds(lambda: model(Tensor(xb)))
t_packed = median_seconds(lambda: packed(xb))
print(f"500 images: float NumPy {t_float * 1e3:.1f} ms, packed {t_packed * 1e3:.1f} ms "
      f"({t_float / t_packed:.1f}x)")
assert t_packed < t_float

# %% [markdown]
# ## 6. The file, and the command line
# `save` writes an `.npz` without pickle: a JSON header (format version, metadata such as the
# dataset and its normalisation, the node list) and the arrays. `minibnn export CKPT OUT.npz`
# does section 2 and prints section 4; `minibnn eval --packed OUT.npz` evaluates the file on
# its dataset's validation split without the checkpoint.

# %%
path = workdir / "cnn_packed.npz"
packed.save(path)
reloaded = PackedModel.load(path)
assert np.array_equal(reloaded(x[:50]), packed(x[:50]))
print(f"{path.name}: {path.stat().st_size:,} bytes on disk; meta {reloaded.meta}")
assert cli.main(["eval", "--packed", str(path)]) == 0

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/05_solutions.py` (it runs every check below).
# 1. **Thresholds by hand.** For one channel with scale s and bias b, sign(a·s + b) (with
#    sign(0) = +1) is +1 iff a ≥ ceil(−b/s) when s > 0, iff a ≤ floor(−b/s) when s < 0, and
#    always or never when s = 0. Write `positive_from(a, s, b)`. Check: equal to `a*s + b >= 0`
#    for every a in [−27, 27] and 200 random (s, b), some with s = 0.
# 2. **Bytes by hand.** A binary 3x3 conv 64 → 64 stores one uint64 word per (output channel,
#    tap) and five float32 vectors of 64 (alpha and batch norm). Compute its compression
#    against float32 weights. Check: `bitpack.pack_nhwc(w).nbytes == 4608` and the ratio is 25.0.

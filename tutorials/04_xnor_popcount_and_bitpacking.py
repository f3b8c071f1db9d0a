# %% [markdown]
# # 04 · XNOR, popcount and bit-packing
# Goal: see why a binary layer can run on bits, and build the packed conv of `minibnn.engine`
# step by step: the XOR-popcount identity, the packing format, the padding problem and its border
# correction, a kernel ladder from a float reference to the fast Numba kernel, and the fused
# output stages that hand packed bits to the next layer. Prerequisites: NumPy, and what a
# binary conv computes (tutorial 03, or just "conv of sign(x) with sign(w)"). Runtime: about
# 3 s of CPU time once Numba has compiled and cached its kernels (the first run also compiles,
# about 10 s more); about 2 s with MINIBNN_FAST=1.

# %%
import os
import time

import numba
import numpy as np

from minibnn.engine import bitpack, conv, gemm
from minibnn.plots import figure_dir, pyplot, save_figure

FAST = os.environ.get("MINIBNN_FAST") == "1"
rng = np.random.default_rng(0)


def random_pm1(shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


# %% [markdown]
# ## 1. Dot products become XOR + popcount
# Store +1 as bit 0 and -1 as bit 1. For a, b in {-1,+1}^K each position contributes +1 when the
# bits agree and -1 when they differ, so with D = popcount(a XOR b) differing positions
#
#     a·b = (K - D) - D = K - 2·popcount(a XOR b).
#
# Here with Python integers as bit strings, before any library code.

# %%
k = 10
a, b = random_pm1(k), random_pm1(k)
to_int = lambda v: sum(1 << i for i, s in enumerate(v) if s < 0)   # bit i = element i
differ = bin(to_int(a) ^ to_int(b)).count("1")
print(f"a·b = {a @ b:.0f},  K - 2·popcount = {k - 2 * differ}")
assert a @ b == k - 2 * differ

# %% [markdown]
# ## 2. Packing: 64 channels per word, bit 1 means -1, tail bits zero
# `pack_bits` packs the last axis: bit b of word w holds element 64w + b. K = 70 needs two
# words; the 58 unused bits of the second word are 0 in every operand, so they never differ and
# never count. The rule is bit = (x < 0): 0 packs as +1 (sign(0) = +1), and so does -0.0,
# because -0.0 < 0 is False.

# %%
x = random_pm1(70)
words = bitpack.pack_bits(x)
print(words.dtype, words.shape, [f"{int(w):#018x}" for w in words])
assert words.shape == (2,) and int(words[1]) >> (70 - 64) == 0          # tail bits are zero
assert (bitpack.unpack_bits(words, 70) == x).all()                      # lossless round trip
assert int(bitpack.pack_bits(np.array([0.0, -0.0, 1e-9]))[0]) == 0      # all three are +1

# %% [markdown]
# ## 3. A packed matrix product
# `xnor_gemm` applies the identity to every pair of rows: one 64-bit XOR and one popcount do the
# work of 64 multiply-adds. It must equal the float matmul exactly.

# %%
kk = 200
A, B = random_pm1((6, kk)), random_pm1((5, kk))
got = gemm.xnor_gemm(bitpack.pack_rows(A), bitpack.pack_rows(B), kk)
print(got[:2])
assert (got == A @ B.T).all() and (got == gemm.xnor_gemm_reference(A, B)).all()

# %% [markdown]
# ## 4. The padding problem
# A zero-padded conv adds 0 for taps outside the image, but a bit can only say +1 or -1. The
# packed conv therefore pads with the bit 0 (+1) and corrects afterwards: at a border pixel the
# raw sum contains +1·w for every outside tap, i.e. the tap sums
# S[kh, kw, m] = sum_c w[m, c, kh, kw] of the taps that fell outside. Subtract them. Only border
# pixels need it, and pixels whose outside taps are the same share one correction:
# `border_table` gives one constant per (row class, column class, output channel).

# %%
c, m, h = 64, 3, 5
xs, ws = random_pm1((1, c, h, h)), random_pm1((m, c, 3, 3))
exact = conv.binary_conv2d_reference(xs, ws, 1, 1).transpose(0, 2, 3, 1)   # (N,OH,OW,M)
padded_plus_one = np.pad(xs, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=1.0)
raw = conv.binary_conv2d_reference(padded_plus_one, ws, 1, 0).transpose(0, 2, 3, 1)
print("corner pixel, channel 0: exact", exact[0, 0, 0, 0], " pad-with-+1", raw[0, 0, 0, 0])

tap_sums = ws.sum(axis=1).transpose(1, 2, 0)                    # (kh, kw, M)
corner_fix = tap_sums.sum(axis=(0, 1)) - tap_sums[1:, 1:].sum(axis=(0, 1))   # outside taps
assert (raw[0, 0, 0] - corner_fix == exact[0, 0, 0]).all()

row_cls, col_cls, base = conv.border_table(tap_sums, c, h, h, 1, 1)
print("row classes", row_cls, " column classes", col_cls, " table", base.shape)
assert len(set(row_cls.tolist())) == 3                          # top, interior, bottom
assert (conv.binary_conv2d(bitpack.pack_nhwc(xs), bitpack.pack_nhwc(ws), c, 1, 1)
        == exact).all()

# %% [markdown]
# ## 4b. The three pictures
# Left: K = 70 signs packed into two 64-bit words (dark = bit 1 = −1; grey = the tail bits that
# stay 0). Middle: two 16-element vectors as bits, their XOR and the popcount that gives the dot
# product. Right: the output pixels of the 5x5 conv above, coloured by their border class
# (row class, column class): the 9 classes of a 3x3 kernel with padding 1, each with its own
# correction; the interior class needs none.

# %%
plt = pyplot()
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(14, 3.6), gridspec_kw=dict(width_ratios=[2.2, 1.4, 1]))
x70 = random_pm1(70)
bitgrid = np.full((2, 64), 0.5)                                  # 0.5 = unused tail bit
bitgrid.ravel()[:70] = (x70 < 0)
ax0.imshow(bitgrid, cmap="Greys", vmin=0, vmax=1, aspect=6)
ax0.set(yticks=[0, 1], yticklabels=["word 0", "word 1"], xlabel="bit b of the word (element 64w + b)",
        title="bit packing, K = 70 (bit 1 means −1)")
a16, b16 = random_pm1(16), random_pm1(16)
rows = np.stack([a16 < 0, b16 < 0, (a16 < 0) ^ (b16 < 0)]).astype(float)
ax1.imshow(rows, cmap="Greys", vmin=0, vmax=1.6)
for (r, col), v in np.ndenumerate(rows):
    ax1.text(col, r, int(v), ha="center", va="center", fontsize=7, color="tab:red" if r == 2 and v else "k")
popcount = int(rows[2].sum())
ax1.set(yticks=[0, 1, 2], yticklabels=["a", "b", "a XOR b"], xticks=[],
        title=f"a·b = 16 − 2·{popcount} = {16 - 2 * popcount:.0f}")
assert a16 @ b16 == 16 - 2 * popcount
classes = row_cls[:, None] * (col_cls.max() + 1) + col_cls[None, :]
ax2.imshow(classes, cmap="tab10")
for (r, col), v in np.ndenumerate(classes):
    ax2.text(col, r, f"{row_cls[r]},{col_cls[col]}", ha="center", va="center", fontsize=8)
ax2.set(xticks=[], yticks=[], title="border classes (row, column), 5x5 output")
fig.tight_layout()
print("saved", save_figure(fig, figure_dir() / "04_bits_xor_borders.png"))
assert len(np.unique(classes)) == 9

# %% [markdown]
# ## 5. A kernel ladder: reference -> naive njit -> fast
# Four implementations of one 3x3, stride 1, pad 1 layer (three kernels, the last on one
# thread and on all), all of them exact:
# 1. `binary_conv2d_reference`: a float conv in NumPy (einsum over sliding windows);
# 2. `binary_conv2d_naive`: Numba loops over pixels, channels and taps, one popcount per word,
#    skipping outside taps (no padding trick);
# 3. `PackedConv2d` (`prepare_conv2d`) on one thread: weights re-laid with output channels
#    innermost so the vectoriser runs 512-bit XOR + popcount over 16 channels at a time, four
#    pixels and a whole kernel row sharing each accumulator update (or, when the packed weights
#    fit in L1, all nine taps of a pixel summed in registers from weights re-laid in tiles of
#    16 channels, one pointer with constant offsets), padding once plus the border table;
# 4. the same on all cores (layers above ~5 MMAC are split over threads by output rows).
# Timings are medians of a few calls after a warm-up call (which includes JIT compilation); on a
# busy machine the threaded rung suffers most.

# %%
n, c, h = (1, 64, 8) if FAST else (8, 128, 16)
x, w = random_pm1((n, c, h, h)), random_pm1((c, c, 3, 3))
x_words, w_words = bitpack.pack_nhwc(x), bitpack.pack_nhwc(w)
layer = conv.prepare_conv2d(w_words, c, stride=1, padding=1)


def fast_one_thread():
    numba.set_num_threads(1)
    try:
        return layer(x_words)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


ladder = {
    "reference (NumPy float)":
        lambda: conv.binary_conv2d_reference(x, w, 1, 1).transpose(0, 2, 3, 1),
    "naive njit": lambda: conv.binary_conv2d_naive(x_words, w_words, c, 1, 1),
    "fast, 1 thread": fast_one_thread,
    f"fast, {numba.config.NUMBA_NUM_THREADS} threads": lambda: layer(x_words),
}
macs = n * h * h * c * c * 9
outputs, seconds = {}, {}
for name, fn in ladder.items():
    outputs[name] = fn()                                        # warm-up, JIT compile
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    seconds[name] = float(np.median(times))
    print(f"{name:<24} {seconds[name] * 1e3:9.3f} ms  {macs / seconds[name] / 1e9:8.1f} GMAC/s")
first = outputs["reference (NumPy float)"]
assert all((out == first).all() for out in outputs.values())

# %% [markdown]
# ## 6. Fused output stages
# After the popcount the integer accumulator usually goes through a per-channel affine map (a
# folded batch norm and scaling factor): y = acc·scale + bias. The layer can emit y as float32,
# or, for a following binary layer, only its sign as packed bits. `fold_threshold` turns
# "float32(acc)·scale + bias < 0" into an integer compare "sgn·acc < thr" that agrees for every
# reachable acc, including negative and zero scales; an output of exactly 0 counts as +1.

# %%
scale = rng.normal(size=c).astype(np.float32)
scale[:2] = [0.0, -1.0]
bias = rng.normal(size=c).astype(np.float32)
to_float = conv.prepare_conv2d(w_words, c, 1, 1, scale=scale, bias=bias)
to_bits = conv.prepare_conv2d(w_words, c, 1, 1, scale=scale, bias=bias, to_bits=True)
y, y_bits = to_float(x_words), to_bits(x_words)
print("float out", y.shape, y.dtype, "  packed out", y_bits.shape, y_bits.dtype)
assert np.allclose(y, gemm.scale_bias_reference(first, scale, bias), rtol=1e-6, atol=1e-4)
assert (y_bits == bitpack.pack_bits(y)).all()                   # ready for the next layer

# %% [markdown]
# At the full size the fast rung beats the naive one by more than an order of magnitude;
# `minibnn bench kernels` measures it against float32 PyTorch and NumPy convs on the
# CIFAR ResNet-18 and VGG-small layers. (Wall times are printed, never asserted: a busy machine
# would make such an assert flaky.) The last check: the packed bits decode to the float signs.

# %%
print(f"fast (1 thread) vs naive: {seconds['naive njit'] / seconds['fast, 1 thread']:.1f}x")
assert (bitpack.unpack_bits(y_bits, c) == np.where(y < 0, -1.0, 1.0)).all()

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/04_solutions.py` (it runs every check below).
# 1. **Popcount by hand.** Write `dot_from_words(wa, wb, k)` that takes two packed rows (uint64
#    arrays from `bitpack.pack_bits`) and returns a·b using only `^` and a popcount
#    (`bin(int(w)).count("1")`). Check: equal to `a @ b` for K = 1, 63, 64, 65 and 200.
# 2. **Why the tail bits must be zero.** Set one tail bit of a packed K = 70 row to 1 in only
#    one operand and call the unchecked textbook kernel `gemm.xnor_gemm_naive` on it. Check:
#    the result is off by exactly 2 from the float dot product (one extra "differing"
#    position). The public `gemm.xnor_gemm` refuses such input with a ValueError.
# 3. **Count the border classes.** For a 3x3 kernel with padding 1 and stride 1, how many
#    distinct (row class, column class) pairs does a 1x1, a 2x2 and a 9x9 image have? Predict,
#    then check with `conv.border_table` (expected 1, 4 and 9).

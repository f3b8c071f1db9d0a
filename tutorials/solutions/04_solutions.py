"""Solutions to the exercises of tutorial 04 (XNOR, popcount, bit-packing); each ends with its check."""

import numpy as np

from minibnn.engine import bitpack, conv, gemm

rng = np.random.default_rng(0)


def random_pm1(shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


# 1. a.b = K - 2 popcount(a XOR b), word by word.
def dot_from_words(wa: np.ndarray, wb: np.ndarray, k: int) -> int:
    differ = sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(wa, wb))
    return k - 2 * differ


for k in (1, 63, 64, 65, 200):
    a, b = random_pm1(k), random_pm1(k)
    assert dot_from_words(bitpack.pack_bits(a), bitpack.pack_bits(b), k) == a @ b
print("1. dot_from_words equals a @ b for K = 1, 63, 64, 65, 200")

# 2. A stray tail bit counts as one more differing position: the dot product drops by 2.
a, b = random_pm1((1, 70)), random_pm1((1, 70))
wa, wb = bitpack.pack_rows(a), bitpack.pack_rows(b)
wa[0, 1] |= np.uint64(1) << np.uint64(70 - 64)             # first unused bit of word 1
got = gemm.xnor_gemm_naive(wa, wb, 70)[0, 0]            # the unchecked kernel
print(f"2. with a stray tail bit: {got}, float dot: {(a @ b.T)[0, 0]:.0f}")
assert got == (a @ b.T)[0, 0] - 2
try:
    gemm.xnor_gemm(wa, wb, 70)                            # the public entry point checks
    raise AssertionError("xnor_gemm accepted a dirty tail bit")
except ValueError as err:
    print("   xnor_gemm refuses it:", err)

# 3. Border classes of a 3x3 kernel, padding 1, stride 1: a 1x1 image has one pixel (outside
#    taps on all sides), 2x2 has top/bottom x left/right = 4, and from 3x3 on there are
#    top/interior/bottom x left/interior/right = 9.
w = random_pm1((2, 64, 3, 3))
tap_sums = w.sum(axis=1).transpose(1, 2, 0)
counts = {}
for size in (1, 2, 9):
    rows, cols, _ = conv.border_table(tap_sums, 64, size, size, 1, 1)
    counts[size] = len(set(rows.tolist())) * len(set(cols.tolist()))
print("3. border classes per image size:", counts)
assert counts == {1: 1, 2: 4, 9: 9}

"""Solutions to the exercises of tutorial 05 (export and packed inference); each ends with its check."""

import numpy as np

from minibnn.engine import bitpack

rng = np.random.default_rng(0)


# 1. sign(a s + b) with sign(0) = +1 as one integer compare: for s > 0 the output is +1 iff
#    a >= -b/s, i.e. a >= ceil(-b/s); for s < 0 iff a <= floor(-b/s); for s = 0 iff b >= 0.
def positive_from(a: np.ndarray, s: float, b: float) -> np.ndarray:
    if s > 0:
        return a >= np.ceil(-b / s)
    if s < 0:
        return a <= np.floor(-b / s)
    return np.full(a.shape, b >= 0)


k = 27
a = np.arange(-k, k + 1)
for _ in range(200):
    s, b = rng.normal(), rng.normal() * 5
    s = 0.0 if rng.random() < 0.05 else s
    assert np.array_equal(positive_from(a, s, b), a * s + b >= 0)
print("1. integer thresholds agree with the float stage on every reachable accumulator")

# 2. A binary 3x3 conv 64 -> 64: 64*64*9 float32 weights against one uint64 word per (output
#    channel, tap) plus five float32 vectors of 64 (alpha and the four batch-norm vectors).
w = np.where(rng.random((64, 64, 3, 3)) < 0.5, -1.0, 1.0)
packed = bitpack.pack_nhwc(w)
float_bytes = w.size * 4
packed_bytes = packed.nbytes + 5 * 64 * 4
print(f"2. {float_bytes} float32 bytes, {packed.nbytes} + {5 * 64 * 4} packed bytes: "
      f"{float_bytes / packed_bytes:.1f}x")
assert packed.nbytes == 64 * 9 * 8 and round(float_bytes / packed_bytes, 1) == 25.0

"""engine/nibble.py: the avx2 path's 3x3 conv by input-chosen nibble tables.

Oracles: popcount by Python's int.bit_count for the intrinsic (and its plain-Python twin), the
float conv of signs for the whole layer, over block groups (8, 4, 2, 1) and the pixels per
call of each, row chunks that end inside an image and span two, strides, paddings, channel
tails, the largest byte sums, and two threads.
The portable (non-x86) code generation is checked in test_engine_isa.py's generic-target test.
"""

import numba
import numpy as np
import pytest

from minibnn.engine import bitpack, buffers, conv, gemm, nibble

jit_only = pytest.mark.skipif(bool(numba.config.DISABLE_JIT), reason="compiled code only")


def random_pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def test_nibble_table_is_popcount_of_xor():
    t = nibble.nibble_table()
    assert t.shape == (16, 16) and t.dtype == np.uint8
    assert all(t[v, n] == bin(v ^ n).count("1") for v in range(16) for n in range(16))


@pytest.mark.parametrize("m", [1, 32, 40, 96, 300])
def test_nibble_weights_layout(m, rng):
    cw = 2
    w = rng.integers(0, 2 ** 63, (m, 3, 3, cw), dtype=np.uint64)
    wn = nibble.nibble_weights(w)
    assert wn.dtype == np.uint8 and wn.ctypes.data % 64 == 0 and wn.max() < 16
    wbytes = w.view(np.uint8).reshape(m, 3, 3, 8 * cw)
    n_blocks, g0, start = -(-m // 32), 0, 0
    while g0 < n_blocks:                                  # groups of 8, then 4, 2, 1
        size = next(g for g in (8, 4, 2, 1) if g <= n_blocks - g0)
        for word, kh, k, g in [(1, 2, 13, size - 1), (0, 0, 0, 0), (1, 1, 23, 0)]:
            kw, b = divmod(k, 8)
            o = start + (word * 3 + kh) * 24 * 64 * size + 64 * (size * k + g)
            for j in (0, 7, 31):
                ch = 32 * (g0 + g) + j
                byte = int(wbytes[ch, kh, kw, 8 * word + b]) if ch < m else 0
                assert (wn[o + j], wn[o + 32 + j]) == (byte & 15, byte >> 4)
        start += cw * 3 * 24 * 64 * size
        g0 += size
    assert start == wn.size


def test_nibble_weights_refuses_other_kernels():
    with pytest.raises(ValueError, match="needs 3x3 weights, found 1x1"):
        nibble.nibble_weights(np.zeros((4, 1, 1, 1), np.uint64))


@jit_only
@pytest.mark.parametrize("pixels, blocks", [(1, 8), (2, 4), (4, 2), (8, 1), (1, 4), (1, 2),
                                            (1, 1)])
@pytest.mark.parametrize("add", [False, True])
def test_nibsum32_equals_its_twin_and_the_popcounts(pixels, blocks, add, rng):
    @numba.njit
    def run(dst, row, cols, wn, wo, x, xos, xs, a):
        nibble.nibsum32(dst, row, cols, wn, wo, x, xos, xs, a)

    wn = rng.integers(0, 16, 24 * 64 * blocks + 200, dtype=np.uint8)
    wo = 136
    wn[wo:wo + 64] = 15                                   # the byte-count maximum, against x = 0
    x = rng.integers(0, 2 ** 32, (5, 40), dtype=np.uint64).astype(np.uint32)  # 800 bytes
    xb = x.reshape(-1).view(np.uint8)
    xs = 24
    xos = tuple(int(v) for v in rng.integers(0, 800 - 2 * xs - 8, pixels))
    xb[xos[0]] = 0
    cols = tuple(int(c) for c in rng.permutation(blocks) * 32 + 8)
    orig = rng.integers(0, 1000, (pixels + 3, 8 + 32 * blocks + 5)).astype(np.uint32)
    dst, twin = orig.copy(), orig.copy()
    nibble.nibsum32(twin, 2, cols, wn, wo, x, xos, xs, add)          # the plain-Python twin
    run(dst, 2, cols, wn, wo, x, xos, xs, add)
    np.testing.assert_array_equal(dst, twin)
    expected = orig.copy()
    for q, xo in enumerate(xos):
        for g, col in enumerate(cols):
            for j in range(32):
                total = 0
                for k in range(24):
                    o = wo + 64 * (blocks * k + g)
                    wbyte = int(wn[o + j]) | int(wn[o + 32 + j]) << 4
                    total += bin(int(xb[xo + (k // 8) * xs + k % 8]) ^ wbyte).count("1")
                expected[2 + q, col + j] = total + (orig[2 + q, col + j] if add else 0)
    np.testing.assert_array_equal(dst, expected)                     # other entries untouched


@jit_only
@pytest.mark.parametrize("pixels, blocks", [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_nibsum32_largest_byte_sums_widen_unsigned(pixels, blocks):
    """Every term at its maximum (input byte 0, weight byte 0xFF): each lane sums to 24 * 8 =
    192, above 127, so a signed widening of the byte sums would show."""
    @numba.njit
    def run(dst, row, cols, wn, wo, x, xos, xs, a):
        nibble.nibsum32(dst, row, cols, wn, wo, x, xos, xs, a)

    wn = np.full(24 * 64 * blocks, 15, np.uint8)
    x = np.zeros(64, np.uint8)
    dst = np.zeros((pixels, 32 * blocks), np.uint32)
    run(dst, 0, tuple(32 * g for g in range(blocks)), wn, 0, x, (0,) * pixels, 8, False)
    assert (dst == 192).all()


def test_accumulator_blocks_hold_whole_nibble_blocks():
    """_rows9_nibbles writes 32 ceil(M / 32) columns into rows of acc_width(M)."""
    assert all(buffers.acc_width(m) >= 32 * -(-m // 32) for m in range(1, 5000))


@pytest.mark.parametrize("c", [64, 130])
def test_conv_by_nibbles_at_the_largest_popcounts(c):
    """x all +1 against w all -1: every bit differs, the largest counts a layer can give."""
    x, wt = np.ones((2, c, 5, 4), np.float32), -np.ones((40, c, 3, 3), np.float32)
    ref = conv.binary_conv2d_reference(x, wt, 1, 1).transpose(0, 2, 3, 1)
    got = conv.binary_conv2d(bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt), c, 1, 1, isa="avx2")
    np.testing.assert_array_equal(got, ref)


CASES = [  # (N, C, H, W, M, stride, padding): M covers block groups 8 + 4 + 2 + 1, 8 + 2, 4 + 1,
    (3, 64, 5, 4, 480, 1, 1),   # 2, 1; with 12-pixel chunks, 3 rows of 5-row images
    (2, 64, 6, 7, 320, 1, 1),
    (1, 130, 5, 9, 150, 1, 1),
    (2, 200, 7, 6, 64, 2, 1),
    (3, 64, 4, 4, 17, 1, 0),
    (1, 1, 5, 5, 33, 2, 0),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk", [1, 12, 128])
def test_conv_by_nibbles_is_exact(case, chunk, monkeypatch):
    """Every output mode; chunk = output pixels per pass over the weights, in whole output rows
    (at least one), so chunks of several rows end inside an image or span two."""
    monkeypatch.setattr(conv, "NIBBLE_CHUNK_PIXELS", chunk)
    n, c, h, w, m, s, p = case
    rng = np.random.default_rng(sum(case) + chunk)
    x, wt = random_pm1(rng, (n, c, h, w)), random_pm1(rng, (m, c, 3, 3))
    scale, bias = rng.normal(size=m).astype(np.float32), rng.normal(size=m).astype(np.float32)
    ref = conv.binary_conv2d_reference(x, wt, s, p).transpose(0, 2, 3, 1)
    xw, ww = bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt)
    layer = conv.prepare_conv2d(ww, c, s, p, isa="avx2")
    assert layer.wn.size and not layer.wb.size                       # the nibble kernel runs
    np.testing.assert_array_equal(layer(xw), ref)
    np.testing.assert_allclose(conv.binary_conv2d(xw, ww, c, s, p, scale, bias, isa="avx2"),
                               gemm.scale_bias_reference(ref, scale, bias), rtol=1e-6,
                               atol=1e-4)
    np.testing.assert_array_equal(
        conv.binary_conv2d(xw, ww, c, s, p, scale, bias, True, isa="avx2"),
        gemm.threshold_reference(ref, scale, bias))


@jit_only
def test_conv_by_nibbles_on_threads_is_exact(monkeypatch):
    """The parallel driver: one contiguous range of rows per thread, each with its own scratch
    block, in chunks of 2 rows (22 pixels) that span images (27 rows: 13 + 14)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    monkeypatch.setattr(gemm, "PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(conv, "NIBBLE_CHUNK_PIXELS", 30)
    rng = np.random.default_rng(7)
    x, wt = random_pm1(rng, (3, 130, 9, 11)), random_pm1(rng, (96, 130, 3, 3))
    ref = conv.binary_conv2d_reference(x, wt, 1, 1).transpose(0, 2, 3, 1)
    numba.set_num_threads(2)
    try:
        got = conv.binary_conv2d(bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt), 130, 1, 1,
                                 isa="avx2")
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(got, ref)

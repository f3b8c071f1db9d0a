"""engine/gemm.py, conv.py, pack.py: packed kernel == NumPy twin == float math, exactly; errors."""

import os
import platform
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from minibnn.engine import bitpack, conv, gemm, pack, row9


def random_pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------ GEMM / linear

@pytest.mark.parametrize("k", [1, 63, 64, 65, 200])
@pytest.mark.parametrize("seed", range(2))
def test_xnor_gemm_equals_float_matmul(k, seed):
    rng = np.random.default_rng(seed)
    a, b = random_pm1(rng, (7, k)), random_pm1(rng, (5, k))       # 7 rows: a 4-block + 3 rest
    got = gemm.xnor_gemm(bitpack.pack_rows(a), bitpack.pack_rows(b), k)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, gemm.xnor_gemm_reference(a, b))   # jitted == twin
    np.testing.assert_array_equal(got, a @ b.T)                             # == float math
    np.testing.assert_array_equal(gemm.xnor_gemm_naive(bitpack.pack_rows(a),
                                                          bitpack.pack_rows(b), k), got)


def test_binary_linear_fused_stages(rng):
    k, m = 130, 70                                               # 70 outputs: 2 packed words
    x, w = random_pm1(rng, (9, k)), random_pm1(rng, (m, k))
    scale = rng.normal(size=m).astype(np.float32)
    scale[:3] = [0.0, -1.5, 2.0]
    bias = rng.normal(size=m).astype(np.float32)
    xw, ww = bitpack.pack_rows(x), bitpack.pack_rows(w)
    y = gemm.binary_linear(xw, ww, k, scale, bias)
    np.testing.assert_allclose(y, (x @ w.T) * scale + bias, rtol=1e-6, atol=1e-5)
    bits = gemm.binary_linear(xw, ww, k, scale, bias, to_bits=True)
    np.testing.assert_array_equal(bits, gemm.binary_linear_reference(x, w, scale, bias, True))
    np.testing.assert_array_equal(bits, bitpack.pack_bits(gemm.binary_linear_reference(
        x, w, scale, bias)))


# ------------------------------------------------------------------------------ conv

CONV_CASES = [  # (N, H, W, M, k, stride, padding): odd/even sizes, 3x3 and 1x1, both paddings;
    (1, 5, 4, 3, 3, 1, 1),   # OW = 4, 6, 9: 3x3 rows in tiles of 4 pixels, with and without
    (3, 7, 6, 5, 3, 2, 1),   # leftover pixels; OW = 3: leftovers only
    (3, 6, 5, 4, 3, 1, 0),
    (1, 5, 13, 6, 3, 2, 0),
    (1, 6, 9, 17, 3, 1, 1),
    (3, 4, 5, 70, 1, 1, 0),
    (1, 5, 6, 3, 1, 2, 1),
    (2, 6, 7, 32, 3, 1, 1),  # M a multiple of 16: the 3x3 row kernel writes the int32 output
    (1, 7, 6, 16, 3, 2, 1),  # itself (over one word, or after summing several)
]


@pytest.mark.parametrize("c", [1, 3, 63, 64, 65, 130])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda t: "N{}H{}W{}M{}k{}s{}p{}".format(*t))
def test_binary_conv2d_equals_float_conv(c, case, rng):
    n, h, w, m, k, stride, padding = case
    x, wt = random_pm1(rng, (n, c, h, w)), random_pm1(rng, (m, c, k, k))
    ref = conv.binary_conv2d_reference(x, wt, stride, padding).transpose(0, 2, 3, 1)
    xw, ww = bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt)
    got = conv.binary_conv2d(xw, ww, c, stride, padding)
    assert got.dtype == np.int32 and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(conv.binary_conv2d_naive(xw, ww, c, stride, padding), ref)


def test_reference_conv_is_a_plain_float_conv():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) % 7 - 3
    w = np.arange(4 * 3 * 3 * 3, dtype=np.float64).reshape(4, 3, 3, 3) % 5 - 2
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    loops = np.zeros((2, 4, 2, 3))
    for oh in range(2):
        for ow in range(3):
            patch = xp[:, :, 2 * oh:2 * oh + 3, 2 * ow:2 * ow + 3]
            loops[:, :, oh, ow] = np.einsum("nchw,mchw->nm", patch, w)
    np.testing.assert_array_equal(conv.binary_conv2d_reference(x, w, 2, 1), loops)


@pytest.mark.parametrize("c", [1, 65, 130])
@pytest.mark.parametrize("stride,padding,h,w", [(1, 1, 5, 6), (2, 1, 7, 9), (1, 0, 6, 7)])
def test_3x3_conv_with_weights_beyond_l1_takes_the_tiled_path_exactly(c, stride, padding, h, w, rng):
    """M = 480 puts the packed 3x3 weights above ROW9_MAX_WEIGHT_BYTES even at one word, so
    the avx512 path runs the 4-pixel tiles (and their leftovers) instead of the register-summed
    rows (the other paths have 3x3 kernels for every size)."""
    m = 480
    assert 9 * 2 * -(-c // 64) * m * 4 > row9.ROW9_MAX_WEIGHT_BYTES
    x, wt = random_pm1(rng, (2, c, h, w)), random_pm1(rng, (m, c, 3, 3))
    ref = conv.binary_conv2d_reference(x, wt, stride, padding).transpose(0, 2, 3, 1)
    got = conv.binary_conv2d(bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt), c, stride, padding,
                             isa="avx512")
    np.testing.assert_array_equal(got, ref)


def test_border_correction_matters():
    # All -1 input and weights: interior pixels see 9*C, corners only 4*C. With pad bit +1 and no
    # correction the corner would be 4*C - 5*C; the table must bring it back to 4*C.
    c = 64
    x, w = -np.ones((1, c, 3, 3)), -np.ones((1, c, 3, 3))
    got = conv.binary_conv2d(bitpack.pack_nhwc(x), bitpack.pack_nhwc(w), c, 1, 1)
    np.testing.assert_array_equal(got[0, :, :, 0], [[4 * c, 6 * c, 4 * c],
                                                    [6 * c, 9 * c, 6 * c],
                                                    [4 * c, 6 * c, 4 * c]])


def test_prepared_layer_is_reusable_across_input_sizes(rng):
    c, m = 65, 8
    wt = random_pm1(rng, (m, c, 3, 3))
    layer = conv.prepare_conv2d(bitpack.pack_nhwc(wt), c, stride=1, padding=1)
    for h, w in [(4, 4), (7, 5), (4, 4)]:
        x = random_pm1(rng, (2, c, h, w))
        ref = conv.binary_conv2d_reference(x, wt, 1, 1).transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(layer(bitpack.pack_nhwc(x)), ref)


# ------------------------------------------------------------------------------ output stages

def stage_params(rng, m, acc_values):
    """Scales with zeros and negatives; biases that hit exact zero outputs."""
    scale = rng.choice([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0], size=m).astype(np.float32)
    bias = (-scale * rng.choice(acc_values, size=m)).astype(np.float32)  # y == 0 for some acc
    bias[::3] = rng.normal(size=len(bias[::3]))
    return scale, bias


@pytest.mark.parametrize("m", [70, 64])
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_conv_fused_scale_bias_and_threshold(stride, padding, m, rng):
    n, c, h, w = 3, 65, 6, 5
    x, wt = random_pm1(rng, (n, c, h, w)), random_pm1(rng, (m, c, 3, 3))
    acc = conv.binary_conv2d_reference(x, wt, stride, padding).transpose(0, 2, 3, 1)
    scale, bias = stage_params(rng, m, acc.ravel())
    xw, ww = bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt)
    y = conv.binary_conv2d(xw, ww, c, stride, padding, scale=scale, bias=bias)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, acc * scale.astype(np.float64) + bias, rtol=1e-6, atol=1e-4)
    bits = conv.binary_conv2d(xw, ww, c, stride, padding, scale, bias, to_bits=True)
    y_ref = gemm.scale_bias_reference(acc, scale, bias)
    assert np.any(y_ref == 0)                                    # exact zeros are exercised
    np.testing.assert_array_equal(bits, bitpack.pack_bits(y_ref))   # y == 0 -> +1 (bit 0)
    np.testing.assert_array_equal(bits, gemm.threshold_reference(acc, scale, bias))


def test_fold_threshold_agrees_with_float_for_every_accumulator(rng):
    k = 300
    scale = np.array([1.0, -1.0, 0.0, 0.0, 0.1, -0.3, 1e-8, -7.0, np.nan], np.float32)
    bias = np.array([-3.0, 5.0, -1.0, 0.0, 0.2, -0.6, 0.0, 0.0, 1.0], np.float32)
    sgn, thr = gemm.fold_threshold(scale, bias, k)
    acc = np.arange(-k, k + 1)[:, None]                          # every reachable value
    want = (acc.astype(np.float32) * scale + bias) < 0
    np.testing.assert_array_equal(sgn * acc < thr, want)


# ------------------------------------------------------------------------------ packing kernel

@pytest.mark.parametrize("c", [1, 3, 63, 64, 65, 130])
def test_pack_signs_matches_bitpack(c, rng):
    x = rng.normal(size=(2, c, 3, 5)).astype(np.float32)
    x.flat[::7] = 0.0
    x.flat[::11] = -0.0
    np.testing.assert_array_equal(pack.pack_signs(x, "NCHW"), bitpack.pack_nhwc(x))
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(pack.pack_signs(nhwc), bitpack.pack_bits(nhwc))
    np.testing.assert_array_equal(pack.pack_signs_reference(nhwc), bitpack.pack_bits(nhwc))


@pytest.mark.parametrize("c", [1, 33, 64, 65, 130])
def test_pack_kernels_write_every_output_word(c, rng):
    """pack_signs hands them uninitialised output: every word, tail bits included, must be
    written. Here the output starts with every bit set."""
    x = rng.normal(size=(2, c, 3, 5)).astype(np.float32)
    want = bitpack.pack_nhwc(x)
    out = np.full(want.shape, np.iinfo(np.uint64).max, np.uint64)
    pack._pack_nchw(x, out.view(np.uint32))
    np.testing.assert_array_equal(out, want)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(-1, c)
    out = np.full((nhwc.shape[0], want.shape[-1]), np.iinfo(np.uint64).max, np.uint64)
    pack._pack_rows_nhwc(nhwc, out)
    np.testing.assert_array_equal(out, want.reshape(-1, want.shape[-1]))


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int8, np.int64, np.bool_])
def test_pack_signs_takes_any_real_dtype(dtype, rng):
    x = (rng.normal(size=(2, 3, 5, 70)) * 3).astype(dtype)        # 70: one vector word + tail
    np.testing.assert_array_equal(pack.pack_signs(x), pack.pack_signs_reference(x))
    nchw = x.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(pack.pack_signs(nchw, "NCHW"),
                                  pack.pack_signs_reference(x))
    with pytest.raises(ValueError, match="real numbers.*complex"):
        pack.pack_signs(x.astype(np.complex64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_neg_bits64_equals_the_plain_compare_loop(dtype, rng):
    a = (rng.normal(size=200) * 3).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        a[::5], a[1::7], a[2::9] = 0.0, -0.0, np.nan               # 0, -0.0, NaN are not < 0
    else:
        a[::5] = 0

    @numba.njit
    def words(a, start, count):
        return pack.neg_bits64(a, start, count)

    for start, count in [(0, 64), (3, 64), (0, 1), (17, 15), (100, 16), (136, 64), (7, 33)]:
        want = sum(1 << b for b in range(count) if a[start + b] < 0)
        assert int(words(a, start, count)) == want, (start, count)
        if count >= 16:
            assert int(pack.neg_mask16(a, start)) == want & 0xFFFF    # the Python twin


def test_weights_and_outputs_start_on_cache_lines(rng):
    """Misaligned 512-bit loads split across cache lines (measured 8-20% slower)."""
    for shape, dtype in [((3, 5, 7), np.uint32), ((0,), np.float32), ((2, 9), np.uint64)]:
        a = gemm.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.size == 0 or a.ctypes.data % 64 == 0          # an empty view has no data
    w = random_pm1(rng, (24, 70, 3, 3))
    for path in ("avx512", "avx2", "generic"):          # row9 weights, or nibbles on avx2
        layer = conv.prepare_conv2d(bitpack.pack_nhwc(w), 70, 1, 1, isa=path)
        out = layer(bitpack.pack_nhwc(random_pm1(rng, (1, 70, 4, 5))))
        for a in (layer.wt, layer.wn if path == "avx2" else layer.wb, out):
            assert a.ctypes.data % 64 == 0
    lin = gemm.prepare_linear(bitpack.pack_rows(random_pm1(rng, (5, 70))), 70)
    assert lin.wt.ctypes.data % 64 == 0


def test_row9_weights_layout(rng):
    wt = rng.integers(0, 2**32, size=(9, 6, 37), dtype=np.uint32)      # 3 words, M = 37
    wb = row9.row9_weights(wt)
    assert wb.shape == (3, 3, 18, 16)
    for word, mb, tap, half, j in [(0, 0, 0, 0, 0), (2, 2, 8, 1, 4), (1, 1, 4, 0, 15)]:
        assert wb[word, mb, 2 * tap + half, j] == wt[tap, 2 * word + half, 16 * mb + j]
    assert not wb[:, 2, :, 5:].any()                                  # lanes past M are 0


# ------------------------------------------------------------------------------ errors

def test_bad_inputs_raise_value_errors_naming_expected_and_found(rng):
    c = 65
    ww = bitpack.pack_nhwc(random_pm1(rng, (4, c, 3, 3)))          # (4, 3, 3, 2)
    xw = bitpack.pack_nhwc(random_pm1(rng, (1, c, 5, 5)))           # (1, 5, 5, 2)
    with pytest.raises(ValueError, match="uint64.*found int64"):
        conv.binary_conv2d(xw.astype(np.int64), ww, c)
    with pytest.raises(ValueError, match="4 dimensions.*found shape"):
        conv.binary_conv2d(xw[0], ww, c)
    with pytest.raises(ValueError, match="65 channels need 2 words.*found 1"):
        conv.binary_conv2d(xw[..., :1], ww, c)
    with pytest.raises(ValueError, match="130 channels need 3 words.*found 2"):
        conv.binary_conv2d(xw, ww, 130)
    with pytest.raises(ValueError, match=r"expected \(4,\), found \(3,\)"):
        conv.binary_conv2d(xw, ww, c, scale=np.ones(3))
    bad = ww.copy()
    bad[0, 0, 0, -1] |= np.uint64(1) << np.uint64(63)              # a bit past channel 65
    with pytest.raises(ValueError, match="past channel 65 must be 0"):
        conv.binary_conv2d(xw, bad, c)
    with pytest.raises(ValueError, match="smaller than"):
        conv.binary_conv2d(xw[:, :2, :2], ww, c)
    with pytest.raises(ValueError, match="needs scale"):
        gemm.binary_linear(xw[:, 0], ww[:, 0, 0], c, to_bits=True)
    with pytest.raises(ValueError, match="uint64"):
        gemm.xnor_gemm(np.zeros((2, 2)), np.zeros((2, 2), np.uint64), 100)


# ------------------------------------------------------------------------------ debuggability

def test_kernels_run_as_plain_python_with_numba_disabled():
    script = textwrap.dedent("""
        import numpy as np
        from minibnn.engine import bitpack, conv, gemm, pack
        rng = np.random.default_rng(0)
        x = np.where(rng.random((2, 65, 4, 3)) < .5, -1.0, 1.0)
        w = np.where(rng.random((5, 65, 3, 3)) < .5, -1.0, 1.0)
        ref = conv.binary_conv2d_reference(x, w, 1, 1).transpose(0, 2, 3, 1)
        for path in ("avx512", "avx2", "generic"):      # every 3x3 row kernel's Python form
            got = conv.binary_conv2d(bitpack.pack_nhwc(x), bitpack.pack_nhwc(w), 65, 1, 1,
                                     isa=path)
            assert (got == ref).all(), path
        w16 = np.where(rng.random((16, 65, 3, 3)) < .5, -1.0, 1.0)   # M = 16: direct int output
        xw, ww = bitpack.pack_nhwc(x), bitpack.pack_nhwc(w16)
        ref = conv.binary_conv2d_reference(x, w16, 1, 1).transpose(0, 2, 3, 1)
        assert (conv.binary_conv2d(xw, ww, 65, 1, 1) == ref).all()
        scale, bias = rng.normal(size=16).astype(np.float32), rng.normal(size=16).astype(np.float32)
        bits = conv.binary_conv2d(xw, ww, 65, 1, 1, scale, bias, to_bits=True)
        assert (bits == gemm.threshold_reference(ref, scale, bias)).all()
        a, b = x.reshape(6, -1), w.reshape(9, -1)                 # (6, 130), (9, 65)
        a, b = a[:, :65], b[:, :65]
        assert (gemm.xnor_gemm(bitpack.pack_rows(a), bitpack.pack_rows(b), 65) == a @ b.T).all()
        assert not hasattr(conv._conv_serial, "py_func")   # really plain Python
        print("ok")
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 mnemonics")
@pytest.mark.skipif(bool(numba.config.DISABLE_JIT), reason="inspects compiled code")
def test_inner_kernel_uses_a_hardware_popcount():
    fresh = numba.njit(gemm._accumulate1.py_func)             # uncached, so the asm is kept
    acc, x = np.zeros((1, 64), np.uint32), np.array([[3, 0]], np.uint32)
    w = np.ones((1, 2, 64), np.uint32)
    fresh(acc, 0, x, 0, 0, w, 0)                                # popcount(3^1) + popcount(0^1)
    assert (acc == 2).all()
    asm = fresh.inspect_asm(fresh.signatures[0])
    assert "popcnt" in asm                                       # vpopcntd on AVX-512 machines

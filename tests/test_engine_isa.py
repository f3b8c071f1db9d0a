"""engine/isa.py and engine/peak.py: path selection, the byte popcount, and exactness of the
packed kernels under every ISA path (all paths run on any CPU: they differ in speed only)."""

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from minibnn.bench import machine
from minibnn.engine import bitpack, conv, gemm, isa, pack
from minibnn.engine.peak import measure_peak

jit_only = pytest.mark.skipif(bool(numba.config.DISABLE_JIT), reason="compiled code only")


def random_pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------ selection

@pytest.mark.parametrize("triple, features, expected", [
    ("x86_64-unknown-linux-gnu", {"avx2", "avx512f", "avx512vpopcntdq"}, "avx512"),
    ("x86_64-unknown-linux-gnu", {"avx2", "avx512f", "avx512bw"}, "avx2"),   # Skylake-X
    ("x86_64-unknown-linux-gnu", {"avx2", "fma"}, "avx2"),
    ("x86_64-unknown-linux-gnu", {"sse4.2", "avx"}, "generic"),
    ("aarch64-unknown-linux-gnu", {"neon", "avx2"}, "generic"),
    ("arm64-apple-darwin22.0.0", {"neon"}, "generic"),
])
def test_isa_of_target(triple, features, expected):
    assert isa.isa_of(triple, features) == expected


def test_isa_path_is_one_of_the_paths_and_exposed():
    from minibnn import engine
    assert engine.isa_path() == isa.isa_path() in isa.ISA_PATHS
    assert isa.detected_isa() in isa.ISA_PATHS and isa.host_isa() in isa.ISA_PATHS


def test_minibnn_isa_overrides_and_rejects_bad_values(monkeypatch):
    try:
        monkeypatch.setenv("MINIBNN_ISA", "generic")
        isa.isa_path.cache_clear()
        assert isa.isa_path() == "generic"
        assert isa.popcount_method() == isa.POPCOUNT_BYTES
        monkeypatch.setenv("MINIBNN_ISA", "neon")
        isa.isa_path.cache_clear()
        with pytest.raises(ValueError, match="MINIBNN_ISA must be one of avx512, avx2, generic, "
                                             "found 'neon'"):
            isa.isa_path()
    finally:
        monkeypatch.delenv("MINIBNN_ISA")
        isa.isa_path.cache_clear()
    with pytest.raises(ValueError, match="isa must be one of"):
        conv.prepare_conv2d(np.zeros((1, 3, 3, 1), np.uint64), 1, isa="sse")


def test_lesser_isa_warnings_name_the_variable(monkeypatch):
    monkeypatch.setattr(isa, "host_isa", lambda: "avx512")
    monkeypatch.setattr(isa, "detected_isa", lambda: "avx2")
    monkeypatch.setattr(isa, "isa_path", lambda: "generic")
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    monkeypatch.setenv("MINIBNN_ISA", "generic")
    notes = isa.lesser_isa_warnings()
    assert len(notes) == 2
    assert "NUMBA_CPU_NAME=haswell" in notes[0] and "avx512" in notes[0]
    assert "MINIBNN_ISA=generic" in notes[1]


def test_blas_warning_only_for_a_forced_lesser_core():
    assert machine.blas_warning("Haswell", "avx512", "Haswell") is not None
    assert machine.blas_warning("Haswell", "avx512", None) is None          # not forced
    assert machine.blas_warning("SkylakeX", "avx512", "SkylakeX") is None
    assert machine.blas_warning("Haswell", "avx2", "Haswell") is None
    assert "Sandybridge" in machine.blas_warning("Sandybridge", "avx2", "Sandybridge")


def test_machine_report_names_cpu_isa_and_blas():
    lines = machine.machine_report(1)
    assert lines[0].startswith("CPU: ") and "LLVM host CPU" in lines[0]
    assert f"ISA path {isa.isa_path()}" in lines[1]
    assert lines[2].startswith("NumPy BLAS: ")


# ------------------------------------------------------------------------------ popsum16

@pytest.mark.parametrize("terms", [1, 2, 6, 18, 31])
@pytest.mark.parametrize("add", [False, True])
def test_popsum16_equals_its_twin(terms, add, rng):
    @numba.njit
    def run(dst, at, w, offs, xs, a):
        isa.popsum16(dst, at, w, offs, xs, a)

    w = rng.integers(0, 2 ** 32, 600, dtype=np.uint64).astype(np.uint32)
    w[:16] = 0xFFFFFFFF                                         # the byte-count maximum
    offs = tuple(int(o) for o in rng.integers(0, 600 - 16, terms))
    offs = (0,) + offs[1:]
    xs = tuple(np.uint32(v) for v in rng.integers(0, 2 ** 32, terms, dtype=np.uint64))
    xs = (np.uint32(0),) + xs[1:]
    orig = rng.integers(0, 1000, (3, 40)).astype(np.uint32)
    dst, twin = orig.copy(), orig.copy()
    isa.popsum16(twin, (2, 20), w, offs, xs, add)                 # the plain-Python twin
    run(dst, (2, 20), w, offs, xs, add)
    np.testing.assert_array_equal(dst, twin)
    counts = sum(np.array([bin(int(w[o + j]) ^ int(x)).count("1") for j in range(16)])
                 for o, x in zip(offs, xs))
    expected = orig.copy()
    expected[2, 20:36] = counts + (orig[2, 20:36] if add else 0)
    np.testing.assert_array_equal(dst, expected)                 # other entries untouched


@pytest.mark.parametrize("terms", [1, 5, 18, 31])
@pytest.mark.parametrize("add", [False, True])
def test_popsum16_out_equals_its_twin(terms, add, rng):
    @numba.njit
    def run(out, at, w, offs, xs, a, acc, base, bo):
        isa.popsum16_out(out, at, w, offs, xs, a, acc, base, bo)

    w = rng.integers(0, 2 ** 32, 600, dtype=np.uint64).astype(np.uint32)
    w[:16] = 0xFFFFFFFF                                         # the byte-count maximum
    offs = (0,) + tuple(int(o) for o in rng.integers(0, 600 - 16, terms))[1:]
    xs = (np.uint32(0),) + tuple(np.uint32(v) for v in
                                 rng.integers(0, 2 ** 32, terms, dtype=np.uint64))[1:]
    acc = rng.integers(0, 1000, (3, 40)).astype(np.uint32)
    base = rng.integers(-5000, 5000, 50).astype(np.int32)
    orig = rng.integers(-1000, 1000, (3, 40)).astype(np.int32)
    out, twin = orig.copy(), orig.copy()
    isa.popsum16_out(twin, (1, 16), w, offs, xs, add, acc, base, 7)   # the plain-Python twin
    run(out, (1, 16), w, offs, xs, add, acc, base, 7)
    np.testing.assert_array_equal(out, twin)
    counts = sum(np.array([bin(int(w[o + j]) ^ int(x)).count("1") for j in range(16)])
                 for o, x in zip(offs, xs))
    expected = orig.copy()
    expected[1, 16:32] = base[7:23] - 2 * (counts + (acc[1, 16:32] if add else 0))
    np.testing.assert_array_equal(out, expected)                 # other entries untouched


# ------------------------------------------------------------------------------ every path exact

CONV_CASES = [  # (N, C, H, W, M, k, stride, padding)
    (2, 64, 6, 7, 32, 3, 1, 1),     # one word, M % 16 == 0: the row kernels write int32
    (1, 130, 5, 9, 17, 3, 1, 1),    # three words with a tail, M padded to 32 lanes
    (1, 256, 4, 5, 80, 3, 2, 1),    # weights beyond L1 on the avx512 path (tiled kernel)
    (2, 70, 5, 6, 20, 1, 1, 0),     # 1x1: the general microkernels
    (1, 65, 7, 7, 9, 5, 2, 2),      # 5x5
    (1, 64, 9, 9, 64, 3, 1, 0),     # no padding
]


@pytest.mark.parametrize("path", isa.ISA_PATHS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_exact_under_every_path(path, case):
    n, c, h, w, m, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x, wt = random_pm1(rng, (n, c, h, w)), random_pm1(rng, (m, c, k, k))
    scale, bias = rng.normal(size=m).astype(np.float32), rng.normal(size=m).astype(np.float32)
    ref = conv.binary_conv2d_reference(x, wt, s, p).transpose(0, 2, 3, 1)
    xw, ww = bitpack.pack_nhwc(x), bitpack.pack_nhwc(wt)
    layer = conv.prepare_conv2d(ww, c, s, p, isa=path)
    assert layer.isa == path
    np.testing.assert_array_equal(layer(xw), ref)
    np.testing.assert_allclose(conv.binary_conv2d(xw, ww, c, s, p, scale, bias, isa=path),
                               gemm.scale_bias_reference(ref, scale, bias), rtol=1e-6,
                               atol=1e-4)
    np.testing.assert_array_equal(
        conv.binary_conv2d(xw, ww, c, s, p, scale, bias, True, isa=path),
        gemm.threshold_reference(ref, scale, bias))


@pytest.mark.parametrize("path", isa.ISA_PATHS)
@pytest.mark.parametrize("b, k, m", [(7, 65, 5), (33, 640, 70), (2000, 512, 64)])
def test_linear_exact_under_every_path(path, b, k, m):
    rng = np.random.default_rng(b + k + m)                  # 2000 x 512 x 64: the threaded GEMM
    x, w = random_pm1(rng, (b, k)), random_pm1(rng, (m, k))
    got = gemm.binary_linear(bitpack.pack_rows(x), bitpack.pack_rows(w), k, isa=path)
    np.testing.assert_array_equal(got, gemm.xnor_gemm_reference(x, w))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_neg_mask16_vector_and_loop_agree(dtype, rng):
    a = rng.normal(size=64 * 5).astype(np.float64) * 3
    a[::7] = 0.0
    a[3::11] = -0.0
    if np.dtype(dtype).kind == "f":
        a[5::13] = np.nan
    a = a.astype(dtype)

    @numba.njit
    def both(a):
        out = np.zeros((2, a.size // 16), np.uint32)
        for i in range(0, a.size, 16):
            out[0, i // 16] = pack.neg_mask16(a, i)
            out[1, i // 16] = pack._neg_mask16_loop(a, i)
        return out

    got = both(a)
    expected = [sum(1 << b for b in range(16) if a[i + b] < 0) for i in range(0, a.size, 16)]
    assert got[0].tolist() == expected and got[1].tolist() == expected


@jit_only
def test_generic_target_compiles_and_is_exact():
    """The path an ARM64 machine runs, forced on this one: a generic CPU target (no AVX2), so
    neg_mask16 takes its loop and the kernels the byte popcount, compiled from scratch; the
    avx2 path's nibble kernel, forced, runs its portable form (XOR and llvm.ctpop on bytes)."""
    script = textwrap.dedent("""
        import numpy as np
        from minibnn.engine import bitpack, conv, gemm, isa, pack, stage
        assert isa.isa_path() == "generic" and not isa.vector_compare_target(), isa.target_cpu()
        rng = np.random.default_rng(0)
        x = np.where(rng.random((2, 130, 6, 7)) < 0.5, -1.0, 1.0).astype(np.float32)
        w = np.where(rng.random((300, 130, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
        s, b = rng.normal(size=300).astype(np.float32), rng.normal(size=300).astype(np.float32)
        ref = conv.binary_conv2d_reference(x, w, 1, 1).transpose(0, 2, 3, 1)
        xw, ww = pack.pack_signs(x, "NCHW"), bitpack.pack_nhwc(w)
        assert (xw == bitpack.pack_nhwc(x)).all()
        assert (conv.binary_conv2d(xw, ww, 130, 1, 1) == ref).all()
        assert (conv.binary_conv2d(xw, ww, 130, 1, 1, isa="avx2") == ref).all()
        bits = conv.binary_conv2d(xw, ww, 130, 1, 1, s, b, to_bits=True)
        assert (bits == gemm.threshold_reference(ref, s, b)).all()
        v = [rng.normal(size=300).astype(np.float32) for _ in range(5)]
        v[2] = np.abs(v[2]) + np.float32(0.1)
        acc = ref.astype(np.int32)
        got = stage.stage(acc, 1, *v, want_bits=True)
        exp = stage.stage_reference(acc, 1, *v)
        assert np.array_equal(got[0], exp[0]) and np.array_equal(got[1], exp[1])
        print("ok")
    """)
    env = dict(os.environ, NUMBA_CPU_NAME="generic")
    env.pop("NUMBA_CPU_FEATURES", None)
    env.pop("MINIBNN_ISA", None)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("ok")


# ------------------------------------------------------------------------------ measured peak

@jit_only
@pytest.mark.parametrize("path", isa.ISA_PATHS)
def test_measure_peak_is_a_positive_rate(path):
    peak = measure_peak(path, threads=1, seconds=0.01, trials=2)
    assert np.isfinite(peak) and peak > 1e8        # > 0.1 G binary MAC/s on any working CPU


@jit_only
def test_bench_kernels_reports_machine_isa_and_measured_peak(capsys):
    from minibnn.cli import main
    assert main(["bench", "kernels", "--quick", "--batch", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and f"ISA path {isa.isa_path()}" in out
    assert "OpenBLAS core type" in out and "binary peak measured: " in out
    assert "% of it" in out and "VALIDATION FAILED" not in out

"""Training kernels (functional/training_kernels.py): each Numba kernel against its NumPy
twin, the conv's chunking against a single chunk, batch norm's channels-last path against its
NCHW path, and the whole conv + batch norm under NUMBA_DISABLE_JIT=1 against the compiled run."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F
from minibnn.functional import conv, training_kernels as kernels

GEOMETRIES = [  # (C, H, W, k, stride, padding)
    (1, 5, 4, (3, 3), (1, 1), (1, 1)),
    (3, 7, 6, (3, 3), (2, 2), (1, 1)),
    (5, 6, 7, (3, 3), (1, 1), (0, 0)),
    (4, 5, 5, (1, 1), (2, 2), (0, 0)),
    (2, 6, 5, (3, 2), (2, 1), (1, 0)),
]


def _out(h, w, k, s, p):
    return (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_kernel_equals_its_numpy_twin_exactly(geometry, dtype):
    c, h, w, k, s, p = geometry
    x = np.random.default_rng(0).normal(size=(3, h, w, c)).astype(dtype)
    out = _out(h, w, k, s, p)
    assert np.array_equal(kernels.im2col(x, k, s, p, out), kernels.im2col_reference(x, k, s, p, out))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_kernel_equals_its_numpy_twin(geometry):
    c, h, w, k, s, p = geometry
    out = _out(h, w, k, s, p)
    rng = np.random.default_rng(1)
    dcols = rng.integers(-8, 8, size=(3 * out[0] * out[1], k[0] * k[1] * c)).astype(np.float64)
    start = rng.normal(size=(3, h, w, c))                     # col2im adds onto what is there
    got, ref = start.copy(), start.copy()
    kernels.col2im(dcols, got, k, s, p, out)
    kernels.col2im_reference(dcols, ref, k, s, p, out)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), g> == <x, col2im(g)> for any x and g: the definition of an adjoint."""
    c, h, w, k, s, p = 3, 7, 6, (3, 3), (2, 2), (1, 1)
    out = _out(h, w, k, s, p)
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(2, h, w, c)), rng.normal(size=(2 * out[0] * out[1], 9 * c))
    back = np.zeros_like(x)
    kernels.col2im(g, back, k, s, p, out)
    assert np.isclose(np.sum(kernels.im2col(x, k, s, p, out) * g), np.sum(x * back))


def test_im2col_rejects_a_buffer_of_the_wrong_shape():
    x = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"buffer must be \(32, 27\) float32"):
        kernels.im2col(x, (3, 3), (1, 1), (1, 1), (4, 4), np.empty((31, 27), np.float32))


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_to_channels_last_equals_numpy_transpose(layout):
    x = np.random.default_rng(3).normal(size=(2, 5, 3, 8)).astype(np.float32)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "strided":
        x = x[:, ::2, :, ::2]                                       # no contiguous layout at all
    got = kernels.to_channels_last(x)
    assert got.flags.c_contiguous and np.array_equal(got, x.transpose(0, 2, 3, 1))


def test_batch_norm_row_kernels_equal_their_numpy_twins():
    rng = np.random.default_rng(4)
    x2 = (rng.normal(size=(300, 7)) * 3 + 5).astype(np.float32)
    dy2 = rng.normal(size=(300, 7)).astype(np.float32)
    m, v = kernels.channel_stats(x2)
    m_ref, v_ref = kernels.channel_stats_reference(x2)
    np.testing.assert_allclose(m, m_ref, rtol=1e-6)
    np.testing.assert_allclose(v, v_ref, rtol=1e-6)
    mean, inv_std = m.astype(np.float32), (1 / np.sqrt(v + 1e-5)).astype(np.float32)
    gamma, beta = rng.normal(size=7).astype(np.float32), rng.normal(size=7).astype(np.float32)
    np.testing.assert_allclose(kernels.normalize_rows(x2, mean, inv_std, gamma, beta),
                               kernels.normalize_rows_reference(x2, mean, inv_std, gamma, beta),
                               rtol=1e-6, atol=1e-6)
    got = kernels.bn_backward_rows(dy2, x2, mean, inv_std, gamma * inv_std)
    ref = kernels.bn_backward_rows_reference(dy2, x2, mean, inv_std, gamma * inv_std)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _batch_norm_run(data, g, b, training):
    """Output, gradients and updated running statistics of one batch norm step."""
    t = Tensor(data, requires_grad=True)
    gamma = None if g is None else Tensor(g, requires_grad=True)
    beta = None if b is None else Tensor(b, requires_grad=True)
    mean, var = np.full(data.shape[1], 0.5), np.full(data.shape[1], 2.0)
    y = F.batch_norm(t, mean, var, gamma, beta, training=training)
    (y * Tensor(np.arange(y.data.size, dtype=np.float64).reshape(y.shape) % 7)).sum().backward()
    grads = [p.grad for p in (gamma, beta) if p is not None]
    return [y.data, t.grad, *grads, mean, var]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(4, 6, 5, 3), (5, 6, 7), (9, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_channels_last_and_nchw_memory_agree(training, shape, affine):
    """The same values in the two memory layouts take the two code paths; they must agree."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape) * 2 + 1
    g, b = (rng.normal(size=6), rng.normal(size=6)) if affine else (None, None)
    channels_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    strided = np.repeat(x, 2, axis=0)[::2]                          # neither layout
    results = [_batch_norm_run(data, g, b, training)
               for data in (np.ascontiguousarray(x), np.moveaxis(channels_last, -1, 1), strided)]
    assert np.moveaxis(results[1][0], 1, -1).flags.c_contiguous     # really channels-last
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)


def test_float16_takes_the_numpy_twins_and_matches_float32():
    """The kernels are compiled for float32/float64 only; float16 must still work."""
    rng = np.random.default_rng(8)
    x, w = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 3)) / 3
    outs = []
    for dtype in (np.float16, np.float32):
        tx, tw = Tensor(x.astype(dtype), requires_grad=True), Tensor(w.astype(dtype), requires_grad=True)
        y = F.batch_norm(F.conv2d(tx, tw, padding=1), np.zeros(4, dtype), np.ones(4, dtype),
                         training=True)
        (y * y).sum().backward()
        assert y.dtype == dtype and tx.grad.dtype == dtype
        outs.append((y.data.astype(np.float32), tx.grad.astype(np.float32)))
    np.testing.assert_allclose(outs[0][0], outs[1][0], atol=2e-2)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=2e-2, atol=0.2)


def test_conv_in_many_chunks_equals_one_chunk(monkeypatch):
    """A chunk budget of a few images (with a shorter last chunk) changes nothing but speed."""
    rng = np.random.default_rng(6)
    x, w, b = rng.normal(size=(7, 3, 6, 5)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    seed = rng.normal(size=(7, 4, 3, 3))

    def run():
        tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(tx, tw, tb, stride=2, padding=1)
        (y * Tensor(seed)).sum().backward()
        return y.data, tx.grad, tw.grad, tb.grad

    one = run()
    image_bytes = 9 * 27 * 8                     # one image: 3x3 output pixels x 27 columns
    monkeypatch.setattr(conv, "CHUNK_BYTES", 3 * image_bytes)       # 3 + 3 + 1 images
    assert conv._image_chunks(7, 9, 27 * 8) == [(0, 3), (3, 6), (6, 7)]
    for a, b in zip(one, run()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_conv_with_mixed_input_and_weight_dtypes_has_gradients_of_each_dtype():
    """Mixed precision takes separate column buffers for x's and dy's dtypes."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32).astype(np.float64)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32).astype(np.float64)
    grads = {}
    for x_dtype, w_dtype in ((np.float64, np.float64), (np.float32, np.float64),
                             (np.float64, np.float32)):
        tx = Tensor(x.astype(x_dtype), requires_grad=True)
        tw = Tensor(w.astype(w_dtype), requires_grad=True)
        F.conv2d(tx, tw, padding=1).sum().backward()
        assert tx.grad.dtype == x_dtype and tw.grad.dtype == w_dtype
        grads[x_dtype, w_dtype] = (tx.grad, tw.grad)
    for key in ((np.float32, np.float64), (np.float64, np.float32)):
        for a, b in zip(grads[key], grads[np.float64, np.float64]):
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_conv_and_batch_norm_run_with_numba_disabled():
    """Under NUMBA_DISABLE_JIT=1 the NumPy twins take over and give the same numbers."""
    script = textwrap.dedent("""
        import os
        import numpy as np
        from minibnn import Tensor, functional as F
        from minibnn.functional import training_kernels as kernels
        assert kernels.jit_enabled() == (os.environ["NUMBA_DISABLE_JIT"] == "0")
        rng = np.random.default_rng(0)
        x = Tensor(rng.normal(size=(3, 4, 5, 6)), requires_grad=True)
        w = Tensor(rng.normal(size=(5, 4, 3, 3)), requires_grad=True)
        y = F.batch_norm(F.conv2d(x, w, padding=1), np.zeros(5), np.ones(5), training=True)
        (y * y).sum().backward()
        np.save("OUT", np.concatenate([y.data.ravel(), x.grad.ravel(), w.grad.ravel()]))
    """)
    outputs = []
    for disable in ("1", "0"):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"minibnn_nojit_{os.getpid()}_{disable}.npy")
        env = dict(os.environ, NUMBA_DISABLE_JIT=disable)
        res = subprocess.run([sys.executable, "-c", script.replace("OUT", path)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        outputs.append(np.load(path))
        os.remove(path)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-9, atol=1e-9)


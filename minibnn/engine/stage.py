"""The fused output stage of the packed graph: the float arithmetic after every layer.

The output stage runs after every layer of an exported model, on int32 accumulators (binary
layers) or float32 outputs (real layers), channels last, per output channel m:

    a = max over a k x k window, stride k             (optional; exact on the integers)
    t = float32(a) * alpha[m]                          (binary weight scale; 1 for real layers)
    t = ((t - mu[m]) * inv_std[m]) * gamma[m] + beta[m]        (BatchNorm in eval mode)
    t = t + r[n, s*oh, s*ow, (m - off) % Cr]           (residual, for off <= m < off + reps*Cr)
    t = act(t)        hardtanh: clip(t, lo, hi);  relu: max(t, 0);
                      rprelu: u = t + b_in;  u = u if u > 0 else slope * u;  t = u + b_out
    out[p, m] = t                                      float32 (P, M)
    bit m of bits[p] = (t + sign_bias[m]) < 0          uint64 (P, ceil(M/64)), bit 1 means -1

Every step is float32 in the op order of minibnn's eval forward (nn.BatchNorm2d computes
((x - mean) * inv_std) * gamma + beta), so a layer whose float accumulator is exact (power-of-two
scales, e.g. IR-Net) reproduces the model bit for bit. The stage is memory-bound, so it is one
Numba pass rather than five NumPy ones; `stage_reference` is its NumPy twin. Leaves out the
arithmetic on packed words (gemm.py, conv.py) and the real-valued layers (float_layers.py).
"""

import numpy as np
from numba import njit, prange

from .pack import neg_bits64

__all__ = ["ACTIVATIONS", "stage", "stage_reference"]

ACTIVATIONS = {"identity": 0, "hardtanh": 1, "relu": 2, "rprelu": 3}
PARALLEL_MIN_ELEMENTS = 1 << 18    # smaller stages run on one thread: waking others costs more


# ---------------------------------------------------------------------------------------------
# The fused output stage (Numba) and its NumPy twin.

@njit(cache=True)
def _stage_rows(buf, r0, r1, x, pool, alpha, mean, inv_std, gamma, beta, res, res_stride, res_off,
                res_reps, act, lo, hi, b_in, slope, b_out, sign_bias, out, bits, want_out,
                want_bits):
    """Output rows r0:r1 (row = n * OH + oh) of the stage.  x int32/float32 (N, H, W, M);
    res float32 (N, H', W', Cr) or (0, 0, 0, 0); out float32 (N, OH, OW, M) and bits uint64
    (N, OH, OW, W64), dummies when not wanted. Vectors float32 (M,); lo, hi float32; buf
    float32 (M,) scratch from the caller (nothing here allocates: see _stage_parallel).
    An empty sign_bias means zeros. Arrays are indexed in full rather than sliced into a view
    per pixel (docs/engine_speed.md)."""
    m = x.shape[3]
    oh_total, ow_total = x.shape[1] // pool, x.shape[2] // pool
    cr = res.shape[3]
    res_end = res_off + cr * res_reps                      # channels off .. end get r, tiled
    zero = np.float32(0.0)
    for row in range(r0, r1):
        n, oh = row // oh_total, row % oh_total
        ih, rh = oh * pool, oh * res_stride
        for ow in range(ow_total):
            iw, rw = ow * pool, ow * res_stride
            for c in range(m):
                buf[c] = np.float32(x[n, ih, iw, c])
            for i in range(pool):                          # max-pool before anything else
                for j in range(pool):
                    if i + j > 0:
                        for c in range(m):
                            v = np.float32(x[n, ih + i, iw + j, c])
                            if v > buf[c]:
                                buf[c] = v
            if cr == m:                                    # scale, BN (model's order), + r
                for c in range(m):
                    t = (((buf[c] * alpha[c]) - mean[c]) * inv_std[c]) * gamma[c] + beta[c]
                    buf[c] = t + res[n, rh, rw, c]
            else:
                for c in range(m):
                    buf[c] = (((buf[c] * alpha[c]) - mean[c]) * inv_std[c]) * gamma[c] + beta[c]
            if 0 < cr < m:                                 # zero-padded or tiled residual
                for c0 in range(res_off, res_end, cr):
                    for c in range(cr):
                        buf[c0 + c] = buf[c0 + c] + res[n, rh, rw, c]
            if act == 1:
                for c in range(m):
                    buf[c] = min(max(buf[c], lo), hi)
            elif act == 2:
                for c in range(m):
                    buf[c] = max(buf[c], zero)
            elif act == 3:
                for c in range(m):
                    u = buf[c] + b_in[c]
                    buf[c] = (u if u > zero else u * slope[c]) + b_out[c]
            if want_out:
                for c in range(m):
                    out[n, oh, ow, c] = buf[c]
            if want_bits:
                if sign_bias.size:                         # the values to pack, in place;
                    for c in range(m):                     # empty when all zero, since
                        buf[c] = buf[c] + sign_bias[c]     # t + 0 < 0 exactly when t < 0
                for w in range(bits.shape[3]):
                    bits[n, oh, ow, w] = neg_bits64(buf, 64 * w, min(64, m - 64 * w))


@njit(cache=True)
def _stage_serial(x, pool, *args):
    _stage_rows(np.empty(x.shape[3], np.float32), 0, x.shape[0] * (x.shape[1] // pool), x, pool,
                *args)


@njit(cache=True, parallel=True)
def _stage_parallel(x, pool, *args):
    n_rows = x.shape[0] * (x.shape[1] // pool)
    per_task = max(1, n_rows // 32)
    n_tasks = (n_rows + per_task - 1) // per_task
    # One scratch row per task, allocated on the calling thread: allocations inside a prange
    # body come from the worker threads' malloc arenas and can stall a call many times over.
    bufs = np.empty((n_tasks, x.shape[3]), np.float32)
    for t in prange(n_tasks):
        _stage_rows(bufs[t], t * per_task, min(n_rows, (t + 1) * per_task), x, pool, *args)


def stage_reference(x, pool, alpha, mean, inv_std, gamma, beta, res=None, res_stride=1,
                    res_off=0, res_reps=1, act="identity", lo=-1.0, hi=1.0, b_in=None,
                    slope=None, b_out=None, sign_bias=None):
    """NumPy twin of `stage` (same arguments and float32 op order). Returns (out, bits)."""
    x = np.asarray(x)
    n, h, w, m = x.shape
    t = x[:, : h // pool * pool, : w // pool * pool].astype(np.float32)
    t = t.reshape(n, h // pool, pool, w // pool, pool, m).max(axis=(2, 4))
    t = (((t * alpha) - mean) * inv_std) * gamma + beta
    if res is not None:
        r = res[:, ::res_stride, ::res_stride][:, : t.shape[1], : t.shape[2]]
        cr = r.shape[3]
        for c0 in range(res_off, res_off + cr * res_reps, cr):
            t[..., c0:c0 + cr] = t[..., c0:c0 + cr] + r
    if act == "hardtanh":
        t = np.minimum(np.maximum(t, np.float32(lo)), np.float32(hi))
    elif act == "relu":
        t = np.maximum(t, np.float32(0))
    elif act == "rprelu":
        u = t + b_in
        t = np.where(u > 0, u, u * slope) + b_out
    sb = np.zeros(m, np.float32) if sign_bias is None else np.asarray(sign_bias, np.float32)
    neg = (t + sb) < 0
    packed = np.packbits(neg, axis=-1, bitorder="little")
    words = np.zeros(neg.shape[:-1] + (-(-m // 64) * 8,), np.uint8)
    words[..., : packed.shape[-1]] = packed
    return t.astype(np.float32), words.view("<u8").astype(np.uint64)


_EMPTY_RES = np.zeros((0, 0, 0, 0), np.float32)
_EMPTY_VEC = np.zeros(0, np.float32)


def stage(x, pool, alpha, mean, inv_std, gamma, beta, res=None, res_stride=1, res_off=0,
          res_reps=1, act="identity", lo=-1.0, hi=1.0, b_in=None, slope=None, b_out=None,
          sign_bias=None, want_out=True, want_bits=False):
    """Run the fused output stage (module docstring) on x (N, H, W, M) int32 or float32.

    Vectors are float32 (M,); b_in, slope, b_out are used by act="rprelu" only. res float32
    (N, H', W', Cr) or None is read at rows/columns res_stride * (oh, ow) and added to channels
    res_off .. res_off + res_reps * Cr (tiled; the other channels get nothing, as with a
    zero-padded shortcut). Returns (out float32 (N, OH, OW, M) or None, bits uint64
    (N, OH, OW, ceil(M/64)) or None), OH = H // pool. One pass over x, threaded when large.
    """
    n, h, w, m = x.shape
    oh, ow = h // pool, w // pool
    if res is not None:
        cr = res.shape[3]
        fits = (res_off + cr * res_reps <= m and res.shape[0] == n
                and -(-res.shape[1] // res_stride) >= oh and -(-res.shape[2] // res_stride) >= ow)
        if not fits:
            raise ValueError(f"stage: residual {res.shape} (stride {res_stride}, channels "
                             f"{res_off}..{res_off + cr * res_reps}) does not fit the output "
                             f"({n}, {oh}, {ow}, {m})")
    out = np.empty((n, oh, ow, m) if want_out else (0, 0, 0, 0), np.float32)
    bits = np.empty((n, oh, ow, -(-m // 64)) if want_bits else (0, 0, 0, 0), np.uint64)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    pick = lambda v, default: default if v is None else v                # noqa: E731
    # A zero sign bias is passed empty so the kernel skips adding it: t + 0 < 0 <=> t < 0.
    sb = _EMPTY_VEC if sign_bias is None or not np.any(sign_bias) else np.asarray(sign_bias,
                                                                                   np.float32)
    run = _stage_parallel if x.size >= PARALLEL_MIN_ELEMENTS else _stage_serial
    run(np.ascontiguousarray(x), int(pool), alpha, mean, inv_std, gamma, beta,
        _EMPTY_RES if res is None else np.ascontiguousarray(res), int(res_stride), int(res_off),
        int(res_reps), ACTIVATIONS[act], np.float32(lo), np.float32(hi), pick(b_in, zeros),
        pick(slope, ones), pick(b_out, zeros), sb, out, bits,
        bool(want_out), bool(want_bits))
    return (out if want_out else None), (bits if want_bits else None)

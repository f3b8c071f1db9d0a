"""`minibnn bench kernels`: the packed binary conv against float32 convs, layer by layer.

For the 3x3 stride-1 pad-1 convs of CIFAR ResNet-18 and VGG-small it times a NumPy float32
im2col+matmul conv, PyTorch's float32 conv2d (when torch imports) and the packed kernel with
packed input given, then prints speed-ups, binary MAC/s, the share of the binary peak measured on
this machine for the ISA path the kernels run (engine/peak.py) and the cost of packing the conv's
input two ways: a standalone pass over float32 NHWC input
(pack.pack_signs), and the extra time the previous layer's output stage takes to emit
packed bits besides its float output (stage.stage, the way exported models hand over). Each packed
conv's result is checked exactly before it is timed.
"""

import argparse
import math
import os

import numba
import numpy as np

from ..engine import bitpack, conv, gemm, isa, pack, stage
from ..engine.peak import measure_peak
from . import clock_for, interleaved_medians, paired_difference, setup_threads
from .machine import print_machine_report

__all__ = ["add_arguments", "run", "im2col_conv2d", "LAYERS"]

# (model, C = M, H = W) of the 3x3, stride 1, pad 1 convs; N comes from --batch.
LAYERS = [("resnet18", 64, 32), ("resnet18", 128, 16), ("resnet18", 256, 8), ("resnet18", 512, 4),
          ("vgg-small", 128, 32), ("vgg-small", 256, 16), ("vgg-small", 512, 8)]
GOALS = {"torch": 8.0, "torch_stretch": 10.0, "numpy": 15.0, "gmacs": 800.0, "pack_pct": 10.0}
BIG_LAYER_MACS = 150e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes N")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS,
                        help="threads for numba and torch (default: all cores)")
    parser.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                        help="wall: perf_counter; cpu: process CPU time (all threads), which "
                             "on a shared, busy machine approximates the idle time; use with "
                             "--threads 1")
    parser.add_argument("--quick", action="store_true",
                        help="ResNet-18 layers only, 3 repeats: a smoke test, not a measurement")


def im2col_conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 1) -> np.ndarray:
    """Float conv as one matmul.  x (N, C, H, W), w (M, C, kh, kw) -> (N, M, OH, OW) (a view)."""
    n, c = x.shape[:2]
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]                                   # (N, C, OH, OW, kh, kw)
    oh, ow = win.shape[2:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)   # the im2col copy
    y = cols @ w.reshape(m, -1).T                                          # (N*OH*OW, M)
    return y.reshape(n, oh, ow, m).transpose(0, 3, 1, 2)


def _validate(rng) -> bool:
    """Packed kernels == NumPy twins on small cases (all three output stages)."""
    ok = True
    cases = [(2, 65, 7, 70, 3, 1, 1), (3, 130, 6, 5, 3, 2, 1), (1, 64, 5, 9, 1, 1, 0),
             (2, 64, 6, 32, 3, 1, 1)]
    for n, c, h, m, k, s, p in cases:
        x = np.where(rng.random((n, c, h, h)) < 0.5, -1.0, 1.0)
        w = np.where(rng.random((m, c, k, k)) < 0.5, -1.0, 1.0)
        scale, bias = rng.normal(size=m).astype(np.float32), rng.normal(size=m).astype(np.float32)
        ref = conv.binary_conv2d_reference(x, w, s, p).transpose(0, 2, 3, 1)
        xw, ww = bitpack.pack_nhwc(x), bitpack.pack_nhwc(w)
        ok &= np.array_equal(conv.binary_conv2d(xw, ww, c, s, p), ref)
        ok &= np.allclose(conv.binary_conv2d(xw, ww, c, s, p, scale, bias),
                          gemm.scale_bias_reference(ref, scale, bias), rtol=1e-6, atol=1e-4)
        ok &= np.array_equal(conv.binary_conv2d(xw, ww, c, s, p, scale, bias, True),
                             gemm.threshold_reference(ref, scale, bias))
        ok &= np.array_equal(pack.pack_signs(x, "NCHW"), xw)
    return bool(ok)


def _verdict(value, goal, higher_is_better=True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    return "PASS" if (value >= goal if higher_is_better else value <= goal) else "MISS"


def _geomean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def _bench_layer(n, c, h, repeats, clock, torch, rng):
    """Time one layer at batch n.  Returns a dict of seconds and derived numbers."""
    m = c
    x = rng.normal(size=(n, c, h, h)).astype(np.float32)
    w = rng.normal(size=(m, c, 3, 3)).astype(np.float32)
    xs = np.where(x < 0, -1.0, 1.0).astype(np.float32)          # the signs, as floats
    ws = np.where(w < 0, -1.0, 1.0).astype(np.float32)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))       # what a float stage hands over
    x_words = pack.pack_signs(x_nhwc)
    layer = conv.prepare_conv2d(bitpack.pack_nhwc(w), c, stride=1, padding=1)

    y_float = im2col_conv2d(xs, ws)                              # exact: integers < 2**24
    if not np.array_equal(layer(x_words), y_float.transpose(0, 2, 3, 1).astype(np.int32)):
        raise RuntimeError(f"packed conv disagrees with the float conv (N={n}, C={c}, H={h})")

    fns = {"numpy": lambda: im2col_conv2d(x, w), "packed": lambda: layer(x_words),
           "pack": lambda: pack.pack_signs(x_nhwc)}
    # The previous layer's output stage (BN + float shortcut, as in a ResNet block), with and
    # without emitting packed bits for this conv: the difference is what packing costs there.
    acc = rng.integers(-9 * c, 9 * c, size=(n, h, h, c)).astype(np.int32)
    vec = [rng.normal(size=c).astype(np.float32) for _ in range(5)]
    vec[2] = np.abs(vec[2]) + np.float32(0.1)                            # inv_std > 0
    emit = paired_difference(lambda: stage.stage(acc, 1, *vec, res=x_nhwc),
                             lambda: stage.stage(acc, 1, *vec, res=x_nhwc, want_bits=True),
                             4 * repeats, clock)
    if torch is not None:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)

        def torch_conv():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, padding=1)
        fns["torch"] = torch_conv
    r = {"macs": n * h * h * m * c * 9, "torch": float("nan")}
    r.update(interleaved_medians(fns, repeats, clock=clock))   # sides take turns: shared noise
    r["emit"] = emit
    return r


def run(args) -> int:
    clock = clock_for(args.timer)
    threads, torch, blas_set = setup_threads(args.threads)
    blas = "set to the same" if blas_set else "left at their default"
    repeats = 3 if args.quick else args.repeats
    layers = [lay for lay in LAYERS if lay[0] == "resnet18"] if args.quick else LAYERS
    rng = np.random.default_rng(0)

    print_machine_report(threads)
    print(f"{threads} thread(s) for numba and torch, NumPy BLAS threads {blas}; "
          f"torch {torch.__version__ if torch else 'not installed'}")
    load = os.getloadavg()
    print(f"timer: {'process CPU time' if args.timer == 'cpu' else 'wall clock'}, median of "
          f"{repeats} calls; load average before: {' '.join(f'{v:.2f}' for v in load)}")
    cores = os.cpu_count() or 1
    if load[0] > 0.5 * cores and args.timer == "wall":
        print(f"WARNING: the machine is busy (load {load[0]:.1f} on {cores} cores): wall-clock "
              f"times of threaded kernels are unreliable; try --threads 1 --timer cpu")
    path = isa.isa_path()
    secs = 0.02 if args.quick else 0.15
    peak = measure_peak(path, threads, seconds=secs, clock=clock)
    other = "avx2" if isa.popcount_method(path) == isa.POPCOUNT_WORDS else "avx512"
    print(f"binary peak measured: {peak / 1e9:.0f} G binary MAC/s ({path} path: "
          f"XOR-popcount-add on L1-resident data, {threads} thread(s), best of 5, measured "
          f"again before every layer: %peak uses the best so far); the "
          f"{other} path's popcount on this CPU: "
          f"{measure_peak(other, threads, seconds=secs, clock=clock) / 1e9:.0f} G")
    if not _validate(rng):
        print("VALIDATION FAILED: packed kernels disagree with the NumPy reference")
        return 1
    print("validation: packed kernels == NumPy reference on small cases (int, float, bits)\n")

    head = (f"{'layer':<10} {'N':>3} {'C=M':>4} {'HxW':>5} {'MMAC':>7} {'numpy ms':>9} "
            f"{'torch ms':>9} {'packed ms':>9} {'vs torch':>8} {'vs numpy':>8} {'GMAC/s':>7} "
            f"{'%peak':>6} {'pack %':>6} {'emit %':>6}")
    print(head)
    print("-" * len(head))
    results = []
    for n in args.batch:
        for model, c, h in layers:
            peak = max(peak, measure_peak(path, threads, seconds=secs, clock=clock, trials=3))
            try:
                r = _bench_layer(n, c, h, repeats, clock, torch, rng)
            except RuntimeError as err:                  # a wrong result is not timed
                print(f"VALIDATION FAILED: {err}")
                return 1
            r.update(n=n, model=model, c=c, h=h, gmacs=r["macs"] / r["packed"] / 1e9,
                     vs_torch=r["torch"] / r["packed"], vs_numpy=r["numpy"] / r["packed"],
                     pack_pct=100 * r["pack"] / r["packed"],
                     emit_pct=100 * max(0.0, r["emit"]) / r["packed"])
            results.append(r)
            pct = f"{100 * r['macs'] / r['packed'] / peak:6.1f}"
            print(f"{model:<10} {n:>3} {c:>4} {f'{h}x{h}':>5} {r['macs'] / 1e6:>7.0f} "
                  f"{r['numpy'] * 1e3:>9.2f} {r['torch'] * 1e3:>9.2f} {r['packed'] * 1e3:>9.3f} "
                  f"{r['vs_torch']:>7.1f}x {r['vs_numpy']:>7.1f}x {r['gmacs']:>7.0f} {pct} "
                  f"{r['pack_pct']:>6.1f} {r['emit_pct']:>6.1f}", flush=True)

    nmax = max(args.batch)
    top = [r for r in results if r["n"] == nmax]
    big = [r for r in results if r["macs"] >= BIG_LAYER_MACS]
    g_torch = _geomean([r["vs_torch"] for r in top])
    g_numpy = _geomean([r["vs_numpy"] for r in top])
    try:
        layer_name = numba.threading_layer()
    except ValueError:                                   # no parallel region ran
        layer_name = "unused"
    print(f"\nsummary over N={nmax} layers (geometric means), numba threading layer: "
          f"{layer_name}, load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  binary peak ({path} path), best of all measurements: {peak / 1e9:.0f} G binary "
          f"MAC/s; layers at {min(100 * r['gmacs'] * 1e9 / peak for r in top):.0f}-"
          f"{max(100 * r['gmacs'] * 1e9 / peak for r in top):.0f}% of it")
    print(f"  packed vs PyTorch fp32 : {g_torch:6.1f}x   goal >= {GOALS['torch']:.0f}x: "
          f"{_verdict(g_torch, GOALS['torch'])}   stretch >= {GOALS['torch_stretch']:.0f}x: "
          f"{_verdict(g_torch, GOALS['torch_stretch'])}")
    print(f"  packed vs NumPy im2col : {g_numpy:6.1f}x   goal >= {GOALS['numpy']:.0f}x: "
          f"{_verdict(g_numpy, GOALS['numpy'])}")
    if big:
        worst = min(r["gmacs"] for r in big)
        note = "" if threads >= cores else f" (the goal is for all {cores} cores)"
        if path != "avx512":
            note += f" (the goal is for AVX-512 CPUs; this CPU runs the {path} path)"
        print(f"  binary GMAC/s, layers >= {BIG_LAYER_MACS / 1e6:.0f} MMAC: worst {worst:.0f}, "
              f"geomean {_geomean([r['gmacs'] for r in big]):.0f}   goal >= "
              f"{GOALS['gmacs']:.0f} on every such layer: {_verdict(worst, GOALS['gmacs'])}{note}")
    for key, what in (("pack_pct", "standalone pass over float32 NHWC input (pack_signs)"),
                      ("emit_pct", "inside the previous layer's output stage (exported models)")):
        worst = max(r[key] for r in top)
        print(f"  packing, {what}: worst {worst:.1f}%, median "
              f"{np.median([r[key] for r in top]):.1f}% of the conv it feeds   goal <= "
              f"{GOALS['pack_pct']:.0f}%: {_verdict(worst, GOALS['pack_pct'], False)}")
    print("    (binary-to-binary layers pay neither: their threshold stage emits bits in the conv "
          "kernel; the standalone pass runs at memory speed, faster than a NumPy copy)")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))

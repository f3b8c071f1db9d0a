"""`minibnn bench model`: whole-network inference of an exported (bit-packed) model vs float.

For each model (default VGG-small and ResNet-18, CIFAR 3x32x32, width 1) it builds the BNN with
random latent weights and BatchNorm statistics calibrated on one random batch (so activations
are scaled as in a trained network), exports it, and times at each batch size N:

    packed   PackedModel(x): packed binary layers, float32 first/last layers (engine/)
    numpy    the minibnn model's eval forward: the float32 simulation of the same BNN
    torch    the same network in PyTorch float32 (when installed), built from the exported
             graph: float conv2d on +-1 activations with the +-alpha weights, BN, shortcuts,
             activations and signs as torch ops; eval mode, inference_mode

Rounds are interleaved (packed, numpy, torch, packed, ...) so load changes hit all three;
the table shows medians. Before timing, the packed output is checked against the model's.
Goal (issue 5): packed >= 4x faster than the PyTorch float model.
"""

from __future__ import annotations

import argparse
import os

import numba
import numpy as np

from ..autograd import Tensor, no_grad
from ..engine import bitpack, export, graph
from ..models import build_model
from ..nn import BatchNorm1d, BatchNorm2d
from . import clock_for, interleaved_medians, setup_threads
from .machine import print_machine_report

__all__ = ["add_arguments", "run", "calibrate_batchnorm", "torch_twin", "GOAL"]

GOAL = 4.0
DEFAULT_MODELS = ["vgg_small", "resnet18"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="registry names (mlp, cnn, vgg_small, resnet20, resnet18, reactnet)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes N")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--image-size", type=int, default=32, help="input height = width (CIFAR: 32)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (CIFAR: 3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of each side")
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS,
                        help="threads for numba and torch")
    parser.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                        help="wall clock, or process CPU time (steadier on a busy machine)")
    parser.add_argument("--skip-numpy", action="store_true",
                        help="do not time the (slow) NumPy float forward")


def calibrate_batchnorm(model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Trained-like BN: running statistics = those of one forward of x in training mode, and
    gamma, beta drawn around (1, 0). Modifies the model in place; leaves it in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, (BatchNorm1d, BatchNorm2d))]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    with no_grad():
        model.train()(Tensor(x))
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
        bn.weight.data[:] = rng.uniform(0.5, 1.5, bn.num_features)
        bn.bias.data[:] = rng.normal(0.0, 0.2, bn.num_features)
    model.eval()


# ------------------------------------------------------------------------------ torch twin
def torch_twin(packed):
    """A PyTorch float32 function computing the packed model's graph with float convs.

    Binary layers become conv2d / linear of +-1 activations with weights alpha * (+-1)
    (unpacked from the file), as the float model runs them; NCHW throughout.
    """
    import torch
    import torch.nn.functional as F

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def vec(v, ndim):
        return t(v).reshape((1, -1) + (1,) * (ndim - 2))

    def stage(st: graph.Stage, y, regs, scaled):
        g = st.get
        if st.pool > 1:
            y = F.max_pool2d(y, st.pool)
        if not scaled:
            y = y * vec(g("alpha"), y.ndim)
        y = F.batch_norm(y, t(g("mean")), t(1.0 / g("inv_std").astype(np.float64) ** 2),
                         t(g("gamma")), t(g("beta")), False, 0.0, 0.0)
        if st.res is not None:
            r = regs[st.res]
            r = r[:, :, ::st.res_stride, ::st.res_stride] if r.ndim == 4 else r
            r = torch.cat([r] * st.res_reps, dim=1)
            y = y.clone()
            y[:, st.res_off:st.res_off + r.shape[1]] += r
        if st.act == "hardtanh":
            y = F.hardtanh(y, st.lo, st.hi)
        elif st.act == "relu":
            y = F.relu(y)
        elif st.act == "rprelu":
            y = F.prelu(y + vec(g("b_in"), y.ndim), t(g("slope"))) + vec(g("b_out"), y.ndim)
        if st.out is not None:
            regs[st.out] = y
        if st.bits is not None:
            regs[st.bits] = torch.where(y + vec(g("sign_bias"), y.ndim) < 0, -1.0, 1.0)

    def step(node):
        if isinstance(node, (graph.BinaryConv, graph.BinaryDense)):
            alpha = node.stage.get("alpha")
            if isinstance(node, graph.BinaryConv):
                w = bitpack.unpack_bits(node.w_words, node.c).transpose(0, 3, 1, 2)
                w = t(w * alpha[:, None, None, None])
                call = lambda x: F.conv2d(x, w, None, node.stride, node.padding)   # noqa: E731
            else:
                w = t(bitpack.unpack_bits(node.w_words, node.k) * alpha[:, None])
                call = lambda x: F.linear(x, w)                                      # noqa: E731
            return lambda regs: stage(node.stage, call(regs[node.src]), regs, True)
        if isinstance(node, (graph.FloatConv, graph.FloatDense)):
            b = None if node.bias is None else t(node.bias)
            if isinstance(node, graph.FloatConv):
                m, k = node.w2.shape[0], node.k
                w = t(node.w2.reshape(m, k, k, -1).transpose(0, 3, 1, 2))
                call = lambda x: F.conv2d(x, w, b, node.stride, node.padding)       # noqa: E731
            else:
                w = t(node.w)
                call = lambda x: F.linear(x, w, b)                                  # noqa: E731
            if node.stage is None:
                return lambda regs: regs.__setitem__(node.dst, call(regs[node.src]))
            return lambda regs: stage(node.stage, call(regs[node.src]), regs, False)
        simple = {"avg_down2": lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True,
                                                      count_include_pad=False),
                  "global_avg_pool": lambda x: x.mean(dim=(2, 3)),
                  "flatten": lambda x: x.reshape(x.shape[0], -1),
                  "l2_normalize": lambda x: F.normalize(x, dim=1)}
        if node.kind == "stage":
            return lambda regs: stage(node.stage, regs[node.src], regs, False)
        fn = simple[node.kind]
        return lambda regs: regs.__setitem__(node.dst, fn(regs[node.src]))

    steps = [step(node) for node in packed.nodes]

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            regs = {"input": torch.from_numpy(x)}
            for s in steps:
                s(regs)
            return regs[packed.output].numpy()
    return forward


def _bench_model(name, args, torch, clock, rng) -> list:
    shape = (args.in_channels, args.image_size, args.image_size)
    model = build_model(name, in_channels=shape[0], image_size=shape[1], width=args.width, rng=0)
    calibrate_batchnorm(model, rng.normal(size=(16,) + shape).astype(np.float32), rng)
    packed = export(model)
    twin = torch_twin(packed) if torch is not None else None
    rows = []
    for n in args.batch:
        x = rng.normal(size=(n,) + shape).astype(np.float32)
        with no_grad():
            ref = model(Tensor(x)).data
        out = packed(x)
        agree = f"packed==model argmax {np.mean(out.argmax(1) == ref.argmax(1)):.0%}"
        if twin is not None:
            agree += f", torch twin max|dlogit| {np.abs(twin(x) - ref).max():.1e}"
        fns = {"packed": lambda: packed(x)}
        if not args.skip_numpy:
            fns["numpy"] = lambda: model(Tensor(x))
        if twin is not None:
            fns["torch"] = lambda: twin(x)
        with no_grad():
            t = interleaved_medians(fns, args.repeats, clock=clock)
        rows.append((name, n, t, agree))
    return rows


def run(args: argparse.Namespace) -> int:
    clock = clock_for(args.timer)
    threads, torch, blas_set = setup_threads(args.threads)
    blas = "same" if blas_set else "default"
    load = os.getloadavg()
    print_machine_report(threads)
    print(f"minibnn bench model: {threads} thread(s) for numba and torch ({blas} for NumPy's "
          f"BLAS); numba "
          f"{numba.__version__}, numpy {np.__version__}, torch "
          f"{torch.__version__ if torch else 'not installed'}; timer {args.timer}, median of "
          f"{args.repeats} calls in alternating blocks; load average {load[0]:.1f} on "
          f"{os.cpu_count()} cores")
    if load[0] > 0.5 * (os.cpu_count() or 1):
        print("WARNING: busy machine; threaded wall-clock times are noisy (try --threads 1 or "
              "--timer cpu)")
    print("packed = PackedModel(x) (packed binary layers, float32 first/last layers); numpy = "
          "the minibnn model's eval forward (float32 BNN simulation); torch = the same graph in "
          "PyTorch float32 (conv2d on +-1 activations, BN, shortcuts, signs); random weights, "
          "BN calibrated on a random batch")
    rng = np.random.default_rng(0)
    head = (f"{'model':<10} {'N':>3} {'packed ms':>10} {'numpy ms':>10} {'torch ms':>10} "
            f"{'x numpy':>8} {'x torch':>8}  goal >= {GOAL:g}x torch")
    print(head + "\n" + "-" * len(head))
    rows = []
    for name in args.models:
        for model, n, t, agree in _bench_model(name, args, torch, clock, rng):
            ms = {k: f"{v * 1e3:10.2f}" for k, v in t.items()}
            vs = {k: f"{t[k] / t['packed']:7.1f}x" if k in t else f"{'-':>8}"
                  for k in ("numpy", "torch")}
            verdict = ("PASS" if t["torch"] / t["packed"] >= GOAL else "MISS") if "torch" in t \
                else "not measured (no torch)"
            print(f"{model:<10} {n:>3} {ms['packed']} {ms.get('numpy', f'{chr(45):>10}')} "
                  f"{ms.get('torch', f'{chr(45):>10}')} {vs['numpy']} {vs['torch']}  {verdict}"
                  f"   [{agree}]")
            rows.append((model, n, t))
    return 0

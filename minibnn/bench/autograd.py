"""`minibnn bench autograd`: forward + backward of a conv3x3 + BatchNorm + ReLU block.

The block is the unit every CNN here is built from. minibnn's NumPy autograd is timed against
PyTorch's CPU build (when installed) in the same process, on the same number of threads, and
the ratio is printed; the issue's goal is minibnn within 1.5x of PyTorch. Correctness is checked
first: both frameworks must agree on the output and the input gradient.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from . import interleaved_medians
from .machine import print_machine_report

__all__ = ["add_arguments", "run", "conv_bn_relu_step"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=64, help="batch size N (default: 64)")
    parser.add_argument("--channels", type=int, default=128, help="channels C in and out (default: 128)")
    parser.add_argument("--size", type=int, default=16, help="spatial size H = W (default: 16)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions of each side, taken in turns; the median is reported (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")


def _inputs(n: int, c: int, size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(n, c, size, size)).astype(np.float32),
        "w": (rng.normal(size=(c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32),
        "gamma": np.ones(c, np.float32),
        "beta": np.zeros(c, np.float32),
    }


def conv_bn_relu_step(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """One training step of the block in minibnn: returns (output, d loss / d x), loss = sum(y)."""
    x = Tensor(arrays["x"], requires_grad=True)
    w = Tensor(arrays["w"], requires_grad=True)
    gamma = Tensor(arrays["gamma"], requires_grad=True)
    beta = Tensor(arrays["beta"], requires_grad=True)
    c = arrays["w"].shape[0]
    mean, var = np.zeros(c, np.float32), np.ones(c, np.float32)
    y = F.relu(F.batch_norm(F.conv2d(x, w, padding=1), mean, var, gamma, beta, training=True))
    y.sum().backward()
    return y.data, x.grad


def _torch_step(torch, arrays: dict):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    c = arrays["w"].shape[0]
    y = torch.nn.functional.conv2d(t["x"], t["w"], padding=1)
    y = torch.nn.functional.batch_norm(y, torch.zeros(c), torch.ones(c), t["gamma"], t["beta"],
                                       training=True)
    y = torch.relu(y)
    y.sum().backward()
    return y.detach().numpy(), t["x"].grad.numpy()


def run(args: argparse.Namespace) -> int:
    arrays = _inputs(args.batch, args.channels, args.size, args.seed)
    n, c, s = args.batch, args.channels, args.size
    gmac = 3 * n * c * c * 9 * s * s / 1e9   # forward conv + two backward products
    print_machine_report()
    print(f"conv3x3(pad 1) + BatchNorm(train) + ReLU, forward + backward: "
          f"N={n}, C={c}, {s}x{s}, float32 ({gmac:.2f} GMAC), median of {args.repeats}")
    steps = {"minibnn": lambda: conv_bn_relu_step(arrays)}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(threads)
        steps["torch"] = lambda: _torch_step(torch, arrays)
    times = interleaved_medians(steps, args.repeats)     # the two take turns, so noise is shared
    t_ours = times["minibnn"]
    print(f"  minibnn (NumPy) : {t_ours * 1e3:8.1f} ms   {gmac / t_ours:6.1f} GMAC/s")
    if torch is None:
        print("  PyTorch         : not installed (pip install torch to compare)")
        return 0
    y_ours, dx_ours = conv_bn_relu_step(arrays)
    y_ref, dx_ref = _torch_step(torch, arrays)
    agree = np.allclose(y_ours, y_ref, atol=1e-4) and np.allclose(dx_ours, dx_ref, atol=1e-4)
    t_torch = times["torch"]
    ratio = t_ours / t_torch
    print(f"  PyTorch {torch.__version__:<8}: {t_torch * 1e3:8.1f} ms   {gmac / t_torch:6.1f} GMAC/s"
          f"   ({threads} threads)")
    print(f"  results agree   : {'yes' if agree else 'NO'}")
    verdict = "PASS" if ratio <= 1.5 else "MISS"
    print(f"  minibnn / PyTorch = {ratio:.2f}x   (goal <= 1.5x: {verdict})")
    return 0 if agree else 1

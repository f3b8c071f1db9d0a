"""`minibnn.functional` (import as F): the user-facing operations, named as in
torch.nn.functional where the concept exists (with `axis` for torch's `dim`).

It is the layer above the autograd engine and imports it, never the reverse:

    losses            cross_entropy, nll_from_log_probs, kl_div, mse_loss
    conv              conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d (fused Functions)
    batchnorm         batch_norm (a fused Function)
    activations       relu, leaky_relu, prelu, hardtanh, softmax, log_softmax, logsumexp,
                      normalize, linear, dropout
    training_kernels  the Numba kernels of conv and batch norm, each beside its NumPy twin

The autograd primitives (minibnn.autograd.elementwise, .reductions, .shape) are gathered here
too, so one namespace holds every operation.
"""

from ..autograd.elementwise import (abs, cast, clip, exp, log, maximum, sigmoid, sqrt, tanh,
                                    where)
from ..autograd.reductions import matmul, max, mean, std, sum, var
from ..autograd.shape import concatenate, reshape, stack, transpose
from .activations import (dropout, hardtanh, leaky_relu, linear, log_softmax, logsumexp,
                          normalize, prelu, relu, softmax)
from .batchnorm import batch_norm
from .conv import adaptive_avg_pool2d, avg_pool2d, conv2d, max_pool2d
from .losses import cross_entropy, kl_div, mse_loss, nll_from_log_probs

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm",
    "relu", "leaky_relu", "prelu", "hardtanh", "tanh", "sigmoid", "softmax", "log_softmax",
    "logsumexp", "cross_entropy", "nll_from_log_probs", "kl_div", "mse_loss", "normalize", "var",
    "std", "linear", "dropout", "abs", "cast", "clip", "concatenate", "exp", "log", "matmul",
    "max", "maximum", "mean", "reshape", "sqrt", "stack", "sum", "transpose", "where",
]

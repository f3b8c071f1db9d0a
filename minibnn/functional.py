"""`minibnn.functional` (import as F): the user-facing operations, named as in
torch.nn.functional where the concept exists (with `axis` for torch's `dim`).

Primitives live in autograd/ops.py, composites in autograd/functional.py, convolution and
pooling in autograd/conv.py, batch norm in autograd/batchnorm.py; this module gathers them in
one namespace.
"""

from .autograd.batchnorm import batch_norm
from .autograd.conv import adaptive_avg_pool2d, avg_pool2d, conv2d, max_pool2d
from .autograd.functional import (cross_entropy, dropout, hardtanh, kl_div, leaky_relu, linear,
                                  log_softmax, logsumexp, mse_loss, nll_from_log_probs, normalize,
                                  prelu, relu, sigmoid, softmax, std, tanh, var)
from .autograd.ops import (abs, cast, clip, concatenate, exp, log, matmul, max, maximum, mean,
                           reshape, sqrt, stack, sum, transpose, where)

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm",
    "relu", "leaky_relu", "prelu", "hardtanh", "tanh", "sigmoid", "softmax", "log_softmax",
    "logsumexp", "cross_entropy", "nll_from_log_probs", "kl_div", "mse_loss", "normalize", "var",
    "std", "linear", "dropout", "abs", "cast", "clip", "concatenate", "exp", "log", "matmul",
    "max", "maximum", "mean", "reshape", "sqrt", "stack", "sum", "transpose", "where",
]

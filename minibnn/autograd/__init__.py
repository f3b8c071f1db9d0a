"""The autograd engine: Tensor, Function and backward, the primitive ops with hand-written
backward, gradcheck and anomaly mode. Composites and layer operations (softmax, losses, conv,
pooling, batch norm) are built on it in `minibnn.functional`.

Modules, each importing only the ones below it (checked by the import contract in
pyproject.toml):

    tensor_methods   the primitives attached to Tensor as operators and methods, once
    gradcheck        float64 central-difference gradient check
    reductions       sum, mean, max, var, std, matmul
    shape            reshape, flatten, transpose, indexing, concatenate, stack
    elementwise      add ... pow, exp, log, abs, sqrt, tanh, sigmoid, clip, cast, where
    function         Context, Function (apply, backward plumbing), no_grad / enable_grad
    tensor           Tensor: data, gradient slot, backward over the recorded graph
    anomaly          detect_anomaly: saved arrays modified in place, first NaN/inf
"""

from . import elementwise, reductions, shape, tensor_methods
from .anomaly import SavedArrayModifiedError, detect_anomaly, is_anomaly_enabled
from .function import Context, Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import gradcheck, numerical_grad
from .tensor import Tensor

__all__ = ["Tensor", "Function", "Context", "no_grad", "enable_grad", "is_grad_enabled",
           "gradcheck", "numerical_grad", "detect_anomaly", "is_anomaly_enabled",
           "SavedArrayModifiedError", "elementwise", "reductions", "shape", "tensor_methods"]

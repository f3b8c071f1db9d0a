"""The autograd engine: Tensor, Function, primitive ops with hand-written backward, composites."""

from . import conv, functional, ops
from .anomaly import SavedArrayModifiedError, detect_anomaly, is_anomaly_enabled
from .function import Context, Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import gradcheck, numerical_grad
from .tensor import Tensor

__all__ = ["Tensor", "Function", "Context", "no_grad", "enable_grad", "is_grad_enabled",
           "gradcheck", "numerical_grad", "ops", "functional", "conv", "detect_anomaly",
           "is_anomaly_enabled", "SavedArrayModifiedError"]

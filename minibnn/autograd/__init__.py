"""The autograd engine: Tensor, Function, primitive ops with hand-written backward, composites."""

from . import conv, functional, ops
from .function import Context, Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import gradcheck, numerical_grad
from .tensor import Tensor

__all__ = ["Tensor", "Function", "Context", "no_grad", "enable_grad", "is_grad_enabled",
           "gradcheck", "numerical_grad", "ops", "functional", "conv"]

"""minibnn: a readable CPU reference implementation of binary neural networks.

    import minibnn
    from minibnn import Tensor, no_grad, functional as F, nn, optim

Subpackages are imported by name; only Tensor and no_grad are re-exported at the top level.
"""

from . import autograd, functional, nn, optim, quantizers
from .autograd import Tensor, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "no_grad", "__version__", "autograd", "functional", "nn", "optim", "quantizers"]

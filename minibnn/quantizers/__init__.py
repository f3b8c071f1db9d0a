"""Quantizers: sign with pseudo-gradients (STE, ApproxSign, EDE) and weight binarizers.

    registry.py the Quantizer base class, the one registry QUANTIZERS of names for inputs and
                weights, and the factory make_quantizer(spec, role="input" | "weight")
    sign.py     sign(x), the sign Functions, elementwise quantizers (ste, approx, ede, identity)
    weights.py  weights-only binarizers (xnor, irnet, reactnet, sign, none)

Imports only numpy and minibnn.autograd. Papers: BNN arXiv:1602.02830, XNOR-Net 1603.05279,
Bi-Real 1808.00278, IR-Net 1909.10788, ReActNet 2003.03488. Multi-bit quantizers are left out.

sign(0) = +1, unlike torch.sign(0) = 0 in the official IR-Net, ReActNet, Bi-Real Net, LCR-BNN,
CMIM and S2-BNN code. What changes: an exact-zero activation or (standardised) weight becomes +1
instead of 0, so our float simulation's conv differs from the official code exactly where a
pre-activation is exactly 0 (it contributes +-w instead of 0). Why: with it every value is
representable by one bit, which the packed engine requires (bit = x < 0, bit 1 means -1); -0.0
and NaN also map to +1 there and here. Exact zeros are rare after batch norm and learnable
biases, but appear for ReLU-like inputs or zero padding; zero *padding* itself is never
binarized (see nn/binary.py).
`with sign_zero():` switches to torch's sign(0) = 0 for a block (to compute what a port that
follows the official code gives).
"""

from .registry import (QUANTIZERS, ROLES, CallableQuantizer, Quantizer, check_quantizer_name,
                       make_quantizer, quantizer_names, register_quantizer)
from .sign import (ApproxSign, ApproxSignQuantizer, EDEQuantizer, EDESign, IdentityQuantizer,
                   SignSTE, SteQuantizer, approx_sign, ede_sign, identity, sign, sign_zero,
                   ste_sign)
from .weights import (IRNetWeight, ReActNetWeight, ReActNetWeightSign, RealWeight, SignWeight,
                      WeightQuantizer, XnorWeight)

__all__ = [
    "sign", "sign_zero", "SignSTE", "ApproxSign", "EDESign", "ste_sign", "approx_sign", "ede_sign",
    "identity", "ROLES", "Quantizer", "CallableQuantizer", "QUANTIZERS", "register_quantizer",
    "quantizer_names", "check_quantizer_name", "make_quantizer", "SteQuantizer",
    "ApproxSignQuantizer", "EDEQuantizer", "IdentityQuantizer",
    "WeightQuantizer", "XnorWeight", "IRNetWeight", "ReActNetWeight", "ReActNetWeightSign",
    "SignWeight", "RealWeight",
]

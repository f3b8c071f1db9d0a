"""Solutions to the exercises of tutorial 02 (sign and pseudo-gradients); each ends with its check."""

import numpy as np

from minibnn import Tensor
from minibnn.autograd import Function
from minibnn.nn.binary import BinaryConv2d
from minibnn.optim.schedules import ede_tk
from minibnn.quantizers import ede_sign


def grad(fn, x):
    t = Tensor(x, requires_grad=True)
    fn(t).sum().backward()
    return t.grad


# 1. sign forward, derivative of tanh backward: EDE with t = k = 1.
class SignTanh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * (1 - np.tanh(x) ** 2)


x = np.linspace(-3, 3, 61)
assert np.allclose(grad(lambda t: SignTanh.apply(t), x), grad(lambda t: ede_sign(t, 1.0, 1.0), x))
print("1. SignTanh's backward equals EDE at t = k = 1")

# 2. While t < 1, k t = 1 and the gradient at 0.5 is 1 - tanh^2(t/2), close to 1; it falls
#    below 0.5 only late, once t (the height of the bump) is large and 0.5 is in its tail.
g = [k * t * (1 - np.tanh(t * 0.5) ** 2) for t, k in (ede_tk(e, 100, 1e-3, 10.0) for e in range(100))]
first = next(e for e, v in enumerate(g) if v < 0.5)
print(f"2. the EDE gradient at x = 0.5 first drops below 0.5 at epoch {first} (value {g[first]:.3f})")
assert g[first - 1] >= 0.5 > g[first] and first == 88

# 3. A dot product of K values in {-1, +1} has the parity of K: exactly 0 only when K is even.
rng = np.random.default_rng(0)
zeros = {}
for c in (1, 2):                                             # K = 9 c
    layer = BinaryConv2d(c, 4, 3, weight_quantizer="sign", rng=0)
    out = layer(Tensor(rng.normal(size=(64, c, 8, 8)))).data
    zeros[9 * c] = int(np.count_nonzero(out == 0))
print("3. exact zeros in the binary conv's output by K:", zeros)
assert zeros[9] == 0 and zeros[18] > 0

"""Solutions to the exercises of tutorial 08 (S2-BNN); each ends with its check."""

import math

import numpy as np

from minibnn import Tensor, functional as F
from minibnn.methods.s2bnn import distribution_loss, moco_infonce

rng = np.random.default_rng(0)
tau = 0.2

# 1. L_KD(t, t) = -sum p_t log p_t = H(p_t): the minimum over the student is the entropy, not 0.
t = rng.normal(size=(4, 128))
p = np.exp(t / tau - np.max(t / tau, axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
entropy = float(np.mean(-np.sum(p * np.log(p), axis=1)))
value = distribution_loss(Tensor(t), t, tau=tau).item()
print(f"1. L_KD(t, t) = {value:.6f}, H(p_t) = {entropy:.6f}")
assert abs(value - entropy) < 1e-9

# 2. Aligned query, orthogonal negatives: the floor log(1 + K e^(-1/tau)).
K, D, tau2 = 1024, 8, 0.1
queue = np.zeros((K, D))
queue[:, 1] = 1.0
q = np.zeros((2, D))
q[:, 0] = 1.0
loss = moco_infonce(Tensor(q), q, queue, tau=tau2).item()
print(f"2. aligned loss {loss:.6f}, floor {math.log(1 + K * math.exp(-1 / tau2)):.6f}")
assert abs(loss - math.log(1 + K * math.exp(-1 / tau2))) < 1e-9

# 3. dL/ds = (softmax(s/tau) - softmax(t/tau)) / (B tau).
s = Tensor(rng.normal(size=(4, 128)), requires_grad=True)
distribution_loss(s, t, tau=tau).backward()
expected = (F.softmax(Tensor(s.data / tau), axis=1).data - p) / (4 * tau)
assert np.allclose(s.grad, expected, atol=1e-12)
print("3. the gradient matches (softmax(s/tau) - softmax(t/tau)) / (B tau)")

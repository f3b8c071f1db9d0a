"""Solutions to the exercises of tutorial 07 (CMIM); each ends with its check."""

import math

import numpy as np

from minibnn import Tensor, functional as F
from minibnn.methods import cmim

# 1. Every score 1/M, c = N/M: -log((1/M) / ((N+1)/M + eps)) - N log((N/M) / ((N+1)/M + eps)).
n, m, eps = 10, 100, 1e-7
by_hand = -math.log((1 / m) / ((n + 1) / m + eps)) - n * math.log((n / m) / ((n + 1) / m + eps))
print(f"1. by hand {by_hand:.6f}, nce_uniform_value {cmim.nce_uniform_value(n, m):.6f}")
assert abs(by_hand - 3.351007) < 1e-6 and abs(cmim.nce_uniform_value(n, m) - by_hand) < 1e-9

# 2. A perfect critic: orthogonal unit embeddings, anchor = positive, small tau. The positive's
#    logit is 1/tau, every other 0, so L = log(1 + (B - 1) e^(-1/tau)) -> 0.
b = 16
z = Tensor(np.eye(b))
losses = {tau: cmim.info_nce(z, z, tau=tau).item() for tau in (1.0, 0.1, 0.01)}
print("2. InfoNCE with a perfect critic by tau:", {t: f"{v:.2e}" for t, v in losses.items()})
for tau, value in losses.items():
    assert abs(value - math.log(1 + (b - 1) * math.exp(-1 / tau))) < 1e-9
assert losses[0.01] < 1e-3

# 3. Equal logits: L = log B exactly, the bound log B - L is 0.
same = F.normalize(Tensor(np.ones((b, 4))))
assert abs(cmim.info_nce(same, same, tau=0.1).item() - math.log(b)) < 1e-9
print("3. equal logits give log B")

"""Solutions to the exercises of tutorial 06 (LCR-BNN); each ends with its check."""

import numpy as np

from minibnn import Tensor
from minibnn.methods import lcr

rng = np.random.default_rng(0)
f1, f2 = rng.normal(size=(3, 8, 4, 4)), rng.normal(size=(3, 16, 2, 2))


def official(a, b):
    return lcr.spectral_norm_estimate(lcr.gram(lcr.retention_matrix(Tensor(a), Tensor(b))), "official").data


# 1. Permuting channels permutes the rows (or columns) of RM: K = RM RM^T is conjugated by a
#    permutation (or unchanged), and K 1 is permuted, so ||K 1|| is the same.
base = official(f1, f2)
assert np.allclose(official(f1[:, rng.permutation(8)], f2), base)
assert np.allclose(official(f1, f2[:, rng.permutation(16)]), base)
print("1. sigma_hat is invariant to channel permutations:", np.round(base, 4))

# 2. K = c 11^T (C x C): K 1 = c C 1, ||K 1|| = c C^(3/2), sigma_hat = sqrt(c) C^(3/4);
#    lambda_max = c C, so sigma_max(RM) = sqrt(c C).
c, C = 0.3, 16
k = Tensor(np.full((1, C, C), c))
got, exact = lcr.spectral_norm_estimate(k, "official").data[0], lcr.spectral_norm_estimate(k, "exact").data[0]
print(f"2. official {got:.6f} (sqrt(c) C^(3/4) = {np.sqrt(c) * C ** 0.75:.6f}), exact {exact:.6f}")
assert abs(got - 4.381780) < 1e-6 and abs(exact - 2.190890) < 1e-6

# 3. RM is bilinear in the two stages: scaling stage i by gamma scales RM, and sigma_hat, by |gamma|.
gamma = -2.5
assert np.allclose(official(gamma * f1, f2), abs(gamma) * base)
assert np.allclose(official(f1, gamma * f2), abs(gamma) * base)
print("3. scaling either stage by gamma scales sigma_hat by |gamma|")

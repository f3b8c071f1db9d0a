"""LCR-BNN: retention matrices, an explicit power iteration and the Lipschitz retention loss.

Functions of Tensors only (no models, no training loop): the recipe that plugs the loss into
`minibnn train` is lcr_recipe.py. Two spectral-norm estimates are provided, the official code's
one-step estimate (`official`) and the converged top singular value (`exact`); see
docs/methods.md §2 and docs/lcr.md for the paper-versus-code differences.

Reference: Shang et al., "Lipschitz Continuity Retained Binary Neural Network", ECCV 2022,
arXiv:2207.06540; official code 42Shawn/LCR_BNN (LCR/imagenet/LCR.py).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .. import functional as F
from ..autograd import Tensor

__all__ = ["VARIANTS", "retention_matrix", "gram", "power_iteration", "spectral_norm_estimate",
           "PowerIterationState", "LCRTerms", "lcr_terms", "lcr_loss", "pair_weights",
           "loss_multiplier", "check_features"]

VARIANTS = ("official", "exact")
_EPS = 1e-30          # inside (||K v||^2 + eps)^(1/4): keeps the gradient finite at K = 0


# --------------------------------------------------------------------------- shapes
def _as_4d(f: Tensor) -> Tensor:
    """(N, D) stage features (an MLP's) are read as (N, D, 1, 1) maps."""
    return f.reshape(f.shape[0], f.shape[1], 1, 1) if f.ndim == 2 else f


def check_features(features: Sequence[Tensor], name: str = "features") -> None:
    """Stage features must be >= 2 tensors (N, C, H, W) or (N, D), one N, non-increasing H, W."""
    if len(features) < 2:
        raise ValueError(f"LCR needs at least 2 stage features in {name}, got {len(features)}")
    shapes = [tuple(f.shape) for f in features]
    if any(len(s) not in (2, 4) for s in shapes):
        raise ValueError(f"{name}: every stage must be (N, C, H, W) or (N, D), got shapes {shapes}")
    if len({s[0] for s in shapes}) != 1:
        raise ValueError(f"{name}: stages have different batch sizes, shapes {shapes}")
    sizes = [s[2:] if len(s) == 4 else (1, 1) for s in shapes]
    for i in range(len(sizes) - 1):
        if sizes[i + 1][0] > sizes[i][0] or sizes[i + 1][1] > sizes[i][1]:
            raise ValueError(f"{name}: stage {i + 1} {shapes[i + 1]} is spatially larger than "
                             f"stage {i} {shapes[i]}; LCR pairs stages of non-increasing size")


# ------------------------------------------------------------------ retention matrix
def retention_matrix(f_i: Tensor, f_next: Tensor) -> Tensor:
    """RM = X Y^T / P per sample: how stage i's channels co-vary with stage i+1's.

        f_i (N, C_i, H_i, W_i) -> adaptive average pool to (H', W') when larger   (N, C_i, H', W')
        X = f_i as (N, C_i, P),  Y = f_next as (N, C_j, P),  P = H' W'
        RM = X Y^T / P                                                          (N, C_i, C_j)

    (N, D) inputs count as 1x1 maps. Reference: LCR-BNN arXiv:2207.06540 ("retention matrix");
    official LCR.py `retention_matrix`. Differences from the paper: built from stage activations
    (as the official code), not from a layer's weights.
    """
    f_i, f_next = _as_4d(f_i), _as_4d(f_next)
    if f_i.shape[0] != f_next.shape[0]:
        raise ValueError(f"retention_matrix: batch sizes differ, {f_i.shape} vs {f_next.shape}")
    (n, c_i, h, w), (_, c_j, h2, w2) = f_i.shape, f_next.shape
    if h2 > h or w2 > w:
        raise ValueError(f"retention_matrix: the second stage {f_next.shape} is spatially larger "
                         f"than the first {f_i.shape}")
    if (h, w) != (h2, w2):
        f_i = F.adaptive_avg_pool2d(f_i, (h2, w2))            # (N, C_i, H', W')
    p = h2 * w2
    x = f_i.reshape(n, c_i, p)                                 # (N, C_i, P)
    y = f_next.reshape(n, c_j, p)                              # (N, C_j, P)
    return F.matmul(x, y.transpose(0, 2, 1)) / p               # (N, C_i, C_j)


def gram(rm: Tensor) -> Tensor:
    """K = RM RM^T (N, C_i, C_i): symmetric PSD, lambda_max(K) = sigma_max(RM)^2."""
    return F.matmul(rm, rm.transpose(0, 2, 1))


# ------------------------------------------------------------------- power iteration
def power_iteration(k: np.ndarray, v0: np.ndarray, max_steps: int, tol: float | None = None
                    ) -> tuple[np.ndarray, int]:
    """Run v <- K v / ||K v|| from v0 on plain ndarrays (no graph); returns (v, steps taken).

    k (N, C, C) symmetric PSD, v0 (C,) or (N, C). Stops after max_steps, or earlier once every
    sample's unit vector moved by less than `tol` (L2) in one step. A sample with K v = 0 keeps
    its vector. Because K is PSD the iterates do not flip sign, so the change is a fair test.
    """
    v = np.broadcast_to(v0, k.shape[:2]).astype(k.dtype, copy=True)   # (N, C)
    for step in range(1, max_steps + 1):
        m = np.einsum("nij,nj->ni", k, v)                               # K v   (N, C)
        norm = np.linalg.norm(m, axis=1, keepdims=True)                 # (N, 1)
        new = np.where(norm > 0, m / np.where(norm > 0, norm, 1), v)
        change = np.max(np.linalg.norm(new - v, axis=1)) if len(v) else 0.0
        v = new
        if tol is not None and change <= tol:
            return v, step
    return v, max_steps


def _default_tol(dtype) -> float:
    return 1e-11 if np.dtype(dtype) == np.float64 else 1e-6


def _exact_start(c: int, dtype) -> np.ndarray:
    """1/sqrt(C) * (1 + 0.1 r), r fixed N(0,1): the normalised all-ones vector, nudged so it is
    never exactly orthogonal to a top eigenvector such as (1, -1)."""
    v = 1.0 + 0.1 * np.random.default_rng(0).standard_normal(c)
    return (v / np.linalg.norm(v)).astype(dtype)


class PowerIterationState:
    """Persistent start vectors, one (C,) unit vector per key ("binary.0", "real.2", ...).

    As spectral-norm regularisers do (Miyato et al. 2018, arXiv:1802.05957), the next call
    starts where the last one ended, so a few steps per call suffice once training settles.
    The stored vector is the normalised batch mean of the final per-sample vectors.
    """

    def __init__(self):
        self.vectors: dict[str, np.ndarray] = {}

    def start(self, key: str, c: int, dtype) -> np.ndarray:
        v = self.vectors.get(key)
        if v is None or v.shape != (c,):
            return _exact_start(c, dtype)
        return v.astype(dtype)

    def update(self, key: str, v: np.ndarray) -> None:
        # Each v_n is proportional to K_n^t s with K_n PSD, so s . v_n >= 0: the per-sample
        # vectors share the start's orientation and their mean cannot cancel along it.
        mean = v.mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm > 0:
            self.vectors[key] = (mean / norm).astype(np.float64)

    def state_dict(self) -> dict:
        return {key: v.copy() for key, v in self.vectors.items()}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = {key: np.asarray(v, dtype=np.float64).copy() for key, v in state.items()}


def spectral_norm_estimate(k: Tensor, variant: str = "official", max_steps: int | None = None,
                           tol: float | None = None, state: PowerIterationState | None = None,
                           key: str = "") -> Tensor:
    """Per-sample estimate of sigma_max(RM) from K = RM RM^T (N, C, C) -> (N,).

        official:  v = 1 (all ones, NOT normalised), no extra steps;   sigma = ||K 1||^(1/2)
        exact:     v = unit start, power_iteration to `tol` (at most max_steps=1000);
                   sigma = ||K v||^(1/2) = sqrt(lambda_max(K)) = sigma_max(RM) at convergence

    The power-iteration steps run on ndarrays (no graph); the returned estimate is the
    differentiable ||K v||^(1/2) with v held constant. For `official` there is no iterated
    vector: ||K 1|| is differentiated through K, which is exactly the official code's gradient.
    For `exact` at convergence the gradient is the true one, u v^T w.r.t. RM (a stationary
    Rayleigh quotient, so v's own dependence on K contributes nothing).
    `state` (exact only) carries the start vector between calls under `key`; with it, a small
    max_steps gives the cheap spectral-norm-regulariser estimate (a lower bound).
    Official values: sigma(I_C) = C^(1/4), sigma(c 11^T) = sqrt(c) C^(3/4) (true: sqrt(c C)).
    Reference: official LCR.py `TopEigenvalue(K, n_power_iterations=1)`; docs/methods.md §2.1.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown LCR variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    n, c, c2 = k.shape
    if c != c2:
        raise ValueError(f"spectral_norm_estimate: K must be square (N, C, C), got {k.shape}")
    if variant == "official":
        if state is not None or max_steps not in (None, 0):
            raise ValueError("the official variant is one step from the all-ones vector; "
                             "max_steps and a persistent state apply to variant='exact' only")
        v = np.ones((n, c), dtype=k.dtype)                               # unnormalised 1
    else:
        start = state.start(key, c, k.dtype) if state is not None else _exact_start(c, k.dtype)
        steps = 1000 if max_steps is None else max_steps
        v, _ = power_iteration(k.data, start, steps, _default_tol(k.dtype) if tol is None else tol)
        if state is not None:
            state.update(key, v)
    m = F.matmul(k, Tensor(v[:, :, None]))                               # K v   (N, C, 1)
    return F.sqrt(F.sqrt((m * m).sum(axis=(1, 2)) + _EPS))              # ||K v||^(1/2)  (N,)


# ----------------------------------------------------------------------------- loss
class LCRTerms(NamedTuple):
    loss: Tensor                 # scalar L_LCR (before the alpha / (B * 1e4) multiplier)
    pair_losses: list            # per pair: mean_n (sigma_bin - sigma_real)^2, scalar Tensors
    sigma_binary: list           # per pair: (N,) estimates on the binary side (gammas applied)
    sigma_real: list             # per pair: (N,) estimates on the reference side
    weights: list                # per pair: 2^-(n-1-i)


def pair_weights(num_stages: int) -> list[float]:
    """2^-(n-1-i) for pairs i = 0..n-2: the last pair weighs 1/2, each earlier one half as much."""
    return [2.0 ** -(num_stages - 1 - i) for i in range(num_stages - 1)]


def loss_multiplier(alpha: float = 8.0, batch_size: int = 128, divisor: float | None = None) -> float:
    """The official total-loss factor alpha / (B_cfg * 1e4), or alpha / divisor when given.

    alpha = 8 and B = 128 are the README's values (-> 6.25e-6); B is the configured batch size.
    """
    return alpha / (divisor if divisor is not None else batch_size * 1e4)


def lcr_terms(binary_features: Sequence[Tensor], real_features: Sequence[Tensor],
              variant: str = "official", gammas: Tensor | None = None,
              max_steps: int | None = None, tol: float | None = None,
              state: PowerIterationState | None = None) -> LCRTerms:
    """All the pieces of L_LCR (see lcr_loss); the recipe logs the per-pair estimates."""
    binary_features, real_features = list(binary_features), list(real_features)
    check_features(binary_features, "binary_features")
    check_features(real_features, "real_features")
    b_shapes = [tuple(f.shape) for f in binary_features]
    r_shapes = [tuple(f.shape) for f in real_features]
    if len(b_shapes) != len(r_shapes):
        raise ValueError(f"binary and real feature lists differ in length: {len(b_shapes)} "
                         f"stages {b_shapes} vs {len(r_shapes)} stages {r_shapes}")
    if b_shapes != r_shapes:
        raise ValueError(f"binary and real stage shapes differ: {b_shapes} vs {r_shapes}")
    n_stages = len(b_shapes)
    if gammas is not None:
        if tuple(gammas.shape) != (n_stages,):
            raise ValueError(f"gammas must have shape ({n_stages},), one per stage, "
                             f"got {tuple(gammas.shape)}")
        binary_features = [f * gammas[i] for i, f in enumerate(binary_features)]
    weights = pair_weights(n_stages)
    loss, pair_losses, sig_b, sig_r = None, [], [], []
    for i, w in enumerate(weights):
        kb = gram(retention_matrix(binary_features[i], binary_features[i + 1]))   # (N, C_i, C_i)
        kr = gram(retention_matrix(real_features[i], real_features[i + 1]))
        sb = spectral_norm_estimate(kb, variant, max_steps, tol, state, f"binary.{i}")  # (N,)
        sr = spectral_norm_estimate(kr, variant, max_steps, tol, state, f"real.{i}")
        diff = sb - sr
        term = (diff * diff).mean()                                # F.mse_loss: batch mean
        loss = term * w if loss is None else loss + term * w
        pair_losses.append(term)
        sig_b.append(sb)
        sig_r.append(sr)
    return LCRTerms(loss, pair_losses, sig_b, sig_r, weights)


def lcr_loss(binary_features: Sequence[Tensor], real_features: Sequence[Tensor],
             variant: str = "official", gammas: Tensor | None = None,
             max_steps: int | None = None, tol: float | None = None,
             state: PowerIterationState | None = None) -> Tensor:
    """The Lipschitz retention loss between a BNN's stage features and a reference network's.

        f^B_i <- gamma_i f^B_i                                (one learnable scalar per stage)
        sigma^X_{i,n} = spectral_norm_estimate(K(RM(f^X_i, f^X_{i+1}))_n)    X in {B, R}
        L_LCR = sum_{i=0}^{n-2} 2^-(n-1-i) * 1/N sum_n (sigma^B_{i,n} - sigma^R_{i,n})^2

    binary_features, real_features: lists of n >= 2 stage outputs with equal shapes
    (N, C_i, H_i, W_i), H and W non-increasing (or (N, D_i)); pass the real ones detached.
    The training loss is CE + loss_multiplier(alpha, B) * L_LCR (alpha = 8, official).
    Defaults match the official code: variant="official", weights 1/8, 1/4, 1/2 for 4 stages.

    Reference: Shang et al., ECCV 2022, arXiv:2207.06540; official LCR.py `LCR.forward`.
    Differences from the paper: stage pairs instead of every layer, the C^(1/4)-biased one-step
    estimate (variant="official"; "exact" converges), a separate reference network; see
    docs/lcr.md for the full table.
    """
    return lcr_terms(binary_features, real_features, variant, gammas, max_steps, tol, state).loss

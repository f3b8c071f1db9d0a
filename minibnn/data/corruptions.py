"""Seeded image corruptions at 5 severities, for robustness tables (in the spirit of ImageNet-C).

`corrupt(x, name, severity, rng)` maps float images in [0, 1], x (N, C, H, W), to corrupted images
of the same shape and dtype, clipped to [0, 1]. Each corruption is one formula with one parameter
per severity (`CORRUPTIONS[name].levels`); noise levels follow the CIFAR-10-C choices, geometric
ones the MNIST-C ideas. Leaves out: corruptions that need PIL, JPEG, or texture assets (fog, frost,
snow, spatter, jpeg), elastic transforms and motion/zoom blur.

References: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations", ICLR 2019, arXiv:1903.12261; Mu & Gilmer, "MNIST-C", arXiv:1906.02337.
Differences: brightness adds to all channels instead of the HSV value; the geometric corruptions
fill with 0 (black); the parameters are not tuned to match those papers' error rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

__all__ = ["Corruption", "CORRUPTIONS", "corrupt"]


def _gaussian_noise(x, sigma, rng):
    """x + N(0, sigma^2) per element."""
    return x + sigma * rng.standard_normal(x.shape)


def _shot_noise(x, lam, rng):
    """Poisson(lam * x) / lam: photon noise, relative std 1 / sqrt(lam * x); smaller lam is worse."""
    return rng.poisson(lam * x) / lam


def _impulse_noise(x, amount, rng):
    """Salt and pepper: each element becomes 0 or 1 (equally likely) with probability `amount`."""
    u = rng.random(x.shape)
    return np.where(u < amount / 2, 0.0, np.where(u < amount, 1.0, x))


def _speckle_noise(x, sigma, rng):
    """x + x * N(0, sigma^2): multiplicative noise, invisible on black pixels."""
    return x + x * sigma * rng.standard_normal(x.shape)


def _gaussian_blur(x, sigma, rng):
    """Gaussian filter over H and W with std `sigma` pixels, mirrored edges (scipy 'reflect')."""
    return ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="reflect")


def _contrast(x, c, rng):
    """(x - m) * c + m, m the per-image, per-channel mean over H, W; c < 1 flattens toward m."""
    m = x.mean(axis=(2, 3), keepdims=True)  # (N, C, 1, 1)
    return (x - m) * c + m


def _brightness(x, b, rng):
    """x + b on every channel (ImageNet-C adds b to the HSV value instead)."""
    return x + b


def _box_then_nearest(size: int, keep: float) -> np.ndarray:
    """(size, size) matrix: box-average down to max(1, int(size * keep)) cells, nearest back up."""
    s = max(1, int(size * keep))
    edges = np.arange(s + 1) * size / s                                  # cell j covers [e_j, e_j+1)
    i = np.arange(size)
    start = np.maximum(i[None, :], edges[:-1, None])                     # (s, size) overlap of
    end = np.minimum(i[None, :] + 1, edges[1:, None])                    # pixel i with cell j
    down = np.clip(end - start, 0, None) / (size / s)                    # (s, size), rows sum to 1
    up = np.zeros((size, s))
    up[i, np.minimum(((i + 0.5) * s / size).astype(int), s - 1)] = 1.0  # (size, s) nearest cell
    return up @ down                                                     # (size, size)


def _pixelate(x, keep, rng):
    """Box-downsample H and W to a fraction `keep` of their size, then upsample (nearest).

    Non-integer ratios alias, so the pixel error is not monotone in `keep` at fine steps on
    28-pixel digits; the levels are spaced so that it is (checked on MNIST and 32x32 images).
    """
    mh, mw = _box_then_nearest(x.shape[2], keep), _box_then_nearest(x.shape[3], keep)
    return mh @ x @ mw.T  # (H, H) @ (N, C, H, W) @ (W, W) -> (N, C, H, W)


def _warp(x: np.ndarray, matrices: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Per-sample affine warp about the image centre, bilinear, zero fill.

    Output pixel o samples the input at  A_n (o - centre) + centre - t_n,  A_n (N, 2, 2), t_n (N, 2).
    """
    centre = (np.array(x.shape[2:]) - 1) / 2
    out = np.empty_like(x)
    for n in range(len(x)):
        matrix = np.eye(3)
        matrix[1:, 1:] = matrices[n]                                     # identity on the channel axis
        offset = np.r_[0.0, centre - matrices[n] @ centre - shifts[n]]
        out[n] = ndimage.affine_transform(x[n], matrix, offset, order=1, mode="constant", cval=0.0)
    return out


def _random_sign(rng, n):
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _rotate(x, degrees, rng):
    """Rotate each image by +-degrees (random sign) about its centre."""
    a = np.deg2rad(degrees) * _random_sign(rng, len(x))
    cos, sin = np.cos(a), np.sin(a)
    return _warp(x, np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1), np.zeros((len(x), 2)))


def _translate(x, fraction, rng):
    """Shift each image by fraction * (H, W) pixels in a uniformly random direction."""
    angle = rng.uniform(0, 2 * np.pi, len(x))
    shifts = fraction * np.array(x.shape[2:]) * np.stack([np.sin(angle), np.cos(angle)], -1)  # (N, 2)
    return _warp(x, np.broadcast_to(np.eye(2), (len(x), 2, 2)), shifts)


def _scale(x, factor, rng):
    """Shrink each image's content by `factor` about the centre (MNIST-C "scale"), zero border."""
    return _warp(x, np.broadcast_to(np.eye(2) / factor, (len(x), 2, 2)), np.zeros((len(x), 2)))


@dataclass(frozen=True)
class Corruption:
    """A corruption formula fn(x, level, rng) and its parameter at severities 1..5."""

    name: str
    fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    levels: tuple[float, float, float, float, float]

    def __call__(self, x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        return corrupt(x, self.name, severity, rng)


# Severity tables: the parameter of each formula above at severities 1, 2, 3, 4, 5.
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("gaussian_noise", _gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),  # sigma
    Corruption("shot_noise", _shot_noise, (500, 250, 100, 75, 50)),                 # lam
    Corruption("impulse_noise", _impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),    # amount
    Corruption("speckle_noise", _speckle_noise, (0.06, 0.10, 0.12, 0.16, 0.20)),    # sigma
    Corruption("gaussian_blur", _gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),         # sigma, pixels
    Corruption("contrast", _contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),                 # c
    Corruption("brightness", _brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),             # b
    Corruption("pixelate", _pixelate, (0.9, 0.8, 0.7, 0.6, 0.45)),                # keep
    Corruption("rotate", _rotate, (6, 12, 18, 24, 30)),                             # degrees
    Corruption("translate", _translate, (0.04, 0.08, 0.12, 0.16, 0.20)),            # fraction
    Corruption("scale", _scale, (0.9, 0.8, 0.7, 0.6, 0.5)),                         # factor
]}


def corrupt(x: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Apply corruption `name` at `severity` (1..5).  x (N, C, H, W) float in [0, 1] -> same, clipped.

    Deterministic given rng. Computes in float64 and returns x's dtype.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected float images (N, C, H, W) in [0, 1], got {x.dtype} {x.shape}")
    c = CORRUPTIONS[name]
    out = c.fn(x.astype(np.float64), c.levels[severity - 1], rng)
    return np.clip(out, 0.0, 1.0).astype(x.dtype)

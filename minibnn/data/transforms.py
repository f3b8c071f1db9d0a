"""Batch image transforms on float32 (N, C, H, W) arrays, vectorised over the batch.

Every random transform takes an explicit `np.random.Generator` and is deterministic given it;
`Compose` chains steps of the form `step(x, rng) -> x`, the signature BatchLoader expects.
`TwoViewAugment` makes the two views of the contrastive methods (MoCo v2 recipe, or the S2-BNN
"lite" probabilities). Leaves out: hue jitter, interpolation modes other than bilinear, and
anything PIL-based; intensity transforms expect values in [0, 1], i.e. before `normalize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "Compose",
    "train_augment",
    "to_float",
    "normalize",
    "pad_random_crop",
    "random_hflip",
    "gaussian_noise",
    "random_resized_crop",
    "color_jitter",
    "random_grayscale",
    "gaussian_blur",
    "standard_augment",
    "TwoViewAugment",
]

Step = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class Compose:
    """Apply steps in order: Compose([f, g])(x, rng) == g(f(x, rng), rng)."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            x = step(x, rng)
        return x


def _per_sample(values: np.ndarray) -> np.ndarray:
    return values.reshape(-1, 1, 1, 1)  # (N,) -> (N, 1, 1, 1), broadcasts over C, H, W


def _apply_with_p(x: np.ndarray, out: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Keep `out` for a random fraction p of the samples and `x` for the rest (exactly)."""
    keep = rng.random(len(x)) < p  # (N,)
    return np.where(_per_sample(keep), out, x).astype(x.dtype, copy=False)


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images (any shape) -> float32 in [0, 1] by x / 255."""
    return x.astype(np.float32) / np.float32(255)


def normalize(x: np.ndarray, mean: Sequence[float] | float, std: Sequence[float] | float) -> np.ndarray:
    """(x - mean[c]) / std[c] per channel.  x (N, C, H, W) float, mean/std of length C or scalars."""
    mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)  # (1, C or 1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def _crop_windows(x: np.ndarray, top: np.ndarray, left: np.ndarray, h: int, w: int) -> np.ndarray:
    """x (N, C, Hp, Wp) -> (N, C, h, w), sample n cut at rows top[n]:top[n]+h, cols left[n]:left[n]+w."""
    n, c = x.shape[:2]
    rows = (top[:, None] + np.arange(h))[:, None, :, None]   # (N, 1, h, 1)
    cols = (left[:, None] + np.arange(w))[:, None, None, :]  # (N, 1, 1, w)
    return x[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


def pad_random_crop(x: np.ndarray, pad: int, rng: np.random.Generator, mode: str = "constant") -> np.ndarray:
    """Pad H and W by `pad` on each side, then crop each sample back to (H, W) at a random offset.

    x (N, C, H, W) -> (N, C, H, W). mode "constant" pads zeros (black before normalize, the mean
    after it); "reflect" mirrors without repeating the edge. Offsets are uniform in [0, 2 * pad].
    """
    n, _, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=mode)  # (N, C, H+2p, W+2p)
    top, left = rng.integers(0, 2 * pad + 1, size=(2, n))
    return _crop_windows(xp, top, left, h, w)


def random_hflip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each sample left-right with probability p.  (N, C, H, W) -> same."""
    return _apply_with_p(x, x[..., ::-1], p, rng)


def gaussian_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """x + std * N(0, 1), elementwise, not clipped.  (N, C, H, W) -> same, same dtype."""
    return (x + std * rng.standard_normal(x.shape)).astype(x.dtype)


def _bilinear_resample(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample x (N, C, H, W) on the per-sample grid ys (N, Ho) x xs (N, Wo) -> (N, C, Ho, Wo)."""
    def lerp_along(a, coords, axis, size):
        coords = np.clip(coords, 0, size - 1)
        lo = np.floor(coords).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        frac = (coords - lo).astype(a.dtype)
        return ((1 - frac) * np.take_along_axis(a, lo, axis=axis)
                + frac * np.take_along_axis(a, hi, axis=axis))
    h, w = x.shape[2:]
    rows = lerp_along(x, ys[:, None, :, None], axis=2, size=h)       # (N, C, Ho, W)
    return lerp_along(rows, xs[:, None, None, :], axis=3, size=w)    # (N, C, Ho, Wo)


def random_resized_crop(x: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """Crop a random box per sample and resize it back to (H, W) with bilinear interpolation.

    Box area = U(scale) * H * W, aspect w/h = exp(U(log ratio)), clipped to the image, at a uniform
    position. x (N, C, H, W) -> same. Differences from torchvision: boxes are clipped rather than
    redrawn up to 10 times, and the box corners are continuous (sub-pixel).
    """
    n, _, h, w = x.shape
    area = rng.uniform(*scale, size=n) * h * w
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=n))
    bh = np.clip(np.sqrt(area / aspect), 1, h)                        # (N,) box height
    bw = np.clip(np.sqrt(area * aspect), 1, w)
    top = rng.uniform(0, 1, size=n) * (h - bh)
    left = rng.uniform(0, 1, size=n) * (w - bw)
    # pixel centres of the output grid mapped into the box (align_corners=False convention)
    ys = top[:, None] + (np.arange(h) + 0.5) * (bh / h)[:, None] - 0.5  # (N, H)
    xs = left[:, None] + (np.arange(w) + 0.5) * (bw / w)[:, None] - 0.5  # (N, W)
    return _bilinear_resample(x, ys, xs).astype(x.dtype)


def _gray(x: np.ndarray) -> np.ndarray:
    """Luma (ITU-R 601) of RGB x (N, 3, H, W) -> (N, 1, H, W); 1-channel input is returned as is."""
    if x.shape[1] != 3:
        return x
    return 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def color_jitter(x: np.ndarray, rng: np.random.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, p: float = 0.8) -> np.ndarray:
    """With probability p per sample, scale brightness, contrast and saturation by U(1-s, 1+s).

        brightness: x * b;   contrast: (x - mean_gray) * c + mean_gray;   saturation: (x - gray) * s + gray
    applied in this fixed order, then clipped to [0, 1]. x (N, C, H, W) in [0, 1] -> same.
    Saturation only acts on 3 channels. Differences from torchvision: fixed order, no hue.
    """
    n = len(x)
    b, c, s = (_per_sample(rng.uniform(1 - k, 1 + k, size=n)) for k in (brightness, contrast, saturation))
    out = x * b
    m = _gray(out).mean(axis=(1, 2, 3), keepdims=True)  # (N, 1, 1, 1) mean luma
    out = (out - m) * c + m
    if x.shape[1] == 3:
        out = (out - _gray(out)) * s + _gray(out)
    return _apply_with_p(x, np.clip(out, 0, 1), p, rng)


def random_grayscale(x: np.ndarray, rng: np.random.Generator, p: float = 0.2) -> np.ndarray:
    """With probability p per sample replace RGB by its luma in all 3 channels.  (N, C, H, W) -> same."""
    if x.shape[1] != 3:
        return x
    return _apply_with_p(x, np.repeat(_gray(x), 3, axis=1), p, rng)


def gaussian_blur(x: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (0.1, 2.0),
                  p: float = 0.5) -> np.ndarray:
    """With probability p per sample, blur with a Gaussian of sigma ~ U(sigma) pixels.

    Separable, with a per-sample kernel of radius min(ceil(3 * max sigma), size - 1) and
    "reflect" padding, as one einsum over sliding windows. x (N, C, H, W) -> same.
    """
    n, _, h, w = x.shape
    sig = rng.uniform(*sigma, size=n)                                 # (N,)
    radius = int(min(np.ceil(3 * sigma[1]), h - 1, w - 1))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps[None, :] / sig[:, None]) ** 2)       # (N, K)
    kernel = (kernel / kernel.sum(axis=1, keepdims=True)).astype(x.dtype)
    pad = ((0, 0), (0, 0), (radius, radius), (radius, radius))
    xp = np.pad(x, pad, mode="reflect")                               # (N, C, H+2r, W+2r)
    win = np.lib.stride_tricks.sliding_window_view(xp, 2 * radius + 1, axis=2)   # (N, C, H, Wp, K)
    rows = np.einsum("nchwk,nk->nchw", win, kernel)                   # (N, C, H, W+2r)
    win = np.lib.stride_tricks.sliding_window_view(rows, 2 * radius + 1, axis=3)  # (N, C, H, W, K)
    out = np.einsum("nchwk,nk->nchw", win, kernel)                    # (N, C, H, W)
    return _apply_with_p(x, out, p, rng)


def standard_augment(mean: Sequence[float], std: Sequence[float], pad: int = 4, flip_p: float = 0.5,
                     pad_mode: str = "constant") -> Compose:
    """The usual supervised recipe on [0, 1] floats: pad + random crop, h-flip, normalize."""
    return Compose([
        lambda x, rng: pad_random_crop(x, pad, rng, mode=pad_mode),
        lambda x, rng: random_hflip(x, rng, p=flip_p),
        lambda x, rng: normalize(x, mean, std),
    ])


def train_augment(mean: Sequence[float], std: Sequence[float], image_size: int,
                  channels: int) -> Compose:
    """The augmentation of `minibnn train --augment`: normalize -> pad + random crop -> h-flip.

    The pad is 4 pixels for images of 32 pixels or more, else 2 (28-pixel MNIST); the flip
    (p = 0.5) is for colour images only (a mirrored digit is another symbol). Unlike
    standard_augment, the image is normalised BEFORE padding, so the padded border is 0 after
    normalisation (the channel mean), not black; training keeps this order so that every run
    and its documented numbers stay reproducible bit for bit.
    """
    steps = [lambda x, rng: normalize(x, mean, std),
             lambda x, rng: pad_random_crop(x, 4 if image_size >= 32 else 2, rng)]
    if channels == 3:
        steps.append(lambda x, rng: random_hflip(x, rng))
    return Compose(steps)


@dataclass
class TwoViewAugment:
    """Two independently augmented views of a [0, 1] float batch, for contrastive methods.

    Per view: random_resized_crop(scale) -> color_jitter(p=jitter_p) -> random_grayscale ->
    gaussian_blur(p=blur_p) -> random_hflip -> normalize (if mean/std are given).
    `moco_v2()` uses MoCo v2's probabilities (jitter 0.8, blur 0.5; Chen et al. 2020,
    arXiv:2003.04297); `lite()` the weaker ones of the official S2-BNN code, main_moco.py
    (jitter 0.6, blur 0.2; Shen et al. 2021, arXiv:2102.08946). Differences: no hue jitter
    (MoCo v2 uses 0.1); blur sigma (0.1..2.0) is in pixels of the small image, not of 224 px.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter: float = 0.4
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_p: float = 0.5
    flip_p: float = 0.5
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    @classmethod
    def moco_v2(cls, **overrides) -> TwoViewAugment:
        return cls(**overrides)

    @classmethod
    def lite(cls, **overrides) -> TwoViewAugment:
        return cls(**{"jitter_p": 0.6, "blur_p": 0.2, **overrides})

    def view(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One augmented view.  x (N, C, H, W) float in [0, 1] -> (N, C, H, W) float32."""
        v = random_resized_crop(x, rng, scale=self.crop_scale)
        v = color_jitter(v, rng, self.jitter, self.jitter, self.jitter, p=self.jitter_p)
        v = random_grayscale(v, rng, p=self.grayscale_p)
        v = gaussian_blur(v, rng, sigma=self.blur_sigma, p=self.blur_p)
        v = random_hflip(v, rng, p=self.flip_p)
        if self.mean is not None:
            v = normalize(v, self.mean, self.std)
        return v.astype(np.float32)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.view(x, rng), self.view(x, rng)

"""The random views of S2-BNN and of MoCo v2 pretraining, on the data layer's transforms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import transforms

__all__ = ["S2BNNAugment"]


@dataclass
class S2BNNAugment:
    """Independent random views of a [0, 1] float batch (N, C, H, W) -> tuple of `views` arrays.

    3 channels: TwoViewAugment's view (resized crop, colour jitter, grayscale, blur, flip) with
    the S2-BNN "lite" probabilities (jitter 0.6, blur 0.2) or MoCo v2's (0.8, 0.5).
    1 channel (MNIST): resized crop, Gaussian pixel noise, flip; nothing to jitter in colour.
    Every view is normalised with mean/std.
    """

    channels: int
    mean: tuple
    std: tuple
    aug: str = "lite"
    crop_min: float = 0.2
    noise: float = 0.1
    flip: float = 0.5
    views: int = 2

    def view(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.channels == 3:
            two = transforms.TwoViewAugment
            make = two.lite if self.aug == "lite" else two.moco_v2
            return make(crop_scale=(self.crop_min, 1.0), flip_p=self.flip, mean=self.mean,
                        std=self.std).view(x, rng)
        v = transforms.random_resized_crop(x, rng, scale=(self.crop_min, 1.0))
        if self.noise:
            v = transforms.gaussian_noise(v, self.noise, rng)
        v = transforms.random_hflip(v, rng, p=self.flip)
        return transforms.normalize(v, self.mean, self.std)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple:
        return tuple(self.view(x, rng) for _ in range(self.views))

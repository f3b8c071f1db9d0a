"""Corruptions: seeded, in range, dtype kept, distortion non-decreasing with severity, clear errors."""

import numpy as np
import pytest
from scipy import ndimage

from minibnn.data import load_dataset
from minibnn.data.corruptions import CORRUPTIONS, corrupt


@pytest.fixture(scope="module")
def digits():
    """64 real MNIST digits (bundled), float32 in [0, 1], (64, 1, 28, 28)."""
    return load_dataset("mnist-t10k").val.x[:64].astype(np.float32) / 255


@pytest.fixture(scope="module")
def colour():
    """32 smooth random colour images, float32 in [0, 1], (32, 3, 32, 32)."""
    x = ndimage.gaussian_filter(np.random.default_rng(0).random((32, 3, 32, 32)), sigma=(0, 0, 1, 1))
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("images", ["digits", "colour"])
def test_distortion_grows_with_severity_and_stays_in_range(name, images, request):
    x = request.getfixturevalue(images)
    errors = []
    for severity in range(1, 6):
        out = corrupt(x, name, severity, np.random.default_rng(0))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0 and out.max() <= 1
        errors.append(np.abs(out - x).mean())
    assert errors[0] > 0
    assert np.all(np.diff(errors) >= 0), np.round(errors, 4)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_generator_seed_gives_same_corruption(name, colour):
    a = corrupt(colour[:4], name, 3, np.random.default_rng(11))
    b = corrupt(colour[:4], name, 3, np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)


def test_noise_differs_across_seeds(colour):
    a = corrupt(colour[:4], "gaussian_noise", 3, np.random.default_rng(1))
    b = corrupt(colour[:4], "gaussian_noise", 3, np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_float64_input_keeps_its_dtype(colour):
    assert corrupt(colour[:2].astype(np.float64), "contrast", 2, np.random.default_rng(0)).dtype == np.float64


def test_contrast_formula_and_severity_table(colour):
    x = colour[:2].astype(np.float64)
    m = x.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(corrupt(x, "contrast", 5, np.random.default_rng(0)), (x - m) * 0.15 + m)
    assert CORRUPTIONS["contrast"].levels == (0.75, 0.5, 0.4, 0.3, 0.15)


def test_pixelate_with_integer_blocks_is_block_average():
    x = np.random.default_rng(0).random((1, 1, 4, 4))
    out = CORRUPTIONS["pixelate"].fn(x, 0.5, None)                    # 4 -> 2 cells of 2 x 2
    blocks = x.reshape(2, 2, 2, 2).mean(axis=(1, 3))                  # (2, 2) means
    np.testing.assert_allclose(out[0, 0], np.kron(blocks, np.ones((2, 2))))


def test_rotate_by_90_degrees_matches_rot90():
    x = np.random.default_rng(0).random((1, 1, 5, 5))
    out = CORRUPTIONS["rotate"].fn(x, 90, np.random.default_rng(0))
    assert any(np.allclose(out[0, 0], np.rot90(x[0, 0], k), atol=1e-12) for k in (1, 3))


@pytest.mark.parametrize("severity", [0, 6, 2.0, True, "3"])
def test_invalid_severity_is_a_clear_error(colour, severity):
    with pytest.raises(ValueError, match=r"severity must be an integer in 1\.\.5, got"):
        corrupt(colour, "contrast", severity, np.random.default_rng(0))


def test_unknown_corruption_lists_valid_names(colour):
    with pytest.raises(ValueError, match="unknown corruption 'fog'; valid names: gaussian_noise, .*pixelate"):
        corrupt(colour, "fog", 1, np.random.default_rng(0))


def test_integer_images_are_rejected():
    with pytest.raises(ValueError, match=r"expected float images \(N, C, H, W\) in \[0, 1\]"):
        corrupt(np.zeros((1, 1, 4, 4), np.uint8), "contrast", 1, np.random.default_rng(0))

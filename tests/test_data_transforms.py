"""Batch transforms (shapes, determinism, identities, scipy oracle) and the seeded BatchLoader."""

import json

import numpy as np
import pytest
from scipy import ndimage

from minibnn.data import transforms as T
from minibnn.data.loader import BatchLoader


@pytest.fixture
def images(rng):
    return rng.random((6, 3, 10, 12)).astype(np.float32)  # H != W catches swapped axes


RANDOM_TRANSFORMS = {
    "crop_constant": lambda x, r: T.pad_random_crop(x, 3, r),
    "crop_reflect": lambda x, r: T.pad_random_crop(x, 3, r, mode="reflect"),
    "hflip": T.random_hflip,
    "noise": lambda x, r: T.gaussian_noise(x, 0.1, r),
    "resized_crop": T.random_resized_crop,
    "jitter": T.color_jitter,
    "grayscale": lambda x, r: T.random_grayscale(x, r, p=0.5),
    "blur": T.gaussian_blur,
    "standard": T.standard_augment((0.5, 0.4, 0.3), (0.2, 0.2, 0.2)),
}


@pytest.mark.parametrize("name", RANDOM_TRANSFORMS)
def test_random_transforms_keep_shape_dtype_and_are_seeded(images, name):
    f = RANDOM_TRANSFORMS[name]
    a = f(images, np.random.default_rng(5))
    b = f(images, np.random.default_rng(5))
    assert a.shape == images.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_to_float_and_normalize():
    x = np.array([0, 51, 255], np.uint8).reshape(1, 3, 1, 1)
    f = T.to_float(x)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f.ravel(), [0, 0.2, 1])
    np.testing.assert_allclose(T.normalize(f, (0.0, 0.1, 0.5), (1.0, 0.1, 0.25)).ravel(), [0, 1, 2], rtol=1e-6)


def test_crop_with_zero_pad_is_identity(images, rng):
    np.testing.assert_array_equal(T.pad_random_crop(images, 0, rng), images)


def test_crop_is_a_shifted_window_of_the_padded_image(images):
    out = T.pad_random_crop(images, 2, np.random.default_rng(1))
    top, left = np.random.default_rng(1).integers(0, 5, size=(2, len(images)))  # the offsets drawn
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for n in range(len(images)):
        np.testing.assert_array_equal(out[n], padded[n, :, top[n]:top[n] + 10, left[n]:left[n] + 12])


def test_flip_twice_with_the_same_seed_is_identity(images):
    once = T.random_hflip(images, np.random.default_rng(3))
    assert not np.array_equal(once, images)
    np.testing.assert_array_equal(T.random_hflip(once, np.random.default_rng(3)), images)
    np.testing.assert_array_equal(T.random_hflip(images, np.random.default_rng(3), p=1.0), images[..., ::-1])


@pytest.mark.parametrize("transform", [T.color_jitter, T.gaussian_blur, T.random_hflip, T.random_grayscale])
def test_probability_zero_is_identity(images, rng, transform):
    np.testing.assert_array_equal(transform(images, rng, p=0.0), images)


def test_resized_crop_of_the_whole_image_is_identity(images, rng):
    out = T.random_resized_crop(images, rng, scale=(1.0, 1.0), ratio=(12 / 10, 12 / 10))
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_blur_matches_scipy_gaussian_filter(images):
    out = T.gaussian_blur(images, np.random.default_rng(2), sigma=(0.5, 1.5), p=1.0)
    sig = np.random.default_rng(2).uniform(0.5, 1.5, size=len(images))
    for n, s in enumerate(sig):  # kernel radius ceil(3 * 1.5) = 5, numpy "reflect" == scipy "mirror"
        ref = ndimage.gaussian_filter(images[n].astype(np.float64), (0, s, s), mode="mirror", truncate=5 / s)
        np.testing.assert_allclose(out[n], ref, atol=1e-6)


def test_jitter_keeps_range_and_grayscale_gives_equal_channels(images, rng):
    out = T.color_jitter(images, rng, 0.8, 0.8, 0.8, p=1.0)
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, images)
    gray = T.random_grayscale(images, rng, p=1.0)
    np.testing.assert_array_equal(gray[:, 0], gray[:, 2])


def test_single_channel_jitter_changes_only_brightness_and_contrast(rng):
    x = rng.random((4, 1, 8, 8)).astype(np.float32)
    out = T.color_jitter(x, rng, brightness=0.0, contrast=0.0, saturation=0.9, p=1.0)
    np.testing.assert_allclose(out, x, atol=1e-6)


@pytest.mark.parametrize("make, jitter_p, blur_p", [(T.TwoViewAugment.moco_v2, 0.8, 0.5),
                                                   (T.TwoViewAugment.lite, 0.6, 0.2)])
def test_two_views_differ_and_follow_the_recipe(images, make, jitter_p, blur_p):
    aug = make(mean=(0.5,) * 3, std=(0.25,) * 3)
    assert (aug.jitter_p, aug.blur_p) == (jitter_p, blur_p)
    v1, v2 = aug(images, np.random.default_rng(0))
    w1, w2 = aug(images, np.random.default_rng(0))
    assert v1.shape == v2.shape == images.shape and v1.dtype == np.float32
    assert not np.array_equal(v1, v2)
    np.testing.assert_array_equal(v1, w1)
    np.testing.assert_array_equal(v2, w2)


# ---------------------------------------------------------------------------------------------
# BatchLoader


def make_loader(n=23, batch_size=5, seed=0, **kw):
    x = np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)
    return BatchLoader(x, np.arange(n) % 3, batch_size, rng=seed, **kw)


@pytest.mark.parametrize("drop_last, n_batches", [(False, 5), (True, 4)])
def test_each_epoch_covers_every_index_once(drop_last, n_batches):
    loader = make_loader(drop_last=drop_last)
    assert len(loader) == n_batches
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == n_batches
        idx = np.concatenate([b[2] for b in batches])
        if drop_last:
            assert len(idx) == 20 and len(np.unique(idx)) == 20
        else:
            np.testing.assert_array_equal(np.sort(idx), np.arange(23))
    assert loader.epoch == 2


def test_batches_hold_the_indexed_samples_as_float32():
    loader = make_loader()
    xb, yb, idx = next(iter(loader))
    assert xb.dtype == np.float32 and yb.dtype == np.int64 and idx.dtype == np.int64
    np.testing.assert_array_equal(xb, loader.x[idx] / np.float32(255))
    np.testing.assert_array_equal(yb, idx % 3)


def test_shuffle_changes_per_epoch_and_is_seeded():
    a, b = make_loader(seed=7), make_loader(seed=7)
    first, second = [np.concatenate([i for _, _, i in a]) for _ in range(2)]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, np.concatenate([i for _, _, i in b]))
    unshuffled = np.concatenate([i for _, _, i in make_loader(shuffle=False)])
    np.testing.assert_array_equal(unshuffled, np.arange(23))


@pytest.mark.parametrize("stop_after", [0, 2, 5, 7])  # start, mid-epoch, epoch end, next epoch
def test_state_round_trip_resumes_bit_exactly(stop_after):
    transform = T.standard_augment((0.5,), (0.5,), pad=1)
    reference = make_loader(seed=3, transform=transform)
    expected = [b for _ in range(3) for b in reference]

    first = make_loader(seed=3, transform=transform)
    seen = []
    while len(seen) < stop_after:
        for batch in first:
            seen.append(batch)
            if len(seen) == stop_after:
                break
    state = json.loads(json.dumps(first.state_dict()))  # must survive a JSON checkpoint

    resumed = make_loader(seed=99, transform=transform)  # a different seed: state must override it
    resumed.load_state_dict(state)
    while len(seen) < len(expected):
        seen.extend(resumed)
    for (xa, ya, ia), (xb, yb, ib) in zip(seen, expected):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)


def test_loader_yields_two_views_from_a_two_view_transform():
    x = np.random.default_rng(0).integers(0, 256, (8, 3, 8, 8), dtype=np.uint8)
    loader = BatchLoader(x, np.zeros(8), 4, rng=0, transform=T.TwoViewAugment.lite())
    (v1, v2), yb, idx = next(iter(loader))
    assert v1.shape == v2.shape == (4, 3, 8, 8)


def test_loader_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="x holds 3 samples but y holds 2"):
        BatchLoader(np.zeros((3, 1, 2, 2)), np.zeros(2), 2)


def test_eval_loader_normalises_in_order_and_respects_limit():
    from minibnn.data import Dataset, eval_loader

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(7, 2, 4, 4), dtype=np.uint8)
    split = Dataset(x, np.arange(7) % 3, ("a", "b", "c"), "toy", (0.5, 0.25), (0.2, 0.4))
    batches = list(eval_loader(split, batch_size=3, limit=5))
    assert [len(b[1]) for b in batches] == [3, 2]
    got = np.concatenate([b[0] for b in batches])
    want = (x[:5] / np.float32(255) - np.float32([0.5, 0.25])[:, None, None]) \
        / np.float32([0.2, 0.4])[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), np.arange(5))


def _training_transform_of_0_1(x, rng, mean, std):
    """The per-batch transform `minibnn train --augment` used in 0.1.0 (train/runner.py), kept
    here verbatim as the oracle of train_augment."""
    mean, std = np.array(mean, np.float32), np.array(std, np.float32)
    x = T.normalize(x, mean, std)
    x = T.pad_random_crop(x, 4 if x.shape[-1] >= 32 else 2, rng)
    if x.shape[1] == 3:
        x = T.random_hflip(x, rng)
    return x


@pytest.mark.parametrize("shape", [(9, 3, 32, 32), (9, 1, 28, 28), (9, 3, 16, 16), (9, 1, 40, 40)])
def test_train_augment_equals_the_training_transform_bit_for_bit(shape):
    rng = np.random.default_rng(5)
    x = rng.random(shape).astype(np.float32)
    mean, std = (0.49, 0.48, 0.45)[:shape[1]], (0.25, 0.24, 0.26)[:shape[1]]
    augment = T.train_augment(np.array(mean, np.float32), np.array(std, np.float32), shape[-1],
                              shape[1])
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(3):                                   # the generators stay in step, too
        got, want = augment(x, a), _training_transform_of_0_1(x, b, mean, std)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    assert a.bit_generator.state == b.bit_generator.state

"""engine/bitpack.py: bit order, tail bits, sign(0) = +1, and the -0.0 convention."""

import numpy as np
import pytest

from minibnn.engine import bitpack


def random_pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("k", [1, 3, 63, 64, 65, 130, 200])
def test_pack_unpack_round_trip(k, rng):
    x = random_pm1(rng, (4, 3, k))
    words = bitpack.pack_bits(x)
    assert words.dtype == np.uint64 and words.shape == (4, 3, bitpack.n_words(k))
    np.testing.assert_array_equal(bitpack.unpack_bits(words, k), x)


@pytest.mark.parametrize("k", [1, 3, 63, 65, 130, 200])
def test_tail_bits_are_zero(k):
    words = bitpack.pack_bits(-np.ones((2, k)))                  # every real bit set
    tail = k - 64 * (words.shape[-1] - 1)                        # bits used in the last word
    expected_last = np.uint64((1 << tail) - 1) if tail < 64 else np.uint64(2**64 - 1)
    np.testing.assert_array_equal(words[:, -1], expected_last)


def test_bit_order_element_64w_plus_b_is_bit_b_of_word_w():
    x = np.ones(130)
    x[[0, 5, 64, 129]] = -1
    words = bitpack.pack_bits(x)
    assert words.tolist() == [(1 << 0) | (1 << 5), 1 << 0, 1 << 1]


def test_sign_of_zero_is_plus_one_and_floats_pack_by_sign():
    x = np.array([0.0, -0.5, 2.0, -3.0, 1e-30, -1e-30])
    np.testing.assert_array_equal(bitpack.unpack_bits(bitpack.pack_bits(x), 6),
                                  [1, -1, 1, -1, 1, -1])


def test_negative_zero_packs_as_plus_one():
    # -0.0 < 0 is False in IEEE 754, so -0.0 is +1 like 0.0 (the sign *bit* of -0.0 is set,
    # which is why the packer compares instead of reading sign bits).
    words = bitpack.pack_bits(np.array([-0.0, 0.0], np.float32))
    assert int(words[0]) == 0


def test_integer_inputs_pack_like_floats(rng):
    x = random_pm1(rng, (5, 70))
    np.testing.assert_array_equal(bitpack.pack_bits(x.astype(np.int8)), bitpack.pack_bits(x))


def test_pack_rows_and_pack_nhwc_layouts(rng):
    x = random_pm1(rng, (2, 65, 3, 4))                           # (N, C, H, W)
    nhwc = bitpack.pack_nhwc(x)
    assert nhwc.shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(nhwc, bitpack.pack_nhwc(x.transpose(0, 2, 3, 1), layout="NHWC"))
    np.testing.assert_array_equal(bitpack.unpack_bits(nhwc, 65), x.transpose(0, 2, 3, 1))
    m = random_pm1(rng, (3, 100))
    np.testing.assert_array_equal(bitpack.pack_rows(m), bitpack.pack_bits(m))


@pytest.mark.parametrize("shape", [(1, 64, 1, 2), (1, 128, 2, 1), (1, 64, 1, 1), (2, 70, 1, 3)])
def test_pack_nhwc_with_unit_sized_axes(shape, rng):
    """N = 1 with H or W = 1 once made np.packbits return a strided array the word view refused."""
    x = rng.normal(size=shape)
    nhwc = np.moveaxis(x, 1, -1)
    np.testing.assert_array_equal(bitpack.pack_nhwc(x), bitpack.pack_bits(nhwc))
    np.testing.assert_array_equal(bitpack.unpack_bits(bitpack.pack_nhwc(x), shape[1]),
                                  np.where(nhwc < 0, -1.0, 1.0))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="uint64"):
        bitpack.unpack_bits(np.zeros((2, 1), np.int64), 3)
    with pytest.raises(ValueError, match="needs 2 words.*found 1"):
        bitpack.unpack_bits(np.zeros((2, 1), np.uint64), 65)
    with pytest.raises(ValueError, match="2-D"):
        bitpack.pack_rows(np.ones(5))
    with pytest.raises(ValueError, match="layout"):
        bitpack.pack_nhwc(np.ones((1, 1, 1, 1)), layout="CHWN")

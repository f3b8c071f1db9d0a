"""IDX and CIFAR readers on small files written here in the original formats, and the MD5 table."""

import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest

from minibnn.data import formats
from minibnn.data.datasets import BUNDLED_DIR
from minibnn.data.formats import DataError


def write_idx(path, arr, type_code=0x08, compress=False):
    """Write arr in IDX: 0x00 0x00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    raw = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += np.asarray(arr, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_cifar(path, x, y, label_key="labels"):
    """A CIFAR-style pickle: data (N, 3072) uint8 rows of R, G, B planes, labels as a list."""
    with open(path, "wb") as f:
        pickle.dump({"batch_label": "test", "data": x.reshape(len(x), -1), label_key: list(y)}, f)
    return path


# ---------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("compress", [False, True])
def test_idx_images_and_labels_round_trip(tmp_path, rng, compress):
    images = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)  # non-square: H and W not swapped
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    x = formats.read_idx_images(write_idx(tmp_path / "img", images, compress=compress))
    y = formats.read_idx_labels(write_idx(tmp_path / "lbl", labels, compress=compress))
    assert x.shape == (7, 1, 5, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], images)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize("type_code", [0x0C, 0x0D])
def test_idx_wider_types_are_read_big_endian(tmp_path, type_code):
    arr = np.array([[1, -2, 300], [70000, 5, -6]], dtype=np.float32 if type_code == 0x0D else np.int32)
    got = formats.read_idx(write_idx(tmp_path / "a", arr, type_code=type_code))
    np.testing.assert_array_equal(got, arr)
    assert got.dtype.isnative


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_idx_names_file_and_byte_counts(tmp_path, rng, compress):
    raw = write_idx(tmp_path / "full", rng.integers(0, 256, size=(4, 6, 6), dtype=np.uint8)).read_bytes()
    cut = raw[:-10]  # 4 magic + 12 dims + 144 data = 160 bytes, keep 150
    path = tmp_path / ("cut.gz" if compress else "cut")
    path.write_bytes(gzip.compress(cut) if compress else cut)
    with pytest.raises(DataError) as err:
        formats.read_idx_images(path)
    msg = str(err.value)
    assert str(path) in msg and "(4, 6, 6)" in msg and "160 bytes" in msg and "found 150" in msg and "truncated" in msg


def test_truncated_gzip_stream_is_a_data_error(tmp_path, rng):
    path = write_idx(tmp_path / "a.gz", rng.integers(0, 256, size=(50, 8, 8), dtype=np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="gzip"):
        formats.read_idx(path)


def test_corrupted_gzip_crc_is_a_data_error(tmp_path):
    path = write_idx(tmp_path / "a.gz", np.zeros((3, 4, 4), np.uint8), compress=True)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupt or truncated gzip"):
        formats.read_idx(path)


def test_wrong_magic_names_expected_and_found(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(5, dtype=np.uint8))
    with pytest.raises(DataError) as err:
        formats.read_idx_images(path)
    assert str(path) in str(err.value) and "0x00000803" in str(err.value) and "0x00000801" in str(err.value)


@pytest.mark.parametrize("content", [b"\x01", b"PK\x03\x04 not an idx file", b"\x00\x00\x42\x01abcd"])
def test_non_idx_bytes_are_rejected(tmp_path, content):
    path = tmp_path / "junk"
    path.write_bytes(content)
    with pytest.raises(DataError, match="junk"):
        formats.read_idx(path)


def test_idx_header_shorter_than_its_dims(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 10))  # 3 dims announced, 1 given
    with pytest.raises(DataError, match="needs 16 bytes, found 8"):
        formats.read_idx(path)


# ---------------------------------------------------------------------------------------------
# CIFAR pickles


@pytest.mark.parametrize("label_key", ["labels", "fine_labels"])
def test_cifar_batch_layout_is_channel_planes(tmp_path, rng, label_key):
    x = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    y = [2, 0, 99]
    got_x, got_y = formats.read_cifar_batch(write_cifar(tmp_path / "b", x, y, label_key))
    assert got_x.shape == (3, 3, 32, 32) and got_x.dtype == np.uint8 and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    flat = x.reshape(3, -1)
    assert got_x[1, 2, 5, 7] == flat[1, 2 * 1024 + 5 * 32 + 7]  # blue plane, row 5, column 7


def test_truncated_cifar_pickle_is_a_data_error(tmp_path, rng):
    path = write_cifar(tmp_path / "data_batch_1", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), [1] * 4)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_1.*truncated or corrupt"):
        formats.read_cifar_batch(path)


def test_cifar_pickle_missing_keys_lists_what_was_found(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "coarse": [0]}))
    with pytest.raises(DataError, match=r"'labels' or 'fine_labels', found \['coarse', 'data'\]"):
        formats.read_cifar_batch(path)


def test_cifar_pickle_with_wrong_row_length(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 1000), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError, match=r"uint8 \(N, 3072\), found uint8 \(2, 1000\)"):
        formats.read_cifar_batch(path)


@pytest.mark.parametrize("key", ["label_names", "fine_label_names"])
def test_cifar_meta_class_names(tmp_path, key):
    path = tmp_path / "meta"
    path.write_bytes(pickle.dumps({key: ["apple", "bee"], "num_vis": 3072}))
    assert formats.read_cifar_meta(path) == ["apple", "bee"]


# ---------------------------------------------------------------------------------------------
# MD5


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_md5sum_matches_hashlib_for_any_chunk_size(tmp_path, rng, chunk_size):
    data = rng.integers(0, 256, size=1000, dtype=np.uint8).tobytes()
    (tmp_path / "f").write_bytes(data)
    assert formats.md5sum(tmp_path / "f", chunk_size=chunk_size) == hashlib.md5(data).hexdigest()


def test_check_md5_mismatch_names_file_expected_and_actual(tmp_path):
    (tmp_path / "f").write_bytes(b"hello")
    formats.check_md5(tmp_path / "f", "5D41402ABC4B2A76B9719D911017C592")  # case-insensitive
    with pytest.raises(DataError) as err:
        formats.check_md5(tmp_path / "f", "0" * 32)
    assert str(tmp_path / "f") in str(err.value)
    assert "0" * 32 in str(err.value) and "5d41402abc4b2a76b9719d911017c592" in str(err.value)


def test_published_md5_table_is_complete_and_well_formed():
    sizes = {folder: len(table) for folder, table in formats.PUBLISHED_MD5.items()}
    assert sizes == {"mnist": 4, "fashion-mnist": 4, "cifar-10-batches-py": 8, "cifar-100-python": 4}
    for table in formats.PUBLISHED_MD5.values():
        for digest in table.values():
            assert len(digest) == 32 and int(digest, 16) >= 0 and digest == digest.lower()


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_bundled_files_match_published_md5(name):
    assert formats.md5sum(BUNDLED_DIR / name) == formats.PUBLISHED_MD5["mnist"][name]


# ---------------------------------------------------------------------------------------------
# The real files in ../shared/data (skipped without them)


def test_shared_files_match_published_md5(shared_data):
    for folder in ("mnist", "fashion-mnist"):
        for path in sorted((shared_data / folder).glob("*.gz")):
            assert formats.md5sum(path) == formats.PUBLISHED_MD5[folder][path.name], path


def test_shared_label_files_parse_with_documented_class_counts(shared_data):
    y = formats.read_idx_labels(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(np.bincount(y), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    for name, n in [("train-labels-idx1-ubyte.gz", 6000), ("t10k-labels-idx1-ubyte.gz", 1000)]:
        np.testing.assert_array_equal(np.bincount(formats.read_idx_labels(shared_data / "fashion-mnist" / name)),
                                      [n] * 10)


def test_shared_cifar10_meta_class_names(shared_data):
    names = formats.read_cifar_meta(shared_data / "cifar-10" / "cifar-10-batches-py" / "batches.meta")
    assert names[0] == "airplane" and names[-1] == "truck" and len(names) == 10

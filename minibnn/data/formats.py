"""Readers for the original dataset distribution formats, and MD5 checks.

IDX (MNIST, Fashion-MNIST; raw or gzip) and the CIFAR-10/100 "python version" pickles, read
straight from the files the maintainers publish. Every malformed input raises `DataError` naming
the file, what was expected and what was found. Leaves out: downloading (data_scripts/), locating
files (datasets.py), and the CIFAR binary (.bin) and MATLAB versions.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zlib

import numpy as np

__all__ = [
    "DataError",
    "PUBLISHED_MD5",
    "md5sum",
    "check_md5",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "read_cifar_batch",
    "read_cifar_meta",
]

PathLike = str | os.PathLike


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or does not match its published checksum."""


# Per-file MD5 sums published for the dataset files: MNIST as listed in torchvision's
# MNIST.resources, Fashion-MNIST from the zalandoresearch/fashion-mnist README, CIFAR (data
# batches and the metadata files batches.meta / meta) from torchvision's cifar.py. Keys are the
# folder names the download script writes.
PUBLISHED_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar-10-batches-py": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar-100-python": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}


# ---------------------------------------------------------------------------------------------
# Checksums


def md5sum(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in `chunk_size` pieces so large archives never sit in memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: PathLike, expected: str) -> None:
    """Raise DataError unless md5sum(path) == expected (case-insensitive hex)."""
    actual = md5sum(path)
    if actual != expected.lower():
        raise DataError(
            f"{path}: MD5 mismatch, expected {expected.lower()} but found {actual} "
            f"({os.path.getsize(path):,} bytes); the file is corrupt, truncated or a different version"
        )


# ---------------------------------------------------------------------------------------------
# IDX: magic = 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 dims, then the data.

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: PathLike) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic 1f 8b."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:  # truncated stream / bad CRC / bad deflate data
        raise DataError(f"{path}: corrupt or truncated gzip stream "
                        f"({len(raw):,} bytes on disk): {err}") from err


def read_idx(path: PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into an array with the header's shape, in native byte order.

    MNIST uses magic 0x00000801 (uint8 vector, labels) and 0x00000803 (uint8 N x H x W, images).
    Raises DataError for a wrong magic, an unknown type code, or a byte count that does not match
    prod(dims) * itemsize (truncated or padded files).
    """
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataError(f"{path}: IDX header needs 4 magic bytes, found a {len(buf)}-byte file")
    magic = int.from_bytes(buf[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: expected IDX magic {expected_magic:#010x}, found {magic:#010x}")
    type_code, ndim = buf[2], buf[3]
    if buf[:2] != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file, magic {magic:#010x} "
                        f"(expected 0x0000TTNN with type TT in {sorted(_IDX_TYPES)} and NN >= 1 dims)")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path}: IDX header with {ndim} dims needs {header} bytes, found {len(buf)}")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise DataError(f"{path}: IDX header says dims {dims} of {dtype.name} = {expected:,} bytes "
                        f"(with header), found {len(buf):,} bytes; the file is truncated or corrupt")
    data = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))  # native order, and a writable copy


def read_idx_images(path: PathLike) -> np.ndarray:
    """IDX images (magic 0x803) as uint8 (N, 1, H, W): a channel axis is added for conv layers."""
    images = read_idx(path, expected_magic=0x803)  # (N, H, W)
    return images[:, None, :, :]                   # (N, 1, H, W)


def read_idx_labels(path: PathLike) -> np.ndarray:
    """IDX labels (magic 0x801) as int64 (N,)."""
    return read_idx(path, expected_magic=0x801).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# CIFAR "python version": pickled dicts written by Python 2, hence encoding="latin1".
#
# A pickle can name any importable callable and have it called while loading: that is how a
# tampered file runs code. The CIFAR files hold only dicts, lists, strings, bytes, numbers and
# one NumPy uint8 array per batch, so the unpickler below admits exactly the globals a NumPy
# array needs to be rebuilt (and with dtype uint8 only) and refuses every other one. The MD5
# check in datasets.py runs first; this is the second wall, for files that have no sum or a
# user's own copy.

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),          # how pickle protocol 2 stores bytes written by Python 3
}
_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


def _numeric_scalar(dtype, *args):
    """numpy's scalar(dtype, bytes), for numeric dtypes only (labels pickled as NumPy ints)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"refused a NumPy scalar of dtype {dtype!r}")
    return np.frombuffer(args[0], dtype=dtype, count=1)[0] if args else dtype.type(0)


class _CifarUnpickler(pickle.Unpickler):
    """pickle.Unpickler admitting builtin containers and scalars and plain NumPy arrays only."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SCALAR:
            return _numeric_scalar
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load the global {module}.{name}: a CIFAR file "
                                     f"holds only lists, dicts, strings, numbers and arrays")


def _check_pickled_arrays(obj, path: PathLike, depth: int = 0) -> None:
    """Every array in a loaded CIFAR dict must be a plain numeric array (no object dtype)."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind not in "biuf":
        raise DataError(f"{path}: holds an array of dtype {obj.dtype}, expected numbers")
    if isinstance(obj, dict) and depth < 2:
        for value in obj.values():
            _check_pickled_arrays(value, path, depth + 1)


def _unpickle(path: PathLike) -> dict:
    """Load a CIFAR pickle with the restricted unpickler (no code is run, whatever the file)."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, IndexError,
            TypeError, KeyError, ImportError, MemoryError) as err:
        raise DataError(f"{path}: not a readable CIFAR pickle, truncated or corrupt ({err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    _check_pickled_arrays(obj, path)
    return obj


def read_cifar_batch(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch or CIFAR-100 train/test file -> (x uint8 (N, 3, 32, 32), y int64 (N,)).

    Rows of `data` are 3072 bytes: the 1024 red, then green, then blue values of a 32x32 image in
    row-major order, so a plain reshape gives (N, 3, 32, 32). Labels come from `labels`
    (CIFAR-10) or `fine_labels` (CIFAR-100, 100 classes; the 20 coarse labels are not read).
    """
    d = _unpickle(path)
    label_key = "labels" if "labels" in d else "fine_labels"
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: expected keys 'data' and 'labels' or 'fine_labels', found {sorted(d)}")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected 'data' uint8 (N, 3072), found {data.dtype} {data.shape}")
    labels = d[label_key]
    if not isinstance(labels, (list, np.ndarray)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise DataError(f"{path}: expected '{label_key}' to be a list of integers, found "
                        f"{type(labels).__name__} holding {type(next(iter(labels), None)).__name__}")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (data.shape[0],):
        raise DataError(f"{path}: expected {data.shape[0]} labels, found shape {y.shape}")
    return data.reshape(-1, 3, 32, 32), y  # (N, 3072) -> (N, 3, 32, 32)


def read_cifar_meta(path: PathLike) -> list[str]:
    """Class names from CIFAR-10 `batches.meta` (`label_names`) or CIFAR-100 `meta` (`fine_label_names`)."""
    d = _unpickle(path)
    for key in ("label_names", "fine_label_names"):
        if key in d:
            if not isinstance(d[key], list) or not all(isinstance(n, (str, bytes)) for n in d[key]):
                raise DataError(f"{path}: expected '{key}' to be a list of class names")
            return [n.decode("latin1") if isinstance(n, bytes) else n for n in d[key]]
    raise DataError(f"{path}: expected key 'label_names' or 'fine_label_names', found {sorted(d)}")


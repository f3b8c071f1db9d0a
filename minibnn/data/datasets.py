"""Dataset registry: `load_dataset(name, data_dir=None) -> Splits(train, val)` of uint8 images.

Names: `mnist-t10k` (bundled, the offline default), `mnist`, `fashion-mnist`, `cifar10`, `cifar100`
and `synthetic` (in-memory, seeded). Files are looked up in `data_dir` (the CLI's `--data-dir`),
then `$MINIBNN_DATA`, then the per-user cache, and checked against the published MD5 sums.
Leaves out: downloading (data_scripts/download.py), augmentation (transforms.py), batching (loader.py).

NOTE: `mnist-t10k` is the 10,000-image MNIST *test* set split 8,000 train / 2,000 val. It is NOT
the standard MNIST protocol (train on the 60k training set, report on the 10k test set), so its
accuracies are not comparable with published MNIST numbers. For the standard protocol use `mnist`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from .formats import (PUBLISHED_MD5, DataError, md5sum, read_cifar_batch, read_cifar_meta,
                      read_idx_images, read_idx_labels)

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "Dataset",
    "Splits",
    "DEFAULT_DATASET",
    "NORMALIZATION",
    "LAYOUT",
    "list_datasets",
    "load_dataset",
    "data_roots",
    "cache_dir",
    "find_dataset_dir",
    "stratified_split",
    "make_synthetic",
]

DEFAULT_DATASET = "mnist-t10k"
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
T10K_SPLIT_SEED, T10K_NUM_VAL = 0, 2000  # changing either changes every mnist-t10k result

# Per-channel mean/std of the training images scaled to [0, 1] (the values commonly quoted for
# each training set; mnist-t10k reuses the MNIST values).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# name -> (folder under a data root, files read from it): the layout data_scripts/download.py writes.
LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "mnist": ("mnist", _IDX_FILES),
    "fashion-mnist": ("fashion-mnist", _IDX_FILES),
    "cifar10": ("cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
}
_CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


@dataclass(frozen=True)
class Dataset:
    """x uint8 (N, C, H, W), y int64 (N,) in [0, len(classes)), and mean/std per channel in [0, 1] units."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        n, c = (self.x.shape[0], self.x.shape[1]) if self.x.ndim == 4 else (-1, -1)
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise ValueError(f"{self.name}: expected x uint8 (N, C, H, W), "
                             f"found {self.x.dtype} {self.x.shape}")
        if self.y.dtype != np.int64 or self.y.shape != (n,):
            raise ValueError(f"{self.name}: expected y int64 ({n},), found {self.y.dtype} {self.y.shape}")
        if n and not 0 <= self.y.min() <= self.y.max() < len(self.classes):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(self.classes)}), "
                             f"found [{self.y.min()}, {self.y.max()}]")
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"{self.name}: expected {c} mean/std values, "
                             f"found {len(self.mean)}/{len(self.std)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: np.ndarray) -> Dataset:
        """The samples at `idx` (int indices or a boolean mask), same classes and statistics."""
        return replace(self, x=self.x[idx], y=self.y[idx])


@dataclass(frozen=True)
class Splits:
    """A train and a validation Dataset; unpacks as `train, val = load_dataset(...)`.

    For mnist, fashion-mnist and cifar the val split is the official test set (as in the BNN
    papers); for mnist-t10k it is 2,000 held-out test images (see the module NOTE).
    """

    train: Dataset
    val: Dataset

    def __iter__(self):
        return iter((self.train, self.val))


# ---------------------------------------------------------------------------------------------
# Where files live


def cache_dir() -> Path:
    """Per-user cache folder: $XDG_CACHE_HOME/minibnn, or ~/.cache/minibnn."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "minibnn"


def data_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Data roots in lookup order, each with where it came from: data_dir, $MINIBNN_DATA, cache."""
    roots = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "--data-dir"))
    if os.environ.get("MINIBNN_DATA"):
        roots.append((Path(os.environ["MINIBNN_DATA"]).expanduser(), "$MINIBNN_DATA"))
    roots.append((cache_dir(), "user cache"))
    return roots


def _download_command(name: str, root: Path) -> str:
    return f"python data_scripts/download.py {name} --dest {root}"


def find_dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first `<root>/<folder>` (roots from data_roots) that holds every file of LAYOUT[name].

    Raises DataError naming the expected files, each folder searched (with what it lacks) and the
    download command. Checksums are not verified here; load_dataset does that.
    """
    if name not in LAYOUT:
        raise ValueError(f"{name!r} is not read from files; file-backed datasets: {', '.join(LAYOUT)}")
    folder, files = LAYOUT[name]
    roots = data_roots(data_dir)
    searched = []
    for root, source in roots:
        missing = [f for f in files if not (root / folder / f).is_file()]
        if not missing:
            return root / folder
        what = "all missing" if len(missing) == len(files) else "missing " + ", ".join(missing)
        searched.append(f"  {root / folder}  ({source}; {what})")
    raise DataError(
        f"dataset {name!r} not found: expected files {', '.join(files)} in a folder {folder!r}. "
        f"Searched:\n" + "\n".join(searched) +
        f"\nFetch them with:\n  {_download_command(name, roots[0][0])}"
    )


# MD5 digests keyed by (resolved path, mtime_ns, size): each file is hashed once per process.
_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def _verify_md5(path: Path, expected: str, fix: str) -> None:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _MD5_CACHE:
        _MD5_CACHE[key] = md5sum(path)
    if _MD5_CACHE[key] != expected:
        raise DataError(f"{path}: MD5 mismatch, expected {expected} (published) but found "
                        f"{_MD5_CACHE[key]} ({st.st_size:,} bytes); the file is corrupt or "
                        f"truncated. {fix}")


def _locate_verified(name: str, data_dir) -> Path:
    """find_dataset_dir + an MD5 check of every file that has a published sum."""
    folder = find_dataset_dir(name, data_dir)
    fix = f"Delete it and fetch it again with:\n  {_download_command(name, folder.parent)}"
    for fname in LAYOUT[name][1]:
        if fname in PUBLISHED_MD5[folder.name]:
            _verify_md5(folder / fname, PUBLISHED_MD5[folder.name][fname], fix)
    return folder


# ---------------------------------------------------------------------------------------------
# Loaders, one per dataset


def _read_idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx_images(folder / f"{prefix}-images-idx3-ubyte.gz")  # (N, 1, 28, 28)
    y = read_idx_labels(folder / f"{prefix}-labels-idx1-ubyte.gz")  # (N,)
    if len(x) != len(y):
        raise DataError(f"{folder}: {prefix} images hold {len(x)} records but labels hold {len(y)}")
    return x, y


def _load_idx_dataset(name: str, data_dir) -> Splits:
    folder = _locate_verified(name, data_dir)
    mean, std = NORMALIZATION[name]
    train, val = (Dataset(*_read_idx_pair(folder, prefix), _CLASSES[name], name, mean, std)
                  for prefix in ("train", "t10k"))
    return Splits(train, val)


def _load_cifar(name: str, data_dir) -> Splits:
    folder = _locate_verified(name, data_dir)
    train_files, test_file, meta_file = {
        "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"),
        "cifar100": (["train"], "test", "meta"),
    }[name]
    parts = [read_cifar_batch(folder / f) for f in train_files]
    x_train = np.concatenate([x for x, _ in parts])  # (50000, 3, 32, 32)
    y_train = np.concatenate([y for _, y in parts])  # (50000,)
    x_val, y_val = read_cifar_batch(folder / test_file)
    classes = read_cifar_meta(folder / meta_file)
    mean, std = NORMALIZATION[name]
    return Splits(Dataset(x_train, y_train, classes, name, mean, std),
                  Dataset(x_val, y_val, classes, name, mean, std))


def stratified_split(y: np.ndarray, n_val: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of labels y (N,) into sorted (train_idx, val_idx) with len(val_idx) == n_val.

    Each class gives n_val * count / N validation samples, rounded by largest remainder (ties to
    the lower class) so the total is exact; which samples go is a per-class rng permutation.
    """
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n_val / len(y)
    take = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[: n_val - take.sum()]] += 1
    val_idx = np.sort(np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]))
    in_val = np.zeros(len(y), dtype=bool)
    in_val[val_idx] = True
    return np.flatnonzero(~in_val), val_idx


def _load_mnist_t10k(data_dir=None) -> Splits:
    """The bundled MNIST test set, split 8,000/2,000 (NOT the standard 60k/10k protocol)."""
    fix = "The bundled copy inside the minibnn package is damaged: reinstall minibnn."
    for fname in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        _verify_md5(BUNDLED_DIR / fname, PUBLISHED_MD5["mnist"][fname], fix)
    x, y = _read_idx_pair(BUNDLED_DIR, "t10k")  # (10000, 1, 28, 28), (10000,)
    train_idx, val_idx = stratified_split(y, T10K_NUM_VAL, np.random.default_rng(T10K_SPLIT_SEED))
    mean, std = NORMALIZATION["mnist"]
    full = Dataset(x, y, _CLASSES["mnist"], "mnist-t10k", mean, std)
    return Splits(full.subset(train_idx), full.subset(val_idx))


def make_synthetic(n_train: int = 512, n_val: int = 256, num_classes: int = 4, image_size: int = 16,
                   channels: int = 1, noise: float = 0.1, seed: int = 0) -> Splits:
    """Seeded toy images: class k is a stripe patch (Gabor) at angle pi * k / num_classes.

    Each image: 0.5 + 0.45 * a * sin(w * u + phi) * envelope + noise, with u the coordinate across
    the stripes, random phase phi, amplitude a in [0.6, 1], a Gaussian envelope at a jittered
    centre, and per-channel gains in [0.6, 1]. The class is in the orientation only, independent
    of position and phase, so a small CNN learns it while a linear model on pixels cannot.
    """
    rng = np.random.default_rng(seed)
    n, s = n_train + n_val, image_size
    y = rng.integers(0, num_classes, size=n)                           # (N,)
    theta = np.pi * y / num_classes
    centre = s / 2 - 0.5 + rng.uniform(-s / 8, s / 8, size=(2, n))     # (2, N) row, col
    r = np.arange(s)[None, :, None] - centre[0][:, None, None]         # (N, S, 1)
    c = np.arange(s)[None, None, :] - centre[1][:, None, None]         # (N, 1, S)
    u = c * np.cos(theta)[:, None, None] + r * np.sin(theta)[:, None, None]   # (N, S, S)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    amp = rng.uniform(0.6, 1.0, size=(n, 1, 1))
    envelope = np.exp(-(r**2 + c**2) / (2 * (s / 3) ** 2))
    pattern = amp * np.sin(2 * np.pi * u / (s / 4) + phase) * envelope  # period s/4 pixels
    gains = rng.uniform(0.6, 1.0, size=(n, channels, 1, 1))
    img = 0.5 + 0.45 * gains * pattern[:, None] + noise * rng.normal(size=(n, channels, s, s))
    x = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)            # (N, C, S, S)
    mean = tuple(float(m) for m in x[:n_train].mean(axis=(0, 2, 3)) / 255)
    std = tuple(float(v) for v in x[:n_train].std(axis=(0, 2, 3)) / 255)
    full = Dataset(x, y.astype(np.int64), [f"{180 * k / num_classes:g}deg" for k in range(num_classes)],
                   "synthetic", mean, std)
    return Splits(full.subset(slice(0, n_train)), full.subset(slice(n_train, n)))


# ---------------------------------------------------------------------------------------------
# Registry

_LOADERS: dict[str, Callable[..., Splits]] = {
    "mnist-t10k": _load_mnist_t10k,
    "mnist": partial(_load_idx_dataset, "mnist"),
    "fashion-mnist": partial(_load_idx_dataset, "fashion-mnist"),
    "cifar10": partial(_load_cifar, "cifar10"),
    "cifar100": partial(_load_cifar, "cifar100"),
}


def list_datasets() -> list[str]:
    """Names accepted by load_dataset, the offline default first."""
    return [*_LOADERS, "synthetic"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset, without its images: input shape (C, H, W),
    class count and the per-channel normalisation of its training split."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_SHAPES = {"mnist-t10k": ((1, 28, 28), 10), "mnist": ((1, 28, 28), 10),
           "fashion-mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
           "cifar100": ((3, 32, 32), 100)}


def dataset_info(name: str) -> DatasetInfo:
    """Shape, class count and normalisation of a registered dataset, read from static tables
    (no file is opened). The synthetic set is generated in memory (its statistics are those of
    its default images, which is what `load_dataset("synthetic")` returns)."""
    if name == "synthetic":
        train = make_synthetic().train
        return DatasetInfo(name, tuple(train.x.shape[1:]), train.num_classes, train.mean,
                           train.std)
    if name not in _SHAPES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    shape, classes = _SHAPES[name]
    mean, std = NORMALIZATION["mnist" if name == "mnist-t10k" else name]
    return DatasetInfo(name, shape, classes, mean, std)


def load_dataset(name: str = DEFAULT_DATASET, data_dir: str | os.PathLike | None = None,
                 **options) -> Splits:
    """Load `name` as Splits(train, val) of uint8 (N, C, H, W) images and int64 labels.

    `data_dir` is searched before $MINIBNN_DATA and the user cache (see data_roots); the bundled
    and synthetic sets ignore it. `options` go to make_synthetic (e.g. n_train, num_classes, seed)
    and are rejected for the file-backed sets. Raises DataError for missing or corrupt files.
    """
    if name == "synthetic":
        return make_synthetic(**options)
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    if options:
        raise TypeError(f"dataset {name!r} takes no options, got {sorted(options)}")
    return _LOADERS[name](data_dir)

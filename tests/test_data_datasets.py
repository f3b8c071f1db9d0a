"""Dataset registry: bundled mnist-t10k split, lookup order, error messages, MD5 checks,
synthetic set, and the download script (network replaced by local files)."""

import gzip
import importlib
import io
import os
import pickle
import re
import struct
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from minibnn.data import datasets, formats
from minibnn.data.datasets import DataError, load_dataset

DATA_SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def idx_bytes(arr):
    """uint8 IDX file contents, gzipped as distributed."""
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def write_fake_mnist(folder, n_train=12, n_test=6, seed=0):
    """The four MNIST files with random content; returns {file name: md5}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_bytes(rng.integers(0, 10, n)))
    return {p.name: formats.md5sum(p) for p in folder.iterdir()}


def write_fake_cifar10(folder, n=4, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return {p.name: formats.md5sum(p) for p in folder.iterdir()}


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Isolated data roots: nothing from the real environment or cache is visible."""
    paths = {k: tmp_path / k for k in ("data_dir", "env", "xdg")}
    monkeypatch.setenv("MINIBNN_DATA", str(paths["env"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(paths["xdg"]))
    paths["cache"] = paths["xdg"] / "minibnn"
    return paths


def patch_md5(monkeypatch, folder_name, sums):
    for name, digest in sums.items():
        if name in formats.PUBLISHED_MD5[folder_name]:
            monkeypatch.setitem(formats.PUBLISHED_MD5[folder_name], name, digest)


# ---------------------------------------------------------------------------------------------
# mnist-t10k (bundled)


def test_list_datasets_names_every_dataset():
    assert set(datasets.list_datasets()) == {"mnist-t10k", "mnist", "fashion-mnist", "cifar10", "cifar100", "synthetic"}
    assert datasets.list_datasets()[0] == datasets.DEFAULT_DATASET == "mnist-t10k"


def test_mnist_t10k_is_an_8000_2000_stratified_split_of_the_bundled_test_set():
    train, val = load_dataset("mnist-t10k")
    assert (train.x.shape, val.x.shape) == ((8000, 1, 28, 28), (2000, 1, 28, 28))
    assert train.x.dtype == np.uint8 and train.y.dtype == np.int64
    assert train.classes == [str(d) for d in range(10)] and train.mean == (0.1307,)
    x = formats.read_idx_images(datasets.BUNDLED_DIR / "t10k-images-idx3-ubyte.gz")
    y = formats.read_idx_labels(datasets.BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    train_idx, val_idx = datasets.stratified_split(y, 2000, np.random.default_rng(datasets.T10K_SPLIT_SEED))
    assert np.intersect1d(train_idx, val_idx).size == 0 and len(train_idx) + len(val_idx) == 10000
    np.testing.assert_array_equal(val.x, x[val_idx])
    np.testing.assert_array_equal(train.y, y[train_idx])
    expected = 0.2 * np.bincount(y)  # [980, 1135, ...] * 2000 / 10000
    assert np.all(np.abs(np.bincount(val.y, minlength=10) - expected) < 1)


def test_mnist_t10k_is_deterministic_and_documented_as_nonstandard():
    a, b = load_dataset("mnist-t10k"), load_dataset()
    np.testing.assert_array_equal(a.val.y, b.val.y)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert "NOT the standard MNIST protocol" in datasets.__doc__.replace("\n", " ")


@pytest.mark.parametrize("n_val", [1, 7, 333])
def test_stratified_split_exact_size_disjoint_and_proportional(n_val, rng):
    y = rng.integers(0, 5, size=1000)
    train_idx, val_idx = datasets.stratified_split(y, n_val, rng)
    assert len(val_idx) == n_val
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000))
    quota = np.bincount(y) * n_val / 1000
    assert np.all(np.abs(np.bincount(y[val_idx], minlength=5) - quota) < 1)


# ---------------------------------------------------------------------------------------------
# Registry errors and lookup order


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'mnist2'.*mnist-t10k.*cifar100"):
        load_dataset("mnist2")


def test_file_backed_datasets_reject_options():
    with pytest.raises(TypeError, match="takes no options"):
        load_dataset("mnist-t10k", seed=3)


def test_missing_files_message_names_files_folders_and_command(roots):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=roots["data_dir"])
    msg = str(err.value)
    for name in ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]:
        assert name in msg
    for root in ("data_dir", "env", "cache"):
        assert str(roots[root] / "cifar-10-batches-py") in msg
    assert f"python data_scripts/download.py cifar10 --dest {roots['data_dir']}" in msg


def test_missing_files_command_points_at_env_then_cache(roots, monkeypatch):
    with pytest.raises(DataError, match=re.escape(f"download.py mnist --dest {roots['env']}") + "$"):
        load_dataset("mnist")
    monkeypatch.delenv("MINIBNN_DATA")
    with pytest.raises(DataError, match=re.escape(f"download.py mnist --dest {roots['cache']}") + "$"):
        load_dataset("mnist")


def test_lookup_order_data_dir_then_env_then_cache(roots, monkeypatch):
    for root in ("data_dir", "env", "cache"):
        write_fake_mnist(roots[root] / "mnist")
    assert datasets.find_dataset_dir("mnist", roots["data_dir"]) == roots["data_dir"] / "mnist"
    assert datasets.find_dataset_dir("mnist") == roots["env"] / "mnist"
    monkeypatch.delenv("MINIBNN_DATA")
    assert datasets.find_dataset_dir("mnist") == roots["cache"] / "mnist"


def test_incomplete_folder_is_skipped_and_reported(roots):
    write_fake_mnist(roots["data_dir"] / "mnist")
    (roots["data_dir"] / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\.gz\)"):
        datasets.find_dataset_dir("mnist", roots["data_dir"])
    write_fake_mnist(roots["cache"] / "mnist")
    assert datasets.find_dataset_dir("mnist", roots["data_dir"]) == roots["cache"] / "mnist"


def test_load_mnist_checks_md5_once_per_file_version(roots, monkeypatch):
    patch_md5(monkeypatch, "mnist", write_fake_mnist(roots["data_dir"] / "mnist", n_train=12, n_test=6))
    calls = []
    monkeypatch.setattr(datasets, "md5sum", lambda p: calls.append(p) or formats.md5sum(p))
    train, val = load_dataset("mnist", data_dir=roots["data_dir"])
    assert (len(train), len(val), train.x.shape[1:]) == (12, 6, (1, 28, 28))
    load_dataset("mnist", data_dir=roots["data_dir"])
    assert len(calls) == 4  # cached by (path, mtime, size)

    bad = roots["data_dir"] / "mnist" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=roots["data_dir"])
    msg = str(err.value)
    assert str(bad) in msg and formats.PUBLISHED_MD5["mnist"][bad.name] in msg and formats.md5sum(bad) in msg
    assert f"python data_scripts/download.py mnist --dest {roots['data_dir']}" in msg


def test_load_cifar10_concatenates_batches(roots, monkeypatch):
    patch_md5(monkeypatch, "cifar-10-batches-py", write_fake_cifar10(roots["cache"] / "cifar-10-batches-py"))
    train, val = load_dataset("cifar10")
    assert train.x.shape == (20, 3, 32, 32) and val.x.shape == (4, 3, 32, 32)
    assert train.classes[3] == "c3" and len(train.mean) == 3


# ---------------------------------------------------------------------------------------------
# Dataset container and synthetic set


def test_dataset_validates_dtypes_and_label_range():
    x = np.zeros((2, 1, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="expected x uint8"):
        datasets.Dataset(x.astype(np.float32), np.zeros(2, np.int64), ["a"], "t", (0.0,), (1.0,))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\)"):
        datasets.Dataset(x, np.array([0, 1]), ["a"], "t", (0.0,), (1.0,))


def test_synthetic_is_seeded_and_configurable():
    a = load_dataset("synthetic", n_train=40, n_val=10, num_classes=3, image_size=12, channels=3, seed=1)
    b = load_dataset("synthetic", n_train=40, n_val=10, num_classes=3, image_size=12, channels=3, seed=1)
    c = load_dataset("synthetic", n_train=40, n_val=10, num_classes=3, image_size=12, channels=3, seed=2)
    assert a.train.x.shape == (40, 3, 12, 12) and a.val.x.shape == (10, 3, 12, 12)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert not np.array_equal(a.train.x, c.train.x)
    assert set(np.unique(a.train.y)) == {0, 1, 2} and len(a.train.mean) == 3


def test_synthetic_classes_are_separable_by_orientation_energy():
    """Nearest class-mean on |FFT| (phase- and shift-invariant) separates the classes."""
    train, val = datasets.make_synthetic(n_train=400, n_val=200, num_classes=4)
    feats = [np.abs(np.fft.fft2(d.x[:, 0] / 255.0 - 0.5)).reshape(len(d), -1) for d in (train, val)]
    centres = np.stack([feats[0][train.y == k].mean(0) for k in range(4)])
    pred = np.argmin(((feats[1][:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (pred == val.y).mean() > 0.9


# ---------------------------------------------------------------------------------------------
# data_scripts/download.py, with the network replaced by local files


@pytest.fixture
def download(monkeypatch):
    """data_scripts/download.py as a module; `download` and `common` are unimported afterwards."""
    monkeypatch.syspath_prepend(str(DATA_SCRIPTS))
    yield importlib.import_module("download")
    for name in ("download", "common"):
        sys.modules.pop(name, None)


def test_download_mnist_from_file_urls_then_load(roots, tmp_path, monkeypatch, download):
    patch_md5(monkeypatch, "mnist", write_fake_mnist(tmp_path / "server"))
    monkeypatch.setitem(download.SOURCES, "mnist", download.Source((f"{(tmp_path / 'server').as_uri()}/",)))
    assert download.main(["mnist", "--dest", str(roots["data_dir"])]) == 0
    train, _ = load_dataset("mnist", data_dir=roots["data_dir"])
    assert len(train) == 12


def test_download_checksum_mismatch_leaves_no_file(roots, tmp_path, monkeypatch, download, capsys):
    write_fake_mnist(tmp_path / "server")  # published sums left as they are: every file mismatches
    monkeypatch.setitem(download.SOURCES, "mnist", download.Source((f"{(tmp_path / 'server').as_uri()}/",)))
    assert download.main(["mnist", "--dest", str(roots["data_dir"])]) == 1
    assert "MD5 mismatch" in capsys.readouterr().err
    assert list((roots["data_dir"] / "mnist").iterdir()) == []  # no partial or temp files


def test_download_falls_back_to_the_next_mirror(roots, tmp_path, monkeypatch, download):
    common = importlib.import_module("common")
    sums = write_fake_mnist(tmp_path / "server")
    patch_md5(monkeypatch, "mnist", sums)

    def fake_open(url, timeout=60.0):
        if url.startswith("https://down.example/"):
            raise urllib.error.URLError("unreachable")
        return io.BytesIO((tmp_path / "server" / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(common, "open_url", fake_open)
    monkeypatch.setitem(download.SOURCES, "mnist", download.Source(("https://down.example/", "https://up.example/")))
    folder = download.download("mnist", roots["data_dir"], log=lambda s: None)
    assert {p.name: formats.md5sum(p) for p in folder.iterdir()} == sums


def make_tarball(path, src_folder, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src_folder, arcname=arcname)
    return formats.md5sum(path)


def test_download_cifar10_extracts_tarball_into_loadable_layout(roots, tmp_path, monkeypatch, download):
    sums = write_fake_cifar10(tmp_path / "build" / "cifar-10-batches-py")
    (tmp_path / "server").mkdir()
    sums["cifar-10-python.tar.gz"] = make_tarball(tmp_path / "server" / "cifar-10-python.tar.gz",
                                                  tmp_path / "build" / "cifar-10-batches-py", "cifar-10-batches-py")
    patch_md5(monkeypatch, "cifar-10-batches-py", sums)
    monkeypatch.setitem(download.SOURCES, "cifar10",
                        download.Source((f"{(tmp_path / 'server').as_uri()}/",), archive="cifar-10-python.tar.gz"))
    download.download("cifar10", roots["data_dir"], log=lambda s: None)
    train, val = load_dataset("cifar10", data_dir=roots["data_dir"])
    assert train.x.shape == (20, 3, 32, 32) and val.classes[0] == "c0"
    leftovers = [p.name for p in roots["data_dir"].iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_extract_rejects_archive_without_expected_folder(tmp_path, download):
    common = importlib.import_module("common")
    (tmp_path / "build" / "other").mkdir(parents=True)
    (tmp_path / "build" / "other" / "x").write_bytes(b"1")
    make_tarball(tmp_path / "a.tar.gz", tmp_path / "build" / "other", "other")
    (tmp_path / "dest").mkdir()
    with pytest.raises(DataError, match="missing train, test, meta"):
        common.extract_tar(tmp_path / "a.tar.gz", tmp_path / "dest", "cifar-100-python",
                           ("train", "test", "meta"), {}, log=lambda s: None)
    assert os.listdir(tmp_path / "dest") == []

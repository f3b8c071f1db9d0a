"""Fault injection at the library level: bad data refused with one clear line, no code run from a
data file, atomic outputs with the usual file modes, and the per-case timeout of verify."""

import json
import os
import pickle
import shutil
import time

import numpy as np
import pytest

from minibnn import functional as F
from minibnn.autograd import Tensor
from minibnn.cli import main
from minibnn.data import formats
from minibnn.engine import bitpack, conv, gemm


# ----------------------------------------------------------------------------- autograd
@pytest.mark.parametrize("data", [np.array([1 + 2j]), np.array([object()], dtype=object),
                                  "abc", ["a", "b"], np.array([b"x"])])
def test_tensor_refuses_non_numeric_data(data):
    with pytest.raises(TypeError, match="boolean, integer or floating-point numbers, got dtype"):
        Tensor(data)


@pytest.mark.parametrize("call, message", [
    (lambda x, w: F.conv2d(x, w, stride=0), r"conv2d: stride must be >= 1, got \(0, 0\)"),
    (lambda x, w: F.conv2d(x, w, padding=-1), r"conv2d: padding must be >= 0, got \(-1, -1\)"),
    (lambda x, w: F.max_pool2d(x, 0), r"max_pool2d: kernel size must be >= 1"),
    (lambda x, w: F.max_pool2d(x, 2, stride=0), r"max_pool2d: stride must be >= 1"),
    (lambda x, w: F.avg_pool2d(x, 2, padding=-1), r"avg_pool2d: padding must be >= 0"),
])
def test_geometry_errors_are_value_errors(call, message):
    x = Tensor(np.zeros((1, 1, 6, 6), np.float32))
    w = Tensor(np.zeros((2, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match=message):
        call(x, w)


def test_max_pool_stride_none_still_means_the_kernel_size():
    x = Tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    assert F.max_pool2d(x, 2).data.tolist() == [[[[5, 7], [13, 15]]]]


@pytest.mark.parametrize("stat", [np.zeros(3, np.int64), [0.0, 0.0, 0.0]])
def test_batch_norm_refuses_running_stats_that_are_not_float_arrays(stat):
    x = Tensor(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
    with pytest.raises(TypeError, match="running_mean must be a floating-point ndarray"):
        F.batch_norm(x, stat, np.ones(3, np.float32), training=True)


# ------------------------------------------------------------------------------- engine
def test_engine_entry_points_refuse_dirty_tails_and_word_counts(rng):
    a = bitpack.pack_bits(rng.choice([-1.0, 1.0], size=(3, 70)))           # (3, 2) words
    b = bitpack.pack_bits(rng.choice([-1.0, 1.0], size=(4, 70)))
    dirty = a.copy()
    dirty[0, -1] |= np.uint64(1) << np.uint64(63)
    with pytest.raises(ValueError, match="x_words: bits past channel 70 must be 0"):
        gemm.xnor_gemm(dirty, b, 70)
    with pytest.raises(ValueError, match="70 channels need 2 words.*found 1"):
        gemm.xnor_gemm(a[:, :1], b, 70)
    with pytest.raises(ValueError, match="channel count k must be a positive integer"):
        gemm.binary_linear(a, b, 0)
    assert np.array_equal(gemm.xnor_gemm(a, b, 70),
                          gemm.xnor_gemm_reference(bitpack.unpack_bits(a, 70),
                                                      bitpack.unpack_bits(b, 70)))
    x = bitpack.pack_nhwc(rng.choice([-1.0, 1.0], size=(1, 70, 5, 5)).astype(np.float32))
    w = bitpack.pack_nhwc(rng.choice([-1.0, 1.0], size=(2, 70, 3, 3)).astype(np.float32))
    x[0, 0, 0, -1] |= np.uint64(1) << np.uint64(62)
    with pytest.raises(ValueError, match="x_words: bits past channel 70 must be 0"):
        conv.binary_conv2d(x, w, 70)


# --------------------------------------------------------------------------- CIFAR files
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))          # would create a file if it were unpickled


def test_a_tampered_cifar_meta_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps({"label_names": ["a"], "x": _Payload(str(marker))}))
    with pytest.raises(formats.DataError, match=r"batches.meta.*refused to load the global "
                                                r"(io|builtins)\.open"):
        formats.read_cifar_meta(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"\x80\x02cnot_a_module\nthing\nq\x00.", "refused to load the global not_a_module.thing"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": ["cat", "dog"]},
     "expected 'labels' to be a list of integers, found list holding str"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2], "x": np.array([None])},
     "holds an array of dtype object, expected numbers"),
])
def test_bad_cifar_batches_are_one_line_data_errors(tmp_path, content, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content if isinstance(content, bytes) else pickle.dumps(content))
    with pytest.raises(formats.DataError, match=message):
        formats.read_cifar_batch(path)


def test_train_on_cifar10_with_a_tampered_meta_runs_no_code(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [1, 2, 3, 4]}
        (folder / name).write_bytes(pickle.dumps(batch))
        monkeypatch.setitem(formats.PUBLISHED_MD5["cifar-10-batches-py"], name,
                            formats.md5sum(folder / name))      # genuine batches
    marker = tmp_path / "pwned"
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": _Payload(str(marker))}))
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "batches.meta: MD5 mismatch, expected 5ff9c542aee3614f3951f8cda6e48888" in err
    monkeypatch.setitem(formats.PUBLISHED_MD5["cifar-10-batches-py"], "batches.meta",
                        formats.md5sum(folder / "batches.meta"))   # even with a matching sum
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run"), "--quiet"]) == 1
    assert "refused to load the global" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_cifar_meta_files_have_their_published_md5():
    assert formats.PUBLISHED_MD5["cifar-10-batches-py"]["batches.meta"] == \
        "5ff9c542aee3614f3951f8cda6e48888"
    assert formats.PUBLISHED_MD5["cifar-100-python"]["meta"] == "7973b15100ade9c7d40fb424638fde48"


def test_real_cifar10_meta_matches_and_loads(shared_data):
    path = shared_data / "cifar-10" / "cifar-10-batches-py" / "batches.meta"
    assert formats.md5sum(path) == formats.PUBLISHED_MD5["cifar-10-batches-py"]["batches.meta"]
    assert formats.read_cifar_meta(path)[:2] == ["airplane", "automobile"]


# ------------------------------------------------------------------ atomic files and modes
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, mode):
    from minibnn.npzio import atomic_write_text, save_npz

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_npz(tmp_path / "b.npz", "h", {}, {"w": np.zeros(2)})
    finally:
        os.umask(old)
    for name in ("a.txt", "b.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.npz"]


def test_golden_over_an_existing_folder_is_all_or_nothing(tmp_path, monkeypatch):
    from minibnn.golden import io as golden_io

    out = tmp_path / "cases"
    assert main(["golden", str(out), "--only", "quantizer.*"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def broken(arrays):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt                 # an interruption half-way through
        return real(arrays)

    real = golden_io._npz_bytes
    monkeypatch.setattr(golden_io, "_npz_bytes", broken)
    with pytest.raises(KeyboardInterrupt):
        golden_io.write_cases(golden_io.load_cases(out), out, seed=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases"]


# -------------------------------------------------------------------------------- verify
def test_verify_help_says_the_port_is_run(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "RUNS that file's code" in " ".join(capsys.readouterr().out.split())


def test_verify_reports_a_port_with_a_syntax_error_in_one_line(capsys, tmp_path):
    assert main(["golden", str(tmp_path / "g"), "--only", "quantizer.*"]) == 0
    port = tmp_path / "port.py"
    port.write_text("def fn(:\n")
    assert main(["verify", str(tmp_path / "g"), "--against", f"{port}:fn"]) == 2   # usage
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "port.py:1: syntax error" in err


def test_verify_refuses_a_manifest_without_cases(capsys, tmp_path):
    assert main(["golden", str(tmp_path / "g"), "--only", "quantizer.*"]) == 0
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    manifest["cases"] = {}
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(tmp_path / "g"), "--against", "minibnn.golden:reference"]) == 2
    assert "'cases' is empty" in capsys.readouterr().err


def test_verify_timeout_turns_a_hanging_case_into_an_error():
    from minibnn.verify.loading import CaseTimeout, with_timeout

    slow = with_timeout(lambda: time.sleep(5), 0.2)
    started = time.perf_counter()
    with pytest.raises(CaseTimeout, match=r"no answer within 0.2 s"):
        slow()
    assert time.perf_counter() - started < 2
    assert with_timeout(lambda: 3, 0.2)() == 3


def test_shutil_is_untouched():      # the kill harness patches it, only in its children
    assert shutil.rmtree.__module__ == "shutil"

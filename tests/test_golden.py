"""Golden reference cases: the committed files still match minibnn, the format round-trips and
rejects broken files by name, compare/verify report per tensor, and the CLI works end to end."""

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minibnn import golden
from minibnn.cli import main
from minibnn.golden.io import _npz_bytes

COMMITTED = Path(__file__).resolve().parent / "golden"
COMMITTED_NAMES = list(json.loads((COMMITTED / "manifest.json").read_text())["cases"])


def f32(group: dict) -> dict:
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in group.items()}


@pytest.fixture(scope="module")
def all_cases():
    return {n: golden.build_case(n) for n in golden.case_names()}


# ------------------------------------------------------------------ the committed set
@pytest.mark.parametrize("name", COMMITTED_NAMES)
def test_committed_case_matches_recomputation(name):
    """An accidental numeric change to any op or method fails here. If the change is intended,
    regenerate: minibnn golden tests/golden --only <the names in tests/golden/manifest.json>."""
    case = golden.load_case(COMMITTED, name)
    got = golden.reference(name, case.inputs, case.params, case.upstream, case.attrs)
    report = golden.compare(case, got, tolerance_scale=1e-4)       # float64: 1e-8 relative
    assert report.ok, str(report)
    rebuilt = golden.build_case(name, seed=golden.read_manifest(COMMITTED)["seed"])
    for group in ("inputs", "params", "upstream", "attrs"):        # the makers did not change
        want, now = getattr(case, group), getattr(rebuilt, group)
        assert list(want) == list(now), (name, group)
        for key in want:
            np.testing.assert_array_equal(np.asarray(now[key]), np.asarray(want[key]))
    assert rebuilt.checks == case.checks and rebuilt.conventions == case.conventions


def test_committed_set_covers_every_family():
    families = {n.split(".")[0] for n in COMMITTED_NAMES}
    assert families == {"quantizer", "weight", "layer", "op", "lcr", "cmim", "s2bnn", "engine"}


def test_worked_example_reproduces_the_published_number():
    case = golden.load_case(COMMITTED, "lcr.worked_example")
    np.testing.assert_allclose(case.expected["sigma"], [1.2613447], rtol=1e-7)   # docs/methods.md §5


# ------------------------------------------------------------------- every case
def test_minibnn_in_float32_passes_every_case(all_cases):
    """The tolerances suit a float32 port: minibnn itself, run in float32, passes them all."""
    for name, case in all_cases.items():
        got = golden.reference(name, f32(case.inputs), f32(case.params), f32(case.upstream),
                               case.attrs)
        report = golden.compare(case, got)
        assert report.ok, str(report)


def test_cases_hold_what_they_promise(all_cases):
    for name, case in all_cases.items():
        spec = golden.SPECS[name]
        assert {c.of for c in case.checks.values() if c.kind == "grad"} == set(spec.grads)
        for key, check in case.checks.items():
            if check.detached:
                assert not np.any(case.expected[key]), (name, key)
            if check.kind == "grad" and not check.detached:
                assert np.any(case.expected[key]), (name, key)        # a gradient that flows
        for key, value in case.inputs.items():                        # float64 references
            assert value.dtype.kind != "f" or value.dtype == np.float64 or name.startswith(
                "engine."), (name, key)
    x = all_cases["quantizer.ste"].inputs["x"]
    assert np.any((x == 0) & np.signbit(x)) and np.any((x == 0) & ~np.signbit(x))
    assert all_cases["weight.irnet"].expected["wb"][-1].max() == 0.5   # the s = 0.5 channel


def test_golden_rejects_unknown_names():
    with pytest.raises(ValueError, match="no golden case matches 'nope.*'.*quantizer.ste"):
        golden.build_cases(only="nope.*")
    with pytest.raises(ValueError, match="unknown golden case"):
        golden.build_case("nope")
    assert golden.reference("nope", {}, {}, {}, {}) is None


# --------------------------------------------------------------------------- io
def test_same_seed_gives_byte_identical_files(tmp_path):
    only = "quantizer.ede,s2bnn.*,engine.binary_linear"
    golden.write_golden(tmp_path / "a", only=only, seed=3)
    golden.write_golden(tmp_path / "b", only=only, seed=3)
    golden.write_golden(tmp_path / "c", only=only, seed=4)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "quantizer.ede.npz").read_bytes() != \
        (tmp_path / "c" / "quantizer.ede.npz").read_bytes()


def test_io_round_trip(tmp_path, all_cases):
    cases = [all_cases[n] for n in ("cmim.official_first_call", "engine.binary_conv2d_bits",
                                    "lcr.worked_example")]
    golden.write_cases(cases, tmp_path, seed=0)
    loaded = golden.load_cases(tmp_path)
    assert [c.name for c in loaded] == [c.name for c in cases]
    for a, b in zip(cases, loaded):
        assert (a.description, a.reference, a.conventions, a.attrs, a.checks) == \
            (b.description, b.reference, b.conventions, b.attrs, b.checks)
        assert b.attrs.get("z_bnn", 0) is None or "z_bnn" not in b.attrs
        for key, value in a.arrays().items():
            got = b.arrays()[key]
            assert got.dtype == value.dtype and got.shape == value.shape, key
            np.testing.assert_array_equal(got, value)
    assert np.load(tmp_path / "lcr.worked_example.npz")["expected/sigma"].shape == (1,)
    assert golden.load_cases(tmp_path, only="lcr.*")[0].name == "lcr.worked_example"


@pytest.fixture
def small_dir(tmp_path, all_cases):
    golden.write_cases([all_cases["quantizer.ste"], all_cases["s2bnn.distribution_loss"]],
                       tmp_path, seed=0)
    return tmp_path


def _rewrite(directory: Path, name: str, drop: str = "", reshape: str = "", add: str = ""):
    """Rewrite a case file without/with a changed array and refresh its SHA-256, so only the
    structural problem is left for the reader to find."""
    import hashlib

    with np.load(directory / f"{name}.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.pop(drop, None)
    if reshape:
        arrays[reshape] = arrays[reshape].reshape(-1)
    if add:
        arrays[add] = np.zeros(2)
    data = _npz_bytes(arrays)
    (directory / f"{name}.npz").write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["cases"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (dict(drop="expected/grad_x"), "case 'quantizer.ste': .* no array 'expected/grad_x'"),
    (dict(reshape="inputs/x"), "case 'quantizer.ste': tensor 'inputs/x' has shape \\(30,\\)"),
    (dict(add="expected/bogus"), "case 'quantizer.ste': .*does not list: \\['expected/bogus'\\]"),
])
def test_broken_case_files_name_the_case_and_tensor(small_dir, change, message):
    _rewrite(small_dir, "quantizer.ste", **change)
    with pytest.raises(ValueError, match=message):
        golden.load_cases(small_dir)
    assert golden.load_case(small_dir, "s2bnn.distribution_loss").name   # the other one is fine


def test_corrupt_missing_and_malformed_files(small_dir):
    path = small_dir / "quantizer.ste.npz"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="'quantizer.ste'.*SHA-256"):
        golden.load_case(small_dir, "quantizer.ste")
    manifest = json.loads((small_dir / "manifest.json").read_text())
    del manifest["cases"]["quantizer.ste"]["sha256"]
    (small_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="'quantizer.ste'.*not a readable .npz"):
        golden.load_case(small_dir, "quantizer.ste")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="'quantizer.ste'.*missing"):
        golden.load_case(small_dir, "quantizer.ste")
    del manifest["cases"]["s2bnn.distribution_loss"]["expected"]
    (small_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="'s2bnn.distribution_loss'.*no 'expected' field"):
        golden.load_case(small_dir, "s2bnn.distribution_loss")
    with pytest.raises(ValueError, match="no golden case 'nope'"):
        golden.load_case(small_dir, "nope")
    (small_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        golden.load_cases(small_dir)
    (small_dir / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format 'minibnn-golden'"):
        golden.load_cases(small_dir)
    (small_dir / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.json not found"):
        golden.load_cases(small_dir)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        golden.load_cases(small_dir / "nowhere")


def test_inconsistent_case_is_rejected_before_writing(tmp_path, all_cases):
    case = golden.build_case("quantizer.ste")
    case.expected["grad_x"] = case.expected["grad_x"][:2]
    with pytest.raises(ValueError, match="'quantizer.ste': gradient 'grad_x' has shape"):
        golden.write_cases([case], tmp_path)
    case = golden.build_case("quantizer.ste")
    case.upstream.clear()
    with pytest.raises(ValueError, match="'quantizer.ste': upstream gradients"):
        case.validate()


# ---------------------------------------------------------------------- compare
def _answer(case):
    return {k: np.array(v) for k, v in case.expected.items()}


def test_compare_ok_and_not_ok(all_cases):
    case = all_cases["layer.binary_conv2d.irnet_ede"]
    got = _answer(case)
    report = golden.compare(case, got)
    assert report.ok and all(r.status == "OK" for r in report.rows)
    assert "[OK] layer.binary_conv2d.irnet_ede" in str(report)
    got["grad_weight"][1, 2, 0, 1] += 0.1
    got["y"] = got["y"].astype(np.float32)                              # a float32 port is fine
    report = golden.compare(case, got)
    assert not report.ok and [r.tensor for r in report.failures] == ["grad_weight"]
    row = report.row("grad_weight")
    assert row.status == "NOT OK" and row.max_abs == pytest.approx(0.1)
    assert "1 of 108 elements off; worst at (1, 2, 0, 1)" in row.note
    text = str(report)
    assert "[NOT OK] layer.binary_conv2d.irnet_ede  (1 of 4 tensors NOT OK)" in text
    assert "conventions to check:" in text and "std is unbiased (n - 1)" in text
    assert golden.compare(case, got, tolerance_scale=1e4).ok            # 0.1 within 1e0 rtol


def test_compare_missing_optional_wrong_shape_extra(all_cases):
    case = all_cases["s2bnn.moco_infonce"]
    got = _answer(case)
    del got["logits"]                                       # optional intermediate
    assert golden.compare(case, got).row("logits").status == "NOT RETURNED"
    assert golden.compare(case, got).ok
    del got["grad_k"]
    got["grad_q"] = got["grad_q"].T
    got["gradq"] = np.zeros(3)
    got["loss"] = np.array([got["loss"]])                   # a (1,) loss is read as a scalar
    report = golden.compare(case, got)
    status = {r.tensor: r.status for r in report.rows}
    assert status == {"loss": "OK", "logits": "NOT RETURNED", "grad_q": "WRONG SHAPE",
                      "grad_k": "MISSING", "grad_queue": "OK", "gradq": "EXTRA"}
    assert "shape (16, 4), expected (4, 16)" in report.row("grad_q").note
    assert "expected names: loss, logits, grad_q" in report.row("gradq").note
    assert not report.ok and len(report.failures) == 2


def test_compare_detached_nan_and_bits(all_cases):
    case = all_cases["s2bnn.distribution_loss"]
    got = _answer(case)
    got["grad_teacher"] = got["grad_student"]                # the teacher was not detached
    row = golden.compare(case, got).row("grad_teacher")
    assert row.status == "NOT OK" and "teacher is detached: its gradient must be 0" in row.note
    got = _answer(case)
    got["loss"] = np.array(np.nan)
    assert golden.compare(case, got).row("loss").status == "NOT OK"
    case = all_cases["engine.binary_conv2d_bits"]
    got = _answer(case)
    got["y_bits"] = got["y_bits"].view(np.int64)             # torch has no uint64 bit ops
    assert golden.compare(case, got).ok
    got["y"] = got["y"].astype(np.float64) + 1e-9            # integer outputs are exact
    assert golden.compare(case, got).row("y").status == "NOT OK"


def test_compare_rejects_a_non_dict_and_unreadable_values(all_cases):
    case = all_cases["quantizer.ste"]
    with pytest.raises(TypeError, match="golden case 'quantizer.ste': the port returned list"):
        golden.compare(case, [1, 2])
    got = _answer(case)
    got["y"] = "sign"
    row = golden.compare(case, got).row("y")
    assert row.status == "NOT OK" and "expected numbers" in row.note


def test_compare_accepts_torch_tensors_that_require_grad(all_cases):
    torch = pytest.importorskip("torch")
    case = all_cases["quantizer.approx"]
    got = {k: torch.tensor(v, requires_grad=True) for k, v in case.expected.items()}
    assert golden.compare(case, got).ok


def test_verify_skips_errors_and_counts(all_cases):
    cases = [all_cases[n] for n in ("quantizer.ste", "quantizer.approx", "weight.xnor",
                                    "weight.sign")]

    def port(name, inputs, params, upstream, attrs):
        inputs["x" if "x" in inputs else "w"][...] = 7.0     # mutating the copies is harmless
        if name == "quantizer.ste":
            return _answer(cases[0])
        if name == "quantizer.approx":
            raise RuntimeError("not ported yet")
        if name == "weight.xnor":
            return [1]
        return None

    result = golden.verify(cases, port)
    assert [r.status() for r in result.reports] == ["OK", "ERROR", "ERROR", "SKIPPED"]
    assert "RuntimeError: not ported yet (at " in result["quantizer.approx"].error
    assert "the port returned list" in result["weight.xnor"].error
    assert not result.ok and list(result.counts().values()) == [1, 0, 0, 2, 1]  # OK..SKIPPED
    assert "4 cases: 1 OK, 0 NOT OK, 0 WRONG SHAPE, 2 ERROR, 1 skipped" in str(result)
    assert cases[0].inputs["x"].max() < 7 and cases[2].inputs["w"].max() < 7   # untouched
    nothing = golden.verify(cases, lambda *args: None)
    assert not nothing.ok and "nothing was checked" in nothing.summary()


# --------------------------------------------------------------------------- CLI
PORT = textwrap.dedent('''
    """A NumPy port written from the docs, not from minibnn: two cases, None for the rest."""
    import numpy as np

    SIGN_ZERO = 1.0          # the buggy port sets this to 0 (torch.sign)


    def _softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


    def port(name, inputs, params, upstream, attrs):
        if name == "quantizer.ste":
            x = inputs["x"].astype(np.float32)
            y = np.where(x > 0, 1.0, np.where(x < 0, -1.0, SIGN_ZERO))
            return {"y": y, "grad_x": upstream["y"] * (np.abs(x) <= attrs["clip"])}
        if name == "s2bnn.distribution_loss":
            s, t, tau = inputs["student"], inputs["teacher"], attrs["tau"]
            p_s, p_t = _softmax(s / tau), _softmax(t / tau)
            loss = np.mean(-(p_t * np.log(p_s)).sum(axis=1))
            return {"loss": loss, "grad_student": upstream["loss"] * (p_s - p_t) / (len(s) * tau),
                    "grad_teacher": np.zeros_like(t)}
        return None
''')


@pytest.fixture
def port_dir(tmp_path, monkeypatch):
    (tmp_path / "good_port.py").write_text(PORT)
    (tmp_path / "bad_port.py").write_text(PORT.replace("SIGN_ZERO = 1.0", "SIGN_ZERO = 0.0"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_cli_golden_then_verify_end_to_end(port_dir, capsys):
    assert main(["golden", "cases", "--only", "quantizer.*,s2bnn.distribution_loss"]) == 0
    out = capsys.readouterr().out
    assert "wrote 5 golden cases to cases" in out
    assert sorted(p.name for p in (port_dir / "cases").glob("*.npz")) == [
        "quantizer.approx.npz", "quantizer.ede.npz", "quantizer.ede_late.npz",
        "quantizer.ste.npz", "s2bnn.distribution_loss.npz"]

    assert main(["verify", "cases", "--against", "good_port:port"]) == 0
    out = capsys.readouterr().out
    assert "[OK] quantizer.ste" in out and "[OK] s2bnn.distribution_loss" in out
    assert "5 cases: 2 OK, 0 NOT OK, 0 WRONG SHAPE, 0 ERROR, 3 skipped" in out

    assert main(["verify", "cases", "--against", "bad_port.py:port", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "[NOT OK] quantizer.ste  (1 of 2 tensors NOT OK)" in out
    assert "y                      output       NOT OK" in out
    assert "2 of 30 elements off" in out and "got 0, want 1" in out
    assert "sign(0) = sign(-0.0) = +1" in out                   # the convention to check
    assert "[OK]" not in out                                    # --quiet

    assert main(["verify", "cases", "--against", "bad_port:port", "--only", "s2bnn.*"]) == 0
    assert "1 case: 1 OK" in capsys.readouterr().out


def test_cli_verify_committed_cases_with_minibnn_itself(capsys):
    assert main(["verify", str(COMMITTED), "--against", "minibnn.golden:reference",
                 "--quiet"]) == 0
    assert f"{len(COMMITTED_NAMES)} cases: {len(COMMITTED_NAMES)} OK" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--against", "good_port"], "expects MODULE:FUNCTION"),
    (["--against", "no_such_module:port"], "cannot import module 'no_such_module'"),
    (["--against", "good_port:nope"], "'good_port' has no attribute 'nope'"),
    (["--against", "good_port:SIGN_ZERO"], "is a float, not a function"),
    (["--against", "missing.py:port"], "no such file 'missing.py'"),
    (["--against", "good_port:port", "--only", "lcr.*"], "no golden case matches 'lcr.*'"),
])
def test_cli_verify_bad_arguments_are_one_line(port_dir, capsys, args, message):
    shutil.copytree(COMMITTED, port_dir / "cases", ignore=shutil.ignore_patterns("lcr.*"))
    manifest = json.loads((port_dir / "cases" / "manifest.json").read_text())
    manifest["cases"] = {k: v for k, v in manifest["cases"].items() if not k.startswith("lcr.")}
    (port_dir / "cases" / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", "cases", *args]) == 2                  # a usage error, not a mismatch
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_golden_list_and_missing_dir(capsys):
    assert main(["golden", "--list", "--only", "lcr.*"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("lcr.loss_official") and len(out.splitlines()) == 3
    assert main(["golden"]) == 1 and "give the folder" in capsys.readouterr().err
    assert main(["verify", "nowhere", "--against", "x:y"]) == 2
    assert "golden folder 'nowhere' does not exist" in capsys.readouterr().err

"""minibnn verify for CI: exit codes (0 OK, 1 mismatch, 2 usage error), --json, --junit,
--check-reference, --convention, --precision; the near-zero max rel; the pytest helper."""

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from minibnn import golden
from minibnn.cli import main

pytest_plugins = ["pytester"]

PORT = textwrap.dedent('''
    import numpy as np

    ZERO = 1.0                      # torch.sign's convention when 0.0

    def port(name, inputs, params, upstream, attrs):
        if name != "quantizer.ste":
            return None
        x = inputs["x"].astype(np.float32)
        y = np.where(x > 0, 1.0, np.where(x < 0, -1.0, ZERO))
        return {"y": y, "grad_x": upstream["y"] * (np.abs(x) <= attrs["clip"])}

    def transposed(name, inputs, params, upstream, attrs):
        if name == "quantizer.ste":
            return {"y": np.sign(inputs["x"]).T, "grad_x": upstream["y"]}
        if name == "quantizer.approx":
            return {"y": inputs["x"] @ inputs["x"]}          # raises a shape error
        return None
''')


@pytest.fixture
def work(tmp_path, monkeypatch):
    golden.write_golden(tmp_path / "cases", only="quantizer.ste,quantizer.approx,"
                                                 "s2bnn.distribution_loss")
    (tmp_path / "my_port.py").write_text(PORT)
    (tmp_path / "torch_sign_port.py").write_text(PORT.replace("ZERO = 1.0", "ZERO = 0.0"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_exit_codes_and_reports(work, capsys):
    assert main(["verify", "cases", "--against", "my_port:port", "--json", "r.json",
                 "--junit", "r.xml"]) == 0
    data = json.loads((work / "r.json").read_text())
    assert data["ok"] and data["counts"]["OK"] == 1 and data["counts"]["SKIPPED"] == 2
    assert data["against"] == "my_port:port" and data["cases"][0]["rows"][0]["tol_used"] == 0
    root = ET.parse(work / "r.xml").getroot()
    assert root.get("tests") == "4" and root.get("failures") == "0"
    assert root.get("skipped") == "2"                      # two skipped cases
    capsys.readouterr()
    assert main(["verify", "cases", "--against", "torch_sign_port:port", "--junit", "r.xml",
                 "--json", "r.json"]) == 1
    failure = ET.parse(work / "r.xml").getroot().find(".//testcase[@name='y']/failure")
    assert failure.get("type") == "NOT OK" and "2 of 30 elements off" in failure.get("message")
    assert json.loads((work / "r.json").read_text())["cases"][0]["status"] == "NOT OK"
    capsys.readouterr()
    assert main(["verify", "cases", "--against", "torch_sign_port:port",
                 "--convention", "sign0=zero"]) == 0
    out = capsys.readouterr().out
    assert "y [sign0=zero]" in out and "conventions sign0=zero" in out


@pytest.mark.parametrize("args, message", [
    (["--against", "my_port:prot"], "'my_port' has no attribute 'prot' (its callables: port"),
    (["--against", "my_port"], "expects MODULE:FUNCTION"),
    (["--against", "my_port:port", "--convention", "sign0=one"], "unknown convention"),
    (["--against", "my_port:port", "--precision", "float16", "--tolerance-scale", "2"],
     "not both"),
    (["--against", "my_port:port", "--only", "lcr.*"], "no golden case matches"),
    ([], "give the port with --against"),
])
def test_usage_errors_exit_2_on_one_line(work, capsys, args, message):
    assert main(["verify", "cases", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert main(["verify", "nowhere", "--against", "my_port:port"]) == 2


def test_shape_errors_are_wrong_shape(work, capsys):
    assert main(["verify", "cases", "--against", "my_port:transposed", "--json", "r.json"]) == 1
    out = capsys.readouterr().out
    assert "[WRONG SHAPE] quantizer.ste" in out and "[WRONG SHAPE] quantizer.approx" in out
    assert "the port raised ValueError: matmul" in out
    counts = json.loads((work / "r.json").read_text())["counts"]
    assert counts["WRONG SHAPE"] == 2 and counts["ERROR"] == 0


def test_check_reference_flags_an_inconsistent_reference(work, capsys):
    assert main(["verify", "cases", "--check-reference", "--only", "s2bnn.*"]) == 0
    assert "are self-consistent" in capsys.readouterr().out
    case = golden.load_case(work / "cases", "s2bnn.distribution_loss")
    case.expected["grad_student"] = case.expected["grad_student"] * 1.001
    golden.write_cases([case], work / "bad")
    assert main(["verify", "bad", "--check-reference", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "(reference vs finite differences)" in out and "NOT self-consistent" in out


def test_near_zero_references_do_not_inflate_max_rel():
    case = golden.build_case("s2bnn.distribution_loss")
    got = {k: v.copy() for k, v in case.expected.items()}
    grad = got["grad_student"]
    grad.flat[0] = 1e-18                                   # a reference element that is ~0
    case.expected["grad_student"] = grad.copy()
    got["grad_student"] = grad.copy()
    got["grad_student"].flat[0] = 1e-9                     # far below atol: fine
    row = golden.compare(case, got).row("grad_student")
    assert row.status == "OK" and row.max_rel is not None and row.max_rel < 1e-3
    assert 0 < row.used < 1


def test_pytest_suite_gives_one_test_per_case_and_tensor(pytester, tmp_path):
    golden.write_golden(tmp_path / "cases", only="quantizer.ste,quantizer.approx,"
                                                 "s2bnn.moco_infonce")
    (tmp_path / "cases_port.py").write_text(PORT + textwrap.dedent('''
        def both(name, inputs, params, upstream, attrs):
            if name == "quantizer.approx":
                raise ValueError("operands could not be broadcast together")
            return port(name, inputs, params, upstream, attrs)
    '''))
    pytester.syspathinsert(str(tmp_path))
    pytester.makepyfile(test_port=f'''
        from minibnn.verify.pytest import GoldenSuite
        from cases_port import both
        suite = GoldenSuite({str(tmp_path / "cases")!r}, both)

        @suite.parametrize
        def test_golden(case, tensor):
            suite.check(case, tensor)
    ''')
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2, skipped=5)
    result.stdout.fnmatch_lines(["*quantizer.approx/y*WRONG SHAPE*"])


def test_committed_cases_with_minibnn_itself_and_precision(capsys):
    committed = Path(__file__).resolve().parent / "golden"
    n = len(golden.read_manifest(committed)["cases"])
    assert main(["verify", str(committed), "--against", "minibnn.golden:reference",
                 "--precision", "bfloat16", "--quiet"]) == 0
    assert f"{n} cases: {n} OK" in capsys.readouterr().out

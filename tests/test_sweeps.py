"""Sweeps: spec checks and expansion, run reuse/resume/refusal, folder ownership, the report."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from minibnn.cli import main
from minibnn.sweeps import SpecError, SweepError, execute, expand, parse_spec, plan, run_sweep
from minibnn.sweeps.report import mean_std, paired_difference, write_report
from minibnn.sweeps.run import RunConflict, thread_env
from minibnn.sweeps.sweep import claim
from minibnn.checkpoint import load_state
from minibnn.train import run_training

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

TINY = """
name = "tiny"
baseline = "ce"
[base]
dataset = "synthetic"
model = "mlp"
width = 0.25
epochs = 2
batch_size = 64
[axes]
seed = [0, 1]
[shared.teacher]
real = true
epochs = 1
[arms.ce]
[arms.lcr]
method = "lcr"
teacher = "@teacher"
method_options = {alpha = 8.0}
"""


def test_expansion_names_order_and_references(tmp_path):
    runs = expand(parse_spec(TINY))
    assert [r.name for r in runs] == ["teacher", "ce-s0", "lcr-s0", "ce-s1", "lcr-s1"]
    lcr = runs[2]
    assert lcr.deps == ["teacher"]
    config = lcr.config(tmp_path)
    assert config.teacher == str((tmp_path / "teacher").absolute())
    assert config.method_options == {"alpha": 8.0} and config.seed == 0


def test_axes_names_and_arm_references():
    spec = parse_spec("""
name = "x"
[base]
dataset = "synthetic"
[axes]
lr = [0.001, 0.01]
real = [false, true]
seed = [3]
[arms.step1]
[arms.step2]
teacher = "@step1"
""")
    names = [r.name for r in expand(spec)]
    assert names[:2] == ["step1-lr0.001-no-real-s3", "step2-lr0.001-no-real-s3"]
    step2 = [r for r in expand(spec) if r.arm == "step2"]
    assert all(r.deps == [r.name.replace("step2", "step1")] for r in step2)


@pytest.mark.parametrize("text, message", [
    ("name = 'x'\n[base]\nbatchsize = 64", "'batchsize' in <spec> [base]; did you mean 'batch_size'?"),
    ("name = 'x'\n[arms.a]\nwidht = 0.5", "'widht' in <spec> [arms.a]; did you mean 'width'?"),
    ("name = 'x'\n[axes]\nseeds = [0, 1]", "unknown option 'seeds'; did you mean 'seed'?"),
    ("name = 'x'\nbasline = 'ce'", "unknown option 'basline' in <spec>; did you mean 'baseline'?"),
    ("name = 'x'\n[arms.a]\nmethod = 'cmim'\nmethod_options = {alfa = 1.0}",
     "did you mean 'alpha'?"),
    ("name = 'x'\n[axes]\nseed = [0, 0]", "share the folder 'x-s0'"),
    ("name = 'x'\n[arms.a]\n[arms.b]\nepochs = 8", "identical options"),
    ("name = 'x'\n[shared.teacher]\nreal = true\n[arms.a]\nteacher = '@techer'",
     "refers to @techer, which is not one of the shared runs and arms; did you mean 'teacher'?"),
    ("name = 'x'\n[arms.a]\nteacher = '@b'\n[arms.b]\nteacher = '@a'", "in a circle"),
    ("name = 'x'\n[base]\nepochs = 0", "epochs must be at least 1"),
    ("name = 'x'\nbaseline = 'cee'\n[arms.ce]", "baseline 'cee' is not an arm; did you mean 'ce'?"),
    ("name = 'x'\n[base\n", "not valid TOML"),
])
def test_bad_specs_name_the_key(text, message):
    with pytest.raises(SpecError) as err:
        expand(parse_spec(text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unset_drops_base_fields():
    spec = parse_spec("""
name = "u"
[base]
input_quantizer = "ede"
ede_t_min = 0.01
[shared.teacher]
unset = ["input_quantizer", "ede_t_min"]
real = true
[arms.a]
teacher = "@teacher"
""")
    teacher, arm = expand(spec)
    assert "input_quantizer" not in teacher.options and teacher.options["real"] is True
    assert arm.options["input_quantizer"] == "ede"
    with pytest.raises(SpecError, match="'input_quantiser' in \\[arms.a\\] unset; "
                                        "did you mean 'input_quantizer'"):
        expand(parse_spec("name = 'u'\n[arms.a]\nunset = ['input_quantiser']"))


def test_overrides_replace_axes_and_fields():
    spec = parse_spec(TINY, overrides={"seed": 1, "epochs": 1})
    runs = expand(spec)
    assert [r.name for r in runs] == ["teacher", "ce-s1", "lcr-s1"]
    assert all(r.options["epochs"] == 1 for r in runs)


def test_thread_env_sets_every_library():
    env = thread_env(1, {})
    assert env == {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                    "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _tasks(spec, out):
    return {row["run"].name: row["task"] for row in plan(spec, out)}


def _same_models(a: Path, b: Path) -> bool:
    sa, sb = load_state(a / "last.npz"), load_state(b / "last.npz")
    return all(np.array_equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_execute_resumes_bit_exactly_and_refuses_changed_config(tmp_path):
    spec = parse_spec(TINY, overrides={"seed": 0})
    full, cut = tmp_path / "full", tmp_path / "cut"
    task = _tasks(spec, full)["ce-s0"]
    assert execute(task)["outcome"] == "trained"
    assert execute(task)["outcome"] == "reused"
    interrupted = _tasks(spec, cut)["ce-s0"]
    run_training(expand(spec)[1].config(cut), interrupted["dir"], quiet=True, stop_after=1)
    assert plan(spec, cut)[1]["state"] == "partial"
    assert execute(interrupted)["outcome"] == "resumed"
    assert _same_models(full / "ce-s0", cut / "ce-s0")
    changed = dict(task, config={**task["config"], "lr": 0.01})
    with pytest.raises(RunConflict, match=r"other options \(lr: stored 0.002, spec 0.01\)"):
        execute(changed)


def test_a_folder_belongs_to_one_spec(tmp_path):
    spec = parse_spec(TINY)
    with claim(spec, tmp_path, expand(spec)):
        with pytest.raises(SweepError, match="another sweep"):
            with claim(spec, tmp_path, expand(spec)):
                pass
    other = parse_spec(TINY.replace('name = "tiny"', 'name = "other"'))
    with pytest.raises(SweepError, match="belongs to the sweep 'tiny', not 'other'"):
        run_sweep(other, tmp_path, dry_run=False, log=lambda s: None)
    (tmp_path / ".sweep.lock").write_text(json.dumps({"host": __import__("socket").gethostname(),
                                                      "pid": 2 ** 22 + 12345}))
    with claim(spec, tmp_path, expand(spec)):            # a dead process's lock is taken over
        pass


def test_mean_std_and_paired_interval():
    assert mean_std([97.5]) == "97.50 (n = 1)"
    assert mean_std([1.0, 3.0]) == "2.00 ± 1.41"
    d = paired_difference([2.0, 4.0, 9.0], [1.0, 1.0, 2.0])
    diffs = np.array([1.0, 3.0, 7.0])
    low, high = stats.t.interval(0.95, 2, loc=diffs.mean(), scale=stats.sem(diffs))
    assert math.isclose(d["low"], low) and math.isclose(d["high"], high)
    one = paired_difference([2.0], [1.0])
    assert one["n"] == 1 and one["low"] is None


def test_sweep_and_report_end_to_end(tmp_path, capsys):
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY)
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--out", str(out), "--jobs", "2",
                 "--set", "seed=[0]"]) == 0
    assert main(["sweep", str(spec_file), "--out", str(out), "--dry-run",
                 "--set", "seed=[0]"]) == 0
    listing = capsys.readouterr().out
    assert "3 runs" in listing and "(3 done" in listing and "after teacher" in listing
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(n = 1)" in text and "± 0.00" not in text and "n = 1, no interval" in text
    assert (out / "report.csv").read_text().startswith("row,arm,n,seeds")
    assert (out / "curves.png").stat().st_size > 1000
    assert main(["sweep", str(spec_file), "--out", str(out), "--set", "seed=[0]",
                 "--set", "lr=0.01"]) == 1
    err = capsys.readouterr().err
    assert "other options (lr: stored 0.002, spec 0.01)" in err and len(err.splitlines()) == 1


def test_linear_eval_step_is_kept_and_reported(tmp_path):
    spec = parse_spec(TINY.replace("[arms.ce]", "[arms.ce]\nlinear_eval = { epochs = 2 }"),
                      overrides={"seed": 0})
    rows = plan(spec, tmp_path)
    for row in rows:
        if row["run"].arm != "lcr":
            execute(row["task"])
    kept = json.loads((tmp_path / "ce-s0" / "lincls.json").read_text())
    assert kept["options"]["epochs"] == 2 and 0 <= kept["val_accuracy"] <= 1
    with claim(spec, tmp_path, expand(spec)):          # writes sweep.json, as a sweep does
        pass
    report = write_report(tmp_path, plots=False)
    assert "linear eval val acc (%)" in report["markdown"]
    assert f"{100 * kept['val_accuracy']:.2f} (n = 1)" in report["markdown"]
    assert "Not finished yet (left out): lcr-s0" in report["markdown"]


def test_report_of_a_folder_without_a_sweep(tmp_path):
    with pytest.raises(FileNotFoundError, match="minibnn sweep"):
        write_report(tmp_path)


@pytest.mark.parametrize("spec", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_study_specs_expand(spec):
    from minibnn.sweeps import load_spec

    runs = expand(load_spec(spec))
    assert runs and all(r.config(Path("runs")) for r in runs)

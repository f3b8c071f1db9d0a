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
from minibnn.data import load_dataset
from minibnn.evaluate import (corruption_accuracy, corruption_errors, linear_evaluation,
                              mean_corruption_error)
from minibnn.sweeps.robustness import load_table
from minibnn.train import build_run, load_model, run_training

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


ROBUST = """
name = "robust"
baseline = "ce"
[base]
dataset = "synthetic"
model = "mlp"
width = 0.25
epochs = 1
batch_size = 64
robustness = { limit = 100, corruptions = ["contrast", "gaussian_noise"], severities = [1, 3], reference = "@teacher" }
[axes]
seed = [0, 1]
[shared.teacher]
real = true
[arms.ce]
[arms.fast]
lr = 0.02
"""


def test_robustness_key_expansion_and_checks():
    runs = {r.name: r for r in expand(parse_spec(ROBUST))}
    assert runs["fast-s1"].robustness()["reference"] == "teacher"
    assert runs["teacher"].robustness()["reference"] == "teacher"     # its own reference: mCE 1
    assert runs["fast-s1"].deps == []                                 # not a training dependency
    paired = parse_spec(ROBUST.replace('reference = "@teacher"', 'reference = "@ce"')
                        .replace("[shared.teacher]\nreal = true\n", ""))
    assert {r.name: r.robustness()["reference"] for r in expand(paired)}["fast-s1"] == "ce-s1"
    limited = expand(parse_spec(ROBUST, overrides={"robustness.limit": 50}))
    assert all(r.options["robustness"]["limit"] == 50 for r in limited)
    with pytest.raises(SpecError, match="'robustness.limt'|'limt'"):
        parse_spec(ROBUST, overrides={"robustness.limt": 50})


def _refused_in_one_line(spec: str, change: tuple, message: str) -> None:
    """`spec` with one edit is refused by expand() with a one-line error holding `message`."""
    text = spec.replace(*change)
    assert text != spec
    with pytest.raises(SpecError) as err:
        expand(parse_spec(text))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [
    (("limit = 100", "limt = 100"), "robustness: unknown option 'limt'; did you mean 'limit'?"),
    (("severities = [1, 3]", "severities = [0, 3]"), "severities must be a non-empty list of "
                                                     "integers in 1..5, got [0, 3]"),
    (('"contrast"', '"contrst"'), "unknown corruption 'contrst'"),
    (("limit = 100", "limit = 100, checkpoint = 'latest'"),
     "checkpoint must be 'best' or 'last', got 'latest'"),
    (('reference = "@teacher"', 'reference = "@techer"'),
     "robustness reference @techer is not one of the shared runs; did you mean 'teacher'?"),
    (('reference = "@teacher"', 'reference = "teacher"'), 'as "@NAME"'),
    (("[shared.teacher]\n", "[shared.teacher]\nrobustness = { limit = 100 }\n"),
     "its robustness reference teacher needs a robustness key with the same evaluation options"),
    (("[shared.teacher]\n", "[shared.teacher]\nunset = ['robustness']\n"),
     "its robustness reference teacher needs a robustness key"),
])
def test_bad_robustness_keys_name_the_problem(change, message):
    _refused_in_one_line(ROBUST, change, message)


def _robust_sweep(out: Path, seeds=(0, 1)) -> None:
    spec = parse_spec(ROBUST, overrides={"seed": list(seeds)})
    for row in plan(spec, out):
        execute(row["task"])
    with claim(spec, out, expand(spec)):               # writes sweep.json, as a sweep does
        pass


def test_robustness_step_equals_a_joint_evaluation_is_reused_and_redone(tmp_path):
    _robust_sweep(tmp_path, seeds=(0,))
    names = ["teacher", "ce-s0", "fast-s0"]
    models = {n: load_model(tmp_path / n)[0] for n in names}      # best.npz, as the step
    _, val_set = load_dataset("synthetic")
    joint = corruption_accuracy(models, val_set, ["contrast", "gaussian_noise"], [1, 3],
                                seed=0, limit=100)
    for n in names:                   # evaluated one run at a time == all models on one set
        kept = json.loads((tmp_path / n / "robustness.json").read_text())
        assert kept["table"]["accuracy"] == joint[n].accuracy.tolist()
        assert kept["table"]["clean_accuracy"] == joint[n].clean_accuracy
        assert kept["options"]["limit"] == 100 and kept["options"]["checkpoint"] == "best"
    path = tmp_path / "ce-s0" / "robustness.json"
    before, checkpoint = path.stat().st_mtime_ns, (tmp_path / "ce-s0" / "last.npz").read_bytes()
    task = _tasks(parse_spec(ROBUST, overrides={"seed": [0]}), tmp_path)["ce-s0"]
    assert execute(task)["outcome"] == "reused" and path.stat().st_mtime_ns == before
    changed = _tasks(parse_spec(ROBUST, overrides={"seed": [0], "robustness.limit": 40}),
                     tmp_path)["ce-s0"]
    execute(changed)                  # other options: evaluated again, the checkpoint untouched
    kept = json.loads(path.read_text())
    assert kept["options"]["limit"] == 40 and kept["table"]["num_images"] == 40
    assert (tmp_path / "ce-s0" / "last.npz").read_bytes() == checkpoint


def test_report_robustness_columns(tmp_path):
    _robust_sweep(tmp_path)
    text = write_report(tmp_path, plots=False)["markdown"]
    assert "| row | n | clean acc (%) | mean corrupted acc (%) | mCE vs teacher | mCE paired vs " \
           "ce (95 % CI) | rmCE paired vs ce |" in text
    t = {n: load_table(tmp_path / n) for n in ("teacher", "ce-s0", "ce-s1", "fast-s0", "fast-s1")}
    mce_ref = [mean_corruption_error(corruption_errors(t[f"fast-s{s}"].errors,
                                                       t["teacher"].errors)) for s in (0, 1)]
    paired = np.array([mean_corruption_error(corruption_errors(t[f"fast-s{s}"].errors,
                                                               t[f"ce-s{s}"].errors)) for s in (0, 1)])
    low, high = stats.t.interval(0.95, 1, loc=paired.mean(), scale=stats.sem(paired))
    robust = text.split("| mean corrupted acc (%) |")[1]
    row = next(line for line in robust.splitlines() if line.startswith("| fast | 2 | "))
    assert f"{np.mean(mce_ref):.4f} ± {np.std(mce_ref, ddof=1):.4f}" in row
    assert f"{paired.mean():.4f} [{low:.4f}, {high:.4f}] (n = 2)" in row
    assert "| ce | 2 |" in text and "1 (baseline)" in text
    per_run = (tmp_path / "robustness.csv").read_text().splitlines()
    assert per_run[0].startswith("run,row,arm,seed,reference,clean_accuracy") and len(per_run) == 6
    # one seed: the single value and n = 1, never a made-up +- 0.00 or interval
    one = tmp_path / "one"
    _robust_sweep(one, seeds=(1,))
    text = write_report(one, plots=False)["markdown"]
    robust = text.split("| mean corrupted acc (%) |")[1]
    fast = next(line for line in robust.splitlines() if line.startswith("| fast | 1 | "))
    assert f"{paired[1]:.4f} (n = 1, no interval)" in fast
    assert "± 0.00" not in text


UNTRAINED = """
name = "init"
baseline = "ce"
[base]
dataset = "synthetic"
model = "mlp"
width = 0.25
epochs = 1
batch_size = 64
linear_eval = { epochs = 2 }
[axes]
seed = [0]
[arms.ce]
[arms.init]
untrained = true
"""


@pytest.mark.parametrize("change, message", [
    (("untrained = true", "untrained = 'yes'"), "untrained must be true or false, got 'yes'"),
    (("untrained = true", "untrained = true\nunset = ['linear_eval']"),
     "an untrained run is only scored by linear_eval"),
    (("untrained = true", "untrained = true\nrobustness = { limit = 10 }"),
     "an untrained run is only scored by linear_eval"),
    (("[arms.ce]", "[arms.ce]\nmethod = 'cmim'\nteacher = '@init'"),
     "refers to @init, an untrained run, which has no checkpoint"),
    (("linear_eval = { epochs = 2 }", "linear_eval = { epoch = 2 }"),
     "linear_eval: unknown option 'epoch'; did you mean 'epochs'?"),
])
def test_bad_untrained_keys_name_the_problem(change, message):
    _refused_in_one_line(UNTRAINED, change, message)


def test_untrained_run_scores_its_initialisation(tmp_path):
    spec = parse_spec(UNTRAINED)
    tasks = _tasks(spec, tmp_path)
    assert tasks["init-s0"]["untrained"] and not tasks["ce-s0"]["untrained"]
    assert execute(tasks["init-s0"])["outcome"] == "evaluated untrained"
    run_dir = tmp_path / "init-s0"
    assert not (run_dir / "last.npz").exists() and (run_dir / "config.json").exists()
    kept = json.loads((run_dir / "lincls.json").read_text())
    run = build_run(expand(spec)[1].config(tmp_path))          # the same seed: the same network
    train_set, val_set = load_dataset("synthetic")
    oracle = linear_evaluation(run.model, train_set, val_set, epochs=2, lr=0.1, seed=0)
    assert kept["untrained"] and kept["val_accuracy"] == oracle["val_accuracy"]
    assert kept["own_val_accuracy"] == run.loss.evaluate(run.model, run.val_loader)["val_accuracy"]
    before = (run_dir / "lincls.json").stat().st_mtime_ns
    execute(tasks["init-s0"])                                   # reused
    assert (run_dir / "lincls.json").stat().st_mtime_ns == before
    changed = dict(tasks["init-s0"], config={**tasks["init-s0"]["config"], "width": 0.5})
    with pytest.raises(RunConflict, match=r"other options \(width: stored 0.25, spec 0.5\)"):
        execute(changed)
    execute(tasks["ce-s0"])
    with claim(spec, tmp_path, expand(spec)):
        pass
    report = write_report(tmp_path, plots=True)
    row = next(line for line in report["markdown"].splitlines() if line.startswith("| init |"))
    assert f"{100 * kept['val_accuracy']:.2f} (n = 1)" in row and row.endswith("| - | 0 |")
    assert "Epochs 0: an untrained run" in report["markdown"]


def test_checkpoint_paths_outside_the_sweep_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_spec("name = 'p'\n[base]\ndataset = 'synthetic'\n[arms.a]\nmethod = 'lcr'\n"
                      "teacher = 'runs/other/teacher'")
    config = expand(spec)[0].config(Path("out"))
    assert config.teacher == str(tmp_path / "runs" / "other" / "teacher")

"""Sweep specs: a TOML file naming a base TrainConfig, arms, axes and shared runs.

    name = "my-study"                 # identifies the sweep; its output folder holds one name
    out = "runs/my-study"             # default output folder (`minibnn sweep --out` overrides)
    baseline = "ce"                   # arm the report pairs every other arm against

    [base]                            # TrainConfig fields common to every run
    model = "cnn"
    epochs = 4

    [axes]                            # the cartesian product of these is run for every arm
    seed = [0, 1, 2]
    "method_options.alpha" = [0.32, 3.2]

    [shared.teacher]                  # trained once (no axes), before the arms that use it
    real = true

    [arms.ce]                         # each arm: fields over [base]
    [arms.cmim]
    method = "cmim"
    teacher = "@teacher"              # "@NAME": the folder of shared run NAME, or of arm NAME's
    method_options = { form = "official" }   # run with the same axis values (a step-2 run
                                      # starting from its step-1 run: init_from = "@step1")

A run's folder is `ARM-AXES` under the output folder: axis values in the order written, the seed
last, as `s0`, `alpha0.32`, `lr0.001`, `cnn` (string values), `real`/`no-real` (booleans);
shared runs use their name. A run's `unset = ["input_quantizer"]` drops those [base] fields
(back to TrainConfig's defaults; TOML has no null). Every run also accepts
`linear_eval = {epochs = 100, lr = 0.1}`: after training, the frozen backbone of its last.npz
is scored by linear evaluation (`minibnn linear-eval`), kept in the run folder's lincls.json,
and `robustness = {limit = 1000, reference = "@teacher"}`: its accuracy under corruptions, kept
in robustness.json, for the report's mCE columns (see robustness.py). `untrained = true` (with
linear_eval) scores the network of its options at initialisation instead of training it.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..methods import METHODS
from ..train.config import TrainConfig
from .extras import EXTRA_RUN_KEYS, LINEAR_EVAL_KEYS, extras_problem
from .robustness import ROBUSTNESS_KEYS, evaluation_options

if sys.version_info >= (3, 11):
    import tomllib
else:                                                    # pragma: no cover
    import tomli as tomllib

__all__ = ["SweepSpec", "Run", "SpecError", "load_spec", "parse_spec", "expand", "parse_value",
           "TOP_KEYS", "RUN_KEYS"]

TOP_KEYS = ("name", "description", "out", "baseline", "base", "axes", "shared", "arms")
RUN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig)) + EXTRA_RUN_KEYS
REF = "@"
PATHS = ("teacher", "init_from")


class SpecError(ValueError):
    """A sweep spec that cannot be run; the message names the key and what was expected."""


@dataclass
class Run:
    """One training run of a sweep: its folder name, arm, axis values and full options."""

    name: str
    arm: str
    axes: dict
    options: dict                 # TrainConfig fields (+ linear_eval), references unresolved
    shared: bool = False
    deps: list = field(default_factory=list)
    refs: dict = field(default_factory=dict)     # "NAME" of "@NAME" -> folder name of that run

    def config(self, out: Path) -> TrainConfig:
        """The TrainConfig with every "@NAME" replaced by that run's absolute folder."""
        return TrainConfig.from_dict(_resolve(self.train_options(), out, self.refs))

    def train_options(self) -> dict:
        return {k: v for k, v in self.options.items() if k not in EXTRA_RUN_KEYS}

    def robustness(self) -> dict | None:
        """The robustness options, "@NAME" of the reference replaced by that run's folder name."""
        options = self.options.get("robustness")
        if options is None or "reference" not in options:
            return options
        return {**options, "reference": self.refs[options["reference"][1:]]}


@dataclass
class SweepSpec:
    name: str
    out: str
    base: dict
    axes: dict
    shared: dict
    arms: dict
    baseline: str | None = None
    description: str = ""
    source: str = ""
    overrides: dict = field(default_factory=dict)    # --set values applied to every run

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "source"}


def _closest(key: str, valid) -> str:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else f"; valid: {', '.join(sorted(valid))}"


def _check_keys(where: str, table: dict, valid) -> None:
    for key in table:
        if key not in valid:
            raise SpecError(f"unknown option {key!r} in {where}{_closest(key, valid)}")


def _method_defaults(method: str) -> dict | None:
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r}{_closest(method, list(METHODS))}")
    return getattr(METHODS[method], "DEFAULTS", None)


def _check_run(where: str, options: dict) -> None:
    """Keys and values of one run's merged options (a TrainConfig is built to check values)."""
    _check_keys(where, options, RUN_KEYS)
    defaults = _method_defaults(options.get("method", "ce"))
    mo = options.get("method_options", {})
    if not isinstance(mo, dict):
        raise SpecError(f"{where}: method_options must be a table, got {mo!r}")
    if defaults is not None:
        if options.get("method", "ce") == "ce" and mo:
            raise SpecError(f"{where}: method_options {sorted(mo)} given but method is 'ce'")
        _check_keys(f"{where}.method_options ({options.get('method', 'ce')})", mo, defaults)
    problem = extras_problem(options)
    if problem:
        raise SpecError(f"{where}{problem}")
    try:
        TrainConfig.from_dict({k: v for k, v in options.items() if k not in EXTRA_RUN_KEYS})
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


def _inherit(base: dict, over: dict, where: str) -> dict:
    """A run's options: [base], minus the fields its `unset` list names (back to TrainConfig's
    defaults: TOML has no null), plus its own."""
    over = dict(over)
    unset = over.pop("unset", [])
    if not isinstance(unset, list):
        raise SpecError(f"{where}: unset must be a list of option names, got {unset!r}")
    _check_keys(f"{where} unset", {k: None for k in unset}, RUN_KEYS)
    return _merge({k: v for k, v in base.items() if k not in unset}, over)


def _merge(base: dict, over: dict) -> dict:
    merged = {**base, **over}
    if "method_options" in base or "method_options" in over:
        merged["method_options"] = {**base.get("method_options", {}),
                                    **over.get("method_options", {})}
    return merged


def _set(options: dict, key: str, value) -> dict:
    """options with `key` (a field, "method_options.X", or "robustness.X" / "linear_eval.X"
    for the runs that have that table) set to value."""
    if key.startswith("method_options."):
        return _merge(options, {"method_options": {key.split(".", 1)[1]: value}})
    table, _, inner = key.partition(".")
    if inner and table in EXTRA_RUN_KEYS:
        if not isinstance(options.get(table), dict):
            return options
        return {**options, table: {**options[table], inner: value}}
    return {**options, key: value}


def parse_value(text: str):
    """A command-line value in TOML syntax (3, 0.1, true, [0, 1], "x"); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_spec(text: str, source: str = "<spec>", overrides: dict | None = None) -> SweepSpec:
    """Parse and check a spec. overrides: {key: value} applied to every run (a key that is an
    axis replaces the axis values instead), e.g. {"epochs": 1} from `--set epochs=1`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source} is not valid TOML: {err}") from None
    _check_keys(source, raw, TOP_KEYS)
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise SpecError(f"{source}: 'name' must be a non-empty string, e.g. name = \"study\"")
    for key in ("base", "axes", "shared", "arms"):
        if not isinstance(raw.get(key, {}), dict):
            raise SpecError(f"{source}: [{key}] must be a table")
    _check_keys(f"{source} [base]", raw.get("base", {}), RUN_KEYS)
    for group in ("shared", "arms"):
        for name, table in raw.get(group, {}).items():
            if not isinstance(table, dict):
                raise SpecError(f"{source}: [{group}.{name}] must be a table of options")
            _check_keys(f"{source} [{group}.{name}]", table, RUN_KEYS + ("unset",))
    axes = dict(raw.get("axes", {}))
    for key, values in axes.items():
        _check_axis_key(key)
        if not isinstance(values, list) or not values:
            raise SpecError(f"axis {key!r} must be a non-empty list of values, got {values!r}")
    base = dict(raw.get("base", {}))
    for key, value in (overrides or {}).items():
        _check_override_key(key)
        if key in axes:
            axes[key] = value if isinstance(value, list) else [value]
        else:
            base = _set(base, key, value)
    spec = SweepSpec(name=raw["name"], out=raw.get("out", f"runs/{raw['name']}"), base=base,
                     axes=axes, shared=dict(raw.get("shared", {})),
                     arms=dict(raw.get("arms", {})) or {raw["name"]: {}},
                     baseline=raw.get("baseline"), description=raw.get("description", ""),
                     source=source,
                     overrides={k: v for k, v in (overrides or {}).items() if k not in axes})
    if spec.baseline is not None and spec.baseline not in spec.arms:
        raise SpecError(f"baseline {spec.baseline!r} is not an arm{_closest(spec.baseline, spec.arms)}")
    clash = set(spec.shared) & set(spec.arms)
    if clash:
        raise SpecError(f"{sorted(clash)} are both a shared run and an arm: rename one")
    return spec


def _check_axis_key(key: str) -> None:
    if key.startswith("method_options."):
        return
    if key not in RUN_KEYS or key in EXTRA_RUN_KEYS:
        raise SpecError(f"unknown option {key!r}{_closest(key, RUN_KEYS)}")


def _check_override_key(key: str) -> None:
    table, _, inner = key.partition(".")
    if inner and table in ("linear_eval", "robustness"):
        valid = LINEAR_EVAL_KEYS if table == "linear_eval" else ROBUSTNESS_KEYS
        _check_keys(f"--set {table}", {inner: None}, valid)
    elif key not in EXTRA_RUN_KEYS:
        _check_axis_key(key)


def load_spec(path: str | Path, overrides: dict | None = None) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} not found (expected a .toml file)")
    return parse_spec(path.read_text(), str(path), overrides)


def _axis_part(key: str, value) -> str:
    short = "s" if key == "seed" else key.split(".")[-1]
    if isinstance(value, bool):
        return short if value else f"no-{short}"
    if isinstance(value, float):
        return f"{short}{value:g}"
    if isinstance(value, int):
        return f"{short}{value}"
    return "".join(c if c.isalnum() or c in "._+" else "_" for c in str(value))


def expand(spec: SweepSpec) -> list[Run]:
    """Every run of the spec, shared runs first, each arm's runs in axis order (seed-major)."""
    runs: list[Run] = []
    overrides = spec.overrides
    for name, over in spec.shared.items():
        options = _inherit(spec.base, over, f"[shared.{name}]")
        for key, value in overrides.items():
            options = _set(options, key, value)
        _check_run(f"[shared.{name}]", options)
        runs.append(Run(name, name, {}, options, shared=True))
    keys = sorted(spec.axes, key=lambda k: k == "seed")          # seed last in the name
    seeds_first = sorted(spec.axes, key=lambda k: k != "seed")   # seed-major order of runs
    for combo in itertools.product(*(spec.axes[k] for k in seeds_first)):
        values = dict(zip(seeds_first, combo))
        for arm, over in spec.arms.items():
            options = _inherit(spec.base, over, f"[arms.{arm}]")
            for key, value in overrides.items():
                options = _set(options, key, value)
            for key in keys:
                options = _set(options, key, values[key])
            name = "-".join([arm] + [_axis_part(k, values[k]) for k in keys])
            _check_run(f"[arms.{arm}] ({name})", options)
            runs.append(Run(name, arm, {k: values[k] for k in keys}, options))
    _check_duplicates(runs)
    _link(runs, spec)
    return runs


def _refs(options: dict) -> list[str]:
    values = list(options.values()) + list(options.get("method_options", {}).values())
    return [v[1:] for v in values if isinstance(v, str) and v.startswith(REF)]


def _link(runs: list[Run], spec: SweepSpec) -> None:
    """Fill each run's deps from its "@NAME" references; unknown names and cycles are errors."""
    by_key = {(r.arm, tuple(sorted(r.axes.items()))): r for r in runs if not r.shared}
    shared = {r.name: r for r in runs if r.shared}
    for run in runs:
        for ref in _refs(run.options):
            untrained = [r for r in runs if r.options.get("untrained")
                         and (r.name == ref or r.arm == ref and not r.shared)]
            if untrained:
                raise SpecError(f"run {run.name} refers to {REF}{ref}, an untrained run, which "
                                "has no checkpoint")
            if ref in shared:
                run.refs[ref] = shared[ref].name
            elif ref in spec.arms and not run.shared:
                run.refs[ref] = by_key[(ref, tuple(sorted(run.axes.items())))].name
            else:
                where = "shared runs" if run.shared else "shared runs and arms"
                raise SpecError(f"run {run.name} refers to {REF}{ref}, which is not one of the "
                                f"{where}{_closest(ref, list(shared) + list(spec.arms))}")
            run.deps.append(run.refs[ref])
    _link_robustness(runs, spec, by_key, shared)
    order = topological(runs)
    runs[:] = order


def _link_robustness(runs: list[Run], spec: SweepSpec, by_key: dict, shared: dict) -> None:
    """Resolve each robustness reference ("@NAME", not a training dependency); the reference
    run must be evaluated on the same images (the same evaluation options)."""
    for run in runs:
        ref = (run.options.get("robustness") or {}).get("reference")
        if ref is None:
            continue
        name = ref[1:]
        if name in shared:
            target = shared[name]
        elif name in spec.arms and not run.shared:
            target = by_key[(name, tuple(sorted(run.axes.items())))]
        else:
            raise SpecError(f"run {run.name}: robustness reference {ref} is not one of the "
                            f"shared runs{'' if run.shared else ' and arms'}"
                            f"{_closest(name, list(shared) + list(spec.arms))}")
        theirs = target.options.get("robustness")
        if theirs is None or evaluation_options(theirs) != evaluation_options(run.options["robustness"]):
            raise SpecError(f"run {run.name}: its robustness reference {target.name} needs a "
                            "robustness key with the same evaluation options (limit, severities, "
                            "corruptions, seed, checkpoint); put `robustness` in [base]")
        run.refs[name] = target.name


def topological(runs: list[Run]) -> list[Run]:
    """Runs ordered so every run comes after its deps (stable otherwise)."""
    by_name = {r.name: r for r in runs}
    done: dict[str, bool] = {}
    order: list[Run] = []

    def visit(run: Run, path: tuple) -> None:
        if done.get(run.name):
            return
        if run.name in path:
            raise SpecError(f"runs depend on each other in a circle: {' -> '.join(path + (run.name,))}")
        for dep in run.deps:
            visit(by_name[dep], path + (run.name,))
        done[run.name] = True
        order.append(run)

    for run in runs:
        visit(run, ())
    return order


def _check_duplicates(runs: list[Run]) -> None:
    seen_names: dict[str, Run] = {}
    seen_configs: dict[str, Run] = {}
    for run in runs:
        if run.name in seen_names:
            raise SpecError(f"two runs would share the folder {run.name!r}: an axis lists the "
                            "same value twice (or two values print alike); remove the duplicate")
        seen_names[run.name] = run
        full = {**TrainConfig.from_dict(run.train_options()).to_dict(),      # defaults filled in
                **{k: run.options.get(k) for k in EXTRA_RUN_KEYS}}
        key = repr(sorted((k, repr(v)) for k, v in full.items()))
        if key in seen_configs:
            raise SpecError(f"runs {seen_configs[key].name!r} and {run.name!r} have identical "
                            "options (the same training twice); drop one arm or axis value")
        seen_configs[key] = run


def _resolve(options: dict, out: Path, refs: dict) -> dict:
    """"@NAME" -> that run's absolute folder; a checkpoint path outside the sweep (teacher,
    init_from) -> absolute, from where the sweep starts (workers may start elsewhere)."""
    def sub(key, value):
        if isinstance(value, str) and value.startswith(REF):
            return str((Path(out) / refs[value[1:]]).absolute())
        return str(Path(value).absolute()) if key in PATHS and isinstance(value, str) else value

    resolved = {k: sub(k, v) for k, v in options.items()}
    if "method_options" in resolved:
        resolved["method_options"] = {k: sub(k, v) for k, v in resolved["method_options"].items()}
    return resolved

"""The golden case format: `Case` in memory, one `.npz` per case plus one `manifest.json` on disk.

An `.npz` holds the arrays under "inputs/NAME", "params/NAME", "upstream/NAME" and
"expected/NAME"; the manifest holds everything else (description, conventions, attributes,
shapes, dtypes, tolerances, a SHA-256 per file). Writing is byte-deterministic (stored zip
members with a fixed timestamp), so the same seed gives identical files. Reading checks every
file against the manifest and names the case and the tensor when something does not fit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..npzio import replace_folder

__all__ = ["FORMAT", "VERSION", "GROUPS", "Expected", "Case", "write_cases", "read_manifest",
           "load_cases", "load_case", "select_names"]

FORMAT = "minibnn-golden"
VERSION = 1
GROUPS = ("inputs", "params", "upstream", "expected")
KINDS = ("output", "grad", "intermediate")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)        # the earliest zip timestamp: files do not depend on time


@dataclass(frozen=True)
class Expected:
    """How one expected tensor is checked.

    kind: "output" (required), "grad" (required; `of` names the input or parameter, `detached`
    says the convention makes it exactly zero) or "intermediate" (optional: compared only when
    the callable returns it). Element-wise test: |got - want| <= atol + rtol * |want|;
    atol = rtol = 0 means exact (integers, bits, +-1 signs).
    """

    kind: str
    atol: float
    rtol: float
    differentiable: bool = False      # an output that receives an upstream gradient
    of: str | None = None             # for kind == "grad"
    detached: bool = False            # for kind == "grad"

    @property
    def required(self) -> bool:
        return self.kind != "intermediate"

    @property
    def exact(self) -> bool:
        return self.atol == 0 and self.rtol == 0

    def to_json(self, array: np.ndarray) -> dict:
        entry = {"kind": self.kind, "shape": list(array.shape), "dtype": array.dtype.str,
                 "atol": self.atol, "rtol": self.rtol, "required": self.required}
        if self.kind == "output":
            entry["differentiable"] = self.differentiable
        if self.kind == "grad":
            entry["of"], entry["detached"] = self.of, self.detached
        return entry


@dataclass
class Case:
    """One golden case: what to feed a port, and what it must give back.

    inputs / params: arrays passed to the callable (params are a layer's parameters and
    buffers); upstream: dL/d(output) for every differentiable output (scalar outputs get 1.0);
    expected: outputs, gradients "grad_<name>" and optional intermediates; checks: an Expected
    per expected tensor; attrs: JSON scalars (t, k, stride, tau, ...).
    """

    name: str
    description: str
    reference: str
    conventions: list[str]
    attrs: dict[str, Any]
    inputs: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    upstream: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    checks: dict[str, Expected]
    file: str = field(default="")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array under its .npz key, "GROUP/NAME"."""
        return {f"{group}/{name}": value for group in GROUPS
                for name, value in getattr(self, group).items()}

    def validate(self) -> None:
        """Check the case is self-consistent; a ValueError names the case and the tensor."""
        where = f"golden case {self.name!r}"
        if set(self.checks) != set(self.expected):
            raise ValueError(f"{where}: expected tensors {sorted(self.expected)} and their "
                             f"checks {sorted(self.checks)} differ")
        clash = set(self.inputs) & set(self.params)
        if clash:
            raise ValueError(f"{where}: {sorted(clash)} is both an input and a parameter")
        for name, check in self.checks.items():
            if check.kind not in KINDS:
                raise ValueError(f"{where}: tensor {name!r} has kind {check.kind!r}, expected "
                                 f"one of {', '.join(KINDS)}")
            if not (check.atol >= 0 and check.rtol >= 0):
                raise ValueError(f"{where}: tensor {name!r} has negative or NaN tolerances "
                                 f"atol={check.atol}, rtol={check.rtol}")
            if check.kind == "grad":
                source = self.inputs.get(check.of, self.params.get(check.of))
                if source is None:
                    raise ValueError(f"{where}: gradient {name!r} is of {check.of!r}, which is "
                                     f"neither an input nor a parameter")
                if np.shape(source) != np.shape(self.expected[name]):
                    raise ValueError(f"{where}: gradient {name!r} has shape "
                                     f"{np.shape(self.expected[name])} but {check.of!r} has "
                                     f"shape {np.shape(source)}")
        differentiable = {n for n, c in self.checks.items()
                          if c.kind == "output" and c.differentiable}
        if set(self.upstream) != differentiable:
            raise ValueError(f"{where}: upstream gradients {sorted(self.upstream)} do not match "
                             f"the differentiable outputs {sorted(differentiable)}")
        for name, up in self.upstream.items():
            if np.shape(up) != np.shape(self.expected[name]):
                raise ValueError(f"{where}: upstream {name!r} has shape {np.shape(up)}, output "
                                 f"{name!r} has shape {np.shape(self.expected[name])}")

    def to_json(self) -> dict:
        def shapes(group: dict) -> dict:
            return {n: {"shape": list(a.shape), "dtype": a.dtype.str} for n, a in group.items()}

        return {"file": self.file, "reference": self.reference, "description": self.description,
                "conventions": list(self.conventions), "attrs": dict(self.attrs),
                "inputs": shapes(self.inputs), "params": shapes(self.params),
                "upstream": shapes(self.upstream),
                "expected": {n: self.checks[n].to_json(a) for n, a in self.expected.items()}}


# ------------------------------------------------------------------------------ writing
def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) whose bytes depend only on the arrays: stored members, a
    fixed timestamp, keys in the given order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.array(array, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_cases(cases: Sequence[Case], out_dir: str | Path, seed: int | None = None,
                generator: str = "", conventions: Sequence[str] = ()) -> Path:
    """Write `<name>.npz` per case and a manifest.json listing exactly these cases.

    Returns the manifest path. Files of other cases already in out_dir are left alone but are
    no longer listed. The output is byte-identical for identical cases. Everything is written
    into a temporary folder beside out_dir that then takes its place, so an interruption never
    leaves a half-written folder under out_dir's name.
    """
    target = Path(out_dir)
    out = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if out.exists():
        shutil.rmtree(out)
    if target.is_dir():
        shutil.copytree(target, out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _write_cases(cases, out, seed, generator, conventions)
        replace_folder(out, target)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return target / "manifest.json"


def _write_cases(cases, out: Path, seed, generator: str, conventions) -> Path:
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"write_cases: duplicate case names in {names}")
    entries = {}
    for case in cases:
        case.validate()
        case.file = case.name + ".npz"
        data = _npz_bytes(case.arrays())
        (out / case.file).write_bytes(data)
        entry = case.to_json()
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entries[case.name] = entry
    manifest = {"format": FORMAT, "version": VERSION, "generator": generator, "seed": seed,
                "calling_convention": "fn(name, inputs, params, upstream, attrs) -> "
                                      "dict[str, array] | None",
                "conventions": list(conventions), "cases": entries}
    path = out / "manifest.json"
    path.write_text(_dumps(manifest) + "\n")
    return path


def _dumps(obj: Any, width: int = 160) -> str:
    """JSON with one level of indentation per nesting, but any innermost list or object that
    fits in `width` characters on one line (shapes, tolerance entries)."""
    text = json.dumps(obj, indent=1)

    def fold(match: re.Match) -> str:
        inner = re.sub(r"\s*\n\s*", " ", match.group(0))
        inner = inner.replace("[ ", "[").replace(" ]", "]").replace("{ ", "{").replace(" }", "}")
        return inner if len(inner) <= width else match.group(0)

    text = re.sub(r"\[[^\[\]{}]*\]", fold, text)        # innermost lists
    return re.sub(r"\{[^{}]*\}", fold, text)             # objects holding no object


# ------------------------------------------------------------------------------ reading
def read_manifest(directory: str | Path) -> dict:
    """The parsed manifest.json of a golden folder, with its format and version checked."""
    path = Path(directory) / "manifest.json"
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"golden folder {str(directory)!r} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a golden folder holds manifest.json and one "
                                f".npz per case (write one with 'minibnn golden DIR')")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: expected a manifest with format {FORMAT!r}, found "
                         f"{manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: manifest version {manifest.get('version')!r} is not supported "
                         f"(this minibnn reads version {VERSION})")
    if not isinstance(manifest.get("cases"), dict):
        raise ValueError(f"{path}: 'cases' must map case names to entries")
    if not manifest["cases"]:
        raise ValueError(f"{path}: 'cases' is empty; a golden folder lists at least one case")
    return manifest


def select_names(names: Iterable[str], only: str | Sequence[str] | None) -> list[str]:
    """The names matching `only`: comma-separated names or shell patterns ("quantizer.*").
    None selects everything; a pattern that matches nothing is an error listing the names."""
    names = list(names)
    if only is None:
        return names
    patterns = [p.strip() for p in (only.split(",") if isinstance(only, str) else only)]
    patterns = [p for p in patterns if p]
    if not patterns:
        raise ValueError("--only is empty: give case names or patterns such as 'quantizer.*'")
    for pattern in patterns:
        if not any(fnmatchcase(n, pattern) for n in names):
            raise ValueError(f"no golden case matches {pattern!r}; available: {', '.join(names)}")
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def _entry_field(where: str, entry: dict, key: str, kind: type) -> Any:
    if key not in entry:
        raise ValueError(f"{where}: the manifest entry has no {key!r} field")
    if not isinstance(entry[key], kind):
        raise ValueError(f"{where}: manifest field {key!r} should be {kind.__name__}, found "
                         f"{type(entry[key]).__name__}")
    return entry[key]


def _load_one(directory: Path, name: str, entry: Any) -> Case:
    where = f"golden case {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: the manifest entry should be an object, found "
                         f"{type(entry).__name__}")
    file = _entry_field(where, entry, "file", str)
    path = directory / file
    if not path.is_file():
        raise FileNotFoundError(f"{where}: file {path} listed in the manifest is missing")
    data = path.read_bytes()
    digest = entry.get("sha256")
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{where}: {path} does not match the SHA-256 in the manifest (the file "
                         f"was modified or corrupted; regenerate it with 'minibnn golden')")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            stored = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ValueError(f"{where}: {path} is not a readable .npz file ({err})") from None

    groups: dict[str, dict[str, np.ndarray]] = {}
    listed = set()
    for group in GROUPS:
        spec = _entry_field(where, entry, group, dict)
        groups[group] = {}
        for tensor, info in spec.items():
            key = f"{group}/{tensor}"
            listed.add(key)
            if key not in stored:
                raise ValueError(f"{where}: {path.name} has no array {key!r} (tensor {tensor!r} "
                                 f"is listed in the manifest)")
            array = stored[key]
            shape = tuple(info.get("shape", ())) if isinstance(info, dict) else None
            if shape is None or array.shape != shape:
                raise ValueError(f"{where}: tensor {key!r} has shape {array.shape} in "
                                 f"{path.name}, the manifest says {shape}")
            if np.dtype(info.get("dtype", array.dtype.str)) != array.dtype:
                raise ValueError(f"{where}: tensor {key!r} has dtype {array.dtype} in "
                                 f"{path.name}, the manifest says {info.get('dtype')}")
            groups[group][tensor] = array
    extra = sorted(set(stored) - listed)
    if extra:
        raise ValueError(f"{where}: {path.name} holds arrays the manifest does not list: {extra}")

    checks = {}
    for tensor, info in entry["expected"].items():
        try:
            checks[tensor] = Expected(kind=info["kind"], atol=float(info["atol"]),
                                      rtol=float(info["rtol"]),
                                      differentiable=bool(info.get("differentiable", False)),
                                      of=info.get("of"), detached=bool(info.get("detached", False)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: expected tensor {tensor!r} has a malformed manifest "
                             f"entry ({type(err).__name__}: {err})") from None
    case = Case(name=name, description=str(entry.get("description", "")),
                reference=str(entry.get("reference", "")),
                conventions=list(_entry_field(where, entry, "conventions", list)),
                attrs=dict(_entry_field(where, entry, "attrs", dict)), checks=checks,
                file=file, **groups)
    case.validate()
    return case


def load_cases(directory: str | Path, only: str | Sequence[str] | None = None) -> list[Case]:
    """Read the cases of a golden folder (all, or those matching `only`), in manifest order."""
    manifest = read_manifest(directory)
    names = select_names(manifest["cases"], only)
    return [_load_one(Path(directory), n, manifest["cases"][n]) for n in names]


def load_case(directory: str | Path, name: str) -> Case:
    """One case by its exact name."""
    manifest = read_manifest(directory)
    if name not in manifest["cases"]:
        raise ValueError(f"no golden case {name!r} in {directory}; available: "
                       f"{', '.join(manifest['cases'])}")
    return _load_one(Path(directory), name, manifest["cases"][name])

"""Measure the --tolerance-scale a float32, float16 and bfloat16 PyTorch port needs, per case
family: run the port of tests/torch_port.py in each dtype over every golden case and report the
largest "tol used" (max |got - want| / (atol + rtol |want|); a case passes at a scale >= it).

    PYTHONPATH=. python tests/measure_tolerances.py            # the table in docs/golden.md

Cases whose reference gradients fail the finite-difference check (minibnn.golden.fdcheck) are
measured against the float64 run of the same port instead, provided that run agrees with the
finite differences; the table marks them. test_verify_tolerances.py asserts the documented
scales on the same port.
"""

from __future__ import annotations

import copy
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from minibnn import golden                                   # noqa: E402
from minibnn.golden.fdcheck import finite_difference_check   # noqa: E402
from torch_port import make_port                             # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def family(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "layer":
        return ".".join(parts[:2]).replace("batch_norm1d", "batch_norm").replace(
            "batch_norm2d", "batch_norm")
    return parts[0]


def measurable_cases() -> tuple[list, set]:
    """Every case the port implements; a case with an inconsistent reference gets the float64
    port's gradients as expected values (when those match finite differences)."""
    cases, replaced = [], set()
    port64 = make_port(torch.float64)
    for case in golden.build_cases():
        if case.name.startswith("engine."):
            continue
        if not finite_difference_check(case).ok:
            answer = golden.verify([case], port64)[case.name]
            fixed = copy.deepcopy(case)
            got = port64(case.name, case.inputs, case.params, case.upstream, case.attrs)
            for key in fixed.expected:
                if key.startswith("grad_"):
                    fixed.expected[key] = np.asarray(got[key], np.float64)
            if not finite_difference_check(fixed).ok:
                raise SystemExit(f"{case.name}: neither the reference nor the float64 port "
                                 f"agrees with finite differences:\n{answer}")
            case, _ = fixed, replaced.add(case.name)
        cases.append(case)
    return cases, replaced


def measure(cases) -> dict:
    """{dtype: {family: (required scale, worst case/tensor)}}."""
    table = {}
    for label, dtype in DTYPES.items():
        result = golden.verify(cases, make_port(dtype))
        worst = defaultdict(lambda: (0.0, ""))
        for report in result.reports:
            if report.error:
                raise SystemExit(f"{label} {report.case}: {report.error}")
            for row in report.rows:
                scale = float("inf") if (row.status == "NOT OK" and row.used is None) else \
                    (row.used or 0.0)
                if scale >= worst[family(report.case)][0]:
                    worst[family(report.case)] = (scale, f"{report.case} {row.tensor}")
        table[label] = dict(worst)
    return table


def main() -> None:
    torch.set_num_threads(1)
    cases, replaced = measurable_cases()
    table = measure(cases)
    families = list(table["float32"])
    print("| family | " + " | ".join(DTYPES) + " | worst tensor (bfloat16) |")
    print("|---|" + "---:|" * len(DTYPES) + "---|")
    for fam in families:
        mark = " (*)" if any(family(n) == fam for n in replaced) else ""
        cells = " | ".join(f"{table[d][fam][0]:.3g}" for d in DTYPES)
        print(f"| `{fam}`{mark} | {cells} | {table['bfloat16'][fam][1]} |")
    for d in DTYPES:
        print(f"{d}: max {max(v[0] for v in table[d].values()):.3g}")
    if replaced:
        print(f"(*) gradients measured against the float64 port: {', '.join(sorted(replaced))}")


if __name__ == "__main__":
    main()

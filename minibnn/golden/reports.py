"""Machine-readable verify reports: JSON (one object per case and row) and JUnit XML (one
<testcase> per case and tensor, which CI systems such as GitHub Actions, GitLab and Jenkins
display natively).

JUnit mapping: a tensor NOT OK is a <failure type="NOT OK">, MISSING and WRONG SHAPE are
failures of that type too; a port that raised is one <error> testcase for the case (type
"WRONG SHAPE" for a shape error); a skipped case and an optional tensor not returned are
<skipped>. Rows of a declared convention are testcases named "<tensor> [<convention>]".
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .compare import Report, Row, SuiteReport

__all__ = ["to_json", "write_json", "to_junit", "write_junit"]


def _finite(value: float | None) -> Any:
    if value is None:
        return None
    return value if math.isfinite(value) else str(value)          # JSON has no inf / nan


def _row(row: Row) -> dict:
    return {"tensor": row.tensor, "status": row.status, "ok": row.ok, "kind": row.kind,
            "max_abs": _finite(row.max_abs), "max_rel": _finite(row.max_rel),
            "atol": row.atol, "rtol": row.rtol, "tol_used": _finite(row.used),
            "elements": row.elements, "convention": row.convention or None, "note": row.note}


def _case(report: Report) -> dict:
    return {"case": report.case, "status": report.status(), "ok": report.ok,
            "error": report.error, "rows": [_row(r) for r in report.rows]}


def to_json(result: SuiteReport, **meta: Any) -> dict:
    """The whole run as a JSON-able dict: meta (directory, port, options), counts, ok, the
    smallest tolerance scale that would pass, and every case with its rows."""
    return {"ok": result.ok, "counts": result.counts(), "summary": result.summary(),
            "required_tolerance_scale": _finite(result.required_scale()), **meta,
            "cases": [_case(r) for r in result.reports]}


def write_json(result: SuiteReport, path: str | Path, **meta: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_json(result, **meta), indent=1) + "\n")
    return path


def _testcase(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")


def to_junit(result: SuiteReport, suite_name: str = "minibnn.verify") -> str:
    """JUnit XML text for the run: one testcase per (case, tensor)."""
    root = ET.Element("testsuites", name=suite_name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in result.reports:
        suite = ET.SubElement(root, "testsuite", name=report.case)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if report.skipped or report.error is not None:
            case = _testcase(suite, report.case, "(port)")
            counts["tests"] += 1
            if report.skipped:
                ET.SubElement(case, "skipped", message="the port returned None")
                counts["skipped"] += 1
            else:
                ET.SubElement(case, "error", type=report.status(),
                              message=report.error).text = report.error
                counts["errors"] += 1
        for row in report.rows:
            case = _testcase(suite, report.case, row.tensor)
            counts["tests"] += 1
            text = (f"{row.status}: max abs {row.max_abs}, max rel {row.max_rel}, atol "
                    f"{row.atol}, rtol {row.rtol}, tol used {row.used}. {row.note}")
            if not row.ok:
                failure = ET.SubElement(case, "failure", type=row.status, message=row.note)
                failure.text = text + ("\nconventions to check:\n- " +
                                       "\n- ".join(report.conventions)
                                       if report.conventions else "")
                counts["failures"] += 1
            elif row.status != "OK":
                ET.SubElement(case, "skipped", message=f"{row.status}: {row.note}")
                counts["skipped"] += 1
            else:
                ET.SubElement(case, "system-out").text = text
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: SuiteReport, path: str | Path, suite_name: str = "minibnn.verify"
                ) -> Path:
    path = Path(path)
    path.write_text(to_junit(result, suite_name))
    return path

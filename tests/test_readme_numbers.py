"""The README's tables of the committed run say what its files say: the findings table is
reports/findings.json (every mean, difference, interval and verdict of every row), the configuration table
reports/study_summary.json (score, trainable parameters, mean ± sd), to the printed decimal (no number typed
by hand drifts)."""

from __future__ import annotations

import json
import re

from conftest import REPO

ROW = re.compile(
    r"^\| (?P<claim>[^|]+) \| (?P<name>\w+) \| [^|]+ \| (?P<subset>all|fine evidence) \| (?P<a>[\d.]+) \| "
    r"(?P<b>[\d.]+) \| (?P<d>[+−][\d.]+) \| \[(?P<lo>[+−][\d.]+), (?P<hi>[+−][\d.]+)\] \| "
    r"\[(?P<alo>[+−][\d.]+), (?P<ahi>[+−][\d.]+)\] \| (?P<verdict>\w+) \|$"
)


def number(text: str) -> float:
    return float(text.replace("−", "-"))


def test_the_readme_findings_table_is_the_committed_findings() -> None:
    findings = json.loads((REPO / "reports" / "findings.json").read_text())
    rows = [m for line in (REPO / "README.md").read_text().splitlines() if (m := ROW.match(line))]
    names = {(name, subset) for name, record in findings.items() for subset in record["subsets"]}
    assert {(m["name"], m["subset"].replace(" ", "_")) for m in rows} == names
    for m in rows:
        record = findings[m["name"]]["subsets"][m["subset"].replace(" ", "_")]
        for key, field in (("a", "mean_a"), ("b", "mean_b"), ("d", "difference"), ("lo", "ci_low"),
                           ("hi", "ci_high"), ("alo", "adjusted_low"), ("ahi", "adjusted_high")):  # fmt: skip
            assert abs(number(m[key]) - record[field]) <= 0.05 + 1e-9, (m["name"], key)
        assert m["verdict"] == record["verdict"], m["name"]


CONFIGURATION_ROW = re.compile(
    r"^\| `(?P<name>\w+)` \| (?P<kind>global|local|fused) \| (?P<params>[\d,]+) \| "
    r"(?P<R1>[\d.]+ ± [\d.]+) \| (?P<R5>[\d.]+ ± [\d.]+) \| (?P<R10>[\d.]+ ± [\d.]+) \| "
    r"(?P<mAP>[\d.]+ ± [\d.]+) \|$"
)


def test_the_readme_configuration_table_is_the_committed_study_summary() -> None:
    summary = json.loads((REPO / "reports" / "study_summary.json").read_text())["configurations"]
    rows = [
        m for line in (REPO / "README.md").read_text().splitlines() if (m := CONFIGURATION_ROW.match(line))
    ]
    assert {m["name"] for m in rows} == set(summary)
    for m in rows:
        record = summary[m["name"]]
        assert (
            m["kind"] == record["final_kind"]
            and int(m["params"].replace(",", "")) == record["trainable_parameters"]
        )
        for metric in ("R1", "R5", "R10", "mAP"):
            mean, sd = (float(x) for x in m[metric].split(" ± "))
            stats = record["kinds"][record["final_kind"]][metric]
            assert abs(mean - stats["mean"]) <= 0.05 + 1e-9 and abs(sd - stats["std"]) <= 0.05 + 1e-9, m[
                "name"
            ]

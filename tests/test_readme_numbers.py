"""The README's table of the committed run's findings says what reports/findings.json says: every mean,
difference, interval and verdict of every row, to the printed decimal (no number typed by hand drifts)."""

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

"""The committed study is recomputable from the repository alone: the findings stage, run on the committed
record (reports/study/runs.json, per_query.npz, the convergence runs' record, the query subsets) with the
committed params.yaml, gives the committed findings.json and study_summary.json, in seconds and without a
model, an image or a training run; and the ablation report renders from the same files."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO

from acsa import findings, paths

COMMITTED = [
    paths.PARAMS,
    paths.STUDY_EVAL / "runs.json",
    paths.STUDY_EVAL / "per_query.npz",
    paths.CONVERGENCE,
    paths.QUERY_SUBSETS,
    paths.FINDINGS,
    paths.STUDY_SUMMARY,
    paths.PROBES,
    paths.REFERENCE_POINTS / "metrics.json",
]


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """Only the committed files of the study, where a clone has them."""
    for name in COMMITTED:
        source = REPO / name
        assert source.is_file(), f"{name} is not in the repository (commit the study's record)"
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return tmp_path


def test_the_committed_findings_recompute_from_the_committed_record(fresh_clone: Path, monkeypatch) -> None:
    monkeypatch.chdir(fresh_clone)
    for name in (paths.FINDINGS, paths.STUDY_SUMMARY):
        (fresh_clone / name).unlink()
    started = time.perf_counter()
    findings.main([])
    assert time.perf_counter() - started < 60
    for name in (paths.FINDINGS, paths.STUDY_SUMMARY):
        assert json.loads((fresh_clone / name).read_text()) == json.loads((REPO / name).read_text()), name


def test_the_ablation_report_renders_from_the_committed_files(fresh_clone: Path, monkeypatch) -> None:
    from acsa import report

    monkeypatch.chdir(fresh_clone)
    html = fresh_clone / "ablations.html"
    started = time.perf_counter()
    report.main([str(REPO / "notebooks" / "ablations.py"), "--html", str(html)])
    assert time.perf_counter() - started < 120
    text = html.read_text()
    assert "cross-scale" in text and "asymmetric" in text and "local alignment" in text

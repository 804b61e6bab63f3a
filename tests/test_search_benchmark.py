"""benchmarks/search_speed.py at a tiny size on the smoke model: every section runs and fills its rows."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of the repository
from benchmarks import search_speed  # noqa: E402


def test_search_speed_benchmark_small(smoke_run: Path, tmp_path: Path):
    args = [
        f"--model={smoke_run / 'model'}",
        f"--prepared={smoke_run / 'prepared'}",
        f"--work={tmp_path / 'work'}",
        "--gallery-ids=3",
        "--queries=4",
        "--clients=2",
        "--load-queries=12",
        "--scale-images=3000",
        "--scale-queries=3",
        "--recall-queries=8",
        "--nprobes",
        "1",
        "2",
        "--threads=1",
        "--in-process",
        f"--out={tmp_path / 'search_speed.json'}",
    ]
    summary = search_speed.main(args)
    measures = {row["measure"]: row for row in summary["rows"]}
    assert summary["build"]["images"] == 12
    assert summary["query"]["cold"]["n"] == 4 and summary["query"]["warm"]["p50_ms"] > 0
    assert summary["serve"]["errors"] == 0 and summary["serve"]["queries"] == 12
    scale = summary["scale"]
    assert scale["images"] == 3000 and scale["global_search"].startswith("faiss")
    assert 0.0 < scale["recall_at_100"] <= 1.0 and [p["nprobe"] for p in scale["nprobe_sweep"]] == [1, 2]
    assert summary["fp16"]["queries"] == 16 and summary["fp16"]["top1_identical"] >= 0.9
    assert measures["server errors"]["met"] is True
    assert (tmp_path / "search_speed.json").is_file()


def test_a_baseline_that_cannot_run_is_reported_and_the_run_kept(tmp_path: Path, monkeypatch):
    """An older revision that cannot read this model (its config lacks a newer key) fails in its own process:
    the benchmark says so in a row, and the figures of the current code are still written."""
    import argparse
    import subprocess

    from benchmarks import train_speed

    monkeypatch.setattr(train_speed, "export_revision", lambda ref, into: into)
    failed = subprocess.CompletedProcess(
        [], 1, stdout=None, stderr="Traceback\nConfigError: image.frozen: unknown key\n"
    )
    monkeypatch.setattr(search_speed.subprocess, "run", lambda *a, **k: failed)
    args = argparse.Namespace(
        baseline_ref="4db00b7", work=tmp_path, model=tmp_path, threads=1, gallery_ids=3, queries=4
    )
    base = search_speed.baseline_query(args)
    assert base == {"error": "exit 1: ConfigError: image.frozen: unknown key"}
    timing = {"p50_ms": 1.0, "p95_ms": 2.0, "encode_p50_ms": 0.5}
    results = {
        "args": {"baseline_ref": "4db00b7"},
        "query": {"images": 12, "cold": timing, "warm": timing},
        "baseline_query": base,
    }
    rows = {row["measure"]: row["value"] for row in search_speed.rows_of(results)}
    assert rows["12 images, cold phrases (4db00b7, own process)"].startswith("failed: exit 1")
    assert rows["12 images, warm phrases: query p50 ms"] == 1.0

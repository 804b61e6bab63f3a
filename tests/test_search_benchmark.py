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

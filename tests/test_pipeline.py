"""The smoke pipeline end to end, and the stages' command-line behaviour on bad input."""

import json
import subprocess
import sys

from conftest import REPO


def test_smoke_pipeline_writes_every_output(smoke_run):
    summary = json.loads((smoke_run / "prepared" / "summary.json").read_text())
    assert summary["train"] == {"ids": 16, "images": 32, "captions": 64}
    assert set(summary) >= {"train", "val", "test", "phrases"}
    assert summary["phrases"]["per_caption_mean"] > 1
    assert (smoke_run / "contact.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    for kind in ("global", "local", "fused"):
        assert set(metrics["test"][kind]) == {"R1", "R5", "R10", "mAP", "mINP"}
        assert 0 <= metrics["test"][kind]["R1"] <= metrics["test"][kind]["R10"] <= 100
    assert metrics["fusion_weight_chosen_on"] == "val"
    rankings = json.loads((smoke_run / "eval" / "rankings.json").read_text())
    assert len(rankings) == 4 * 2 * 2  # every test caption is a query
    assert (smoke_run / "live" / "metrics.json").is_file()
    # a finished run empties its resume checkpoints (the folder itself is a DVC output)
    assert list((smoke_run / "checkpoints").iterdir()) == []


def run_stage(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_prepare_missing_annotation_file_is_one_line_error_and_no_output(tmp_path):
    (tmp_path / "bench").mkdir()
    result = run_stage(
        "acsa.prepare", "--params", str(REPO / "params.yaml"), "--set", "data.dataset=cuhk-pedes",
        "--set", f"data.root={tmp_path / 'bench'}", "--out", str(tmp_path / "out"), cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "reid_raw.json" in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_stage_rejects_unknown_parameter(tmp_path):
    params = str(REPO / "params.yaml")
    result = run_stage("acsa.train", "--params", params, "--set", "train.lrr=1", cwd=tmp_path)
    assert result.returncode == 2
    assert "train.lrr: unknown key" in result.stderr

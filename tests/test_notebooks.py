"""The two report notebooks execute on the smoke pipeline's outputs and render offline HTML with their
sections and embedded figures; the explain stage writes what the visualisation report reads."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import REPO

from acsa import report

PNG = 'src="data:image/png;base64,'  # nbconvert writes <img alt=... src="data:image/png;base64,...">


def assert_offline(html: str) -> None:
    assert not re.search(r"<script[^>]* src=", html), "no external script (require.js, MathJax)"
    assert "cdnjs" not in html and "mathjax" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything from a network"
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html  # no warning or error output


def test_explain_outputs(smoke_run, explained):
    gallery = json.loads((explained / "gallery.json").read_text())
    queries = json.loads((explained / "queries.json").read_text())
    assert [t["name"] for t in gallery["tokens"]][:5] == ["mean", "head", "upper", "lower", "feet"]
    assert len(queries) == 16 and all(q["phrases"] for q in queries)
    rankings = json.loads((smoke_run / "eval" / "rankings.json").read_text())
    assert [q["rank"] for q in queries] == [r["first_match_rank"] for r in rankings]
    from safetensors.numpy import load_file

    maps = load_file(str(explained / "attention.safetensors"))
    assert maps["top1"].shape == maps["own"].shape == (16, len(gallery["tokens"]), 8)
    real = maps["own"][0][:, : len(queries[0]["phrases"])]
    assert abs(real.sum(axis=1) - 1).max() < 1e-4  # each token's weights over the real phrases sum to 1
    embedding = json.loads((explained / "embedding.json").read_text())
    assert len(embedding["points"]) == 4 * 2 + 16  # 4 test identities: 8 images and 16 captions
    assert json.loads((explained / "attribute_errors.json").read_text())["queries"] == 16


def test_visualisation_report(smoke_run, explained, tmp_path):
    html_path = tmp_path / "visualisation.html"
    report.run_report(
        REPO / "notebooks" / "visualisation.py",
        html_path,
        tmp_path / "visualisation.ipynb",
        {
            "explain_dir": str(explained),
            "prepared_dir": str(smoke_run / "prepared"),
            "n_success": 1,
            "n_failure": 1,
        },
    )
    html = html_path.read_text()
    assert_offline(html)
    for section in (
        "Where the first correct image lands",
        "Successes and failures",
        "t-SNE",
        "Attributes: hit",
    ):
        assert section in html
    queries = json.loads((explained / "queries.json").read_text())
    shown = re.findall(r"Query (\d+) — (success|failure)", html)
    assert len(shown) >= 1 and all((queries[int(q)]["rank"] == 1) == (kind == "success") for q, kind in shown)
    # per case: its ranking and one or two attention maps; then the t-SNE map and the attribute bars
    assert html.count(PNG) >= 2 * len(shown) + 2
    assert "the top-1 image most often contradicts the caption" in html or "Too few R@1 misses" in html


def test_ablation_report(smoke_run, tmp_path):
    """Full ACSA = main + a crafted second seed; global-only = two crafted seeds without the local scores."""
    metrics = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    eval_dir, live_dir = tmp_path / "eval", tmp_path / "live"

    def variant(name, shift, local=True):
        test = {kind: {m: v + shift for m, v in values.items()} for kind, values in metrics["test"].items()}
        if not local:
            test = {"global": test["global"]}
        crafted = {**metrics, "test": test, "local_mode": metrics["local_mode"] if local else "none"}
        shutil.copytree(smoke_run / "eval", eval_dir / name)
        (eval_dir / name / "metrics.json").write_text(json.dumps(crafted))
        shutil.copytree(smoke_run / "live", live_dir / name)

    variant("main", 0.0)
    variant("full_seed1", 2.0)
    variant("global_only", -1.0, local=False)
    variant("global_only_seed1", -0.5, local=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        "train: {seed: 0}\nablations:\n  global_only: {model.use_local: false}\n"
        "  global_only_seed1: {model.use_local: false, train.seed: 1}\n  full_seed1: {train.seed: 1}\n"
    )
    html_path = tmp_path / "ablations.html"
    report.run_report(
        REPO / "notebooks" / "ablations.py",
        html_path,
        None,
        {"params_file": str(params), "eval_dir": str(eval_dir), "live_dir": str(live_dir)},
    )
    html = html_path.read_text()
    assert_offline(html)
    for section in ("Results", "Findings", "Metrics per variant", "Fusion weight", "Training curves"):
        assert f">{section}" in html
    assert html.count(PNG) == 4
    fused = metrics["test"]["fused"]["R1"] + 1.0  # mean over seeds 0 (+0) and 1 (+2)
    glob = metrics["test"]["global"]["R1"] - 0.75
    assert f"full ACSA R@1 {fused:.1f} (± 1.0 over seeds 0, 1) vs global-only {glob:.1f}" in html
    assert f"{fused - glob:+.1f} points" in html


def test_report_rejects_unknown_parameter(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameters \['eval_dri'\]"):
        report.run_report(REPO / "notebooks" / "ablations.py", tmp_path / "a.html", None, {"eval_dri": "x"})
    assert not (tmp_path / "a.html").exists()

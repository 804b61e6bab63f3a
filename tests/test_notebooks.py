"""The two report notebooks execute and render offline HTML with their sections and embedded figures: the
visualisation report on the smoke pipeline's outputs (the explain stage writes what it reads), the ablation
report on a hand-built study folder."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO
from fixtures_study import write_fake_study

from acsa import report
from acsa.config import load_params
from acsa.errors import NotebookError

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
    phrases = load_params(REPO / "params.yaml").data.num_phrases
    assert maps["top1"].shape == maps["own"].shape == (16, len(gallery["tokens"]), phrases)
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


def test_ablation_report(tmp_path):
    """The page renders from a hand-built study folder (tests/fixtures_study.py), with every section, its
    figures and the computed sentences, and no code."""
    parameters = write_fake_study(tmp_path)
    html_path = tmp_path / "ablations.html"
    report.run_report(REPO / "notebooks" / "ablations.py", html_path, None, parameters)
    html = html_path.read_text()
    assert_offline(html)
    for section in (
        "1. What was compared",
        "2. Results",
        "3. Findings",
        "4. Reference points beside the models",
        "5. The global branch",
        "6. Convergence",
        "7. Fusion weight on validation",
        "8. Every run",
    ):
        assert f">{section}<" in html
    # bars, reference ladder, score kinds, validation curves, fusion curves
    assert html.count(PNG) == 5
    assert "load_study_data" not in html and "show_table" not in html  # code hidden
    text = re.sub(r"<[^>]+>", "", html)  # the words as a reader sees them
    assert "full is better than global_only: R@1 41.0 vs 30.5 (3 seeds each: 0, 1, 2)" in text
    assert "No detectable difference between full and global_fair" in text
    assert "The main configuration does not beat global_fair." in text
    assert "The fair control closes the gap." in text
    assert "11 of 12 runs flattened" in text
    assert "Between colour_pair (35.0) and fine (60.0): channels 44.3, full 41.0, global_fair 40.2." in text
    assert "41.0 ± 1.0" in text and "20.0 / 37.0 / 41.0" in text


def test_ablation_report_checks_its_parameters(tmp_path):
    parameters = write_fake_study(tmp_path)
    with pytest.raises(NotebookError, match=r"configurations: unknown \['fulll'\]"):
        report.run_report(
            REPO / "notebooks" / "ablations.py",
            tmp_path / "a.html",
            None,
            {**parameters, "configurations": "[full, fulll]"},
        )
    assert not (tmp_path / "a.html").exists()


def test_report_rejects_unknown_parameter(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameters \['eval_dri'\]"):
        report.run_report(REPO / "notebooks" / "ablations.py", tmp_path / "a.html", None, {"eval_dri": "x"})
    assert not (tmp_path / "a.html").exists()

"""The two report notebooks execute and render offline HTML with their sections and embedded figures: the
visualisation report on the smoke pipeline's outputs (the explain stage writes what it reads), the ablation
report on a hand-built study folder."""

from __future__ import annotations

import html as html_lib
import json
import re

import numpy as np
import pytest
import yaml
from conftest import REPO
from fixtures_study import write_fake_study

from acsa import explain, report
from acsa.config.loading import load_params
from acsa.errors import ConfigError, NotebookError
from acsa.search.api import SearchIndex, build_index

PNG = 'src="data:image/png;base64,'  # nbconvert writes <img alt=... src="data:image/png;base64,...">
# params.yaml `explain` of the smoke run: the second query carries markup, which the report must show as text
FREE_QUERIES = [
    "a woman in a red coat carrying a black backpack",
    "a man in a <i>red</i> jacket & black shoes",
]
FREE_TOP_K = 3


def assert_offline(html: str) -> None:
    assert not re.search(r"<script[^>]* src=", html), "no external script (require.js, MathJax)"
    assert "cdnjs" not in html and "mathjax" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything from a network"
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html  # no warning or error output


def explain_args(smoke_run, out, params) -> list[str]:
    return [
        "--model",
        str(smoke_run / "model"),
        "--eval",
        str(smoke_run / "eval"),
        "--prepared",
        str(smoke_run / "prepared"),
        "--features",
        str(smoke_run / "features"),
        "--out",
        str(out),
        "--params",
        str(params),
    ]


def explain_params(folder, queries, top_k=FREE_TOP_K):
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"explain": {"free_queries": queries, "free_top_k": top_k}}))
    return path


@pytest.fixture(scope="module")
def explained(smoke_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    out = folder / "main"
    explain.main(explain_args(smoke_run, out, explain_params(folder, FREE_QUERIES)))
    return out


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
    assert sorted(p.name for p in explained.iterdir()) == [
        "attention.safetensors",
        "attribute_errors.json",
        "embedding.json",
        "free_attention.safetensors",
        "free_queries.json",
        "gallery.json",
        "queries.json",
    ]  # the search index the free queries went through is gone


def test_free_queries_are_what_the_search_api_returns(smoke_run, explained, tmp_path):
    """free_queries.json and free_attention.safetensors hold, query by query, what acsa.search.api returns
    from an index of the test images built apart (as `acsa index --prepared ... --split test` would), mapped
    onto the gallery of gallery.json."""
    from safetensors.numpy import load_file

    gallery = json.loads((explained / "gallery.json").read_text())
    free = json.loads((explained / "free_queries.json").read_text())
    maps = load_file(str(explained / "free_attention.safetensors"))["maps"]
    phrases = load_params(REPO / "params.yaml").data.num_phrases
    assert maps.shape == (len(FREE_QUERIES), FREE_TOP_K, len(gallery["tokens"]), phrases)
    build_index(smoke_run / "model", tmp_path / "index", prepared=smoke_run / "prepared", split="test")
    index = SearchIndex.open(tmp_path / "index")
    assert free["images"] == len(index) == len(gallery["image_paths"]) and free["top_k"] == FREE_TOP_K
    assert free["fusion_weight"] == index.fusion_weight and free["global_search"] == "exact"
    assert [q["query"] for q in free["queries"]] == FREE_QUERIES
    for q, record in enumerate(free["queries"]):
        response = index.search(FREE_QUERIES[q], top_k=FREE_TOP_K, attention=True)
        assert record["phrases"] == response.phrases and len(response.phrases) >= 2
        assert [r["rank"] for r in record["results"]] == list(range(1, FREE_TOP_K + 1))
        for stored, result in zip(record["results"], response.results, strict=True):
            assert gallery["image_paths"][stored["image"]] == stored["path"] == result.key
            assert stored["id"] == gallery["image_ids"][stored["image"]]
            assert (stored["global"], stored["local"], stored["fused"]) == (
                result.global_,
                result.local,
                result.fused,
            )
        real = len(response.phrases)
        expected = np.stack([np.asarray(r.attention, dtype=np.float32).T for r in response.results])
        np.testing.assert_array_equal(maps[q, :, :, :real], expected)  # [K, R, P_real]
        assert not maps[q, :, :, real:].any()
    assert "<i>red</i> jacket" in free["queries"][1]["phrases"]  # the data keeps the text as written


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        (["a man in a red jacket", "   "], r"explain\.free_queries\[1\]: must not be empty"),
        (["a man in a red jacket", "walking away quickly"], r"explain\.free_queries\[1\]: no noun phrase"),
    ],
)
def test_free_queries_the_tool_refuses_name_the_key(smoke_run, tmp_path, queries, message):
    out = tmp_path / "explain" / "main"
    with pytest.raises(ConfigError, match=message):
        explain.main(explain_args(smoke_run, out, explain_params(tmp_path, queries)))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # nothing written, nothing left


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
        "Your own words",
        "t-SNE",
        "Attributes: hit",
    ):
        assert section in html
    queries = json.loads((explained / "queries.json").read_text())
    shown = re.findall(r"Query (\d+) — (success|failure)", html)
    assert len(shown) >= 1 and all((queries[int(q)]["rank"] == 1) == (kind == "success") for q, kind in shown)
    # per case: its ranking and one or two attention maps; per free query its results with their attention;
    # then the t-SNE map and the attribute bars
    assert html.count(PNG) >= 2 * len(shown) + len(FREE_QUERIES) + 2
    free = json.loads((explained / "free_queries.json").read_text())
    for number, record in enumerate(free["queries"]):
        assert f"Query {number + 1}: “{html_lib.escape(record['query'])}”" in html
        for phrase in record["phrases"]:
            assert f"<code>{html_lib.escape(phrase)}</code>" in html
        assert f"<code>{html_lib.escape(record['results'][0]['path'])}</code>" in html
        assert f"<td>{record['results'][0]['fused']:.3f}</td>" in html
    # the query with markup is shown as text: its tags are entities, never elements
    assert "a man in a &lt;i&gt;red&lt;/i&gt; jacket &amp; black shoes" in html
    assert "<i>red</i>" not in html
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

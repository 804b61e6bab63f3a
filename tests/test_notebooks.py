"""The two report notebooks execute and render offline HTML with their sections and embedded figures: the
visualisation report on the smoke pipeline's outputs (the explain stage writes what it reads), the ablation
report on a hand-built study folder."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

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


ABLATION_SECTIONS = (
    "1. What produced the findings",
    "2. The paper's claims",
    "3. Configurations",
    "4. The second score",
    "5. Fine evidence",
    "6. The encoder or the alignment?",
    "7. Convergence",
    "8. The learning-rate sweep",
    "9. The end-to-end confirmation",
    "10. Reference rankers, fusion weights and every run",
)


def render_ablations(tmp_path, parameters) -> tuple[str, str]:
    """The ablation report rendered from `parameters`: (its HTML, the words as a reader sees them)."""
    html_path = tmp_path / "ablations.html"
    report.run_report(REPO / "notebooks" / "ablations.py", html_path, None, parameters)
    html = html_path.read_text()
    assert_offline(html)
    assert "load_study_data" not in html and "show_table" not in html  # code hidden
    return html, html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def test_ablation_report(tmp_path):
    """The page renders from a hand-built study folder in the pipeline's formats (tests/fixtures_study.py),
    leading with the claims, with every section, its figures and the computed sentences, and no code."""
    html, text = render_ablations(tmp_path, write_fake_study(tmp_path))
    positions = [html.index(f">{section}<") for section in ABLATION_SECTIONS]
    assert positions == sorted(positions)
    # the claims table is the page's first table
    assert html.index("<table") > positions[1] and "Holm-adjusted interval" in html[: html.index("</table>")]
    # bars, score kinds, fine evidence, probes, validation curves, sweep, reference ladder, fusion curves
    assert html.count(PNG) == 8
    assert "Protocol: two-stage. The image backbone mobilenetv2_100, ImageNet-pretrained" in text
    assert (
        "Cross-scale: holds here on all queries only. On the fine-evidence queries it is inconclusive."
        in text
    )
    assert (
        "Asymmetric: does not hold here on all queries. It holds only on the fine-evidence queries." in text
    )
    assert "full and reverse are equivalent within ±2 points" in text
    assert "global_only trains at 0.004 (44.0) while 0.001 scored 47.0" in text
    assert "Kendall's tau = 0.33" in text and "61.0 ± 1.0" in text and "51.0 / 56.0 / 61.0" in text
    assert "neither the global embedding nor the tokens carry: global_only carried.type" in text


def test_ablation_report_without_optional_or_missing_inputs(tmp_path):
    """A missing input leaves a sentence, not an error: no findings, probes, convergence runs or reference
    points, and the optional pipeline not run."""
    parameters = write_fake_study(tmp_path, reference=False, optional=False)
    for name in ("findings_file", "probes_file", "convergence_file"):
        Path(parameters[name]).unlink()
    html, text = render_ablations(tmp_path, parameters)
    assert all(f">{section}<" in html for section in ABLATION_SECTIONS)
    assert "Not found" in text and "No claim can be judged" in text
    assert "No probes to show" in text and "No reference points to show" in text
    assert "The learning-rate sweep was not run here" in text
    assert "The end-to-end confirmation was not run here" in text and "dvc repro optional/dvc.yaml" in text
    assert "61.0 ± 1.0" in text  # the summary still gives the results


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

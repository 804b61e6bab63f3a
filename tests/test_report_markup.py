"""No live HTML from data (issue 13, item 2): captions, phrases, attribute names and configuration values
are third-party or user text; the reports show them as text. Every data-derived string is escaped before it
reaches Markdown, and nbconvert sanitises what the notebook outputs (a second line of defence)."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from bs4 import BeautifulSoup
from conftest import REPO

from acsa import report
from acsa.reports.notebook import render_html

# Each payload carries a marker "XSS_n" (never in base64, so never in a figure's data URI): no attribute or
# script may ever hold one, and no formatting of the report may be made of one.
PAYLOADS = [
    "a man <img src=x onerror=\"alert('XSS_1')\"> in red",
    "<script>alert('XSS_2')</script>",
    "[click me](javascript:alert('XSS_3'))",
    "<a href=\"javascript:alert('XSS_4')\">link</a>",
    "**XSS_5** _XSS_5_ `XSS_5` # XSS_5 > XSS_5",
    "<svg onload=alert('XSS_6')>",
    "<style>body{background:url(http://evil.example/XSS_7)}</style>",
    "&lt;img src=x onerror=alert('XSS_8')&gt; &amp;",
    "<javascript:alert('XSS_9')> <https://evil.example/XSS_9>",
    "` <img src=x onerror=alert('XSS_10')> `",
    '![XSS_11](x" onerror="alert(1))',
    "<details open ontoggle=alert('XSS_12')>",
]
# elements a caption could create if it were not escaped (phrases are shown in <code> by the report itself)
FORMATTING = {"strong", "em", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "svg", "details"}


def live_markup(html: str, allowed_code: set[str] = frozenset(), formatting: bool = True) -> list[str]:
    """What a payload made live in the page: attributes, scripts or styles holding a marker, and with
    `formatting`, formatting elements (strong, headings, links...) around one."""
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for tag in soup.find_all(True):
        for name, value in tag.attrs.items():
            if not formatting and name == "href" and str(value).startswith(("http://", "https://")):
                continue  # a plain web link is formatting, not code
            values = value if isinstance(value, list) else [value]
            if any("XSS_" in str(v) for v in values) or (name.startswith("on") and "alert" in str(value)):
                found.append(f"<{tag.name} {name}={value!r}>")
        text = tag.get_text()
        if tag.name in ("script", "style", "iframe", "object", "img", "svg") and "XSS_" in text:
            found.append(f"<{tag.name}>{text[:80]}")
        if formatting and tag.name in FORMATTING and "XSS_" in text:
            found.append(f"<{tag.name}>{text[:80]}")
        if formatting and tag.name == "code" and "XSS_" in text and text not in allowed_code:
            found.append(f"<code>{text[:80]}")
    return found


def test_markdown_text_is_shown_as_written():
    from nbconvert.filters.markdown import markdown2html

    from acsa.reports.markup import markdown_text

    for payload in PAYLOADS:
        html = markdown2html(f"> {markdown_text(payload)}")
        assert live_markup(html) == [], payload
        assert BeautifulSoup(html, "html.parser").get_text().strip() == payload


@pytest.fixture(scope="module")
def hostile_explained(explained, tmp_path_factory):
    """The explain stage's outputs for the smoke model, its captions, phrases and attribute names replaced
    by the payloads (what an annotation file carrying markup leads to)."""
    out = tmp_path_factory.mktemp("hostile") / "explain"
    shutil.copytree(explained, out)
    queries = json.loads((out / "queries.json").read_text())
    for n, query in enumerate(queries):
        query["caption"] = PAYLOADS[n % len(PAYLOADS)]
        query["phrases"] = [PAYLOADS[(n + k) % len(PAYLOADS)] for k in range(len(query["phrases"]))]
    (out / "queries.json").write_text(json.dumps(queries))
    errors = json.loads((out / "attribute_errors.json").read_text())
    for n, row in enumerate(errors["attributes"]):
        row["attribute"] = f"{PAYLOADS[n % len(PAYLOADS)]} {n}"
        row["misses_stating"] = max(row["misses_stating"], 5)  # named in the written findings
        if row["top1_differs_when_stated"] is None:
            row["top1_differs_when_stated"] = 50.0
    errors["misses"] = max(errors["misses"], 1)
    (out / "attribute_errors.json").write_text(json.dumps(errors))
    return out


def test_the_visualisation_report_shows_captions_as_text(smoke_run, hostile_explained, tmp_path):
    """The probe: a caption `a man <img src=x onerror="...">` became a live event handler."""
    html_path = tmp_path / "visualisation.html"
    queries = json.loads((hostile_explained / "queries.json").read_text())
    shown = list(range(len(PAYLOADS)))
    report.run_report(
        REPO / "notebooks" / "visualisation.py",
        html_path,
        None,
        {
            "explain_dir": str(hostile_explained),
            "prepared_dir": str(smoke_run / "prepared"),
            "queries": shown,
        },
    )
    html = html_path.read_text()
    phrases = {phrase for q in queries for phrase in q["phrases"]}
    # phrases and attribute names are shown as code spans: their text exactly, never markup
    errors = json.loads((hostile_explained / "attribute_errors.json").read_text())
    names = {row["attribute"] for row in errors["attributes"]}
    assert live_markup(html, phrases | names) == []
    text = BeautifulSoup(html, "html.parser").get_text()
    for payload in PAYLOADS:
        assert payload in text  # shown, as written


def test_config_values_in_the_ablation_report_are_text(tmp_path):
    """A configuration's override values and a finding's claim (shown in tables and sentences) are text, in
    the tables as the notebook displays them (tables.aligned) too."""
    import yaml
    from fixtures_study import write_fake_study
    from nbconvert.filters.markdown import markdown2html

    from acsa.reports import claims, sentences, tables
    from acsa.reports.study_files import load_study_data

    parameters = write_fake_study(tmp_path)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["study"]["optional"] = {"evil": {"image.backbone": PAYLOADS[0]}}
    for name in raw["study"]["configurations"]:
        if name != raw["study"]["main"]:
            raw["study"]["configurations"][name]["image.backbone"] = PAYLOADS[1]
    raw["study"]["findings"]["cross_scale_vs_region"]["claim"] = PAYLOADS[3]
    raw["study"]["findings"]["cross_scale_vs_image"]["claim"] = PAYLOADS[4]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    findings = json.loads((tmp_path / "reports" / "findings.json").read_text())
    findings["cross_scale_vs_region"]["claim"] = PAYLOADS[3]
    findings["cross_scale_vs_image"]["claim"] = PAYLOADS[4]
    (tmp_path / "reports" / "findings.json").write_text(json.dumps(findings))
    data = load_study_data(**parameters)
    configurations, claims_table = tables.configurations_table(data), claims.claims_table(data)
    html = configurations.to_html() + claims_table.to_html()
    html += tables.aligned(configurations, ("overrides",)).to_html() + tables.aligned(claims_table).to_html()
    html += markdown2html("\n\n".join([sentences.optional(data), claims.claims_said(data)]))
    assert live_markup(html) == []
    text = BeautifulSoup(html, "html.parser").get_text()
    for payload in (PAYLOADS[0], PAYLOADS[1], PAYLOADS[3]):
        assert payload in text
    assert "**XSS_5** _XSS_5_" in text  # a claim's Markdown shown as written


def test_nbconvert_sanitises_what_a_notebook_outputs(tmp_path):
    """A second line of defence: markup a helper forgot to escape is inert in the page, while headings,
    paragraphs, tables and figures still render."""
    import pandas as pd

    table = pd.DataFrame({"R1": [1.5]}, index=["main"])
    outputs = [
        nbformat.v4.new_output(
            "display_data", {"text/markdown": f"## Results\n\n{payload}", "text/plain": ""}
        )
        for payload in PAYLOADS
    ]
    outputs.append(nbformat.v4.new_output("display_data", {"text/html": PAYLOADS[0] + PAYLOADS[1]}))
    outputs.append(
        nbformat.v4.new_output("display_data", {"text/html": table._repr_html_(), "text/plain": repr(table)})
    )
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# A report\n\nSome *text* and `code`."),
            nbformat.v4.new_code_cell("x", outputs=outputs),
        ]
    )
    executed = tmp_path / "executed.ipynb"
    nbformat.write(notebook, executed)
    render_html(executed, tmp_path / "page.html", title="test")
    html = (tmp_path / "page.html").read_text()
    assert live_markup(html, formatting=False) == []  # unescaped Markdown may format, never run
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("h1") and soup.find("h2") and soup.find("em") and soup.find("p")
    assert soup.find("table") and soup.find("th") and soup.find("td").get_text() == "1.5"
    assert "<style" not in str(soup.find("table").parent)  # pandas' scoped style block is dropped

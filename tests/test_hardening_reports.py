"""The visualisation report showed an empty `<code></code>` before each query's noun phrases (issue 21):
nbconvert's Markdown renderer, with images embedded (as the reports render), re-parses each inline HTML tag
on its own, so `<code>man</code>` in a Markdown output became `<code></code>man`. The report's Markdown now
writes phrases and attribute names as Markdown code spans; rendered as the report renders, each is a code
element holding its text, shown exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from acsa.reports import views
from acsa.reports.notebook import render_html

PHRASES = ["man", "red-shirt", "a `quoted` bag", "<b>bold</b> & co", "`edge`"]


def rendered(markdown: str, tmp_path: Path) -> str:
    """The body of the page the report renders from one Markdown output."""
    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output("display_data", data={"text/markdown": markdown})
    notebook.cells = [nbformat.v4.new_code_cell("display(Markdown(...))", outputs=[output])]
    nbformat.write(notebook, tmp_path / "case.ipynb")
    render_html(tmp_path / "case.ipynb", tmp_path / "case.html", "case")
    page = (tmp_path / "case.html").read_text(encoding="utf-8")
    return page[page.index("<main>") :]


def test_each_phrase_of_a_case_is_a_code_element_holding_it(tmp_path: Path):
    query = {"rank": 1, "global_rank": 2, "id": 7, "caption": "a man in a red-shirt", "phrases": PHRASES}
    explained = views.Explained({}, [query], None, {}, None, image_root=tmp_path)
    body = rendered(views.case_markdown(explained, 0), tmp_path)
    assert "<code></code>" not in body
    codes = re.findall(r"<code>(.*?)</code>", body)
    assert codes == ["man", "red-shirt", "a `quoted` bag", "&lt;b&gt;bold&lt;/b&gt; &amp; co", "`edge`"]
    assert "<b>" not in body


@pytest.mark.parametrize("text", PHRASES)
def test_a_code_span_shows_its_text_as_written(text: str):
    from bs4 import BeautifulSoup
    from nbconvert.filters.markdown import markdown2html

    html = markdown2html(f"Phrase: {views.code_span(text)}")
    assert BeautifulSoup(html, "html.parser").find("code").get_text() == text


def test_attribute_findings_name_attributes_in_code_elements(tmp_path: Path):
    attributes = [
        {"attribute": f"upper.colour{i}", "misses_stating": 6, "top1_differs_when_stated": 10.0 * i}
        for i in range(4)
    ]
    errors = {"attributes": attributes, "misses": 8, "R1": 50.0, "queries": 16, "by_caption_noise": {}}
    errors["by_caption_noise"] = {"noisy": {"queries": 0}}
    body = rendered(views.attribute_findings(errors), tmp_path)
    assert "<code></code>" not in body and "<code>upper.colour3</code>" in body

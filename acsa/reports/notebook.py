"""Notebook -> report: jupytext converts a percent-format .py to a temporary .ipynb (papermill reads only
.ipynb), papermill injects the parameters after the cell tagged `parameters` and runs it with the `python3`
kernel (this environment's Python) in the current folder, and nbconvert renders one HTML page that opens
offline (code hidden, figures embedded as PNG, no script from a CDN)."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from acsa.errors import ConfigError, NotebookError

log = logging.getLogger(__name__)

KERNEL = "python3"


def as_list(value: Any) -> list | None:
    """A notebook parameter holding a list: a list, None, or text as `--set`/papermill pass it
    ("[a, b]" or "a,b")."""
    if value is None or isinstance(value, list | tuple):
        return None if value is None else list(value)
    text = str(value).strip()
    if text.startswith("["):
        return list(yaml.safe_load(text))
    return [yaml.safe_load(item.strip()) for item in text.split(",") if item.strip()]


def to_ipynb(source: Path, target: Path) -> None:
    """jupytext .py (percent format) -> .ipynb with the kernel papermill will use."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    jupytext.write(notebook, target)


def check_parameters(ipynb: Path, parameters: dict[str, Any]) -> None:
    import papermill

    known = papermill.inspect_notebook(str(ipynb))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(
            f"{ipynb.stem}: unknown parameters {unknown} (the notebook takes: {', '.join(known)})"
        )


# nbconvert's lab template with the blocks that load JavaScript from a CDN left empty: require.js, MathJax
# (the reports use no LaTeX) and mermaid (imported only for diagrams, but its URL would still be in the page).
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock html_head_js_requirejs %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
"""


# What sanitised HTML may hold (nbconvert's own list has no headings, paragraphs or table parts, and would
# show them as text): structure and formatting only; no script, style, form, frame, image or event
# attribute, and links only to http(s), mail or the page itself. Figures are not affected: nbconvert writes
# PNG outputs as <img> outside the sanitised HTML.
_TAGS = [
    *("a", "abbr", "b", "blockquote", "br", "code", "del", "div", "em", "hr", "i", "li", "ol", "p", "pre"),
    *("span", "strong", "sub", "sup", "ul", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6"),
    *("table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td"),
]
_ATTRIBUTES = {"*": ["class", "id", "title"], "a": ["href"], "th": ["colspan", "rowspan"], "td": ["colspan"]}
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.IGNORECASE | re.DOTALL)


def clean_html(element: str | bytes) -> str:
    """nbconvert's `clean_html` filter for the reports: markup outside the lists above is shown as text.
    Style blocks (pandas writes one before each table) are dropped first: their CSS would show as text."""
    import bleach

    text = element.decode() if isinstance(element, bytes) else str(element)
    text = _STYLE_BLOCK.sub("", text)
    return bleach.clean(text, tags=_TAGS, attributes=_ATTRIBUTES, protocols=["http", "https", "mailto"])


def render_html(executed: Path, html: Path, title: str) -> None:
    """The executed notebook as one standalone page: no code (--no-input), figures as embedded PNG, no script
    fetched from a network (--HTMLExporter.mathjax_url= --HTMLExporter.require_js_url=, and no mermaid), and
    the HTML of Markdown cells and outputs sanitised (`clean_html`): what a helper writes from data is
    escaped already (acsa.reports.markup), and nothing a notebook outputs can run in the reader's browser."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        sanitize_html=True,
        filters={"clean_html": clean_html},
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        mathjax_url="",
        require_js_url="",
        embed_images=True,
        extra_loaders=[jinja2.DictLoader({"acsa_offline.html.j2": OFFLINE_TEMPLATE})],
        template_file="acsa_offline.html.j2",
    )
    notebook = nbformat.read(executed, as_version=4)
    notebook.metadata["title"] = title
    body, _ = exporter.from_notebook_node(notebook)
    html.parent.mkdir(parents=True, exist_ok=True)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html)


def run_report(source: Path, html: Path, notebook: Path | None, parameters: dict[str, Any]) -> None:
    """Execute `source` with `parameters` and render it (see the module docstring)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if not source.is_file():
        raise FileNotFoundError(f"{source}: notebook source not found")
    with tempfile.TemporaryDirectory(prefix="acsa-report-") as tmp:
        ipynb = Path(tmp) / f"{source.stem}.ipynb"
        to_ipynb(source, ipynb)
        check_parameters(ipynb, parameters)
        executed = notebook or Path(tmp) / f"{source.stem}.executed.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)  # papermill does not create it
        try:
            papermill.execute_notebook(
                str(ipynb),
                str(executed),
                parameters=parameters,
                kernel_name=KERNEL,
                cwd=str(Path.cwd()),
                progress_bar=False,
                # the kernel's own log (a TCP notice; the KeyboardInterrupt jupyter_client sends at shutdown)
                # is noise in a stage's output; cell errors still surface through papermill
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
        except PapermillExecutionError as err:
            where = f"; traceback in {executed}" if notebook else ""
            raise NotebookError(
                f"{source}: cell {err.exec_count} failed: {err.ename}: {err.evalue}{where}"
            ) from None
        render_html(executed, html, title=f"ACSA {source.stem.replace('_', ' ')} report")
    log.info("%s -> %s%s", source, html, f" and {notebook}" if notebook else "")

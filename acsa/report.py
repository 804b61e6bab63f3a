"""Stage `report`: a parameterised notebook -> an executed notebook and an HTML page that renders offline.

Inputs:  NOTEBOOK, a jupytext percent-format .py (notebooks/*.py: readable, diffable text is the source of
         truth), and whatever its parameters point at (stage outputs: metrics, explain data, images).
Outputs: --html PATH      the report: code hidden (--no-input), figures embedded as PNG, no script from a
                          CDN (require.js, MathJax, mermaid), so it opens without a network
         --notebook PATH  the executed notebook (opens in JupyterLab, tracebacks included when a cell fails)

Steps: jupytext converts the source to a temporary .ipynb (papermill reads only .ipynb); papermill injects
`-p NAME VALUE` (VALUE read as YAML: 3, true, null, [a, b]) after the cell tagged `parameters` and runs it
with the `python3` kernel, i.e. this environment's Python, in the current folder; nbconvert renders the HTML.
Example: python -m acsa.report notebooks/visualisation.py --html /tmp/v.html -p queries '[3, 17]'
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

KERNEL = "python3"


class NotebookError(RuntimeError):
    """A cell of the report notebook failed; the message names the cell and the error."""


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
        raise ValueError(
            f"{ipynb.stem}: unknown parameters {unknown} (the notebook takes: {', '.join(known)})"
        )


# nbconvert's lab template with the blocks that load JavaScript from a CDN left empty: require.js, MathJax
# (the reports use no LaTeX) and mermaid (imported only for diagrams, but its URL would still be in the page).
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock html_head_js_requirejs %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
"""


def render_html(executed: Path, html: Path, title: str) -> None:
    """The executed notebook as one standalone page: no code (--no-input), figures as embedded PNG, no script
    fetched from a network (--HTMLExporter.mathjax_url= --HTMLExporter.require_js_url=, and no mermaid)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
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


def parse_parameters(pairs: list[list[str]]) -> dict[str, Any]:
    return {name: yaml.safe_load(value) for name, value in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "source", type=Path, help="jupytext percent-format notebook, e.g. notebooks/ablations.py"
    )
    parser.add_argument("--html", type=Path, required=True, help="the rendered report")
    parser.add_argument("--notebook", type=Path, default=None, help="keep the executed notebook here")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="notebook parameter (repeatable); VALUE is read as YAML",
    )
    args = parser.parse_args(argv)
    run_report(args.source, args.html, args.notebook, parse_parameters(args.parameter))


if __name__ == "__main__":
    from acsa.cli import run_stage

    try:
        run_stage(main)
    except (NotebookError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

"""Stage `report`: a parameterised notebook -> an executed notebook and an HTML page that renders offline.

Inputs:  NOTEBOOK, a jupytext percent-format .py (notebooks/*.py: readable, diffable text is the source of
         truth), and whatever its parameters point at (stage outputs: metrics, explain data, images).
Outputs: --html PATH      the report: code hidden (--no-input), figures embedded as PNG, no script from a
                          CDN (require.js, MathJax, mermaid), so it opens without a network
         --notebook PATH  the executed notebook (opens in JupyterLab, tracebacks included when a cell fails)

Notebook parameters are set like params overrides: `--set NAME=VALUE` (repeatable, VALUE read as YAML: 3,
true, null, [a, b]); papermill injects them after the cell tagged `parameters` (acsa.reports.notebook).
Example: python -m acsa.report notebooks/visualisation.py --html /tmp/v.html --set queries='[3, 17]'
"""

from __future__ import annotations

from pathlib import Path

from acsa.cli import add_path, add_set_option, assignments, run_stage, stage_parser
from acsa.reports.notebook import run_report


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    parser.add_argument(
        "source", type=Path, help="jupytext percent-format notebook, e.g. notebooks/ablations.py"
    )
    add_path(parser, "--html", None, "the rendered report (required)")
    add_path(parser, "--notebook", None, "keep the executed notebook here")
    add_set_option(parser, "NAME=VALUE", "notebook parameter (repeatable), e.g. --set metric=mAP")
    args = parser.parse_args(argv)
    if args.html is None:
        parser.error("--html is required")
    run_report(args.source, args.html, args.notebook, assignments(args.overrides))


if __name__ == "__main__":
    run_stage(main)

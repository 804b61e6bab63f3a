"""What every stage's command line shares: --params, --set overrides, logging, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from acsa.config import ConfigError, Params, load_params


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose --help shows the stage's docstring (its inputs -> outputs)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one parameter (repeatable), e.g. --set train.epochs=1",
    )
    parser.add_argument("--ablation", default=None, help="apply the named ablation from params.yaml")
    return parser


def params_from_args(args: argparse.Namespace) -> Params:
    return load_params(args.params, ablation=args.ablation, overrides=args.overrides)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's input: reported as one line, without a traceback."""
    from acsa.checkpoint import CheckpointError
    from acsa.data.types import DataError

    return (ConfigError, DataError, CheckpointError, OSError)


def run_stage(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main with logging set up; user errors exit 2 with one line on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        main(argv)
    except _user_errors() as err:
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)

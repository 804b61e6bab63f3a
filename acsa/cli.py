"""The one command line of every stage and tool: `--params FILE`, `--set KEY=VALUE` (repeatable, VALUE read
as YAML), `--configuration NAME` and `--study NAME` (of the study), path options whose defaults come from
acsa.paths, and `run_stage`, which sets up logging and turns a user error into one line on stderr (exit
status 2; 3 for a non-finite loss).

`acsa.report` uses the same `--set NAME=VALUE` for its notebook parameters.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acsa import paths
from acsa.config.loading import load_params, parse_override
from acsa.config.sections import Params
from acsa.errors import USER_ERRORS, ConfigError, NonFiniteError, RunError, one_line


def stage_parser(doc: str | None, params: bool = True) -> argparse.ArgumentParser:
    """A parser whose --help shows the module's docstring (its inputs -> outputs); with `params`, the
    options that load params.yaml (`add_params_options`)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if params:
        add_params_options(parser)
    return parser


def add_params_options(parser: argparse.ArgumentParser, configuration: bool = True) -> None:
    """--params, --set SECTION.KEY=VALUE (repeatable) and, with `configuration`, --configuration NAME."""
    parser.add_argument(
        "--params", type=Path, default=paths.PARAMS, help=f"params file (default: {paths.PARAMS})"
    )
    add_set_option(
        parser, "SECTION.KEY=VALUE", "override one parameter (repeatable), e.g. --set train.epochs=1"
    )
    if configuration:
        parser.add_argument(
            "--configuration",
            default=None,
            metavar="NAME",
            help="apply the overrides of study.configurations.NAME (params.yaml) before --set",
        )


def add_set_option(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:
    """The repeatable `--set KEY=VALUE` option (into `args.overrides`); VALUE is read as YAML."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar=metavar, help=f"{help}; VALUE in YAML"
    )


def add_path(parser: argparse.ArgumentParser, flag: str, default: Path | None, help: str) -> None:
    """A path option; its default (from acsa.paths) is shown in --help."""
    shown = f" (default: {default})" if default is not None else ""
    parser.add_argument(flag, type=Path, default=default, help=f"{help}{shown}")


def add_study_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--study NAME: work on every run (seed) of study configuration NAME; implies --configuration NAME."""
    parser.add_argument("--study", metavar="NAME", default=None, help=help)


def params_from_args(args: argparse.Namespace) -> Params:
    """The params file with `--configuration` (or `--study`'s configuration) and `--set` applied."""
    configuration = getattr(args, "configuration", None)
    study = getattr(args, "study", None)
    if study is not None:
        if configuration not in (None, study):
            raise ConfigError(f"--study {study} applies configuration {study}; leave out --configuration")
        configuration = study
    return load_params(args.params, configuration=configuration, overrides=args.overrides)


def assignments(texts: list[str]) -> dict[str, Any]:
    """`--set` values (`NAME=VALUE`, VALUE in YAML) as a dict, in order."""
    return dict(parse_override(text) for text in texts)


def run_stage(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> None:
    """Run a stage's main with logging set up; a user error exits 2 and a NaN or infinite number (a loss,
    weights, scores) 3, each with one line `error: ...` on stderr, its last line, and no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    message, status = None, 0
    try:
        main(argv)
    except NonFiniteError as err:
        message, status = one_line(err), 3
    except RunError as err:
        message, status = one_line(err), err.exit_status
    except USER_ERRORS as err:
        message, status = one_line(err), 2
    if message is None:
        return
    # Outside the except block the traceback is gone: the objects its frames held (DVCLive's git repository)
    # are released now, not at interpreter shutdown, where their finalizers print tracebacks after our line.
    gc.collect()
    sys.stderr.flush()
    print(f"\nerror: {message}", file=sys.stderr, flush=True)
    sys.exit(status)

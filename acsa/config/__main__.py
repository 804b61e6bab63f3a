"""`python -m acsa.config [FILE]`: check a params file (every value, preset and study configuration); exit
status 2 and one line when something is wrong. dvc.yaml runs it before any command line holding a name."""

from __future__ import annotations

import argparse
from pathlib import Path

from acsa.cli import run_stage
from acsa.config.loading import check_params_file
from acsa.paths import PARAMS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("params", nargs="?", type=Path, default=PARAMS, help=f"default: {PARAMS}")
    check_params_file(parser.parse_args(argv).params)


if __name__ == "__main__":
    run_stage(main)

"""Running a stage's command line the way a user does, for the bad-input battery (tests/test_bad_*.py).

Import from a test module with `from stage_runs import ...` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import END_TO_END, REPO

# The smallest training run on the tiny CUHK-PEDES copy of tests/fixtures_benchmarks.py.
TINY = [
    *END_TO_END,
    "text.batch_size=64",
    "train.epochs=1",
    "train.batch_size=4",
    "train.images_per_id=2",
    "train.warmup_steps=1",
    "train.threads=2",
    "evaluate.rerank_k=4",
]


def stage_args(root: Path, overrides: list[str] = ()) -> list[str]:
    """--params and --set for a CUHK-PEDES copy in `root`, at the smallest training size."""
    sets = ["data.dataset=cuhk-pedes", f"data.root={root}", *TINY, *overrides]
    return ["--params", str(REPO / "params.yaml"), *[arg for o in sets for arg in ("--set", o)]]


def train_argv(tiny: Path, out: Path, overrides: list[str] = ()) -> list[str]:
    """The train stage's arguments on `tiny` (the tiny_prepared fixture), its outputs under `out`."""
    features = tiny / "features"
    data = ["--prepared", str(tiny / "prepared"), "--features", str(features)]
    places = ["--out", str(out / "model"), "--checkpoints", str(out / "ck"), "--live", str(out / "live")]
    return [*stage_args(tiny / "bench", overrides), *data, *places]


def cli_error(main, argv: list[str], capsys: pytest.CaptureFixture, status: int = 2) -> str:
    """Run a stage's command line in-process: it must exit with `status` and one `error:` line, no
    traceback; returns that line."""
    from acsa.cli import run_stage

    with pytest.raises(SystemExit) as exited:
        run_stage(main, argv)
    assert exited.value.code == status
    err = capsys.readouterr().err
    errors = [line for line in re.split(r"[\r\n]", err) if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def run_module(module: str, args: list[str], cwd: Path, preexec_fn=None, timeout: int = 600):
    """`python -m module args` in a fresh process (stdin closed: nothing may wait for an answer)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
        env=subprocess_env(),
    )


def subprocess_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def last_stderr_line(result: subprocess.CompletedProcess) -> str:
    """The last non-empty line of stderr (progress bars redraw with carriage returns: they end lines too)."""
    lines = [line.strip() for line in re.split(r"[\r\n]", result.stderr) if line.strip()]
    return lines[-1] if lines else ""

"""Several training runs side by side: one child process per run, each with its own share of the CPU threads.

The default model is small: its convolutions and loss heads are too small to keep two cores busy from one
process (one thread trains about as fast as two), while two processes with one thread each train nearly
twice as many pairs per second (BENCHMARKS.md). So the runs of a study configuration (one per seed) train
at once, each child with `threads` torch threads, its output in a log file of its own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from acsa.errors import ConfigError, RunError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    name: str  # e.g. "seed-1", used in messages
    argv: list[str]  # arguments of the stage module
    log_file: Path  # where the child's stdout and stderr go


def threads_per_run(parallel: int, cores: int | None = None) -> int:
    """Torch threads for each of `parallel` concurrent runs: the cores shared out, at least one."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, parallel))


def _same_code_env() -> dict[str, str]:
    """The environment of a child: this one, with the folder holding this package first on PYTHONPATH, so
    that every run executes the same code as the process that started it, whatever the working folder."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def run_side_by_side(module: str, runs: Sequence[Run], parallel: int) -> None:
    """Run `python -m module *run.argv` for every run, at most `parallel` at a time. The first failure stops
    the others (their checkpoints stay: rerunning continues them) and raises RunError with the failed run's
    last line and exit status (2 bad input, 3 non-finite loss; 1 anything else)."""
    if parallel < 1:
        raise ConfigError(f"train.parallel_runs: expected at least 1 run at a time, got {parallel}")
    pending = list(runs)
    active: dict[str, tuple[subprocess.Popen, Run, float]] = {}
    try:
        while pending or active:
            while pending and len(active) < parallel:
                run = pending.pop(0)
                run.log_file.parent.mkdir(parents=True, exist_ok=True)
                with open(run.log_file, "w") as out:
                    child = subprocess.Popen(
                        [sys.executable, "-m", module, *run.argv],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=_same_code_env(),
                    )
                active[run.name] = (child, run, time.perf_counter())
                log.info("%s: started (log: %s)", run.name, run.log_file)
            time.sleep(0.5)
            for name, (child, run, started) in list(active.items()):
                code = child.poll()
                if code is None:
                    continue
                del active[name]
                if code != 0:
                    detail = _tail(run.log_file) or "no output"
                    raise RunError(
                        f"{run.name} failed with exit status {code} (log: {run.log_file}): {detail}",
                        code if code in (2, 3) else 1,
                    )
                log.info("%s: done in %.0f s", name, time.perf_counter() - started)
    finally:
        for child, _, _ in active.values():
            child.terminate()
        for child, _, _ in active.values():
            child.wait()

"""Many training runs, one pool: every (configuration, seed) run of a study shares the same worker
processes, each with its own share of the CPU threads, so that no core idles while runs are left and none
is oversubscribed.

A worker is a process that imports the package once and then runs one run after another, each as
`module.main(run.argv)` (the stage's own command line, so a run in the pool is exactly the run the stage
would train alone), its output in a log file of its own. On two cores a run of the default model keeps one
core busy (its heads are small; a second thread barely helps: BENCHMARKS.md), so the default pool is one
single-thread worker per core. Runs are started longest first (`cost`), which keeps the last ones short.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from acsa.errors import USER_ERRORS, ConfigError, NonFiniteError, RunError, one_line

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Run:
    name: str  # e.g. "full seed 1", used in messages
    argv: list[str]  # arguments of the stage module's main
    log_file: Path  # where the run's output goes
    cost: float = 1.0  # relative length: the pool starts the longest runs first


def threads_per_run(parallel: int, cores: int | None = None) -> int:
    """Torch threads for each of `parallel` concurrent runs: the cores shared out, at least one."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, parallel))


def runs_at_once(threads: int, cores: int | None = None) -> int:
    """How many runs of `threads` threads the cores hold at once (at least one)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, threads))


def _exit_status(err: BaseException) -> int:
    """The exit status `acsa.cli.run_stage` would give: 3 non-finite, 2 a user error, the RunError's own."""
    if isinstance(err, NonFiniteError):
        return 3
    if isinstance(err, RunError):
        return err.exit_status
    if isinstance(err, USER_ERRORS):
        return 2
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else 1
    return 1


def _run_one(module: str, run: Run) -> tuple[int, str]:
    """Run `module.main(run.argv)` with its output in run.log_file: (exit status, last line)."""
    run.log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log_file, "w", buffering=1) as out, contextlib.redirect_stdout(out):
        with contextlib.redirect_stderr(out):
            logging.basicConfig(
                level=logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=out, force=True
            )
            try:
                importlib.import_module(module).main(run.argv)
            except BaseException as err:  # noqa: BLE001 - every failure becomes the run's status
                status = _exit_status(err)
                if status == 1:
                    traceback.print_exc(file=out)
                if status == 0:
                    return 0, ""
                message = one_line(err)
                print(f"\nerror: {message}", file=out)
                return status, message
    return 0, ""


def _worker(module: str, tasks, results) -> None:
    """Take runs from `tasks` until a None, report (name, status, line) of each on `results`."""
    while True:
        run = tasks.get()
        if run is None:
            return
        results.put((run.name, *_run_one(module, run)))


def run_pool(module: str, runs: Sequence[Run], parallel: int) -> None:
    """Run `module.main(run.argv)` for every run in a pool of `parallel` worker processes, longest first.
    The first failure stops the others (their checkpoints stay: running again continues them) and raises
    RunError with the failed run's last line and exit status (2 bad input, 3 non-finite loss; 1 else)."""
    if parallel < 1:
        raise ConfigError(f"train.parallel_runs: expected at least 1 run at a time, got {parallel}")
    if not runs:
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
    tasks, results = context.Queue(), context.Queue()
    ordered = sorted(runs, key=lambda run: -run.cost)
    for run in ordered:
        tasks.put(run)
    workers = [
        context.Process(target=_worker, args=(module, tasks, results), daemon=True)
        for _ in range(min(parallel, len(runs)))
    ]
    for _ in workers:
        tasks.put(None)
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    by_name = {run.name: run for run in runs}
    try:
        for done in range(1, len(runs) + 1):
            name, status, line = _next_result(results, workers)
            if status != 0:
                raise RunError(
                    f"{name} failed with exit status {status} (log: {by_name[name].log_file}): {line}",
                    status if status in (2, 3) else 1,
                )
            log.info("%s: done (%d of %d, %.0f s)", name, done, len(runs), time.perf_counter() - started)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join()


def _next_result(results, workers) -> tuple[str, int, str]:
    """The next (name, status, line); RunError when every worker died without reporting (killed)."""
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                with contextlib.suppress(queue.Empty):  # a result sent just before its worker ended
                    return results.get(timeout=1.0)
                codes = [worker.exitcode for worker in workers]
                why = f"the pool's workers ended without finishing (exit codes {codes})"
                raise RunError(why, 1) from None

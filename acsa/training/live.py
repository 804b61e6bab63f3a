"""Training curves: DVCLive logs, rebuilt from a checkpoint's history when a run continues."""

from __future__ import annotations

from pathlib import Path


def open_live(path: Path, history: list[dict]):
    """A fresh DVCLive folder holding the logs of the epochs already trained.

    (DVCLive's own resume continues from the step in its metrics.json: it repeats step 0, and it repeats or
    skips an epoch when the run died between writing its checkpoint and its log.)
    """
    from dvclive import Live

    live = Live(str(path), save_dvc_exp=False, dvcyaml=False)
    for logged in history:
        log_epoch(live, logged)
    return live


def log_epoch(live, logged: dict) -> None:
    for name, value in logged.items():
        live.log_metric(name, value)
    live.next_step()

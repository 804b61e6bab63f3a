"""The convergence check: is the study's budget a real plateau, or one that a learning rate decayed to
nothing produces by itself? The runs of study.convergence.configurations are trained again, every seed, with
epochs_factor x the budget (their own schedule stretched to it), on train and val only. Per seed, the best
validation R@1 of the longer run minus that of the study's run is one paired difference; over seeds (the unit
of replication) a t interval says how much more training buys. The plateau is real when that interval lies
within the study's equivalence margin; when it excludes zero the budget is too short.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from acsa.analysis.intervals import BETTER, EQUIVALENT, INCONCLUSIVE, WORSE, verdict
from acsa.analysis.study_runs import Run
from acsa.config.study import Study
from acsa.errors import DataError
from acsa.storage.files import read_json

MEANING = {
    EQUIVALENT: "flat: a longer budget changes validation R@1 by less than the margin",
    BETTER: "still rising: a longer budget gains validation R@1",
    WORSE: "past its best: a longer budget loses validation R@1",
    INCONCLUSIVE: "inconclusive: the seeds disagree too much to tell",
}


def read_convergence(path: Path) -> list[dict] | None:
    """The convergence runs' records ([{configuration, seed, epochs, validation_curve, ...}]), or None when
    the file is absent (the check was not run)."""
    if not Path(path).is_file():
        return None
    records = read_json(path)
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("validation_curve"), list) for r in records
    ):
        raise DataError(f"{path}: expected a list of runs with their validation_curve")
    return records


def _best(curve: list) -> float:
    values = [v for v in curve if isinstance(v, (int, float))]
    if not values:
        raise DataError("a run without validation R@1 in its curve")
    return float(max(values))


def convergence_check(study: Study, runs: dict[str, list[Run]], records: list[dict] | None) -> dict:
    """Per configuration: the paired gain of the longer budget over seeds, its interval and what it says."""
    if records is None:
        return {"available": False}
    from scipy.stats import t

    out: dict = {"available": True, "epochs_factor": study.convergence.epochs_factor, "configurations": {}}
    for name in study.convergence.configurations:
        short = {run.seed: run for run in runs.get(name, [])}
        pairs = []
        for record in records:
            if record.get("configuration") == name and record.get("seed") in short:
                run = short[record["seed"]]
                pairs.append(
                    {
                        "seed": record["seed"],
                        "epochs": [len(run.validation_curve), len(record["validation_curve"])],
                        "best": [_best(list(run.validation_curve)), _best(record["validation_curve"])],
                    }
                )
        gains = np.asarray([p["best"][1] - p["best"][0] for p in pairs])
        if len(gains) < 2:
            why = "fewer than two seeds"
            out["configurations"][name] = {"pairs": pairs, "verdict": INCONCLUSIVE, "why": why}
            continue
        mean, error = float(gains.mean()), float(gains.std(ddof=1) / math.sqrt(len(gains)))
        half = float(t.ppf(0.5 + study.confidence / 2, len(gains) - 1)) * error
        judged = verdict(mean - half, mean + half, study.equivalence_margin)
        out["configurations"][name] = {
            "pairs": pairs,
            "gain": mean,
            "ci_low": mean - half,
            "ci_high": mean + half,
            "verdict": judged,
            "meaning": MEANING[judged],
        }
    return out

"""The study end to end at smoke size: a configuration's seeds trained side by side, evaluated, and compared
by the findings stage (the main model of the smoke run is the main configuration's seed-0 run); and the
side-by-side runner's failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SMOKE_OVERRIDES

from acsa import evaluate, findings, train
from acsa.errors import RunError
from acsa.training.runs import Run, run_side_by_side, threads_per_run


def study_params(tmp_path: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["study"] = {
        "main": "full",
        "seeds": [0, 1],
        "configurations": {"full": {}, "global_only": {"model.use_local": False}},
        "findings": {"local_alignment": {"a": "full", "b": "global_only"}},
        "metric": "R1",
        "resamples": 200,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_small_study_trains_evaluates_and_finds(smoke_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # logs/, checkpoints/ and dvclive/ defaults land here
    params = study_params(tmp_path)
    sets = [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    data = ["--prepared", str(smoke_run / "prepared"), "--features", str(smoke_run / "features")]
    common = ["--params", str(params), *sets, *data]
    models, reports = tmp_path / "models" / "study", tmp_path / "reports" / "study"
    for name in ("full", "global_only"):
        train.main([*common, "--study", name, "--out", str(models / name)])
        evaluate.main([*common, "--study", name, "--model", str(models / name), "--out", str(reports / name)])
    # full: seed 1 only (seed 0 is the main model); global_only: both seeds
    assert sorted(p.name for p in (models / "full").iterdir()) == ["seed-1"]
    assert sorted(p.name for p in (models / "global_only").iterdir()) == ["seed-0", "seed-1"]
    assert (tmp_path / "logs" / "study" / "global_only" / "seed-1.log").is_file()
    assert (tmp_path / "dvclive" / "study" / "global_only" / "seed-0" / "metrics.json").is_file()
    gathered = json.loads((reports / "global_only" / "metrics.json").read_text())
    assert set(gathered) == {"seed-0", "seed-1"} and set(gathered["seed-0"]["test"]) == {"global"}

    # the main model's live curves are read from dvclive/main: copy the smoke run's there
    (tmp_path / "dvclive").mkdir(exist_ok=True)
    (tmp_path / "dvclive" / "main").symlink_to(smoke_run / "live")
    findings.main(
        [
            "--params",
            str(params),
            "--eval",
            str(smoke_run / "eval"),
            "--study-eval",
            str(reports),
            "--out",
            str(tmp_path / "findings.json"),
            "--summary",
            str(tmp_path / "summary.json"),
        ]  # fmt: skip
    )
    record = json.loads((tmp_path / "findings.json").read_text())["local_alignment"]
    assert (record["a"], record["b"], record["seeds_a"], record["seeds_b"]) == (
        "full",
        "global_only",
        [0, 1],
        [0, 1],
    )
    assert record["ci_low"] <= record["difference"] <= record["ci_high"]
    assert record["verdict"] in ("better", "worse", "no detectable difference")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["full"]["final_kind"] == "fused" and summary["global_only"]["final_kind"] == "global"
    assert [p["epochs"] for p in summary["global_only"]["plateau"]] == [2, 2]


def test_a_failing_run_stops_the_others_with_its_status_and_last_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # `python -m job` finds job.py here
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, time\n"
        "if sys.argv[1] == 'bad':\n    print('step 3'); print('error: train.lr must be > 0'); sys.exit(2)\n"
        "time.sleep(30)\n"
    )
    runs = [Run(name, [name], tmp_path / f"{name}.log") for name in ("slow", "bad")]
    with pytest.raises(RunError) as err:
        run_side_by_side("job", runs, parallel=2)
    assert err.value.exit_status == 2
    assert "bad failed with exit status 2" in str(err.value) and "train.lr must be > 0" in str(err.value)


def test_threads_are_shared_out() -> None:
    assert threads_per_run(3, cores=2) == 1
    assert threads_per_run(2, cores=8) == 4
    assert threads_per_run(1, cores=2) == 2


def test_runs_of_a_configuration_must_differ_only_in_the_seed() -> None:
    import numpy as np

    from acsa.analysis.findings import Run, settings_differences

    def run(seed: int, epochs: int, threads: int) -> Run:
        config = {"train": {"seed": seed, "epochs": epochs, "threads": threads}, "model": {"use_local": True}}
        return Run("full", seed, np.arange(4), {"fused": {}}, (), config)

    assert settings_differences([run(0, 12, 2), run(1, 12, 1), run(2, 12, 1)]) == []  # seed, speed aside
    assert settings_differences([run(0, 12, 1), run(1, 8, 1)]) == ["train.epochs"]


def test_plateau_gain_reads_a_line_through_the_last_quarter() -> None:
    from acsa.analysis.findings import PLATEAU_GAIN, plateau_gain

    assert plateau_gain([50.0]) is None  # one epoch: nothing to tell
    rising = [float(epoch) for epoch in range(16)]  # +1 point per epoch: +4 over the last 4 epochs
    assert plateau_gain(rising) == pytest.approx(4.0)
    # a flat end whose best value happens to sit above the epoch before the quarter: the old statistic (best
    # of the quarter minus that epoch) said +1.5 and "rising"; the line through the quarter says flat
    flat_end = [60.0, 70.0, 75.625, 76.75, 76.875, 77.125, 76.625]
    flat_end = [10.0] * 9 + flat_end
    assert abs(plateau_gain(flat_end)) < PLATEAU_GAIN
    assert plateau_gain([1.0, 3.0]) == pytest.approx(4.0)  # two epochs: the last two values, slope x 2

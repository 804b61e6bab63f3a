"""The study end to end at smoke size: every run of every configuration trained in one pool, evaluated into
the compact record, the convergence runs, and the findings stage reading only that record (the main model of
the smoke run is the main configuration's seed-0 run); the pool's failures; and the findings stage refusing
what a hand-edited or copied record could hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, SMOKE_OVERRIDES, smoke_data
from stage_runs import cli_error

from acsa import evaluate, findings, train
from acsa.errors import RunError
from acsa.training.runs import Run, run_pool, runs_at_once, threads_per_run

STUDY = {
    "main": "full",
    "seeds": [0, 1],
    "configurations": {"full": {}, "global_only": {"model.use_local": False}},
    "findings": {"local_alignment": {"a": "full", "b": "global_only", "claim": "local alignment"}},
    "metric": "R1",
    "equivalence_margin": 2.0,
    "convergence": {"configurations": ["global_only"], "epochs_factor": 1.5},
}


def study_params(tmp_path: Path) -> Path:
    """params.yaml with the smoke overrides written in (the findings stage reads the file as it is) and a
    two-configuration study."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for override in SMOKE_OVERRIDES:
        key, value = override.split("=", 1)
        section, name = key.split(".")
        raw[section][name] = yaml.safe_load(value)
    raw["study"] = STUDY
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def small_study(smoke_run: Path, tmp_path_factory) -> Path:
    """The study of STUDY trained, evaluated and judged under a folder of its own (also the working folder:
    logs/, checkpoints/ and dvclive/ land there)."""
    root = tmp_path_factory.mktemp("study")
    params = study_params(root)
    common = ["--params", str(params), *smoke_data(smoke_run)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        train.main([*common, "--plan", "study", "--out", str(root / "models" / "study")])
        train.main(
            [*common, "--plan", "convergence", "--out", str(root / "models" / "convergence"),
             "--record", str(root / "reports" / "convergence.json")]
        )  # fmt: skip
        evaluate.main(
            [*common, "--plan", "study", "--model", str(root / "models" / "study"),
             "--main-model", str(smoke_run / "model"), "--out", str(root / "reports" / "study")]
        )  # fmt: skip
        findings.main(judge_args(root, root / "reports" / "study"))
    return root


def judge_args(root: Path, study_eval: Path) -> list[str]:
    return [
        "--params", str(root / "params.yaml"),
        "--study-eval", str(study_eval),
        "--subsets", str(root / "none.json"),
        "--convergence", str(root / "reports" / "convergence.json"),
        "--out", str(root / "findings.json"),
        "--summary", str(root / "summary.json"),
    ]  # fmt: skip


def test_a_small_study_trains_in_one_pool_and_is_judged_from_its_record(small_study: Path) -> None:
    models = small_study / "models" / "study"
    assert sorted(p.name for p in (models / "full").iterdir()) == ["seed-1"]  # seed 0 is the main model
    assert sorted(p.name for p in (models / "global_only").iterdir()) == ["seed-0", "seed-1"]
    assert (small_study / "logs" / "study" / "global_only" / "seed-1.log").is_file()
    runs = json.loads((small_study / "reports" / "study" / "runs.json").read_text())
    assert sorted((r["configuration"], r["seed"]) for r in runs) == [
        ("full", 0), ("full", 1), ("global_only", 0), ("global_only", 1)
    ]  # fmt: skip
    assert all(r["threads"] == 2 and r["trainable_parameters"] > 0 for r in runs)
    by_name = {(r["configuration"], r["seed"]): r for r in runs}
    # the global-only model trains fewer weights: no region, window or cross-attention heads
    assert by_name[("global_only", 0)]["trainable_parameters"] < by_name[("full", 0)]["trainable_parameters"]

    record = json.loads((small_study / "findings.json").read_text())["local_alignment"]
    assert (record["a"], record["b"], record["claim"]) == ("full", "global_only", "local alignment")
    assert (record["seeds_a"], record["seeds_b"]) == ([0, 1], [0, 1])
    judged = record["subsets"]["all"]
    assert judged["ci_low"] <= judged["difference"] <= judged["ci_high"]
    assert judged["adjusted_low"] <= judged["ci_low"] and judged["ci_high"] <= judged["adjusted_high"]
    assert judged["verdict"] in ("better", "worse", "equivalent", "inconclusive")
    summary = json.loads((small_study / "summary.json").read_text())
    assert summary["configurations"]["global_only"]["final_kind"] == "global"
    assert [p["epochs"] for p in summary["configurations"]["global_only"]["plateau"]] == [2, 2]
    check = summary["convergence"]["configurations"]["global_only"]
    assert [pair["epochs"] for pair in check["pairs"]] == [[2, 3], [2, 3]]  # 1.5 x 2 epochs


def test_the_findings_recompute_from_the_record_alone(small_study: Path, tmp_path: Path) -> None:
    """What a reviewer does on a fresh clone: only the committed record (no model, no data) -> the same."""
    record = tmp_path / "study"
    shutil.copytree(small_study / "reports" / "study", record)
    shutil.copy(small_study / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "reports").mkdir()
    shutil.copy(small_study / "reports" / "convergence.json", tmp_path / "reports" / "convergence.json")
    findings.main(judge_args(tmp_path, record))
    assert json.loads((tmp_path / "findings.json").read_text()) == json.loads(
        (small_study / "findings.json").read_text()
    )


def tampered(small_study: Path, tmp_path: Path, edit) -> list[str]:
    """The study's record copied and changed by edit(records, arrays) -> the findings stage's arguments."""
    folder = tmp_path / "study"
    shutil.copytree(small_study / "reports" / "study", folder)
    records = json.loads((folder / "runs.json").read_text())
    with np.load(folder / "per_query.npz") as loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    edit(records, arrays)
    (folder / "runs.json").write_text(json.dumps(records))
    np.savez(folder / "per_query.npz", **arrays)
    shutil.copy(small_study / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "reports").mkdir()
    shutil.copy(small_study / "reports" / "convergence.json", tmp_path / "reports" / "convergence.json")
    return judge_args(tmp_path, folder)


def relabel(records, arrays) -> None:
    """global_only seed 1's run recorded as full seed 1's (another configuration in its place)."""
    theirs = next(r for r in records if (r["configuration"], r["seed"]) == ("global_only", 1))
    ours = next(r for r in records if (r["configuration"], r["seed"]) == ("full", 1))
    ours["config"] = theirs["config"]


def duplicate(records, arrays) -> None:
    """global_only seed 1 holds seed 0's per-query results (one run copied under two seeds)."""
    for key in [k for k in arrays if k.startswith("global_only/seed-0/")]:
        arrays[key.replace("seed-0", "seed-1")] = arrays[key]


def out_of_range(records, arrays) -> None:
    arrays["full/seed-1/fused/R1"] = arrays["full/seed-1/fused/R1"] * 0 + 1e9


def missing_metric(records, arrays) -> None:
    del arrays["full/seed-1/fused/mAP"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (relabel, "the run recorded as full seed 1 was trained with other"),
        (duplicate, "global_only seeds 0 and 1 have identical per-query results"),
        (out_of_range, "full/seed-1/fused/R1: values outside [0, 100]"),
        (missing_metric, "full/seed-1/fused: not every metric"),
    ],
)
def test_the_findings_stage_refuses_a_record_it_cannot_trust(
    small_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture, edit, message: str
) -> None:
    error = cli_error(findings.main, tampered(small_study, tmp_path, edit), capsys)
    assert message in error and ("runs.json" in error or "per_query.npz" in error)
    assert not (tmp_path / "findings.json").exists()


def test_a_malformed_record_is_one_line(small_study: Path, tmp_path: Path, capsys) -> None:
    args = tampered(small_study, tmp_path, lambda records, arrays: None)
    (tmp_path / "study" / "per_query.npz").write_bytes(b"not a zip file")
    assert "not a readable .npz of numbers" in cli_error(findings.main, args, capsys)
    (tmp_path / "study" / "runs.json").write_text('{"runs": 3}')
    assert "expected a list of run records" in cli_error(findings.main, args, capsys)


def test_evaluation_refuses_a_run_of_another_configuration_in_a_folder(
    small_study: Path, smoke_run: Path, tmp_path: Path, capsys
) -> None:
    """A global_only run copied into full's seed folder is named, not evaluated as full's (a copy that
    differs only in training settings, e.g. the learning rate, is caught by check_trained_as)."""
    models = tmp_path / "models"
    shutil.copytree(small_study / "models" / "study", models)
    shutil.rmtree(models / "full" / "seed-1")
    shutil.copytree(models / "global_only" / "seed-1", models / "full" / "seed-1")
    argv = [
        "--params", str(small_study / "params.yaml"), *smoke_data(smoke_run), "--plan", "study",
        "--model", str(models), "--main-model", str(smoke_run / "model"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    error = cli_error(evaluate.main, argv, capsys)
    assert str(models / "full" / "seed-1") in error and "model.use_local" in error
    assert not (tmp_path / "out").exists()


def test_a_failing_run_stops_the_others_with_its_status_and_last_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))  # the pool's workers import `job` from here
    (tmp_path / "job.py").write_text(
        "import sys, time\n"
        "def main(argv):\n"
        "    if argv[0] == 'bad':\n"
        "        print('step 3'); print('error: train.lr must be > 0'); sys.exit(2)\n"
        "    time.sleep(30)\n"
    )
    runs = [Run(name, [name], tmp_path / f"{name}.log") for name in ("slow", "bad")]
    with pytest.raises(RunError) as err:
        run_pool("job", runs, parallel=2)
    assert err.value.exit_status == 2
    assert "bad failed with exit status 2" in str(err.value)
    assert "train.lr must be > 0" in (tmp_path / "bad.log").read_text()


def test_the_pool_runs_every_run_longest_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "order.py").write_text(
        "import os, time\n"
        "def main(argv):\n"
        "    with open(argv[1], 'a') as out:\n"
        "        out.write(argv[0] + ' ' + str(time.time()) + '\\n')\n"
    )
    done = tmp_path / "done.txt"
    runs = [Run(f"r{i}", [f"r{i}", str(done)], tmp_path / f"r{i}.log", cost=i) for i in range(5)]
    run_pool("order", runs, parallel=1)
    assert [line.split()[0] for line in done.read_text().splitlines()] == ["r4", "r3", "r2", "r1", "r0"]


def test_threads_are_shared_out() -> None:
    assert threads_per_run(3, cores=2) == 1
    assert threads_per_run(2, cores=8) == 4
    assert runs_at_once(1, cores=2) == 2 and runs_at_once(2, cores=2) == 1 and runs_at_once(4, cores=2) == 1


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

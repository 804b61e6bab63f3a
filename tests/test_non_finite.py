"""No metric from a NaN (issue 13, item 1): non-finite scores are refused with the split and the kind, a
training step that breaks the weights stops training like a non-finite loss (exit 3, the last good
checkpoint kept), a damaged model file is refused, metrics never leave [0, 100], and JSON outputs are
strict (no NaN or Infinity)."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import pytest
import torch
from conftest import REPO, SMOKE_OVERRIDES
from stage_runs import cli_error, train_argv
from test_metrics import reference

from acsa import evaluate, explain, train
from acsa.errors import NonFiniteError
from acsa.scoring.metrics import per_query_ranks, rank_metrics
from acsa.scoring.retrieval import Scores, choose_fusion_weight, metrics_by_kind
from acsa.storage.files import write_json

NAN, INF = float("nan"), float("inf")


def test_nan_scores_are_refused_not_ranked_first():
    """The probe: every comparison with NaN is false, so every match used to rank first (R1 100, mAP 125)."""
    with pytest.raises(NonFiniteError, match=r"test fused scores: 8 of 8 are not finite .first: query 0"):
        rank_metrics(torch.full((2, 4), NAN), [1, 2], [1, 1, 2, 3], name="test fused scores")
    with pytest.raises(
        NonFiniteError, match=r"scores: 1 of 8 are not finite .first: query 1, gallery image 2"
    ):
        per_query_ranks(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, INF, 0.4]]), [1, 2], [1, 1, 2, 3])


def test_each_kind_and_split_is_named():
    good = torch.rand(2, 4)
    broken = good.clone()
    broken[1, 3] = NAN
    query_ids, gallery_ids = torch.tensor([1, 2]), torch.tensor([1, 1, 2, 3])
    with pytest.raises(NonFiniteError, match="^val local scores: 1 of 8"):
        metrics_by_kind(Scores(good, broken, None), query_ids, gallery_ids, 1.0, split="val")
    with pytest.raises(NonFiniteError, match="^test global scores"):
        metrics_by_kind(Scores(broken, good, None), query_ids, gallery_ids, 1.0, split="test")
    with pytest.raises(NonFiniteError, match=r"^val fused scores \(fusion weight 0.5\)"):
        choose_fusion_weight(Scores(good, broken, None), query_ids, gallery_ids, [0.0, 0.5], split="val")


def random_problem(seed: int):
    """Scores with ties, sometimes many matches per query (the sorting path), sometimes non-finite entries."""
    g = torch.Generator().manual_seed(seed)
    num_queries = int(torch.randint(1, 12, (1,), generator=g))
    num_gallery = int(torch.randint(1, 40, (1,), generator=g))
    num_ids = int(torch.randint(1, 5, (1,), generator=g))
    gallery_ids = torch.randint(0, num_ids, (num_gallery,), generator=g)
    query_ids = gallery_ids[torch.randint(0, num_gallery, (num_queries,), generator=g)]
    levels = int(torch.randint(1, 6, (1,), generator=g))
    similarity = torch.randint(0, levels, (num_queries, num_gallery), generator=g).float()
    if seed % 3 == 0:
        special = torch.tensor([NAN, INF, -INF])[torch.randint(0, 3, (num_queries, num_gallery), generator=g)]
        similarity = torch.where(torch.rand(similarity.shape, generator=g) < 0.2, special, similarity)
    return similarity, query_ids, gallery_ids


@pytest.mark.parametrize("seed", range(60))
def test_metrics_never_leave_0_to_100(seed):
    similarity, query_ids, gallery_ids = random_problem(seed)
    if not torch.isfinite(similarity).all():
        with pytest.raises(NonFiniteError):
            rank_metrics(similarity, query_ids, gallery_ids, chunk_size=3)
        return
    got = rank_metrics(similarity, query_ids, gallery_ids, chunk_size=3)
    assert all(0.0 <= value <= 100.0 for value in got.values()), got
    expected = reference(similarity, query_ids.tolist(), gallery_ids.tolist())
    assert got == pytest.approx(expected, abs=1e-9)


def test_json_outputs_are_strict(tmp_path):
    with pytest.raises(NonFiniteError, match=r"m.json: test.fused.R1 is nan; refusing to write"):
        write_json(tmp_path / "m.json", {"test": {"fused": {"R1": NAN}}, "curve": [1.0]})
    with pytest.raises(NonFiniteError, match=r"c.json: \[1\].weight is inf"):
        write_json(tmp_path / "c.json", [{"weight": 0.0}, {"weight": INF}])
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


# ---- end to end -------------------------------------------------------------------------------------------


def spoil_weights_after_step(monkeypatch: pytest.MonkeyPatch, step: int, value: float) -> None:
    """After optimizer step `step`, fill every trained weight with `value`: NaN, as a diverging step leaves
    them, or 1e15, finite but so large that the features overflow (what a huge learning rate did)."""
    original = torch.optim.AdamW.step
    steps = []

    def step_then_spoil(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if len(steps) == step:
            with torch.no_grad():
                for group in self.param_groups:
                    for param in group["params"]:
                        param.fill_(value)
        steps.append(step)
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_spoil)


def test_broken_weights_stop_training_after_one_step(tiny_prepared, tmp_path, capsys, monkeypatch):
    """The probe: one step at a huge learning rate used to give a model of NaN features, chosen (R1 100)."""
    spoil_weights_after_step(monkeypatch, 0, NAN)
    overrides = ["train.max_steps=1", "train.warmup_steps=0"]
    error = cli_error(train.main, train_argv(tiny_prepared, tmp_path, overrides), capsys, status=3)
    assert error.startswith("error: classifier is not finite after step 0 (epoch 0)")  # the first parameter
    assert "no checkpoint was written yet" in error and "lower train.lr" in error
    assert not (tmp_path / "model").exists()


def test_scores_of_an_overflowing_model_stop_training(tiny_prepared, tmp_path, capsys, monkeypatch):
    """Finite but huge weights: the features overflow, validation scores are NaN; training stops (exit 3)."""
    spoil_weights_after_step(monkeypatch, 0, 1e15)
    overrides = ["train.max_steps=1", "train.warmup_steps=0"]
    error = cli_error(train.main, train_argv(tiny_prepared, tmp_path, overrides), capsys, status=3)
    assert error.startswith("error: val fused scores (fusion weight 0): ")
    assert "are not finite (first: query 0" in error
    assert "after epoch 0: training stopped (no checkpoint was written yet)" in error
    assert not (tmp_path / "model").exists()


def test_a_broken_second_epoch_keeps_the_first(tiny_prepared, tmp_path, capsys, monkeypatch):
    """The first step of epoch 1 (step 3: three batches an epoch) breaks the weights; epoch 0 is kept."""
    spoil_weights_after_step(monkeypatch, 3, NAN)
    overrides = ["train.epochs=2", "train.warmup_steps=0"]
    error = cli_error(train.main, train_argv(tiny_prepared, tmp_path, overrides), capsys, status=3)
    kept = tmp_path / "ck" / "epoch-000.safetensors"
    assert "is not finite after step 3 (epoch 1)" in error and f"({kept} is kept)" in error
    from acsa.storage.checkpoint import load_checkpoint

    state = load_checkpoint(kept).model_state
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert not (tmp_path / "model").exists()


def spoil_a_float(path: Path, tensor: str) -> None:
    """Overwrite the first element of float32 `tensor` of a safetensors file with NaN (a bit-rotted float)."""
    raw = bytearray(path.read_bytes())
    header_size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_size])
    assert header[tensor]["dtype"] == "F32"
    start = 8 + header_size + header[tensor]["data_offsets"][0]
    raw[start : start + 4] = struct.pack("<f", NAN)
    path.write_bytes(bytes(raw))


def test_a_bit_rotted_model_is_refused(smoke_run, tmp_path, capsys):
    """The probe: one NaN in model.safetensors used to give perfect test metrics."""
    shutil.copytree(smoke_run / "model", tmp_path / "model")
    model_file = tmp_path / "model" / "model.safetensors"
    spoil_a_float(model_file, "model.sentence_proj.weight")
    sets = [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    features = smoke_run / "features"
    data = ["--prepared", str(smoke_run / "prepared"), "--features", str(features)]
    images = ["--image-features", str(smoke_run / "image_features")]  # explain reads the pixels
    argv = ["--params", str(REPO / "params.yaml"), *sets, *data, *images, "--model", str(tmp_path / "model")]
    error = cli_error(evaluate.main, [*argv, "--out", str(tmp_path / "eval")], capsys, status=3)
    assert error == (
        f"error: {model_file}: tensor sentence_proj.weight holds 1 NaN or infinite values "
        "(a damaged file: retrain it, dvc repro)"
    )
    explain_argv = [*data, "--model", str(tmp_path / "model"), "--eval", str(smoke_run / "eval")]
    assert cli_error(explain.main, [*explain_argv, "--out", str(tmp_path / "ex")], capsys, status=3) == error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_metrics_json_of_a_real_run_is_strict(smoke_run):
    def refuse(name: str) -> None:
        pytest.fail(f"non-finite constant {name} in a JSON output")

    for path in [smoke_run / "eval" / "metrics.json", smoke_run / "eval" / "fusion_curve.json"]:
        json.loads(path.read_text(), parse_constant=refuse)
    metrics = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    assert all(0 <= v <= 100 and math.isfinite(v) for kind in metrics["test"].values() for v in kind.values())

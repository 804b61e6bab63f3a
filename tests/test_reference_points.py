"""Reference points (acsa/analysis/reference_points.py, the reference_points stage) and the text-feature
diagnostic (acsa/analysis/text_binding.py): oracle scores and ranks on hand-built attribute records, random
tie-breaking checked against an exact expectation (every tie order enumerated), the stage on the smoke
benchmark, and its refusal without attributes.json."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_bad_inputs import cli_error

from acsa import reference_points as stage
from acsa.analysis.reference_points import (
    COARSE_KEYS,
    FINE_KEYS,
    METRICS,
    RANKERS,
    attribute_scores,
    reference_metrics,
    reference_points,
    split_attributes,
)
from acsa.analysis.text_binding import colour_probe, nearest_neighbour_accuracy, phrase_set_similarity
from acsa.data.synthetic import ATTRIBUTE_KEYS
from acsa.scoring.metrics import rank_metrics


def identity(**values: str) -> dict[str, dict[str, str | None]]:
    """An attributes.json `identity` with every attribute absent but `values` (keys "scale__name")."""
    nested: dict[str, dict[str, str | None]] = {}
    for key in ATTRIBUTE_KEYS:
        scale, name = key.split(".")
        nested.setdefault(scale, {})[name] = values.get(f"{scale}__{name}")
    return nested


A = identity(
    head__gender="man",
    head__hat="cap",
    upper__type="t-shirt",
    upper__colour="red",
    lower__type="jeans",
    lower__colour="blue",
)
B = identity(
    head__gender="man", upper__type="t-shirt", upper__colour="red", lower__type="jeans", lower__colour="blue"
)
C = identity(head__gender="woman", upper__type="dress", upper__colour="red")
Q0 = {"head.gender": "man", "upper.type": "t-shirt", "upper.colour": "red", "head.hat": "cap", "view": "back"}
Q1 = {"head.gender": "man", "lower.type": "jeans", "lower.colour": "blue"}
Q2 = {"head.gender": "woman", "upper.type": "dress"}


def caption(text: str, mentions: dict[str, str]) -> dict:
    return {"text": text, "style": "sentences", "mentions": mentions, "noise": None}


def hand_built(order: list[int] | None = None) -> tuple[dict, dict]:
    """(split record, attributes.json) of 3 identities: A (2 images) and B agree on every coarse attribute, A
    has a cap, C is a woman in a dress; one query per identity. `order` permutes the gallery."""
    gallery = [
        ("a0.png", 1, A, [caption("q0", Q0)]),
        ("a1.png", 1, A, []),
        ("b0.png", 2, B, [caption("q1", Q1)]),
        ("c0.png", 3, C, [caption("q2", Q2)]),
    ]
    gallery = [gallery[i] for i in (order or range(len(gallery)))]
    paths = [path for path, *_ in gallery]
    split = {
        "image_paths": paths,
        "image_ids": [pid for _, pid, *_ in gallery],
        "captions": ["q0", "q1", "q2"],
        "caption_ids": [1, 2, 3],
        "caption_image_index": [paths.index(p) for p in ("a0.png", "b0.png", "c0.png")],
    }
    attributes = {
        path: {"id": pid, "identity": ident, "captions": caps} for path, pid, ident, caps in gallery
    }
    return split, attributes


def exact_metrics(scores: torch.Tensor, query_ids, gallery_ids) -> dict[str, float]:
    """The expectation of the metrics over uniformly random tie orders, by enumerating every order of the
    gallery (tiny galleries only): the slow reference of `reference_metrics`."""
    num_gallery = scores.shape[1]
    runs = [
        rank_metrics(
            scores.double() * num_gallery + torch.tensor(order, dtype=torch.float64), query_ids, gallery_ids
        )
        for order in itertools.permutations(range(num_gallery))
    ]
    return {name: sum(run[name] for run in runs) / len(runs) for name in METRICS}


def test_levels_cover_every_attribute_once():
    assert sorted(COARSE_KEYS + FINE_KEYS) == sorted(ATTRIBUTE_KEYS)
    assert not set(COARSE_KEYS) & set(FINE_KEYS)
    assert RANKERS["attribute_oracle"][0] == COARSE_KEYS + FINE_KEYS and RANKERS["random"][0] == ()


def test_oracle_scores_agreements_minus_contradictions_and_ignores_the_view():
    mentions, identities = split_attributes(*hand_built())
    assert "view" not in mentions[0]
    every = attribute_scores(mentions, identities, RANKERS["attribute_oracle"][0])
    # gallery a0 a1 b0 c0; an absent hat contradicts "cap", a woman in a dress contradicts a man in a t-shirt
    assert every.tolist() == [[4, 4, 2, -2], [3, 3, 3, -3], [-2, -2, -2, 2]]
    coarse = attribute_scores(mentions, identities, COARSE_KEYS)
    assert coarse.tolist() == [[3, 3, 3, -1], [3, 3, 3, -3], [-2, -2, -2, 2]]
    assert attribute_scores(mentions, identities, ()).abs().sum() == 0


def test_oracle_ranks_on_hand_built_records():
    split, attributes = hand_built()
    points = reference_points(split, attributes, draws=400, seed=0)
    # every attribute: the cap puts A first for q0, q2 alone; q1 states nothing that tells B from A (1 of 3)
    assert points["metrics"]["attribute_oracle"]["R1"] == pytest.approx(100 * (1 + 1 / 3 + 1) / 3, abs=3.0)
    # coarse: q0 ties A (2 images) with B, q1 ties B with A's two images, q2 alone: (2/3 + 1/3 + 1) / 3
    assert points["metrics"]["coarse"]["R1"] == pytest.approx(100 * 2 / 3, abs=3.0)
    assert points["metrics"]["coarse"]["R5"] == points["metrics"]["attribute_oracle"]["R5"] == 100.0
    assert points["metrics"]["random"]["R1"] == pytest.approx(100 * (2 / 4 + 1 / 4 + 1 / 4) / 3, abs=3.0)


@pytest.mark.parametrize("ranker", ["coarse", "random", "colour_pair"])
def test_tie_breaking_is_random_not_gallery_order(ranker):
    keys = RANKERS[ranker][0]
    expected = None
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        split, attributes = hand_built(order)
        scores = attribute_scores(*split_attributes(split, attributes), keys)
        exact = exact_metrics(scores, split["caption_ids"], split["image_ids"])
        expected = expected or exact
        assert exact == pytest.approx(expected)  # the expectation does not depend on the gallery order
        mean, _ = reference_metrics(
            scores, torch.tensor(split["caption_ids"]), torch.tensor(split["image_ids"]), draws=400, seed=1
        )
        assert mean == pytest.approx(exact, abs=3.0)
    # without random tie-breaking the gallery order decides: one query, four tied images, its match first
    tied, query, gallery = torch.zeros(1, 4, dtype=torch.int64), [1], [1, 2, 3, 4]
    assert rank_metrics(tied.double(), query, gallery)["R1"] == 100.0
    assert rank_metrics(tied.double(), query, gallery[::-1])["R1"] == 0.0
    assert exact_metrics(tied, query, gallery)["R1"] == pytest.approx(25.0)
    mean, _ = reference_metrics(tied, torch.tensor(query), torch.tensor(gallery), draws=400, seed=0)
    assert mean["R1"] == pytest.approx(25.0, abs=5.0)


def test_reference_metrics_are_seeded():
    split, attributes = hand_built()
    scores = attribute_scores(*split_attributes(split, attributes), ())
    ids = torch.tensor(split["caption_ids"]), torch.tensor(split["image_ids"])
    assert reference_metrics(scores, *ids, draws=5, seed=3) == reference_metrics(
        scores, *ids, draws=5, seed=3
    )
    assert reference_metrics(scores, *ids, draws=5, seed=3) != reference_metrics(
        scores, *ids, draws=5, seed=4
    )
    with pytest.raises(ValueError, match="draws"):
        reference_metrics(scores, *ids, draws=0, seed=0)


def test_nearest_neighbour_accuracy_shares_ties():
    similarity = torch.tensor([[1.0, 0.5, 0.5], [0.5, 1.0, 0.2], [0.5, 0.2, 1.0]], dtype=torch.float64)
    # row 0: neighbours 1 (same id) and 2 (other) tie -> 0.5; row 1 -> 0 (same id); row 2 -> 0 (other id)
    assert nearest_neighbour_accuracy(similarity, torch.tensor([7, 7, 8])) == pytest.approx(100 * 1.5 / 3)


def test_phrase_set_similarity_is_a_symmetric_best_match():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    zero = torch.zeros(2)
    phrases = torch.stack(
        [torch.stack([a, b]), torch.stack([b, a]), torch.stack([a, zero]), torch.stack([zero, zero])]
    )
    mask = torch.tensor([[True, True], [True, True], [True, False], [False, False]])
    similarity = phrase_set_similarity(phrases.double(), mask, chunk_size=3)
    assert similarity[0, 1] == pytest.approx(1.0)  # the same set in another order
    assert similarity[0, 2] == pytest.approx(0.5 * (0.5 + 1.0))  # {a, b} vs {a}: b finds nothing like it
    assert similarity[2, 0] == pytest.approx(similarity[0, 2])
    assert similarity[3, 0] == similarity[0, 3] == -1.0  # no phrases


def test_colour_probe_tells_bound_from_unbound_features():
    colours = ["blue", "red"]
    pairs = [("red", "blue"), ("blue", "red")] * 10
    mentions = [{"upper.colour": up, "lower.colour": low} for up, low in pairs]

    def bound(up: str, low: str) -> list[float]:  # one dimension per (item, colour)
        return [float(up == c) for c in colours] + [float(low == c) for c in colours]

    def bag(up: str, low: str) -> list[float]:  # which colours, not which item wears them
        return [float(c in (up, low)) for c in colours]

    for features, accuracy, other in ((bound, 100.0, 0.0), (bag, 50.0, 50.0)):
        vectors = torch.tensor([features(*pair) for pair in pairs], dtype=torch.float64)
        probe = colour_probe(vectors, mentions, vectors, mentions)
        assert (probe["accuracy"], probe["other_colour"], probe["captions"]) == (accuracy, other, 40)
        assert set(probe["by_key"]) == {"upper.colour", "lower.colour"}


def run_stage_on(prepared: Path, features: Path, out: Path) -> dict:
    stage.main(["--prepared", str(prepared), "--features", str(features), "--out", str(out), "--draws", "3"])
    return json.loads((out / "metrics.json").read_text())


def test_stage_on_the_smoke_benchmark(smoke_run: Path, tmp_path: Path):
    features = smoke_run / "features"
    results = run_stage_on(smoke_run / "prepared", features, tmp_path / "points")
    assert results["available"] and results["dataset"] == "synthetic" and results["draws"] == 3
    assert list(results["rankers"]) == list(RANKERS)
    for split in ("test", "val"):
        assert list(results[split]) == list(RANKERS)
        assert all(list(metrics) == list(METRICS) for metrics in results[split].values())
        assert results[split]["attribute_oracle"]["R1"] >= results[split]["random"]["R1"]
        assert list(results["draw_std"][split]) == list(RANKERS)
    text = results["text_features"]
    assert (text["split"], text["fit_split"], text["captions"]) == ("val", "train", 16)
    for measure in ("nn_identity_R1", "same_identity_auc"):
        assert set(text[measure]) == {"sentence", "phrase_mean", "phrase_set"}
    assert set(text["colour_probe"]) == {"sentence", "phrase_mean"}
    assert run_stage_on(smoke_run / "prepared", features, tmp_path / "again") == results  # seeded


def copy_splits(smoke_run: Path, root: Path, dataset: str) -> Path:
    """A prepared folder holding the smoke run's split records only, as `dataset`, its images elsewhere."""
    for split in ("train", "val", "test"):
        records = json.loads((smoke_run / "prepared" / split / "records.json").read_text())
        records.update(dataset=dataset, image_root="benchmark/imgs")
        (root / "prepared" / split).mkdir(parents=True)
        (root / "prepared" / split / "records.json").write_text(json.dumps(records))
    return root / "prepared"


def test_missing_attributes_json_is_one_line_and_keeps_the_previous_output(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    prepared = copy_splits(smoke_run, tmp_path, "synthetic")
    out = tmp_path / "points"
    out.mkdir()
    (out / "metrics.json").write_text("previous")
    argv = ["--prepared", str(prepared), "--features", str(smoke_run / "features")]
    line = cli_error(stage.main, [*argv, "--out", str(out)], capsys)
    assert "attributes.json: not found" in line
    assert (out / "metrics.json").read_text() == "previous"


def test_public_benchmark_writes_not_available(smoke_run: Path, tmp_path: Path):
    prepared = copy_splits(smoke_run, tmp_path, "cuhk-pedes")
    shutil.rmtree(tmp_path / "missing", ignore_errors=True)
    results = run_stage_on(prepared, tmp_path / "missing", tmp_path / "points")
    assert (
        results["available"] is False
        and results["dataset"] == "cuhk-pedes"
        and "attributes" in results["reason"]
    )

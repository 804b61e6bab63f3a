"""Rank metrics against a plain-Python per-query reference and a hand-computed example."""

from __future__ import annotations

import pytest
import torch

from acsa.scoring.metrics import per_query_ranks, rank_metrics


def reference(similarity, query_ids, gallery_ids, ks=(1, 5, 10)):
    """One query at a time in plain Python: stable descending order, then R@K, AP, INP."""
    sums = {f"R{k}": 0.0 for k in ks} | {"mAP": 0.0, "mINP": 0.0}
    rows = similarity.tolist()
    for q, row in enumerate(rows):
        order = sorted(range(len(row)), key=lambda g: -row[g])  # sorted() is stable: ties keep gallery order
        hits = [gallery_ids[g] == query_ids[q] for g in order]
        match_ranks = [n + 1 for n, h in enumerate(hits) if h]
        for k in ks:
            sums[f"R{k}"] += any(hits[:k])
        sums["mAP"] += sum((i + 1) / rank for i, rank in enumerate(match_ranks)) / len(match_ranks)
        sums["mINP"] += len(match_ranks) / match_ranks[-1]
    return {key: 100.0 * value / len(rows) for key, value in sums.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_reference_on_random_matrices(seed):
    g = torch.Generator().manual_seed(seed)
    num_queries, num_gallery = 37, 53
    gallery_ids = torch.randint(0, 8, (num_gallery,), generator=g)
    query_ids = gallery_ids[torch.randint(0, num_gallery, (num_queries,), generator=g)]
    # coarse values force ties, which the stable sort must break by gallery order
    similarity = torch.randint(0, 6, (num_queries, num_gallery), generator=g).float()
    got = rank_metrics(similarity, query_ids, gallery_ids, chunk_size=8)
    expected = reference(similarity, query_ids.tolist(), gallery_ids.tolist())
    assert got.keys() == expected.keys() == {"R1", "R5", "R10", "mAP", "mINP"}
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_hand_computed_example():
    gallery_ids = [0, 1, 0, 2, 1, 0]
    # query 0 (id 0): order 1, 0, 3, 2, 4, 5 -> matches at ranks 2, 4, 6
    # query 1 (id 1): order 1, 2, 0, 3, 5, 4 -> matches at ranks 1, 6
    similarity = torch.tensor(
        [
            [0.8, 0.9, 0.5, 0.7, 0.3, 0.1],
            [0.7, 0.9, 0.8, 0.6, 0.1, 0.5],
        ]
    )
    got = rank_metrics(similarity, [0, 1], gallery_ids, ks=(1, 5))
    ap0 = (1 / 2 + 2 / 4 + 3 / 6) / 3  # 0.5
    ap1 = (1 / 1 + 2 / 6) / 2  # 0.6667
    assert got["R1"] == pytest.approx(50.0)
    assert got["R5"] == pytest.approx(100.0)
    assert got["mAP"] == pytest.approx(100 * (ap0 + ap1) / 2)  # 58.33
    assert got["mINP"] == pytest.approx(100 * (3 / 6 + 2 / 6) / 2)  # 41.67
    ranks = per_query_ranks(similarity, [0, 1], gallery_ids, top=3)
    assert ranks.top_indices.tolist() == [[1, 0, 3], [1, 2, 0]]
    assert ranks.first_match_rank.tolist() == [2, 1]


def test_ties_are_broken_by_gallery_order():
    similarity = torch.zeros(1, 4)
    assert rank_metrics(similarity, [1], [0, 0, 1, 1])["R1"] == 0.0
    assert rank_metrics(similarity, [1], [1, 0, 0, 0])["R1"] == 100.0
    assert per_query_ranks(similarity, [1], [0, 0, 1, 1]).first_match_rank.tolist() == [3]


def test_query_without_match_is_an_error_naming_it():
    similarity = torch.rand(3, 4)
    with pytest.raises(ValueError, match="query 2 .identity 9. has no match"):
        rank_metrics(similarity, [0, 1, 9], [0, 1, 1, 0], chunk_size=2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        rank_metrics(torch.rand(3, 4), [0, 1, 0], [0, 1, 1])

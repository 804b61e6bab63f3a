"""Fused scores and the fusion-weight choice: re-rank keeps candidates on top, exact mode adds the scores."""

import torch

from acsa.scoring.retrieval import Scores, choose_fusion_weight, metrics_by_kind


def test_exact_fusion_is_weighted_sum():
    global_ = torch.tensor([[0.9, 0.1, 0.5]])
    local = torch.tensor([[0.0, 0.8, 0.2]])
    scores = Scores(global_, local, None)
    assert torch.allclose(scores.fused(2.0), global_ + 2.0 * local)
    assert torch.equal(scores.fused(0.0), global_)


def test_rerank_reorders_only_the_candidates_and_keeps_them_above_the_rest():
    global_ = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    candidates = torch.tensor([[0, 1]])  # the global top-2
    local = torch.tensor([[-1.0, 1.0]])  # local prefers candidate 1
    fused = Scores(global_, local, candidates).fused(1.0)
    assert fused[0].argsort(descending=True).tolist() == [1, 0, 2, 3]
    local_only = Scores(global_, local, candidates).local_only()
    assert local_only[0].argsort(descending=True).tolist() == [1, 0, 2, 3]


def test_fusion_weight_is_chosen_by_r1_on_the_given_split():
    # query 0 (id 1) is found by local only, query 1 (id 2) by both
    global_ = torch.tensor([[0.2, 0.9], [0.1, 0.8]])
    local = torch.tensor([[0.9, 0.0], [0.0, 0.9]])
    scores = Scores(global_, local, None)
    query_ids, gallery_ids = torch.tensor([1, 2]), torch.tensor([1, 2])
    weight, curve = choose_fusion_weight(scores, query_ids, gallery_ids, [0.0, 1.0, 4.0])
    assert weight == 1.0  # the smallest weight reaching R1 = 100
    assert [row["R1"] for row in curve] == [50.0, 100.0, 100.0]
    results = metrics_by_kind(scores, query_ids, gallery_ids, weight, "test")
    assert results["global"]["R1"] == 50.0 and results["fused"]["R1"] == 100.0

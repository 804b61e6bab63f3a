"""Loss terms: CMPM, CMPC and the local KL."""

from __future__ import annotations

import math

import pytest
import torch

from acsa.model.losses import cmpc_loss, cmpm_loss, local_loss, matching_kl, matching_target


def aligned_batch(num_ids=6, per_id=2, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    centres = torch.randn(num_ids, dim, generator=g) * 3
    images = centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=g)
    texts = centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=g)
    return images, texts, labels


def test_cmpm_lower_on_aligned_than_shuffled_batch():
    images, texts, labels = aligned_batch()
    shuffled = texts[torch.randperm(len(texts), generator=torch.Generator().manual_seed(1))]
    assert cmpm_loss(images, texts, labels) < cmpm_loss(images, shuffled, labels)


def test_cmpm_hand_computed_value():
    # two identities, orthonormal features: x_i . t_j/|t_j| = identity matrix
    feats = torch.eye(2)
    labels = torch.tensor([0, 1])
    p_hit = math.e / (math.e + 1)
    p_miss = 1 / (math.e + 1)
    eps = 1e-8
    one_direction = p_hit * (math.log(p_hit) - math.log(1 + eps)) + p_miss * (
        math.log(p_miss) - math.log(eps)
    )
    expected = 2 * one_direction  # both directions, symmetric here
    got = cmpm_loss(feats, feats, labels, eps=eps)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_l1_and_l2_targets_differ_only_with_several_positives():
    single = torch.tensor([0, 1, 2])
    torch.testing.assert_close(matching_target(single, "l1"), matching_target(single, "l2"))
    images, texts, labels = aligned_batch(per_id=2)
    assert not torch.isclose(
        cmpm_loss(images, texts, labels, target_norm="l1"), cmpm_loss(images, texts, labels, target_norm="l2")
    )
    row = matching_target(torch.tensor([0, 0, 1]), "l2")[0]
    torch.testing.assert_close(row, torch.tensor([1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]))
    with pytest.raises(ValueError, match="cmpm_target_norm"):
        matching_target(single, "l3")


def test_cmpc_gradient_reaches_classifier_and_prefers_right_identity():
    images, texts, labels = aligned_batch()
    weight = torch.randn(32, 6, requires_grad=True)
    loss = cmpc_loss(images, texts, labels, weight)
    loss.backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    # classifier columns pointing at the identity centres give a lower loss than a random classifier
    centres = torch.stack([images[labels == c].mean(0) for c in range(6)], dim=1)
    assert cmpc_loss(images, texts, labels, 10 * centres) < loss.detach()


def test_cmpc_ignores_classifier_column_norms():
    images, texts, labels = aligned_batch()
    weight = torch.randn(32, 6)
    scaled = weight * torch.tensor([1.0, 2.0, 3.0, 0.5, 7.0, 1.5])
    torch.testing.assert_close(
        cmpc_loss(images, texts, labels, weight), cmpc_loss(images, texts, labels, scaled)
    )


def test_local_loss_normalises_each_direction_over_its_own_axis():
    labels = torch.tensor([0, 1, 2])
    # texts x images: every text prefers image 0, so text->image is wrong for texts 1, 2 while image->text
    # of image 0 is spread over all texts
    sim = torch.tensor([[0.9, 0.1, 0.1], [0.9, 0.1, 0.1], [0.9, 0.1, 0.1]])
    loss = local_loss(sim, labels, scale=20.0)

    target = matching_target(labels)
    expected = matching_kl(20 * sim, target) + matching_kl(20 * sim.T, target)
    torch.testing.assert_close(loss, expected)
    # the released code's variant (both terms over texts) would count the text->image term twice
    assert not torch.isclose(loss, 2 * matching_kl(20 * sim.T, target))
    assert local_loss(torch.eye(3), labels, scale=20.0) < loss

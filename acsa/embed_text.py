"""Stage `embed_text`: prepared tokens -> frozen text-encoder features, computed once for every run.

Inputs:  params.yaml (text), PREPARED (default data/prepared: tokens.safetensors).
Outputs: OUT (default data/text_features), written atomically:
  OUT/features.safetensors  `<split>.sentence` [captions, H] per split and `phrases` [unique phrases, H],
                            pooled hidden states of the (frozen) text encoder
  OUT/info.json             encoder, pooling, hidden size, counts

A frozen text encoder costs nothing per training epoch: training and every ablation read these features.
Noun phrases are de-duplicated before encoding (prepare stores each unique phrase once).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from acsa import paths
from acsa.cli import add_path, params_from_args, run_stage, stage_parser
from acsa.config import Params
from acsa.errors import DataError, one_line
from acsa.model.text_encoder import encode_texts, load_text_encoder
from acsa.runtime import resolve_device, set_threads
from acsa.storage.files import atomic_output_dir, save_tensors, write_json

log = logging.getLogger(__name__)


def embed_text(params: Params, prepared: Path, out: Path) -> dict:
    tokens_path = prepared / paths.TOKENS_FILE
    if not tokens_path.is_file():
        raise FileNotFoundError(f"{tokens_path}: not found (run the prepare stage first)")
    try:
        tokens = load_file(str(tokens_path))
    except SafetensorError as err:
        raise DataError(f"{tokens_path}: not a readable safetensors file ({one_line(err)})") from None
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    encoder = load_text_encoder(params.text, device)
    features: dict[str, torch.Tensor] = {}
    splits = sorted({key.split(".")[0] for key in tokens if key.endswith(".caption_input_ids")})
    for split in splits:
        features[f"{split}.sentence"] = encode_texts(
            encoder,
            tokens[f"{split}.caption_input_ids"],
            tokens[f"{split}.caption_attention_mask"],
            params.text.batch_size,
            f"{split} captions",
        )
    features["phrases"] = encode_texts(
        encoder,
        tokens["phrase_input_ids"],
        tokens["phrase_attention_mask"],
        params.text.batch_size,
        "phrases",
    )
    info = {
        "encoder": params.text.encoder,
        "pooling": params.text.pooling,
        "hidden_size": int(features["phrases"].shape[1]),
        "counts": {key: int(value.shape[0]) for key, value in features.items()},
    }
    with atomic_output_dir(out) as work:
        save_tensors({k: v.contiguous() for k, v in features.items()}, work / paths.FEATURES.name)
        write_json(work / "info.json", info)
    log.info("text features -> %s: %s", out, info["counts"])
    return info


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--out", paths.TEXT_FEATURES, "output folder")
    args = parser.parse_args(argv)
    embed_text(params_from_args(args), args.prepared, args.out)


if __name__ == "__main__":
    run_stage(main)

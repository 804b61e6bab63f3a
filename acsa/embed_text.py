"""Stage `embed_text`: prepared tokens -> frozen text-encoder features, computed once for every run.

Inputs:  params.yaml (text), PREPARED (default data/prepared: <split>/tokens.safetensors of every split).
Outputs: OUT (default data/text_features), written atomically:
  OUT/<split>.safetensors   `sentence` [captions, H], `phrases` [the split's unique phrases, H] and
                            `pad_phrase` [1, H] (the input of a padded phrase slot, "[PAD]"), pooled
                            hidden states of the (frozen) text encoder; metadata: the SHA-256 of the token
                            file they encode (training and evaluation refuse features of other tokens)
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
from acsa.config.sections import Params
from acsa.data.text_features import TOKENS_HASH_KEY
from acsa.errors import DataError, one_line
from acsa.model.text_encoder import encode_texts, load_text_encoder
from acsa.runtime import resolve_device, set_threads
from acsa.storage.files import atomic_output_dir, save_tensors, sha256_of, write_json

log = logging.getLogger(__name__)


TOKEN_KEYS = ("caption_input_ids", "caption_attention_mask", "phrase_input_ids", "phrase_attention_mask")


def read_tokens(path: Path) -> dict[str, torch.Tensor]:
    """A split's token file, checked before any encoding starts."""
    try:
        tokens = load_file(str(path))
    except SafetensorError as err:
        raise DataError(f"{path}: not a readable safetensors file ({one_line(err)})") from None
    missing = [key for key in TOKEN_KEYS if key not in tokens]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} (rerun the prepare stage: dvc repro prepare)")
    return tokens


def embed_text(params: Params, prepared: Path, out: Path) -> dict:
    splits = [name for name in paths.SPLITS if (prepared / name / paths.TOKENS_FILE).is_file()]
    if not splits:
        raise FileNotFoundError(f"{prepared}: no <split>/{paths.TOKENS_FILE} (run the prepare stage first)")
    all_tokens = {split: read_tokens(prepared / split / paths.TOKENS_FILE) for split in splits}
    set_threads(0)  # all cores: the features are computed once, whatever the training runs' thread count
    device = resolve_device(params.train.device)
    encoder = load_text_encoder(params.text, device)
    features: dict[str, dict[str, torch.Tensor]] = {}
    hashes = {split: sha256_of(prepared / split / paths.TOKENS_FILE) for split in splits}
    for split, tokens in all_tokens.items():
        features[split] = {
            "sentence": encode_texts(
                encoder,
                tokens["caption_input_ids"],
                tokens["caption_attention_mask"],
                params.text.batch_size,
                f"{split} captions",
            ),
            "phrases": encode_texts(
                encoder,
                tokens["phrase_input_ids"],
                tokens["phrase_attention_mask"],
                params.text.batch_size,
                f"{split} phrases",
            ),
        }
        if "pad_phrase_input_ids" in tokens:
            features[split]["pad_phrase"] = encode_texts(
                encoder,
                tokens["pad_phrase_input_ids"],
                tokens["pad_phrase_attention_mask"],
                params.text.batch_size,
                f"{split} padding phrase",
            )
    info = {
        "encoder": params.text.encoder,
        "pooling": params.text.pooling,
        "hidden_size": int(features[splits[0]]["sentence"].shape[1]),
        "counts": {
            split: {key: int(value.shape[0]) for key, value in tensors.items()}
            for split, tensors in features.items()
        },
    }
    with atomic_output_dir(out) as work:
        for split, tensors in features.items():
            save_tensors(
                {k: v.contiguous() for k, v in tensors.items()},
                paths.features_file(work, split),
                metadata={TOKENS_HASH_KEY: hashes[split]},
            )
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

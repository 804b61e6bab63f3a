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
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from acsa.cli import params_from_args, run_stage, stage_parser
from acsa.config import Params, TextConfig
from acsa.encoders import TextEncoder
from acsa.io import atomic_output_dir, write_json
from acsa.runtime import resolve_device, set_threads

log = logging.getLogger(__name__)

DEFAULT_PREPARED = Path("data/prepared")
DEFAULT_OUT = Path("data/text_features")


@torch.no_grad()
def encode_texts(
    encoder: TextEncoder, ids: torch.Tensor, mask: torch.Tensor, batch_size: int, desc: str
) -> torch.Tensor:
    """Pooled features [N, H] of tokenised texts, float32 on the CPU.

    Texts are encoded in order of length and each batch is cut to its longest text: most captions use far
    fewer tokens than the padded width, and attention cost grows with it. Results return in input order.
    """
    device = next(encoder.parameters()).device
    lengths = mask.sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    features = None
    for start in tqdm(range(0, len(ids), batch_size), desc=desc, leave=False):
        rows = order[start : start + batch_size]
        width = max(1, int(lengths[rows].max()))
        batch_ids, batch_mask = ids[rows, :width].long().to(device), mask[rows, :width].long().to(device)
        batch = encoder(batch_ids, batch_mask).float().cpu()
        if features is None:
            features = torch.empty(len(ids), batch.shape[1])
        features[rows] = batch
    return features


def load_text_encoder(cfg: TextConfig, device: torch.device) -> TextEncoder:
    encoder = TextEncoder(cfg).to(device)
    encoder.eval()
    return encoder


def embed_text(params: Params, prepared: Path, out: Path) -> dict:
    tokens_path = prepared / "tokens.safetensors"
    if not tokens_path.is_file():
        raise FileNotFoundError(f"{tokens_path}: not found (run the prepare stage first)")
    tokens = load_file(str(tokens_path))
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
        save_file({k: v.contiguous() for k, v in features.items()}, str(work / "features.safetensors"))
        write_json(work / "info.json", info)
    log.info("text features -> %s: %s", out, info["counts"])
    return info


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", type=Path, default=DEFAULT_PREPARED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    embed_text(params_from_args(args), args.prepared, args.out)


if __name__ == "__main__":
    run_stage(main)

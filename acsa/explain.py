"""Stage `explain`: the trained model and its test rankings -> what the visualisation report draws.

Inputs:  MODEL/model.safetensors (train stage), EVAL/rankings.json (evaluate stage: fused top-10 per query),
         PREPARED (splits.json, phrases.json; benchmark/attributes.json on the synthetic benchmark), FEATURES.
         The model's own stored configuration is used (image size, batch size), not params.yaml.
Outputs: OUT (default reports/explain/main), written atomically:
  gallery.json           test gallery image paths (relative to the prepared image root) and identities; the
                         image tokens, each with the part of the image it pools (fractions of its size)
  queries.json           per test query: caption, noun phrases, identity, its own gallery image, the fused
                         rank of its first match, the top-10 gallery images and which of them match
  attention.safetensors  a[r, p], the attention of image token r over the query's phrases p (softmax over
                         phrases, method.md §3): `top1` [Q, R, P] on each query's top-1 image, `own` [Q, R, P]
                         on its own image (not written for a model without the local branch)
  embedding.json         a t-SNE map (2-D) of the global image and text features of --tsne-ids test identities
  attribute_errors.json  synthetic benchmark only (acsa/report_attributes.py): R@1 per stated attribute, and
                         the attributes on which R@1 misses' top-1 image differs from the query's identity
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from acsa.cli import run_stage
from acsa.data.dataset import load_prepared
from acsa.encoders import REGION_NAMES, STRIPE_BANDS
from acsa.engine import image_table
from acsa.evaluate import load_model
from acsa.io import atomic_output_dir, read_json, write_json
from acsa.report_attributes import attribute_errors
from acsa.retrieval import encode_images, encode_queries
from acsa.runtime import resolve_device, set_threads
from acsa.text_sources import text_source_for

log = logging.getLogger(__name__)


def token_layout(token_names: list[str], parts: str, window_grid: tuple[int, int]) -> list[dict]:
    """Where each image token pools from, as fractions of the image (top = 0): region tokens are the encoder's
    horizontal stripes (nominal for `parts: channels`, whose regions are channel slices), window tokens are
    cells of the window grid, pooled tokens (mean of the others, or the global one) cover nothing."""
    layout = []
    rows, cols = window_grid
    for name in token_names:
        window = re.fullmatch(r"window_r(\d+)c(\d+)", name)
        if name in REGION_NAMES:
            top, bottom = STRIPE_BANDS[REGION_NAMES.index(name)]
            box = {"top": top, "bottom": bottom, "left": 0.0, "right": 1.0}
            kind = "region" if parts == "stripes" else "channel region"
        elif window:
            r, c = int(window[1]), int(window[2])
            box = {"top": r / rows, "bottom": (r + 1) / rows, "left": c / cols, "right": (c + 1) / cols}
            kind = "window"
        else:
            box, kind = None, "pooled"
        layout.append({"name": name, "kind": kind, "box": box})
    return layout


def query_records(split: dict, rankings: list[dict], phrases: list[str]) -> list[dict]:
    ids = split["image_ids"]
    records = []
    for q, ranking in enumerate(rankings):
        pid = split["caption_ids"][q]
        records.append(
            {
                "query": q,
                "caption": split["captions"][q],
                "phrases": [phrases[i] for i in split["phrase_index"][q] if i >= 0],
                "id": pid,
                "image": split["caption_image_index"][q],
                "rank": ranking["first_match_rank"],
                "global_rank": ranking["global_first_match_rank"],
                "top": ranking["top"],
                "top_match": [ids[i] == pid for i in ranking["top"]],
            }
        )
    return records


@torch.no_grad()
def attention_maps(model, image_tokens, phrase_tokens, phrase_mask, images: torch.Tensor) -> torch.Tensor:
    """a [R, P] of each query q over gallery image images[q]: [Q, R, P] (one small product per pair)."""
    attend = model.cross_attention.attention_weights
    threads = torch.get_num_threads()
    # tiny products: more threads only add synchronisation (10x slower on 2 busy cores)
    torch.set_num_threads(1)
    try:
        return torch.stack(
            [
                attend(image_tokens[image], phrase_tokens[q], phrase_mask[q]).float().cpu()
                for q, image in enumerate(images.tolist())
            ]
        )
    finally:
        torch.set_num_threads(threads)


def tsne_map(
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    image_ids: list[int],
    caption_ids: list[int],
    num_ids: int,
    seed: int,
) -> dict:
    """t-SNE of L2-normalised global features of `num_ids` identities spread over the sorted test ids."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    ids = sorted(set(image_ids))
    chosen = sorted({ids[int(i)] for i in np.linspace(0, len(ids) - 1, min(num_ids, len(ids)))})
    image_rows = [i for i, pid in enumerate(image_ids) if pid in chosen]
    text_rows = [t for t, pid in enumerate(caption_ids) if pid in chosen]
    feats = np.concatenate([image_feats[image_rows], text_feats[text_rows]])
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True).clip(min=1e-12)
    perplexity = float(min(30.0, max(2.0, (len(feats) - 1) / 3)))
    with threadpool_limits(1):  # a few hundred points: OpenMP threads only contend with other jobs
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            feats
        )
    points = [{"kind": "image", "index": i, "id": image_ids[i]} for i in image_rows] + [
        {"kind": "text", "index": t, "id": caption_ids[t]} for t in text_rows
    ]
    for point, (x, y) in zip(points, coords.tolist(), strict=True):
        point["x"], point["y"] = round(x, 4), round(y, 4)
    return {"ids": chosen, "perplexity": perplexity, "seed": seed, "points": points}


def explain(
    model_dir: Path, eval_dir: Path, prepared_dir: Path, features: Path, out: Path, tsne_ids: int, seed: int
) -> None:
    model, params = load_model(model_dir)  # the configuration the model was trained with
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    model.to(device)
    prepared = load_prepared(prepared_dir)
    split = prepared.split("test")
    rankings = read_json(eval_dir / "rankings.json")
    if len(rankings) != len(split["captions"]):
        raise ValueError(
            f"{eval_dir}/rankings.json has {len(rankings)} queries, the test split {len(split['captions'])} "
            "(stale evaluation: rerun dvc repro)"
        )
    images = image_table(prepared, split, "image_paths", params)
    text_source = text_source_for(params.text.finetune, prepared_dir, features, split, "test")
    image_feats = encode_images(model, images, params.evaluate.batch_size, device, params.train.num_workers)
    text_feats = encode_queries(model, text_source, params.evaluate.batch_size, device)
    queries = query_records(split, rankings, read_json(prepared_dir / "phrases.json"))
    encoder = model.image_encoder
    gallery = {
        "dataset": prepared.dataset,
        "image_paths": split["image_paths"],
        "image_ids": split["image_ids"],
        "image_size": [params.image.height, params.image.width],
        "tokens": token_layout(encoder.token_names, encoder.parts, encoder.window_grid),
        "parts": encoder.parts,
        "has_attention": model.uses_local,
        "top_k": len(rankings[0]["top"]) if rankings else 0,
    }
    embedding = tsne_map(
        image_feats.global_feat.float().cpu().numpy(),
        text_feats.global_feat.float().cpu().numpy(),
        split["image_ids"],
        split["caption_ids"],
        tsne_ids,
        seed,
    )
    attributes_file = prepared.image_root.parent / "attributes.json"
    errors = None
    if attributes_file.is_file():
        errors = attribute_errors(split, read_json(attributes_file), rankings)
    with atomic_output_dir(out) as work:
        write_json(work / "gallery.json", gallery)
        write_json(work / "queries.json", queries, indent=None)
        write_json(work / "embedding.json", embedding, indent=None)
        if errors is not None:
            write_json(work / "attribute_errors.json", errors)
        if model.uses_local:
            args = (model, image_feats.tokens, text_feats.phrase_tokens, text_feats.phrase_mask)
            maps = {
                "top1": attention_maps(*args, torch.tensor([r["top"][0] for r in rankings])),
                "own": attention_maps(*args, torch.tensor(split["caption_image_index"])),
            }
            save_file(maps, str(work / "attention.safetensors"))
    log.info("explained %d test queries -> %s", len(queries), out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("models/main"))
    parser.add_argument(
        "--eval", type=Path, default=Path("reports/eval/main"), help="the evaluate stage's OUT"
    )
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--features", type=Path, default=Path("data/text_features/features.safetensors"))
    parser.add_argument("--out", type=Path, default=Path("reports/explain/main"))
    parser.add_argument("--tsne-ids", type=int, default=16, help="identities in the t-SNE map (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="t-SNE random state (default 0)")
    args = parser.parse_args(argv)
    explain(args.model, args.eval, args.prepared, args.features, args.out, args.tsne_ids, args.seed)


if __name__ == "__main__":
    run_stage(main)

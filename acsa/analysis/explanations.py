"""What the explain stage computes for the visualisation report, besides the attribute errors: where each
image token pools from, a record per test query, the phrase attention of chosen (query, image) pairs, and a
t-SNE map of global features."""

from __future__ import annotations

import re

import numpy as np
import torch

from acsa.model.acsa import ACSA
from acsa.model.image_encoder import REGION_NAMES, STRIPE_BANDS


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
def attention_maps(
    model: ACSA, image_tokens, phrase_tokens, phrase_mask, images: torch.Tensor
) -> torch.Tensor:
    """a [R, P] of each query q over gallery image images[q]: [Q, R, P] (one small product per pair). For a
    model scored with phrase_queries (`model.attention`), the attention it scores with: a'[p, r] of each
    phrase over the image tokens, transposed to [R, P] (each real phrase's column sums to 1)."""
    reverse = model.scoring_direction == "phrase_queries"

    def attend(image_tokens, phrase_tokens, phrase_mask):
        return model.cross_attention.attention_weights(image_tokens, phrase_tokens, phrase_mask, reverse)

    threads = torch.get_num_threads()
    # tiny products: more threads only add synchronisation (much slower on busy shared cores)
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

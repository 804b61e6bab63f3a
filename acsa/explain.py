"""Stage `explain`: the trained model and its test rankings -> what the visualisation report draws.

Inputs:  MODEL/model.safetensors (train stage), EVAL/rankings.json (evaluate stage: fused top-10 per query),
         PREPARED/test (records, phrases, images; benchmark/attributes.json on the synthetic benchmark),
         FEATURES, and PARAMS' `explain` section (free_queries, free_top_k). The model's own stored
         configuration is used (image size, batch size), not params.yaml's model sections.
Outputs: OUT (default reports/explain/main), written atomically:
  gallery.json           test gallery image paths (relative to the prepared image root) and identities; the
                         image tokens, each with the part of the image it pools (fractions of its size)
  queries.json           per test query: caption, noun phrases, identity, its own gallery image, the fused
                         rank of its first match, the top-10 gallery images and which of them match
  attention.safetensors  a[r, p], the attention of image token r over the query's phrases p (softmax over
                         phrases, docs/method.md): `top1` [Q, R, P] on each query's top-1 image, `own`
                         [Q, R, P] on its own image (not written for a model without the local branch).
                         For a model scored with phrase_queries (gallery.json `attention_direction`), the
                         reverse attention a'[p, r] (softmax over image tokens) transposed to [R, P]
  embedding.json         a t-SNE map (2-D) of the global image and text features of --tsne-ids test identities
  attribute_errors.json  synthetic benchmark only (acsa.analysis.attributes): R@1 per stated attribute, and
                         the attributes on which R@1 misses' top-1 image differs from the query's identity
  free_queries.json      each of `explain.free_queries` searched through the search tool's API
                         (acsa.search.api, as `acsa search` does) in an index of the test gallery built with
                         the model: its noun phrases and top `free_top_k` images with global, local and fused
                         scores (acsa.analysis.free_queries)
  free_attention.safetensors  `maps` [Q, K, R, P]: a[r, p] of each of those results (as attention.safetensors;
                         not written for a model without the local branch or without free queries)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from acsa import paths
from acsa.analysis.attributes import attribute_errors
from acsa.analysis.explanations import attention_maps, query_records, token_layout, tsne_map
from acsa.analysis.free_queries import check_free_queries, search_free_queries
from acsa.cli import add_path, run_stage, stage_parser
from acsa.config.explain import load_explain_config
from acsa.data.prepared import load_prepared, read_split
from acsa.errors import DataError
from acsa.model.acsa import ACSA
from acsa.runtime import resolve_device, set_threads
from acsa.scoring.retrieval import encode_split
from acsa.storage.files import atomic_output_dir, read_json, save_tensors, write_json

log = logging.getLogger(__name__)


def explain(
    model_dir: Path,
    eval_dir: Path,
    prepared_dir: Path,
    features: Path,
    out: Path,
    tsne_ids: int,
    seed: int,
    params_file: Path = paths.PARAMS,
) -> None:
    config = load_explain_config(params_file)
    check_free_queries(config.free_queries, config.free_top_k, str(params_file))
    model = ACSA.from_checkpoint(model_dir)
    params = model.params  # the configuration the model was trained with
    set_threads(params.train.threads)
    device = resolve_device(params.train.device)
    model.to(device)
    prepared = load_prepared(prepared_dir)
    # from the pixels, as the search tool sees a gallery (a frozen backbone's cached outputs are the same up
    # to float rounding): the report's attention maps and embedding are what a user of the model gets
    pixels = replace(params, image=replace(params.image, frozen=False))
    test = read_split(prepared, features, "test", pixels)
    split = test.records
    rankings = read_json(eval_dir / "rankings.json")
    if len(rankings) != len(split["captions"]):
        raise DataError(
            f"{eval_dir}/rankings.json has {len(rankings)} queries, the test split {len(split['captions'])} "
            "(stale evaluation: rerun dvc repro)"
        )
    image_feats, text_feats = encode_split(
        model, test, params.evaluate.batch_size, device, params.train.num_workers
    )
    queries = query_records(split, rankings, read_json(prepared.folder("test") / paths.PHRASES_FILE))
    encoder = model.image_encoder
    gallery = {
        "dataset": prepared.dataset("test"),
        "image_paths": split["image_paths"],
        "image_ids": split["image_ids"],
        "image_size": [params.image.height, params.image.width],
        "tokens": token_layout(encoder.token_names, encoder.parts, encoder.window_grid),
        "parts": encoder.parts,
        "has_attention": model.uses_local,
        "attention_direction": model.scoring_direction,
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
    errors = None
    attributes_file = prepared.attributes_file("test")
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
            save_tensors(maps, work / "attention.safetensors")
        free, free_maps = search_free_queries(
            model_dir,
            prepared_dir,
            "test",
            config.free_queries,
            config.free_top_k,
            work,
            split["image_paths"],
            split["image_ids"],
            str(params_file),
        )
        write_json(work / "free_queries.json", free)
        if free_maps is not None:
            save_tensors({"maps": torch.from_numpy(free_maps)}, work / "free_attention.safetensors")
    log.info("explained %d test queries and %d free queries -> %s", len(queries), len(free["queries"]), out)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    add_path(parser, "--model", paths.MODEL, "the train stage's output")
    add_path(parser, "--eval", paths.EVAL, "the evaluate stage's output (rankings.json)")
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output")
    add_path(parser, "--features", paths.TEXT_FEATURES, "the embed_text stage's output")
    add_path(parser, "--out", paths.EXPLAIN, "output folder")
    add_path(parser, "--params", paths.PARAMS, "params file (its explain section)")
    parser.add_argument("--tsne-ids", type=int, default=16, help="identities in the t-SNE map (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="t-SNE random state (default: 0)")
    args = parser.parse_args(argv)
    explain(
        args.model, args.eval, args.prepared, args.features, args.out, args.tsne_ids, args.seed, args.params
    )


if __name__ == "__main__":
    run_stage(main)

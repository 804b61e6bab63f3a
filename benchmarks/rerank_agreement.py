"""Exact vs global top-k re-rank on a trained model and its prepared benchmark (the pipeline's own data), on
the VALIDATION split: this benchmark informs the default of `evaluate.local_mode`, so it never reads test.

    python -m benchmarks.rerank_agreement [--root .] [--ks 32 64 128] [--out FILE]

Needs a finished `dvc repro` under ROOT: ROOT/models/main, ROOT/data/prepared, ROOT/data/text_features
(benchmarks/repro_time.py --keep leaves one in its scratch folder). The validation gallery and queries are
encoded once, scored exactly and with each k, and the fused R@1/5/10, mAP and mINP compared at the fusion
weight training chose on validation. Times include the global similarity and the top-k.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from acsa import paths
from acsa.data.prepared import load_prepared, read_split
from acsa.model.acsa import ACSA
from acsa.runtime import set_threads
from acsa.scoring.metrics import rank_metrics
from acsa.scoring.retrieval import encode_split, score
from benchmarks.common import (
    IMPLEMENTATION_HELP,
    RESULTS,
    cross_attention_module,
    format_table,
    machine_info,
    write_json,
)


def encoded_split(model, params, prepared_dir: Path, features: Path, name: str):
    split = read_split(prepared_dir, features, name, params)
    image_feats, text_feats = encode_split(model, split, params.evaluate.batch_size, torch.device("cpu"))
    return image_feats, text_feats, split.query_ids, split.gallery_ids


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("."))
    p.add_argument("--ks", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--implementation", default="current", help=IMPLEMENTATION_HELP)
    p.add_argument("--out", type=Path, default=RESULTS / "rerank_agreement.json")
    args = p.parse_args(argv)
    set_threads(args.threads)
    root = args.root
    model = ACSA.from_checkpoint(root / paths.MODEL)
    params = model.params
    if args.implementation != "current":  # same weights, another version's scoring code
        current = model.cross_attention
        swapped = cross_attention_module(args.implementation).AsymmetricCrossAttention(
            current.query.in_features, current.attention_scale, current.leaky_slope, current.mask_padding
        )
        swapped.load_state_dict(current.state_dict())
        model.cross_attention = swapped.eval()
    prepared, features = root / paths.PREPARED, root / paths.TEXT_FEATURES
    chunk = params.evaluate.chunk_size
    weight = float(model.summary.get("fusion_weight", 1.0))
    with torch.no_grad():
        image_feats, text_feats, query_ids, gallery_ids = encoded_split(
            model, params, prepared, features, "val"
        )
        rows = []
        for mode, k in [("exact", None), *[("rerank", k) for k in args.ks]]:
            start = time.perf_counter()
            scores = score(model, text_feats, image_feats, mode, k or 0, chunk)
            seconds = time.perf_counter() - start
            metrics = rank_metrics(scores.fused(weight), query_ids, gallery_ids)
            rows.append(
                {"mode": mode if k is None else f"top-{k}", "seconds (incl. global)": seconds, **metrics}
            )
    exact = rows[0]
    for row in rows[1:]:
        row["R@1/5/10 = exact"] = all(row[key] == exact[key] for key in ("R1", "R5", "R10"))
    summary = {
        "benchmark": "rerank_agreement",
        "command": f"python -m benchmarks.rerank_agreement --root {root} --ks {' '.join(map(str, args.ks))}"
        f" --implementation {args.implementation}",
        "implementation": args.implementation,
        "model": str(root / paths.MODEL),
        "dataset": load_prepared(prepared).dataset("val"),
        "split": "val",
        "val_queries": int(query_ids.numel()),
        "val_gallery": int(gallery_ids.numel()),
        "fusion_weight": weight,
        "config": dataclasses.asdict(params.evaluate),
        "machine": machine_info(),
        "rows": rows,
    }
    print(format_table(rows, list(rows[1])))
    print(f"written {write_json(args.out, summary)}")
    return summary


if __name__ == "__main__":
    main()

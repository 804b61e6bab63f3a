"""Stage `prepare`: benchmark -> prepared splits, noun phrases and tokens.

Inputs:  params.yaml (data, synthetic, text); for a public benchmark the folder `data.root`.
Outputs: OUT (default data/prepared), written atomically (nothing is left behind on an error):
  OUT/splits.json         train pairs (0-based labels), val/test galleries and queries, phrase indices
  OUT/phrases.json        the unique noun phrases (de-duplicated over all captions)
  OUT/tokens.safetensors  token ids / masks of every caption (per split) and of every unique phrase
  OUT/summary.json        per split {"ids", "images", "captions"} and phrase statistics (a DVC metrics file)
  OUT/benchmark/          the generated benchmark (synthetic only: imgs/, reid_raw.json, attributes.json)
and, for the synthetic benchmark, a contact sheet PNG (--contact-sheet, default reports/contact_sheet.png).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from acsa import paths
from acsa.cli import add_path, params_from_args, run_stage, stage_parser
from acsa.config import Params
from acsa.data.contact_sheet import write_contact_sheet
from acsa.data.phrases import extract_all
from acsa.data.readers import check_images, read_benchmark
from acsa.data.synthetic import generate_synthetic
from acsa.data.tokenize import load_tokenizer, tokenize
from acsa.data.types import Benchmark, EvalSplit, TrainSplit
from acsa.storage.files import atomic_output_dir, atomic_output_file, save_tensors, write_json

log = logging.getLogger(__name__)


def phrase_index(phrases: list[list[str]], vocabulary: dict[str, int], num_phrases: int) -> list[list[int]]:
    """Map each caption's phrases to indices into the unique-phrase list; -1 pads to `num_phrases`."""
    rows = []
    for caption_phrases in phrases:
        ids = [vocabulary.setdefault(p, len(vocabulary)) for p in caption_phrases[:num_phrases]]
        rows.append(ids + [-1] * (num_phrases - len(ids)))
    return rows


def split_summary(benchmark: Benchmark) -> dict[str, dict[str, int]]:
    """Per split: identities, images and captions (summary.json)."""
    summary = {
        "train": {
            "ids": benchmark.train.num_ids,
            "images": len(benchmark.train.images),
            "captions": len(benchmark.train.captions),
        }
    }
    for name in ("val", "test"):
        split = getattr(benchmark, name)
        if split is not None:
            summary[name] = {
                "ids": len(set(split.image_ids)),
                "images": len(split.image_paths),
                "captions": len(split.captions),
            }
    return summary


def _split_record(split: TrainSplit | EvalSplit, phrase_rows: list[list[int]]) -> dict:
    record = dict(vars(split))
    record["phrase_index"] = phrase_rows
    return record


def _image_root_for(benchmark: Benchmark, work_dir: Path, out: Path) -> str:
    """Image root as stored in splits.json: relative to OUT when generated inside it, else absolute."""
    root = benchmark.image_root.resolve()
    try:
        return str(Path(os.curdir) / root.relative_to(work_dir.resolve()))
    except ValueError:
        return str(root)


def prepare(params: Params, out: Path, contact_sheet: Path | None) -> dict:
    """Run the stage; returns the summary written to OUT/summary.json. Every output, the contact sheet
    included, is written before OUT is replaced: a failure leaves the previous outputs as they were."""
    sheet = contact_sheet if params.data.dataset == "synthetic" else None
    with (
        atomic_output_file(sheet) if sheet is not None else contextlib.nullcontext() as sheet_tmp,
        atomic_output_dir(out) as work,
    ):
        if params.data.dataset == "synthetic":
            root = generate_synthetic(work / paths.BENCHMARK_DIR, params.synthetic)
        else:
            root = Path(params.data.root)
        benchmark = read_benchmark(params.data.dataset, root)
        check_images(benchmark)

        splits = {"train": benchmark.train, "val": benchmark.val, "test": benchmark.test}
        splits = {name: split for name, split in splits.items() if split is not None}
        vocabulary: dict[str, int] = {}
        records, phrase_counts = {}, []
        for name, split in splits.items():
            phrases = extract_all(split.captions, params.data.num_phrases)
            phrase_counts += [len(p) for p in phrases]
            records[name] = _split_record(split, phrase_index(phrases, vocabulary, params.data.num_phrases))
        unique_phrases = list(vocabulary)

        tokenizer = load_tokenizer(params.text.encoder)
        tensors: dict[str, np.ndarray] = {}
        for name, split in splits.items():
            tokens = tokenize(tokenizer, split.captions, params.data.caption_max_tokens)
            tensors.update({f"{name}.caption_{key}": value for key, value in tokens.items()})
        tokens = tokenize(tokenizer, unique_phrases or [""], params.data.phrase_max_tokens)
        tensors.update({f"phrase_{key}": value for key, value in tokens.items()})
        save_tensors(tensors, work / paths.TOKENS_FILE)

        write_json(
            work / paths.SPLITS_FILE,
            {"dataset": benchmark.name, "image_root": _image_root_for(benchmark, work, out), **records},
            indent=None,
        )
        write_json(work / paths.PHRASES_FILE, unique_phrases)
        counts = np.asarray(phrase_counts)
        summary = {
            **split_summary(benchmark),
            "phrases": {
                "unique": len(unique_phrases),
                "per_caption_mean": round(float(counts.mean()), 3),
                "captions_without_phrases": int((counts == 0).sum()),
                "captions_at_max": int((counts >= params.data.num_phrases).sum()),
            },
        }
        write_json(work / "summary.json", summary)
        if sheet_tmp is not None:
            write_contact_sheet(work / paths.BENCHMARK_DIR, sheet_tmp)
    log.info("prepared %s -> %s: %s", params.data.dataset, out, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    add_path(parser, "--out", paths.PREPARED, "output folder")
    add_path(parser, "--contact-sheet", paths.CONTACT_SHEET, "PNG grid of sample identities (synthetic only)")
    args = parser.parse_args(argv)
    prepare(params_from_args(args), args.out, args.contact_sheet)


if __name__ == "__main__":
    run_stage(main)

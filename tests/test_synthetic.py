"""The synthetic benchmark: layout, schema, determinism, caption/visibility consistency, contact sheet."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acsa.config.sections import SyntheticConfig
from acsa.data.contact_sheet import write_contact_sheet
from acsa.data.synthetic import (
    ATTRIBUTE_KEYS,
    COLOURS,
    SPLITS,
    STYLES,
    VOCABULARY,
    generate_synthetic,
    sample_attributes,
    sample_look,
    sample_shot,
    shared_pair_rate,
    tokenize,
    visible_keys,
    write_caption,
)
from acsa.data.synthetic_render import COLOUR_RGB, render

# Many identities with few images: varied views; a high occlusion and noise rate exercise those paths.
BENCH_CFG = SyntheticConfig(
    train_ids=40, val_ids=10, test_ids=20, images_per_id=2, occlusion_rate=0.5, caption_noise_rate=0.1, seed=5
)
TINY = SyntheticConfig(train_ids=3, val_ids=2, test_ids=2, images_per_id=2, seed=1)

# Independent of the generator's synonym table: caption token -> canonical value it states.
COLOUR_WORDS = {c: c for c in COLOURS} | {"gray": "grey", "blonde": "blonde", "blond": "blonde"}
_TYPE_SPELLINGS = {
    "t-shirt": "t-shirt tee",
    "shirt": "shirt",
    "sweater": "sweater jumper pullover",
    "jacket": "jacket",
    "coat": "coat overcoat",
    "dress": "dress",
    "trousers": "trousers pants slacks",
    "jeans": "jeans",
    "shorts": "shorts",
    "skirt": "skirt",
    "shoes": "shoes sneakers",
    "boots": "boots",
    "cap": "cap",
    "beanie": "beanie hat",
    "backpack": "backpack rucksack",
    "handbag": "handbag purse",
    "shoulder bag": "bag",
    "umbrella": "umbrella",
}
TYPE_WORDS = {word: value for value, words in _TYPE_SPELLINGS.items() for word in words.split()}
TYPE_KEYS = ("head.hat", "upper.type", "lower.type", "feet.type", "carried.type")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "bench", BENCH_CFG)


@pytest.fixture(scope="module")
def records(bench) -> list[dict]:
    return json.loads((bench / "reid_raw.json").read_text())


@pytest.fixture(scope="module")
def attributes(bench) -> dict[str, dict]:
    return json.loads((bench / "attributes.json").read_text())


def _bench_items(records, attributes) -> list[tuple[dict, dict, list[str]]]:
    """(attribute record, caption record, tokens) for every caption written to disk."""
    items = []
    for record in records:
        info = attributes[record["file_path"]]
        for caption, tokens in zip(info["captions"], record["processed_tokens"], strict=True):
            items.append((info, caption, tokens))
    return items


@pytest.fixture(scope="module")
def sampled_items() -> list[tuple[dict, dict, list[str]]]:
    """The same triples for 1,500 shots that are captioned but not drawn: rare cases show up, fast."""
    items = []
    for i in range(1500):
        rng = np.random.default_rng([11, i])
        look = sample_look(rng, sample_attributes(rng))
        shot = sample_shot(rng, look, occlusion_rate=0.5)
        visible = visible_keys(look, shot)
        captions = [write_caption(look.attrs, visible, shot.view, s, rng, 0.1) for s in STYLES[: 1 + i % 3]]
        identity = defaultdict(dict)
        for key, value in look.attrs.items():
            identity[key.split(".")[0]][key.split(".")[1]] = value
        info = {"identity": identity, "view": shot.view, "occlusion": shot.occlusion, "visible": visible}
        items += [(info, c.record(), tokenize(c.text)) for c in captions]
    return items


@pytest.fixture(scope="module", params=["bench", "sampled"])
def caption_items(request, records, attributes, sampled_items) -> list[tuple[dict, dict, list[str]]]:
    return _bench_items(records, attributes) if request.param == "bench" else sampled_items


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


def test_layout_and_record_schema(bench, records):
    assert (bench / "imgs").is_dir() and (bench / "attributes.json").is_file()
    per_split = {s: getattr(BENCH_CFG, f"{s}_ids") for s in SPLITS}
    assert len(records) == sum(per_split.values()) * BENCH_CFG.images_per_id
    for record in records:
        assert set(record) == {"split", "captions", "file_path", "processed_tokens", "id"}
        assert record["split"] in SPLITS
        assert record["file_path"].startswith(record["split"] + "/")
        assert (bench / "imgs" / record["file_path"]).is_file()
        assert len(record["captions"]) == BENCH_CFG.captions_per_image
        assert all(isinstance(c, str) and c.strip() for c in record["captions"])
        assert record["processed_tokens"] == [tokenize(c) for c in record["captions"]]
        for caption, tokens in zip(record["captions"], record["processed_tokens"], strict=True):
            assert tokens and all(t == t.lower() and t in caption.lower() for t in tokens)
    assert tokenize("A man in a Red T-shirt.") == ["a", "man", "in", "a", "red", "t-shirt"]


def test_ids_start_at_one_are_contiguous_and_disjoint_across_splits(records):
    ids_by_split = defaultdict(set)
    images_by_id = defaultdict(int)
    for record in records:
        ids_by_split[record["split"]].add(record["id"])
        images_by_id[record["id"]] += 1
    all_ids = sorted(images_by_id)
    assert all_ids == list(range(1, len(all_ids) + 1))
    assert sum(len(v) for v in ids_by_split.values()) == len(all_ids)  # no id in two splits
    assert {s: len(v) for s, v in ids_by_split.items()} == {s: getattr(BENCH_CFG, f"{s}_ids") for s in SPLITS}
    assert set(images_by_id.values()) == {BENCH_CFG.images_per_id}


def test_attributes_cover_every_image(records, attributes):
    assert set(attributes) == {r["file_path"] for r in records}
    scales = defaultdict(set)
    for key in ATTRIBUTE_KEYS:
        scale, name = key.split(".")
        scales[scale].add(name)
    for record in records:
        info = attributes[record["file_path"]]
        assert (info["id"], info["split"]) == (record["id"], record["split"])
        assert {s: set(v) for s, v in info["identity"].items()} == scales
        assert info["view"] in ("front", "back", "side")
        assert info["occlusion"] in (None, "feet", "legs", "side")
        assert [c["text"] for c in info["captions"]] == record["captions"]


def test_identity_attributes_are_constant_per_id_and_unique_within_a_split(records, attributes):
    by_id = defaultdict(list)
    for record in records:
        by_id[record["id"]].append(json.dumps(attributes[record["file_path"]]["identity"], sort_keys=True))
    assert all(len(set(looks)) == 1 for looks in by_id.values())
    for split in SPLITS:
        looks = [
            by_id[r["id"]][0] for r in records if r["split"] == split and r["file_path"].endswith("_0.png")
        ]
        assert len(looks) == len(set(looks)), f"two {split} identities have the same attributes"


def test_mentions_are_visible_and_true_except_recorded_noise(caption_items):
    noisy = 0
    for info, caption, _ in caption_items:
        identity = {f"{s}.{k}": v for s, d in info["identity"].items() for k, v in d.items()}
        mentions = dict(caption["mentions"])
        assert mentions.pop("view", info["view"]) == info["view"]
        assert set(mentions) <= set(info["visible"])
        assert all(identity[k] is not None for k in info["visible"])
        assert len(mentions) < len(info["visible"]), "a caption mentions everything visible"
        wrong = {k for k, v in mentions.items() if v != identity[k]}
        if caption["noise"] is None:
            assert not wrong
        else:
            noisy += 1
            key = caption["noise"]["key"]
            assert wrong == {key} and caption["noise"]["true"] == identity[key]
            assert caption["noise"]["written"] == mentions[key] and mentions[key] in VOCABULARY[key]
    assert noisy > 0  # a 10% noise rate must show up in 280 captions


def test_caption_words_state_exactly_the_mentions(caption_items):
    for _, caption, tokens in caption_items:
        m = caption["mentions"]
        said_colours = {COLOUR_WORDS[t] for t in tokens if t in COLOUR_WORDS}
        assert said_colours == {v for k, v in m.items() if k.endswith("colour")}, caption["text"]
        said_types = {TYPE_WORDS[t] for t in tokens if t in TYPE_WORDS}
        assert said_types == {m[k] for k in TYPE_KEYS if k in m}, caption["text"]
        assert ({"glasses", "sunglasses"} & set(tokens) != set()) == ("head.glasses" in m), caption["text"]
        assert {t for t in tokens if t in ("short", "long")} == {m.get("head.hair_length")} - {None}
        assert tokens[1] in ("man", "young", "guy", "gentleman", "woman", "lady", "girl")
        assert "none" not in tokens and "  " not in caption["text"], caption["text"]
        assert all(a != b for a, b in zip(tokens, tokens[1:], strict=False)), caption["text"]


def test_view_and_occlusion_keep_hidden_attributes_out_of_captions(caption_items):
    """Checked on the caption text against view/occlusion, independently of the `visible` list."""
    seen = defaultdict(int)
    for info, caption, tokens in caption_items:
        text = caption["text"]
        if info["view"] == "back":
            seen["back"] += 1
            assert not {"glasses", "sunglasses", "underneath", "logo", "print"} & set(tokens), text
            assert not re.search(r"\bover an? \w+ top\b", text), text
        if info["occlusion"] in ("feet", "legs"):
            seen["feet"] += 1
            assert not {"shoes", "sneakers", "boots"} & set(tokens), text
        if info["occlusion"] == "legs":
            seen["legs"] += 1
            assert not {"trousers", "pants", "slacks", "jeans", "shorts", "skirt"} & set(tokens), text
        if info["view"] == "front" and info["identity"]["carried"]["type"] == "backpack":
            for i, t in enumerate(tokens):
                if t in ("backpack", "rucksack"):
                    seen["front backpack"] += 1
                    assert tokens[i - 1] not in COLOUR_WORDS, text  # only the straps show
    assert min(seen.values()) > 0 and len(seen) == 4, seen


def test_each_image_gets_captions_in_different_styles_of_typical_length(records, attributes):
    lengths = []
    for record in records:
        styles = [c["style"] for c in attributes[record["file_path"]]["captions"]]
        assert len(set(styles)) == len(styles) and set(styles) <= set(STYLES)
        lengths += [len(t) for t in record["processed_tokens"]]
    assert 15 <= np.mean(lengths) <= 35  # CUHK-PEDES captions average ~23 words
    assert len({c for r in records for c in r["captions"]}) > 0.95 * len(lengths)


PIXEL_KEYS = ["upper.colour", "upper.pattern_colour", "upper.inner_colour", "lower.colour", "feet.colour"]


@pytest.mark.parametrize("key", [*PIXEL_KEYS, "carried.colour", "head.hat_colour"])
def test_pixels_show_a_colour_exactly_when_it_is_listed_visible(key):
    """Redraw a shot with one colour changed: the image must change iff the key is visible in that shot."""
    checked = defaultdict(int)
    for i in range(300):
        rng = np.random.default_rng([7, i])
        attrs = sample_attributes(rng)
        if attrs[key] is None:
            continue
        look = sample_look(rng, attrs)
        shot = sample_shot(rng, look, occlusion_rate=0.5)
        other = "red" if attrs[key] in ("white", "black") else "white"
        changed = dataclasses.replace(
            look, attrs={**attrs, key: other}, shades={**look.shades, key: COLOUR_RGB[other]}
        )
        a = np.asarray(render(look, shot, 128, 64, np.random.default_rng(i)))
        b = np.asarray(render(changed, shot, 128, 64, np.random.default_rng(i)))
        visible = key in visible_keys(look, shot)
        assert (a != b).any() == visible, (key, attrs, shot)
        checked[visible] += 1
        if checked[True] >= 6 and (checked[False] >= 3 or i >= 150):
            break
    assert checked[True] >= 6


def test_images_honour_configured_size(tmp_path):
    cfg = dataclasses.replace(TINY, height=96, width=40)
    out = generate_synthetic(tmp_path / "b", cfg)
    paths = list((out / "imgs").rglob("*.png"))
    assert len(paths) == (3 + 2 + 2) * 2
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (40, 96) and image.mode == "RGB"


def test_default_size_images(bench, records):
    with Image.open(bench / "imgs" / records[0]["file_path"]) as image:
        assert image.size == (BENCH_CFG.width, BENCH_CFG.height)


def test_generation_is_deterministic_from_the_seed(tmp_path):
    first = _digest(generate_synthetic(tmp_path / "a", TINY))
    assert first == _digest(generate_synthetic(tmp_path / "b", TINY))
    other = _digest(generate_synthetic(tmp_path / "c", dataclasses.replace(TINY, seed=2)))
    assert set(other) == set(first) and all(other[k] != first[k] for k in first)


def test_the_files_do_not_depend_on_the_number_of_workers(tmp_path):
    one = _digest(generate_synthetic(tmp_path / "a", TINY, workers=1))
    assert one == _digest(generate_synthetic(tmp_path / "b", TINY, workers=2))


def test_growing_one_split_leaves_the_others_unchanged(tmp_path):
    small = generate_synthetic(tmp_path / "a", TINY)
    large = generate_synthetic(tmp_path / "b", dataclasses.replace(TINY, train_ids=5))

    def test_split(root: Path) -> tuple[list[str], list[list[str]]]:
        recs = [r for r in json.loads((root / "reid_raw.json").read_text()) if r["split"] == "test"]
        images = [hashlib.sha256((root / "imgs" / r["file_path"]).read_bytes()).hexdigest() for r in recs]
        return images, [r["captions"] for r in recs]

    assert test_split(small) == test_split(large)


def test_smoke_size_is_fast(tmp_path):
    start = time.perf_counter()
    generate_synthetic(tmp_path / "s", SyntheticConfig(train_ids=12, val_ids=4, test_ids=4, images_per_id=2))
    assert time.perf_counter() - start < 5.0  # ~0.3 s on 2 cores; the default size takes ~30 s


def test_colour_priors_make_identities_share_their_coarse_look():
    attrs = [sample_attributes(np.random.default_rng([0, 2, i, 0, 3])) for i in range(150)]
    assert shared_pair_rate(attrs) >= 0.75  # 0.81-0.93 over seeds; 0.69-0.82 with flat bottom colours
    assert shared_pair_rate([{"upper.colour": str(i), "lower.colour": "x"} for i in range(5)]) == 0.0


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_caption_noise_rate(rate):
    rng = np.random.default_rng(0)
    noisy = []
    for _ in range(100):
        attrs = sample_attributes(rng)
        caption = write_caption(
            attrs, [k for k in ATTRIBUTE_KEYS if attrs[k]], "front", "sentences", rng, rate
        )
        noisy.append(caption.noise is not None)
    assert all(noisy) if rate == 1.0 else not any(noisy)


def _sizes(root: Path) -> dict[str, tuple[int, int, int, set, set]]:
    """split -> (identities, images, captions, images per identity, captions per image)."""
    out = {}
    for split in SPLITS:
        recs = [r for r in json.loads((root / "reid_raw.json").read_text()) if r["split"] == split]
        per_id = defaultdict(int)
        for r in recs:
            per_id[r["id"]] += 1
        per_image = {len(r["captions"]) for r in recs}
        out[split] = (
            len(per_id),
            len(recs),
            sum(len(r["captions"]) for r in recs),
            set(per_id.values()),
            per_image,
        )
    return out


def test_exact_split_totals_spread_over_identities_and_images(tmp_path):
    cfg = dataclasses.replace(TINY, split_images=[8, 5, 4], split_captions=[17, 10, 9])
    sizes = _sizes(generate_synthetic(tmp_path / "a", cfg))
    assert sizes == {
        "train": (3, 8, 17, {2, 3}, {2, 3}),  # as CUHK-PEDES: 2-3 images per identity, a few 3-caption images
        "val": (2, 5, 10, {2, 3}, {2}),
        "test": (2, 4, 9, {2}, {2, 3}),
    }
    assert _digest(generate_synthetic(tmp_path / "b", cfg)) == _digest(tmp_path / "a")  # deterministic


def test_larger_totals_add_images_and_keep_the_others(tmp_path):
    small = generate_synthetic(tmp_path / "a", dataclasses.replace(TINY, split_images=[7, 4, 4]))
    large = generate_synthetic(tmp_path / "b", dataclasses.replace(TINY, split_images=[9, 4, 4]))
    first, second = (
        {k: v for k, v in _digest(root).items() if k.startswith("imgs")} for root in (small, large)
    )
    assert set(first) < set(second) and all(second[k] == first[k] for k in first)
    captions = [
        {r["file_path"]: r["captions"] for r in json.loads((root / "reid_raw.json").read_text())}
        for root in (small, large)
    ]
    assert all(captions[1][path] == text for path, text in captions[0].items())
    default = generate_synthetic(tmp_path / "c", TINY)  # totals equal to ids x images_per_id: same files
    same = generate_synthetic(tmp_path / "d", dataclasses.replace(TINY, split_images=[6, 4, 4]))
    assert _digest(default) == _digest(same)


BAD_VALUES = dict(
    split_images=[6, 4],  # three totals
    split_captions=[6, 4, 3],  # fewer captions than images
    train_ids=0,
    val_ids=0,
    test_ids=-1,
    images_per_id=1,
    captions_per_image=0,
    height=8,
    width=0,
    occlusion_rate=1.5,
    caption_noise_rate=-0.1,
    seed=-1,
)


@pytest.mark.parametrize("key, value", BAD_VALUES.items())
def test_bad_config_is_a_one_line_error_naming_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=rf"^synthetic\.{key}: ") as err:
        generate_synthetic(tmp_path / "x", dataclasses.replace(TINY, **{key: value}))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_contact_sheet_is_a_png_whose_height_follows_the_number_of_ids(bench, tmp_path):
    write_contact_sheet(bench, tmp_path / "three.png", num_ids=3, images_per_id=2)
    write_contact_sheet(bench, tmp_path / "six.png", num_ids=6, images_per_id=2)
    with Image.open(tmp_path / "three.png") as three, Image.open(tmp_path / "six.png") as six:
        assert three.format == six.format == "PNG"
        assert six.height > 1.5 * three.height and three.width > 300
        assert np.asarray(three.convert("L")).std() > 10  # not a blank page
    with pytest.raises(FileNotFoundError):
        write_contact_sheet(tmp_path, tmp_path / "none.png")

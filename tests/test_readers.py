"""Benchmark readers on tiny copies of each public format, bad annotation files, and image loading."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fixtures_benchmarks import (
    CUHK_LAYOUT,
    write_cuhk_pedes,
    write_icfg_pedes,
    write_image,
    write_rstpreid,
)
from PIL import Image

from acsa.config.sections import DATASETS
from acsa.data.readers import READERS, check_images, fix_full_stops, load_image, read_benchmark
from acsa.errors import DataError


def _record(**overrides):
    record = {"split": "train", "captions": ["a man in a red shirt"], "file_path": "CUHK01/a.png", "id": 1}
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def _error(tmp_path: Path, records, dataset: str = "cuhk-pedes") -> str:
    """Write records (plus one valid test record) and return the one-line DataError message."""
    if isinstance(records, list):
        records = [*records, _record(split="test", file_path="CUHK01/t.png", id=99)]
    (tmp_path / "reid_raw.json").write_text(json.dumps(records))
    with pytest.raises(DataError) as info:
        read_benchmark(dataset, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_registry_covers_config_datasets():
    assert set(READERS) == set(DATASETS)


@pytest.mark.parametrize("annotation_name", ["reid_raw.json", "caption_all.json"])
def test_cuhk_pedes(tmp_path, annotation_name):
    write_cuhk_pedes(tmp_path, annotation_name, images=False)
    bench = read_benchmark("cuhk-pedes", tmp_path)
    assert bench.annotation_file.name == annotation_name and bench.image_root == tmp_path / "imgs"
    train = bench.train
    assert train.original_ids == [3, 7, 12] and sorted(set(train.labels)) == [0, 1, 2]
    assert len(train.images) == 6 and len(train.captions) == 12
    assert [train.images[i] for i in train.image_index] == train.image_paths
    assert train.labels[:4] == [0, 0, 0, 0] and train.labels[-1] == 2
    assert train.captions[0] == "A person 3 in a red jacket. View 0, caption 0."
    for split, (ids, per_id, per_image) in (("val", CUHK_LAYOUT["val"]), ("test", CUHK_LAYOUT["test"])):
        ev = getattr(bench, split)
        assert sorted(set(ev.image_ids)) == ids  # own ids kept
        assert len(ev.image_paths) == len(ids) * per_id == len(set(ev.image_paths))
        assert len(ev.captions) == len(ev.image_paths) * per_image
        assert [ev.image_ids[i] for i in ev.caption_image_index] == ev.caption_ids


@pytest.mark.parametrize("annotation_name", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_pedes_split_field_beats_folders(tmp_path, annotation_name):
    write_icfg_pedes(tmp_path, annotation_name, images=False)
    bench = read_benchmark("icfg-pedes", tmp_path)
    assert bench.val is None
    assert bench.train.original_ids == [0, 1, 2] and len(bench.train.captions) == 6
    assert sorted(set(bench.test.image_ids)) == [3, 4] and len(bench.test.image_paths) == 6
    assert any(p.startswith("test/") for p in bench.train.images)
    assert any(p.startswith("train/") for p in bench.test.image_paths)


# ICFG-PEDES as distributed: 0-based ids, one caption per image, no val split
ICFG_TEN = {"train": (list(range(10)), 3, 1), "test": ([10, 11], 2, 1)}


def test_icfg_pedes_val_split_carved_from_training_identities(tmp_path, caplog):
    write_icfg_pedes(tmp_path, images=False, layout=ICFG_TEN)
    with caplog.at_level(logging.WARNING):
        bench = read_benchmark("icfg-pedes", tmp_path, val_ids_from_train=3, val_split_seed=0)
    assert bench.val_from_train and "no val split: 3 of its 10 training identities (9 images" in caplog.text
    val_ids, train_ids = set(bench.val.image_ids), set(bench.train.original_ids)
    assert len(val_ids) == 3 and len(train_ids) == 7 and not val_ids & train_ids  # identities disjoint
    assert val_ids | train_ids == set(range(10))
    assert len(bench.val.image_paths) == 9 and len(bench.val.captions) == 9  # every image of those ids
    assert len(bench.train.images) == 21 and sorted(set(bench.train.labels)) == list(range(7))
    assert [bench.val.image_ids[i] for i in bench.val.caption_image_index] == bench.val.caption_ids
    assert sorted(set(bench.test.image_ids)) == [10, 11]  # the test split is untouched
    again = read_benchmark("icfg-pedes", tmp_path, val_ids_from_train=3, val_split_seed=0)
    assert again.val == bench.val and again.train == bench.train  # seeded
    draws = {frozenset(read_benchmark("icfg-pedes", tmp_path, 3, seed).val.image_ids) for seed in range(1, 6)}
    assert len(draws) > 1  # the seed decides which identities


def test_val_split_of_the_file_is_kept_and_zero_carves_nothing(tmp_path):
    write_cuhk_pedes(tmp_path / "cuhk", images=False)
    bench = read_benchmark("cuhk-pedes", tmp_path / "cuhk", val_ids_from_train=2)
    assert not bench.val_from_train and sorted(set(bench.val.image_ids)) == [20, 21]
    assert bench.train.original_ids == [3, 7, 12]
    write_icfg_pedes(tmp_path / "icfg", images=False, layout=ICFG_TEN)
    assert read_benchmark("icfg-pedes", tmp_path / "icfg", val_ids_from_train=0).val is None
    with pytest.raises(DataError) as err:
        read_benchmark("icfg-pedes", tmp_path / "icfg", val_ids_from_train=10)
    assert "ICFG-PEDES.json: data.val_ids_from_train: 10 would leave none of its 10 training" in str(
        err.value
    )


def test_rstpreid_img_path_and_full_stops(tmp_path):
    write_rstpreid(tmp_path, images=False)
    bench = read_benchmark("rstpreid", tmp_path)
    assert bench.train.images[0] == "0000_0.jpg"
    assert bench.train.captions[0] == "A person 0 in a red jacket. His view 0, caption 0."
    assert bench.val is not None and bench.val.image_ids == [2, 2]
    assert fix_full_stops("e.g. a jacket.His bag.") == "e.g. a jacket. His bag."


def test_synthetic_reads_the_cuhk_layout(tmp_path):
    write_cuhk_pedes(tmp_path / "synthetic", images=False)
    (tmp_path / "synthetic" / "attributes.json").write_text("[]")
    bench = read_benchmark("synthetic", tmp_path / "synthetic")
    assert bench.name == "synthetic" and bench.train.num_ids == 3


def test_missing_annotation_file_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="reid_raw.json, caption_all.json"):
        read_benchmark("cuhk-pedes", tmp_path)
    with pytest.raises(DataError, match="ICFG-PEDES.json, ICFG_PEDES.json"):
        read_benchmark("icfg-pedes", tmp_path)
    with pytest.raises(DataError, match=r"unknown dataset 'market'.*cuhk-pedes, icfg-pedes, rstpreid"):
        read_benchmark("market", tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_benchmark("rstpreid", tmp_path / "absent")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (_record(split="validation"), "unknown split 'validation'"),
        (_record(captions=None), "'captions' must be a non-empty list"),
        (_record(captions=[]), "'captions' must be a non-empty list"),
        (_record(captions=["ok", "  \n "]), "caption 1 is empty"),
        (_record(captions="a man"), "'captions' must be a non-empty list"),
        (_record(file_path=None), "missing or empty 'file_path'"),
        (_record(file_path="/etc/passwd"), "escapes the dataset root"),
        (_record(file_path="../other/a.png"), "escapes the dataset root"),
        (_record(file_path="CUHK01/../../a.png"), "escapes the dataset root"),
        (_record(id="7"), "'id' must be an integer"),
    ],
)
def test_bad_record_names_file_and_record(tmp_path, record, expected):
    message = _error(tmp_path, [_record(file_path="CUHK01/ok.png"), record])
    assert "reid_raw.json: record 1 (id " in message
    assert expected in message
    if record.get("file_path"):
        assert record["file_path"] in message


def test_bad_files(tmp_path):
    assert "expected a JSON list of records, got dict" in _error(tmp_path, {"annotations": []})
    assert "record 0: expected an object" in _error(tmp_path, ["a string"])
    (tmp_path / "reid_raw.json").write_text("[{")
    with pytest.raises(DataError, match=r"reid_raw.json: not valid JSON \(line 1"):
        read_benchmark("cuhk-pedes", tmp_path)
    message = _error(tmp_path, [_record(), _record(id=2)])
    assert "record 1 (id 2, file_path 'CUHK01/a.png'): image already listed by record 0 with id 1" in message
    (tmp_path / "reid_raw.json").write_text(json.dumps([_record()]))
    with pytest.raises(DataError, match="no records with split 'test'"):
        read_benchmark("cuhk-pedes", tmp_path)


def test_repeated_image_and_shared_identity_warn(tmp_path, caplog):
    records = [
        _record(),
        _record(captions=["another caption"]),
        _record(split="test", file_path="CUHK01/t.png", id=1),
    ]
    (tmp_path / "reid_raw.json").write_text(json.dumps(records))
    with caplog.at_level(logging.WARNING):
        bench = read_benchmark("cuhk-pedes", tmp_path)
    assert bench.train.captions == ["a man in a red shirt", "another caption"]
    assert bench.train.image_index == [0, 0]
    assert "1 records repeat an image" in caplog.text
    assert "1 identities appear in both train and test" in caplog.text


def test_check_images_collects_every_problem(tmp_path):
    write_cuhk_pedes(tmp_path)
    bench = read_benchmark("cuhk-pedes", tmp_path)
    check_images(bench)
    missing = [bench.train.images[0], bench.val.image_paths[1], bench.test.image_paths[2]]
    for rel in missing:
        (bench.image_root / rel).unlink()
    (bench.image_root / bench.test.image_paths[0]).write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        check_images(bench)
    message = str(info.value)
    assert "\n" not in message
    assert "4 of 14 images missing or unreadable (3 missing, 1 unreadable" in message
    assert all(rel in message for rel in missing[:2])


def test_load_image_converts_modes(tmp_path):
    rgba = np.zeros((4, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest transparent black
    cases = {
        "gray.png": Image.fromarray(np.full((4, 2), 100, np.uint8)),
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "la.png": Image.fromarray(np.zeros((4, 2, 2), np.uint8), "LA"),
        "palette.png": Image.fromarray(np.full((4, 2, 3), 50, np.uint8)).convert("P"),
        "cmyk.jpg": Image.new("CMYK", (2, 4), (0, 0, 0, 0)),
        "deep.png": Image.fromarray(np.full((4, 2), 32896, np.uint16)),
    }
    transparent = Image.new("P", (2, 4), 0)
    transparent.putpalette([0, 0, 0] * 256)
    transparent.info["transparency"] = 0
    cases["palette_t.png"] = transparent
    for name, image in cases.items():
        image.save(tmp_path / name)
        loaded = load_image(tmp_path / name)
        assert loaded.mode == "RGB" and loaded.size == (2, 4), name
    assert load_image(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 0, 0)
    assert load_image(tmp_path / "rgba.png").getpixel((1, 1)) == (255, 255, 255)  # composited on white
    assert load_image(tmp_path / "palette_t.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(tmp_path / "deep.png").getpixel((0, 0)) == (128, 128, 128)  # scaled, not clipped
    assert load_image(tmp_path / "cmyk.jpg").getpixel((0, 0))[0] > 240


def test_load_image_errors_name_the_path(tmp_path):
    write_image(tmp_path / "full.jpg", size=(64, 128))
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.jpg: unreadable image"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=r"absent.png: image file not found"):
        load_image(tmp_path / "absent.png")

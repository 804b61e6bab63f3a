"""The presets of params.yaml hold the values docs/presets.md lists, key by key, and the table lists every key
of every section a preset may change (with its source)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from conftest import REPO

from acsa.config import Params, apply_overrides, load_params, params_from_dict, params_to_dict

TABLE = REPO / "docs" / "presets.md"
SECTIONS = (
    "data",
    "text",
    "image",
    "model",
    "loss",
    "train",
    "evaluate",
)  # `synthetic` only for its benchmark
COLUMNS = ("default", "paper", "released_code")
ROW = re.compile(r"^\| `(\w+\.\w+)` \|(.*)\|\s*$")


def read_table() -> tuple[list[str], dict[str, list[str]]]:
    """(the table's column names, {key: [its cells]}) of the "Every value" table of docs/presets.md."""
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| key | default |"))
    names = [cell.strip().strip("`") for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break  # the end of the table
        match = ROW.match(line)
        assert match, f"{TABLE.name}: not a row of a key: {line[:60]}"
        assert match.group(1) not in rows, f"{match.group(1)} twice in {TABLE.name}"
        rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return names, rows


def documented(rows: dict[str, list[str]], column: int) -> Params:
    """The configuration one column of the table describes, through the params loader (its coercions)."""
    values = {}
    for key, cells in rows.items():
        cell = cells[column]
        assert cell.startswith("`") and cell.endswith("`"), f"{key}: {cell!r} is not a `value`"
        values[key] = yaml.safe_load(cell[1:-1])
    return params_from_dict(apply_overrides({}, values, "docs/presets.md"))


def test_the_table_lists_every_key_with_a_value_per_configuration_and_a_source():
    names, rows = read_table()
    assert names == ["key", *COLUMNS, "source"]
    defaults = Params()
    every = {f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(defaults, s))}
    assert set(rows) == every
    assert all(len(cells) == len(COLUMNS) + 1 and cells[-1] for cells in rows.values())
    presets = yaml.safe_load((REPO / "params.yaml").read_text())["presets"]
    assert set(presets) == set(COLUMNS[1:])
    changed = {key.split(".")[0] for overrides in presets.values() for key in overrides}
    assert changed <= set(SECTIONS)  # a preset never changes a section the table leaves out


@pytest.mark.parametrize("column", range(len(COLUMNS)))
def test_params_presets_hold_the_documented_values(column):
    _, rows = read_table()
    preset = COLUMNS[column]
    loaded = params_to_dict(load_params(REPO / "params.yaml", preset=preset))
    expected = params_to_dict(documented(rows, column))
    for key in rows:
        section, name = key.split(".")
        assert loaded[section][name] == expected[section][name], f"{preset}: {key}"


def test_released_code_differs_from_paper_where_the_table_says_released_code():
    _, rows = read_table()
    paper, released = (params_to_dict(load_params(REPO / "params.yaml", preset=p)) for p in COLUMNS[1:])
    differ = {
        key
        for key in rows
        if paper[key.split(".")[0]][key.split(".")[1]] != released[key.split(".")[0]][key.split(".")[1]]
    }
    assert differ == {
        "image.height",
        "image.width",
        "image.parts",
        "model.attention",
        "model.mask_padding",
        "loss.cmpm_target_norm",
        "loss.drop_cmpm_below",
        "train.sampler",
    }
    assert all("released code" in rows[key][-1] for key in differ)

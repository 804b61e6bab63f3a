"""The presets of params.yaml hold the values docs/presets.md lists, key by key, and the table lists every key
of every section a preset may change (with its source)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import yaml
from conftest import REPO

from acsa.config.loading import apply_overrides, load_params, params_from_dict
from acsa.config.sections import Params, params_to_dict

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


RELEASED_FUSION = (0.05, 0.08, 0.10, 0.12, 0.15, 0.18)  # a of the released code's (1 - a) global + a local


def test_released_code_grid_ranks_as_the_released_formula():
    """The released code fuses (1 - a) global + a local; this project global + w local. With w = a / (1 - a)
    the two are a positive factor (1 - a) apart, so every ranking is the same: checked on random scores,
    query by query over the whole gallery (float64, so that no two fused scores fall within rounding of each
    other). The released grid used as w (what the preset held before) ranks differently."""
    from acsa.scoring.metrics import per_query_ranks, rank_metrics
    from acsa.scoring.retrieval import Scores

    grid = load_params(REPO / "params.yaml", preset="released_code").evaluate.fusion_weights
    assert grid[0] == 0.0 and len(grid) == len(RELEASED_FUSION) + 1  # w = 0: the global score alone
    generator = torch.Generator().manual_seed(0)
    queries, gallery = 64, 400
    scores = Scores(
        global_=torch.rand(queries, gallery, generator=generator, dtype=torch.float64) * 2 - 1,
        local=torch.rand(queries, gallery, generator=generator, dtype=torch.float64) * 2 - 1,
        candidates=None,
    )
    query_ids = torch.randint(0, 40, (queries,), generator=generator)
    gallery_ids = torch.cat([torch.arange(40), torch.randint(0, 40, (gallery - 40,), generator=generator)])

    def ranking(similarity: torch.Tensor):
        ranks = per_query_ranks(similarity, query_ids, gallery_ids, top=gallery)
        return ranks.top_indices, rank_metrics(similarity, query_ids, gallery_ids)

    differs_as_w = 0
    for a, w in zip(RELEASED_FUSION, grid[1:], strict=True):
        assert w == pytest.approx(a / (1 - a), rel=1e-15)
        released_order, released_metrics = ranking((1 - a) * scores.global_ + a * scores.local)
        order, metrics = ranking(scores.fused(w))
        assert torch.equal(order, released_order), f"w {w} (a {a})"
        assert metrics == pytest.approx(released_metrics, abs=1e-12)
        differs_as_w += not torch.equal(ranking(scores.fused(a))[0], released_order)
    assert differs_as_w == len(RELEASED_FUSION)

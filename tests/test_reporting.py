"""Report helpers: variants and seed groups, summaries, computed findings, attribute errors, token layout,
case picking and figures. Plain data in tmp folders; no model, no notebook kernel."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from acsa.analysis.attributes import attribute_errors  # noqa: E402
from acsa.analysis.explanations import token_layout  # noqa: E402
from acsa.model.image_encoder import STRIPE_BANDS  # noqa: E402
from acsa.reports import figures, tables, views  # noqa: E402

PARAMS = """
train:
  seed: 0
ablations:
  global_only:
    model.use_local: false
  global_only_seed1:
    model.use_local: false
    train.seed: 1
  full_seed1:
    train.seed: 1
  no_windows:
    model.use_windows: false
"""


def shown(markdown: str) -> str:
    """The text a reader sees of `markdown` (names and values in it are escaped: acsa.reports.markup)."""
    from bs4 import BeautifulSoup
    from nbconvert.filters.markdown import markdown2html

    return BeautifulSoup(markdown2html(markdown), "html.parser").get_text()


def write_metrics(folder, r1: float, local: bool = True, weight: float = 1.0, global_r1: float | None = None):
    """A metrics.json (every metric = R1 + offset) and a fusion curve like the evaluate stage's."""

    def block(value):
        return {"R1": value, "R5": value + 20, "R10": value + 30, "mAP": value + 5, "mINP": value - 5}

    test = {"global": block(r1 if global_r1 is None else global_r1)}
    if local:
        test["local"] = block(r1 - 1)
        test["fused"] = block(r1)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"test": test, "fusion_weight": weight, "local_mode": "rerank" if local else "none"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    curve = [{"weight": w, "R1": r1 + w, "R5": 0, "R10": 0, "mAP": 0, "mINP": 0} for w in (0.0, 1.0, 2.0)]
    (folder / "fusion_curve.json").write_text(json.dumps(curve))


@pytest.fixture
def study(tmp_path):
    """params.yaml with 4 ablations and metrics: full 40/42, global-only 30/31, no_windows 39."""
    (tmp_path / "params.yaml").write_text(PARAMS)
    write_metrics(tmp_path / "eval" / "main", 40.0, global_r1=35.0)
    write_metrics(tmp_path / "eval" / "full_seed1", 42.0, global_r1=36.0, weight=2.0)
    write_metrics(tmp_path / "eval" / "global_only", 30.0, local=False)
    write_metrics(tmp_path / "eval" / "global_only_seed1", 31.0, local=False)
    write_metrics(tmp_path / "eval" / "no_windows", 39.0)
    return tmp_path


def test_variants_group_by_overrides_without_the_seed(study):
    variants = tables.declared_variants(study / "params.yaml")
    assert [v.name for v in variants] == [
        "main",
        "global_only",
        "global_only_seed1",
        "full_seed1",
        "no_windows",
    ]
    assert [v.seed for v in variants] == [0, 0, 1, 1, 0]
    groups = tables.group_labels(variants)
    assert variants[0].group == variants[3].group and variants[1].group == variants[2].group
    assert groups[variants[3].group] == "full ACSA (main)" and groups[variants[2].group] == "global_only"
    picked = tables.declared_variants(study / "params.yaml", ["no_windows", "main"])
    assert [v.name for v in picked] == ["no_windows", "main"]
    with pytest.raises(ValueError, match="unknown variants \\['nope'\\]"):
        tables.declared_variants(study / "params.yaml", ["nope"])


def test_summary_is_mean_and_half_range_over_seeds(study):
    variants = tables.declared_variants(study / "params.yaml")
    results, missing = tables.load_results(variants, study / "eval")
    assert missing == []
    summary = tables.seed_summary(results)
    full = summary.set_index("group").loc["full ACSA (main)"]
    assert full["n_seeds"] == 2 and full["R1_mean"] == 41.0 and full["R1_half_range"] == 1.0
    table = tables.summary_table(summary)
    assert table.loc["full ACSA (main)", "R1"] == "41.0 ± 1.0"
    assert table.loc["global_only", "mAP"] == "35.5 ± 0.5"
    assert table.loc["no_windows", "R1"] == "39.0"  # one seed: no spread
    assert tables.seed_noise(summary) == 2.0  # the largest max - min


def test_missing_variant_is_reported_not_fatal(study):
    (study / "eval" / "no_windows" / "metrics.json").unlink()
    results, missing = tables.load_results(tables.declared_variants(study / "params.yaml"), study / "eval")
    assert missing == ["no_windows"] and "no_windows" not in set(results["variant"])


def test_findings_are_computed_from_the_numbers(study):
    variants = tables.declared_variants(study / "params.yaml")
    results, _ = tables.load_results(variants, study / "eval")
    text = "\n".join(tables.findings(results, variants))
    assert "**Local alignment helps.**" in text
    assert "full ACSA R@1 41.0 (± 1.0 over seeds 0, 1) vs global-only 30.5" in text
    assert "+10.5 points, beyond the seed spread (2.0)" in text
    assert "R@1 is 35.5 with the global score alone and 41.0 with the local score fused in" in text
    assert "weight chosen on validation: 1, 2" in text
    assert (
        "no_windows (model.use_windows=false): R@1 39.0 (1 seed), -2.0 vs full ACSA, within the seed"
        in shown(text)
    )


@pytest.mark.parametrize(
    ("global_r1s", "head"),
    [
        ((41.0, 42.0), "Local alignment does not beat global-only alignment."),
        ((39.5, 40.0), "Local alignment does not beat global-only alignment beyond noise."),
    ],
)
def test_findings_say_when_local_alignment_does_not_beat_global_only(study, global_r1s, head):
    write_metrics(study / "eval" / "global_only", global_r1s[0], local=False)
    write_metrics(study / "eval" / "global_only_seed1", global_r1s[1], local=False)
    variants = tables.declared_variants(study / "params.yaml")
    results, _ = tables.load_results(variants, study / "eval")
    assert f"**{head}**" in "\n".join(tables.findings(results, variants))


def test_findings_without_repeated_seeds_or_baseline(study):
    variants = tables.declared_variants(study / "params.yaml", ["main", "no_windows"])
    results, _ = tables.load_results(variants, study / "eval")
    text = "\n".join(tables.findings(results, variants))
    assert "cannot be compared with seed noise" in text
    assert "No global-only variant" in text
    assert "no repeated seeds to compare it with" in text


def test_curves(study):
    variants = tables.declared_variants(study / "params.yaml")
    curves = tables.load_fusion_curves(variants, study / "eval")
    assert set(curves["variant"]) == {"main", "full_seed1", "no_windows"}  # global-only: no local branch
    chosen = curves[curves["chosen"]].set_index("variant")["weight"]
    assert chosen["main"] == 1.0 and chosen["full_seed1"] == 2.0
    live = study / "live" / "main" / "plots" / "metrics" / "train"
    live.mkdir(parents=True)
    (live / "loss.tsv").write_text("step\tloss\n0\t3.5\n1\t2.5\n")
    training = tables.load_training_curves(variants, study / "live", ("train/loss", "val/selection_R1"))
    assert training.to_dict("list") == {
        "variant": ["main", "main"],
        "metric": ["train/loss"] * 2,
        "step": [0, 1],
        "value": [3.5, 2.5],
    }
    figures.setup()
    for fig in (
        figures.metric_bars(tables.load_results(variants, study / "eval")[0]),
        figures.score_kinds(tables.load_results(variants, study / "eval")[0]),
        figures.fusion_curves(curves),
        figures.training_curves(training),
    ):
        assert fig.axes
        matplotlib.pyplot.close(fig)


def test_token_layout_follows_the_encoder_stripes_and_window_grid():
    names = ["mean", "head", "upper", "lower", "feet", "window_r0c0", "window_r1c0"]
    layout = token_layout(names, "stripes", (2, 1))
    assert layout[0] == {"name": "mean", "kind": "pooled", "box": None}
    assert [(t["box"]["top"], t["box"]["bottom"]) for t in layout[1:5]] == list(STRIPE_BANDS)
    assert layout[6]["box"] == {"top": 0.5, "bottom": 1.0, "left": 0.0, "right": 1.0}
    assert token_layout(["head"], "channels", (2, 1))[0]["kind"] == "channel region"


def test_heat_places_each_token_on_its_box():
    tokens = token_layout(["mean", "head", "feet", "window_r0c0", "window_r1c0"], "stripes", (2, 1))
    values = np.array([0.9, 0.2, 0.7, 0.4, 0.1])
    regions = views._heat(tokens, values, ("region",), (10, 4))
    assert np.allclose(regions[0:2], 0.2) and np.allclose(regions[9], 0.7) and np.isnan(regions[4]).all()
    windows = views._heat(tokens, values, ("window",), (10, 4))
    assert np.allclose(windows[:5], 0.4) and np.allclose(windows[5:], 0.1)


def test_pick_cases_successes_spread_failures_worst_first():
    ranks = [1, 3, 1, 9, 1, 1, 9, 2]
    queries = [{"query": q, "rank": r, "global_rank": r} for q, r in enumerate(ranks)]
    assert views.pick_cases(queries, n_success=2, n_failure=3) == [0, 5, 3, 6, 1]
    table = views.rank_table(queries)
    assert table.loc["1", "fused (%)"] == 50.0 and table.loc["6-10", "fused (%)"] == 25.0


def test_attribute_errors_count_stated_attributes_and_top1_confusions():
    def entry(pid, colour, bag, captions):
        identity = {"upper": {"colour": colour}, "carried": {"type": bag}}
        return {"id": pid, "identity": identity, "captions": captions}

    def caption(text, mentions, noise=None):
        return {"text": text, "mentions": mentions, "noise": noise}

    attributes = {
        "a.png": entry(1, "red", "backpack", [caption("a red top", {"upper.colour": "red"})]),
        "b.png": entry(
            2,
            "blue",
            "backpack",
            [
                caption(
                    "a blue top,  a backpack",
                    {"upper.colour": "blue", "carried.type": "backpack", "view": "x"},
                ),
                caption("a backpack", {"carried.type": "backpack"}, noise={"key": "k"}),
            ],
        ),
        "c.png": entry(3, "red", None, [caption("a red top", {"upper.colour": "red"})]),
    }
    split = {
        "image_paths": ["a.png", "b.png", "c.png"],
        "captions": ["a red top", "a blue top, a backpack", "a backpack", "a red top"],
        "caption_image_index": [0, 1, 1, 2],
    }
    rankings = [  # query 0 hit; 1 miss (top-1 a.png: red, backpack); 2 hit; 3 miss (top-1 a.png)
        {"first_match_rank": 1, "top": [0, 2, 1]},
        {"first_match_rank": 2, "top": [0, 1, 2]},
        {"first_match_rank": 1, "top": [1, 0, 2]},
        {"first_match_rank": 3, "top": [0, 1, 2]},
    ]
    errors = attribute_errors(split, attributes, rankings)
    assert errors["queries"] == 4 and errors["misses"] == 2 and errors["R1"] == 50.0
    assert errors["by_caption_noise"]["noisy"] == {"queries": 1, "R1": 100.0}
    by_key = {a["attribute"]: a for a in errors["attributes"]}
    colour, bag = by_key["upper.colour"], by_key["carried.type"]
    assert colour["stated"] == 3 and colour["R1_when_stated"] == pytest.approx(100 / 3)
    assert (
        colour["misses_stating"] == 2 and colour["top1_differs_when_stated"] == 50.0
    )  # red vs blue; red = red
    assert bag["stated"] == 2 and bag["misses_stating"] == 1 and bag["top1_differs_when_stated"] == 0.0
    assert bag["top1_differs"] == 50.0  # query 3 (no bag) got a backpack wearer
    text = views.attribute_findings(errors, min_misses=1)
    assert "R@1 is 50.0% over 4 test queries (2 misses)" in text and "upper.colour (50%)" in shown(text)
    figures.setup()
    matplotlib.pyplot.close(views.draw_attribute_hits(errors))
    assert list(views.attribute_table(errors).index) == ["upper.colour", "carried.type"]


def test_list_parameters_accept_papermill_text():
    assert tables.as_list(None) is None
    assert tables.as_list(["main"]) == ["main"]
    assert tables.as_list("[main, global_only]") == ["main", "global_only"]
    assert tables.as_list("3, 17") == [3, 17]


def test_no_metrics_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.json for any of main"):
        tables.load_results([tables.Variant("main")], tmp_path)


def test_chosen_cases_checks_the_query_indices():
    queries = [{"query": q, "rank": 1 + q % 3, "global_rank": 1} for q in range(6)]
    explained = views.Explained({}, queries, None, {}, None, image_root=None)
    assert views.chosen_cases(explained, "[4, 0]", 1, 1) == [4, 0]
    assert views.chosen_cases(explained, None, 1, 1) == [0, 2]
    with pytest.raises(ValueError, match=r"queries \[6\]: the test split has queries 0..5"):
        views.chosen_cases(explained, [1, 6], 1, 1)

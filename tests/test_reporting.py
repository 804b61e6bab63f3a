"""Report helpers: the ablation report's tables, computed sentences and figures against a hand-built study
folder (tests/fixtures_study.py: known numbers), and the visualisation report's attribute errors, token
layout, case picking, free-query views. Plain data in tmp folders; no model, no notebook kernel."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from conftest import REPO
from fixtures_study import FINDINGS, REFERENCE, summary, write_fake_study

matplotlib.use("Agg")

from acsa.analysis.attributes import attribute_errors  # noqa: E402
from acsa.analysis.explanations import token_layout  # noqa: E402
from acsa.errors import DataError  # noqa: E402
from acsa.model.image_encoder import STRIPE_BANDS  # noqa: E402
from acsa.reports import figures, search_views, sentences, study_figures, tables, views  # noqa: E402
from acsa.reports.notebook import as_list  # noqa: E402
from acsa.reports.study_files import load_study_data  # noqa: E402


def shown(markdown: str) -> str:
    """The text a reader sees of `markdown` (names and values in it are escaped: acsa.reports.markup)."""
    from bs4 import BeautifulSoup
    from nbconvert.filters.markdown import markdown2html

    return BeautifulSoup(markdown2html(markdown), "html.parser").get_text()


@pytest.fixture
def study(tmp_path):
    """The fake study's files; returns the loader's arguments."""
    return write_fake_study(tmp_path)


def rewrite(path, change):
    """Edit a JSON file of the fake study in place: change(value) -> new value."""
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


# ---- loading -----------------------------------------------------------------------------------------------


def test_every_run_of_the_study_is_found(study):
    data = load_study_data(**study)
    assert data.missing == []
    assert data.shown == ("full", "global_only", "global_fair", "channels")
    assert len(data.runs) == 12 and data.seeds("full") == [0, 1, 2]
    main = [r for r in data.runs if (r.configuration, r.seed) == ("full", 0)][0]
    assert main.eval_dir.name == "main" and main.live_dir.name == "main"  # the main model's run
    assert data.metrics[("channels", 2)]["fusion_weight"] == 1.0
    curve = data.curves[(data.curves["configuration"] == "full") & (data.curves["seed"] == 1)]
    assert curve["epoch"].tolist() == list(range(1, 9)) and curve["value"].iloc[-1] == 41.0


def test_configurations_parameter_picks_and_is_checked(study):
    data = load_study_data(**study, configurations="[full, global_fair]")
    assert data.shown == ("full", "global_fair")
    assert list(data.findings) == ["local_alignment_fair"]  # the only finding between shown configurations
    assert set(data.summary) == {"full", "global_fair"}
    with pytest.raises(
        ValueError, match=r"configurations: unknown \['fulll'\]; the study has full, global_only"
    ):
        load_study_data(**study, configurations=["fulll"])
    with pytest.raises(ValueError, match="metric: 'top1' is not one of R1, R5"):
        load_study_data(**study, metric="top1")


def test_missing_inputs_are_listed_and_sections_degrade(study, tmp_path):
    for name in ("findings.json", "study_summary.json", "reference_points/metrics.json"):
        (tmp_path / "reports" / name).unlink()
    (tmp_path / "reports" / "study" / "channels" / "seed-2" / "metrics.json").unlink()
    data = load_study_data(**study)
    assert data.findings is None and data.summary is None and data.reference is None
    assert any("seed-2/metrics.json (not evaluated)" in line for line in data.missing)
    assert any("findings.json (the findings stage has not run)" in line for line in data.missing)
    assert "the reference points are not computed" in sentences.reference_placement(data)
    assert sentences.findings_overview(data).startswith("No findings to show")
    assert "not available" in sentences.text_features(data)
    assert sentences.plateau(data).startswith("No plateau check")
    assert tables.results_table(data).empty and tables.findings_table(data).empty
    assert len(tables.runs_table(data)) == 11  # the 11 evaluated runs still listed
    assert "**Not found**" in sentences.missing(data)


def test_malformed_files_name_the_file_and_record(study, tmp_path):
    findings = tmp_path / "reports" / "findings.json"
    rewrite(findings, lambda raw: {**raw, "local_alignment": {"name": "local_alignment"}})
    with pytest.raises(DataError, match=r"findings.json: finding 'local_alignment' lacks a, b, metric"):
        load_study_data(**study)


def test_reference_points_on_a_public_benchmark_say_why(study, tmp_path):
    reference = tmp_path / "reports" / "reference_points" / "metrics.json"
    reference.write_text(json.dumps({"available": False, "dataset": "cuhk-pedes", "reason": "no attributes"}))
    data = load_study_data(**study)
    assert data.reference is None
    assert sentences.reference_placement(data) == (
        "No reference points to show: no reference points on the cuhk-pedes benchmark: no attributes."
    )


# ---- tables ------------------------------------------------------------------------------------------------


def test_results_are_mean_and_std_over_seeds_of_the_final_score(study):
    data = load_study_data(**study)
    table = tables.results_table(data)
    assert table.loc["full", "R@1"] == "41.0 ± 1.0" and table.loc["full", "score"] == "fused"
    assert table.loc["global_only", "mAP"] == "35.5 ± 0.5" and table.loc["global_only", "score"] == "global"
    assert table.loc["channels", "seeds"] == "0, 1, 2"
    values = tables.run_values(data)
    final_r1 = values[(values["final"]) & (values["metric"] == "R1") & (values["configuration"] == "full")]
    assert final_r1["value"].tolist() == [40.0, 41.0, 42.0]
    configurations = tables.configurations_table(data)
    assert configurations.loc["full (main)", "overrides"] == "defaults"
    assert configurations.loc["global_fair", "overrides"] == (
        "model.use_local=false, model.global_text=sentence_and_phrases"
    )
    assert configurations.loc["global_only", "findings"] == "local_alignment, fair_text_side"


def test_findings_table(study):
    table = tables.findings_table(load_study_data(**study))
    row = table.loc["local_alignment_fair"]
    assert row["a vs b"] == "full vs global_fair" and row["a − b"] == "+0.8"
    assert row["95% interval"] == "[-1.1, +2.6]" and row["seeds a / b"] == "0, 1, 2 / 0, 1, 2"
    assert list(table["verdict"]) == ["better", "no detectable difference", "better", "worse"]


def test_reference_table_and_score_kinds(study):
    data = load_study_data(**study)
    reference = tables.reference_table(data, data.reference)
    assert list(reference.index) == [
        "attribute_oracle", "coarse", "fine", "channels", "full", "global_fair", "colour_pair", "global_only",
        "random",
    ]  # fmt: skip
    assert reference.loc["coarse", "R@1"] == "71.0" and reference.loc["full", "kind"] == "model"
    kinds = tables.score_kinds_table(data, "R1")
    assert kinds.loc["full"].tolist() == ["fused", "20.0 ± 1.0", "37.0 ± 1.0", "41.0 ± 1.0"]
    assert kinds.loc["global_only", "local"] == "–"
    text = tables.text_features_table(data.reference.text_features)
    assert text.iloc[0]["colour probe: another item's colour (%)"] == "35.0"


def test_plateau_runs_and_fusion_tables(study):
    data = load_study_data(**study)
    plateau = tables.plateau_table(data)
    assert plateau.loc["full", "seed 1"] == "+2.3 rising (8 epochs)"
    assert plateau.loc["full", "seed 0"] == "+0.2 (8 epochs)"
    runs = tables.runs_table(data)
    assert runs.loc[("full", 1), "R@1"] == "20.0 / 37.0 / 41.0"
    assert runs.loc[("full", 1), "fusion weight"] == "4" and runs.loc[("full", 1), "epoch kept"] == 8
    assert (
        runs.loc[("global_only", 0), "fusion weight"] == "–" and runs.loc[("global_only", 0), "R@1"] == "30.0"
    )
    fusion = tables.fusion_curve_table(data)
    assert set(fusion["configuration"]) == {"full", "channels"}  # global-only models have no curve
    chosen = fusion[fusion["chosen"]].groupby("configuration")["weight"].unique()
    assert list(chosen["full"]) == [4.0] and list(chosen["channels"]) == [1.0]
    assert tables.kept_epochs(data)["epoch"].unique().tolist() == [8]


# ---- sentences ---------------------------------------------------------------------------------------------


def test_finding_sentences_say_better_worse_or_no_detectable_difference(study):
    data = load_study_data(**study)
    said = {name: sentences.finding(record, data.study.main) for name, record in data.findings.items()}
    assert said["local_alignment"] == (
        "**local_alignment.** `full` is better than `global_only`: R@1 41.0 vs 30.5 (3 seeds each: 0, 1, 2), "
        "a difference of +10.5 points, 95% interval [+8.1, +12.9], which excludes zero."
    )
    assert said["local_alignment_fair"].startswith(
        "**local_alignment_fair.** No detectable difference between `full` and `global_fair`: R@1 41.0 vs "
        "40.2"
    )
    assert said["local_alignment_fair"].endswith(
        "[-1.1, +2.6], which includes zero. The main configuration does not beat `global_fair`."
    )
    assert "`full` is worse than `channels`" in said["stripes_vs_channels"]
    assert "better" not in said["local_alignment_fair"] and "worse" not in said["local_alignment_fair"]
    assert sentences.findings_overview(data) == (
        "Of 4 findings, 2 *better*, 1 *worse*, 1 *no detectable difference* (a against b). The main "
        "configuration `full` is better than `global_only`; not detectably different from `global_fair`; "
        "worse than `channels`."
    )


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (0.1, 2.0, "better"),
        (-2.0, -0.1, "worse"),
        (0.0, 2.0, "no detectable difference"),
        (-1.0, 1.0, "no detectable difference"),
    ],
)
def test_the_verdict_follows_the_interval(low, high, verdict):
    assert sentences.verdict_of(low, high) == verdict


def test_a_verdict_the_interval_does_not_support_is_pointed_out():
    record = {**FINDINGS["local_alignment"], "ci_low": -0.5, "verdict": "better"}
    text = sentences.finding(record, "full")
    assert "No detectable difference between `full` and `global_only`" in text
    assert "The findings file says “better”, which its interval does not support" in text
    record = {**record, "seeds_b": [0, 1]}
    assert "(seeds 0, 1, 2 vs 0, 1)" in sentences.finding(record, "full")


def test_reference_placement_sentence(study):
    assert sentences.reference_placement(load_study_data(**study)) == (
        "On test R@1, the reference rankers range from `random` (0.7) to `attribute_oracle` (94.0). Mean "
        "final score of each configuration:\n\n"
        "- Between `colour_pair` (35.0) and `fine` (60.0): `channels` 44.3, `full` 41.0, `global_fair` "
        "40.2.\n"
        "- Between `random` (0.7) and `colour_pair` (35.0): `global_only` 30.5.\n"
        "- The main configuration `full` covers 43% of the distance from `random` to `attribute_oracle`."
    )


def test_global_branch_sentences_when_the_fair_control_closes_the_gap(study):
    data = load_study_data(**study)
    kinds = sentences.score_kinds(data)
    assert (
        "test R@1 is 20.0 with the global score alone, 37.0 with the local score alone and 41.0 fused: the "
        "local score beats the global one by 17.0 points" in kinds
    )
    assert "Validation chose fusion weights 4, 4, 4" in kinds and "in 3 of 3" in kinds
    assert "the local score beats the global one in 2 of 2" in kinds
    text = sentences.text_features(data)
    assert "same person for 20.0% of captions by the sentence vector" in text and "less well than" in text
    assert "for 40.0% of captions" in text and "another item's colour for 35.0%" in text
    fair = sentences.fair_text_side(data)
    assert "Global-only R@1 goes from 30.5 (`global_only`) to 40.2 with `global_fair`" in fair
    assert "+9.7 points, 95% interval [+7.5, +11.8]: better" in fair
    assert "**The fair control closes the gap.** `full` − `global_fair` = +0.8 points" in fair
    assert "its lead over `global_only` (+10.5) is not evidence that local alignment helps" in fair


def test_global_branch_sentence_when_full_acsa_stays_better(study, tmp_path):
    def stays_better(raw):
        raw["local_alignment_fair"].update(difference=3.0, ci_low=1.0, ci_high=5.0, verdict="better")
        return raw

    rewrite(tmp_path / "reports" / "findings.json", stays_better)
    fair = sentences.fair_text_side(load_study_data(**study))
    assert "**The fair control does not close the gap.** `full` − `global_fair` = +3.0 points" in fair
    assert "Of the 10.5-point lead of `full` over `global_only`, the fair text side closes 71%." in fair


def test_global_branch_sentence_when_there_is_no_gap_to_close(study, tmp_path):
    def no_lead(raw):
        raw["local_alignment"].update(
            difference=0.4, ci_low=-0.6, ci_high=1.4, verdict="no detectable difference"
        )
        return raw

    rewrite(tmp_path / "reports" / "findings.json", no_lead)
    fair = sentences.fair_text_side(load_study_data(**study))
    assert (
        "**No gap to close.** `full` beats neither `global_fair` (+0.8 points, 95% interval [-1.1, +2.6]: no "
        "detectable difference) nor `global_only` (+0.4 points, 95% interval [-0.6, +1.4]: no detectable "
        "difference): on R@1, no finding here says that local alignment helps."
    ) in fair


def test_signed_numbers_never_read_minus_zero():
    assert [tables.signed(x) for x in (1.25, -0.4, -0.03, 0.0)] == ["+1.2", "-0.4", "0.0", "0.0"]


def test_without_a_fair_control_the_report_says_so(study):
    data = load_study_data(**study, configurations=["full", "global_only"])
    assert sentences.fair_text_side(data).startswith(
        "No shown configuration is a global-only model with the fair"
    )


def test_plateau_sentence(study, tmp_path):
    data = load_study_data(**study)
    assert sentences.plateau(data) == (
        "11 of 12 runs flattened (each gained less than 0.5 point of validation R@1 over the last quarter of "
        "its epochs, read off a least-squares line through them). Still rising: `full` seed 1 (+2.3 over the "
        "last quarter of 8 epochs). Comparisons involving `full` may partly measure how fast a model learns."
    )

    def flattened(raw):
        for entry in raw.values():
            for run in entry["plateau"]:
                run.update(gain_last_quarter=0.1, flattened=True)
        raw["channels"]["plateau"][0].update(epochs=1, gain_last_quarter=None, flattened=False)
        return raw

    rewrite(tmp_path / "reports" / "study_summary.json", flattened)
    text = sentences.plateau(load_study_data(**study))
    assert text == (
        "All 11 runs with two epochs or more flattened: each gained less than 0.5 point of validation R@1 "
        "over the last quarter of its epochs, read off a least-squares line through them. Too few epochs to "
        "tell: `channels` seed 0."
    )
    assert (
        tables.plateau_table(load_study_data(**study)).loc["channels", "seed 0"] == "too few epochs (1 epoch)"
    )

    def one_epoch(raw):
        for entry in raw.values():
            for run in entry["plateau"]:
                run.update(epochs=1, gain_last_quarter=None, flattened=False)
        return raw

    rewrite(tmp_path / "reports" / "study_summary.json", one_epoch)
    assert sentences.plateau(load_study_data(**study)).startswith(
        "None of the 12 runs trained two epochs or more, so none can be checked for a plateau"
    )


def test_fusion_weight_sentence_flags_the_largest_candidate(study):
    assert sentences.fusion_weights(load_study_data(**study)) == (
        "Weights chosen on validation: `full` 4, 4, 4 (seeds 0, 1, 2); `channels` 1, 1, 1 (seeds 0, 1, 2). "
        "For `full` seeds 0, 1, 2 the chosen weight is the largest candidate (`evaluate.fusion_weights`): a "
        "larger one might score higher on validation."
    )


def test_method_states_the_study_settings(study):
    data = load_study_data(**study)
    text = sentences.method(data)
    assert (
        "4 configurations × seeds 0, 1, 2: 12 runs" in text
        and "the run of `full` with train.seed = 0" in text
    )
    assert "95% interval is a percentile bootstrap (10,000 resamples" in text
    assert "the seeds of a, the seeds of b and the test identities" in text
    assert shown(sentences.optional(data)).strip() == (
        "Optional configurations, not trained by dvc repro and not in this report: small_swin "
        "(image.backbone=swin_tiny_patch4_window7_224). They were cut from the default study to keep its "
        "running time (the comment above study.optional in params.yaml); moving one into "
        "study.configurations with a finding that names it adds it to this report."
    )


def test_figures_draw_from_the_study(study, tmp_path):
    data = load_study_data(**study)
    values = tables.run_values(data)
    rankers = tables.ladder(data, data.reference, "R1")
    figures.setup()
    for fig in (
        study_figures.run_bars(values),
        study_figures.reference_ladder(values, rankers[rankers["kind"] == "reference"], "R1"),
        study_figures.score_kinds(values, "R1"),
        study_figures.convergence(data.curves, tables.kept_epochs(data)),
        study_figures.fusion_curves(tables.fusion_curve_table(data)),
    ):
        assert fig.axes
        matplotlib.pyplot.close(fig)
    assert len(study_figures.convergence(data.curves, tables.kept_epochs(data)).axes) == 4


def test_the_notebook_kernel_does_not_import_torch():
    """The report helpers stay light, so a notebook kernel starts fast."""
    code = (
        "import sys\n"
        "from acsa.reports import figures, notebook, search_views, sentences, study_figures, study_files\n"
        "from acsa.reports import tables, views\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False"


def test_summary_fixture_matches_the_findings_stage_layout():
    entry = summary()["full"]
    assert set(entry) == {"seeds", "final_kind", "kinds", "plateau"}
    assert set(entry["kinds"]["fused"]["R1"]) == {"mean", "std", "runs"}
    assert set(REFERENCE["test"]) == set(REFERENCE["rankers"])


# ---- the visualisation report ------------------------------------------------------------------------------


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
    assert as_list(None) is None
    assert as_list(["main"]) == ["main"]
    assert as_list("[main, global_only]") == ["main", "global_only"]
    assert as_list("3, 17") == [3, 17]


def test_chosen_cases_checks_the_query_indices():
    queries = [{"query": q, "rank": 1 + q % 3, "global_rank": 1} for q in range(6)]
    explained = views.Explained({}, queries, None, {}, None, image_root=None)
    assert views.chosen_cases(explained, "[4, 0]", 1, 1) == [4, 0]
    assert views.chosen_cases(explained, None, 1, 1) == [0, 2]
    with pytest.raises(ValueError, match=r"queries \[6\]: the test split has queries 0..5"):
        views.chosen_cases(explained, [1, 6], 1, 1)


def free_query_case(tmp_path, local: bool):
    """An Explained: a 3-image gallery on disk and one free query whose text, phrase and path hold markup."""
    from PIL import Image

    names = ["mean", "head", "upper", "lower", "feet", "window_r0c0", "window_r1c0"]
    paths = ["a.png", "b.png", "<c>.png"]
    for path in paths:
        Image.new("RGB", (16, 32), (90, 120, 200)).save(tmp_path / path)
    gallery = {
        "image_paths": paths,
        "image_ids": [7, 8, 9],
        "image_size": [32, 16],
        "tokens": token_layout(names, "stripes", (2, 1)),
    }
    results = [
        {
            "rank": k + 1,
            "image": i,
            "path": paths[i],
            "id": 7 + i,
            "global": 0.5 - k / 10,
            "local": (0.25 if local else None),
            "fused": 0.75 - k / 10,
        }
        for k, i in enumerate([2, 0])
    ]
    record = {
        "query": 'a man & a <b>"red"</b> coat',
        "phrases": ["man", "<b>red</b> coat"],
        "results": results,
    }
    free = {
        "api": "acsa.search.api.SearchIndex.search",
        "split": "test",
        "images": 3,
        "global_search": "exact",
        "candidates": 100,
        "fusion_weight": 1.0,
        "fusion_weight_chosen_on": "val",
        "top_k": 2,
        "queries": [record],
    }
    maps = np.random.default_rng(0).random((1, 2, len(names), 10)).astype(np.float32) if local else None
    explained = views.Explained(
        gallery, [], None, {}, None, image_root=tmp_path, free_queries=free, free_attention=maps
    )
    return explained, free, record, maps


@pytest.mark.parametrize("local", [True, False])
def test_free_query_views_escape_the_data_and_draw_each_result(tmp_path, local):
    explained, free, record, maps = free_query_case(tmp_path, local)
    page = search_views.setup_html(free) + search_views.query_html(record, 0)
    assert "Query 1: “a man &amp; a &lt;b&gt;&quot;red&quot;&lt;/b&gt; coat”" in page
    assert "<code>&lt;b&gt;red&lt;/b&gt; coat</code>" in page and "<code>&lt;c&gt;.png</code>" in page
    assert "<b>" not in page and "<c>" not in page
    assert "fused = global + 1 × local (the weight chosen on validation by training)" in page
    assert ("<td>0.250</td>" in page) == local and ("<td>—</td>" in page) != local
    fig = search_views.draw_results(explained, record, None if maps is None else maps[0])
    # a row per result: the image, then per phrase its region stripes and window cells (no maps: the image)
    assert len(fig.axes) == 2 * (1 + (2 * 2 if local else 0)) + (1 if local else 0)  # + the colour bar
    assert fig.axes[0].get_ylabel() == "#1 id 9"
    matplotlib.pyplot.close(fig)

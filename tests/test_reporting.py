"""Report helpers: the ablation report's tables, computed sentences and figures against a hand-built study
folder (tests/fixtures_study.py: known numbers, in the formats the pipeline writes), and the visualisation
report's attribute errors, token layout, case picking, free-query views. Plain data in tmp folders; no model,
no notebook kernel."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from conftest import REPO
from fixtures_study import REFERENCE, findings, summary, write_fake_study

matplotlib.use("Agg")

from acsa.analysis.attributes import attribute_errors  # noqa: E402
from acsa.analysis.explanations import token_layout  # noqa: E402
from acsa.analysis.intervals import verdict  # noqa: E402
from acsa.errors import DataError  # noqa: E402
from acsa.model.image_encoder import STRIPE_BANDS  # noqa: E402
from acsa.reports import (  # noqa: E402
    claims,
    diagnostics,
    figures,
    search_views,
    sentences,
    study_figures,
    tables,
    training_checks,
    views,
)
from acsa.reports.notebook import as_list  # noqa: E402
from acsa.reports.numbers import signed  # noqa: E402
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


def test_every_input_of_the_study_is_read(study):
    data = load_study_data(**study)
    assert data.missing == []
    assert data.shown == (
        "full", "region_phrase", "image_phrase", "reverse", "global_only", "global_fair", "global_twin",
    )  # fmt: skip
    assert len(data.runs) == 21 and data.seeds("full") == [0, 1, 2]
    assert [r["configuration"] for r in data.runs[:4]] == ["full"] * 3 + ["region_phrase"]
    assert data.final_kind("global_twin") == "fused" and data.final_kind("global_only") == "global"
    assert data.settings["global_only"].train.lr == 0.004 and data.settings["full"].train.lr == 0.002
    assert data.family == 16 and data.subsets == {"all": 400, "fine_evidence": 40} and data.margin == 2.0
    assert data.query_counts["coarse_solved"] == 340 and len(data.longer_runs) == 6
    assert data.sweep is not None and data.end_to_end["seeds"] == [0, 1]


def test_configurations_parameter_picks_and_is_checked(study):
    data = load_study_data(**study, configurations="[full, global_fair]")
    assert data.shown == ("full", "global_fair")
    assert list(data.findings) == ["local_vs_global_fair", "local_score_alone"]  # between shown ones only
    assert set(data.summary) == {"full", "global_fair"} and len(data.runs) == 6
    assert data.family == 16  # the Holm family is the whole file's
    with pytest.raises(ValueError, match=r"configurations: unknown \['fulll'\]; the study has full, region"):
        load_study_data(**study, configurations=["fulll"])
    with pytest.raises(ValueError, match="metric: 'top1' is not one of R1, R5"):
        load_study_data(**study, metric="top1")


def test_missing_inputs_are_listed_and_every_section_says_so(study, tmp_path):
    for name in ("findings.json", "study_summary.json", "probes.json", "convergence.json", "study/runs.json"):
        (tmp_path / "reports" / name).unlink()
    (tmp_path / "reports" / "reference_points" / "metrics.json").unlink()
    data = load_study_data(**{**study, "sweep_file": None, "end_to_end_file": tmp_path / "absent.json"})
    assert data.findings is None and data.summary is None and data.runs == [] and data.probes is None
    assert any("findings.json (the findings stage has not run)" in line for line in data.missing)
    assert any("runs.json (the evaluate_study stage has not run)" in line for line in data.missing)
    assert any("the probes were not computed" in line for line in data.missing)
    assert claims.claims_said(data).startswith("No claim can be judged")
    assert claims.claims_table(data).empty and tables.results_table(data).empty
    assert "the reference points are not computed" in sentences.reference_placement(data)
    assert diagnostics.probe_reading(data).startswith("No probes to show")
    assert diagnostics.fine_evidence(data).startswith("No configuration has a result on the fine-evidence")
    assert training_checks.convergence(data).startswith("The convergence check was not run")
    assert training_checks.plateau(data).startswith("No plateau check")
    assert training_checks.sweep(data).startswith("The learning-rate sweep was not run here: `dvc repro")
    assert "`dvc repro optional/dvc.yaml` trains `full`, `region_phrase`, `global_only` end to end" in (
        training_checks.end_to_end(data)
    )
    assert sentences.local_alone(data).startswith("No shown finding compares a local score alone")
    assert "**Not found**" in sentences.missing(data)
    assert tables.configurations_table(data).loc["full (main)", "trainable parameters"] == "–"
    figures.setup()
    for fig in (
        study_figures.validation_curves(tables.validation_curves(data)),
        study_figures.fusion_curves(tables.fusion_curve_table(data)),
        study_figures.sweep_lines({}, {}),
    ):
        matplotlib.pyplot.close(fig)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("findings.json", lambda raw: {**raw, "local_vs_global_only": {"a": "full"}}, r"lacks b, a_score"),
        (
            "findings.json",
            lambda raw: (
                raw | {"fair_text_side": {**raw["fair_text_side"], "subsets": {"all": {"queries": 4}}}}
            ),
            r"finding 'fair_text_side' on 'all' lacks mean_a",
        ),
        ("study_summary.json", lambda raw: {"subsets": {}}, r"the summary lacks configurations"),
        ("study/runs.json", lambda raw: {"runs": raw}, r"expected a list of run records"),
        ("study/runs.json", lambda raw: [{"configuration": "full"}], r"record 0 lacks seed, best_epoch"),
        ("probes.json", lambda raw: {"backbone": {}}, r"the probes lacks configurations"),
    ],
)
def test_malformed_files_name_the_file_and_record(study, tmp_path, name, change, message):
    rewrite(tmp_path / "reports" / name, change)
    with pytest.raises(DataError, match=re.escape(name) + ".*" + message):
        load_study_data(**study)


def test_probes_and_reference_points_on_a_public_benchmark_say_why(study, tmp_path):
    reference = tmp_path / "reports" / "reference_points" / "metrics.json"
    reference.write_text(json.dumps({"available": False, "dataset": "cuhk-pedes", "reason": "no attributes"}))
    (tmp_path / "reports" / "probes.json").write_text(
        json.dumps({"available": False, "reason": "no records"})
    )
    data = load_study_data(**study)
    assert data.reference is None and data.probes is None
    assert shown(sentences.reference_placement(data)).strip() == (
        "No reference points to show: no reference points on the cuhk-pedes benchmark: no attributes."
    )
    assert shown(diagnostics.probe_reading(data)).strip() == "No probes to show: no probes: no records."


# ---- 1. what produced the findings -------------------------------------------------------------------------


def test_protocol_runs_intervals_and_subsets_are_stated_from_the_files(study):
    data = load_study_data(**study)
    protocol = shown(sentences.protocol(data))
    assert protocol.startswith(
        "Protocol: two-stage. The image backbone mobilenetv2_100, ImageNet-pretrained "
        "(image.pretrained_path = imagenet-mobilenet_v2) is frozen (image.frozen): its multi-scale outputs"
    )
    assert "trains only its heads and alignment" in protocol
    assert protocol.strip().endswith(
        "for train.epochs = 8 epochs with train.threads = 1 per run, as every run recorded."
    )
    assert shown(sentences.seeds_and_runs(data)).startswith(
        "Runs. 7 configurations × seeds 0, 1, 2: 21 runs in the study's record."
    )
    intervals = shown(sentences.intervals(data))
    assert "t interval" in intervals and "seeds are the unit of replication" in intervals
    assert "8 shown findings; 16 intervals in the findings file" in intervals and "Holm-adjusted" in intervals
    assert "equivalent when it lies within ±2 R@1 points" in intervals
    assert shown(sentences.query_subsets(data)).strip() == (
        "Query subsets. All 400 test queries, and the 40 that need fine evidence: the coarse reader (gender, "
        "garment types and colours) ranks a match first less than half of the time, the attribute oracle "
        "(every stated attribute) at least half of the time (reference_points stage). Of the others, the "
        "coarse reader already solves 340 and neither reader solves 20."
    )


def test_an_end_to_end_protocol_and_mixed_threads_are_said(study, tmp_path):
    rewrite(
        tmp_path / "reports" / "study" / "runs.json",
        lambda raw: [{**r, "threads": 2} for r in raw[:3]] + raw[3:],
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        params.read_text().replace(
            "image: {}", "image: {frozen: false, init: scratch, pretrained_path: null}"
        )
    )
    text = shown(sentences.protocol(load_study_data(**study)))
    assert text.startswith("Protocol: end to end. The image backbone mobilenetv2_100, trained from scratch")
    assert "the runs recorded 1, 2 threads: the thread count changes results" in text


# ---- 2. the claims -----------------------------------------------------------------------------------------


def test_the_claims_table_groups_the_findings_by_claim_on_both_subsets(study):
    table = claims.claims_table(load_study_data(**study))
    assert list(dict.fromkeys(table.index.get_level_values("claim"))) == [
        "cross-scale", "asymmetric", "local alignment", "supporting (no claim)",
    ]  # fmt: skip
    row = table.loc[("asymmetric", "full vs reverse", "all (400)")]
    assert row["a − b"] == "+0.2" and row["95% interval"] == "[-0.8, +1.1]"
    assert row["Holm-adjusted interval"] == "[-1.0, +1.4]" and row["verdict"] == "equivalent (±2)"
    fine = table.loc[("local alignment", "full (local score) vs global_fair", "fine evidence (40)")]
    assert fine["mean a"] == "30.0" and fine["mean b"] == "25.0" and fine["verdict"] == "inconclusive"
    assert table.loc[("cross-scale", "full vs region_phrase", "all (400)"), "p (Holm)"] == "0.040"
    assert len(table) == 16


def test_claim_sentences_follow_the_verdicts(study):
    said = claims.claims_said(load_study_data(**study)).split("\n\n")
    assert (
        said[0] == "Cross\\-scale: **holds here on all queries only.** On the fine-evidence queries it is "
        "inconclusive."
    )
    assert said[1].startswith(
        "- All queries: `full` is better than `region_phrase` (+5.3 points, Holm-adjusted interval "
        "[+2.3, +8.3]); `full` is better than `image_phrase`"
    )
    assert (
        "`full` against `image_phrase` is inconclusive (+2.5 points, Holm-adjusted interval [-5.5, +10.5], "
        "which includes zero and reaches beyond ±2)." in said[1]
    )
    assert (
        said[2]
        == "Asymmetric: **does not hold here on all queries.** It holds only on the fine-evidence queries."
    )
    assert "`full` and `reverse` are equivalent within ±2 points (+0.2 points" in said[3]
    assert said[4] == (
        "Local alignment: **is inconclusive here, on all queries and on the fine-evidence queries alike.**"
    )
    assert "`full (local score)` against `global_fair` is inconclusive (-3.2 points" in said[5]
    assert said[6] == "**Supporting: `fair_text_side`** (tests no claim)."
    assert said[7].startswith("- All queries: `global_fair` is better than `global_only` (+13.5 points")


VERDICTS = {
    "better": (1.0, 5.0),
    "worse": (-5.0, -1.0),
    "equivalent": (-1.0, 1.5),
    "inconclusive": (-1.0, 4.0),
}


def fake_data(verdicts: list[tuple[str, str]], margin: float = 2.0):
    """StudyData-like: one claim `c` whose controls have these (all, fine_evidence) verdicts, consistent with
    their adjusted intervals."""
    records = {}
    for i, pair in enumerate(verdicts):
        subsets = {}
        for subset, said in zip(("all", "fine_evidence"), pair, strict=True):
            low, high = VERDICTS[said]
            subsets[subset] = {
                "queries": 10, "mean_a": 50.0, "mean_b": 48.0, "difference": (low + high) / 2,
                "ci_low": low / 2, "ci_high": high / 2, "p_holm": 0.5, "adjusted_low": low,
                "adjusted_high": high, "verdict": said,
            }  # fmt: skip
        records[f"f{i}"] = {"name": f"f{i}", "claim": "c", "a": "full", "b": f"b{i}", "a_score": "fused",
                            "b_score": "fused", "subsets": subsets}  # fmt: skip

    class Data:
        findings, summary, runs, end_to_end = records, None, [], None

        @staticmethod
        def final_kind(name):
            return None

    Data.margin = margin
    return Data()


@pytest.mark.parametrize("pair", list(itertools.product(VERDICTS, repeat=2)))
def test_no_sentence_is_stronger_than_its_verdict(pair):
    """A control's words follow its verdict on each subset: "better" only for better, "worse" only for worse,
    "equivalent within ±m" only for equivalent, and otherwise "inconclusive"."""
    data = fake_data([pair])
    record = data.findings["f0"]
    for subset, said in zip(("all", "fine_evidence"), pair, strict=True):
        assert (
            verdict(
                record["subsets"][subset]["adjusted_low"], record["subsets"][subset]["adjusted_high"], 2.0
            )
            == said
        )
        text = claims.compared(data, record, subset)
        for word in VERDICTS:
            assert (word in text) == (word == said), (said, text)
        assert ("equivalent within ±2 points" in text) == (said == "equivalent")


@pytest.mark.parametrize(
    ("controls", "head"),
    [
        (
            [("better", "better"), ("better", "better")],
            "C: **holds here, on all queries and on the fine-evidence",
        ),
        ([("better", "inconclusive"), ("better", "better")], "C: **holds here on all queries only.**"),
        (
            [("better", "better"), ("inconclusive", "better")],
            "C: **is inconclusive here on all queries.** It holds only on the fine-evidence queries.",
        ),
        (
            [("better", "inconclusive"), ("equivalent", "inconclusive")],
            "C: **does not hold here on all queries.** On the fine-evidence queries it is inconclusive.",
        ),
        (
            [("worse", "better"), ("better", "better")],
            "C: **does not hold here on all queries.** It holds only on the fine-evidence queries.",
        ),
        (
            [("inconclusive", "inconclusive")],
            "C: **is inconclusive here, on all queries and on the fine-evidence",
        ),
    ],
)
def test_a_claim_holds_only_when_every_control_is_better(controls, head):
    assert claims.claims_said(fake_data(controls)).startswith(head)


def test_a_claim_says_where_the_end_to_end_confirmation_differs():
    """A control whose end-to-end verdict differs is said with its own numbers under the claim, so that a
    claim that holds in the two-stage study is not read as holding end to end; absent, nothing is said."""
    data = fake_data([("better", "better"), ("better", "better")])
    assert "End to end" not in claims.claims_said(data)
    confirmed = fake_data([("better", "better"), ("inconclusive", "inconclusive")]).findings
    data.end_to_end = {"seeds": [0, 1, 2], "findings": confirmed}
    text = claims.claims_said(data)
    assert text.startswith("C: **holds here")
    assert (
        "- End to end (the confirmation, 3 seeds, all queries): 1 of 2 controls it trained reach the same "
        "verdict; differently: `full` against `b1` is inconclusive (" in text
    )
    data.end_to_end = {"seeds": [0, 1, 2], "findings": {}}
    assert "- End to end: the confirmation did not train this claim's controls." in claims.claims_said(data)


def test_inconclusive_findings_never_read_better_or_holds():
    text = claims.claims_said(fake_data([("inconclusive", "inconclusive")] * 3))
    assert "better" not in text and "holds" not in text and "hold" not in text.replace("holds", "")
    assert "equivalent" not in text and "worse" not in text
    assert text.count("is inconclusive (") == 6


def test_a_verdict_its_interval_does_not_support_reads_inconclusive():
    data = fake_data([("inconclusive", "inconclusive")])
    data.findings["f0"]["subsets"]["all"]["verdict"] = "better"  # a stale or hand-edited file
    text = claims.claims_said(data)
    assert "better" not in text and "holds" not in text
    assert "the findings file's verdict disagrees with its adjusted interval" in text
    assert claims.verdict_cell(data.findings["f0"]["subsets"]["all"], 2.0) == (
        "inconclusive (the file's verdict disagrees: better)"
    )
    data = fake_data([("equivalent", "equivalent")], margin=0.5)  # read with a narrower margin
    assert "equivalent" not in claims.compared(data, data.findings["f0"], "all")


def test_a_claim_no_shown_finding_tests_is_named(study):
    data = load_study_data(**study, configurations="[full, reverse]")
    assert claims.claims_said(data).endswith(
        "Not tested by any shown finding: cross\\-scale, local alignment."
    )


# ---- 3. configurations, 4. the second score ----------------------------------------------------------------


def test_configurations_results_and_capacity(study):
    data = load_study_data(**study)
    table = tables.configurations_table(data)
    assert table.loc["global_only", "overrides"] == "model.use_local=false, train.lr=0.004"
    assert table.loc["global_only", "learning rate"] == "0.004" and table.loc["full (main)", "epochs"] == 8
    assert table.loc["full (main)", "trainable parameters"] == "900,000"
    assert table.loc["global_twin", "second score"] == "second global branch"
    assert table.loc["global_fair", "findings"] == "local_vs_global_fair, local_score_alone, fair_text_side"
    results = tables.results_table(data)
    assert results.loc["full", "R@1"] == "61.0 ± 1.0" and results.loc["global_only", "score"] == "global"
    assert results.loc["global_only", "mAP"] == "50.7 ± 0.6"
    assert sentences.capacity(data) == (
        "Trainable parameters beside the main configuration `full` (900,000): the same in `region_phrase`, "
        "`reverse`; fewer in `image_phrase` (550,000), `global_only` (190,000), `global_fair` (350,000), "
        "`global_twin` (700,000). A difference against a control with fewer parameters may come from "
        "capacity as well as method."
    )
    values = tables.run_values(data)
    final = values[(values["final"]) & (values["metric"] == "R1") & (values["configuration"] == "full")]
    assert final["value"].tolist() == [60.0, 61.0, 62.0]


def test_the_local_score_alone_and_the_score_kinds(study):
    data = load_study_data(**study)
    alone = sentences.local_alone(data)
    assert alone.startswith(
        "**The local score alone.**\n\n- All queries: `full (local score)` against `global_fair` is "
        "inconclusive (-3.2 points"
    )
    kinds = tables.score_kinds_table(data, "R1")
    assert kinds.loc["full"].tolist() == [
        "fused",
        "local alignment",
        "51.0 ± 1.0",
        "56.0 ± 1.0",
        "61.0 ± 1.0",
    ]
    assert kinds.loc["global_only", "local"] == "–"
    text = sentences.score_kinds(data)
    assert "51.0 with the global score alone, 56.0 with the local score alone and 61.0 fused" in text
    assert "Validation chose fusion weights 4, 4, 4" in text and "in 3 of 3" in text
    assert "the local score beats the global one in 3 of 4" in text  # global_twin's second score is global
    text = diagnostics.text_features(data)
    assert "same person for 20.0% of captions by the sentence vector" in text and "less well than" in text


# ---- 5. fine evidence, 6. probes ---------------------------------------------------------------------------


def test_fine_evidence_from_the_findings_records(study):
    data = load_study_data(**study)
    table = diagnostics.subset_table(data)
    assert table.loc[("full", "fused (final)")].tolist() == ["61.0", "40.0", "-21.0"]
    assert table.loc[("full", "local")].tolist() == ["56.0", "30.0", "-26.0"]
    assert len(table) == 8
    assert diagnostics.fine_evidence(data).startswith(
        "On the fine-evidence queries the configurations' final scores reach R@1 20.0 (`global_only`) to "
        "40.0 (`full`); 7 of 7 score lower there than on all queries. With 40 fine-evidence queries, one "
        "query moves a configuration's R@1 there by 2.5 points"
    )


def test_probes_say_where_the_encoder_and_where_the_alignment_limits(study):
    data = load_study_data(**study)
    table = diagnostics.probe_table(data)
    assert table.loc[("coarse", "head.gender")].tolist()[:3] == ["50.0", "90.0", "90.0 / 90.0"]
    assert table.loc[("fine", "carried.type"), "global_only"] == "42.0 / 42.0"
    margins = diagnostics.probe_margins(data)
    assert margins.loc["backbone (frozen)", "head.hat"] == 5.0 and margins.shape == (15, 4)
    text = diagnostics.probe_reading(data)
    assert "scored on 100 validation images per attribute" in text
    assert "The frozen backbone's features carry 3 of 4 probed attributes: head.gender (90.0 vs 50.0)" in text
    assert (
        "They do not carry head.hat (55.0 vs 50.0): for this the image encoder limits every configuration"
        in text
    )
    assert "neither the global embedding nor the tokens carry: `global_only` carried.type" in text
    assert (
        "below that on all queries for 7 of 7 configurations while the backbone carries 1 fine attribute"
        in text
    )
    assert "points to the heads and alignment rather than the encoder" in text


def test_probes_name_no_limit_when_fine_evidence_retrieval_holds_up(study, tmp_path):
    def level(raw):
        for record in raw.values():
            fine = record["subsets"]["fine_evidence"]
            fine.update(mean_a=99.0, mean_b=99.0)
        return raw

    rewrite(tmp_path / "reports" / "findings.json", level)
    text = diagnostics.probe_reading(load_study_data(**study))
    assert text.endswith("for 0 of 7 configurations, so those queries show no limit of either kind here.")


# ---- 7. convergence, 8. sweep, 9. end to end ---------------------------------------------------------------


def test_convergence_check_and_plateau(study, tmp_path):
    data = load_study_data(**study)
    text = training_checks.convergence(data)
    assert "a plateau that the schedule alone produced would show as a gain here" in text
    assert (
        "- `full` (8 → 12 epochs): the best validation R@1 changes by +0.3 points on average over 3 seeds "
        "(95% interval [-0.5, +1.0]) — flat: a longer budget changes validation R@1 by less than the margin."
    ) in text
    assert "- `global_twin` (8 → 12 epochs): the best validation R@1 changes by +3.0 points" in text
    table = training_checks.convergence_table(data)
    row = ["0, 1, 2", "8 → 12", "59.0", "62.0", "+3.0", "[+1.2, +4.8]", "better"]
    assert table.loc["global_twin"].tolist() == row
    assert training_checks.plateau(data).startswith(
        "20 of 21 runs flattened (each gained less than 0.5 point of validation R@1 over the last quarter of "
        "its epochs, read off a least-squares line through them). Still rising: `full` seed 1 (+2.3 over 8 "
        "epochs). A learning rate that has decayed"
    )
    assert tables.plateau_table(data).loc["full", "seed 1"] == "+2.3 rising (8 epochs)"
    curves = tables.validation_curves(data)
    assert set(curves["budget"]) == {"study", "longer"} and curves["chosen"].sum() == 21
    assert curves[(curves["budget"] == "longer")]["epoch"].max() == 12

    def stale(raw):
        raw["convergence"]["configurations"]["global_twin"]["ci_low"] = -1.0  # the verdict says better
        return raw

    rewrite(tmp_path / "reports" / "study_summary.json", stale)
    text = training_checks.convergence(load_study_data(**study))
    assert "inconclusive: the seeds disagree too much to tell (the file's verdict disagrees" in text
    assert "still rising" not in text


def test_the_sweep_against_the_learning_rates_params_yaml_trains_with(study):
    data = load_study_data(**study)
    table = training_checks.sweep_table(data)
    assert table.loc["global_only"].tolist() == ["47.0", "45.0", "44.0", "0.001", "0.004"]
    assert table.loc["full", "best on validation"] == table.loc["full", "params.yaml"] == "0.002"
    text = training_checks.sweep(data)
    assert "params.yaml's `train.lr` is the grid's best on validation for `full`, `region_phrase`" in text
    assert "It is not for: `global_only` trains at 0.004 (44.0) while 0.001 scored 47.0." in text
    assert text.endswith(
        "The main configuration `full` at its learning rate, by budget: 6 epochs 59.5, 8 epochs "
        "(train.epochs) 61.0, 12 epochs 61.2."
    )
    assert training_checks.budget_results(data) == {6: 59.5, 8: 61.0, 12: 61.2}


def test_the_end_to_end_confirmation(study):
    data = load_study_data(**study)
    text = shown(training_checks.end_to_end(data))
    assert (
        "The two protocols rank them in different orders by mean final R@1 (two-stage: full > region_phrase "
        "> global_only; end to end: full > global_only > region_phrase): Kendall's tau = 0.33" in text
    )
    assert "the two protocols point the same way on 2 and reach the same verdict on 1 (all queries)" in text
    agreement = training_checks.agreement_table(data)
    row = ["+5.3", "better", "+10.0", "inconclusive", "yes", "no"]
    assert agreement.loc["cross_scale_vs_region"].tolist() == row
    ranking = training_checks.ranking_table(data)
    assert ranking.loc["global_only"].tolist() == ["45.7", 3, "42.0", 2]


def test_optional_pipeline_absent_says_how_to_run_it(tmp_path):
    data = load_study_data(**write_fake_study(tmp_path, optional=False))
    assert data.sweep is None and data.end_to_end is None and data.missing == []
    assert "`dvc repro optional/dvc.yaml:sweep` trains every configuration" in training_checks.sweep(data)
    assert training_checks.sweep_table(data).empty and training_checks.agreement_table(data).empty
    assert shown(training_checks.end_to_end(data)).startswith(
        f"The end-to-end confirmation was not run here ({tmp_path / 'reports/end_to_end/findings.json'} not "
        "found)."
    )


# ---- 10. reference rankers, fusion weights, every run ------------------------------------------------------


def test_reference_placement_and_table(study):
    data = load_study_data(**study)
    assert sentences.reference_placement(data) == (
        "On test R@1, the reference rankers range from `random` (0.7) to `attribute_oracle` (94.0). Mean "
        "final score of each configuration:\n\n"
        "- Between `coarse` (58.5) and `attribute_oracle` (94.0): `full` 61.0, `reverse` 60.8, `global_twin` "
        "60.0, `global_fair` 59.2.\n"
        "- Between `colour_pair` (35.0) and `coarse` (58.5): `image_phrase` 57.7, `region_phrase` 55.7, "
        "`global_only` 45.7.\n"
        "- The main configuration `full` covers 65% of the distance from `random` to `attribute_oracle`."
    )
    reference = tables.reference_table(data, data.reference)
    assert list(reference.index[:3]) == ["attribute_oracle", "full", "reverse"]
    assert reference.loc["coarse", "R@1"] == "58.5" and reference.loc["full", "kind"] == "model"


def test_fusion_weights_and_every_run(study):
    data = load_study_data(**study)
    assert sentences.fusion_weights(data).endswith(
        "For `full` seeds 0, 1, 2 the chosen weight is the largest candidate (`evaluate.fusion_weights`): a "
        "larger one might score higher on validation."
    )
    fusion = tables.fusion_curve_table(data)
    assert "global_only" not in set(fusion["configuration"])  # one score: every weight ranks alike
    assert fusion[fusion["chosen"]].groupby("configuration")["weight"].first().to_dict()["full"] == 4.0
    runs = tables.runs_table(data)
    assert runs.loc[("full", 1), "R@1"] == "51.0 / 56.0 / 61.0" and runs.loc[("full", 1), "epoch kept"] == 8
    assert (
        runs.loc[("global_only", 0), "fusion weight"] == "–" and runs.loc[("global_only", 0), "threads"] == 1
    )


def test_signed_numbers_never_read_minus_zero():
    assert [signed(x) for x in (1.25, -0.4, -0.03, 0.0)] == ["+1.2", "-0.4", "0.0", "0.0"]


def test_figures_draw_from_the_study(study):
    data = load_study_data(**study)
    values = tables.run_values(data)
    rankers = tables.ladder(data, data.reference, "R1")
    figures.setup()
    drawn = [
        study_figures.run_bars(values),
        study_figures.reference_ladder(values, rankers[rankers["kind"] == "reference"], "R1"),
        study_figures.score_kinds(values, "R1"),
        study_figures.subset_dots(diagnostics.subset_means(data), "R1"),
        study_figures.probe_margins(diagnostics.probe_margins(data)),
        study_figures.validation_curves(tables.validation_curves(data)),
        study_figures.sweep_lines(training_checks.grid_results(data), {"full": 0.002}),
        study_figures.fusion_curves(tables.fusion_curve_table(data)),
    ]
    assert all(fig.axes for fig in drawn)
    assert len(drawn[5].axes) == 8  # a panel per configuration (7) and one left blank
    for fig in drawn:
        matplotlib.pyplot.close(fig)


def test_the_notebook_kernel_does_not_import_torch():
    """The report helpers stay light, so a notebook kernel starts fast."""
    code = (
        "import sys\n"
        "from acsa.reports import claims, diagnostics, figures, notebook, numbers, search_views, sentences\n"
        "from acsa.reports import study_figures, study_files, tables, training_checks, views\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False"


def test_the_fixture_matches_what_the_findings_stage_writes():
    """The fake files hold the keys acsa.analysis.findings writes (run on a tiny study of known runs), and
    their verdicts agree with their intervals."""
    from acsa.analysis.findings import study_findings, summarise
    from acsa.analysis.study_runs import Run
    from acsa.config.study import METRICS, study_from_dict

    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(4), 3)

    def run(name, seed):
        kinds = ("global", "local", "fused") if name == "full" else ("global",)
        per_query = {k: {m: rng.integers(0, 2, len(ids)) * 100.0 for m in METRICS} for k in kinds}
        return Run(name, seed, ids, per_query, (1.0, 2.0), {}, {"trainable_parameters": 10})

    raw = {"configurations": {"full": {}, "global_only": {}}, "seeds": [0, 1]}
    raw["findings"] = {"x": {"a": "full", "b": "global_only", "claim": "local alignment"}}
    runs = {name: [run(name, s) for s in (0, 1)] for name in ("full", "global_only")}
    written = study_findings(study_from_dict(raw), runs, {"fine_evidence": ids < 2})["x"]
    fake = findings()["local_vs_global_only"]
    assert set(fake) == set(written)
    assert set(fake["subsets"]) == set(written["subsets"])
    assert set(fake["subsets"]["all"]) == set(written["subsets"]["all"])
    assert set(summary()["configurations"]["full"]) == set(summarise(runs["full"]))
    for record in findings().values():
        for result in record["subsets"].values():
            assert verdict(result["adjusted_low"], result["adjusted_high"], 2.0) == result["verdict"]
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

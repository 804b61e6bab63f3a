"""The written parts of the ablation report, computed from the study's files (acsa.reports.study_files): which
protocol produced the findings and how their intervals are computed, what the configurations train, the
local score alone beside the global-only control, what the frozen text features carry, where the models sit
among the reference rankers and which fusion weights validation chose. The claims' sentences are in
acsa.reports.claims, the diagnostics' in acsa.reports.diagnostics, the training checks' in
acsa.reports.training_checks. Every function returns Markdown; values from files are escaped
(acsa.reports.markup). No torch import.
"""

from __future__ import annotations

from typing import Any

from acsa import paths
from acsa.reports.claims import by_subset
from acsa.reports.markup import markdown_code, markdown_text
from acsa.reports.numbers import count, describe, number, plural, seed_list
from acsa.reports.study_files import ALL, FINE, METRIC_NAMES, StudyData
from acsa.reports.tables import ladder, trainable_parameters


def missing(data: StudyData) -> str:
    if not data.missing:
        return ""
    lines = "\n".join(f"- {markdown_text(line)}" for line in data.missing)
    return f"**Not found** (left out of the sections below):\n\n{lines}"


# ---- 1. what produced the findings -------------------------------------------------------------------------


def _backbone(data: StudyData) -> str:
    image = data.params.image
    name = markdown_code(image.backbone)
    if image.init != "pretrained":
        return f"{name}, trained from scratch (`image.init` = {markdown_text(image.init)})"
    weights = markdown_code(image.pretrained_path or "the library's default")
    imagenet = "ImageNet-pretrained" if image.pretrained_path == paths.IMAGENET_MOBILENET_V2 else "pretrained"
    return f"{name}, {imagenet} (`image.pretrained_path` = {weights})"


def _threads(data: StudyData) -> str:
    """What the runs recorded against train.threads: the thread count changes results, so it is fixed."""
    threads = data.params.train.threads
    recorded = sorted({run.get("threads") for run in data.runs}, key=str)
    if not recorded:
        return f"`train.threads` = {threads} per run"
    if recorded == [threads]:
        return f"`train.threads` = {threads} per run, as every run recorded"
    listed = ", ".join(str(t) for t in recorded)
    return (
        f"`train.threads` = {threads} per run, though the runs recorded {listed} threads: the thread count "
        "changes results, so runs with another one are not trained alike"
    )


def protocol(data: StudyData) -> str:
    """Which protocol produced the findings, from params.yaml's image and train sections."""
    image, train, text = data.params.image, data.params.train, data.params.text
    size = f"{image.height} × {image.width} pixels"
    text_side = (
        f"the text encoder {markdown_code(text.encoder)} is frozen too (`text.finetune` = false)"
        if not text.finetune
        else f"the text encoder {markdown_code(text.encoder)} is fine-tuned"
    )
    budget = f"for `train.epochs` = {train.epochs} epochs with {_threads(data)}"
    if image.frozen:
        return (
            f"**Protocol: two-stage.** The image backbone {_backbone(data)} is frozen (`image.frozen`): its "
            f"multi-scale outputs were computed once per image at {size} ({plural(image.views, 'view')} of "
            "each training image, view 0 unaugmented) and cached, and every configuration trains only its "
            f"heads and alignment on that cache; {text_side}. Each run trains {budget}."
        )
    return (
        f"**Protocol: end to end.** The image backbone {_backbone(data)} is trained with the heads and "
        f"alignment (`image.frozen` = false), at {size}; {text_side}. Each run trains {budget}."
    )


def seeds_and_runs(data: StudyData) -> str:
    study = data.study
    return (
        f"**Runs.** {plural(len(data.shown), 'configuration')} × seeds {seed_list(study.seeds)}: "
        f"{plural(len(data.runs), 'run')} in the study's record. The main model (`models/main`) is the run "
        f"of `{study.main}` with `train.seed` = {data.params.train.seed}. Validation alone chose each run's "
        "epoch and, where it has a second score, its fusion weight; each run was then evaluated once on the "
        "test split with its final score: fused (global + w · second score) when it has one, else global."
    )


def intervals(data: StudyData) -> str:
    """How a finding's interval and verdict are computed (acsa/analysis/intervals.py), with the study's own
    confidence, family and margin."""
    study = data.study
    metric = METRIC_NAMES[study.metric]
    findings = len(data.findings or {})
    margin = (
        f"**equivalent** when it lies within ±{data.margin:g} {metric} points (`study.equivalence_margin`, "
        "declared in params.yaml before the final run)"
        if data.margin is not None
        else "(no equivalence margin is declared, so no finding can be called equivalent)"
    )
    return (
        f"**Intervals and verdicts.** A finding compares two configurations a and b on {metric}: the "
        "difference a − b of their means over seeds. Its "
        f"{100 * study.confidence:g}% interval is a t interval around that difference whose variance adds "
        "the spread between each side's seeds (the seeds are the unit of replication) and the sampling of "
        "the test identities (paired: both sides are scored on the same queries; whole identities, since "
        "one person's captions and images are not independent), with Welch–Satterthwaite degrees of freedom "
        "(`acsa/analysis/intervals.py`). The study judges many intervals at once "
        f"({findings} shown findings; {data.family} intervals in the findings file, every finding on every "
        "query subset): their p-values are Holm-adjusted across that family, and each finding's adjusted "
        "interval is the same t interval at the level that excludes zero exactly when its adjusted p-value "
        f"is below {100 * (1 - study.confidence):.3g}%. The verdict reads the adjusted interval: **better** "
        f"or **worse** when it excludes zero; {margin}; **inconclusive** otherwise."
    )


def query_subsets(data: StudyData) -> str:
    """The test-query subsets every finding is reported on, and their sizes."""
    total = data.subsets.get(ALL) or (data.query_counts or {}).get("queries")
    head = (
        f"**Query subsets.** All {count(total)} test queries" if total else "**Query subsets.** All queries"
    )
    fine = data.subsets.get(FINE, (data.query_counts or {}).get(FINE))
    if fine is None:
        return (
            f"{head}; no fine-evidence subset (the benchmark has no attribute records, or the reference "
            "points were not computed)."
        )
    text = (
        f"{head}, and the {count(fine)} that need fine evidence: the coarse reader (gender, garment types "
        "and colours) ranks a match first less than half of the time, the attribute oracle (every stated "
        "attribute) at least half of the time (reference_points stage)."
    )
    counts = data.query_counts or {}
    if "coarse_solved" in counts and "neither" in counts:
        text += (
            f" Of the others, the coarse reader already solves {count(counts['coarse_solved'])} and neither "
            f"reader solves {count(counts['neither'])}."
        )
    return text


def optional(data: StudyData) -> str:
    """The optional configurations (known to --configuration / --study, not trained by dvc repro)."""
    if not data.study.optional:
        return ""
    listed = "; ".join(f"`{name}` ({markdown_text(describe(o))})" for name, o in data.study.optional.items())
    return (
        f"Optional configurations, not trained by `dvc repro` and not in this report: {listed}. Moving one "
        "into `study.configurations` with a finding that names it adds it to this report."
    )


# ---- 3. configurations -------------------------------------------------------------------------------------


def capacity(data: StudyData) -> str:
    """How many parameters each control trains beside the main configuration: a control with fewer can lose
    for capacity as well as for method."""
    main = data.study.main
    own = trainable_parameters(data, main) if main in data.shown else None
    if own is None:
        return ""
    groups: dict[str, list[str]] = {"the same": [], "fewer": [], "more": []}
    for name in data.shown:
        other = trainable_parameters(data, name)
        if name == main or other is None:
            continue
        where = "the same" if other == own else "fewer" if other < own else "more"
        groups[where].append(f"`{name}`" if other == own else f"`{name}` ({count(other)})")
    said = [f"{where} in {', '.join(names)}" for where, names in groups.items() if names]
    text = (
        f"Trainable parameters beside the main configuration `{main}` ({count(own)}): "
        + "; ".join(said)
        + "."
    )
    if groups["fewer"]:
        text += (
            " A difference against a control with fewer parameters may come from capacity as well as method."
        )
    return text


# ---- 4. the second score -----------------------------------------------------------------------------------


def _kind_mean(data: StudyData, name: str, kind: str, metric: str) -> float | None:
    entry = (data.summary or {}).get(name, {}).get("kinds", {}).get(kind)
    return None if entry is None else float(entry[metric]["mean"])


def score_kinds(data: StudyData) -> str:
    """The main configuration's global, local and fused scores, its fusion weights, and in how many
    configurations with local alignment the local score beats the global one."""
    metric, main = data.metric, data.study.main
    name = METRIC_NAMES[metric]
    values = {kind: _kind_mean(data, main, kind, metric) for kind in ("global", "local", "fused")}
    if values["global"] is None or values["local"] is None:
        return f"The main configuration `{main}` has no summary of its global and local scores."
    gap = values["local"] - values["global"]
    relation = (
        f"the local score is {gap:.1f} points ahead of the global one"
        if gap > 0
        else f"the global score is {-gap:.1f} points ahead of the local one"
    )
    seeds = seed_list((data.summary or {})[main]["seeds"])
    text = (
        f"In the main configuration `{main}` (mean over seeds {seeds}), test {name} is "
        f"{number(values['global'])} with the global score alone, {number(values['local'])} "
        f"with the local score alone and {number(values['fused'])} fused: {relation}."
    )
    weights = [
        float(r["fusion_weight"]) for r in data.runs if r["configuration"] == main and "fused" in r["test"]
    ]
    if weights:
        heavier = sum(w > 1 for w in weights)
        text += (
            f" Validation chose fusion weights {', '.join(f'{w:g}' for w in weights)} for its runs (S = "
            f"global + w · local): the local score weighs more than the global one in {heavier} of "
            f"{len(weights)}."
        )
    local = [
        c
        for c in data.summary or {}
        if data.settings[c].model.use_local and _kind_mean(data, c, "local", metric) is not None
    ]
    ahead = [c for c in local if _kind_mean(data, c, "local", metric) > _kind_mean(data, c, "global", metric)]
    if local:
        text += (
            f" Over the configurations with local alignment, the local score beats the global one in "
            f"{len(ahead)} of {len(local)}."
        )
    return text


def local_alone(data: StudyData) -> str:
    """The local score alone against a global-only control: the finding that compares one score kind (e.g.
    local_score_alone) on each query subset. Whether local alignment alone carries the gain, or fusing two
    scores does, needs this beside the claims."""
    records = [r for r in (data.findings or {}).values() if "local" in (r.get("a_score"), r.get("b_score"))]
    if records:
        return f"**The local score alone.**\n\n{by_subset(data, records)}"
    return (
        "No shown finding compares a local score alone with another configuration (a finding with "
        "`a_score: local`), so the report cannot say, with an interval, whether local alignment alone "
        "ranks as well as a global-only control."
    )


# ---- 10. reference points, fusion weights ------------------------------------------------------------------


def _bracket(refs: Any, value: float) -> str:
    """Where `value` sits among the rankers `refs` (sorted by value)."""
    below, above = refs[refs["value"] <= value], refs[refs["value"] > value]
    if below.empty:
        return f"below `{above.iloc[0]['name']}` ({number(above.iloc[0]['value'])})"
    if above.empty:
        return f"at or above `{below.iloc[-1]['name']}` ({number(below.iloc[-1]['value'])})"
    low, high = below.iloc[-1], above.iloc[0]
    return f"between `{low['name']}` ({number(low['value'])}) and `{high['name']}` ({number(high['value'])})"


def reference_placement(data: StudyData) -> str:
    """Where the configurations' mean final scores sit among the reference rankers."""
    reference = data.reference
    if reference is None:
        why = data.reference_missing or "the reference_points stage has not run"
        return f"No reference points to show: {markdown_text(why)}."
    name = METRIC_NAMES[data.metric]
    table = ladder(data, reference, data.metric)
    refs = table[table["kind"] == "reference"].sort_values("value")
    models = table[table["kind"] == "model"]
    if refs.empty:
        return f"The reference points have no test {name}."
    low, high = refs.iloc[0], refs.iloc[-1]
    text = (
        f"On test {name}, the reference rankers range from `{low['name']}` ({number(low['value'])}) to "
        f"`{high['name']}` ({number(high['value'])})."
    )
    if models.empty:
        return text + " No configuration has test results to place among them."
    brackets: dict[str, list[str]] = {}
    for _, row in models.iterrows():
        brackets.setdefault(_bracket(refs, row["value"]), []).append(
            f"`{row['name']}` {number(row['value'])}"
        )
    lines = [f"{where[0].upper()}{where[1:]}: {', '.join(names)}." for where, names in brackets.items()]
    main = models[models["name"] == data.study.main]
    if not main.empty and high["value"] > low["value"]:
        share = 100 * (main.iloc[0]["value"] - low["value"]) / (high["value"] - low["value"])
        lines.append(
            f"The main configuration `{data.study.main}` covers {share:.0f}% of the distance from "
            f"`{low['name']}` to `{high['name']}`."
        )
    return text + " Mean final score of each configuration:\n\n" + "\n".join(f"- {line}" for line in lines)


def runs_by_configuration(runs: list[tuple[str, int]]) -> str:
    """`full` seeds 0, 1; `channels` seed 2"""
    grouped: dict[str, list[int]] = {}
    for name, seed in runs:
        grouped.setdefault(name, []).append(seed)
    return "; ".join(
        f"`{name}` seed{'s' * (len(seeds) > 1)} {seed_list(seeds)}" for name, seeds in grouped.items()
    )


def fusion_weights(data: StudyData) -> str:
    """The fusion weights validation chose, and the runs whose choice is the largest candidate (a larger one
    might have scored higher)."""
    rows: dict[str, list[tuple[int, float, bool]]] = {}
    for run in data.runs:
        curve = run.get("fusion_curve") or []
        if "fused" not in run["test"] or not curve:
            continue
        weight = float(run["fusion_weight"])
        largest = max(float(p["weight"]) for p in curve)
        rows.setdefault(run["configuration"], []).append(
            (run["seed"], weight, weight >= largest and len(curve) > 1)
        )
    if not rows:
        return "No configuration with a second score has a fusion curve to show."
    chosen = "; ".join(
        f"`{name}` {', '.join(f'{w:g}' for _, w, _ in runs)} (seeds {seed_list([s for s, _, _ in runs])})"
        for name, runs in rows.items()
    )
    text = f"Weights chosen on validation: {chosen}."
    edge = [(name, s) for name, runs in rows.items() for s, _, at_edge in runs if at_edge]
    if edge:
        text += (
            f" For {runs_by_configuration(edge)} the chosen weight is the largest candidate "
            "(`evaluate.fusion_weights`): a larger one might score higher on validation."
        )
    return text

"""The written parts of the ablation report, computed from the study's files (acsa.reports.study_files): how
the comparison works, one sentence per finding, where the models sit among the reference rankers, why the
local score beats the global one, which runs had converged and which fusion weights validation chose.

A finding says "better" or "worse" only when its interval excludes zero and "no detectable difference"
otherwise; the rule is applied to the interval here, so a findings file whose verdict disagrees with its own
interval is pointed out rather than repeated. Every function returns Markdown. No torch import.
"""

from __future__ import annotations

from typing import Any

from acsa.analysis.findings import BETTER, NO_DIFFERENCE, PLATEAU_GAIN, WORSE
from acsa.reports.markup import markdown_text
from acsa.reports.study_files import METRIC_NAMES, StudyData
from acsa.reports.tables import describe, interval, ladder, number, seed_list, signed

GLOBAL_TEXT_KEY = "model.global_text"  # the override that gives a global-only model the fair text side
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def verdict_of(low: float, high: float) -> str:
    return BETTER if low > 0 else WORSE if high < 0 else NO_DIFFERENCE


def _level(record: dict[str, Any]) -> str:
    return f"{100 * record.get('confidence', 0.95):g}%"


def method(data: StudyData) -> str:
    """Section 1: what each run is and how the intervals are computed, with the study's own settings."""
    study = data.study
    metric = METRIC_NAMES[study.metric]
    runs = len(data.runs)
    return (
        f"**Runs.** {len(data.shown)} configurations × seeds {seed_list(list(study.seeds))}: {runs} runs, "
        "each trained exactly like the main model with its configuration's overrides (below). The main model "
        f"(`models/main`) is the run of `{study.main}` with train.seed = {data.main_seed}. Validation alone "
        "chose each run's epoch and fusion weight; every run was then evaluated once on the test split with "
        "its own final score: fused (global + w · local) when it has the local branch, global otherwise.\n\n"
        f"**Findings and their intervals.** A finding compares two configurations a and b on {metric}: the "
        f"difference a − b of their means over seeds. Its {100 * study.confidence:g}% interval is a "
        f"percentile bootstrap ({study.resamples:,} resamples, `scipy.stats.bootstrap`) that resamples three "
        "things at once: the seeds of a, the seeds of b and the test identities. The same identities are "
        "drawn for a and b, so both are judged on the same queries (paired), and whole identities are drawn "
        "because the captions and images of one person are not independent. The interval therefore widens "
        "with the spread between seeds as well as with the choice of test people. A finding says *better* "
        "(or *worse*) only when its interval excludes zero, and *no detectable difference* otherwise."
    )


def optional(data: StudyData) -> str:
    """The optional configurations (known to --configuration / --study, not trained by dvc repro)."""
    if not data.study.optional:
        return ""
    listed = "; ".join(f"`{name}` ({markdown_text(describe(o))})" for name, o in data.study.optional.items())
    return (
        f"Optional configurations, not trained by `dvc repro` and not in this report: {listed}. They were "
        "cut from the default study to keep its running time (the comment above `study.optional` in "
        "params.yaml); moving one into `study.configurations` with a finding that names it adds it to this "
        "report."
    )


def missing(data: StudyData) -> str:
    if not data.missing:
        return ""
    lines = "\n".join(f"- {line}" for line in data.missing)
    return f"**Not found** (left out of the sections below):\n\n{lines}"


# ---- 3. findings -------------------------------------------------------------------------------------------


def seeds_of(record: dict[str, Any]) -> str:
    """`3 seeds each: 0, 1, 2`, or `seeds 0, 1, 2 vs 0, 1` when the two sides differ."""
    a, b = record["seeds_a"], record["seeds_b"]
    if sorted(a) == sorted(b):
        return f"{len(a)} seed{'s' * (len(a) > 1)} each: {seed_list(a)}"
    return f"seeds {seed_list(a)} vs {seed_list(b)}"


def finding(record: dict[str, Any], main: str) -> str:
    """One finding as a sentence whose verdict follows its interval."""
    a, b, low, high = record["a"], record["b"], record["ci_low"], record["ci_high"]
    verdict = verdict_of(low, high)
    numbers = (
        f"{METRIC_NAMES.get(record['metric'], record['metric'])} {number(record['mean_a'])} vs "
        f"{number(record['mean_b'])} ({seeds_of(record)}), a difference of {signed(record['difference'])} "
        f"points, {_level(record)} interval {interval(low, high)}"
    )
    if verdict == BETTER:
        text = f"`{a}` is better than `{b}`: {numbers}, which excludes zero."
    elif verdict == WORSE:
        text = f"`{a}` is worse than `{b}`: {numbers}, which excludes zero."
    else:
        text = f"No detectable difference between `{a}` and `{b}`: {numbers}, which includes zero."
    if a == main and verdict != BETTER:
        text += f" The main configuration does not beat `{b}`."
    if b == main and verdict == BETTER:
        text += f" `{a}` beats the main configuration."
    if record["verdict"] != verdict:
        text += (
            f" (The findings file says “{record['verdict']}”, which its interval does not support: rerun "
            "`dvc repro findings`.)"
        )
    return f"**{record['name']}.** {text}"


def findings_overview(data: StudyData) -> str:
    records = list((data.findings or {}).values())
    if not records:
        return (
            "No findings to show: the findings stage has not run, or no finding compares two shown "
            "configurations."
        )
    counts = {v: 0 for v in (BETTER, WORSE, NO_DIFFERENCE)}
    for r in records:
        counts[verdict_of(r["ci_low"], r["ci_high"])] += 1
    parts = [
        f"{counts[BETTER]} *better*",
        f"{counts[WORSE]} *worse*",
        f"{counts[NO_DIFFERENCE]} *no detectable difference*",
    ]
    text = f"Of {len(records)} findings, " + ", ".join(parts) + " (a against b)."
    main = data.study.main
    against_main = {v: [] for v in (BETTER, WORSE, NO_DIFFERENCE)}
    for r in records:
        if r["a"] == main:
            against_main[verdict_of(r["ci_low"], r["ci_high"])].append(f"`{r['b']}`")
    if any(against_main.values()):
        said = []
        for verdict, label in (
            (BETTER, "better than"),
            (NO_DIFFERENCE, "not detectably different from"),
            (WORSE, "worse than"),
        ):
            if against_main[verdict]:
                said.append(f"{label} {', '.join(against_main[verdict])}")
        text += f" The main configuration `{main}` is " + "; ".join(said) + "."
    return text


# ---- 4. reference points -----------------------------------------------------------------------------------


def reference_placement(data: StudyData) -> str:
    """Where the configurations' mean final scores sit among the reference rankers."""
    reference = data.reference
    if reference is None:
        why = data.reference_missing or "the reference_points stage has not run"
        return f"No reference points to show: {why}."
    metric = data.metric
    name = METRIC_NAMES[metric]
    table = ladder(data, reference, metric)
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
        below = refs[refs["value"] <= row["value"]]
        above = refs[refs["value"] > row["value"]]
        if below.empty:
            where = f"below `{above.iloc[0]['name']}` ({number(above.iloc[0]['value'])})"
        elif above.empty:
            where = f"at or above `{below.iloc[-1]['name']}` ({number(below.iloc[-1]['value'])})"
        else:
            where = (
                f"between `{below.iloc[-1]['name']}` ({number(below.iloc[-1]['value'])}) and "
                f"`{above.iloc[0]['name']}` ({number(above.iloc[0]['value'])})"
            )
        brackets.setdefault(where, []).append(f"`{row['name']}` {number(row['value'])}")
    lines = [f"{where[0].upper()}{where[1:]}: {', '.join(names)}." for where, names in brackets.items()]
    main = models[models["name"] == data.study.main]
    if not main.empty and high["value"] > low["value"]:
        share = 100 * (main.iloc[0]["value"] - low["value"]) / (high["value"] - low["value"])
        lines.append(
            f"The main configuration `{data.study.main}` covers {share:.0f}% of the distance from "
            f"`{low['name']}` to `{high['name']}`."
        )
    return text + " Mean final score of each configuration:\n\n" + "\n".join(f"- {line}" for line in lines)


# ---- 5. the global branch ----------------------------------------------------------------------------------


def _kind_mean(data: StudyData, name: str, kind: str, metric: str) -> float | None:
    entry = (data.summary or {}).get(name, {}).get("kinds", {}).get(kind)
    return None if entry is None else float(entry[metric]["mean"])


def _global_only(data: StudyData) -> tuple[list[str], list[str]]:
    """(plain global-only configurations, those with the fair text side), by their overrides."""
    plain, fair = [], []
    for name in data.shown:
        overrides = data.overrides(name)
        if overrides.get("model.use_local") is False:
            (fair if GLOBAL_TEXT_KEY in overrides else plain).append(name)
    return plain, fair


def _finding_between(data: StudyData, a: str, b: str) -> dict[str, Any] | None:
    """The finding comparing a with b, oriented as a - b (its numbers flipped if it was declared b - a)."""
    for r in (data.findings or {}).values():
        if (r["a"], r["b"]) == (a, b):
            return r
        if (r["a"], r["b"]) == (b, a):
            return {
                **r,
                "a": a,
                "b": b,
                "mean_a": r["mean_b"],
                "mean_b": r["mean_a"],
                "difference": -r["difference"],
                "ci_low": -r["ci_high"],
                "ci_high": -r["ci_low"],
                "seeds_a": r["seeds_b"],
                "seeds_b": r["seeds_a"],
            }
    return None


def _compared(r: dict[str, Any]) -> str:
    verdict = verdict_of(r["ci_low"], r["ci_high"])
    bounds = interval(r["ci_low"], r["ci_high"])
    return f"{signed(r['difference'])} points, {_level(r)} interval {bounds}: {verdict}"


def score_kinds(data: StudyData) -> str:
    """The main configuration's global, local and fused scores, and how often local beats global."""
    metric, main = data.metric, data.study.main
    name = METRIC_NAMES[metric]
    values = {kind: _kind_mean(data, main, kind, metric) for kind in ("global", "local", "fused")}
    if values["global"] is None or values["local"] is None:
        return f"The main configuration `{main}` has no summary of its global and local scores."
    seeds = seed_list((data.summary or {})[main]["seeds"])
    gap = values["local"] - values["global"]
    relation = (
        f"the local score beats the global one by {gap:.1f} points"
        if gap > 0
        else f"the global score is {-gap:.1f} points ahead of the local one"
    )
    text = (
        f"In the main configuration `{main}` (mean over seeds {seeds}), test {name} is "
        f"{number(values['global'])} with the global score alone, {number(values['local'])} with the local "
        f"score alone and {number(values['fused'])} fused: {relation}."
    )
    weights = [
        float(m["fusion_weight"])
        for (c, _), m in sorted(data.metrics.items())
        if c == main and "fused" in m["test"]
    ]
    if weights:
        heavier = sum(w > 1 for w in weights)
        text += (
            f" Validation chose fusion weights {', '.join(f'{w:g}' for w in weights)} for its runs "
            f"(S = global + w · local): the local score weighs more than the global one in {heavier} of "
            f"{len(weights)}."
        )
    with_local = [c for c in (data.summary or {}) if _kind_mean(data, c, "local", metric) is not None]
    ahead = [
        c for c in with_local if _kind_mean(data, c, "local", metric) > _kind_mean(data, c, "global", metric)
    ]
    if with_local:
        text += (
            f" Over every configuration with a local branch, the local score beats the global one in "
            f"{len(ahead)} of {len(with_local)}."
        )
    return text


def text_features(data: StudyData) -> str:
    """The frozen text features alone: what the sentence vector and the phrases tell about identity and colour
    binding (reference_points stage)."""
    text = data.reference.text_features if data.reference else None
    if not text:
        return (
            "The text-feature diagnostic (reference_points stage) is not available, so the report cannot say "
            "how much the frozen sentence vector itself loses."
        )
    nn = text.get("nn_identity_R1") or {}
    probe = text.get("colour_probe") or {}
    split = SPLIT_NAMES.get(text.get("split", "val"), text.get("split"))
    parts = []
    if "sentence" in nn and "phrase_set" in nn:
        relation = "less well than" if nn["sentence"] < nn["phrase_set"] else "at least as well as"
        parts.append(
            f"On the {split} captions alone (no image, no training), the nearest other caption describes the "
            f"same person for {number(nn['sentence'])}% of captions by the sentence vector, which the global "
            f"branch's text side maps, and for {number(nn['phrase_set'])}% by the set of phrase vectors, "
            f"which the local branch matches: the sentence vector separates people {relation} the phrases."
        )
    sentence, phrases = probe.get("sentence") or {}, probe.get("phrase_mean") or {}
    if sentence.get("accuracy") is not None:
        line = (
            "A linear probe (the capacity of the global branch's text side) reads the right colour of a "
            f"stated item from the sentence vector for {number(sentence['accuracy'])}% of captions that also "
            "state another colour, and gives another item's colour for "
            f"{number(sentence.get('other_colour'))}%"
        )
        if phrases.get("accuracy") is not None:
            line += (
                f"; from the mean of the phrase vectors, {number(phrases['accuracy'])}% and "
                f"{number(phrases.get('other_colour'))}%"
            )
        parts.append(line + ".")
    return " ".join(parts) or "The text-feature diagnostic holds none of the measures this report reads."


def fair_text_side(data: StudyData) -> str:
    """What the fair text side changes, and whether it closes the gap to the main configuration."""
    plain, fair = _global_only(data)
    main, name = data.study.main, METRIC_NAMES[data.metric]
    if not fair:
        return (
            f"No shown configuration is a global-only model with the fair text side (`{GLOBAL_TEXT_KEY}`), "
            "so the report cannot say whether a text side that sees the phrases closes the gap."
        )
    paragraphs = []
    for f in fair:
        label = f"`{f}` ({markdown_text(describe(data.overrides(f)))})"
        for p in plain:
            r = _finding_between(data, f, p)
            if r is not None:
                paragraphs.append(
                    "**What the fair text side changes.** Global-only "
                    f"{METRIC_NAMES.get(r['metric'])} goes from {number(r['mean_b'])} (`{p}`) to "
                    f"{number(r['mean_a'])} with {label}: {_compared(r)}."
                )
        r = _finding_between(data, main, f)
        if r is None:
            continue
        verdict = verdict_of(r["ci_low"], r["ci_high"])
        head = f"`{main}` − `{f}` = {_compared(r)}."
        base = next((p for p in plain if _finding_between(data, main, p)), None)
        rb = _finding_between(data, main, base) if base else None  # main against the plain global-only model
        lead = rb is not None and verdict_of(rb["ci_low"], rb["ci_high"]) == BETTER
        if verdict == BETTER:
            text = (
                f"**The fair control does not close the gap.** {head} Local alignment still helps beyond a "
                "text side that sees the phrases."
            )
            if rb is not None and rb["difference"] > 0:
                share = 100 * (rb["difference"] - r["difference"]) / rb["difference"]
                text += (
                    f" Of the {rb['difference']:.1f}-point lead of `{main}` over `{base}`, the fair text "
                    f"side closes {share:.0f}%."
                )
        elif verdict == NO_DIFFERENCE and lead:
            text = (
                f"**The fair control closes the gap.** {head} Given a text side that sees the phrases, "
                f"global alignment alone is not detectably worse than `{main}` on {name}: its lead over "
                f"`{base}` ({signed(rb['difference'])}) is not evidence that local alignment helps on this "
                "benchmark."
            )
        elif verdict == NO_DIFFERENCE:
            against = f" nor `{base}` ({_compared(rb)})" if rb is not None else ""
            text = (
                f"**No gap to close.** `{main}` beats neither `{f}` ({_compared(r)}){against}: on {name}, "
                "no finding here says that local alignment helps."
            )
        else:
            text = f"**The fair control beats `{main}`.** {head}"
        paragraphs.append(text)
    if not paragraphs:
        names = ", ".join(f"`{f}`" for f in fair)
        return f"No finding compares {names} with `{main}` or a plain global-only model."
    return "\n\n".join(paragraphs)


# ---- 6. convergence, 7. fusion weight ----------------------------------------------------------------------


def _runs_by_configuration(runs: list[tuple[str, int]]) -> str:
    """`full` seeds 0, 1; `channels` seed 2"""
    grouped: dict[str, list[int]] = {}
    for name, seed in runs:
        grouped.setdefault(name, []).append(seed)
    return "; ".join(
        f"`{name}` seed{'s' * (len(seeds) > 1)} {seed_list(seeds)}" for name, seeds in grouped.items()
    )


def plateau(data: StudyData) -> str:
    """How many runs had flattened (validation R@1 gained less than PLATEAU_GAIN over the last quarter of
    their epochs, by a least-squares line), which were still rising, and which trained too few epochs to
    tell."""
    runs = [(name, run) for name, entry in (data.summary or {}).items() for run in entry.get("plateau", [])]
    if not runs:
        return "No plateau check to show: the findings stage's summary is missing."
    checked = [(n, r) for n, r in runs if r.get("gain_last_quarter") is not None]
    unknown = [(n, r["seed"]) for n, r in runs if r.get("gain_last_quarter") is None]
    if not checked:
        return (
            f"None of the {len(runs)} runs trained two epochs or more, so none can be checked for a plateau: "
            "the comparisons may measure how fast a model starts to learn, not what it can learn."
        )
    flat = [(n, r) for n, r in checked if r.get("flattened")]
    rising = [(n, r) for n, r in checked if not r.get("flattened")]
    rule = (
        f"gained less than {PLATEAU_GAIN:g} point of validation R@1 over the last quarter of its epochs, "
        "read off a least-squares line through them"
    )
    of = f"{len(checked)} runs" if not unknown else f"{len(checked)} runs with two epochs or more"
    text = (
        f"All {of} flattened: each {rule}." if not rising else f"{len(flat)} of {of} flattened (each {rule})."
    )
    if rising:
        listed = "; ".join(
            f"`{n}` seed {r['seed']} ({signed(r['gain_last_quarter'])} over the last quarter of "
            f"{r['epochs']} epochs)"
            for n, r in rising
        )
        names = ", ".join(f"`{c}`" for c in dict.fromkeys(n for n, _ in rising))
        text += (
            f" Still rising: {listed}. Comparisons involving {names} may partly measure how fast a model "
            "learns."
        )
    if unknown:
        text += f" Too few epochs to tell: {_runs_by_configuration(unknown)}."
    return text


def fusion_weights(data: StudyData) -> str:
    rows: dict[str, list[tuple[int, float, bool]]] = {}
    for (name, seed), metrics in data.metrics.items():  # in the study's order
        curve = data.fusion_curves.get((name, seed)) or []
        if "fused" not in metrics.get("test", {}) or not curve:
            continue
        weight = float(metrics["fusion_weight"])
        largest = max(float(p["weight"]) for p in curve)
        rows.setdefault(name, []).append((seed, weight, weight >= largest and len(curve) > 1))
    if not rows:
        return "No configuration with a local branch has a fusion curve to show."
    chosen = "; ".join(
        f"`{name}` {', '.join(f'{w:g}' for _, w, _ in runs)} (seeds {seed_list([s for s, _, _ in runs])})"
        for name, runs in rows.items()
    )
    text = f"Weights chosen on validation: {chosen}."
    edge = [(name, s) for name, runs in rows.items() for s, _, at_edge in runs if at_edge]
    if edge:
        text += (
            f" For {_runs_by_configuration(edge)} the chosen weight is the largest candidate "
            "(`evaluate.fusion_weights`): a larger one might score higher on validation."
        )
    return text

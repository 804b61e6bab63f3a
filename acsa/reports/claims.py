"""The paper's claims against this study's findings: the report's first table and the sentences that say which
claims hold here, which do not and which are inconclusive.

Every word follows a verdict and never goes past it. A finding's verdict is read from its Holm-adjusted
interval (acsa.analysis.intervals): *better* / *worse* when it excludes zero, *equivalent within ±m* when it
lies inside the declared margin, *inconclusive* otherwise. The verdict a sentence uses is the findings file's
when its own adjusted interval gives the same, and *inconclusive* when they disagree (a stale or hand-edited
file), so that no sentence is stronger than either. A claim *holds here* only when every control of that
claim says *better* on all queries; it *does not hold* when a control says *worse* or *equivalent* (the main
model does not beat it by the margin); otherwise it is *inconclusive*. The fine-evidence queries are judged
by the same rule and said apart, so that a claim that holds on one subset only is said to hold only there.
Every function returns Markdown or a table. No torch import.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from acsa.analysis.intervals import BETTER, EQUIVALENT, INCONCLUSIVE, WORSE, verdict
from acsa.reports.markup import markdown_text
from acsa.reports.numbers import interval, level, number, p_value, signed
from acsa.reports.study_files import ALL, FINE, StudyData

CLAIMS = ("cross-scale", "asymmetric", "local alignment")  # the paper's, in the order the report lists them
SUPPORTING = "supporting (no claim)"
SUBSET_NAMES = {ALL: "all", FINE: "fine evidence"}  # in the table
SUBSET_WORDS = {ALL: "All queries", FINE: "Fine-evidence queries"}  # in the sentences
HOLDS, DOES_NOT_HOLD = "holds", "does not hold"


def supported(stated: str, low: float, high: float, margin: float | None) -> tuple[str, bool]:
    """(the verdict a sentence may use, whether `stated` disagrees with the interval [low, high]): `stated`
    when the interval gives the same verdict, else inconclusive, the weaker of any two."""
    recomputed = verdict(low, high, margin)
    return (recomputed, False) if stated == recomputed else (INCONCLUSIVE, True)


def judged(result: dict[str, Any], margin: float | None) -> tuple[str, bool]:
    """A finding's verdict on one subset, as `supported` reads it from its Holm-adjusted interval."""
    return supported(result["verdict"], result["adjusted_low"], result["adjusted_high"], margin)


def grouped(data: StudyData) -> dict[str, list[dict[str, Any]]]:
    """The shown findings by claim: the paper's claims first (in CLAIMS order), then any other claim, then
    the findings that test none (SUPPORTING)."""
    groups: dict[str, list[dict[str, Any]]] = {claim: [] for claim in CLAIMS}
    for record in (data.findings or {}).values():
        groups.setdefault(record.get("claim") or SUPPORTING, []).append(record)
    supporting = groups.pop(SUPPORTING, [])
    groups = {claim: records for claim, records in groups.items() if records}
    return {**groups, SUPPORTING: supporting} if supporting else groups


def side(data: StudyData, record: dict[str, Any], which: str) -> str:
    """`full`, or `full (local score)` when the finding compares a score kind other than the final one."""
    name, kind = record[which], record.get(f"{which}_score")
    final = data.final_kind(name)
    return f"{name} ({kind} score)" if kind and final and kind != final else name


def control(data: StudyData, record: dict[str, Any]) -> str:
    return f"{side(data, record, 'a')} vs {side(data, record, 'b')}"


def verdict_cell(result: dict[str, Any], margin: float | None) -> str:
    said, disputed = judged(result, margin)
    text = f"{said} (±{margin:g})" if said == EQUIVALENT else said
    return f"{text} (the file's verdict disagrees: {result['verdict']})" if disputed else text


def claims_table(data: StudyData) -> pd.DataFrame:
    """Two rows per finding (all queries, fine-evidence queries), grouped by claim: the means, a − b, the raw
    and the Holm-adjusted interval, the adjusted p-value and the verdict."""
    raw = f"{level(data.study.confidence)} interval"
    rows = []
    for claim, records in grouped(data).items():
        for record in records:
            for subset, result in record["subsets"].items():
                rows.append(
                    {
                        "claim": claim,
                        "control (a vs b)": control(data, record),
                        "queries": f"{SUBSET_NAMES.get(subset, subset)} ({result['queries']})",
                        "mean a": number(result["mean_a"]),
                        "mean b": number(result["mean_b"]),
                        "a − b": signed(result["difference"]),
                        raw: interval(result["ci_low"], result["ci_high"]),
                        "Holm-adjusted interval": interval(result["adjusted_low"], result["adjusted_high"]),
                        "p (Holm)": p_value(result["p_holm"]),
                        "verdict": verdict_cell(result, data.margin),
                    }
                )
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["claim", "control (a vs b)", "queries"])


# ---- sentences ---------------------------------------------------------------------------------------------


def compared(data: StudyData, record: dict[str, Any], subset: str) -> str:
    """One control on one subset, in words no stronger than its verdict."""
    result = record["subsets"][subset]
    said, disputed = judged(result, data.margin)
    a, b = f"`{side(data, record, 'a')}`", f"`{side(data, record, 'b')}`"
    numbers = (
        f"{signed(result['difference'])} points, Holm-adjusted interval "
        f"{interval(result['adjusted_low'], result['adjusted_high'])}"
    )
    if said == BETTER:
        text = f"{a} is better than {b} ({numbers})"
    elif said == WORSE:
        text = f"{a} is worse than {b} ({numbers})"
    elif said == EQUIVALENT:
        text = f"{a} and {b} are equivalent within ±{data.margin:g} points ({numbers})"
    else:
        reach = "" if data.margin is None else f" and reaches beyond ±{data.margin:g}"
        text = f"{a} against {b} is inconclusive ({numbers}, which includes zero{reach})"
    if disputed:
        text += (
            " (the findings file's verdict disagrees with its adjusted interval: rerun `dvc repro findings`)"
        )
    return text


def state(data: StudyData, records: list[dict[str, Any]], subset: str) -> str | None:
    """HOLDS when every control says better on `subset`; DOES_NOT_HOLD when one says worse or equivalent;
    INCONCLUSIVE otherwise; None when no control was judged on that subset."""
    verdicts = [judged(r["subsets"][subset], data.margin)[0] for r in records if subset in r["subsets"]]
    if not verdicts:
        return None
    if all(v == BETTER for v in verdicts):
        return HOLDS
    if any(v in (WORSE, EQUIVALENT) for v in verdicts):
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def by_subset(data: StudyData, records: list[dict[str, Any]]) -> str:
    """A bullet per query subset with every control judged on it."""
    lines = []
    for subset in dict.fromkeys(s for r in records for s in r["subsets"]):
        said = "; ".join(compared(data, r, subset) for r in records if subset in r["subsets"])
        lines.append(f"- {SUBSET_WORDS.get(subset, markdown_text(subset))}: {said}.")
    return "\n".join(lines)


def claim_sentence(data: StudyData, claim: str, records: list[dict[str, Any]]) -> str:
    """Whether `claim` holds here, on all queries and on the fine-evidence queries, then every control."""
    on_all, on_fine = state(data, records, ALL), state(data, records, FINE)
    verb = {HOLDS: "holds here", DOES_NOT_HOLD: "does not hold here", INCONCLUSIVE: "is inconclusive here"}
    if on_fine is None:
        scope = " (all queries; no fine-evidence subset)"
    elif on_all == on_fine:
        scope = ", on all queries and on the fine-evidence queries alike"
    else:
        scope = " on all queries only" if on_all == HOLDS else " on all queries"
    head = f"{markdown_text(claim[:1].upper() + claim[1:])}: **{verb[on_all]}{scope}.**"  # the claim is data
    if on_fine is not None and on_fine != on_all:
        head += (
            " "
            + {
                HOLDS: "It holds only on the fine-evidence queries.",
                DOES_NOT_HOLD: "On the fine-evidence queries it does not hold.",
                INCONCLUSIVE: "On the fine-evidence queries it is inconclusive.",
            }[on_fine]
        )
    note = end_to_end_note(data, records)
    return f"{head}\n\n{by_subset(data, records)}" + (f"\n{note}" if note else "")


def end_to_end_note(data: StudyData, records: list[dict[str, Any]]) -> str | None:
    """What the optional end-to-end confirmation (when it ran) found for a claim's controls on all queries;
    a control whose verdict differs there is said in full, so that a claim is not read as holding under a
    protocol that did not confirm it."""
    if data.end_to_end is None:
        return None
    trained = data.end_to_end["findings"]
    ran = [
        trained[r["name"]] for r in records if r["name"] in trained and ALL in trained[r["name"]]["subsets"]
    ]
    if not ran:
        return "- End to end: the confirmation did not train this claim's controls."
    own = {r["name"]: r for r in records}
    differ = [
        e
        for e in ran
        if judged(e["subsets"][ALL], data.margin)[0] != judged(own[e["name"]]["subsets"][ALL], data.margin)[0]
    ]
    seeds = len(data.end_to_end["seeds"])
    text = (
        f"- End to end (the confirmation, {seeds} seeds, all queries): {len(ran) - len(differ)} of "
        f"{len(ran)} controls it trained reach the same verdict"
    )
    if differ:
        text += "; differently: " + "; ".join(compared(data, e, ALL) for e in differ)
    return text + "."


def supporting_sentence(data: StudyData, record: dict[str, Any]) -> str:
    """A finding that tests no claim, on each of its subsets."""
    return f"**Supporting: `{record['name']}`** (tests no claim).\n\n{by_subset(data, [record])}"


def claims_said(data: StudyData) -> str:
    """The paragraphs under the claims table: one per claim, then one per supporting finding."""
    groups = grouped(data)
    if not groups:
        return (
            "No claim can be judged: the findings stage has not run, or no finding compares two shown "
            "configurations."
        )
    paragraphs = [
        claim_sentence(data, claim, records) for claim, records in groups.items() if claim != SUPPORTING
    ]
    paragraphs += [supporting_sentence(data, record) for record in groups.get(SUPPORTING, [])]
    untested = [claim for claim in CLAIMS if claim not in groups]
    if untested:
        paragraphs.append(
            "Not tested by any shown finding: " + ", ".join(markdown_text(claim) for claim in untested) + "."
        )
    return "\n\n".join(paragraphs)

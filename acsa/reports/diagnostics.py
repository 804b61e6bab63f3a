"""What limits the models: the fine-evidence queries (each configuration on all queries and on those that
need fine evidence) and the linear attribute probes (what the frozen backbone's features carry, and what
each configuration's own image representations keep).

The subset means come from the findings' records (acsa.analysis.findings: mean_a / mean_b per subset, means
over seeds of the finding's score kinds), the only file that holds them per subset. A probe "carries" an
attribute when its validation accuracy is at least CARRIES points above the share of the most frequent value
(what a probe that learned nothing scores): a rule of thumb of this report, stated with the numbers, not a
test. Every function returns a table or Markdown. No torch import.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from acsa.reports.markup import markdown_text
from acsa.reports.numbers import number, seed_list
from acsa.reports.study_files import ALL, FINE, METRIC_NAMES, StudyData

SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
CARRIES = 10.0  # accuracy points above the majority share for "the representation carries the attribute"
BACKBONE = "backbone (frozen)"
REPRESENTATIONS = ("global", "tokens")  # per configuration (acsa.probe): its global embedding, its tokens


# ---- 5. fine evidence --------------------------------------------------------------------------------------


def subset_means(data: StudyData) -> dict[tuple[str, str], dict[str, float]]:
    """(configuration, score kind) -> query subset -> mean over seeds, collected from both sides of every
    shown finding, in the study's order with each configuration's final score first."""
    means: dict[tuple[str, str], dict[str, float]] = {}
    for record in (data.findings or {}).values():
        for side in ("a", "b"):
            key = (record[side], record[f"{side}_score"])
            for subset, result in record["subsets"].items():
                means.setdefault(key, {})[subset] = float(result[f"mean_{side}"])
    order = {name: i for i, name in enumerate(data.shown)}
    return dict(
        sorted(means.items(), key=lambda item: (order[item[0][0]], item[0][1] != data.final_kind(item[0][0])))
    )


def final_subset_means(data: StudyData) -> dict[str, dict[str, float]]:
    """Configuration -> subset -> mean of its final score, for those with a mean on both subsets."""
    return {
        name: means
        for (name, kind), means in subset_means(data).items()
        if kind == data.final_kind(name) and ALL in means and FINE in means
    }


def subset_table(data: StudyData) -> pd.DataFrame:
    """Per configuration and score kind: the findings' metric on all queries and on the fine-evidence ones."""
    metric = METRIC_NAMES[data.study.metric]
    rows = []
    for (name, kind), means in subset_means(data).items():
        final = " (final)" if kind == data.final_kind(name) else ""
        row = {"configuration": name, "score": kind + final}
        row[f"{metric}, all queries"] = number(means.get(ALL))
        row[f"{metric}, fine-evidence queries"] = number(means.get(FINE))
        both = ALL in means and FINE in means
        row["fine − all"] = f"{means[FINE] - means[ALL]:+.1f}" if both else "–"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["configuration", "score"]) if rows else pd.DataFrame()


def fine_evidence(data: StudyData) -> str:
    """How the configurations' final scores fare on the fine-evidence queries against all queries."""
    metric = METRIC_NAMES[data.study.metric]
    finals = final_subset_means(data)
    if not finals:
        return (
            "No configuration has a result on the fine-evidence queries: the benchmark has no attribute "
            "records, or the findings stage has not run."
        )
    queries = data.subsets.get(FINE)
    lower = [name for name, means in finals.items() if means[FINE] < means[ALL]]
    low = min(finals, key=lambda n: finals[n][FINE])
    high = max(finals, key=lambda n: finals[n][FINE])
    text = (
        f"On the fine-evidence queries the configurations' final scores reach {metric} "
        f"{number(finals[low][FINE])} (`{low}`) to {number(finals[high][FINE])} (`{high}`); "
        f"{len(lower)} of {len(finals)} score lower there than on all queries."
    )
    if queries:
        text += (
            f" With {queries} fine-evidence quer{'y' if queries == 1 else 'ies'}, one query moves a "
            f"configuration's {metric} there by {100 / queries:.1f} points: read these means with the "
            "intervals of the claims table."
        )
    return text + (
        " (Means over seeds from the findings' records; the study summary holds no per-subset means, so a "
        "configuration that no finding names is not listed.)"
    )


# ---- 4. the text features ---------------------------------------------------------------------------------


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
    split = SPLIT_NAMES.get(text.get("split", "val"), markdown_text(text.get("split")))
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


# ---- 6. probes ---------------------------------------------------------------------------------------------


def _attributes(probes: dict[str, Any]) -> list[tuple[str, str]]:
    """(group, attribute) in the probe stage's order: coarse, then fine."""
    groups = probes.get("attributes") or {}
    return [(group, key) for group in ("coarse", "fine") for key in groups.get(group, [])]


def _representations(data: StudyData) -> dict[str, dict[str, Any]]:
    """Label -> {attribute: probe result or None}: the backbone, then each shown configuration's global
    embedding and tokens (`full · global`)."""
    probes = data.probes or {}
    rows = {BACKBONE: probes.get("backbone") or {}}
    for name in data.shown:
        entry = (probes.get("configurations") or {}).get(name)
        for representation in REPRESENTATIONS if entry else ():
            rows[f"{name} · {representation}"] = entry.get(representation) or {}
    return rows


def _majority(rows: dict[str, dict[str, Any]], key: str) -> float | None:
    """An attribute's majority share: the same labels are probed in every representation."""
    found = next((row[key] for row in rows.values() if row.get(key)), None)
    return None if found is None else float(found["majority"])


def probe_table(data: StudyData) -> pd.DataFrame:
    """Per attribute (coarse, then fine): its majority share, the backbone's validation accuracy (%) and each
    configuration's as `global / tokens`."""
    if data.probes is None:
        return pd.DataFrame()
    rows = _representations(data)
    table = []
    for group, key in _attributes(data.probes):
        row = {"": group, "attribute": key, "majority share": number(_majority(rows, key))}
        row[BACKBONE] = number((rows[BACKBONE].get(key) or {}).get("accuracy"))
        for name in data.shown:
            found = [(rows.get(f"{name} · {r}") or {}).get(key) for r in REPRESENTATIONS]
            if any(f"{name} · {r}" in rows for r in REPRESENTATIONS):
                row[name] = " / ".join(number((f or {}).get("accuracy")) for f in found)
        table.append(row)
    return pd.DataFrame(table).set_index(["", "attribute"]) if table else pd.DataFrame()


def probe_margins(data: StudyData) -> pd.DataFrame:
    """Accuracy minus majority share (points) per representation (rows) and attribute; NaN: not probed."""
    if data.probes is None:
        return pd.DataFrame()
    rows = _representations(data)
    keys = [key for _, key in _attributes(data.probes)]
    return pd.DataFrame(
        {
            label: {
                k: float("nan") if not row.get(k) else row[k]["accuracy"] - row[k]["majority"] for k in keys
            }
            for label, row in rows.items()
        }
    ).T[keys]


def carries(result: dict[str, Any] | None) -> bool | None:
    """Whether a probe result reads its attribute (CARRIES points above majority); None if not probed."""
    if not result:
        return None
    return result["accuracy"] - result["majority"] >= CARRIES


def _listed(row: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(
        f"{key} ({number(row[key]['accuracy'])} vs {number(row[key]['majority'])})" for key in keys
    )


def probe_reading(data: StudyData) -> str:
    """Where the encoder limits (the backbone's features do not carry an attribute) and where the heads and
    alignment do (the backbone carries it, a configuration's representations or its fine-evidence retrieval
    do not), in sentences hedged by the numbers."""
    if data.probes is None:
        return f"No probes to show: {markdown_text(data.probes_missing or 'the probe stage has not run')}."
    attributes = _attributes(data.probes)
    backbone = data.probes.get("backbone") or {}
    carried = [k for _, k in attributes if carries(backbone.get(k))]
    not_carried = [k for _, k in attributes if carries(backbone.get(k)) is False]
    unprobed = [k for _, k in attributes if carries(backbone.get(k)) is None]
    seeds = sorted({e.get("seed") for e in (data.probes.get("configurations") or {}).values()} - {None})
    scored = [r["val"] for r in backbone.values() if r and "val" in r]
    low, high = min(scored, default=0), max(scored, default=0)
    text = (
        f"Linear probes, fitted on training images and scored on {low if low == high else f'{low}–{high}'} "
        "validation images per attribute (configurations: their run of seed "
        f"{seed_list(seeds) or '–'}), count as carrying an attribute at {CARRIES:g} points or more above its "
        f"majority share, a rule of thumb of this report. The frozen backbone's features carry "
        f"{len(carried)} of {len(carried) + len(not_carried)} probed attributes"
    )
    text += f": {_listed(backbone, carried)} (accuracy vs majority)." if carried else "."
    if not_carried:
        these = "this" if len(not_carried) == 1 else "these"
        text += (
            f" They do not carry {_listed(backbone, not_carried)}: for {these} the image encoder limits "
            "every configuration, whatever its alignment."
        )
    if unprobed:
        text += f" Too few validation examples to probe: {', '.join(unprobed)}."
    return text + _heads_reading(data, carried) + _fine_reading(data, carried)


def _heads_reading(data: StudyData, carried: list[str]) -> str:
    """Which configurations lose, in their global embedding and their tokens alike, what the backbone
    carries."""
    lost = {}
    for name in data.shown:
        entry = (data.probes.get("configurations") or {}).get(name)
        if not entry:
            continue
        gone = [k for k in carried if not any(carries((entry.get(r) or {}).get(k)) for r in REPRESENTATIONS)]
        if gone:
            lost[name] = gone
    if not carried:
        return ""
    if not lost:
        return " Every configuration keeps, in its global embedding or its tokens, what the backbone carries."
    listed = "; ".join(f"`{name}` {', '.join(keys)}" for name, keys in lost.items())
    return (
        f" Of what the backbone carries, neither the global embedding nor the tokens carry: {listed}. There "
        "the heads and alignment, not the encoder, limit what the model can match, as far as a linear probe "
        "tells."
    )


def _fine_reading(data: StudyData, carried: list[str]) -> str:
    """Fine-evidence retrieval beside the fine attributes the backbone carries: a limit is named only when
    most configurations score lower on those queries than on all queries."""
    fine = [k for k in (data.probes.get("attributes") or {}).get("fine", []) if k in carried]
    finals = final_subset_means(data)
    if not finals:
        return ""
    lower = [name for name, means in finals.items() if means[FINE] < means[ALL]]
    text = (
        " Retrieval on the fine-evidence queries is below that on all queries for "
        f"{len(lower)} of {len(finals)} configurations"
    )
    if 2 * len(lower) <= len(finals):
        return text + ", so those queries show no limit of either kind here."
    if not fine:
        return text + (
            " and the backbone carries none of the fine attributes: there the encoder limits before any "
            "alignment does, as far as these probes tell."
        )
    return text + (
        f" while the backbone carries {len(fine)} fine attribute{'s' * (len(fine) != 1)} "
        f"({', '.join(fine)}): this points to the heads and alignment rather than the encoder as the limit "
        "on those queries, within what these probes and the few fine-evidence queries can show."
    )

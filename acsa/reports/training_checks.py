"""How far the training choices can be trusted: the convergence check (the same runs at a longer budget) and
the last-quarter plateau, the learning-rate sweep that chose each configuration's train.lr and the main
model's budget, and the end-to-end confirmation of the two-stage protocol. The sweep and the confirmation
come from the optional pipeline (optional/dvc.yaml); when it was not run, the sentences say so and how to
run it. Every function returns a table or Markdown. No torch import.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from acsa.analysis.convergence import MEANING
from acsa.analysis.findings import PLATEAU_GAIN
from acsa.reports.claims import supported
from acsa.reports.markup import markdown_text
from acsa.reports.numbers import describe, interval, level, number, plural, rate, seed_list, signed
from acsa.reports.study_files import StudyData

OPTIONAL = "dvc repro optional/dvc.yaml"


def _not_found(data: StudyData, key: str) -> str:
    """` (PATH not found)` for an optional input the notebook was pointed at; nothing when none was given."""
    path = data.files.get(key)
    return f" ({markdown_text(path)} not found)" if path else ""


# ---- 7. convergence ----------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def convergence_table(data: StudyData) -> pd.DataFrame:
    """Per checked configuration: epochs of the study's runs and of the longer ones, their mean best
    validation R@1, the paired gain over seeds, its interval and verdict."""
    check = data.convergence or {}
    rows = []
    for name, entry in (check.get("configurations") or {}).items():
        pairs = entry.get("pairs") or []
        epochs = sorted({tuple(p["epochs"]) for p in pairs})
        row: dict[str, Any] = {
            "configuration": name,
            "seeds": seed_list([p["seed"] for p in pairs]),
            "epochs": "; ".join(f"{short} → {long}" for short, long in epochs) or "–",
            "best val R@1, study": number(_mean([p["best"][0] for p in pairs])) if pairs else "–",
            "best val R@1, longer": number(_mean([p["best"][1] for p in pairs])) if pairs else "–",
        }
        if "gain" in entry:
            verdict, _ = supported(entry["verdict"], entry["ci_low"], entry["ci_high"], data.margin)
            row["gain"] = signed(entry["gain"])
            row[f"{level(data.study.confidence)} interval"] = interval(entry["ci_low"], entry["ci_high"])
            row["verdict"] = verdict
        else:
            row["verdict"] = f"inconclusive ({entry.get('why', 'not computed')})"
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration").fillna("–") if rows else pd.DataFrame()


def convergence(data: StudyData) -> str:
    """What the longer budget shows, per configuration checked, no stronger than its verdict."""
    check = data.convergence
    if not check or not check.get("available"):
        return (
            "The convergence check was not run (no longer-budget runs in the findings stage's summary): "
            "`dvc repro convergence` trains the runs of `study.convergence.configurations` again at "
            "`study.convergence.epochs_factor` × their budget, on validation only."
        )
    factor = check.get("epochs_factor", data.study.convergence.epochs_factor)
    parts = []
    for name, entry in (check.get("configurations") or {}).items():
        pairs = entry.get("pairs") or []
        if "gain" not in entry:
            parts.append(f"`{name}`: not judged ({markdown_text(entry.get('why', 'no pairs'))}).")
            continue
        verdict, disputed = supported(entry["verdict"], entry["ci_low"], entry["ci_high"], data.margin)
        epochs = "; ".join(sorted({f"{p['epochs'][0]} → {p['epochs'][1]} epochs" for p in pairs}))
        note = (
            " (the file's verdict disagrees with its interval: rerun `dvc repro findings`)"
            if disputed
            else ""
        )
        parts.append(
            f"`{name}` ({epochs}): the best validation R@1 changes by {signed(entry['gain'])} points on "
            f"average over {plural(len(pairs), 'seed')} ({level(data.study.confidence)} interval "
            f"{interval(entry['ci_low'], entry['ci_high'])}) — {MEANING[verdict]}{note}."
        )
    return (
        f"**The plateau check.** The runs below were trained again at {factor:g}× their budget, their "
        "learning-rate schedule stretched to the longer budget, so a learning rate that has decayed to "
        "nothing by the end of the study's budget is still high half-way through the longer one: a plateau "
        "that the schedule alone produced would show as a gain here. Per seed, the longer run's best "
        "validation R@1 minus the study run's is one paired difference; a t interval over seeds judges "
        "them.\n\n" + "\n".join(f"- {part}" for part in parts)
    )


def plateau(data: StudyData) -> str:
    """How many runs had flattened over the last quarter of their epochs, which were still rising, and which
    trained too few epochs to tell; a decayed learning rate flattens a curve by itself, so this is read
    beside the convergence check."""
    runs = [(name, run) for name, entry in (data.summary or {}).items() for run in entry.get("plateau", [])]
    if not runs:
        return "No plateau check to show: the findings stage's summary is missing."
    checked = [(n, r) for n, r in runs if r.get("gain_last_quarter") is not None]
    unknown = [(n, r["seed"]) for n, r in runs if r.get("gain_last_quarter") is None]
    if not checked:
        return (
            f"None of the {len(runs)} runs trained two epochs or more, so none can be checked for a plateau "
            "over its last quarter."
        )
    rising = [(n, r) for n, r in checked if not r.get("flattened")]
    rule = (
        f"gained less than {PLATEAU_GAIN:g} point of validation R@1 over the last quarter of its epochs, "
        "read off a least-squares line through them"
    )
    of = f"{len(checked)} runs" if not unknown else f"{len(checked)} runs with two epochs or more"
    flat = len(checked) - len(rising)
    text = f"All {of} flattened: each {rule}." if not rising else f"{flat} of {of} flattened (each {rule})."
    if rising:
        listed = "; ".join(
            f"`{n}` seed {r['seed']} ({signed(r['gain_last_quarter'])} over {r['epochs']} epochs)"
            for n, r in rising
        )
        text += f" Still rising: {listed}."
    if unknown:
        grouped: dict[str, list[int]] = {}
        for name, seed in unknown:
            grouped.setdefault(name, []).append(seed)
        text += " Too few epochs to tell: " + "; ".join(
            f"`{n}` seeds {seed_list(s)}" for n, s in grouped.items()
        )
        text += "."
    return text + (
        " A learning rate that has decayed by the last quarter flattens a curve by itself, so this alone "
        "does not show a plateau: the longer-budget check above does."
    )


# ---- 8. the learning-rate sweep ----------------------------------------------------------------------------


def _overrides(record: dict[str, Any]) -> dict[str, str]:
    return dict(str(o).split("=", 1) for o in record.get("overrides") or [] if "=" in str(o))


def grid_results(data: StudyData) -> dict[str, dict[float, float]]:
    """Configuration -> learning rate -> best validation R@1, from the sweep's grid runs (those whose only
    override is train.lr)."""
    results: dict[str, dict[float, float]] = {}
    for record in data.sweep or []:
        overrides = _overrides(record)
        if set(overrides) == {"train.lr"} and record["configuration"] in data.shown:
            lr = float(overrides["train.lr"])
            results.setdefault(record["configuration"], {})[lr] = float(record["best_val_selection_R1"])
    return {name: results[name] for name in data.shown if name in results}


def sweep_table(data: StudyData) -> pd.DataFrame:
    """Per configuration: validation R@1 at each learning rate of the grid, the best one, params.yaml's."""
    rows = []
    for name, results in grid_results(data).items():
        row: dict[str, Any] = {"configuration": name}
        row.update({f"lr {rate(lr)}": number(value) for lr, value in sorted(results.items())})
        row["best on validation"] = rate(max(results, key=results.get))
        row["params.yaml"] = rate(data.settings[name].train.lr)
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration").fillna("–") if rows else pd.DataFrame()


def budget_results(data: StudyData) -> dict[int, float]:
    """Epochs -> best validation R@1 of the main configuration at its own learning rate (the sweep's grid run
    at that rate, at the configured budget, and its runs at study.sweep.main_epochs)."""
    main = data.study.main
    settings = data.settings.get(main)
    if settings is None:
        return {}
    budgets = {}
    for record in data.sweep or []:
        overrides = _overrides(record)
        if (
            record["configuration"] != main
            or abs(float(overrides.get("train.lr", "nan")) - settings.train.lr) > 1e-12
        ):
            continue
        epochs = int(overrides.get("train.epochs", settings.train.epochs))
        budgets[epochs] = float(record["best_val_selection_R1"])
    return dict(sorted(budgets.items()))


def sweep(data: StudyData) -> str:
    """Which learning rate validation preferred per configuration against the one params.yaml trains with,
    and the main configuration's budgets."""
    grid = grid_results(data)
    if data.sweep is None or not grid:
        return (
            f"The learning-rate sweep was not run here{_not_found(data, 'sweep')}: "
            f"`{OPTIONAL}:sweep` trains every configuration at each learning rate of "
            "`study.sweep.learning_rates` on validation; the learning rates of section 3 are then "
            "params.yaml's as written."
        )
    settings = data.study.sweep
    text = (
        f"Every configuration was trained at each learning rate of `study.sweep.learning_rates` "
        f"({', '.join(rate(lr) for lr in settings.learning_rates)}) with seed {settings.seed} and the "
        "study's budget, and scored on validation only."
    )
    agree, differ = [], []
    for name, results in grid.items():
        chosen, best = data.settings[name].train.lr, max(results, key=results.get)
        if abs(chosen - best) < 1e-12:
            agree.append(f"`{name}`")
        else:
            at = f"{number(results[chosen])}" if chosen in results else "not on the grid"
            differ.append(
                f"`{name}` trains at {rate(chosen)} ({at}) while {rate(best)} scored {number(results[best])}"
            )
    if agree:
        text += f" params.yaml's `train.lr` is the grid's best on validation for {', '.join(agree)}."
    if differ:
        text += f" It is not for: {'; '.join(differ)}."
    budgets = budget_results(data)
    if budgets:
        configured = data.settings[data.study.main].train.epochs
        said = ", ".join(
            f"{e} epochs{' (train.epochs)' if e == configured else ''} {number(v)}"
            for e, v in budgets.items()
        )
        text += f" The main configuration `{data.study.main}` at its learning rate, by budget: {said}."
    return text


# ---- 9. the end-to-end confirmation ------------------------------------------------------------------------


def agreement_table(data: StudyData) -> pd.DataFrame:
    """Per finding both protocols ran: each protocol's a − b and verdict (all queries), and whether they
    point the same way and agree."""
    findings = ((data.end_to_end or {}).get("agreement") or {}).get("findings") or {}
    rows = [
        {
            "finding": name,
            "two-stage a − b": signed(entry["two_stage"]["difference"]),
            "two-stage verdict": entry["two_stage"]["verdict"],
            "end-to-end a − b": signed(entry["end_to_end"]["difference"]),
            "end-to-end verdict": entry["end_to_end"]["verdict"],
            "same direction": "yes" if entry["same_direction"] else "no",
            "same verdict": "yes" if entry["same_verdict"] else "no",
        }
        for name, entry in findings.items()
    ]
    return pd.DataFrame(rows).set_index("finding") if rows else pd.DataFrame()


def ranking_table(data: StudyData) -> pd.DataFrame:
    """The configurations both protocols ran: each protocol's mean final R@1 and rank."""
    ranking = ((data.end_to_end or {}).get("agreement") or {}).get("ranking") or {}
    rows = []
    for name in ranking.get("two_stage", []):
        rows.append(
            {
                "configuration": name,
                "two-stage": number(ranking["means_two_stage"].get(name)),
                "rank": ranking["two_stage"].index(name) + 1,
                "end to end": number(ranking["means_end_to_end"].get(name)),
                "rank ": ranking["end_to_end"].index(name) + 1,
            }
        )
    return pd.DataFrame(rows).set_index("configuration") if rows else pd.DataFrame()


def _order(names: list[str]) -> str:
    return " > ".join(f"`{name}`" for name in names)


def end_to_end(data: StudyData) -> str:
    """Whether the two protocols rank the configurations alike (Kendall's tau) and agree on the findings."""
    plan = data.study.end_to_end
    if data.end_to_end is None:
        if not plan.configurations:
            return "No end-to-end confirmation is declared (`study.end_to_end` is empty)."
        names = ", ".join(f"`{n}`" for n in plan.configurations)
        return (
            f"The end-to-end confirmation was not run here{_not_found(data, 'end_to_end')}. `{OPTIONAL}` "
            f"trains {names} end to "
            f"end ({markdown_text(describe(plan.overrides))}) at seeds {seed_list(plan.seeds)} and compares "
            "what the two protocols find."
        )
    agreement = data.end_to_end["agreement"]
    ranking, findings = agreement["ranking"], agreement["findings"]
    tau = ranking.get("kendall_tau")
    same = ranking["two_stage"] == ranking["end_to_end"]
    text = (
        f"The confirmation trained {plural(len(ranking['two_stage']), 'configuration')} end to end "
        f"({markdown_text(describe(plan.overrides))}) at seeds {seed_list(data.end_to_end['seeds'])}. "
        f"The two protocols rank them {'in the same order' if same else 'in different orders'} by mean final "
        f"R@1 (two-stage: {_order(ranking['two_stage'])}; end to end: {_order(ranking['end_to_end'])})"
    )
    if tau is None:
        text += ", too few configurations for Kendall's tau (it needs three)."
    else:
        text += f": Kendall's tau = {tau:.2f} (1: the same order, −1: reversed; ties lower it)."
    if findings:
        direction = sum(bool(e["same_direction"]) for e in findings.values())
        verdicts = sum(bool(e["same_verdict"]) for e in findings.values())
        text += (
            f" Of the {plural(len(findings), 'finding')} both ran, the two protocols point the same way on "
            f"{direction} and reach the same verdict on {verdicts} (all queries); the end-to-end verdicts "
            f"rest on {plural(len(data.end_to_end['seeds']), 'seed')}, Holm-adjusted across its own smaller "
            "family."
        )
    return text

"""Do the two protocols agree? The study's findings come from the two-stage protocol (a frozen, pretrained
backbone; only heads and alignment trained). The optional confirmation trains the key configurations end to
end, the backbone too, at fewer seeds; this compares what each protocol says: per finding, the two
differences and verdicts, and over the configurations both ran, how each protocol ranks them (Kendall's tau
between the two orders of the configurations' mean final R@1).
"""

from __future__ import annotations

import numpy as np

from acsa.analysis.study_runs import Run


def configuration_means(runs: dict[str, list[Run]], metric: str) -> dict[str, float]:
    """Each configuration's mean over seeds of its runs' final metric."""
    return {name: float(np.mean([r.values(metric).mean() for r in group])) for name, group in runs.items()}


def protocol_agreement(
    two_stage: dict[str, dict], end_to_end: dict[str, dict], two_stage_means: dict, end_to_end_means: dict
) -> dict:
    """Per finding both protocols ran: the two differences and verdicts (on all queries), whether they point
    the same way and agree; the two rankings of the shared configurations and Kendall's tau between them."""
    from scipy.stats import kendalltau

    findings = {}
    for name, record in end_to_end.items():
        if name not in two_stage:
            continue
        ours, theirs = two_stage[name]["subsets"]["all"], record["subsets"]["all"]
        findings[name] = {
            "two_stage": {"difference": ours["difference"], "verdict": ours["verdict"]},
            "end_to_end": {"difference": theirs["difference"], "verdict": theirs["verdict"]},
            "same_direction": bool(np.sign(ours["difference"]) == np.sign(theirs["difference"])),
            "same_verdict": ours["verdict"] == theirs["verdict"],
        }
    shared = [name for name in end_to_end_means if name in two_stage_means]
    tau = None
    if len(shared) >= 3:
        first, second = [two_stage_means[n] for n in shared], [end_to_end_means[n] for n in shared]
        tau = float(kendalltau(first, second)[0])
    return {
        "findings": findings,
        "ranking": {
            "two_stage": sorted(shared, key=lambda n: -two_stage_means[n]),
            "end_to_end": sorted(shared, key=lambda n: -end_to_end_means[n]),
            "means_two_stage": {n: two_stage_means[n] for n in shared},
            "means_end_to_end": {n: end_to_end_means[n] for n in shared},
            "kendall_tau": tau,
        },
    }

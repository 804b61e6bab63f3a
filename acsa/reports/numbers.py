"""How the ablation report writes numbers, in one place so that its tables and its sentences print them alike:
one decimal, signed differences that never read "-0.0", intervals, seeds, parameter counts and learning
rates, and configuration overrides. Text only; no pandas, no torch."""

from __future__ import annotations

import json
from typing import Any


def number(x: float | None) -> str:
    """`40.1`; `–` for a value that is not there (a probe with too few examples, a kind a model lacks)."""
    return "–" if x is None else f"{x:.1f}"


def signed(x: float) -> str:
    """`+1.2`, `-0.4`; `0.0` for what rounds to zero (never `-0.0`, which would read as a direction)."""
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def interval(low: float, high: float) -> str:
    return f"[{signed(low)}, {signed(high)}]"


def level(confidence: float) -> str:
    """`95%`, `99.4%`: a confidence level as the tables head their intervals."""
    return f"{100 * confidence:.3g}%"


def seed_list(seeds: list[int] | tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in seeds)


def mean_std(entry: dict[str, Any]) -> str:
    """`40.1 ± 1.2`, or the value alone for one seed (no standard deviation)."""
    std = entry.get("std")
    return f"{entry['mean']:.1f}" if std is None else f"{entry['mean']:.1f} ± {std:.1f}"


def count(n: int | None) -> str:
    """`903,680`: parameter and query counts, readable at a glance; `–` when not recorded."""
    return "–" if n is None else f"{int(n):,}"


def rate(lr: float) -> str:
    """A learning rate as params.yaml's grids write it: `0.002`, `8e-05`."""
    return f"{lr:g}"


def describe(overrides: dict[str, Any]) -> str:
    """`model.use_local=false, image.parts=channels`; `defaults` for none (values as YAML/JSON would read)."""
    if not overrides:
        return "defaults"
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items())


def plural(n: int, word: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {word}{'s' * (n != 1)}"


def p_value(p: float) -> str:
    """`0.031`, `<0.001`: three decimals, which is all a Holm-adjusted p-value is read to."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"

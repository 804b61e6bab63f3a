"""The index manifest's schema, checked when it is read: a hand-edited or damaged manifest is one line naming
the key, never a traceback later (a KeyError in a query, a NaN fusion weight in every score, a shard name
that leads out of the index folder).

`problem(manifest)` returns None for a manifest this code can use, else what is wrong, naming the key
("shards[2].rows: expected a whole number >= 1, got 'ten'").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

SHARD_FILE = re.compile(r"shard-\d{6}-\d{5}\.safetensors")
GLOBAL_FILE = re.compile(r"global-\d{6}\.safetensors")
SHA256 = re.compile(r"[0-9a-f]{64}")

Check = Callable[[Any], str | None]  # a value -> None if fine, else what it should be


class ManifestProblem(ValueError):
    """What is wrong with a manifest, as `key: problem`."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole(low: int = 0) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"a whole number >= {low}"
        return None

    return check


def finite(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "a finite number"
    return None


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "text"


def matching(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and pattern.fullmatch(value) else what

    return check


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(map(str, choices))

    return check


def _require(value: Any, key: str, check: Check) -> None:
    wanted = check(value)
    if wanted is not None:
        raise ManifestProblem(f"{key}: expected {wanted}, got {_shown(value)}")


def _fields(
    record: Any, key: str, checks: dict[str, Check], optional: dict[str, Check] | None = None
) -> None:
    """`record` is an object holding every key of `checks` (and maybe those of `optional`), each valid."""
    if not isinstance(record, dict):
        raise ManifestProblem(f"{key or 'the manifest'}: expected an object, got {type(record).__name__}")
    prefix = f"{key}." if key else ""
    for name, check in checks.items():
        if name not in record:
            raise ManifestProblem(f"{prefix}{name}: missing")
        _require(record[name], prefix + name, check)
    for name, check in (optional or {}).items():
        if record.get(name) is not None:
            _require(record[name], prefix + name, check)


def _list(value: Any, key: str, low: int = 0) -> list:
    if not isinstance(value, list) or len(value) < low:
        raise ManifestProblem(f"{key}: expected a list of at least {low} entries, got {_shown(value)}")
    return value


def _shard(entry: Any, key: str) -> None:
    _fields(entry, key, {"file": matching(SHARD_FILE, "a shard file name"), "rows": whole(1)})
    dropped = _list(entry.get("dropped", []), f"{key}.dropped")
    for i, row in enumerate(dropped):
        _require(row, f"{key}.dropped[{i}]", whole(0))
        if row >= entry["rows"] or (i and row <= dropped[i - 1]):
            raise ManifestProblem(f"{key}.dropped: expected increasing rows below {entry['rows']}")
    if len(dropped) >= entry["rows"]:
        raise ManifestProblem(f"{key}.dropped: every row dropped (such a shard leaves the manifest)")


def _layout(entry: Any, key: str) -> None:
    _fields(entry, key, {"name": text, "kind": text})
    box = entry.get("box")
    if box is not None:
        _fields(box, f"{key}.box", dict.fromkeys(("left", "top", "right", "bottom"), finite))


def problem(manifest: Any, token_dtypes: tuple[str, ...]) -> str | None:
    """None if `manifest` (format and version already checked) is one this code reads, else what is wrong."""
    try:
        _fields(
            manifest,
            "",
            {
                "generation": whole(0),
                "embed_dim": whole(1),
                "token_dtype": one_of(*token_dtypes),
                "model": lambda v: None if isinstance(v, dict) else "an object",
                "images": lambda v: None if isinstance(v, dict) else "an object",
            },
            {"fusion_weight": finite, "fusion_weight_source": text, "updated": text},
        )
        _fields(manifest["model"], "model", {"path": text, "sha256": matching(SHA256, "a SHA-256 digest")})
        _fields(manifest["images"], "images", {"root": text})
        for i, name in enumerate(_list(manifest.get("token_names"), "token_names", 1)):
            _require(name, f"token_names[{i}]", text)
        layout = manifest.get("token_layout")
        if layout is not None:
            if len(_list(layout, "token_layout")) != len(manifest["token_names"]):
                raise ManifestProblem("token_layout: expected one entry per token name")
            for i, entry in enumerate(layout):
                _layout(entry, f"token_layout[{i}]")
        for i, entry in enumerate(_list(manifest.get("shards"), "shards")):
            _shard(entry, f"shards[{i}]")
        if manifest.get("global_index") is not None:
            _fields(
                manifest["global_index"],
                "global_index",
                {
                    "kind": one_of("faiss"),
                    "file": matching(GLOBAL_FILE, "a FAISS file name"),
                    "sha256": matching(SHA256, "a SHA-256 digest"),
                    "rows": whole(1),
                    "nlist": whole(1),
                    "nprobe": whole(1),
                },
                {"refine": whole(1), "factory": text},
            )
    except ManifestProblem as err:
        return str(err)
    return None

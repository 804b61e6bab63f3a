"""`acsa index`: a trained model + a folder of images (or a prepared split) -> a search index, incrementally.

A run compares the images with the index it finds (path, size, modification time): unchanged files keep
their rows, new and changed files are encoded, rows of removed and changed files are dropped. New rows go
into shards of `shard_size` images; after each shard the manifest is replaced (acsa.search.store), so a run
that is killed leaves a usable index holding every finished shard, and the next run continues from it.

Everything that can be refused is checked before the first write: a run that fails on its input leaves the
index exactly as it was, and a first run that fails leaves no folder behind. An image whose features come
out NaN or infinite is skipped and listed like an unreadable one: no such row is ever written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from acsa.errors import DataError, NonFiniteError, SearchError, one_line
from acsa.search import global_search, store
from acsa.search.model_access import SearchModel
from acsa.search.names import printable
from acsa.search.query import check_fusion_weight
from acsa.search.scan import IMAGE_SUFFIXES, ImageFile, Scan, scan_folder, scan_paths

log = logging.getLogger(__name__)

SHARD_SIZE = 2048  # images per shard: the work a kill can lose, and one manifest write per shard
BATCH_SIZE = 32
# float16 halves the token store, but on the synthetic test split it reorders near-ties in 0.7% of the top-10
# lists (never the top-1; R@K unchanged): float32 unless asked (BENCHMARKS.md, person search)
DEFAULT_TOKEN_DTYPE = "float32"
NON_FINITE = "features not finite (NaN or infinite)"


@dataclass
class IndexReport:
    index: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ignored: int = 0  # files without an image suffix
    rows: int = 0  # images in the index now
    seconds: float = 0.0  # encoding loop: decode + model
    decode_seconds: float = 0.0
    global_search: str = "exact"

    @property
    def images_per_second(self) -> float:
        return (self.added + self.changed) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        line = (
            f"{printable(self.index)}: {self.rows} images ({self.added} added, {self.changed} changed, "
            f"{self.removed} removed, {self.kept} unchanged); skipped {len(self.skipped)}"
        )
        if self.ignored:
            line += f"; ignored {self.ignored} files that are not {'/'.join(s[1:] for s in IMAGE_SUFFIXES)}"
        if self.added + self.changed:
            share = self.decode_seconds / self.seconds if self.seconds else 0.0
            line += f"; {self.images_per_second:.1f} images/s ({100 * share:.0f}% decoding)"
        return line + f"; global search: {self.global_search}"


def _source(images: Path | None, prepared: Path | None, split: str | None) -> Scan:
    if (images is None) == (prepared is None):
        raise SearchError("give either --images FOLDER or --prepared DIR --split NAME")
    if images is not None:
        scan = scan_folder(images)
        where = str(images)
    else:
        from acsa.data.prepared import load_prepared

        name = split or "test"
        try:
            prepared_data = load_prepared(prepared)
            records = prepared_data.split(name)
            image_root = prepared_data.image_root(name)
        except (OSError, KeyError, ValueError) as err:
            raise SearchError(f"{prepared}: {one_line(err)}") from None
        # evaluation splits list each image once (image_paths); the train split lists its images (images)
        scan = scan_paths(image_root, records.get("image_paths") or records.get("images") or [])
        where = f"{prepared} split {split or 'test'}"
    if not scan.files:
        others = sum(scan.ignored.values())
        extra = f" ({others} other files)" if others else ""
        raise SearchError(
            f"{where}: no images found{extra}; looked for {', '.join(IMAGE_SUFFIXES)} files (recursively)"
        )
    return scan


def _check_compatible(
    out: Path, manifest: dict, model: SearchModel, root: Path, token_dtype: str | None
) -> None:
    old = manifest["model"]
    if old["sha256"] != model.sha256:
        raise SearchError(
            f"{out} was built with model {old['path']} (sha256 {old['sha256'][:12]}), not "
            f"{model.path.resolve()} (sha256 {model.sha256[:12]}): index into another --out, or delete {out}"
        )
    if manifest["images"]["root"] != str(root):
        raise SearchError(
            f"{out} indexes {manifest['images']['root']}, not {root}: "
            f"index into another --out, or delete {out}"
        )
    if token_dtype is not None and token_dtype != manifest["token_dtype"]:
        raise SearchError(
            f"{out} stores {manifest['token_dtype']} image tokens, not {token_dtype}: "
            "index into another --out, or delete it"
        )


def _fusion_weight(model: SearchModel, override: float | None) -> tuple[float, str]:
    if override is not None:
        return check_fusion_weight(override, "--fusion-weight"), "--fusion-weight"
    weight, source = model.chosen_fusion_weight
    if weight is None:
        raise SearchError(
            f"{model.path}: the model records no fusion weight (trained by an older acsa): "
            "pass --fusion-weight W, or retrain it (dvc repro train)"
        )
    weight = check_fusion_weight(weight, f"{model.path}: its recorded fusion weight")
    if source != "val":
        log.warning("%s: fusion weight %g was not chosen on validation (%s)", model.path, weight, source)
    return weight, source


def _fresh_manifest(model: SearchModel, scan: Scan, source: dict, token_dtype: str) -> dict:
    return {
        "format": store.FORMAT,
        "version": store.VERSION,
        "generation": 0,
        "model": model.describe(),
        "images": {"root": str(scan.root), **source},
        "embed_dim": model.embed_dim,
        "token_names": model.token_names,
        "token_layout": model.token_layout,
        "token_dtype": token_dtype,
        "shards": [],
        "global_index": None,
    }


def build_index(
    model_dir: Path,
    out: Path,
    images: Path | None = None,
    prepared: Path | None = None,
    split: str | None = None,
    fusion_weight: float | None = None,
    global_kind: str = "auto",
    token_dtype: str | None = None,
    batch_size: int = BATCH_SIZE,
    shard_size: int = SHARD_SIZE,
    progress: bool | None = None,
) -> IndexReport:
    """Create or update the index `out`; returns what was done. See the module docstring."""
    if batch_size < 1 or shard_size < 1:
        raise SearchError("--batch-size and --shard-size must be at least 1")
    global_search.wanted(global_kind, 0)  # validates the name
    if token_dtype not in (None, *store.TOKEN_DTYPES):
        raise SearchError(f"--token-dtype {token_dtype!r}: expected one of {', '.join(store.TOKEN_DTYPES)}")
    if fusion_weight is not None:
        check_fusion_weight(fusion_weight, "--fusion-weight")
    out = Path(out)
    scan = _source(images, prepared, split)
    source = {"prepared": str(prepared), "split": split or "test"} if prepared is not None else {}
    model = SearchModel(model_dir)
    weight, weight_source = _fusion_weight(model, fusion_weight)
    existing = store.read_manifest(out) if (out / store.MANIFEST).exists() else None
    if existing is not None:
        _check_compatible(out, existing, model, scan.root, token_dtype)
    elif out.exists() and (not out.is_dir() or not store.only_own_files(out)):
        raise SearchError(f"{out}: exists and is not an index (no {store.MANIFEST}); choose another --out")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with store.writer_lock(out):
            existing = store.read_manifest(out) if (out / store.MANIFEST).exists() else None
            if existing is not None:
                _check_compatible(out, existing, model, scan.root, token_dtype)
            store.remove_unreferenced(out, existing)  # what a killed run left
            if existing is None:
                existing = _fresh_manifest(model, scan, source, token_dtype or DEFAULT_TOKEN_DTYPE)
            try:
                return _update(
                    out, model, scan, existing, weight, weight_source, global_kind, batch_size, shard_size,
                    progress,
                )  # fmt: skip
            except BaseException:
                if created and not (out / store.MANIFEST).exists():  # a first run that wrote no index
                    store.remove_unreferenced(out, None)
                    (out / store.LOCK).unlink(missing_ok=True)  # still held: no other writer is in
                raise
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _indexed_rows(out: Path, manifest: dict) -> dict[str, tuple[int, int, int, int]]:
    """path -> (size, mtime_ns, shard position, row) of every live row."""
    rows = {}
    for position, entry in enumerate(manifest["shards"]):
        files = store.open_shard(out, entry, manifest["embed_dim"], len(manifest["token_names"])).files
        dropped = set(entry.get("dropped", []))
        for row, (path, size, mtime_ns) in enumerate(files):
            if row not in dropped:
                rows[path] = (size, mtime_ns, position, row)
    return rows


def _update(
    out: Path,
    model: SearchModel,
    scan: Scan,
    manifest: dict,
    weight: float,
    weight_source: str,
    global_kind: str,
    batch_size: int,
    shard_size: int,
    progress: bool | None,
) -> IndexReport:
    report = IndexReport(str(out), skipped=list(scan.skipped), ignored=sum(scan.ignored.values()))
    indexed = _indexed_rows(out, manifest)
    wanted = {f.path: f for f in scan.files}
    to_encode: list[ImageFile] = []
    drop: dict[int, set[int]] = {}
    for path, (size, mtime_ns, position, row) in indexed.items():
        current = wanted.get(path)
        if current is not None and current.key() == (size, mtime_ns):
            report.kept += 1
            continue
        drop.setdefault(position, set()).add(row)
        if current is None:
            report.removed += 1
    for file in scan.files:
        if file.path not in indexed:
            to_encode.append(file)
        elif indexed[file.path][:2] != file.key():
            to_encode.append(file)
    has_faiss = manifest.get("global_index") is not None
    if (
        not drop
        and not to_encode
        and manifest.get("fusion_weight") == weight
        and has_faiss == global_search.wanted(global_kind, report.kept)
    ):  # up to date: nothing is written
        report.rows = report.kept
        report.global_search = "faiss" if has_faiss else "exact"
        _log_skipped(report)
        return report

    manifest = dict(manifest)
    manifest["generation"] = generation = manifest["generation"] + 1
    manifest["fusion_weight"], manifest["fusion_weight_source"] = weight, weight_source
    shards = []
    for position, entry in enumerate(manifest["shards"]):
        dropped = sorted(set(entry.get("dropped", [])) | drop.get(position, set()))
        if len(dropped) < entry["rows"]:  # a shard without live rows leaves the manifest
            shards.append({**entry, "dropped": dropped})
    manifest["shards"] = shards
    rows_before = sum(s["rows"] - len(s["dropped"]) for s in shards)
    if drop or to_encode:
        manifest["global_index"] = None  # rebuilt at the end, over the new rows

    def commit() -> None:
        manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        store.write_manifest(out, manifest)

    encoded = _encode_files(
        out,
        model,
        scan.root,
        to_encode,
        batch_size,
        shard_size,
        generation,
        report,
        manifest,
        commit,
        progress,
    )
    report.rows = rows_before + len(encoded)
    report.changed = sum(path in indexed for path in encoded)
    report.added = len(encoded) - report.changed
    if report.rows == 0:
        _log_skipped(report)
        raise _nothing_indexed(out, report, len(scan.files))
    _global_index(out, manifest, global_kind, generation, report)
    commit()
    store.remove_unreferenced(out, manifest)
    _log_skipped(report)
    return report


def _log_skipped(report: IndexReport) -> None:
    for path, reason in report.skipped:
        log.warning("skipped %s: %s", printable(path), reason)


def _nothing_indexed(out: Path, report: IndexReport, files: int) -> Exception:
    """The error of a run that indexed no image: why, with the first files' reasons (all are logged)."""
    reasons = "; ".join(f"{printable(path)}: {reason}" for path, reason in report.skipped[:3])
    more = f"; {len(report.skipped) - 3} more listed above" if len(report.skipped) > 3 else ""
    message = f"{out}: none of the {files} images could be indexed ({reasons}{more}); the index is unchanged"
    non_finite = [reason for _, reason in report.skipped if reason.startswith(NON_FINITE)]
    if non_finite and len(non_finite) == len(report.skipped):  # the model, not the images
        return NonFiniteError(message)
    return SearchError(message)


def _encode_files(
    out, model, root, files, batch_size, shard_size, generation, report, manifest, commit, progress
) -> list[str]:
    """Decode and encode `files` in batches, writing a shard (and committing) every `shard_size` rows;
    returns the paths encoded (the others are in report.skipped)."""
    pending: dict[str, list] = {"global": [], "tokens": [], "files": []}
    written: list[str] = []
    shards_written = 0
    started = time.perf_counter()

    def flush() -> None:
        nonlocal shards_written
        if not pending["files"]:
            return
        name = f"shard-{generation:06d}-{shards_written:05d}.safetensors"
        shards_written += 1
        store.write_shard(
            out / name,
            np.concatenate(pending["global"]),
            np.concatenate(pending["tokens"]),
            pending["files"],
            manifest["token_dtype"],
        )
        rows = len(pending["files"])
        manifest["shards"].append({"file": name, "rows": rows, "dropped": []})
        written.extend(f[0] for f in pending["files"])
        for value in pending.values():
            value.clear()
        commit()

    bar = tqdm(total=len(files), desc="index images", unit="img", disable=progress is False or None)
    try:
        for start in range(0, len(files), batch_size):
            batch, images = [], []
            decode_started = time.perf_counter()
            for file in files[start : start + batch_size]:
                try:
                    images.append(model.load_image(root / file.path))
                    batch.append(file)
                except (DataError, OSError, ValueError) as err:
                    report.skipped.append((file.path, _reason(err, root / file.path)))
            report.decode_seconds += time.perf_counter() - decode_started
            if images:
                global_feats, tokens = model.encode_images(torch.stack(images))
                stored = tokens.numpy().astype(store.TOKEN_DTYPES[manifest["token_dtype"]])
                finite = _finite_rows(global_feats.numpy(), stored)
                for file, ok in zip(batch, finite, strict=True):
                    if ok:
                        pending["files"].append([file.path, file.size, file.mtime_ns])
                    else:
                        report.skipped.append((file.path, f"{NON_FINITE} (the model's output)"))
                pending["global"].append(global_feats.numpy()[finite])
                pending["tokens"].append(stored[finite])
            bar.update(len(files[start : start + batch_size]))
            if len(pending["files"]) >= shard_size:
                flush()
        flush()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return written


def _finite_rows(global_feats: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """[B] bool: rows whose global features and tokens (as stored: float16 can overflow) are all finite."""
    return np.isfinite(global_feats).all(axis=1) & np.isfinite(tokens.reshape(len(tokens), -1)).all(axis=1)


def _reason(err: Exception, path: Path) -> str:
    text = one_line(err)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _global_index(out: Path, manifest: dict, kind: str, generation: int, report: IndexReport) -> None:
    """Build the FAISS index over the live rows when the gallery calls for one; otherwise exact search."""
    if not global_search.wanted(kind, report.rows):
        manifest["global_index"] = None
        report.global_search = "exact"
        return
    if manifest.get("global_index") is None:
        global_search.build_global_index(out, manifest, generation)
    info = manifest["global_index"]
    report.global_search = f"faiss {info['factory']}, nprobe {info['nprobe']}"

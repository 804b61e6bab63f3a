"""The search tool's speed and memory (issue: person search as a tool), query text encoding included.

    python -m benchmarks.search_speed [--model models/main] [--work /tmp/acsa_search_bench]
        [--sections build query serve scale fp16] [--gallery-ids 2500] [--queries 500] [--clients 8]
        [--load-queries 3000] [--scale-images 1000000] [--out benchmarks/results/search_speed.json]

Sections (each a few rows of the table):
  build  generates a synthetic benchmark of `--gallery-ids` x 4 images (10,000 by default; the pipeline's
         generator, seed 1) and indexes all of it with `acsa index`'s library call: images per second and
         the share spent decoding files.
  query  `--queries` captions of that benchmark, one at a time, against the 10k index (SearchIndex.search:
         noun phrases, text encoder, global top-100, exact local score, fusion): p50 / p95 / mean. "cold"
         clears the text encoder's phrase cache before every query (every phrase encoded); "warm" keeps it
         (a server's steady state: phrases recur across queries; the caption itself is always encoded).
         Before / after in the same process: each caption is searched with each text path that applies
         (acsa.search.query_text.PATHS: the caption and its new phrases in one forward run by ONNX Runtime,
         or by PyTorch; and the path before, a PyTorch forward for the caption and another for the phrases)
         in turn, the order rotating from one caption to the next, so that load on shared cores falls on
         all alike. The main rows are the default path's; the rows "(path: ...)" the others'.
         `--baseline-ref REV` also runs REV's own query section (its whole code, git archive) on the same
         index, after this one.
  serve  `acsa serve` on the 10k index in its own process on 127.0.0.1, `--clients` concurrent clients
         sending `--load-queries` distinct captions in all (stops by itself, also after `--load-seconds`):
         throughput, p50 / p95 / p99, errors, and the server's resident memory after warm-up and at the end.
  scale  `--scale-images` images with synthesised features (benchmarks/problems.py's formula, as
         benchmarks/scaling.py: identity prototypes of attribute embeddings + noise; 10 images per identity,
         7 random tokens each) written in the index format, FAISS built as `acsa index` does; then, in a
         fresh process: `--scale-queries` real captions through SearchIndex.search (p50 / p95), FAISS
         recall@100 against exact global search on `--recall-queries` synthesised captions (also for each
         of `--nprobes`), and the process's peak resident memory after the queries (what searching needs;
         the exact baseline of the recall, every feature in memory, is reported apart).
  fp16   float32 vs float16 token storage on the prepared synthetic test split (every caption, all images
         candidates): share of queries whose top-10 list is identical, top-1 identical, R@1 of each.

Run on a quiet machine: the figures are latencies of 2 cores. The work folder keeps the generated benchmark,
indexes and synthetic features between runs (`--fresh` rebuilds them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO, RESULTS, format_table, machine_info, run_worker, write_json

log = logging.getLogger(__name__)

GOALS = {
    "10k p50 ms": 30.0,
    "10k p95 ms": 60.0,
    "1M p95 ms": 150.0,
    "1M recall@100": 0.95,
    "1M peak RSS GB": 4.0,
}


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "n": int(ms.size),
    }


# ---- build: a 10k-image synthetic gallery, indexed --------------------------------------------------------


def gallery(work: Path, ids: int, fresh: bool) -> tuple[Path, list[str]]:
    """A synthetic benchmark of `ids` x 4 images (seed 1: not the pipeline's own images); its captions."""
    from acsa.config.sections import SyntheticConfig
    from acsa.data.synthetic import generate_synthetic

    folder = work / f"gallery-{ids}"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if not (folder / "reid_raw.json").is_file():
        val = max(1, ids // 20)
        cfg = replace(SyntheticConfig(), train_ids=max(1, ids - 2 * val), val_ids=val, test_ids=val, seed=1)
        tmp = work / f".gallery-{ids}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        generate_synthetic(tmp, cfg)
        tmp.rename(folder)
    records = json.loads((folder / "reid_raw.json").read_text())
    return folder / "imgs", [c for r in records for c in r["captions"]]


def section_build(args, images: Path) -> dict[str, Any]:
    from acsa.search.api import build_index

    out = args.work / f"index-{args.gallery_ids}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    report = build_index(args.model, out, images=images, progress=False)
    total = time.perf_counter() - started
    return {
        "images": report.rows,
        "images_per_s": report.images_per_second,
        "decode_share": report.decode_seconds / report.seconds,
        "encode_loop_s": report.seconds,
        "total_s_incl_model_load": total,
    }


# ---- query: latency on the 10k index ----------------------------------------------------------------------


def section_query(args, captions: list[str]) -> dict[str, Any]:
    from acsa.search.api import SearchIndex

    index = SearchIndex.open(args.work / f"index-{args.gallery_ids}")
    index.model.warm_up()
    rng = np.random.default_rng(0)
    chosen = [
        captions[i] for i in rng.choice(len(captions), size=min(args.queries, len(captions)), replace=False)
    ]
    from acsa.search.query_text import PATHS

    text = index.model.text
    default = text.path
    paths = [default] + [p for p in PATHS if p != default and text._applies(p)]

    def timed(call, caption: str, mode: str, path: str) -> float:
        text.path = path
        if mode == "cold":
            text.forget_phrases()
        started = time.perf_counter()
        call(caption)
        return time.perf_counter() - started

    out: dict[str, Any] = {"images": len(index), "text_path": default}
    for mode in ("cold", "warm"):
        seconds: dict[str, list[float]] = {path: [] for path in paths}
        encode: dict[str, list[float]] = {path: [] for path in paths}
        for number, caption in enumerate(chosen):
            shift = number % len(paths)  # each path first in turn
            for path in paths[shift:] + paths[:shift]:
                seconds[path].append(timed(lambda c: index.search(c, top_k=10), caption, mode, path))
                if number < 100:  # the text side alone, same cache state
                    encode[path].append(timed(index.model.encode_query, caption, mode, path))
        by_path = {
            path: percentiles(seconds[path]) | {"encode_p50_ms": percentiles(encode[path])["p50_ms"]}
            for path in paths
        }
        out[mode] = by_path[default] | {"paths": by_path}
    text.path = default
    return out


def baseline_query(args) -> dict[str, Any]:
    """The query section of revision `--baseline-ref` (its own code, exported with git archive) on the same
    index, in a process of its own."""
    from benchmarks.common import worker_env
    from benchmarks.train_speed import export_revision

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "code").mkdir()
        root = export_revision(args.baseline_ref, Path(tmp) / "code")
        out = Path(tmp) / "baseline.json"
        command = [sys.executable, "-m", "benchmarks.search_speed", "--sections", "query"]
        command += [f"--work={args.work.resolve()}", f"--model={args.model.resolve()}", f"--out={out}"]
        command += [f"--threads={args.threads}", f"--gallery-ids={args.gallery_ids}"]
        command += [f"--queries={args.queries}"]
        done = subprocess.run(
            command, cwd=root, env=worker_env(None, root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:  # e.g. an older revision that cannot read this model: say so, keep the rest
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            log.warning("baseline %s failed (exit %d): %s", args.baseline_ref, done.returncode, last)
            return {"error": f"exit {done.returncode}: {last}"}
        return json.loads(out.read_text())["query"]


# ---- serve: a bounded load test on loopback ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def section_serve(args, captions: list[str]) -> dict[str, Any]:
    import httpx
    import psutil

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    index = args.work / f"index-{args.gallery_ids}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acsa",
            "serve",
            "--index",
            str(index),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("acsa serve did not come up within 2 minutes")
            time.sleep(0.2)
        process = psutil.Process(server.pid)
        rng = np.random.default_rng(1)
        queries = [captions[i] for i in rng.permutation(len(captions))[: args.load_queries]]
        warmup = queries[: max(1, len(queries) // 10)]
        with httpx.Client(base_url=base, timeout=30) as client:
            for query in warmup[: args.clients * 2]:  # phrase cache and allocator warm
                client.get("/api/search", params={"q": query, "k": 10})
        rss = {"after_warmup_mb": process.memory_info().rss / 2**20}
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append(process.memory_info().rss / 2**20)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        cursor = iter(range(len(queries)))
        end_by = time.monotonic() + args.load_seconds

        def client_loop() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while time.monotonic() < end_by:
                    with lock:
                        i = next(cursor, None)
                    if i is None:
                        return
                    started = time.perf_counter()
                    try:
                        reply = client.get("/api/search", params={"q": queries[i], "k": 10})
                        ok = reply.status_code == 200 and len(reply.json()["results"]) == 10
                        problem = None if ok else f"{reply.status_code}: {reply.text[:100]}"
                    except httpx.HTTPError as err:
                        problem = f"{type(err).__name__}: {err}"
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        if problem:
                            errors.append(problem)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            for future in [pool.submit(client_loop) for _ in range(args.clients)]:
                future.result()
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        rss["end_mb"] = process.memory_info().rss / 2**20
        rss["max_mb"] = max(samples + [rss["end_mb"]])
        first_tenth = samples[: max(1, len(samples) // 10)]
        rss["growth_after_first_tenth_mb"] = rss["end_mb"] - (
            max(first_tenth) if first_tenth else rss["end_mb"]
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "clients": args.clients,
        "queries": len(latencies),
        "seconds": wall,
        "throughput_qps": len(latencies) / wall,
        **percentiles(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "rss": rss,
    }


# ---- scale: synthesised features of a million images ------------------------------------------------------


def synthesise_index(args, model) -> Path:
    """Write `--scale-images` images of synthesised features in the index format (same model identity, so
    SearchIndex opens it with the real model); returns the folder. Kept between runs."""
    from acsa.search import global_search, store

    out = args.work / f"scale-{args.scale_images}"
    meta = out / "synthesis.json"
    if meta.is_file() and not args.fresh:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    problem = ScaleProblem(args.scale_images, model.embed_dim)
    num_tokens = len(model.token_names)
    shards = []
    generator = torch.Generator().manual_seed(1)
    for number, start in enumerate(range(0, args.scale_images, 65536)):
        rows = min(65536, args.scale_images - start)
        global_feats = problem.images(start, rows)
        tokens = torch.randn(rows, num_tokens, model.embed_dim, generator=generator).numpy()
        files = [[f"synthetic/{i:07d}.jpg", 1, 0] for i in range(start, start + rows)]
        name = f"shard-000001-{number:05d}.safetensors"
        store.write_shard(out / name, global_feats, tokens, files, args.token_dtype)
        shards.append({"file": name, "rows": rows, "dropped": []})
    manifest = {
        "format": store.FORMAT,
        "version": store.VERSION,
        "generation": 1,
        "model": model.describe(),
        "images": {"root": str(out / "images")},
        "embed_dim": model.embed_dim,
        "token_names": model.token_names,
        "token_layout": model.token_layout,
        "token_dtype": args.token_dtype,
        "shards": shards,
        "global_index": None,
        "fusion_weight": 1.0,
        "fusion_weight_source": "benchmark",
    }
    started = time.perf_counter()
    global_search.build_global_index(out, manifest, 1)
    build_s = time.perf_counter() - started
    store.write_manifest(out, manifest)
    write_json(
        meta, {"images": args.scale_images, "faiss_build_s": build_s, "faiss": manifest["global_index"]}
    )
    return out


class ScaleProblem:
    """benchmarks/problems.py's global features, generated in blocks: identity prototypes (sums of attribute
    embeddings + an identity part, unit norm) + noise of norm GLOBAL_NOISE, for images and captions alike."""

    def __init__(self, images: int, dim: int, per_identity: int = 10, seed: int = 0) -> None:
        from benchmarks.problems import IDENTITY_PART, VOCABULARY, _attribute_table, _noise, _unit

        self.images_total = images
        self.ids = max(1, images // per_identity)
        generator = torch.Generator().manual_seed(seed)
        table = torch.from_numpy(_attribute_table(self.ids, seed))
        vocab = sum(len(v) for v in VOCABULARY.values())
        present = table >= 0
        global_vocab = _noise((vocab + 1, dim), 1.0, generator)
        safe = torch.where(present, table, vocab)
        identity = _noise((self.ids, dim), 1.0, generator)
        self.prototype = _unit(
            (global_vocab[safe] * present.float()[..., None]).sum(1) + IDENTITY_PART * identity
        )
        self.dim = dim
        self.seed = seed

    def _noisy(self, identities: torch.Tensor, seed: int) -> np.ndarray:
        from benchmarks.problems import GLOBAL_NOISE, _noise

        generator = torch.Generator().manual_seed(seed)
        feats = self.prototype[identities] + _noise((len(identities), self.dim), GLOBAL_NOISE, generator)
        return torch.nn.functional.normalize(feats, dim=-1).numpy()

    def images(self, start: int, rows: int) -> np.ndarray:
        identities = torch.arange(start, start + rows) * self.ids // self.images_total
        return self._noisy(identities, 1_000_000 + start)

    def captions(self, count: int) -> np.ndarray:
        identities = torch.randint(0, self.ids, (count,), generator=torch.Generator().manual_seed(7))
        return self._noisy(identities, 7)


def scale_worker(args) -> dict[str, Any]:
    """In a fresh process: open the million-image index, time real queries, measure recall, peak RSS."""
    import resource

    from acsa.search import store
    from acsa.search.api import SearchIndex

    out = Path(args.scale_index)
    started = time.perf_counter()
    index = SearchIndex.open(out)
    open_s = time.perf_counter() - started
    index.model.warm_up()
    captions = json.loads(Path(args.captions_file).read_text())
    seconds = []
    for caption in captions[: args.scale_queries]:
        index.model.text.forget_phrases()  # cold: every phrase encoded
        t0 = time.perf_counter()
        index.search(caption, top_k=10)
        seconds.append(time.perf_counter() - t0)
    # the search's own high-water mark: the exact baseline below (every feature in memory) is the
    # benchmark's instrument, not part of what a search needs
    search_peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    manifest = store.read_manifest(out)
    problem = ScaleProblem(args.scale_images, manifest["embed_dim"])
    queries = torch.from_numpy(problem.captions(args.recall_queries))
    exact = exact_top(out, manifest, queries, 100)

    def recall(nprobe: int | None) -> tuple[float, dict[str, float]]:
        if nprobe is not None:
            index.global_search.nprobe = nprobe
        global_s, recalls = [], []
        for q, want in zip(queries, exact, strict=True):
            t0 = time.perf_counter()
            _, rows = index.global_search.top(q, 100)
            global_s.append(time.perf_counter() - t0)
            recalls.append(len(set(rows.tolist()) & set(want.tolist())) / 100)
        return float(np.mean(recalls)), percentiles(global_s)

    default_nprobe = index.global_search.nprobe
    sweep = []
    for nprobe in sorted(set(args.nprobes or [])):
        if index.global_search.faiss_index is not None and nprobe <= manifest["global_index"]["nlist"]:
            value, timing = recall(nprobe)
            sweep.append({"nprobe": nprobe, "recall_at_100": value, "global_p95_ms": timing["p95_ms"]})
    recall_at_100, global_stage = recall(default_nprobe)
    return {
        "images": len(index),
        "open_s": open_s,
        "query": percentiles(seconds),
        "global_stage": global_stage,
        "recall_at_100": recall_at_100,
        "recall_queries": len(queries),
        "nprobe": default_nprobe,
        "nprobe_sweep": sweep,
        "peak_rss_gb": search_peak_gb,
        "peak_rss_gb_with_exact_baseline": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "global_search": index.global_search.kind,
    }


def exact_top(out: Path, manifest: dict, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Exact global top-k rows of each query [Q, D] over every shard, one shard at a time."""
    from acsa.search import store

    best_values = torch.full((len(queries), k), -np.inf)
    best_rows = torch.zeros(len(queries), k, dtype=torch.long)
    offset = 0
    for entry in manifest["shards"]:
        shard = store.open_shard(out, entry, manifest["embed_dim"], len(manifest["token_names"]))
        scores = queries @ torch.from_numpy(shard.global_feats.read()).T  # [Q, n]
        values = torch.cat([best_values, scores], dim=1)
        rows = torch.cat(
            [best_rows, torch.arange(offset, offset + entry["rows"]).expand(len(queries), -1)], 1
        )
        best_values, pick = values.topk(k, dim=1)
        best_rows = rows.gather(1, pick)
        offset += entry["rows"]
    return best_rows


def section_scale(args, captions: list[str]) -> dict[str, Any]:
    from acsa.search.model_access import SearchModel

    out = synthesise_index(args, SearchModel(args.model))
    captions_file = args.work / "scale_captions.json"
    rng = np.random.default_rng(2)
    chosen = [captions[i] for i in rng.choice(len(captions), size=min(args.scale_queries, len(captions)))]
    captions_file.write_text(json.dumps(chosen))
    result = run_worker(
        "benchmarks.search_speed",
        [
            "--section-worker=scale",
            f"--scale-index={out}",
            f"--captions-file={captions_file}",
            f"--scale-images={args.scale_images}",
            f"--scale-queries={args.scale_queries}",
            f"--recall-queries={args.recall_queries}",
            "--nprobes",
            *[str(n) for n in args.nprobes],
        ],
        in_process=args.in_process,
    )
    result["synthesis"] = json.loads((out / "synthesis.json").read_text())
    return result


# ---- fp16: does float16 token storage change rankings? ----------------------------------------------------


def section_fp16(args) -> dict[str, Any]:
    from acsa.data.prepared import load_prepared
    from acsa.search.api import SearchIndex, build_index

    split = load_prepared(args.prepared).split("test")
    lists = {}
    for dtype in ("float32", "float16"):
        out = args.work / f"fp16-check-{dtype}"
        shutil.rmtree(out, ignore_errors=True)
        build_index(args.model, out, prepared=args.prepared, split="test", token_dtype=dtype, progress=False)
        index = SearchIndex.open(out)
        lists[dtype] = [
            [r.key for r in index.search(c, top_k=10, candidates=len(index)).results]
            for c in split["captions"]
        ]
    identity = dict(zip(split["image_paths"], split["image_ids"], strict=True))

    def r1(tops: list[list[str]]) -> float:
        hits = [identity[t[0]] == pid for t, pid in zip(tops, split["caption_ids"], strict=True)]
        return 100.0 * float(np.mean(hits))

    a, b = lists["float32"], lists["float16"]
    return {
        "queries": len(a),
        "top10_identical": float(np.mean([x == y for x, y in zip(a, b, strict=True)])),
        "top1_identical": float(np.mean([x[0] == y[0] for x, y in zip(a, b, strict=True)])),
        "R1_float32": r1(a),
        "R1_float16": r1(b),
    }


# ---- the table --------------------------------------------------------------------------------------------


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []

    def add(measure: str, value: Any, goal: str = "", met: bool | None = None) -> None:
        rows.append({"measure": measure, "value": value, "goal": goal, "met": "" if met is None else met})

    if "build" in results:
        b = results["build"]
        add("index build, images/s (default model)", b["images_per_s"])
        add("index build, share decoding files", f"{100 * b['decode_share']:.0f}%")
    if "query" in results:
        q = results["query"]
        base = results.get("baseline_query")
        for mode in ("cold", "warm"):
            m = q[mode]
            name = f"{q['images']} images, {mode} phrases"
            add(f"{name}: query p50 ms", m["p50_ms"], "<= 30", m["p50_ms"] <= 30)
            add(f"{name}: query p95 ms", m["p95_ms"], "<= 60", m["p95_ms"] <= 60)
            add(f"{name}: text encoding p50 ms ({q.get('text_path', 'separate')})", m["encode_p50_ms"])
            for path, p in m.get("paths", {}).items():
                add(
                    f"{name} (path: {path}): query p50 / p95, text p50 ms; p50 x separate",
                    f"{p['p50_ms']:.1f} / {p['p95_ms']:.1f}, {p['encode_p50_ms']:.1f}; "
                    f"{p['p50_ms'] / m['paths']['separate']['p50_ms']:.2f}",
                )
            if base and "error" in base:
                add(f"{name} ({results['args']['baseline_ref']}, own process)", f"failed: {base['error']}")
            elif base:
                b = base[mode]
                add(
                    f"{name} ({results['args']['baseline_ref']}, own process): query p50 / p95, text p50 ms",
                    f"{b['p50_ms']:.1f} / {b['p95_ms']:.1f}, {b['encode_p50_ms']:.1f}",
                )
    if "serve" in results:
        s = results["serve"]
        add(f"server, {s['clients']} clients, {s['queries']} queries: throughput q/s", s["throughput_qps"])
        add("server p50 / p95 / p99 ms", f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['p99_ms']:.0f}")
        add("server errors", s["errors"], "0", s["errors"] == 0)
        rss = s["rss"]
        add(
            "server RSS MB: after warm-up / max / end",
            f"{rss['after_warmup_mb']:.0f} / {rss['max_mb']:.0f} / {rss['end_mb']:.0f}",
            "flat",
            rss["growth_after_first_tenth_mb"] < 50,
        )
    if "scale" in results:
        s = results["scale"]
        n = s["images"]
        add(f"{n} images: query p50 ms (cold phrases)", s["query"]["p50_ms"])
        add(
            f"{n} images: query p95 ms (cold phrases)",
            s["query"]["p95_ms"],
            "<= 150",
            s["query"]["p95_ms"] <= 150,
        )
        add(f"{n} images: global stage p95 ms ({s['global_search']})", s["global_stage"]["p95_ms"])
        add(f"{n} images: recall@100 vs exact", s["recall_at_100"], ">= 0.95", s["recall_at_100"] >= 0.95)
        add(f"{n} images: peak RSS GB", s["peak_rss_gb"], "<= 4", s["peak_rss_gb"] <= 4)
        add(f"{n} images: peak RSS GB with the exact baseline", s["peak_rss_gb_with_exact_baseline"])
        add(
            f"{n} images: FAISS build s ({s['synthesis']['faiss']['factory']})",
            s["synthesis"]["faiss_build_s"],
        )
        for point in s["nprobe_sweep"]:
            add(
                f"{n} images: nprobe {point['nprobe']}: recall@100 / global p95 ms",
                f"{point['recall_at_100']:.3f} / {point['global_p95_ms']:.1f}",
            )
    if "fp16" in results:
        f = results["fp16"]
        add(
            f"float16 tokens: identical top-10 lists ({f['queries']} queries)",
            f"{100 * f['top10_identical']:.1f}%",
        )
        add("float16 tokens: identical top-1", f"{100 * f['top1_identical']:.1f}%")
        add("R@1 float32 / float16", f"{f['R1_float32']:.2f} / {f['R1_float16']:.2f}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=REPO / "models" / "main")
    p.add_argument("--prepared", type=Path, default=REPO / "data" / "prepared", help="for the fp16 section")
    p.add_argument("--work", type=Path, default=Path("/tmp/acsa_search_bench"))
    p.add_argument("--sections", nargs="+", default=["build", "query", "serve", "scale", "fp16"])
    p.add_argument("--fresh", action="store_true", help="regenerate the gallery and the synthesised index")
    p.add_argument("--gallery-ids", type=int, default=2500, help="identities x 4 images (2500: 10,000)")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--load-queries", type=int, default=3000)
    p.add_argument("--load-seconds", type=float, default=600.0, help="the load test stops after this anyway")
    p.add_argument("--scale-images", type=int, default=1_000_000)
    p.add_argument("--scale-queries", type=int, default=200)
    p.add_argument("--recall-queries", type=int, default=200)
    p.add_argument("--nprobes", type=int, nargs="*", default=[100, 300, 500, 800], help="scale: recall sweep")
    p.add_argument("--token-dtype", default="float32", choices=("float32", "float16"), help="scale section")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--baseline-ref",
        default=None,
        metavar="REV",
        help="query section: also run revision REV's own (git archive), on the same index, for before/after",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "search_speed.json")
    p.add_argument("--in-process", action="store_true", help="run the scale worker in this process (tests)")
    p.add_argument("--worker-result", help=argparse.SUPPRESS)
    p.add_argument("--section-worker", help=argparse.SUPPRESS)
    p.add_argument("--scale-index", help=argparse.SUPPRESS)
    p.add_argument("--captions-file", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of the load test
    torch.set_num_threads(args.threads)
    if args.worker_result:
        write_json(args.worker_result, scale_worker(args))
        return {}
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine_at_start": machine_info(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    images, captions = (None, [])
    if {"build", "query", "serve", "scale"} & set(args.sections):
        images, captions = gallery(args.work, args.gallery_ids, args.fresh)
    if "build" in args.sections or not (args.work / f"index-{args.gallery_ids}" / "manifest.json").is_file():
        if {"build", "query", "serve"} & set(args.sections):
            results["build"] = section_build(args, images)
    if "query" in args.sections:
        results["query"] = section_query(args, captions)
        if args.baseline_ref:
            results["baseline_query"] = baseline_query(args)
    if "serve" in args.sections:
        results["serve"] = section_serve(args, captions)
    if "scale" in args.sections:
        results["scale"] = section_scale(args, captions)
    if "fp16" in args.sections:
        results["fp16"] = section_fp16(args)
    results["machine_at_end"] = machine_info()
    results["rows"] = rows_of(results)
    print(format_table(results["rows"], ["measure", "value", "goal", "met"]))
    print(f"machine: {results['machine_at_start']}; load at end {results['machine_at_end']['load_average']}")
    print(f"written {write_json(args.out, results)}")
    return results


if __name__ == "__main__":
    main()

"""The search tool (acsa.search, `acsa index` / `acsa search`) on the smoke pipeline's model and images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from acsa.__main__ import cli
from acsa.data.prepared import load_prepared
from acsa.model.features import TextFeatures
from acsa.search import store
from acsa.search.api import SearchError, SearchIndex, build_index

REPO = Path(__file__).resolve().parents[1]


def test_split(smoke_run: Path) -> dict:
    return load_prepared(smoke_run / "prepared").split("test")


def test_images(smoke_run: Path) -> list[Path]:
    root = load_prepared(smoke_run / "prepared").image_root("test")
    return [root / p for p in test_split(smoke_run)["image_paths"]]


test_images.__test__ = test_split.__test__ = False  # helpers, not tests


def folder_of_images(smoke_run: Path, folder: Path, copies: int = 1) -> list[Path]:
    """The smoke test images as a folder (nested, hard links when `copies` > 1 make a larger one)."""
    made = []
    for i, source in enumerate(test_images(smoke_run)):
        for c in range(copies):
            target = folder / f"part{i % 2}" / f"{source.stem}_{c}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            if c == 0:
                shutil.copy2(source, target)
            else:
                os.link(folder / f"part{i % 2}" / f"{source.stem}_0.png", target)
            made.append(target)
    return made


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of an index folder and the SHA-256 of its bytes."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture(scope="module")
def test_index(smoke_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "index"
    build_index(smoke_run / "model", out, prepared=smoke_run / "prepared", split="test", progress=False)
    return out


def test_search_ranks_each_captions_identity_where_the_evaluation_does(smoke_run: Path, test_index: Path):
    """With every image a candidate, the tool ranks every test caption's own identity where the evaluate
    stage ranks it (the first match's rank, caption by caption), under the weight training chose on
    validation. The smoke model (2 epochs, 16 identities) ranks near chance, so how near the top the own
    identity lands is left to the trained model: benchmarks/search_speed.py's fp16 section measures R@1
    through the tool on the synthetic test split."""
    metrics = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    rankings = json.loads((smoke_run / "eval" / "rankings.json").read_text())
    split = test_split(smoke_run)
    index = SearchIndex.open(test_index)
    assert index.fusion_weight == metrics["fusion_weight"]
    identity = dict(zip(split["image_paths"], split["image_ids"], strict=True))
    first_match = []
    for q, caption in enumerate(split["captions"]):
        response = index.search(caption, top_k=len(index), candidates=len(index))
        assert [r.key for r in response.results][0] == split["image_paths"][rankings[q]["top"][0]]
        ranks = [identity[r.key] == split["caption_ids"][q] for r in response.results]
        first_match.append(ranks.index(True) + 1)
        assert first_match[-1] == rankings[q]["first_match_rank"]
        for r in response.results:
            assert r.fused == pytest.approx(r.global_ + index.fusion_weight * r.local, abs=1e-4)
    assert len(first_match) == len(split["captions"])


def test_results_carry_scores_paths_and_attention(test_index: Path):
    index = SearchIndex.open(test_index)
    response = index.search("a man in a red shirt with a black backpack", top_k=3, attention=True)
    assert response.phrases == ["man", "red shirt", "black backpack"]
    assert len(response.results) == 3
    fused = [r.fused for r in response.results]
    assert fused == sorted(fused, reverse=True)
    layout = response.token_layout
    for result in response.results:
        assert Path(result.path).is_file() and result.path.endswith(result.key)
        attention = np.asarray(result.attention)  # [P, R]
        assert attention.shape == (3, len(layout))
        np.testing.assert_allclose(attention.sum(axis=0), 1.0, atol=1e-3)  # softmax over phrases
        assert set(result.to_dict()) == {"path", "global", "local", "fused", "attention"}
    assert {t["kind"] for t in layout} >= {"region", "window", "pooled"}


def test_search_command_prints_table_json_and_csv(test_index: Path, capsys):
    query = "a woman in a blue coat"
    cli(["search", "--index", str(test_index), query, "--top-k", "4", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and set(rows[0]) == {"path", "global", "local", "fused"}
    cli(["search", "--index", str(test_index), query, "--top-k", "4", "--format", "csv"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "rank,path,global,local,fused" and len(lines) == 5
    cli(["search", "--index", str(test_index), query, "--top-k", "2"])
    out = capsys.readouterr().out
    assert "phrases: woman, blue coat" in out and rows[0]["path"] in out


def test_incremental_reindex_encodes_only_new_and_changed_files(smoke_run: Path, tmp_path: Path):
    folder, out = tmp_path / "photos", tmp_path / "index"
    images = folder_of_images(smoke_run, folder)
    for extra in images[6:]:
        extra.unlink()
    model = smoke_run / "model"
    first = build_index(model, out, images=folder, progress=False)
    assert (first.added, first.rows) == (6, 6)
    again = build_index(model, out, images=folder, progress=False)  # nothing changed: nothing written
    assert (again.added, again.changed, again.removed, again.kept) == (0, 0, 0, 6)
    before = SearchIndex.open(out)
    kept_key = "part1/" + images[1].name
    kept_tokens = before.tokens(torch.tensor([before.row_of_key[kept_key]]))

    sources = test_images(smoke_run)
    shutil.copy2(sources[6], folder / "part0" / "new_a.png")
    (folder / "deeper").mkdir()
    shutil.copy2(sources[7], folder / "deeper" / "new_b.png")
    changed = images[0]
    shutil.copyfile(sources[7], changed)  # other bytes, other size or time
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    images[2].unlink()
    update = build_index(model, out, images=folder, progress=False)
    assert (update.added, update.changed, update.removed, update.kept, update.rows) == (2, 1, 1, 4, 7)

    after = SearchIndex.open(out)
    assert sorted(after.keys) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    torch.testing.assert_close(after.tokens(torch.tensor([after.row_of_key[kept_key]])), kept_tokens)
    fresh = SearchIndex.open(_fresh(model, folder, tmp_path / "fresh"))
    query = "a person in a green jacket"
    got = [(r.key, round(r.fused, 3)) for r in after.search(query, top_k=7).results]
    want = [(r.key, round(r.fused, 3)) for r in fresh.search(query, top_k=7).results]
    # two files hold the same image (sources[7]): their exactly tied scores rank by index row, which differs
    # between an updated index and a fresh one
    assert sorted(got, key=lambda x: (-x[1], x[0])) == sorted(want, key=lambda x: (-x[1], x[0]))
    assert set(store.remove_unreferenced(out, store.read_manifest(out))) == set()  # no orphans left


def _fresh(model: Path, folder: Path, out: Path) -> Path:
    build_index(model, out, images=folder, progress=False)
    return out


def test_kill_mid_index_leaves_a_usable_index_and_the_next_run_continues(smoke_run: Path, tmp_path: Path):
    folder, out = tmp_path / "photos", tmp_path / "index"
    images = folder_of_images(smoke_run, folder, copies=60)  # 480 files
    command = [
        sys.executable,
        "-m",
        "acsa",
        "index",
        "--model",
        str(smoke_run / "model"),
        "--images",
        str(folder),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--shard-size",
        "8",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    manifest = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            manifest = store.read_manifest(out)
        except SearchError:
            manifest = None
        if manifest is not None and len(manifest["shards"]) >= 3:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert manifest is not None, "the indexer wrote no shard within 2 minutes"
    partial = SearchIndex.open(out)  # usable as it is
    assert 24 <= len(partial) < len(images), "the kill should land mid-run"
    assert partial.search("a man in a black coat", top_k=3).results

    resumed = build_index(smoke_run / "model", out, images=folder, batch_size=4, shard_size=8, progress=False)
    assert resumed.kept == len(partial) and resumed.added == len(images) - len(partial)
    final = SearchIndex.open(out)
    assert sorted(final.keys) == sorted(p.relative_to(folder).as_posix() for p in images)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_unreadable_files_are_skipped_and_listed(smoke_run: Path, tmp_path: Path, capsys, caplog):
    folder, out = tmp_path / "photos", tmp_path / "index"
    folder_of_images(smoke_run, folder)
    good = test_images(smoke_run)[0].read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "not_an_image.jpg").write_text("hello")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    (folder / "empty.webp").write_bytes(b"")
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a folder symlink loop
    (folder / "a.png").symlink_to(folder / "b.png")  # a file symlink loop
    (folder / "b.png").symlink_to(folder / "a.png")
    (folder / "dangling.png").symlink_to(folder / "missing.png")
    cli(["index", "--model", str(smoke_run / "model"), "--images", str(folder), "--out", str(out)])
    summary = capsys.readouterr().out
    assert "8 images (8 added" in summary and "skipped 7" in summary and "ignored 1" in summary
    reasons = {}  # the warnings name each skipped file and why
    for record in caplog.records:
        if record.getMessage().startswith("skipped "):
            path, reason = record.getMessage().removeprefix("skipped ").split(": ", 1)
            reasons[path] = reason
    assert reasons["loop"].startswith("symlink to a folder already walked")
    assert reasons["a.png"] == reasons["b.png"] == "symlink loop"
    assert reasons["dangling.png"] == "broken symlink"
    assert reasons["truncated.png"].startswith("unreadable image")
    assert reasons["not_an_image.jpg"].startswith("unreadable image")
    assert reasons["empty.webp"].startswith("unreadable image")


def _exit_2(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_bad_queries_are_one_line_errors(test_index: Path, capsys):
    search = ["search", "--index", str(test_index)]
    before = snapshot(test_index)
    cases = {
        "": "empty",
        "   \t ": "empty",
        "of the and": "no noun phrase",
        "a" * 10_000: "10000 characters",
        "a man in a red \udcff\udcfe shirt": "not valid UTF-8",  # undecodable bytes on a command line
    }
    for query, reason in cases.items():
        assert reason in _exit_2(capsys, [*search, query])
    for k in ("0", "-3", "1000000000"):
        assert "top-k must be between 1 and 1000" in _exit_2(capsys, [*search, "a red coat", "--top-k", k])
    assert snapshot(test_index) == before


def test_missing_corrupt_and_foreign_indexes_are_refused(
    smoke_run: Path, test_index: Path, tmp_path: Path, capsys
):
    query = ["a man in a red coat"]
    assert "no index there" in _exit_2(capsys, ["search", "--index", str(tmp_path / "nowhere"), *query])
    broken = tmp_path / "broken"
    shutil.copytree(test_index, broken)
    (broken / store.MANIFEST).write_text("{not json")
    assert "corrupt index manifest" in _exit_2(capsys, ["search", "--index", str(broken), *query])
    shutil.rmtree(broken)
    shutil.copytree(test_index, broken)
    shard = next(broken.glob("shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:1000])
    assert "corrupt index file" in _exit_2(capsys, ["search", "--index", str(broken), *query])
    shard.unlink()
    assert "missing index shard" in _exit_2(capsys, ["search", "--index", str(broken), *query])

    other_model = tmp_path / "other_model"
    other_model.mkdir()
    # the same model file with one letter of its metadata changed: another identity
    data = (
        (smoke_run / "model" / "model.safetensors")
        .read_bytes()
        .replace(b"resumed_after_epoch", b"resumed_after_epocH", 1)
    )
    (other_model / "model.safetensors").write_bytes(data)
    before = snapshot(test_index)
    message = _exit_2(
        capsys,
        [
            "index",
            "--model",
            str(other_model),
            "--prepared",
            str(smoke_run / "prepared"),
            "--out",
            str(test_index),
        ],
    )
    assert str(other_model.resolve()) in message and str((smoke_run / "model").resolve()) in message
    message = _exit_2(capsys, ["search", "--index", str(test_index), "--model", str(other_model), *query])
    assert "was built with model" in message
    assert snapshot(test_index) == before


def test_folder_without_images_changes_nothing(smoke_run: Path, test_index: Path, tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "index"
    model = str(smoke_run / "model")
    assert "no images found" in _exit_2(
        capsys, ["index", "--model", model, "--images", str(empty), "--out", str(out)]
    )
    assert not out.exists()
    assert "no such folder" in _exit_2(
        capsys, ["index", "--model", model, "--images", str(tmp_path / "missing"), "--out", str(out)]
    )
    before = snapshot(test_index)
    assert "no images found" in _exit_2(
        capsys, ["index", "--model", model, "--images", str(empty), "--out", str(test_index)]
    )
    assert snapshot(test_index) == before


def test_faiss_global_stage_agrees_with_exact_search(smoke_run: Path, tmp_path: Path):
    folder = tmp_path / "photos"
    folder_of_images(smoke_run, folder, copies=5)
    model = smoke_run / "model"
    exact = SearchIndex.open(_fresh(model, folder, tmp_path / "exact"))
    build_index(model, tmp_path / "faiss", images=folder, global_kind="faiss", progress=False)
    manifest = store.read_manifest(tmp_path / "faiss")
    assert manifest["global_index"]["factory"] == "IVF1,SQ8"  # 40 images: one cell
    approximate = SearchIndex.open(tmp_path / "faiss")
    assert approximate.global_search.kind.startswith("faiss")
    query = "a woman with a yellow umbrella"
    # few cells, all probed: the same candidates and scores as exact search
    got = [(r.key, round(r.fused, 4)) for r in approximate.search(query, top_k=10).results]
    want = [(r.key, round(r.fused, 4)) for r in exact.search(query, top_k=10).results]
    assert sorted(got, key=lambda x: (-x[1], x[0])) == sorted(want, key=lambda x: (-x[1], x[0]))
    blob = tmp_path / "faiss" / manifest["global_index"]["file"]
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(SearchError, match="corrupt FAISS index"):
        SearchIndex.open(tmp_path / "faiss")


def test_float16_tokens_keep_the_ranking_of_this_index(smoke_run: Path, test_index: Path, tmp_path: Path):
    half = tmp_path / "half"
    build_index(
        smoke_run / "model", half, prepared=smoke_run / "prepared", token_dtype="float16", progress=False
    )
    assert store.read_manifest(half)["token_dtype"] == "float16"
    full, small = SearchIndex.open(test_index), SearchIndex.open(half)
    query = "a man in a grey jacket and blue jeans"
    a = {r.key: r for r in full.search(query, top_k=8).results}
    b = {r.key: r for r in small.search(query, top_k=8).results}
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].global_ == b[key].global_  # global features stay float32
        assert a[key].local == pytest.approx(b[key].local, abs=2e-3)
    with pytest.raises(SearchError, match="stores float16 image tokens"):
        build_index(smoke_run / "model", half, prepared=smoke_run / "prepared", token_dtype="float32")


def test_stored_rows_read_in_any_order_equal_the_written_tensor(tmp_path: Path):
    rng = np.random.default_rng(0)
    global_feats = rng.standard_normal((50, 8)).astype(np.float32)
    tokens = rng.standard_normal((50, 3, 8)).astype(np.float32)
    files = [[f"{i}.png", i, i] for i in range(50)]
    store.write_shard(tmp_path / "shard-000001-00000.safetensors", global_feats, tokens, files, "float16")
    shard = store.open_shard(tmp_path, {"file": "shard-000001-00000.safetensors", "rows": 50}, 8, 3)
    index = np.array([7, 3, 4, 5, 49, 0, 3, 48])  # runs, a repeat, both ends
    np.testing.assert_array_equal(shard.global_feats.rows(index), global_feats[index])
    np.testing.assert_array_equal(shard.tokens.rows(index), tokens[index].astype(np.float16))
    np.testing.assert_array_equal(shard.tokens.read(), tokens.astype(np.float16))
    assert shard.files == files


@pytest.mark.parametrize("direction", ["image_queries", "phrase_queries"])
def test_local_scores_follow_the_models_attention_direction(smoke_run: Path, tmp_path: Path, direction: str):
    """A model scoring with phrases querying image tokens (model.attention: phrase_queries) is searched in
    that direction: the tool's local scores equal the model's own, computed from scratch on the images."""
    from acsa.config.loading import load_params
    from acsa.data.image_tables import to_model_input
    from acsa.model.acsa import ACSA
    from acsa.search.model_access import SearchModel

    params = load_params(REPO / "params.yaml", overrides=[f"model.attention={direction}"])
    torch.manual_seed(0)
    model = ACSA(params, num_classes=4, text_hidden_size=384, pretrained=False).eval()
    (tmp_path / "model").mkdir()
    model.save(tmp_path / "model" / "model.safetensors", {"fusion_weight": 1.0, "chosen_on": "val"})
    folder = tmp_path / "photos"
    folder_of_images(smoke_run, folder)
    index = SearchIndex.open(_fresh(tmp_path / "model", folder, tmp_path / "index"))
    response = index.search("a man in a red shirt with a black backpack", top_k=8)
    searched = SearchModel(tmp_path / "model")
    query = searched.encode_query(response.query)
    paths = [folder / r.key for r in response.results]
    with torch.no_grad():
        images = searched.model.encode_image(
            to_model_input(torch.stack([searched.load_image(p) for p in paths]))
        )
        text = TextFeatures(query.global_feat[None], query.phrase_tokens, query.phrase_mask)
        want = searched.model.local_similarity(text, images, direction=direction)[0]
        other = "image_queries" if direction == "phrase_queries" else "phrase_queries"
        reverse = searched.model.local_similarity(text, images, direction=other)[0]
    got = torch.tensor([r.local for r in response.results])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert not torch.allclose(got, reverse, atol=1e-3)  # the directions differ: the test can tell them apart


def test_a_second_index_writer_is_refused_at_once(tmp_path: Path) -> None:
    with store.writer_lock(tmp_path):
        with pytest.raises(SearchError, match="another `acsa index` is writing this index"):
            with store.writer_lock(tmp_path):
                pass
    with store.writer_lock(tmp_path):  # released on exit
        pass

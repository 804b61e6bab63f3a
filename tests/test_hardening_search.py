"""The search tool as a hostile tester uses it (issue 21): each case a reproduction of what went wrong, now
answered as a user expects. Bad input: one `error:` line, exit 2 (3 for a NaN or infinity), nothing on
stdout; the server: a JSON error.

Cases: DNS rebinding (Host), non-finite fusion weights and feature rows, odd file names, hand-edited
manifests, a tampered FAISS file, a busy or invalid port, an index changed under a running server, a failed
first `acsa index`, a second concurrent one, a damaged model."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from test_search import folder_of_images, test_images

from acsa.__main__ import cli
from acsa.errors import NonFiniteError
from acsa.search import opened, store
from acsa.search.api import SearchError, SearchIndex, build_index

NAN = float("nan")


def run_cli(capsys, argv: list[str], status: int) -> str:
    """`acsa ARGV` must exit with `status`, one `error:` line on stderr, no traceback, nothing on stdout."""
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == status
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert out == "", out
    return errors[0]


def client_of(index: SearchIndex, host: str = "127.0.0.1", port: int = 8000, allow: tuple[str, ...] = ()):
    from fastapi.testclient import TestClient

    from acsa.search.server import create_app

    return TestClient(create_app(index, host, port, allow), base_url=f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def index_dir(smoke_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hardening") / "index"
    build_index(smoke_run / "model", out, prepared=smoke_run / "prepared", split="test", progress=False)
    return out


@pytest.fixture(scope="module")
def index(index_dir: Path) -> SearchIndex:
    return SearchIndex.open(index_dir)


def copy_index(index_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(index_dir, target)
    return target


def set_float(path: Path, tensor: str, element: int, value: float) -> None:
    """Overwrite float32 element `element` of `tensor` in a safetensors file (a bit-rotted float)."""
    raw = bytearray(path.read_bytes())
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header[tensor]["dtype"] == "F32"
    start = 8 + int.from_bytes(raw[:8], "little") + header[tensor]["data_offsets"][0] + 4 * element
    raw[start : start + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(raw))


def edit_manifest(folder: Path, change) -> None:
    path = folder / store.MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


# ---- 1. DNS rebinding: only requests addressed to this server are answered ---------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/api/info", "/api/search?q=a%20man%20in%20a%20red%20coat", "/images/x"]
)
@pytest.mark.parametrize(
    "host", ["evil.example.com", "evil.example.com:8000", "127.0.0.1:9999", "127.0.0.1.nip.io:8000"]
)
def test_a_foreign_host_gets_400_with_a_json_error(index: SearchIndex, path: str, host: str):
    reply = client_of(index).get(path, headers={"host": host})
    assert reply.status_code == 400
    assert "DNS rebinding" in reply.json()["error"]


def test_the_servers_own_names_are_answered(index: SearchIndex):
    key = index.keys[0]
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST:8000"):
        client = client_of(index)
        assert client.get("/api/info", headers={"host": host}).status_code == 200, host
        assert client.get("/images/" + key, headers={"host": host}).status_code == 200, host
    named = client_of(index, host="photos.lan", allow=("192.168.1.5",))
    for host in ("photos.lan:8000", "192.168.1.5:8000"):
        assert named.get("/api/info", headers={"host": host}).status_code == 200, host
    assert named.get("/api/info", headers={"host": "photos.lan:8001"}).status_code == 400
    assert client_of(index, port=80).get("/api/info", headers={"host": "localhost"}).status_code == 200


# ---- 2. no NaN or infinity in any ranking or output -------------------------------------------------------


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf"])
def test_non_finite_fusion_weights_are_refused(
    smoke_run: Path, index_dir: Path, tmp_path: Path, capsys, weight
):
    query = "a man in a red coat"
    line = run_cli(capsys, ["search", "--index", str(index_dir), query, f"--fusion-weight={weight}"], 2)
    assert "--fusion-weight" in line and "finite" in line
    out = tmp_path / "index"
    index_args = ["index", "--model", str(smoke_run / "model"), "--prepared", str(smoke_run / "prepared")]
    line = run_cli(capsys, [*index_args, "--out", str(out), f"--fusion-weight={weight}"], 2)
    assert "--fusion-weight" in line and not out.exists()


def test_a_non_finite_fusion_weight_in_the_manifest_is_refused_at_load(
    index_dir: Path, tmp_path: Path, capsys
):
    broken = copy_index(index_dir, tmp_path)
    edit_manifest(broken, lambda m: m.update(fusion_weight=NAN))  # json writes NaN
    line = run_cli(capsys, ["search", "--index", str(broken), "a man in a red coat"], 2)
    assert "corrupt index manifest (fusion_weight: expected a finite number, got nan)" in line


@pytest.mark.parametrize("tensor", ["global", "tokens"])
@pytest.mark.parametrize("value", [NAN, math.inf])
def test_a_non_finite_row_in_a_shard_is_refused_when_opened(index_dir, tmp_path, capsys, tensor, value):
    broken = copy_index(index_dir, tmp_path)
    shard = next(broken.glob("shard-*.safetensors"))
    set_float(shard, tensor, 300, value)  # row 1 (global: D = 256) or row 0 (tokens: R x D)
    line = run_cli(capsys, ["search", "--index", str(broken), "a man in a red coat"], 3)
    assert f"{shard} tensor {tensor}: row" in line and "NaN or infinite" in line


def test_a_non_finite_row_met_by_a_query_is_never_ranked(index_dir, tmp_path, monkeypatch):
    """Above SCAN_LIMIT_BYTES an index is not read whole when opened: a damaged row is found when a query
    reads it, and the query fails (the server: 500 with a JSON error) instead of ranking it first."""
    broken = copy_index(index_dir, tmp_path)
    shard = next(broken.glob("shard-*.safetensors"))
    set_float(shard, "tokens", 5, NAN)
    monkeypatch.setattr(opened, "SCAN_LIMIT_BYTES", 0)
    damaged = SearchIndex.open(broken)
    with pytest.raises(NonFiniteError, match="tensor tokens: row 0"):
        damaged.search("a man in a red coat", candidates=len(damaged))
    reply = client_of(damaged).get("/api/search", params={"q": "a man in a red coat", "k": len(damaged)})
    assert reply.status_code == 500 and "NaN or infinite" in reply.json()["error"]


def test_rows_the_model_makes_non_finite_are_not_indexed(
    smoke_run: Path, tmp_path: Path, monkeypatch, caplog
):
    from acsa.search.model_access import SearchModel

    folder = tmp_path / "photos"
    folder_of_images(smoke_run, folder)
    encode = SearchModel.encode_images

    def nan_for_the_second(self, images):
        global_feats, tokens = (t.clone() for t in encode(self, images))
        global_feats[1, 3] = NAN
        return global_feats, tokens

    monkeypatch.setattr(SearchModel, "encode_images", nan_for_the_second)
    report = build_index(smoke_run / "model", tmp_path / "index", images=folder, batch_size=4, progress=False)
    assert report.rows == 8 - 2 and len(report.skipped) == 2  # the second of each batch of 4
    assert all("not finite" in reason for _, reason in report.skipped)
    SearchIndex.open(tmp_path / "index")  # every row stored is finite

    monkeypatch.setattr(
        SearchModel, "encode_images", lambda self, images: [t * NAN for t in encode(self, images)]
    )
    with pytest.raises(NonFiniteError, match="none of the 8 images could be indexed"):
        build_index(smoke_run / "model", tmp_path / "none", images=folder, progress=False)
    assert not (tmp_path / "none").exists()


def test_a_damaged_model_exits_with_the_non_finite_status(smoke_run, index_dir, tmp_path, capsys):
    from test_non_finite import spoil_a_float

    shutil.copytree(smoke_run / "model", tmp_path / "model")
    spoil_a_float(tmp_path / "model" / "model.safetensors", "model.sentence_proj.weight")
    line = run_cli(
        capsys, ["search", "--index", str(index_dir), "--model", str(tmp_path / "model"), "a red coat"], 3
    )
    assert "tensor sentence_proj.weight holds 1 NaN or infinite values" in line
    folder = tmp_path / "photos"
    folder_of_images(smoke_run, folder)
    args = [
        "index",
        "--model",
        str(tmp_path / "model"),
        "--images",
        str(folder),
        "--out",
        str(tmp_path / "i"),
    ]
    assert "sentence_proj.weight" in run_cli(capsys, args, 3)
    assert not (tmp_path / "i").exists()


# ---- 3. any file name the file system allows -------------------------------------------------------------

ODD_NAMES = [
    os.fsdecode(b"caf\xe9-latin1.png"),  # a byte that is not UTF-8
    "new\nline.png",  # would start another row of a table
    "tab\tand\rreturn.png",
    "esc\x1b[31mred.png",  # a terminal colour code
    "ünïcødé 人.png",
    "back\\slash.png",
    "%41 per cent & hash #.png",
    "\u202eright-to-left.png",
]


@pytest.fixture(scope="module")
def odd_index(smoke_run: Path, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("odd")
    folder = root / "photos"
    folder.mkdir()
    for name, source in zip(ODD_NAMES, test_images(smoke_run), strict=False):
        shutil.copy2(source, folder / name)
    build_index(smoke_run / "model", root / "index", images=folder, progress=False)
    return folder, root / "index"


def test_odd_file_names_are_indexed_and_json_keeps_them_exact(odd_index, capsys):
    folder, index_dir = odd_index
    assert sorted(SearchIndex.open(index_dir).keys) == sorted(ODD_NAMES)
    cli(["search", "--index", str(index_dir), "a man in a red coat", "--top-k", "20", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert sorted(os.fsencode(r["path"]) for r in rows) == sorted(
        os.fsencode(str(folder / name)) for name in ODD_NAMES
    )
    for row in rows:
        assert Path(row["path"]).is_file()  # the exact name: it opens


@pytest.mark.parametrize("form", ["table", "csv"])
def test_one_result_is_one_row_whatever_the_file_name(odd_index, capsys, form):
    import csv
    import io

    _, index_dir = odd_index
    cli(["search", "--index", str(index_dir), "a man in a red coat", "--top-k", "20", "--format", form])
    out = capsys.readouterr().out
    assert all(c.isprintable() for c in out.replace("\r\n", "").replace("\n", ""))  # csv ends rows in \r\n
    lines = out.splitlines()
    if form == "csv":
        assert len(list(csv.reader(io.StringIO(out)))) == len(lines) == 1 + len(ODD_NAMES)
        shown = [row[1] for row in csv.reader(io.StringIO(out))][1:]
    else:
        assert len(lines) == 2 + len(ODD_NAMES)
        shown = [line.split("  ")[-1] for line in lines[2:]]
    names = {Path(p).name for p in shown}
    assert r"caf\xe9-latin1.png" in names and r"new\nline.png" in names and r"esc\x1b[31mred.png" in names
    assert r"back\\slash.png" in names and r"\u202eright-to-left.png" in names
    assert "ünïcødé 人.png" in names  # printable text as it is


def test_the_server_answers_and_serves_odd_file_names(odd_index):
    folder, index_dir = odd_index
    index = SearchIndex.open(index_dir)
    client = client_of(index)
    reply = client.get("/api/search", params={"q": "a man in a red coat", "k": 20})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert sorted(r["key"] for r in results) == sorted(ODD_NAMES)  # JSON's \udcXX escapes read back exactly
    for result in results:
        image = client.get(result["url"])
        assert image.status_code == 200, result["key"]
        assert image.content == (folder / result["key"]).read_bytes()


# ---- 6. hand-edited files, ports, changes under a running server, failed and concurrent runs ---------------


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda m: m.update(shards="all of them"), "shards: expected a list"),
        (lambda m: m.update(embed_dim="256"), "embed_dim: expected a whole number >= 1, got '256'"),
        (lambda m: m["shards"][0].update(rows=-1), "shards[0].rows: expected a whole number >= 1"),
        (
            lambda m: m["shards"][0].update(file="../../../etc/passwd"),
            "shards[0].file: expected a shard file",
        ),
        (lambda m: m["shards"][0].update(dropped=[5, 2]), "shards[0].dropped: expected increasing rows"),
        (lambda m: m.update(token_names=[]), "token_names: expected a list of at least 1"),
        (lambda m: m.update(fusion_weight="1.0"), "fusion_weight: expected a finite number, got '1.0'"),
        (lambda m: m["model"].update(sha256=12), "model.sha256: expected a SHA-256 digest, got 12"),
        (lambda m: m["images"].pop("root"), "images.root: missing"),
        (lambda m: m.update(token_layout=[{"name": "x"}]), "token_layout: expected one entry per token"),
        (lambda m: m.update(global_index={"kind": "faiss"}), "global_index.file: missing"),
        (lambda m: m.update(token_dtype="float64"), "token_dtype: expected one of float32, float16"),
    ],
)
def test_a_hand_edited_manifest_is_one_line(index_dir: Path, tmp_path: Path, capsys, change, says):
    broken = copy_index(index_dir, tmp_path)
    edit_manifest(broken, change)
    line = run_cli(capsys, ["search", "--index", str(broken), "a man in a red coat"], 2)
    assert f"{broken / store.MANIFEST}: corrupt index manifest ({says}" in line


def test_a_deeply_nested_manifest_is_one_line(index_dir: Path, tmp_path: Path, capsys):
    broken = copy_index(index_dir, tmp_path)
    (broken / store.MANIFEST).write_text("[" * 200_000 + "]" * 200_000)
    line = run_cli(capsys, ["search", "--index", str(broken), "a man in a red coat"], 2)
    assert "corrupt index manifest (nested too deeply)" in line
    line = run_cli(capsys, ["serve", "--index", str(broken), "--port", str(free_port())], 2)
    assert "corrupt index manifest (nested too deeply)" in line


def test_a_tampered_faiss_file_is_one_line(smoke_run: Path, tmp_path: Path, capsys):
    import hashlib

    from safetensors.numpy import save_file

    folder = tmp_path / "photos"
    folder_of_images(smoke_run, folder)
    out = tmp_path / "faiss"
    build_index(smoke_run / "model", out, images=folder, global_kind="faiss", progress=False)
    info = store.read_manifest(out)["global_index"]
    garbage = np.frombuffer(b"IwFl" + bytes(range(256)) * 4, dtype=np.uint8)
    save_file({"faiss": garbage}, str(out / info["file"]))  # a valid file of garbage, its digest recorded
    edit_manifest(
        out, lambda m: m["global_index"].update(sha256=hashlib.sha256(garbage.tobytes()).hexdigest())
    )
    line = run_cli(capsys, ["search", "--index", str(out), "a man in a red coat"], 2)
    assert f"{out / info['file']}: corrupt FAISS index" in line
    save_file({"faiss": np.zeros((2, 2), dtype=np.float32)}, str(out / info["file"]))
    assert "corrupt FAISS index (not a byte string)" in run_cli(
        capsys, ["search", "--index", str(out), "a man in a red coat"], 2
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_busy_or_invalid_port_is_said_before_the_model_loads(index_dir: Path, capsys, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the index and its model were loaded before the port was checked")

    monkeypatch.setattr(SearchIndex, "open", no_loading)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = run_cli(capsys, ["serve", "--index", str(index_dir), "--port", str(port)], 2)
        assert f"cannot serve on 127.0.0.1:{port}: port {port} is in use" in line
    for port in ("70000", "0", "-1"):
        line = run_cli(capsys, ["serve", "--index", str(index_dir), "--port", port], 2)
        assert f"--port {port}: expected a port number from 1 to 65535" in line
    line = run_cli(capsys, ["serve", "--index", str(index_dir), "--host", "192.0.2.1"], 2)  # TEST-NET-1
    assert "cannot serve on 192.0.2.1:8000: not an address of this machine (--host)" in line


def test_a_server_reopens_an_index_updated_under_it(smoke_run: Path, tmp_path: Path):
    folder = tmp_path / "photos"
    images = folder_of_images(smoke_run, folder)
    out = tmp_path / "index"
    build_index(smoke_run / "model", out, images=folder, progress=False)
    client = client_of(SearchIndex.open(out))
    before = client.get("/api/search", params={"q": "a man in a red coat", "k": 8}).json()["results"]
    assert all(client.get(r["url"]).status_code == 200 for r in before)
    for image in images:  # every file changes (new times): the old index's rows no longer describe them
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    shutil.copy2(images[0], folder / "new.png")
    build_index(smoke_run / "model", out, images=folder, progress=False)
    assert client.get("/api/info").json()["images"] == len(images) + 1
    after = client.get("/api/search", params={"q": "a man in a red coat", "k": 9}).json()["results"]
    assert len(after) == 9 and all(client.get(r["url"]).status_code == 200 for r in after)

    other = tmp_path / "other_model"
    other.mkdir()
    data = (smoke_run / "model" / "model.safetensors").read_bytes()
    (other / "model.safetensors").write_bytes(data.replace(b"resumed_after_epoch", b"resumed_after_epocH", 1))
    shutil.rmtree(out)
    build_index(other, out, images=folder, progress=False)
    reply = client.get("/api/search", params={"q": "a man in a red coat"})
    assert reply.status_code == 503 and "restart" in reply.json()["error"]


def test_a_failed_first_index_leaves_nothing_and_says_why(smoke_run: Path, tmp_path: Path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_text("not an image")
    (folder / "b.jpg").write_bytes(b"")
    out = tmp_path / "index"
    line = run_cli(
        capsys, ["index", "--model", str(smoke_run / "model"), "--images", str(folder), "--out", str(out)], 2
    )
    assert "none of the 2 images could be indexed (a.png: unreadable image" in line and "b.jpg: " in line
    assert not out.exists()


def test_a_second_concurrent_index_is_told_so(smoke_run: Path, tmp_path: Path, capsys):
    """The first run holds the lock of a folder it has not yet written a manifest to."""
    folder = tmp_path / "photos"
    folder_of_images(smoke_run, folder)
    out = tmp_path / "index"
    out.mkdir()
    with store.writer_lock(out):
        (out / ".shard-000001-00000.safetensors.tmp").write_bytes(b"half")
        args = ["index", "--model", str(smoke_run / "model"), "--images", str(folder), "--out", str(out)]
        assert "another `acsa index` is writing this index" in run_cli(capsys, args, 2)
    assert (out / ".shard-000001-00000.safetensors.tmp").exists()  # the first run's work is left alone


def test_an_index_that_is_not_finite_is_never_opened_by_the_api(index_dir: Path, tmp_path: Path):
    broken = copy_index(index_dir, tmp_path)
    set_float(next(broken.glob("shard-*.safetensors")), "global", 0, NAN)
    with pytest.raises(NonFiniteError):
        SearchIndex.open(broken)
    with pytest.raises(SearchError, match="expected a finite number"):
        SearchIndex.open(index_dir, fusion_weight=math.nan)

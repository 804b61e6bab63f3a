"""`acsa serve`: the JSON API and image route through FastAPI's TestClient, and the page in a real headless
Chromium (Debian's package, driven by Playwright with its executable path; .ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from acsa.search.api import SearchIndex, build_index

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def index(smoke_run: Path, tmp_path_factory) -> SearchIndex:
    out = tmp_path_factory.mktemp("serve") / "index"
    build_index(smoke_run / "model", out, prepared=smoke_run / "prepared", split="test", progress=False)
    return SearchIndex.open(out)


@pytest.fixture(scope="module")
def client(index: SearchIndex):
    from fastapi.testclient import TestClient

    from acsa.search.server import create_app

    return TestClient(create_app(index, "127.0.0.1", 8000), base_url="http://127.0.0.1:8000")


def test_search_api_returns_scores_phrases_and_attention(client, index: SearchIndex):
    reply = client.get("/api/search", params={"q": "a woman in a red coat with a black backpack", "k": 5})
    assert reply.status_code == 200
    body = reply.json()
    assert body["phrases"] == ["woman", "red coat", "black backpack"]
    assert body["fusion_weight"] == index.fusion_weight
    assert len(body["results"]) == 5 and len(body["tokens"]) == len(index.manifest["token_names"])
    for result in body["results"]:
        assert set(result) == {"path", "key", "url", "global", "local", "fused", "attention"}
        assert len(result["attention"]) == 3 and len(result["attention"][0]) == len(body["tokens"])
    image = client.get(body["results"][0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == Path(body["results"][0]["path"]).read_bytes()
    info = client.get("/api/info").json()
    assert info["images"] == len(index) and info["model"] == index.model.sha256


@pytest.mark.parametrize(
    "query_string, message",
    [
        ("q=&k=5", "empty"),
        ("q=%20%09%20&k=5", "empty"),
        ("q=of%20the&k=5", "no noun phrase"),
        ("q=" + "a" * 10_000, "10000 characters"),
        ("q=a%20red%20%FF%FE%20coat", "not valid UTF-8"),
        ("q=a%20red%20coat&k=0", "between 1 and 1000"),
        ("q=a%20red%20coat&k=-2", "between 1 and 1000"),
        ("q=a%20red%20coat&k=100000000000", "between 1 and 1000"),
        ("q=a%20red%20coat&k=ten", "whole number"),
    ],
)
def test_bad_queries_are_400_with_a_json_error(client, query_string: str, message: str):
    reply = client.get("/api/search?" + query_string)
    assert reply.status_code == 400
    assert message in reply.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/images/../manifest.json",
        "/images/..%2Fmanifest.json",
        "/images/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/images/%252e%252e%252fmanifest.json",
        "/images//etc/passwd",
        "/images/%2Fetc%2Fpasswd",
        "/images/test/../../splits.json",
        "/images/test%2f..%2f..%2fsplits.json",
        "/images/test/%2e%2e/test/x.png",
        "/images/..%5c..%5cmanifest.json",
        "/images/",
        "/static/../acsa/search/server.py",
        "/static/%2e%2e%2fserver.py",
    ],
)
def test_path_traversal_gets_404(client, path: str):
    assert client.get(path).status_code == 404


def test_an_indexed_file_changed_on_disk_is_not_served(client, index: SearchIndex, tmp_path: Path):
    key = index.keys[0]
    path = index.root / key
    stat = path.stat()
    try:
        path.touch()  # another modification time: no longer the file that was indexed
        assert client.get("/images/" + key).status_code == 404
    finally:
        import os

        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert client.get("/images/" + key).status_code == 200


def test_page_loads_nothing_from_a_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    sources = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", sources, re.IGNORECASE)
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == ["/static/style.css", "/static/app.js"]


@pytest.fixture
def served(index: SearchIndex):
    """The app on a free loopback port, in a thread, for the browser."""
    import uvicorn

    from acsa.search.server import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(index, "127.0.0.1", port), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="no chromium: apt-get install chromium (.ci/run does)"
)
def test_page_in_headless_chromium_shows_results_and_attention(served: str, index: SearchIndex, tmp_path):
    from playwright.sync_api import sync_playwright

    query = "a woman with long hair in a red coat carrying a black backpack"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
            page.goto(served + "/")
            page.fill("#query", query)
            page.press("#query", "Enter")
            page.wait_for_selector("figure.result .box", timeout=30_000)
            page.wait_for_load_state(
                "networkidle"
            )  # (wait_for_function would eval a string: the CSP forbids)
            loaded = page.locator("figure.result img").evaluate_all(
                "i => i.map(x => x.complete && x.naturalWidth)"
            )
            assert all(loaded)
            assert page.locator("figure.result").count() == min(12, len(index))
            phrases = page.locator(".chip").all_inner_texts()
            assert phrases == index.search(query).phrases
            # every result outlines, for each phrase, the image token it attends to most
            first = page.locator("figure.result").first
            assert first.locator(".box").count() == len(phrases)
            assert set(first.locator(".box").evaluate_all("b => b.map(x => x.dataset.phrase)")) == set(
                phrases
            )
            assert "fused" in first.inner_text() and "local" in first.inner_text()
            # a phrase's attention over every boxed token (regions and windows) as a heat map
            page.locator(".chip").nth(1).click()
            page.wait_for_selector(".heat")
            boxed = [t for t in index.token_layout if t["box"]]
            assert first.locator(".heat").count() == len(boxed)
            page.screenshot(path=str(tmp_path / "page.png"))
            # bad input shows the server's one-line error, and the page keeps working
            page.fill("#query", "of the")
            page.press("#query", "Enter")
            page.wait_for_selector("#error:not([hidden])")
            assert "no noun phrase" in page.locator("#error").inner_text()
            assert not [p for p in problems if "400" not in p], problems
        finally:
            browser.close()

"""`acsa serve`: the search page and its JSON API, a FastAPI app served by uvicorn.

    GET /                    the page (acsa/search/static: HTML, CSS and JS, nothing from a network)
    GET /api/info            images indexed, model identity, global search kind, image token layout
    GET /api/search?q=&k=    the top-k results with global, local and fused scores and each result's
                             attention a[p][r] (phrase p over image token r); bad input -> 400 {"error": ...}
    GET /images/{key}        the bytes of an indexed image; any key the index does not hold -> 404

Image bytes are served only for keys of the index (paths relative to the indexed folder, matched exactly as
strings, and only while the file's size and time are those indexed): no path is ever joined from the URL,
so `../`, absolute paths and their percent-encoded forms find nothing. A key is read from the URL's raw
bytes (`url` of each result: the file name's bytes percent-encoded), so any file name is served, those that
are not UTF-8 included. Searches run one at a time (SearchIndex holds a lock); FastAPI runs them on its
worker threads, so the page stays responsive.

Only requests whose Host header names this server are answered (acsa.search.serving: DNS rebinding); every
error is JSON {"error": ...}: 400 bad input or a foreign Host, 404 not an image of the index, 503 an index
that changed on disk beyond reopening, 500 a NaN or infinity met in the index or the model's features.
"""

from __future__ import annotations

import logging
from importlib import resources
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.convertors import Convertor, register_url_convertor

from acsa.errors import NonFiniteError, SearchError, one_line
from acsa.search.names import key_of_url
from acsa.search.query import DEFAULT_TOP_K, IndexStateError, SearchIndex
from acsa.search.serving import HostGuard, JSONBody, allowed_names, error_response

log = logging.getLogger(__name__)

STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
# the page loads nothing but its own files (and the images it is shown)
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'"


class AnyPath(Convertor):
    """The rest of the URL path, whatever it holds: Starlette's `path` convertor (`.*`) stops at a newline,
    so a file named with one was a 404 before its route was reached."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPath())


def _static(name: str) -> str:
    return resources.files("acsa.search").joinpath("static", name).read_text(encoding="utf-8")


def _query_params(raw: bytes) -> dict[str, list[str]]:
    """The query string decoded strictly: percent-encoded bytes that are not UTF-8 are an error (Starlette's
    own parsing would turn them into U+FFFD)."""
    try:
        text = raw.decode("ascii")
        return parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SearchError("the query is not valid UTF-8 text") from None


def _failure(err: Exception) -> JSONBody:
    """The JSON answer to an error of a search or an image request."""
    if isinstance(err, IndexStateError):
        return error_response(503, one_line(err))
    if isinstance(err, NonFiniteError):
        return error_response(500, one_line(err))
    return error_response(400, one_line(err))


def create_app(
    index: SearchIndex, host: str = "127.0.0.1", port: int = 8000, allow_hosts: tuple[str, ...] = ()
) -> FastAPI:
    """The app serving `index`, answering requests addressed to `host` (and the loopback names, and
    `allow_hosts`) on `port` only."""
    app = FastAPI(
        title="acsa person search",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=JSONBody,
    )
    app.add_middleware(HostGuard, names=allowed_names(host, allow_hosts), port=port)
    pages = {name: _static(name) for name in ("index.html", *STATIC)}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(pages["index.html"])

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return error_response(404, "not found")
        return Response(pages[name], media_type=STATIC[name])

    @app.get("/api/info", response_model=None)
    def info() -> dict | JSONBody:
        try:
            index.refresh()
        except SearchError as err:
            return _failure(err)
        return {
            "images": len(index),
            "model": index.model.sha256,
            "fusion_weight": index.fusion_weight,
            "global_search": index.global_search.kind,
            "tokens": index.token_layout,
        }

    @app.get("/api/search")
    def search(request: Request) -> JSONBody:
        try:
            params = _query_params(request.scope.get("query_string", b""))
            query = params.get("q", [""])[0]
            k_text = params.get("k", [str(DEFAULT_TOP_K)])[0].strip()
            try:
                top_k = int(k_text)
            except ValueError:
                raise SearchError(f"k must be a whole number, got {k_text[:20]!r}") from None
            response = index.search(query, top_k=top_k, attention=True)
        except (SearchError, NonFiniteError) as err:
            return _failure(err)
        return JSONBody(response.to_dict())

    @app.get("/images/{key:anypath}")
    def image(key: str, request: Request) -> Response:
        raw = request.scope.get("raw_path")
        key = (key_of_url(raw) if raw else None) or key  # the raw bytes: names that are not UTF-8 too
        try:
            path = index.image_file(key)
        except SearchError as err:
            return _failure(err)
        if path is None:
            return error_response(404, "not an image of this index")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    return app

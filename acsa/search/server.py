"""`acsa serve`: the search page and its JSON API, a FastAPI app served by uvicorn.

    GET /                    the page (acsa/search/static: HTML, CSS and JS, nothing from a network)
    GET /api/info            images indexed, model identity, global search kind, image token layout
    GET /api/search?q=&k=    the top-k results with global, local and fused scores and each result's
                             attention a[p][r] (phrase p over image token r); bad input -> 400 {"error": ...}
    GET /images/{key}        the bytes of an indexed image; any key the index does not hold -> 404

Image bytes are served only for keys of the index (paths relative to the indexed folder, matched exactly as
strings, and only while the file's size and time are those indexed): no path is ever joined from the URL,
so `../`, absolute paths and their percent-encoded forms find nothing. Searches run one at a time
(SearchIndex holds a lock); FastAPI runs them on its worker threads, so the page stays responsive.
"""

from __future__ import annotations

import logging
from importlib import resources
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from acsa.errors import SearchError
from acsa.search.query import DEFAULT_TOP_K, SearchIndex

log = logging.getLogger(__name__)

STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
# the page loads nothing but its own files (and the images it is shown)
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'"


def _static(name: str) -> str:
    return resources.files("acsa.search").joinpath("static", name).read_text(encoding="utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _query_params(raw: bytes) -> dict[str, list[str]]:
    """The query string decoded strictly: percent-encoded bytes that are not UTF-8 are an error (Starlette's
    own parsing would turn them into U+FFFD)."""
    try:
        text = raw.decode("ascii")
        return parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SearchError("the query is not valid UTF-8 text") from None


def create_app(index: SearchIndex) -> FastAPI:
    app = FastAPI(title="acsa person search", docs_url=None, redoc_url=None, openapi_url=None)
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
            return _error(404, "not found")
        return Response(pages[name], media_type=STATIC[name])

    @app.get("/api/info")
    def info() -> dict:
        return {
            "images": len(index),
            "model": index.model.sha256,
            "fusion_weight": index.fusion_weight,
            "global_search": index.global_search.kind,
            "tokens": index.token_layout,
        }

    @app.get("/api/search")
    def search(request: Request) -> JSONResponse:
        try:
            params = _query_params(request.scope.get("query_string", b""))
            query = params.get("q", [""])[0]
            k_text = params.get("k", [str(DEFAULT_TOP_K)])[0].strip()
            try:
                top_k = int(k_text)
            except ValueError:
                raise SearchError(f"k must be a whole number, got {k_text[:20]!r}") from None
            response = index.search(query, top_k=top_k, attention=True)
        except SearchError as err:
            return _error(400, " ".join(str(err).split()))
        return JSONResponse(response.to_dict())

    @app.get("/images/{key:path}")
    def image(key: str) -> Response:
        path = index.image_file(key)
        if path is None:
            return _error(404, "not an image of this index")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    return app

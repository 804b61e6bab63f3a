"""What `acsa serve` needs around the app: the listening sockets, bound before the model loads, and the Host
check that keeps other web sites out.

DNS rebinding: a page the user visits on evil.example.com can point its own name at 127.0.0.1 and then read
this server's answers as same-origin (search the index, download its images). The browser still sends
`Host: evil.example.com`, so the server answers only requests whose Host names it: 127.0.0.1, localhost,
[::1], the `--host` it listens on and any `--allow-host`, with the port it serves. Others get 400 with a JSON
error. The name check is Starlette's TrustedHostMiddleware, kept as it is; HostGuard adds the port and turns
its plain-text refusal into JSON.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from acsa.errors import SearchError

LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
_ALLOWED = "acsa.host_allowed"  # set in the request's scope once the Host name passed


class JSONBody(JSONResponse):
    """JSON as ASCII (a file name's undecodable bytes travel as \\udcXX escapes instead of failing to
    encode) and never NaN or infinity (allow_nan=False: an error, not invalid JSON)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str) -> JSONBody:
    return JSONBody({"error": message}, status_code=status)


def host_name(host: str) -> str:
    """An address as a Host header writes it: IPv6 in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    names = (*LOCAL_NAMES, host_name(host), *map(host_name, extra))
    return list(dict.fromkeys(name.lower() for name in names))


def _port_ok(host_header: str | None, port: int) -> bool:
    """The Host header's port is the one served (a Host without a port means 80)."""
    if not host_header:
        return False
    try:
        given = urlsplit("//" + host_header).port
    except ValueError:
        return False
    return (given if given is not None else 80) == port


class HostGuard:
    """ASGI middleware: requests whose Host header is not one of `names` with `port` get 400 and a JSON
    error (module docstring)."""

    def __init__(self, app: ASGIApp, names: list[str], port: int) -> None:
        self.app = app
        self.names = names
        self.port = port
        self.trusted = TrustedHostMiddleware(self._allowed, allowed_hosts=names, www_redirect=False)

    async def _allowed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_ALLOWED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (the app has no websocket route)
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if _port_ok(host, self.port):

            async def send_if_allowed(message: Message) -> None:
                if scope.get(_ALLOWED):  # else TrustedHostMiddleware's plain-text refusal: replaced below
                    await send(message)

            await self.trusted(scope, receive, send_if_allowed)
            if scope.get(_ALLOWED):
                return
        where = f"http://{self.names[0]}:{self.port}/"
        refusal = error_response(
            400,
            f"Host {host!a} is not this server (it answers only {', '.join(self.names)} on port {self.port}, "
            f"against DNS rebinding); open {where}, or start acsa serve with --allow-host NAME",
        )
        await refusal(scope, receive, send)


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of `host` on `port`, bound now (before the model loads, so that a
    busy or invalid port is said at once); a one-line SearchError naming what is wrong otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SearchError(f"--port {port}: expected a port number from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise SearchError(f"--host {host!a}: not an address of this machine ({err})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and asyncio do
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as err:
        for sock in sockets:
            sock.close()
        raise SearchError(f"cannot serve on {host_name(host)}:{port}: {_why(err, port)}") from None
    return sockets


def _why(err: OSError, port: int) -> str:
    if err.errno == errno.EADDRINUSE:
        return f"port {port} is in use (another program, or another acsa serve): choose another --port"
    if err.errno == errno.EACCES:
        return f"not allowed to use port {port} (ports below 1024 need privileges): choose another --port"
    if err.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine (--host)"
    return err.strerror or str(err)

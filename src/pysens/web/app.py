"""The ``sens web`` HTTP server (aiohttp): the page, its static files, the live event stream.

Why aiohttp: one dependency that is both the server and the framework, asyncio like the rest of
pysens (nats-py, dbus-fast), with streaming responses and TLS built in; Starlette would need
uvicorn beside it for the same.

Why Server-Sent Events rather than a WebSocket: the page only ever listens (it is read-only, so
there is nothing to send back), SSE is plain HTTP (the token's cookie and TLS apply as to any
request), and the browser's ``EventSource`` reconnects by itself. A new filter is a new stream
(``/api/stream?filter=…``), checked first by ``/api/check`` so that a syntax error comes back
with its position.

Routes (GET only; anything else is refused):

* ``/`` -- the page; ``/static/<file>`` -- its script, styles and the shared timeline drawing;
* ``/api/stream?filter=CRITERIA`` -- ``text/event-stream``: ``snapshot`` (the whole picture),
  then ``change`` per event, ``status`` when the source goes or comes back, ``behind`` before a
  page that reads too slowly is cut off;
* ``/api/check?filter=CRITERIA`` -- ``{"ok": true}`` or ``{"ok": false, "error", "position",
  "code"}``;
* ``/api/snapshot?filter=CRITERIA`` -- the picture as one JSON document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ..criteria import CriteriaError, compile_criteria
from ..events import SensEvent
from ..timeline.html import timeline_assets
from .access import Access
from .hub import Hub, sse

__all__ = ["create_app", "start_server"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_KEEPALIVE = 20.0     # seconds between comments on an idle stream (proxies drop silent ones)
_WRITE_LIMIT = 30.0   # a page that takes longer than this to take one write is cut off

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _static_files() -> dict[str, tuple[bytes, str]]:
    static = resources.files("pysens.web").joinpath("static")
    files: dict[str, tuple[bytes, str]] = {}
    for name in ("index.html", "app.js", "style.css"):
        files[name] = (static.joinpath(name).read_bytes(), _TYPES[name[name.rindex("."):]])
    css, js = timeline_assets()
    files["timeline.css"] = (css.encode(), "text/css")
    files["timeline.js"] = (js.encode(), "text/javascript")
    return files


def _filter(text: str | None) -> tuple[Callable[[SensEvent], bool] | None, dict[str, Any]]:
    """The compiled filter, or None and the error to answer with."""
    if not text or not text.strip():
        return None, {"ok": True}
    try:
        return compile_criteria(text).matches, {"ok": True}
    except CriteriaError as e:
        return None, {"ok": False, "error": str(e), "position": e.position, "code": e.code}


def create_app(hub: Hub, access: Access) -> web.Application:
    """The application serving ``hub``'s picture under ``access``'s rules."""
    files = _static_files()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not access.host_allowed(request.headers.get("Host")):
            return web.Response(status=403, text="sens web: this page is served to "
                                "localhost only (the request named another host)\n")
        if access.token is not None:
            given = request.query.get("token")
            if access.token_ok(given):
                # Trade the token for a cookie and drop it from the address bar.
                query = {k: v for k, v in request.query.items() if k != "token"}
                target = request.rel_url.with_query(query)
                resp = web.HTTPFound(str(target))
                resp.set_cookie(access.cookie_name, access.cookie_value, httponly=True,
                                samesite="Strict", secure=access.tls, path="/")
                return _harden(resp)
            if not access.cookie_ok(request.cookies.get(access.cookie_name)):
                return _harden(web.Response(status=401, text="sens web: open the address "
                                            "sens web printed at start (it carries the "
                                            "token)\n"))
        return _harden(await handler(request))

    async def page(request: web.Request) -> web.StreamResponse:
        body, kind = files["index.html"]
        return web.Response(body=body, content_type=kind, charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.StreamResponse:
        found = files.get(request.match_info["name"])
        if found is None or found[1] == "text/html":
            raise web.HTTPNotFound()
        return web.Response(body=found[0], content_type=found[1], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def check(request: web.Request) -> web.StreamResponse:
        return web.json_response(_filter(request.query.get("filter"))[1])

    async def snapshot(request: web.Request) -> web.StreamResponse:
        predicate, verdict = _filter(request.query.get("filter"))
        if not verdict["ok"]:
            return web.json_response(verdict, status=400)
        return web.json_response(hub.snapshot(predicate),
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))

    async def stream(request: web.Request) -> web.StreamResponse:
        predicate, verdict = _filter(request.query.get("filter"))
        if not verdict["ok"]:
            return web.json_response(verdict, status=400)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        _harden(resp)
        resp.force_close()  # a stream is the connection's last response: its end is the hang-up
        await resp.prepare(request)
        sub = hub.subscribe(predicate, hub.queue_limit)
        try:
            await _write(resp, b"retry: 1000\n\n" + hub.snapshot_sse(predicate))
            while True:
                items = await sub.take(_KEEPALIVE)
                if sub.behind:
                    await _write(resp, sse("behind", '{"message": "this page fell behind the '
                                           'events; starting again"}'))
                    break
                if sub.resync:
                    sub.resync = False
                    items = [hub.snapshot_sse(predicate)]  # the new picture has them all
                await _write(resp, b"".join(items) if items else b": idle\n\n")
        except (ConnectionError, TimeoutError):
            pass  # the page went away, or stopped reading
        finally:
            hub.unsubscribe(sub)
        return resp

    async def no_icon(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", page)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/check", check)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/stream", stream)
    return app


async def _write(resp: web.StreamResponse, data: bytes) -> None:
    await asyncio.wait_for(resp.write(data), _WRITE_LIMIT)


def _harden(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers.setdefault("Content-Security-Policy", _CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


async def start_server(
    hub: Hub, access: Access, host: str, port: int, ssl_context: ssl.SSLContext | None,
) -> tuple[web.AppRunner, int]:
    """Start serving; the runner (``await runner.cleanup()`` to stop) and the bound port."""
    runner = web.AppRunner(create_app(hub, access), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    bound = port
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            bound = int(addr[1])
            break
    return runner, bound

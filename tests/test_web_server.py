"""``sens web`` without a browser: who may look (loopback, token, cookie, Host), that nothing
can be written, usage errors, and a page that stops reading being cut off rather than
buffered."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from pysens.events import SensEvent
from service_fixtures import sens_argv
from web_fixtures import WebServer

# -- access and backpressure --------------------------------------------------------------------

def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def test_off_loopback_a_token_is_needed_then_a_cookie() -> None:
    with WebServer("--listen", "0.0.0.0:0") as web:
        assert "?token=" in web.url
        token = web.url.split("?token=")[1]
        base = web.base.replace("0.0.0.0", "127.0.0.1")
        status, _, body = _get(base)
        assert status == 401 and b"token" in body
        assert _get(base + "?token=wrong")[0] == 401
        status, headers, _ = _get(f"{base}?token={token}")
        assert status == 302 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert token not in cookie and "HttpOnly" in headers["Set-Cookie"]
        status, headers, body = _get(base, {"Cookie": cookie})
        assert status == 200 and b"pysens live" in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_on_loopback_only_loopback_names_are_served_and_nothing_is_written() -> None:
    with WebServer() as web:
        assert "token" not in web.url
        assert _get(web.base)[0] == 200
        assert _get(web.base, {"Host": "evil.example:8765"})[0] == 403  # DNS rebinding
        req = urllib.request.Request(web.base + "api/stream", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 405
        e.value.close()
        status, _, body = _get(web.base + "api/check?filter=method%20%3D")
        assert status == 200 and b'"position": 8' in body


def test_usage_errors_are_one_line() -> None:
    for args, needle in ((["--nats", "nats://x:1"], "--nats goes with --store"),
                         (["--listen", "nowhere"], "HOST:PORT"),
                         (["--cert", "/nonexistent"], "--cert and --key go together")):
        r = subprocess.run(sens_argv("web", *args), capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


async def test_a_page_that_does_not_read_is_cut_off_not_buffered() -> None:
    from pysens.web.access import Access
    from pysens.web.app import start_server
    from pysens.web.hub import Hub

    hub = Hub("local", "test", datetime.now(UTC))
    hub.queue_limit = 256 * 1024
    hub.set_status(True, "up")
    runner, port = await start_server(hub, Access(None, 0, False), "127.0.0.1", 0, None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        while not hub.subscribers:  # noqa: ASYNC110 - the server's own state: nothing to await
            await asyncio.sleep(0.01)
        sub = next(iter(hub.subscribers))
        reader._transport.pause_reading()  # type: ignore[attr-defined]  # stop reading
        most = 0
        for n in range(3000):  # ~3 MB of events offered to a page that reads nothing
            hub.apply(SensEvent(method="Logon", user_name=f"u{n}", session_id=str(n),
                                host="h", source="t", raw={"pad": "x" * 500}))
            most = max(most, sub.queued)
            if n % 100 == 0:
                await asyncio.sleep(0)
        assert most <= hub.queue_limit
        assert sub.behind
        reader._transport.resume_reading()  # type: ignore[attr-defined]
        data = await asyncio.wait_for(reader.read(), 30)  # the server hangs up ...
        assert b"event: behind" in data  # ... after saying why
        writer.close()
    finally:
        await runner.cleanup()


def test_the_cli_refuses_a_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(sens_argv("web", "--listen", f"127.0.0.1:{port}"),
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, SENS_SOCKET="/nonexistent/s.sock"))
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr

"""The lean NATS protocol connection: frame parsing (split anywhere), the handshake against a
real nats-server and against a server that refuses, deliveries with headers, a lost server."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleet_fixtures import NatsServer, free_port, nats_server
from pysens.fleet.natsproto import NatsConnection, NatsProtocolError, header_value, status_of

__all__ = ["nats_server"]

Got = list[tuple[bytes, bytes, bytes, bytes]]

FRAMES = (
    b"INFO {\"server_id\":\"x\"}\r\n"
    b"MSG a.b 1 7\r\nhello\r\n\r\n"  # a payload holding CRLF is taken by its length
    b"+OK\r\n"
    b"MSG a.c 1 _INBOX.r.5 0\r\n\r\n"
    b"HMSG a.d 1 $JS.ACK.S.C.1.2.3.4.0 28 31\r\nNATS/1.0\r\nNats-Msg-Id: X\r\n\r\nabc\r\n"
    b"HMSG _INBOX.q 1 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n"  # no body
    b"MSG a.e 2 3\r\nnot\r\n"  # sid 2 has no handler: skipped, parsing goes on
    b"MSG a.f 1 3\r\nend\r\n"
)

EXPECTED: Got = [
    (b"a.b", b"", b"", b"hello\r\n"),
    (b"a.c", b"_INBOX.r.5", b"", b""),
    (b"a.d", b"$JS.ACK.S.C.1.2.3.4.0", b"NATS/1.0\r\nNats-Msg-Id: X\r\n\r\n", b"abc"),
    (b"_INBOX.q", b"", b"NATS/1.0 408 Request Timeout\r\n\r\n", b""),
    (b"a.f", b"", b"", b"end"),
]


@pytest.fixture
async def paired() -> AsyncIterator[tuple[NatsConnection, socket.socket]]:
    """A connection over one end of a socket pair (the test plays the server on the other)."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    conn = NatsConnection(reader, writer)
    try:
        yield conn, theirs
    finally:
        writer.close()
        theirs.close()


async def test_frames_parse_the_same_however_the_bytes_are_split(
    paired: tuple[NatsConnection, socket.socket],
) -> None:
    conn, _ = paired
    assert FRAMES.count(b"HMSG") == 2
    got: Got = []
    conn._handlers = {b"1": lambda *a: got.append(a)}
    for cut in range(len(FRAMES) + 1):
        got.clear()
        rest = conn._parse(FRAMES[:cut])
        assert conn._parse(rest + FRAMES[cut:]) == b""
        assert got == EXPECTED, cut
    # A frame cut inside its payload stays whole in the returned rest.
    got.clear()
    assert conn._parse(b"MSG a.b 1 5\r\nhel") == b"MSG a.b 1 5\r\nhel"
    assert got == []


async def test_server_ping_is_answered_and_err_ends_the_connection(
    paired: tuple[NatsConnection, socket.socket],
) -> None:
    conn, theirs = paired
    conn._parse(b"PING\r\n")
    await conn.drain()
    theirs.settimeout(5)
    assert theirs.recv(100) == b"PONG\r\n"
    with pytest.raises(NatsProtocolError, match="the NATS server said: Stale Connection"):
        conn._parse(b"-ERR 'Stale Connection'\r\n")


def test_status_and_header_helpers() -> None:
    assert status_of(b"NATS/1.0 408 Request Timeout\r\n\r\n") == 408
    assert status_of(b"NATS/1.0 503\r\n\r\n") == 503
    assert status_of(b"NATS/1.0\r\nNats-Msg-Id: 1\r\n\r\n") == 0
    assert status_of(b"") == 0
    hdr = b"NATS/1.0\r\nNats-Msg-Id:  01ABC \r\nOther: x\r\n\r\n"
    assert header_value(hdr, b"Nats-Msg-Id") == "01ABC"
    assert header_value(hdr, b"Other") == "x"
    assert header_value(hdr, b"Missing") is None


async def test_publish_and_receive_through_a_real_server(nats_server: NatsServer) -> None:
    conn = await NatsConnection.open(nats_server.url)
    got: Got = []
    try:
        conn.subscribe("t.>", lambda *a: got.append(a))
        conn.write(b"PUB t.plain 2\r\nhi\r\n"
                   b"HPUB t.hdr r.1 22 25\r\nNATS/1.0\r\nK: value\r\n\r\nabc\r\n")
        await conn.flush()
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.02)
        assert got == [(b"t.plain", b"", b"", b"hi"),
                       (b"t.hdr", b"r.1", b"NATS/1.0\r\nK: value\r\n\r\n", b"abc")]
        # A JetStream request with nobody answering comes back as a 503 status (no_responders).
        inbox = conn.new_inbox()
        replies: Got = []
        conn.subscribe(inbox, lambda *a: replies.append(a))
        conn.write(f"PUB $JS.API.STREAM.INFO.NOPE {inbox} 0\r\n\r\n".encode())
        await conn.flush()
        for _ in range(100):
            if replies:
                break
            await asyncio.sleep(0.02)
        assert replies and (status_of(replies[0][2]) == 503 or b"error" in replies[0][3])
    finally:
        await conn.aclose()
    assert conn.closed.done()
    with pytest.raises(ConnectionError):
        conn.write(b"PING\r\n")


async def test_a_stopped_server_completes_closed_with_a_reason(nats_server: NatsServer) -> None:
    conn = await NatsConnection.open(nats_server.url)
    try:
        nats_server.stop()
        why = await asyncio.wait_for(conn.closed, 30)
        assert "server" in why or "connection" in why
    finally:
        await conn.aclose()


async def test_unreachable_server_is_one_sentence() -> None:
    port = free_port()
    with pytest.raises(ConnectionError,
                       match=rf"^cannot reach the NATS server at 127\.0\.0\.1:{port} \("):
        await NatsConnection.open(f"nats://127.0.0.1:{port}")


class FakeServer:
    """A TCP server that is not a good NATS server: says ``first``, then ``then`` after the
    client's CONNECT (recorded), then waits for the client to hang up."""

    def __init__(self, first: bytes, then: bytes) -> None:
        self.first, self.then = first, then
        self.connects: list[dict[str, object]] = []
        self.done = asyncio.Event()
        self.port = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(self.done.wait(), 10)
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            w.write(self.first)
            line = await r.readline()
            if line.startswith(b"CONNECT "):
                self.connects.append(json.loads(line[8:]))
                w.write(self.then)
                await w.drain()
                await r.read()  # until the client hangs up
        finally:
            w.close()
            self.done.set()


async def test_refused_handshake_says_why_and_sends_credentials() -> None:
    async with FakeServer(b'INFO {"auth_required":true}\r\n',
                          b"-ERR 'Authorization Violation'\r\n") as fake:
        with pytest.raises(NatsProtocolError, match="refused the connection: 'Authorization"):
            await NatsConnection.open(f"nats://bob:s%40cret@127.0.0.1:{fake.port}")
    assert fake.connects[0]["user"] == "bob" and fake.connects[0]["pass"] == "s@cret"
    assert fake.connects[0]["headers"] is True and fake.connects[0]["no_responders"] is True


@pytest.mark.parametrize(("scheme", "first", "match"), [
    ("tls", b'INFO {"server_id":"x"}\r\n', "does not offer TLS"),
    ("nats", b"HTTP/1.1 400 Bad Request\r\n", "not a NATS server"),
])
async def test_what_is_not_the_nats_server_asked_for_is_named(
    scheme: str, first: bytes, match: str
) -> None:
    async with FakeServer(first, b"") as fake:
        with pytest.raises(NatsProtocolError, match=match):
            await NatsConnection.open(f"{scheme}://127.0.0.1:{fake.port}", timeout=5)


def _tls_server(tmp_path: Path) -> tuple[NatsServer, Path]:
    """A nats-server that requires TLS, with a self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = NatsServer(tmp_path / "js", extra=["--tls", "--tlscert", str(cert),
                                                "--tlskey", str(key)])
    return server, cert


async def test_tls_is_upgraded_after_info_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = _tls_server(tmp_path)
    server.start()
    try:
        # Not trusted yet: one sentence, no traceback.
        with pytest.raises(ConnectionError, match=r"TLS with the NATS server at 127\.0\.0\.1"):
            await NatsConnection.open(f"tls://127.0.0.1:{server.port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        got: Got = []
        for scheme in ("tls", "nats"):  # nats:// too: the server's INFO asks for TLS
            conn = await NatsConnection.open(f"{scheme}://127.0.0.1:{server.port}")
            got.clear()
            conn.subscribe("t", lambda *a: got.append(a))
            conn.write(b"PUB t 2\r\nok\r\n")
            await conn.flush()
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.02)
            await conn.aclose()
            assert got == [(b"t", b"", b"", b"ok")]
    finally:
        server.stop()

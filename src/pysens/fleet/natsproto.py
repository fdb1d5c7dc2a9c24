"""A lean NATS client-protocol connection for the fleet's hot paths (no third-party package).

nats-py spends most of its time per message (a Msg object, a future per publish, header dicts,
a task hop per delivery); the forwarder and the collector need only a few protocol verbs, so they
speak them here over one asyncio TCP stream: ``CONNECT`` (headers and no-responders on), ``PING``
/ ``PONG``, ``PUB`` / ``HPUB`` built as bytes and written a whole batch at a time, one wildcard
``SUB`` per connection for replies, and ``MSG`` / ``HMSG`` frames parsed with bytes operations
on a buffer. Stream and consumer management stays with nats-py (rare, and easier to keep right
there).

The protocol is https://docs.nats.io/reference/reference-protocols/nats-protocol; a JetStream
status (``NATS/1.0 408 Request Timeout``, ``404 No Messages``, ``503`` no responders) comes as an
``HMSG`` with an empty body and the code on the header's first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

__all__ = ["Msg", "NatsConnection", "NatsProtocolError", "header_value", "status_of"]

#: One message as it arrived: subject, reply (b"" when none), header block (b"" when none),
#: payload.
Msg = tuple[bytes, bytes, bytes, bytes]
Handler = Callable[[bytes, bytes, bytes, bytes], None]

_CRLF = b"\r\n"


class NatsProtocolError(ConnectionError):
    """The server refused the connection or said ``-ERR``; the message says why."""


def status_of(headers: bytes) -> int:
    """The status code on a header block's first line (``NATS/1.0 408 …`` -> 408), else 0."""
    if len(headers) > 12 and headers[8:9] == b" ":
        with contextlib.suppress(ValueError):
            return int(headers[9:12])
    return 0


def header_value(headers: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (exact case, as JetStream and our publishers write it)."""
    key = _CRLF + name + b":"
    at = headers.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = headers.find(_CRLF, start)
    return headers[start:end].strip().decode("utf-8", "replace")


class NatsConnection:
    """One NATS connection: :meth:`open` it, :meth:`subscribe`, :meth:`write` frames.

    Deliveries are handed to the subscription's handler synchronously from the reading task, in
    the order the server sent them. :attr:`closed` completes (with the reason) when the
    connection ends for any cause.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._handlers: dict[bytes, Handler] = {}
        self._next_sid = 1
        self._pongs: list[asyncio.Future[None]] = []
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        #: The largest message (headers and payload) the server takes, from its INFO; a bigger
        #: one makes it close the connection.
        self.max_payload = 1 << 20

    @classmethod
    async def open(
        cls, url: str, *, timeout: float = 2.0,  # noqa: ASYNC109 - a handshake must end
        name: str = "pysens",
    ) -> NatsConnection:
        """Connect to ``nats://[user:pass@|token@]host:port`` (``tls://`` or a server that
        requires TLS: upgraded, verified against the system's CA store) and complete the
        handshake.

        Raises :class:`ConnectionError` (one sentence) when that fails.
        """
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        where = f"{host}:{port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=1 << 20), timeout)
        except (OSError, TimeoutError) as e:
            text = " ".join(str(e).split()) or type(e).__name__
            raise ConnectionError(f"cannot reach the NATS server at {where} ({text})") from None
        conn = cls(reader, writer)
        try:
            await asyncio.wait_for(conn._handshake(parts.username, parts.password, name, host,
                                                   parts.scheme == "tls"), timeout)
        except BaseException as e:
            writer.close()
            if isinstance(e, ConnectionError):
                raise
            if isinstance(e, ssl.SSLError):
                raise ConnectionError(f"TLS with the NATS server at {where} failed "
                                      f"({e.reason or e})") from None
            if isinstance(e, (OSError, TimeoutError, asyncio.IncompleteReadError)):
                raise ConnectionError(f"the NATS server at {where} did not complete the "
                                      f"handshake ({type(e).__name__})") from None
            raise
        return conn

    async def _handshake(self, user: str | None, password: str | None, name: str,
                         host: str, tls: bool) -> None:
        line = await self._reader.readuntil(_CRLF)
        if not line.startswith(b"INFO "):
            raise NatsProtocolError(f"not a NATS server (it said {line[:40]!r})")
        info = json.loads(line[5:])
        self.max_payload = int(info.get("max_payload") or self.max_payload)
        if tls or info.get("tls_required"):
            if not info.get("tls_available", info.get("tls_required")):
                raise NatsProtocolError("a tls:// URL, but the NATS server does not offer TLS")
            # NATS upgrades after the plain INFO; the system's CA store (SSL_CERT_FILE too).
            await self._writer.start_tls(ssl.create_default_context(), server_hostname=host)
        opts: dict[str, object] = {
            "verbose": False, "pedantic": False, "headers": True, "no_responders": True,
            "protocol": 1, "lang": "python", "version": "pysens", "name": name,
        }
        if user and password is not None:
            opts["user"], opts["pass"] = unquote(user), unquote(password)
        elif user:
            opts["auth_token"] = unquote(user)
        self._writer.write(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        while True:
            line = await self._reader.readuntil(_CRLF)
            if line.startswith(b"PONG"):
                break
            if line.startswith(b"-ERR"):
                raise NatsProtocolError(
                    f"the NATS server refused the connection: {line[5:].strip().decode()}")
        self._task = asyncio.create_task(self._read_loop())

    # -- writing -----------------------------------------------------------------------------

    def subscribe(self, subject: str, handler: Handler) -> None:
        """Deliver every message on ``subject`` (wildcards allowed) to ``handler``."""
        sid = str(self._next_sid).encode()
        self._next_sid += 1
        self._handlers[sid] = handler
        self._writer.write(b"SUB " + subject.encode() + b" " + sid + _CRLF)

    def write(self, data: bytes) -> None:
        """Send ready-made protocol frames (one call for a whole batch)."""
        if self.closed.done():
            raise ConnectionError(self.closed.result())
        self._writer.write(data)

    async def drain(self) -> None:
        """Wait until the socket's write buffer is below its high-water mark."""
        await self._writer.drain()

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a PONG may not come
        """PING and wait for the PONG: everything written before has been processed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(fut)
        self.write(b"PING\r\n")
        await asyncio.wait_for(fut, timeout)

    @staticmethod
    def new_inbox() -> str:
        """A fresh reply prefix, unique to this connection."""
        return f"_INBOX.{secrets.token_hex(11)}"

    async def aclose(self) -> None:
        """Close the connection (idempotent), once the server has read what was written."""
        if not self.closed.done():
            with contextlib.suppress(Exception):
                await self.flush(1.0)
        self._end("closed by this client")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    def _end(self, why: str) -> None:
        if not self.closed.done():
            self.closed.set_result(why)
        for fut in self._pongs:
            if not fut.done():
                fut.set_exception(ConnectionError(why))
        self._pongs.clear()

    # -- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        why = "the server closed the connection"
        try:
            buf = b""
            read = self._reader.read
            while True:
                chunk = await read(1 << 18)
                if not chunk:
                    break
                buf = self._parse(buf + chunk if buf else chunk)
        except NatsProtocolError as e:
            why = str(e)
        except (OSError, asyncio.IncompleteReadError) as e:
            why = f"the connection to the server was lost ({type(e).__name__})"
        finally:
            self._end(why)
            self._writer.close()

    def _parse(self, buf: bytes) -> bytes:
        """Handle every complete frame in ``buf``; the incomplete rest is returned."""
        pos = 0
        n = len(buf)
        find = buf.find
        handlers = self._handlers
        while pos < n:
            eol = find(_CRLF, pos)
            if eol < 0:
                break
            op = buf[pos:pos + 4]
            if op == b"HMSG":
                # HMSG <subject> <sid> [reply] <hdr bytes> <total bytes>
                args = buf[pos + 5:eol].split(b" ")
                total = int(args[-1])
                end = eol + 2 + total
                if end + 2 > n:
                    break
                hlen = int(args[-2])
                start = eol + 2
                handler = handlers.get(args[1])
                if handler is not None:
                    handler(args[0], args[2] if len(args) == 5 else b"",
                            buf[start:start + hlen], buf[start + hlen:end])
                pos = end + 2
            elif op == b"MSG ":
                args = buf[pos + 4:eol].split(b" ")
                size = int(args[-1])
                end = eol + 2 + size
                if end + 2 > n:
                    break
                handler = handlers.get(args[1])
                if handler is not None:
                    handler(args[0], args[2] if len(args) == 4 else b"", b"", buf[eol + 2:end])
                pos = end + 2
            else:
                line = buf[pos:eol]
                pos = eol + 2
                if line == b"PING":
                    self._writer.write(b"PONG\r\n")
                elif line == b"PONG":
                    if self._pongs:
                        fut = self._pongs.pop(0)
                        if not fut.done():
                            fut.set_result(None)
                elif line.startswith(b"-ERR"):
                    text = line[5:].strip().strip(b"'").decode("utf-8", "replace")
                    raise NatsProtocolError(f"the NATS server said: {text}")
                # INFO (cluster updates) and +OK need nothing.
        return buf[pos:]

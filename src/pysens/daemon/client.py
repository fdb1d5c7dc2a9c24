"""The client side of the daemon's local socket: :class:`DaemonClient` for the ``sens`` commands
(blocking) and :class:`AsyncDaemonClient` for asyncio code (``sens web``). Both speak
:mod:`.protocol`'s lines and check its answers the same way."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ..events import SensEvent
from .protocol import (
    LINE_LIMIT,
    DaemonError,
    checked,
    default_socket_path,
    dump,
    event_of,
    parse_reply,
)

__all__ = ["AsyncDaemonClient", "DaemonClient"]


class DaemonClient:
    """The client side, for the ``sens`` commands (blocking; one request at a time)."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._file = sock.makefile("rb")

    @classmethod
    def connect(cls, path: str | Path | None = None, timeout: float = 30) -> DaemonClient | None:
        """A client of the daemon on ``path`` (default socket), or None when none runs."""
        p = Path(path) if path is not None else default_socket_path()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(p))
        except OSError:
            s.close()
            return None
        return cls(s, p)

    def close(self) -> None:
        """Hang up."""
        self._file.close()
        self.sock.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline(LINE_LIMIT)
        except OSError as e:
            raise DaemonError(f"the daemon on {self.path} did not answer: {e}") from None
        return parse_reply(line, self.path)

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send ``req``; its answer, or DaemonError with the daemon's sentence."""
        try:
            self.sock.sendall(dump(req))
        except OSError as e:
            # A refusal arrives before the request is read: say that rather than EPIPE.
            try:
                reply = self._read()
            except DaemonError:
                raise DaemonError(f"cannot talk to the daemon on {self.path}: "
                                  f"{e.strerror}") from None
        else:
            reply = self._read()
        return checked(reply)

    def watch(self, criteria: str | None = None) -> Iterator[SensEvent]:
        """Events as the daemon journals them (blocks; no time limit between events)."""
        self.request({"op": "watch", "filter": criteria})
        self.sock.settimeout(None)
        while True:
            yield event_of(self._read(), self.path)


class AsyncDaemonClient:
    """One asyncio connection to the daemon; use :meth:`connect`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 path: Path) -> None:
        self._reader = reader
        self._writer = writer
        self.path = path

    @classmethod
    async def connect(cls, path: str | Path | None = None,
                      timeout: float = 5) -> AsyncDaemonClient:  # noqa: ASYNC109 - connecting must end
        """Connect to the daemon on ``path`` (default socket); DaemonError (one sentence) when
        none answers."""
        p = Path(path) if path is not None else default_socket_path()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(p), limit=LINE_LIMIT), timeout)
        except (OSError, TimeoutError) as e:
            why = getattr(e, "strerror", None) or "no answer"
            raise DaemonError(f"no sens serve answers on {p} ({why})") from None
        return cls(reader, writer, p)

    async def aclose(self) -> None:
        """Hang up."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, Any]:
        try:
            line = await self._reader.readline()
        except (OSError, ValueError) as e:  # ValueError: a line over the limit
            raise DaemonError(f"the daemon on {self.path} broke off: {e}") from None
        return parse_reply(line, self.path)

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send ``req``; its answer, or DaemonError with the daemon's sentence."""
        try:
            self._writer.write(dump(req))
            await self._writer.drain()
        except OSError as e:
            raise DaemonError(f"cannot talk to the daemon on {self.path}: {e}") from None
        return checked(await self._read())

    async def start_watch(self, criteria: str | None = None) -> None:
        """Ask for events from now on (then read them with :meth:`next_event`)."""
        await self.request({"op": "watch", "filter": criteria})

    async def next_event(self) -> SensEvent:
        """The next event of a watch; DaemonError when the daemon hangs up or ends it."""
        return event_of(await self._read(), self.path)

    async def watch(self, criteria: str | None = None) -> AsyncIterator[SensEvent]:
        """Events as the daemon journals them, until it hangs up (DaemonError then)."""
        await self.start_watch(criteria)
        while True:
            yield await self.next_event()

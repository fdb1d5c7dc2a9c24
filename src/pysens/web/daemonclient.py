"""An asyncio client of the daemon's local socket (newline-delimited JSON, one request per
line, one answer per line; see :mod:`pysens.socketapi`), for the web server.

Only what a read-only viewer needs: :meth:`AsyncDaemonClient.request` (``hello``, ``sessions``)
and :meth:`AsyncDaemonClient.watch` (events as the daemon journals them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..events import EventError, SensEvent
from .links import DaemonError

__all__ = ["AsyncDaemonClient"]

# The sessions answer of a daemon with tens of thousands of sessions is one long line.
_LINE_LIMIT = 64 * 1024 * 1024


class AsyncDaemonClient:
    """One connection to the daemon; use :meth:`connect`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 path: Path) -> None:
        self._reader = reader
        self._writer = writer
        self.path = path

    @classmethod
    async def connect(cls, path: str | Path, timeout: float = 5) -> AsyncDaemonClient:
        """Connect to the daemon on ``path``; DaemonError (one sentence) when none answers."""
        p = Path(path)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(p), limit=_LINE_LIMIT), timeout)
        except (OSError, TimeoutError) as e:
            why = getattr(e, "strerror", None) or "no answer"
            raise DaemonError(f"no sens serve answers on {p} ({why})") from None
        return cls(reader, writer, p)

    async def close(self) -> None:
        """Hang up."""
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, Any]:
        try:
            line = await self._reader.readline()
        except (OSError, ValueError) as e:  # ValueError: a line over the limit
            raise DaemonError(f"the daemon on {self.path} broke off: {e}") from None
        if not line:
            raise DaemonError(f"the daemon on {self.path} hung up")
        try:
            reply = json.loads(line)
        except ValueError:
            raise DaemonError(f"the daemon on {self.path} sent something that is not JSON") \
                from None
        if not isinstance(reply, dict):
            raise DaemonError(f"the daemon on {self.path} sent something that is not an object")
        return reply

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send ``req``; its answer, or DaemonError with the daemon's sentence."""
        try:
            self._writer.write((json.dumps(req) + "\n").encode())
            await self._writer.drain()
        except OSError as e:
            raise DaemonError(f"cannot talk to the daemon on {self.path}: {e}") from None
        reply = await self._read()
        if not reply.get("ok"):
            raise DaemonError(str(reply.get("error", "the daemon refused")),
                              int(reply.get("status", 1)))
        return reply

    async def start_watch(self, criteria: str | None = None) -> None:
        """Ask for events from now on (then read them with :meth:`next_event`)."""
        await self.request({"op": "watch", "filter": criteria})

    async def next_event(self) -> SensEvent:
        """The next event of a watch; DaemonError when the daemon hangs up or ends it."""
        reply = await self._read()
        if "event" not in reply:
            raise DaemonError(str(reply.get("error", "the daemon ended the watch")))
        try:
            return SensEvent.from_json(reply["event"])
        except (EventError, TypeError) as e:
            raise DaemonError(f"the daemon on {self.path} sent a bad event: {e}") from None

    async def watch(self, criteria: str | None = None) -> AsyncIterator[SensEvent]:
        """Events as the daemon journals them, until it hangs up (DaemonError then)."""
        await self.start_watch(criteria)
        while True:
            yield await self.next_event()

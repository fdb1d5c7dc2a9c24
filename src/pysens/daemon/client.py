"""The client side of the daemon's local socket, for the ``sens`` commands (blocking)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..events import SensEvent
from .protocol import LINE_LIMIT, DaemonError, default_socket_path, dump

__all__ = ["DaemonClient"]


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
        if not reply.get("ok"):
            raise DaemonError(str(reply.get("error", "the daemon refused")),
                              int(reply.get("status", 1)))
        return reply

    def watch(self, criteria: str | None = None) -> Iterator[SensEvent]:
        """Events as the daemon journals them (blocks; no time limit between events)."""
        self.request({"op": "watch", "filter": criteria})
        self.sock.settimeout(None)
        while True:
            reply = self._read()
            if "event" not in reply:
                raise DaemonError(str(reply.get("error", "the daemon ended the watch")))
            yield SensEvent.from_json(reply["event"])

"""The daemon's local socket protocol: newline-delimited JSON requests and responses.

Every request is one JSON object on one line with an ``op``; every response is one line too,
``{"ok": true, …}`` or ``{"ok": false, "error": "<one sentence>", "status": 1|2}``:

* ``{"op": "hello"}`` -> ``{"ok": true, "pid": …, "journal": PATH, "sources": [...]}``
* ``{"op": "publish", "events": [event objects]}`` -> ``{"ok": true, "published": N,
  "already": M, "errors": [{"index": I, "error": "…"}]}``, sent once every good event is
  journaled (bad ones are named and skipped; the rest still go in).
* ``{"op": "watch", "filter": CRITERIA}`` -> ``{"ok": true}``, then ``{"event": {…}}`` lines as
  events are journaled, until the client hangs up. The filter is parsed by
  :mod:`pysens.criteria`, never evaluated.
* ``{"op": "sessions"}`` -> ``{"ok": true, "sessions": [...]}`` (the daemon's session table).
* ``{"op": "network"}`` -> ``{"ok": true, "connections": [...], "destinations": [...]}`` and
  ``{"op": "power"}`` -> ``{"ok": true, "power": {...} | null}`` (``sens network`` / ``power``).
* ``{"op": "reload"}`` -> re-read persistent subscriptions now.

The socket is created 0600 (0660 with a configured group) in a directory only its owner can
enter, and the server checks each client's credentials (``SO_PEERCRED``): root, the daemon's own
user and members of the configured group are served; anyone else gets one refusal line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..criteria import Criteria
from ..events import SensEvent

__all__ = [
    "LINE_LIMIT",
    "DaemonError",
    "SocketBackend",
    "checked",
    "default_socket_path",
    "dump",
    "event_of",
    "parse_reply",
]

#: A publish request carries up to a few thousand events on one line.
LINE_LIMIT = 64 * 1024 * 1024


def default_socket_path() -> Path:
    """``$SENS_SOCKET``; else ``/run/pysens/sens.sock`` as root; else
    ``$XDG_RUNTIME_DIR/pysens/sens.sock`` (``/tmp/pysens-UID/sens.sock`` without one)."""
    env = os.environ.get("SENS_SOCKET")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/pysens/sens.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "pysens" / "sens.sock"
    return Path(f"/tmp/pysens-{os.geteuid()}/sens.sock")  # noqa: S108


class DaemonError(RuntimeError):
    """The daemon answered with an error, or hung up; ``status`` is the exit code to use."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class SocketBackend(Protocol):
    """What the daemon offers the socket (implemented by :class:`pysens.daemon.service.Service`)."""

    def hello(self) -> dict[str, Any]:
        """Who is serving: pid, journal, sources."""
        ...

    async def publish(self, events: Sequence[SensEvent]) -> tuple[int, int]:
        """Journal ``events``, then tell subscribers; ``(new, already journaled)``."""
        ...

    def sessions(self) -> list[dict[str, Any]]:
        """The open sessions, as ``sens sessions --json`` objects."""
        ...

    def watch(
        self, criteria: Criteria | None, push: Callable[[SensEvent], None]
    ) -> Callable[[], None]:
        """Call ``push`` for each event (matching ``criteria``) from now on; returns the
        unsubscriber."""
        ...

    def network(self) -> dict[str, Any]:
        """The connections and destinations (``sens network``)."""
        ...

    def power(self) -> dict[str, Any]:
        """The power state (``sens power``)."""
        ...

    async def reload(self) -> None:
        """Re-read persistent subscriptions (returns once they run)."""
        ...


def dump(obj: dict[str, Any]) -> bytes:
    """One protocol line: ``obj`` as JSON and a newline."""
    return (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode()


def parse_reply(line: bytes, path: Path) -> dict[str, Any]:
    """One answer line of the daemon on ``path`` as an object; DaemonError (one sentence) when
    it hung up (an empty line) or sent something else."""
    if not line:
        raise DaemonError(f"the daemon on {path} hung up")
    try:
        reply = json.loads(line)
    except ValueError:
        raise DaemonError(f"the daemon on {path} sent something that is not JSON") from None
    if not isinstance(reply, dict):
        raise DaemonError(f"the daemon on {path} sent something that is not an object")
    return reply


def checked(reply: dict[str, Any]) -> dict[str, Any]:
    """``reply`` when it says ok, else DaemonError with the daemon's sentence and status."""
    if not reply.get("ok"):
        raise DaemonError(str(reply.get("error", "the daemon refused")),
                          int(reply.get("status", 1)))
    return reply


def event_of(reply: dict[str, Any], path: Path) -> SensEvent:
    """The event a watch line carries; DaemonError when the daemon ended the watch instead."""
    from ..events import EventError

    if "event" not in reply:
        raise DaemonError(str(reply.get("error", "the daemon ended the watch")))
    try:
        return SensEvent.from_json(reply["event"])
    except (EventError, TypeError) as e:
        raise DaemonError(f"the daemon on {path} sent a bad event: {e}") from None

"""The daemon's local socket: newline-delimited JSON requests and responses.

Every request is one JSON object on one line with an ``op``; every response is one line too,
``{"ok": true, …}`` or ``{"ok": false, "error": "<one sentence>", "status": 1|2}``:

* ``{"op": "hello"}`` -> ``{"ok": true, "pid": …, "journal": PATH, "sources": [...]}``
* ``{"op": "publish", "events": [§2 objects]}`` -> ``{"ok": true, "published": N,
  "already": M, "errors": [{"index": I, "error": "…"}]}``, sent once every good event is
  journaled (bad ones are named and skipped; the rest still go in).
* ``{"op": "watch", "filter": CRITERIA}`` -> ``{"ok": true}``, then ``{"event": {§2}}`` lines as
  events are journaled, until the client hangs up. The filter is parsed by
  :mod:`pysens.criteria`, never evaluated.
* ``{"op": "sessions"}`` -> ``{"ok": true, "sessions": [...]}`` (the daemon's session table).
* ``{"op": "reload"}`` -> re-read persistent subscriptions now.

The socket is created 0600 (0660 with a configured group) in a directory only its owner can
enter, and the server checks each client's credentials (``SO_PEERCRED``): root, the daemon's own
user and members of the configured group are served; anyone else gets one refusal line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .events import EventError, SensEvent

__all__ = [
    "DaemonClient",
    "DaemonError",
    "SocketBackend",
    "SocketServer",
    "default_socket_path",
    "peer_credentials",
]

log = logging.getLogger(__name__)

# A publish request carries up to a few thousand events on one line.
_LINE_LIMIT = 64 * 1024 * 1024
# A watcher this far behind is cut off rather than letting the daemon's memory grow.
_WATCH_BACKLOG = 100_000


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
    """What the daemon offers the socket (implemented by :class:`pysens.service.Service`)."""

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
        self, predicate: Callable[[SensEvent], bool] | None, push: Callable[[SensEvent], None]
    ) -> Callable[[], None]:
        """Call ``push`` for each matching event from now on; returns the unsubscriber."""
        ...

    async def reload(self) -> None:
        """Re-read persistent subscriptions (returns once they run)."""
        ...


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _groups_of(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode()


class SocketServer:
    """The daemon side: listens on ``path`` and answers requests with ``backend``."""

    def __init__(self, path: str | Path, backend: SocketBackend,
                 group: str | None = None) -> None:
        self.path = Path(path)
        self.backend = backend
        self.gid: int | None = None
        if group is not None:
            import grp  # POSIX only: imported here so the module loads on Windows

            try:
                self.gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise DaemonError(f"the socket group {group!r} does not exist") from None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.refused = 0

    async def start(self) -> None:
        """Create the socket (refusing to replace a live daemon's) and start serving."""
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o750 if self.gid is not None else 0o700)
            if self.gid is not None:
                os.chown(parent, -1, self.gid)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise DaemonError(f"another sens serve is running on {self.path}")
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise DaemonError(f"{self.path} exists and is not a socket; not replacing it")
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=_LINE_LIMIT)
        except OSError as e:
            raise DaemonError(f"cannot create the socket {self.path}: {e.strerror}") from None
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
            os.chmod(self.path, 0o660)

    async def close(self) -> None:
        """Stop listening, hang up on every client and remove the socket file."""
        if self._server is not None:
            self._server.close()
        for t in list(self._clients):
            t.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _allowed(self, sock: socket.socket) -> tuple[bool, int]:
        pid, uid, gid = peer_credentials(sock)
        if uid in (0, os.geteuid()):
            return True, uid
        if self.gid is not None and (gid == self.gid or self.gid in _groups_of(pid)):
            return True, uid
        return False, uid

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            ok, uid = self._allowed(writer.get_extra_info("socket"))
            if not ok:
                self.refused += 1
                log.warning("refused a socket client of uid %d", uid)
                writer.write(_dump({"ok": False, "status": 1, "error":
                                    f"permission denied: uid {uid} may not use this daemon"}))
                await writer.drain()
                # Half-close and swallow what the client sent meanwhile (unread), so closing
                # does not reset the connection before it has read the refusal.
                writer.write_eof()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1 << 20), 1)
                return
            while line := await reader.readline():
                if not line.strip():
                    continue
                if not await self._request(line, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away, or sent an overlong line: nothing more to say
        except asyncio.CancelledError:
            pass  # the daemon is stopping; ending quietly keeps asyncio from logging it
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(self, line: bytes, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done (after a watch)."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            writer.write(_dump({"ok": False, "status": 2,
                                "error": "a request must be one JSON object on one line"}))
            await writer.drain()
            return True
        op = req.get("op")
        if op == "hello":
            reply = {"ok": True, **self.backend.hello()}
        elif op == "publish":
            reply = await self._publish(req.get("events"))
        elif op == "sessions":
            reply = {"ok": True, "sessions": self.backend.sessions()}
        elif op == "reload":
            await self.backend.reload()
            reply = {"ok": True}
        elif op == "watch":
            await self._watch(req, reader, writer)
            return False
        else:
            reply = {"ok": False, "status": 2, "error": f"unknown op {op!r}; known ops are "
                     "hello, publish, watch, sessions, reload"}
        writer.write(_dump(reply))
        await writer.drain()
        return True

    async def _publish(self, objs: object) -> dict[str, Any]:
        if not isinstance(objs, list):
            return {"ok": False, "status": 2, "error": "publish needs a list of events"}
        events, errors = [], []
        for i, obj in enumerate(objs):
            try:
                events.append(SensEvent.from_json(obj))
            except (EventError, TypeError) as e:
                errors.append({"index": i, "error": str(e)})
        new, already = await self.backend.publish(events)
        return {"ok": True, "published": new, "already": already, "errors": errors}

    async def _watch(self, req: dict[str, Any], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        predicate = None
        text = req.get("filter")
        if text is not None:
            from .criteria import CriteriaError, compile_criteria

            try:
                if not isinstance(text, str):
                    raise CriteriaError("the filter must be a string", 0)
                predicate = compile_criteria(text).matches
            except CriteriaError as e:
                writer.write(_dump({"ok": False, "status": 2, "error": f"bad filter: {e}"}))
                await writer.drain()
                return
        queue: asyncio.Queue[SensEvent | str] = asyncio.Queue()

        def push(event: SensEvent) -> None:
            queue.put_nowait("behind" if queue.qsize() >= _WATCH_BACKLOG else event)

        async def hangup() -> None:
            # A watcher sends nothing more: end of input means it went away.
            await reader.read()
            queue.put_nowait("gone")

        unsubscribe = self.backend.watch(predicate, push)
        watching = asyncio.create_task(hangup())
        try:
            writer.write(_dump({"ok": True}))
            await writer.drain()
            while not isinstance(event := await queue.get(), str):
                writer.write(_dump({"event": event.to_json()}))
                if queue.empty():
                    await writer.drain()
            if event == "behind":
                writer.write(_dump({"ok": False, "status": 1, "error":
                                    "the watcher fell too far behind and was cut off"}))
                await writer.drain()
        finally:
            unsubscribe()
            watching.cancel()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


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
            line = self._file.readline(_LINE_LIMIT)
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
            self.sock.sendall(_dump(req))
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

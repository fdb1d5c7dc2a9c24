"""The daemon's side of the local socket: who may connect, and the answer to each request.

See :mod:`pysens.daemon.protocol` for the requests; the backend (:class:`~pysens.daemon.service.
Service`) does the work.
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
from pathlib import Path
from typing import Any

from ..events import EventError, SensEvent
from ..journal import JournalError
from .protocol import LINE_LIMIT, DaemonError, SocketBackend, dump

__all__ = ["SocketServer", "peer_credentials"]

log = logging.getLogger("pysens.daemon")

# A watcher this far behind is cut off rather than letting the daemon's memory grow.
_WATCH_BACKLOG = 100_000


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
                self._client, path=str(self.path), limit=LINE_LIMIT)
        except OSError as e:
            raise DaemonError(f"cannot create the socket {self.path}: {e.strerror}") from None
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
            os.chmod(self.path, 0o660)

    async def aclose(self) -> None:
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
        assert task is not None  # noqa: S101 - an invariant of this code, not a check of input
        self._clients.add(task)
        try:
            ok, uid = self._allowed(writer.get_extra_info("socket"))
            if not ok:
                self.refused += 1
                log.warning("refused a socket client of uid %d", uid)
                writer.write(dump({"ok": False, "status": 1, "error":
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
            writer.write(dump({"ok": False, "status": 2,
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
        elif op == "network":
            reply = {"ok": True, **self.backend.network()}
        elif op == "power":
            reply = {"ok": True, **self.backend.power()}
        elif op == "reload":
            await self.backend.reload()
            reply = {"ok": True}
        elif op == "watch":
            await self._watch(req, reader, writer)
            return False
        else:
            reply = {"ok": False, "status": 2, "error": f"unknown op {op!r}; known ops are "
                     "hello, publish, watch, sessions, network, power, reload"}
        writer.write(dump(reply))
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
        try:
            new, already = await self.backend.publish(events)
        except JournalError as e:  # a full disk, a damaged page: the daemon said it in its log
            return {"ok": False, "status": 1, "error": f"{e}; none of these {len(events)} "
                    "event(s) was journaled"}
        return {"ok": True, "published": new, "already": already, "errors": errors}

    async def _watch(self, req: dict[str, Any], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        criteria = None
        text = req.get("filter")
        if text is not None:
            from ..criteria import CriteriaError, compile_criteria

            try:
                if not isinstance(text, str):
                    raise CriteriaError("the filter must be a string", 0)
                criteria = compile_criteria(text)
            except CriteriaError as e:
                writer.write(dump({"ok": False, "status": 2, "error": f"bad filter: {e}"}))
                await writer.drain()
                return
        queue: asyncio.Queue[SensEvent | str] = asyncio.Queue()

        def push(event: SensEvent) -> None:
            queue.put_nowait("behind" if queue.qsize() >= _WATCH_BACKLOG else event)

        async def hangup() -> None:
            # A watcher sends nothing more: end of input means it went away.
            await reader.read()
            queue.put_nowait("gone")

        unsubscribe = self.backend.watch(criteria, push)
        watching = asyncio.create_task(hangup())
        try:
            writer.write(dump({"ok": True}))
            await writer.drain()
            while not isinstance(event := await queue.get(), str):
                writer.write(dump({"event": event.to_json()}))
                if queue.empty():
                    await writer.drain()
            if event == "behind":
                writer.write(dump({"ok": False, "status": 1, "error":
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

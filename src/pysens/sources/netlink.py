"""The Linux connection source: rtnetlink (``NETLINK_ROUTE``) over a stdlib socket, pushed.

Why the stdlib socket and not pyroute2: both were tried here (Python 3.11, Debian 12). pyroute2
0.9's ``AsyncIPRoute`` works, but importing it takes ~150 ms and the process's peak RSS goes
from ~10 MB to ~33 MB, a dump of links and addresses takes ~3 ms against ~0.15 ms for the raw
socket, and it hides what this source must see: when the socket overruns (``ENOBUFS``) and
exactly which datagrams are waiting, so that a burst can be drained and judged once. The
messages needed are few and fixed (``netlink_wire`` parses them in ~350 lines), so the source
needs no third-party package at all.

How it works:

* The socket is bound to the link, IPv4/IPv6 address and IPv4/IPv6 route multicast groups
  *before* links, addresses and routes are dumped, so no change falls between the dump and the
  first notification (a notification that overtakes the dump only repeats a newer state, and the
  messages are applied in the order the kernel queued them). The dump gives
  ``ConnectionState(existing=True)`` for every link.
* Then nothing is polled: the event loop wakes when the socket is readable, everything readable
  is drained at once, and the table is judged once — so the burst that one change makes (link
  down = RTM_NEWLINK, routes and IPv6 addresses going) is one state change, and a flapping
  link's queued up/down pairs collapse into the state it ends in.
* ``ENOBUFS`` (the kernel dropped notifications because the socket's buffer was full) is
  answered by re-dumping everything and reporting only the difference, with one log line. The
  receive buffer is raised to 4 MiB (``SO_RCVBUFFORCE`` as root) to make that rare.
* Link speed (QOC) comes from ``/sys/class/net/IF/speed`` (Mb/s); a driver that does not know
  (a bridge: EINVAL, a down link: -1) gives no QOC, hence the NoQOCInfo method.
* Interface names are data: control characters in a name pass through untouched as the
  observation's ``connection`` (printing escapes them; JSON keeps them).

Nothing here is imported on other systems until a socket is opened: the module imports on
every OS; :meth:`NetlinkSource.probe` says why it cannot run (no ``AF_NETLINK``, or a sandbox
that forbids it).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from ..observations import ConnectionState, Observation
from . import SourceUnavailable
from .netlink_map import NetTable
from .netlink_wire import (
    GROUPS,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    DoneMessage,
    ErrorMessage,
    dump_request,
    parse_datagram,
)

__all__ = ["DESCRIPTION", "NetlinkSource", "open_netlink", "probe", "sysfs_speed"]

DESCRIPTION = "the kernel's rtnetlink (links, addresses, routes)"
SYSFS_NET = "/sys/class/net"
RCVBUF = 4 << 20
DUMP_TIMEOUT = 5.0
_NETLINK_ROUTE = 0
_SO_RCVBUFFORCE = 33
# A dump that ends with these is tried again: the buffer was full (ENOBUFS), or the kernel asks.
_RETRY = frozenset({errno.ENOBUFS, errno.EBUSY, errno.EINTR, errno.EAGAIN})

log = logging.getLogger("pysens.sources.netlink")


def _now() -> datetime:
    return datetime.now(UTC)


def sysfs_speed(ifname: str, root: str = SYSFS_NET) -> int | None:
    """The link's speed in bits/s from sysfs, or None when the driver does not know."""
    try:
        with open(f"{root}/{ifname}/speed", "rb") as f:
            text = f.read()
    except OSError:  # EINVAL (bridge, down link), ENOENT (gone): unknown
        return None
    try:
        mbps = int(text)
    except ValueError:
        return None
    return mbps * 1_000_000 if mbps > 0 else None


def _open_socket(rcvbuf: int | None = RCVBUF) -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket bound to the groups this source listens to."""
    family = getattr(socket, "AF_NETLINK", None)
    if family is None:
        raise SourceUnavailable("rtnetlink is Linux only (this system has no AF_NETLINK)")
    sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
    try:
        sock.setblocking(False)
        if rcvbuf:
            try:  # beyond net.core.rmem_max, allowed to root (CAP_NET_ADMIN)
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, GROUPS))
    except BaseException:
        sock.close()
        raise
    return sock


def _why_not(e: BaseException) -> str:
    if isinstance(e, SourceUnavailable):
        return str(e)
    if isinstance(e, PermissionError) or getattr(e, "errno", None) in (
            errno.EAFNOSUPPORT, errno.EPERM, errno.EACCES):
        return (f"opening a netlink route socket is not permitted here ({e}); a systemd "
                "sandbox needs AF_NETLINK in RestrictAddressFamilies=")
    return f"cannot open a netlink route socket ({e or type(e).__name__})"


async def probe(**_options: Any) -> str | None:
    """None when rtnetlink can be watched here, else the reason in one sentence."""
    try:
        _open_socket(rcvbuf=None).close()
    except (OSError, SourceUnavailable) as e:
        return _why_not(e)
    return None


class _Overrun(Exception):
    """The socket overran (ENOBUFS) while a dump was read: dump again."""


class NetlinkSource:
    """A :class:`~pysens.sources.Source` of :class:`ConnectionState`, from rtnetlink.

    ``read_speed(ifname)`` gives bits/s or None (default: sysfs). ``rcvbuf``: the socket's
    receive buffer in bytes (small values are for tests that provoke an overrun).
    """

    name = "netlink"

    def __init__(self, *, host: str | None = None,
                 read_speed: Callable[[str], int | None] | None = None,
                 rcvbuf: int | None = RCVBUF) -> None:
        self.host = host
        self.rcvbuf = rcvbuf
        self.table = NetTable(read_speed or sysfs_speed, source=self.name, host=host)
        self._sock: socket.socket | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._armed = False
        self._closing = False
        self._initial: list[Observation] = []
        self._seq = 0
        # A dump skb is at most 32 KiB, or the largest link message (many SR-IOV VFs): room
        # for both, so nothing is ever truncated.
        self._buf = bytearray(256 << 10)
        #: Set once :meth:`watch` has dumped the state: every later change will be reported.
        self.ready = asyncio.Event()
        #: How many times the socket overran and the state was dumped again.
        self.resyncs = 0

    @classmethod
    async def probe(cls, **options: Any) -> str | None:
        """None when this source can run here, else the reason in one sentence."""
        return await probe(**options)

    # -- the Source protocol ---------------------------------------------------------------

    async def snapshot(self) -> list[Observation]:
        """Every link now, as ``ConnectionState(existing=True)``."""
        if self._sock is None:
            await self._start()
        return list(self.table.snapshot(_now()))

    async def watch(self) -> AsyncIterator[Observation]:
        """Every link at start (``existing=True``), then each change as the kernel pushes it."""
        if self._sock is None:
            await self._start()
        first, self._initial = self._initial, []
        self.ready.set()
        for obs in first:
            yield obs
        queue = self._queue_()
        self._arm()
        while not self._closing:
            kind, item = await queue.get()
            if kind == "stop":
                break
            for obs in await self._handle(kind, item):
                yield obs

    async def aclose(self) -> None:
        """Close the socket and end :meth:`watch`."""
        self._closing = True
        self._disarm()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._queue is not None:
            self._queue.put_nowait(("stop", None))

    # -- what subclasses extend ------------------------------------------------------------

    async def _handle(self, kind: str, item: Any) -> list[Observation]:
        """The observations one queue item means (here: the socket became readable)."""
        if kind == "netlink":
            return await self._read_batch()
        return []

    def _queue_(self) -> asyncio.Queue[tuple[str, Any]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    # -- the socket ------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            self._sock = _open_socket(self.rcvbuf)
        except (OSError, SourceUnavailable) as e:
            raise SourceUnavailable(_why_not(e)) from None
        await self._dump()
        self._initial = list(self.table.changes(_now(), existing=True))

    def _arm(self) -> None:
        """Wake the queue once when the socket becomes readable (level-triggered readers
        would spin while a subscriber holds the loop elsewhere, hence one shot at a time)."""
        if self._sock is None or self._armed or self._closing:
            return
        queue, fd = self._queue_(), self._sock.fileno()
        loop = asyncio.get_running_loop()

        def readable() -> None:
            self._disarm()
            queue.put_nowait(("netlink", None))

        loop.add_reader(fd, readable)
        self._armed = True

    def _disarm(self) -> None:
        if self._armed and self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._armed = False

    def _drain(self) -> tuple[list[bytes], bool]:
        """Every datagram waiting on the socket, and whether it overran (ENOBUFS)."""
        sock, buf, overrun = self._sock, self._buf, False
        out: list[bytes] = []
        if sock is None:
            return out, overrun
        view = memoryview(buf)
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    overrun = True  # some notifications were lost; what is queued still counts
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            out.append(bytes(view[:n]))
        return out, overrun

    def _apply(self, datagrams: list[bytes]) -> list[Any]:
        """Parse and apply; malformed messages are skipped with one log line each."""
        messages: list[Any] = []
        for data in datagrams:
            msgs, errors = parse_datagram(data)
            for e in errors:
                log.warning("netlink: skipped a malformed message: %s", e)
            self.table.apply_all(msgs)
            messages.extend(msgs)
        return messages

    async def _read_batch(self) -> list[Observation]:
        datagrams, overrun = self._drain()
        self._apply(datagrams)
        if overrun:
            log.warning("netlink: the socket overran (ENOBUFS) and lost notifications; "
                        "re-reading links, addresses and routes")
            self._drain()  # covered by the dump that follows (see _dump)
            self.resyncs += 1
            self.table.begin_resync()
            await self._dump()
        changed = self.table.changed
        out: list[Observation] = list(self.table.changes(_now()))
        self._arm()
        if changed:
            self._network_changed()
        return out

    def _network_changed(self) -> None:
        """A link, address or default route came, went or changed (for subclasses)."""

    async def _readable(self, timeout: float) -> None:  # noqa: ASYNC109 - a dump must end
        """Wait (while no reader is armed) until the socket is readable."""
        assert self._sock is not None  # noqa: S101 - opened before any wait
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fd = self._sock.fileno()

        def readable() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            loop.remove_reader(fd)

    async def _dump(self) -> None:
        """Dump links, then addresses, then routes into the table; again after an overrun.

        While a storm of changes goes on, a dump may overrun again and again; it is retried,
        with a pause that grows to a second, until one completes (the storm is finite)."""
        pause = 0.01
        while True:
            try:
                for request in (RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE):
                    await self._dump_one(request)
                return
            except _Overrun:
                log.debug("netlink: the socket overran during a dump; dumping again")
                self.resyncs += 1
                await asyncio.sleep(pause)
                self._drain()  # covered by the next dump; applied, a stale entry could stay
                self.table.begin_resync()
                pause = min(pause * 2, 1.0)

    async def _dump_one(self, request: int) -> None:
        assert self._sock is not None  # noqa: S101 - opened before any dump
        self._seq += 1
        seq = self._seq
        self._sock.send(dump_request(request, seq))
        overrun = False
        while True:
            datagrams, lost = self._drain()
            overrun |= lost
            for m in self._apply(datagrams):
                if m.seq != seq or not isinstance(m, DoneMessage | ErrorMessage):
                    continue  # a notification (already applied) or a dumped object
                error = m.error
                if error in _RETRY or overrun or (isinstance(m, DoneMessage) and m.interrupted):
                    raise _Overrun
                if error:
                    raise SourceUnavailable(f"netlink: the kernel refused a dump "
                                            f"({errno.errorcode.get(error, error)})")
                if isinstance(m, DoneMessage):
                    return
            try:
                await self._readable(DUMP_TIMEOUT)
            except TimeoutError:
                raise SourceUnavailable(f"netlink: the kernel did not finish a dump within "
                                        f"{DUMP_TIMEOUT:g} s") from None

    def connection_of(self, local_address: str) -> ConnectionState | None:
        """The connection (as last seen) that holds ``local_address``, unusable or not."""
        view = self.table.link_of_address(local_address)
        if view is None:
            return None
        return ConnectionState(_now(), self.name, f"ifindex:{view.index}", view.connection,
                               view.usable, view.connection_type, view.qoc, raw=view.raw,
                               host=self.host)


def open_netlink(*, host: str | None = None, **_options: Any) -> NetlinkSource:
    """The netlink source alone (connections only; ``network`` adds names and destinations)."""
    return NetlinkSource(host=host)

"""Configured destinations and the prober behind DestinationReachable.

A :class:`Destination` is a host name or an IP address, with an optional TCP port:

* ``port`` set: the destination answers when a TCP connection to that port is accepted (the
  service is up; a refused connection is *not* an answer).
* ``port`` None: the host itself. It is pinged (ICMP echo) when this process may: an
  unprivileged ``SOCK_DGRAM``/``IPPROTO_ICMP`` socket (``net.ipv4.ping_group_range``) or a raw
  socket as root. Where neither is allowed it falls back to a TCP connection to port 443 in
  which a refusal counts too: a TCP reset proves the host is there, which is what SENS's ping
  asks.

``bstrDestination`` (the event's ``destination``) is the configured name or address, as
written, so a subscriber filters on what it configured; a name therefore appears once in the
configuration.

When it probes (:class:`Prober`), and why:

* SENS resolves the name first (a failed lookup means unreachable) and pings periodically,
  keeping the result in a cache; the interval is not documented. Here every destination is
  probed at start, at once after every network change (a link, address or default route came
  or went: that is when reachability changes), then
* while unreachable, again after 1, 2, 4 … seconds, doubling up to 60 s, so a server that
  reboots on its own is noticed within a minute, and a dead one costs one lookup and one
  handshake a minute; any network change starts the series again from 1 s;
* while reachable, once a minute (``recheck``), because SENS has no "unreachable" event: only
  a probe can notice that it went away, so that its return fires DestinationReachable again.
  A probe is one lookup (usually answered by the resolver's cache) and a TCP handshake or one
  echo: well under a kilobyte a minute per destination.

Every probe has a deadline (``timeout``, 3 s). A lookup that fails is one log line naming the
destination (once per unreachable spell), never a traceback. The connection a probe went
through is found from the local address the kernel chose for it (``getsockname`` after
``connect``), which the netlink table maps to its link.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ..observations import ConnectionState, DestinationState

__all__ = ["DEFAULT_TCP_PORT", "Destination", "ProbeResult", "Prober", "parse_destinations"]

DEFAULT_TCP_PORT = 443
_CLOEXEC = getattr(socket, "SOCK_CLOEXEC", 0)  # Linux; elsewhere sockets are not inherited
log = logging.getLogger("pysens.sources.destinations")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Destination:
    """A host to watch: ``name`` (a DNS name or an IP address) and a TCP ``port`` (None: the
    host itself, by ICMP echo where allowed, see the module text)."""

    name: str
    port: int | None = None

    def __str__(self) -> str:
        return self.name if self.port is None else f"{self.name} port {self.port}"


_KEYS = {"name", "address", "port"}


def _check_name(where: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: name must be a non-empty string")
    name = name.strip()
    if len(name) > 253 or not all(c.isascii() and c.isprintable() and c != " " for c in name):
        raise ValueError(f"{where}: name {name!r} is not a host name")
    return name


def parse_destinations(tables: Iterable[Mapping[str, Any]]) -> list[Destination]:
    """Destinations from configuration tables (``[[destination]]``: ``name`` or ``address``,
    and optionally ``port``). A bad entry raises ValueError with one line naming it."""
    out: list[Destination] = []
    seen: set[str] = set()
    for n, table in enumerate(tables, 1):
        where = f"destination {n}"
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: expected a table with name or address, got {table!r}")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (use name or address, "
                             "and port)")
        if ("name" in table) == ("address" in table):
            raise ValueError(f"{where}: give exactly one of name or address")
        if "address" in table:
            text = table["address"]
            try:
                name = str(ipaddress.ip_address(str(text).strip()))
            except ValueError:
                raise ValueError(f"{where}: address {text!r} is not an IP address") from None
        else:
            name = _check_name(where, table["name"])
        where = f"{where} ({name})"
        port = table.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 < port < 65536):
            raise ValueError(f"{where}: port {port!r} is not a TCP port (1-65535)")
        if name in seen:
            raise ValueError(f"{where}: listed twice (each destination once)")
        seen.add(name)
        out.append(Destination(name, port))
    return out


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: whether it answered, the local address used, and why not."""

    reachable: bool
    local_address: str | None = None
    why: str | None = None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmp_socket(family: int) -> tuple[socket.socket, bool] | None:
    """An ICMP socket and whether it is raw (IP header included on IPv4), or None when this
    process may not ping."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    for kind, raw in ((socket.SOCK_DGRAM, False), (socket.SOCK_RAW, True)):
        try:
            sock = socket.socket(family, kind | _CLOEXEC, proto)
        except OSError:
            continue
        sock.setblocking(False)
        return sock, raw
    return None


async def icmp_allowed() -> bool:
    """Whether this process may send ICMP echo requests (IPv4)."""
    found = _icmp_socket(socket.AF_INET)
    if found is None:
        return False
    found[0].close()
    return True


async def _ping(family: int, sockaddr: tuple[Any, ...],
                timeout: float, seq: int) -> ProbeResult | None:  # noqa: ASYNC109 - a probe's limit
    """One echo request; None when ICMP is not allowed here."""
    found = _icmp_socket(family)
    if found is None:
        return None
    sock, raw = found
    loop = asyncio.get_running_loop()
    ident = os.getpid() & 0xFFFF
    request_type, reply_type = (8, 0) if family == socket.AF_INET else (128, 129)
    payload = b"pysens\0\0"
    header = struct.pack("!BBHHH", request_type, 0, 0, ident, seq)
    checksum = _checksum(header + payload) if family == socket.AF_INET else 0
    packet = struct.pack("!BBHHH", request_type, 0, checksum, ident, seq) + payload
    # ICMP has no ports; a raw IPv6 socket refuses one that is not its protocol.
    sockaddr = (sockaddr[0], 0, *sockaddr[2:])
    try:
        async with asyncio.timeout(timeout):
            # Connecting a datagram socket only picks the route: it does not block. (Not
            # loop.sock_connect: it resolves the address again, and raw sockets have no port.)
            sock.connect(sockaddr)
            local = str(sock.getsockname()[0])
            await loop.sock_sendall(sock, packet)
            while True:
                data = await loop.sock_recv(sock, 2048)
                if raw and family == socket.AF_INET:
                    data = data[(data[0] & 0x0F) * 4:] if data else data
                if len(data) < 8:
                    continue
                kind, _code, _sum, rid, rseq = struct.unpack_from("!BBHHH", data)
                # Ping sockets rewrite the identifier; raw ones see every ICMP packet.
                if kind == reply_type and rseq == seq and (not raw or rid == ident):
                    return ProbeResult(True, local)
    except TimeoutError:
        return ProbeResult(False, None, f"no echo reply within {timeout:g} s")
    except OSError as e:
        return ProbeResult(False, None, e.strerror or str(e))
    finally:
        sock.close()


async def _connect(family: int, sockaddr: tuple[Any, ...], timeout: float,  # noqa: ASYNC109
                   refused_answers: bool) -> ProbeResult:  # - a probe's own limit
    sock = socket.socket(family, socket.SOCK_STREAM | _CLOEXEC)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, sockaddr)
        return ProbeResult(True, str(sock.getsockname()[0]))
    except ConnectionRefusedError:
        if refused_answers:
            return ProbeResult(True, str(sock.getsockname()[0]))
        return ProbeResult(False, None, "connection refused")
    except TimeoutError:
        return ProbeResult(False, None, f"no answer within {timeout:g} s")
    except OSError as e:
        return ProbeResult(False, None, e.strerror or str(e))
    finally:
        sock.close()


class Prober:
    """Probes destinations on network changes and on a timer (see the module text) and hands
    each change of a destination's state to ``emit``.

    ``connection_of(local_address)`` names the connection a probe went through.
    ``icmp``: ping destinations without a port (None: when allowed here; False: never).
    """

    def __init__(
        self, destinations: Iterable[Destination], emit: Callable[[DestinationState], None], *,
        connection_of: Callable[[str], ConnectionState | None] = lambda _a: None,
        timeout: float = 3.0, recheck: float = 60.0, backoff: tuple[float, float] = (1.0, 60.0),
        icmp: bool | None = None, source: str = "network", host: str | None = None,
    ) -> None:
        self.destinations = list(destinations)
        self.emit = emit
        self.connection_of = connection_of
        self.timeout = timeout
        self.recheck = recheck
        self.backoff = backoff
        self.icmp = icmp
        self.source = source
        self.host = host
        self._wake = {d: asyncio.Event() for d in self.destinations}
        self._last: dict[Destination, tuple[Any, ...]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0

    def start(self) -> None:
        """Probe every destination now, then on the schedule."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(d)) for d in self.destinations]

    def network_changed(self) -> None:
        """The network changed: probe everything again now (and restart the backoff)."""
        for event in self._wake.values():
            event.set()

    async def aclose(self) -> None:
        """Stop probing."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def _run(self, d: Destination) -> None:
        wake, first, delay = self._wake[d], True, self.backoff[0]
        while True:
            wake.clear()
            state = await self.check(d)
            # What the first probe saw existed at start only if the network did not change
            # while it ran (a link coming up mid-probe makes its success news).
            self._report(d, replace(state, existing=first and not wake.is_set()))
            first = False
            if wake.is_set():
                delay = self.backoff[0]
                continue  # the network changed while probing: that result may be stale
            if state.reachable:
                delay, wait = self.backoff[0], self.recheck
            else:
                wait, delay = delay, min(delay * 2, self.backoff[1])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
            if wake.is_set():
                delay = self.backoff[0]

    def _report(self, d: Destination, state: DestinationState) -> None:
        """Emit ``state`` when it differs from the last one emitted for ``d``."""
        key = (state.reachable, state.connection, state.connection_type)
        before = self._last.get(d)
        if before == key:
            return
        self._last[d] = key
        if not state.reachable and (before is None or before[0]):
            log.warning("destination %s is unreachable: %s", d, state.raw.get("why"))
        self.emit(state)

    async def check(self, d: Destination, *, existing: bool = False) -> DestinationState:
        """Probe ``d`` once (nothing is emitted)."""
        result = await self._probe(d)
        conn = self.connection_of(result.local_address) if result.local_address else None
        return DestinationState(
            _now(), self.source, d.name, result.reachable,
            conn.connection if conn else None, conn.connection_type if conn else None,
            conn.qoc if conn else None, existing,
            {"port": d.port, "local_address": result.local_address, "why": result.why},
            self.host)

    async def _probe(self, d: Destination) -> ProbeResult:
        loop = asyncio.get_running_loop()
        port = d.port if d.port is not None else DEFAULT_TCP_PORT
        try:
            async with asyncio.timeout(self.timeout):
                infos = await loop.getaddrinfo(d.name, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            return ProbeResult(False, None, f"{d.name} did not resolve within {self.timeout:g} s")
        except (socket.gaierror, UnicodeError) as e:
            return ProbeResult(False, None, f"{d.name} does not resolve ({e})")
        result = ProbeResult(False, None, f"{d.name} resolves to no address")
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            if d.port is None and self.icmp is not False:
                self._seq = (self._seq + 1) & 0xFFFF
                pinged = await _ping(family, sockaddr, self.timeout, self._seq)
                if pinged is not None:
                    result = pinged
                    if result.reachable:
                        return result
                    continue
            result = await _connect(family, sockaddr, self.timeout,
                                    refused_answers=d.port is None)
            if result.reachable:
                return result
        return result

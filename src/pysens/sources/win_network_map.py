"""GetAdaptersAddresses buffers -> :class:`~pysens.observations.ConnectionState`: the pure half
of the ``win_network`` source. No I/O and no ctypes: the buffer is decoded with :mod:`struct`
from its documented layout, so it is tested on every OS.

``GetAdaptersAddresses`` fills one caller-supplied buffer with a linked list of
``IP_ADAPTER_ADDRESSES_LH`` records and everything they point to (names, address lists,
sockaddrs), so each pointer is an address inside that buffer: :func:`parse_adapters` takes the
bytes and the address the buffer had, and follows pointers as offsets. A pointer outside the
buffer, a record shorter than documented, an unterminated string or a cycle is a
:class:`AdapterBufferError` with one sentence saying what and where.

Layouts (64-bit Windows, the only one the source runs on; learn.microsoft.com, iptypes.h):

* ``IP_ADAPTER_ADDRESSES_LH`` (448 bytes): Length u32 @0, IfIndex u32 @4, Next @8,
  AdapterName (char*) @16, FirstUnicastAddress @24, Description (wchar*) @64, FriendlyName
  (wchar*) @72, IfType u32 @100, OperStatus u32 @104, TransmitLinkSpeed u64 @184,
  ReceiveLinkSpeed u64 @192, Luid u64 @224 (the fields read; Length must reach Luid).
* ``IP_ADAPTER_UNICAST_ADDRESS_LH`` (64 bytes): Length u32 @0, Flags u32 @4, Next @8,
  Address.lpSockaddr @16, Address.iSockaddrLength i32 @24, PrefixOrigin @32, SuffixOrigin @36,
  DadState @40.
* ``SOCKADDR_IN`` (family 2): port @2, address @4; ``SOCKADDR_IN6`` (family 23): address @8.

What makes a connection (SENS's "a connection is made", as the Linux source reads rtnetlink):
OperStatus ``IfOperStatusUp`` (1) and at least one unicast address other programs can use: not
link-local (169.254/16, fe80::/10), not tentative or duplicate (DadState). The loopback adapter
(IfType 24) is never a connection. ``connection_type`` is WAN for PPP (23), tunnels (131: VPNs,
Teredo) and mobile broadband (243, 244: Windows' successor of the RAS dial-up that SENS called
WAN), else LAN. QOC: ``in_speed`` = ReceiveLinkSpeed, ``out_speed`` = TransmitLinkSpeed (both
bits/s, as SENS_QOCINFO), flags NETWORK_ALIVE_LAN or _WAN; a speed of 0 or all ones (unknown)
gives no QOC (the NoQOCInfo methods). The key is the adapter's LUID (stable while it exists);
``connection`` is its FriendlyName ("Ethernet", "Wi-Fi", a VPN's name).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..events import CONNECTION_LAN, CONNECTION_WAN, NETWORK_ALIVE_LAN, NETWORK_ALIVE_WAN
from ..observations import ConnectionState

__all__ = [
    "ADAPTER_SIZE",
    "UNICAST_SIZE",
    "Adapter",
    "AdapterBufferError",
    "NetworkTranslator",
    "UnicastAddress",
    "connection_state",
    "parse_adapters",
]

ADAPTER_SIZE = 448
UNICAST_SIZE = 64
_ADAPTER_NEEDED = 232  # through Luid
_UNICAST_NEEDED = 44  # through DadState
_MAX_RECORDS = 65536

IF_TYPE_PPP = 23
IF_TYPE_SOFTWARE_LOOPBACK = 24
IF_TYPE_TUNNEL = 131
IF_TYPE_WWANPP = 243
IF_TYPE_WWANPP2 = 244
WAN_TYPES = frozenset({IF_TYPE_PPP, IF_TYPE_TUNNEL, IF_TYPE_WWANPP, IF_TYPE_WWANPP2})
IF_OPER_STATUS_UP = 1
AF_INET, AF_INET6 = 2, 23
# IP_DAD_STATE: Invalid 0, Tentative 1, Duplicate 2, Deprecated 3, Preferred 4.
_DAD_UNUSABLE = frozenset({0, 1, 2})
_SPEED_UNKNOWN = (0, (1 << 64) - 1)


class AdapterBufferError(ValueError):
    """A GetAdaptersAddresses buffer that does not have the documented layout."""


@dataclass(frozen=True, slots=True)
class UnicastAddress:
    """One unicast address of an adapter."""

    address: str
    dad_state: int

    @property
    def usable(self) -> bool:
        """Not link-local, and past duplicate address detection."""
        ip = ipaddress.ip_address(self.address)
        return not ip.is_link_local and not ip.is_loopback and (
            self.dad_state not in _DAD_UNUSABLE)


@dataclass(frozen=True, slots=True)
class Adapter:
    """The fields of one IP_ADAPTER_ADDRESSES record that SENS needs."""

    luid: int
    if_index: int
    adapter_name: str
    friendly_name: str
    description: str
    if_type: int
    oper_status: int
    transmit_speed: int
    receive_speed: int
    addresses: tuple[UnicastAddress, ...] = ()

    @property
    def key(self) -> str:
        """The connection's key: the LUID, stable while the adapter exists."""
        return f"luid:{self.luid:016x}"


class _Buffer:
    def __init__(self, data: bytes, base: int) -> None:
        self.data = data
        self.base = base

    def offset(self, pointer: int, size: int, what: str) -> int:
        off = pointer - self.base
        if pointer == 0 or off < 0 or off + size > len(self.data):
            raise AdapterBufferError(
                f"{what} at {pointer:#x} lies outside the {len(self.data)}-byte buffer "
                f"at {self.base:#x}")
        return off

    def u32(self, off: int) -> int:
        return int(struct.unpack_from("<I", self.data, off)[0])

    def u64(self, off: int) -> int:
        return int(struct.unpack_from("<Q", self.data, off)[0])

    def text(self, pointer: int, what: str, *, wide: bool) -> str:
        if pointer == 0:
            return ""
        off = self.offset(pointer, 0, what)
        if wide:
            end = off
            while end + 1 < len(self.data) and self.data[end:end + 2] != b"\0\0":
                end += 2
            if end + 1 >= len(self.data):
                raise AdapterBufferError(f"{what} at {pointer:#x} is not NUL-terminated "
                                         "inside the buffer")
            return self.data[off:end].decode("utf-16-le", "replace")
        end = self.data.find(b"\0", off)
        if end < 0:
            raise AdapterBufferError(f"{what} at {pointer:#x} is not NUL-terminated inside "
                                     "the buffer")
        return self.data[off:end].decode("ascii", "replace")


def _sockaddr(buf: _Buffer, pointer: int, length: int, where: str) -> str:
    off = buf.offset(pointer, max(length, 2), f"{where}'s sockaddr")
    family = struct.unpack_from("<H", buf.data, off)[0]
    if family == AF_INET and length >= 8:
        return str(ipaddress.IPv4Address(buf.data[off + 4:off + 8]))
    if family == AF_INET6 and length >= 24:
        return str(ipaddress.IPv6Address(buf.data[off + 8:off + 24]))
    raise AdapterBufferError(f"{where}'s sockaddr has family {family} and length {length}, "
                             "neither AF_INET nor AF_INET6")


def _unicasts(buf: _Buffer, pointer: int, where: str) -> tuple[UnicastAddress, ...]:
    out: list[UnicastAddress] = []
    seen: set[int] = set()
    while pointer:
        if pointer in seen or len(seen) >= _MAX_RECORDS:
            raise AdapterBufferError(f"{where}'s unicast address list loops")
        seen.add(pointer)
        what = f"{where}'s unicast address {len(out) + 1}"
        off = buf.offset(pointer, _UNICAST_NEEDED, what)
        length = buf.u32(off)
        if length < _UNICAST_NEEDED:
            raise AdapterBufferError(f"{what} is a {length}-byte record, shorter than the "
                                     f"{_UNICAST_NEEDED} bytes documented")
        sa_pointer, sa_length = buf.u64(off + 16), struct.unpack_from("<i", buf.data, off + 24)[0]
        address = _sockaddr(buf, sa_pointer, sa_length, what)
        out.append(UnicastAddress(address, buf.u32(off + 40)))
        pointer = buf.u64(off + 8)
    return tuple(out)


def parse_adapters(data: bytes, base: int) -> list[Adapter]:
    """Every adapter in a GetAdaptersAddresses buffer (``data``, which was at address
    ``base``); empty data (ERROR_NO_DATA) is no adapters. Raises AdapterBufferError."""
    if not data:
        return []
    buf = _Buffer(bytes(data), base)
    out: list[Adapter] = []
    seen: set[int] = set()
    pointer = base
    while pointer:
        if pointer in seen or len(seen) >= _MAX_RECORDS:
            raise AdapterBufferError("the adapter list loops")
        seen.add(pointer)
        what = f"adapter {len(out) + 1}"
        off = buf.offset(pointer, 8, what)
        length = buf.u32(off)
        if length < _ADAPTER_NEEDED:
            raise AdapterBufferError(f"{what} is a {length}-byte record, shorter than the "
                                     f"{_ADAPTER_NEEDED} bytes an IP_ADAPTER_ADDRESSES_LH needs")
        buf.offset(pointer, _ADAPTER_NEEDED, what)
        name = buf.text(buf.u64(off + 16), f"{what}'s AdapterName", wide=False)
        where = f"adapter {name or len(out) + 1}"
        out.append(Adapter(
            luid=buf.u64(off + 224), if_index=buf.u32(off + 4), adapter_name=name,
            friendly_name=buf.text(buf.u64(off + 72), f"{where}'s FriendlyName", wide=True),
            description=buf.text(buf.u64(off + 64), f"{where}'s Description", wide=True),
            if_type=buf.u32(off + 100), oper_status=buf.u32(off + 104),
            transmit_speed=buf.u64(off + 184), receive_speed=buf.u64(off + 192),
            addresses=_unicasts(buf, buf.u64(off + 24), where),
        ))
        pointer = buf.u64(off + 8)
    return out


def connection_state(adapter: Adapter, *, time: datetime, source: str = "win_network",
                     existing: bool = False, host: str | None = None) -> ConnectionState:
    """The observation one adapter describes (module text for the rules)."""
    wan = adapter.if_type in WAN_TYPES
    usable = (adapter.oper_status == IF_OPER_STATUS_UP
              and adapter.if_type != IF_TYPE_SOFTWARE_LOOPBACK
              and any(a.usable for a in adapter.addresses))
    qoc = None
    if (adapter.receive_speed not in _SPEED_UNKNOWN
            and adapter.transmit_speed not in _SPEED_UNKNOWN):
        qoc = {"flags": NETWORK_ALIVE_WAN if wan else NETWORK_ALIVE_LAN,
               "in_speed": adapter.receive_speed, "out_speed": adapter.transmit_speed}
    raw: dict[str, Any] = {
        "Luid": adapter.luid, "IfIndex": adapter.if_index, "AdapterName": adapter.adapter_name,
        "Description": adapter.description, "IfType": adapter.if_type,
        "OperStatus": adapter.oper_status, "TransmitLinkSpeed": adapter.transmit_speed,
        "ReceiveLinkSpeed": adapter.receive_speed,
        "Addresses": [a.address for a in adapter.addresses if a.usable],
    }
    return ConnectionState(
        time=time, source=source, key=adapter.key,
        connection=adapter.friendly_name or adapter.adapter_name, usable=usable,
        connection_type=CONNECTION_WAN if wan else CONNECTION_LAN, qoc=qoc, existing=existing,
        raw=raw, host=host)


class NetworkTranslator:
    """Successive adapter lists -> the ConnectionStates that changed (remembers the last)."""

    def __init__(self, *, source: str = "win_network", host: str | None = None) -> None:
        self.source = source
        self.host = host
        self._last: dict[str, tuple[Any, ...]] = {}
        self._names: dict[str, tuple[str, int]] = {}

    def update(self, adapters: Iterable[Adapter], time: datetime, *,
               existing: bool = False) -> list[ConnectionState]:
        """The states of the adapters whose connection changed since the last update (all of
        them with ``existing``), and ``usable=False`` for the adapters that went away."""
        out: list[ConnectionState] = []
        current: dict[str, tuple[Any, ...]] = {}
        for adapter in adapters:
            if adapter.if_type == IF_TYPE_SOFTWARE_LOOPBACK:
                continue
            st = connection_state(adapter, time=time, source=self.source, existing=existing,
                                  host=self.host)
            # Speeds and names matter only while usable (the QOC a Made would report).
            sig = (st.usable, st.connection, st.connection_type,
                   tuple(sorted(st.qoc.items())) if st.qoc and st.usable else None)
            current[st.key] = sig
            self._names[st.key] = (st.connection, st.connection_type)
            if existing or self._last.get(st.key) != sig:
                out.append(st)
        for key in [k for k in self._last if k not in current]:
            name, kind = self._names.pop(key, (key, CONNECTION_LAN))
            out.append(ConnectionState(time=time, source=self.source, key=key, connection=name,
                                       usable=False, connection_type=kind,
                                       raw={"gone": True}, host=self.host))
        self._last = current
        return out

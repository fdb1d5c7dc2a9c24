"""rtnetlink on the wire: the kernel's message bytes <-> small frozen dataclasses. Pure: no I/O.

The structures are ``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h`` and
``linux/if_addr.h``; all integers are in host byte order (``=`` in :mod:`struct`). A malformed
message (truncated, or a length field that lies) is a :class:`NetlinkError` whose one-line text
names the message type, its offset in the datagram and why; :func:`parse_datagram` skips it and
reads on where it can. :mod:`pysens.sources.netlink_map` re-exports all of this beside the table.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "GROUPS",
    "Address",
    "AddressMessage",
    "DoneMessage",
    "ErrorMessage",
    "Link",
    "LinkMessage",
    "Message",
    "NetlinkError",
    "OtherMessage",
    "Route",
    "RouteMessage",
    "dump_request",
    "parse_datagram",
    "parse_message",
]

# linux/netlink.h, linux/rtnetlink.h
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300
# Multicast groups as bind() bit masks: RTMGRP_LINK, _IPV4_IFADDR, _IPV4_ROUTE, _IPV6_IFADDR,
# _IPV6_ROUTE.
GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400

AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10
IFF_UP, IFF_LOOPBACK, IFF_POINTOPOINT, IFF_LOWER_UP = 0x1, 0x8, 0x10, 0x10000
# linux/if_arp.h
ARPHRD_LOOPBACK, ARPHRD_PPP, ARPHRD_RAWIP, ARPHRD_NONE = 772, 512, 519, 0xFFFE
# IF_OPER_* (RFC 2863)
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
IF_OPER_UNKNOWN, IF_OPER_UP = 0, 6
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_CARRIER = (
    1, 3, 4, 16, 18, 33)
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40
RT_SCOPE_HOST = 254
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
RTN_UNICAST = 1
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_NAMES = {NLMSG_NOOP: "NLMSG_NOOP", NLMSG_ERROR: "NLMSG_ERROR", NLMSG_DONE: "NLMSG_DONE",
          NLMSG_OVERRUN: "NLMSG_OVERRUN", RTM_NEWLINK: "RTM_NEWLINK",
          RTM_DELLINK: "RTM_DELLINK", RTM_NEWADDR: "RTM_NEWADDR", RTM_DELADDR: "RTM_DELADDR",
          RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE"}

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol,
#                                       scope, type, flags
_RTA = struct.Struct("=HH")  # rtattr / nlattr: len, type
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
_U32 = struct.Struct("=I")


class NetlinkError(ValueError):
    """A malformed netlink message; the text says which message type, where, and why."""


def _name(msg_type: int) -> str:
    return _NAMES.get(msg_type, f"message type {msg_type}")


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface as RTM_NEWLINK describes it."""

    index: int
    name: str
    flags: int
    link_type: int  #: ARPHRD_*
    operstate: int | None = None
    carrier: bool | None = None
    kind: str | None = None  #: IFLA_INFO_KIND: veth, bridge, tun, wireguard, dummy …
    family: int = AF_UNSPEC


@dataclass(frozen=True, slots=True)
class Address:
    """An interface address (RTM_NEWADDR): the local address, its prefix and flags."""

    index: int
    family: int
    address: str
    prefixlen: int
    flags: int = 0
    scope: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """A route (RTM_NEWROUTE); only default ones (``dst_len == 0``) are kept by the table."""

    family: int
    dst_len: int
    table: int
    oifs: tuple[int, ...]
    dst: str | None = None
    gateway: str | None = None
    priority: int = 0
    route_type: int = RTN_UNICAST


@dataclass(frozen=True, slots=True)
class LinkMessage:
    """RTM_NEWLINK (``new``) or RTM_DELLINK."""

    new: bool
    link: Link
    seq: int = 0


@dataclass(frozen=True, slots=True)
class AddressMessage:
    """RTM_NEWADDR (``new``) or RTM_DELADDR."""

    new: bool
    address: Address
    seq: int = 0


@dataclass(frozen=True, slots=True)
class RouteMessage:
    """RTM_NEWROUTE (``new``) or RTM_DELROUTE."""

    new: bool
    route: Route
    seq: int = 0


@dataclass(frozen=True, slots=True)
class DoneMessage:
    """NLMSG_DONE: the end of a dump. ``error``: a positive errno when the dump failed (ENOBUFS:
    the socket's buffer was full); ``interrupted``: the state changed while it was read
    (NLM_F_DUMP_INTR), so it may be inconsistent."""

    seq: int = 0
    error: int = 0
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """NLMSG_ERROR (``error`` is a positive errno; 0 is an acknowledgement) or NLMSG_OVERRUN."""

    error: int
    seq: int = 0


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """Any other message type (NLMSG_NOOP, a type this module does not read)."""

    msg_type: int
    seq: int = 0


Message = LinkMessage | AddressMessage | RouteMessage | DoneMessage | ErrorMessage | OtherMessage


def dump_request(msg_type: int, seq: int, family: int = AF_UNSPEC) -> bytes:
    """An ``NLM_F_DUMP`` request for RTM_GETLINK, RTM_GETADDR or RTM_GETROUTE."""
    if msg_type == RTM_GETLINK:
        body = _IFINFO.pack(family, 0, 0, 0, 0)
    elif msg_type == RTM_GETADDR:
        body = _IFADDR.pack(family, 0, 0, 0, 0)
    elif msg_type == RTM_GETROUTE:
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    else:
        raise ValueError(f"no dump request for message type {msg_type}")
    return _HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _attrs(data: bytes, start: int, end: int, what: str, base: int) -> dict[int, bytes]:
    """The rtattrs in ``data[start:end]`` by type (the last of a type wins)."""
    out: dict[int, bytes] = {}
    pos = start
    while end - pos >= _RTA.size:
        length, kind = _RTA.unpack_from(data, pos)
        if length < _RTA.size or pos + length > end:
            raise NetlinkError(f"{what} at offset {base}: attribute {kind & _NLA_TYPE_MASK} at "
                               f"offset {pos - start} claims {length} bytes, "
                               f"{end - pos} are left")
        out[kind & _NLA_TYPE_MASK] = data[pos + _RTA.size:pos + length]
        pos += (length + 3) & ~3
    return out


def _u32(attrs: Mapping[int, bytes], kind: int, what: str, base: int) -> int | None:
    value = attrs.get(kind)
    if value is None:
        return None
    if len(value) < 4:
        raise NetlinkError(f"{what} at offset {base}: attribute {kind} is {len(value)} bytes, "
                           "needs 4")
    return int(_U32.unpack_from(value)[0])


def _u8(attrs: Mapping[int, bytes], kind: int, what: str, base: int) -> int | None:
    value = attrs.get(kind)
    if value is None:
        return None
    if not value:
        raise NetlinkError(f"{what} at offset {base}: attribute {kind} is empty, needs 1 byte")
    return value[0]


def _text(value: bytes) -> str:
    # The kernel allows any byte but '/', ':' and whitespace in a name, control characters
    # included: keep them (they are data), and never fail on bytes that are not UTF-8.
    return value.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _ip(family: int, value: bytes | None, what: str, base: int) -> str | None:
    if value is None:
        return None
    size = 4 if family == AF_INET else 16 if family == AF_INET6 else None
    if size is None:
        return None  # another family (AF_MPLS …): not an IP address
    if len(value) != size:
        raise NetlinkError(f"{what} at offset {base}: an address of {len(value)} bytes for "
                           f"family {family}, needs {size}")
    return str(ipaddress.ip_address(value))


def _link(msg_type: int, data: bytes, start: int, end: int, seq: int, base: int) -> Message:
    what = _name(msg_type)
    if end - start < _IFINFO.size:
        raise NetlinkError(f"{what} at offset {base}: {end - start} bytes of ifinfomsg, "
                           f"needs {_IFINFO.size}")
    family, link_type, index, flags, _change = _IFINFO.unpack_from(data, start)
    attrs = _attrs(data, start + _IFINFO.size, end, what, base)
    kind = None
    info = attrs.get(IFLA_LINKINFO)
    if info is not None:
        nested = _attrs(info, 0, len(info), what, base)
        if IFLA_INFO_KIND in nested:
            kind = _text(nested[IFLA_INFO_KIND])
    carrier = _u8(attrs, IFLA_CARRIER, what, base)
    name = _text(attrs[IFLA_IFNAME]) if IFLA_IFNAME in attrs else f"if{index}"
    link = Link(index, name, flags, link_type, _u8(attrs, IFLA_OPERSTATE, what, base),
                None if carrier is None else bool(carrier), kind, family)
    return LinkMessage(msg_type == RTM_NEWLINK, link, seq)


def _addr(msg_type: int, data: bytes, start: int, end: int, seq: int, base: int) -> Message:
    what = _name(msg_type)
    if end - start < _IFADDR.size:
        raise NetlinkError(f"{what} at offset {base}: {end - start} bytes of ifaddrmsg, "
                           f"needs {_IFADDR.size}")
    family, prefixlen, flags, scope, index = _IFADDR.unpack_from(data, start)
    attrs = _attrs(data, start + _IFADDR.size, end, what, base)
    # On a point-to-point link IFA_ADDRESS is the peer and IFA_LOCAL ours; elsewhere they agree.
    local = _ip(family, attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS)), what, base)
    if local is None:
        return OtherMessage(msg_type, seq)  # no IP address: nothing a connection can use
    wide = _u32(attrs, IFA_FLAGS, what, base)  # the full 32 flag bits, when given
    return AddressMessage(msg_type == RTM_NEWADDR,
                          Address(index, family, local, prefixlen,
                                  flags if wide is None else wide, scope), seq)


def _route(msg_type: int, data: bytes, start: int, end: int, seq: int, base: int) -> Message:
    what = _name(msg_type)
    if end - start < _RTMSG.size:
        raise NetlinkError(f"{what} at offset {base}: {end - start} bytes of rtmsg, "
                           f"needs {_RTMSG.size}")
    family, dst_len, _src, _tos, table, _proto, _scope, rtype, _fl = _RTMSG.unpack_from(
        data, start)
    attrs = _attrs(data, start + _RTMSG.size, end, what, base)
    table = _u32(attrs, RTA_TABLE, what, base) or table  # RTA_TABLE holds tables >= 256
    oifs: list[int] = []
    oif = _u32(attrs, RTA_OIF, what, base)
    if oif is not None:
        oifs.append(oif)
    multipath = attrs.get(RTA_MULTIPATH)
    pos = 0
    while multipath is not None and len(multipath) - pos >= _RTNH.size:
        length, _flags, _hops, hop_oif = _RTNH.unpack_from(multipath, pos)
        if length < _RTNH.size:
            raise NetlinkError(f"{what} at offset {base}: a next hop of {length} bytes")
        oifs.append(hop_oif)
        pos += (length + 3) & ~3
    route = Route(family, dst_len, table, tuple(oifs), _ip(family, attrs.get(RTA_DST), what,
                                                           base),
                  _ip(family, attrs.get(RTA_GATEWAY), what, base),
                  _u32(attrs, RTA_PRIORITY, what, base) or 0, rtype)
    return RouteMessage(msg_type == RTM_NEWROUTE, route, seq)


def parse_message(data: bytes, offset: int = 0) -> tuple[Message, int]:
    """The message at ``offset`` in a datagram, and the offset of the next one.

    Raises :class:`NetlinkError` when the message is malformed (truncated, or a length field
    that lies); when the header itself is sound, the error's next offset is still known, see
    :func:`parse_datagram`.
    """
    message, next_offset, error = _parse_one(data, offset)
    if error is not None:
        raise error
    assert message is not None  # noqa: S101 - _parse_one gives a message or an error
    return message, next_offset


def _parse_one(data: bytes, offset: int) -> tuple[Message | None, int, NetlinkError | None]:
    left = len(data) - offset
    if left < _HDR.size:
        return None, len(data), NetlinkError(
            f"netlink header at offset {offset}: {left} bytes, needs {_HDR.size}")
    length, msg_type, flags, seq, _pid = _HDR.unpack_from(data, offset)
    what = _name(msg_type)
    if length < _HDR.size or length > left:
        return None, len(data), NetlinkError(
            f"{what} at offset {offset}: its header claims {length} bytes, {left} are left")
    start, end = offset + _HDR.size, offset + length
    next_offset = min(offset + ((length + 3) & ~3), len(data))
    try:
        if msg_type in (RTM_NEWLINK, RTM_DELLINK):
            return _link(msg_type, data, start, end, seq, offset), next_offset, None
        if msg_type in (RTM_NEWADDR, RTM_DELADDR):
            return _addr(msg_type, data, start, end, seq, offset), next_offset, None
        if msg_type in (RTM_NEWROUTE, RTM_DELROUTE):
            return _route(msg_type, data, start, end, seq, offset), next_offset, None
    except NetlinkError as e:
        return None, next_offset, e
    if msg_type == NLMSG_DONE:
        # The payload is an int error code (absent from some old kernels' DONE).
        code = struct.unpack_from("=i", data, start)[0] if end - start >= 4 else 0
        return DoneMessage(seq, -code if code < 0 else 0,
                           bool(flags & NLM_F_DUMP_INTR)), next_offset, None
    if msg_type in (NLMSG_ERROR, NLMSG_OVERRUN):
        if end - start < 4:
            return None, next_offset, NetlinkError(
                f"{what} at offset {offset}: {end - start} bytes, needs 4 for the error code")
        (code,) = struct.unpack_from("=i", data, start)
        code = -code if msg_type == NLMSG_ERROR else errno.ENOBUFS
        return ErrorMessage(code, seq), next_offset, None
    return OtherMessage(msg_type, seq), next_offset, None


def parse_datagram(data: bytes) -> tuple[list[Message], list[NetlinkError]]:
    """Every message of one datagram, and the errors of those that could not be read.

    A message with a sound header but a bad body is skipped alone; a header that lies about
    its length ends the datagram (nothing after it can be found). Never raises.
    """
    messages: list[Message] = []
    errors: list[NetlinkError] = []
    offset = 0
    while offset < len(data):
        message, offset, error = _parse_one(data, offset)
        if error is not None:
            errors.append(error)
        elif message is not None:
            messages.append(message)
    return messages, errors

"""rtnetlink messages -> links, addresses and default routes -> ConnectionState. Pure: no I/O.

The I/O half (:mod:`pysens.sources.netlink`) hands datagrams read from a ``NETLINK_ROUTE``
socket to :func:`parse_datagram`; the messages go into a :class:`NetTable`, which knows, per
link, whether it is *usable* and reports a :class:`~pysens.observations.ConnectionState` only
for links whose (usable, name, type, QOC) changed. The kernel's structures are
``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h`` and ``linux/if_addr.h``; all
integers are in host byte order (``=`` in :mod:`struct`).

The rules, and why:

* Usable = admin up (``IFF_UP``), carrier, and at least one usable address. Carrier is
  operstate ``UP``; tun/ppp-style drivers never set an operstate (``UNKNOWN``), so for them the
  driver's ``IFF_LOWER_UP`` flag (or ``IFLA_CARRIER``) says it. A usable address is neither
  link-local (``fe80::/10``, ``169.254/16``: every link gets one, it reaches nothing beyond
  the cable), nor loopback or host-scoped, nor an IPv6 address still in duplicate address
  detection (``tentative``) or that failed it (``dadfailed``). The loopback link is never a
  connection. A default route is not required: a LAN with only its own subnet is SENS's
  ``NETWORK_ALIVE_LAN`` all the same.
* WAN (``CONNECTION_WAN``) for point-to-point links (``IFF_POINTOPOINT``), ppp, raw-IP
  (mobile broadband), ``ARPHRD_NONE`` (tun, WireGuard) and IP-in-IP tunnels, else LAN;
  NetworkManager's connection type overrides it through :meth:`NetTable.set_labels`.
* QOC comes from the link speed through the injected ``read_speed`` (bits/s, or None when the
  driver does not know, as a bridge: then the NoQOCInfo method).
* Bridge port notifications (``ifi_family == AF_BRIDGE``: a port joining or leaving) are not
  link changes and are ignored; IPv4 routes removed with their link are not announced by the
  kernel, so a link going down or away drops its routes from the table here.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events import CONNECTION_LAN, CONNECTION_WAN, NETWORK_ALIVE_LAN, NETWORK_ALIVE_WAN
from ..observations import ConnectionState

__all__ = [
    "GROUPS",
    "NETWORK_ALIVE_INTERNET",
    "Address",
    "AddressMessage",
    "DoneMessage",
    "ErrorMessage",
    "Label",
    "Link",
    "LinkMessage",
    "LinkView",
    "Message",
    "NetTable",
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
_WAN_ARPHRD = frozenset({ARPHRD_PPP, ARPHRD_RAWIP, ARPHRD_NONE,
                         768, 769, 776, 778, 823})  # TUNNEL, TUNNEL6, SIT, IPGRE, IP6GRE
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
#: The SENS_QOCINFO dwFlags bit for "the Internet answers" (sensapi.h), set from
#: NetworkManager's Connectivity (full).
NETWORK_ALIVE_INTERNET = 0x8
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
    assert message is not None
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


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Label:
    """What NetworkManager says about an interface: its active connection's name and type
    (``connection_type`` None: NetworkManager's type does not decide LAN or WAN)."""

    connection: str
    connection_type: int | None = None
    nm_type: str | None = None
    #: The Manager's PrimaryConnection (the one the default route goes through).
    primary: bool = False


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the table concludes about one link (what ``sens network`` shows)."""

    index: int
    ifname: str
    connection: str
    usable: bool
    connection_type: int
    qoc: Mapping[str, int] | None
    addresses: tuple[str, ...]
    default_route: bool
    raw: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[bool, str, int, tuple[tuple[str, int], ...] | None]:
        """What a ConnectionState is reported for a change of."""
        qoc = None if self.qoc is None else tuple(sorted(self.qoc.items()))
        return (self.usable, self.connection, self.connection_type, qoc)


def usable_address(address: Address) -> bool:
    """Whether other programs can use ``address`` beyond the link itself."""
    if address.scope >= RT_SCOPE_HOST:
        return False
    if address.family == AF_INET6 and address.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
        return False
    ip = ipaddress.ip_address(address.address)
    return not (ip.is_link_local or ip.is_loopback or ip.is_unspecified or ip.is_multicast)


def is_wan(link: Link) -> bool:
    """WAN (dial-up, mobile, tunnel) rather than LAN, from what the kernel says of the link."""
    return bool(link.flags & IFF_POINTOPOINT) or link.link_type in _WAN_ARPHRD or link.kind in (
        "wireguard", "ppp")


def has_carrier(link: Link) -> bool:
    """The cable is in (or the tunnel's other end is attached)."""
    if link.operstate == IF_OPER_UP:
        return True
    if link.operstate in (None, IF_OPER_UNKNOWN):
        # Drivers without operstate (tun, ppp, dummy) report the lower layer in the flags.
        return bool(link.flags & IFF_LOWER_UP) or link.carrier is True
    return False


class NetTable:
    """Links, addresses and default routes, kept up to date from rtnetlink messages.

    ``read_speed(ifname)`` gives a link's speed in bits/s or None (I/O, injected: the netlink
    source reads sysfs); it is asked only for usable links that changed. :meth:`changes`
    returns the ConnectionStates of links whose view changed since the last call.
    """

    def __init__(self, read_speed: Callable[[str], int | None] = lambda _name: None, *,
                 source: str = "netlink", host: str | None = None) -> None:
        self.read_speed = read_speed
        self.source = source
        self.host = host
        self.links: dict[int, Link] = {}
        self.addresses: dict[int, dict[tuple[int, str, int], Address]] = {}
        self.routes: set[Route] = set()
        self.labels: dict[str, Label] = {}
        self.internet: bool | None = None
        self._views: dict[int, LinkView] = {}
        self._reported: dict[int, LinkView] = {}
        self._dirty: set[int] = set()
        #: Something changed since the last :meth:`changes` (a route, an address, a link):
        #: the moment to probe destinations again.
        self.changed = False

    # -- applying messages ---------------------------------------------------------------

    def apply(self, message: Message) -> None:
        """Take one message into the table (DONE, ERROR and others change nothing)."""
        if isinstance(message, LinkMessage):
            self._apply_link(message)
        elif isinstance(message, AddressMessage):
            self._apply_address(message)
        elif isinstance(message, RouteMessage):
            self._apply_route(message)

    def apply_all(self, messages: Iterable[Message]) -> None:
        """:meth:`apply` each message in order."""
        for m in messages:
            self.apply(m)

    def _apply_link(self, m: LinkMessage) -> None:
        link = m.link
        if link.family == AF_BRIDGE:
            return  # a bridge port's state, not the link's (see the module text)
        self._dirty.add(link.index)
        self.changed = True
        if not m.new:
            self.links.pop(link.index, None)
            self.addresses.pop(link.index, None)
            self._drop_routes(link.index)
            return
        self.links[link.index] = link
        if not link.flags & IFF_UP:
            self._drop_routes(link.index)

    def _apply_address(self, m: AddressMessage) -> None:
        a = m.address
        self._dirty.add(a.index)
        self.changed = True
        key = (a.family, a.address, a.prefixlen)
        if m.new:
            self.addresses.setdefault(a.index, {})[key] = a
        else:
            self.addresses.get(a.index, {}).pop(key, None)

    def _apply_route(self, m: RouteMessage) -> None:
        r = m.route
        if r.dst_len != 0 or r.route_type != RTN_UNICAST:
            return  # only default routes matter here
        self.changed = True
        self._dirty.update(r.oifs)
        if m.new:
            self.routes.add(r)
        else:
            self.routes.discard(r)
            # A DELROUTE may omit what the NEWROUTE carried: drop any default route it names.
            for old in [x for x in self.routes if x.family == r.family and x.table == r.table
                        and (not r.oifs or set(r.oifs) & set(x.oifs))
                        and (r.gateway is None or r.gateway == x.gateway)]:
                self.routes.discard(old)

    def _drop_routes(self, index: int) -> None:
        for r in [r for r in self.routes if index in r.oifs]:
            self.routes.discard(r)

    def set_labels(self, labels: Mapping[str, Label]) -> None:
        """NetworkManager's view, by interface name (replaces the previous one)."""
        changed = {n for n in set(labels) | set(self.labels)
                   if labels.get(n) != self.labels.get(n)}
        self.labels = dict(labels)
        self._dirty.update(i for i, link in self.links.items() if link.name in changed)

    def set_internet(self, internet: bool | None) -> None:
        """Whether the Internet answers (NetworkManager Connectivity full), None: unknown."""
        if internet != self.internet:
            self.internet = internet
            self._dirty.update(self.links)

    def begin_resync(self) -> None:
        """Forget links, addresses and routes (a fresh dump follows) but not what was
        reported, so the next :meth:`changes` reports the difference (after a socket overrun)."""
        self._dirty.update(self.links)
        self._dirty.update(self._reported)
        self.links.clear()
        self.addresses.clear()
        self.routes.clear()
        self._views.clear()
        self.changed = True

    # -- conclusions -----------------------------------------------------------------------

    def view(self, index: int) -> LinkView | None:
        """The current view of link ``index`` (None: no such link, or the loopback)."""
        if index in self._dirty:
            self._refresh(index)
        return self._views.get(index)

    def views(self) -> list[LinkView]:
        """Every link's view (the loopback excluded), by index."""
        for index in list(self._dirty):
            self._refresh(index)
        return [self._views[i] for i in sorted(self._views)]

    def link_of_address(self, address: str) -> LinkView | None:
        """The view of the link that holds local ``address`` (how a probe's source address
        names the connection it went through)."""
        try:
            wanted = str(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return None
        for index, addrs in self.addresses.items():
            if any(a.address == wanted for a in addrs.values()):
                return self.view(index)
        return None

    def _refresh(self, index: int) -> None:
        link = self.links.get(index)
        if link is None or link.flags & IFF_LOOPBACK or link.link_type == ARPHRD_LOOPBACK:
            self._views.pop(index, None)
            return
        addrs = sorted(self.addresses.get(index, {}).values(),
                       key=lambda a: (a.family, a.address))
        good = [a.address for a in addrs if usable_address(a)]
        up, carrier = bool(link.flags & IFF_UP), has_carrier(link)
        usable = up and carrier and bool(good)
        label = self.labels.get(link.name)
        kind = CONNECTION_WAN if is_wan(link) else CONNECTION_LAN
        if label is not None and label.connection_type is not None:
            kind = label.connection_type
        qoc: dict[str, int] | None = None
        if usable:
            speed = self.read_speed(link.name)
            if speed is not None:
                flags = NETWORK_ALIVE_WAN if kind == CONNECTION_WAN else NETWORK_ALIVE_LAN
                if self.internet:
                    flags |= NETWORK_ALIVE_INTERNET
                qoc = {"flags": flags, "in_speed": speed, "out_speed": speed}
        default = any(index in r.oifs for r in self.routes)
        state = OPERSTATES[link.operstate] if link.operstate is not None and \
            link.operstate < len(OPERSTATES) else link.operstate
        raw: dict[str, Any] = {
            "ifindex": index, "ifname": link.name, "kind": link.kind, "operstate": state,
            "admin_up": up, "carrier": carrier, "addresses": [a.address for a in addrs],
            "default_route": default,
        }
        if label is not None:
            raw["networkmanager"] = {"id": label.connection, "type": label.nm_type,
                                     "primary": label.primary}
        if self.internet is not None:
            raw["internet"] = self.internet
        self._views[index] = LinkView(index, link.name,
                                      label.connection if label else link.name, usable, kind,
                                      qoc, tuple(good), default, raw)

    def changes(self, time: datetime, *, existing: bool = False) -> list[ConnectionState]:
        """A ConnectionState per link whose (usable, name, type, QOC) changed since the last
        call (every link the first time), keyed ``ifindex:N``; a link gone is reported once,
        unusable, under the name it had."""
        self.changed = False
        dirty, self._dirty = self._dirty, set()
        out: list[ConnectionState] = []
        for index in sorted(dirty):
            self._refresh(index)
            new, old = self._views.get(index), self._reported.get(index)
            if new is None:
                if old is not None:
                    del self._reported[index]
                    if old.usable:
                        out.append(self._state(old, time, usable=False, existing=existing))
                continue
            if old is not None and old.key() == new.key():
                self._reported[index] = new
                continue
            self._reported[index] = new
            out.append(self._state(new, time, usable=new.usable, existing=existing))
        return out

    def snapshot(self, time: datetime) -> list[ConnectionState]:
        """Every link as it is now, ``existing=True`` (what was reported stays as it was)."""
        return [self._state(v, time, usable=v.usable, existing=True) for v in self.views()]

    def _state(self, view: LinkView, time: datetime, *, usable: bool,
               existing: bool) -> ConnectionState:
        return ConnectionState(time, self.source, f"ifindex:{view.index}", view.connection,
                               usable, view.connection_type, view.qoc if usable else None,
                               existing, view.raw, self.host)
